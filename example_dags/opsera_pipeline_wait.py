"""Wait for an Opsera pipeline run from Airflow: its Anchore scan step, then the whole run.

Trigger it with the pipeline to watch (and, optionally, the run number; empty means the newest run seen):

- ``wait_for_anchore`` waits, deferred (no worker slot held), for the run's ``anchore`` step to leave
  ``analyzing``. It treats every other status as the end of the scan, so it returns the step's record
  whatever the verdict, and ``anchore_verdict`` branches on it: ``scan_passed`` or ``scan_failed``.
- ``wait_for_run`` waits, deferred, for the run as a whole: it succeeds when the run's newest record has a
  finished status, and fails with the record's message when that status is a failure.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_opsera.sensors.pipeline import OpseraPipelineStatusSensor

PASSED = {"success", "successful", "passed", "completed"}

with DAG(
    dag_id="opsera_pipeline_wait",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "pipeline_id": Param("611e7dca57f4eff66e9db084", type="string", description="the pipeline's _id"),
        "run_count": Param(None, type=["null", "integer"], description="empty: the newest run seen"),
    },
    tags=["opsera"],
    doc_md=__doc__,
):
    wait_for_anchore = OpseraPipelineStatusSensor(
        task_id="wait_for_anchore",
        pipeline_id="{{ params.pipeline_id }}",
        run_count="{{ params.run_count if params.run_count is not none else '' }}",
        step_name="anchore",
        waiting_statuses=["analyzing"],
        # No failure statuses: a failed scan also ends the wait, and the branch below decides what it means.
        failure_statuses=[],
        deferrable=True,
        poke_interval=30,
        timeout=2 * 60 * 60,
    )

    @task.branch
    def anchore_verdict(record: dict[str, Any]) -> str:
        status = str(record.get("status", "")).strip().lower()
        print(f"Anchore finished with {status!r}: {record.get('message')}")
        return "scan_passed" if status in PASSED else "scan_failed"

    @task
    def scan_passed() -> None:
        print("The image passed its Anchore scan.")

    @task
    def scan_failed() -> None:
        print("The image failed its Anchore scan: notify the security team here.")

    wait_for_run = OpseraPipelineStatusSensor(
        task_id="wait_for_run",
        pipeline_id="{{ params.pipeline_id }}",
        run_count="{{ params.run_count if params.run_count is not none else '' }}",
        deferrable=True,
        poke_interval=60,
        timeout=6 * 60 * 60,
    )

    anchore_verdict(wait_for_anchore.output) >> [scan_passed(), scan_failed()]
