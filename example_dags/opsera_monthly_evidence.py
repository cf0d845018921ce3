"""Monthly audit evidence: verify last month's landed Opsera logs and keep the reports next to them.

On the 1st of every month (00:00 UTC) this DAG verifies, for each log type, the month before (its data
interval) as landed by ``opsera_logs_to_s3``: every day has a manifest (no gaps, no overlaps), every part
matches its count and sha256, the manifests' revision chain (and signature) holds, and the API's count of each
day now equals what was archived. The reports (``report.json``, ``report.md``, ``report.html``: a calendar of
the month) go to ``<output_base>/opsera-evidence/<log_type>/<YYYY-MM>/``; a task fails when its log type does
not verify, and its XCom value is the summary.

Settings, as in ``opsera_logs_to_s3`` (Airflow Variables, each with a default): ``opsera_output_base``
(default ``file:///tmp/opsera-logs``), ``opsera_output_conn_id`` (the store's connection),
``opsera_conn_id`` (default ``opsera_default``), and ``opsera_signing_conn_id`` (the connection whose password
is the manifests' signing key; default none: signatures are reported, not checked).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_opsera.operators.verify import OpseraVerifyArchiveOperator

try:
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:  # older Airflow 3 releases
    from airflow.timetables.interval import CronDataIntervalTimetable  # type: ignore[no-redef]

OUTPUT_BASE = "{{ var.value.get('opsera_output_base', 'file:///tmp/opsera-logs').rstrip('/') }}"
OUTPUT_CONN_ID = "{{ var.value.get('opsera_output_conn_id', '') }}"
OPSERA_CONN_ID = "{{ var.value.get('opsera_conn_id', 'opsera_default') }}"
SIGNING_CONN_ID = "{{ var.value.get('opsera_signing_conn_id', '') }}"
MONTH = "{{ data_interval_start.strftime('%Y-%m') }}"

with DAG(
    dag_id="opsera_monthly_evidence",
    schedule=CronDataIntervalTimetable("@monthly", timezone="UTC"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    # The month's last day lands at the moment the month ends: a failed check is tried again three hours
    # later, by when the daily DAG has landed it (a real failure fails again, and stays failed).
    default_args={"retries": 2, "retry_delay": pendulum.duration(hours=3)},
    tags=["opsera", "evidence"],
    doc_md=__doc__,
):
    for log_type in ("user_activity", "audit", "token_activity", "pipeline_activity"):
        OpseraVerifyArchiveOperator(
            task_id=f"verify_{log_type}",
            base_url=OUTPUT_BASE,
            log_type=log_type,
            against_api=True,
            conn_id=OUTPUT_CONN_ID,
            opsera_conn_id=OPSERA_CONN_ID,
            signing_conn_id=SIGNING_CONN_ID,
            report_path=f"{OUTPUT_BASE}/opsera-evidence/{log_type}/{MONTH}/",
        )
