"""Load all four Opsera log types into Postgres, one table per log type, one day per run.

Every day at 00:00 UTC this DAG upserts the previous day (its data interval) into ``opsera_user_activity_logs``,
``opsera_audit_logs``, ``opsera_token_activity_logs`` and ``opsera_pipeline_activity_logs``, created on first
use. Each load is one transaction keyed on the record's ``_id``: reruns, catchup, backfills and overlapping
runs leave every record once, and a failed run leaves the tables as they were.

Settings, each a DAG param (per run) that falls back to an Airflow Variable, then to a default:

- ``schema`` / Variable ``opsera_postgres_schema``: the tables' schema, created if missing (default ``public``);
- ``postgres_conn_id`` / Variable ``opsera_postgres_conn_id``: the database (default ``postgres_default``);
- ``opsera_conn_id`` / Variable ``opsera_conn_id``: the Opsera connection (default ``opsera_default``).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_opsera import OpseraLogType
from airflow_provider_opsera.transfers.postgres import OpseraLogsToPostgresOperator

try:
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:  # Airflow before 3.2
    from airflow.timetables.interval import CronDataIntervalTimetable  # type: ignore[no-redef]

# Each setting: the run's param if set, else the Airflow Variable, else a default, read when the task runs.
SCHEMA = "{{ params.schema or var.value.get('opsera_postgres_schema', 'public') }}"
POSTGRES_CONN_ID = (
    "{{ params.postgres_conn_id or var.value.get('opsera_postgres_conn_id', 'postgres_default') }}"
)
OPSERA_CONN_ID = "{{ params.opsera_conn_id or var.value.get('opsera_conn_id', 'opsera_default') }}"

with DAG(
    dag_id="opsera_logs_to_postgres",
    # A data interval per run: the operator loads [data_interval_start, data_interval_end).
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,  # safe to turn on: each run upserts only its own day
    max_active_runs=2,
    default_args={"retries": 2, "retry_delay": pendulum.duration(minutes=5)},
    params={
        "schema": Param(None, type=["null", "string"], description="default: public"),
        "postgres_conn_id": Param(None, type=["null", "string"], description="default: postgres_default"),
        "opsera_conn_id": Param(None, type=["null", "string"], description="default: opsera_default"),
    },
    tags=["opsera"],
    doc_md=__doc__,
):
    for log_type in OpseraLogType:
        OpseraLogsToPostgresOperator(
            task_id=f"{log_type.value}_to_postgres",
            log_type=log_type,
            schema=SCHEMA,
            postgres_conn_id=POSTGRES_CONN_ID,
            opsera_conn_id=OPSERA_CONN_ID,
        )
