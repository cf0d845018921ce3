"""Land all four Opsera log types in object storage, one folder per log type and day.

Every day at 00:00 UTC this DAG extracts the previous day (its data interval) into
``<output_base>/opsera/<log_type>/dt=<YYYY-MM-DD>/`` as gzipped NDJSON parts plus ``manifest.json``. Each run
only touches its own day's folders and replaces them whole, so reruns, catchup and backfills are safe.

Settings, each a DAG param (per run) that falls back to an Airflow Variable, then to a default:

- ``output_base`` / Variable ``opsera_output_base``: where to land, e.g. ``s3://my-bucket`` (default
  ``file:///tmp/opsera-logs``, so the DAG runs unchanged against a local folder);
- ``output_conn_id`` / Variable ``opsera_output_conn_id``: the store's connection, e.g. ``aws_default``
  (default none: local files, or the store's own credential chain);
- ``opsera_conn_id`` / Variable ``opsera_conn_id``: the Opsera connection (default ``opsera_default``).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_opsera.operators.logs import (
    OpseraAuditLogsOperator,
    OpseraPipelineActivityLogsOperator,
    OpseraTokenActivityLogsOperator,
    OpseraUserActivityLogsOperator,
)

try:
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:  # older Airflow 3 releases
    from airflow.timetables.interval import CronDataIntervalTimetable  # type: ignore[no-redef]


# Each setting: the run's param if set, else the Airflow Variable, else a default, read when the task runs.
OUTPUT_BASE = (
    "{{ (params.output_base or var.value.get('opsera_output_base', 'file:///tmp/opsera-logs')).rstrip('/') }}"
)
OUTPUT_CONN_ID = "{{ params.output_conn_id or var.value.get('opsera_output_conn_id', '') }}"
OPSERA_CONN_ID = "{{ params.opsera_conn_id or var.value.get('opsera_conn_id', 'opsera_default') }}"
# The data interval's day rather than ds: a manual run's logical date is the day after the data it reads.
DAY = "{{ data_interval_start | ds }}"

with DAG(
    dag_id="opsera_logs_to_s3",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=2,
    default_args={"retries": 2, "retry_delay": pendulum.duration(minutes=5)},
    params={
        "output_base": Param(None, type=["null", "string"], description="e.g. s3://my-bucket"),
        "output_conn_id": Param(None, type=["null", "string"], description="e.g. aws_default"),
        "opsera_conn_id": Param(None, type=["null", "string"], description="default: opsera_default"),
    },
    tags=["opsera"],
    doc_md=__doc__,
):
    for log_type, operator in {
        "user_activity": OpseraUserActivityLogsOperator,
        "audit": OpseraAuditLogsOperator,
        "token_activity": OpseraTokenActivityLogsOperator,
        "pipeline_activity": OpseraPipelineActivityLogsOperator,
    }.items():
        operator(
            task_id=f"{log_type}_logs",
            output_path=f"{OUTPUT_BASE}/opsera/{log_type}/dt={DAY}/",
            output_conn_id=OUTPUT_CONN_ID,
            opsera_conn_id=OPSERA_CONN_ID,
        )
