"""Start a DAG when an Opsera pipeline run finishes: no sensor task, no schedule to poll on.

An ``AssetWatcher`` runs ``OpseraPipelineEventTrigger`` in the triggerer. Each time a run of the watched
pipeline's ``anchore`` step reaches a terminal status (passed or failed), the trigger fires one event and
Airflow records an event on the asset ``opsera://pipelines/<id>``, which schedules this DAG. Its task reads the
event's payload (the deciding pipeline-activity record) from ``triggering_asset_events``.

Exactly once per run, across triggerer restarts: a run that finishes while the triggerer is down starts the
DAG when it is back, and a run already reported does not start it again. Watchers of other pipelines on the
same connection share one poll of the API with this one (and with deferred pipeline sensors).
"""

from __future__ import annotations

import os
from typing import Any

import pendulum
from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_provider_opsera.triggers.pipeline import OpseraPipelineEventTrigger

# The watched pipeline and the pace of the polls (read when the DAG is parsed: the trigger's kwargs).
PIPELINE_ID = os.environ.get("OPSERA_EVENTS_PIPELINE_ID", "611e7dca57f4eff66e9db084")
POLL_INTERVAL = float(os.environ.get("OPSERA_EVENTS_POLL_INTERVAL", "30"))

anchore_finished = Asset(
    name="opsera_anchore_finished",
    uri=f"opsera://pipelines/{PIPELINE_ID}/steps/anchore",
    watchers=[
        AssetWatcher(
            name="opsera_anchore_watcher",
            trigger=OpseraPipelineEventTrigger(
                pipeline_id=PIPELINE_ID, step_name="anchore", poll_interval=30
            ),
        )
    ],
)

with DAG(
    dag_id="opsera_pipeline_events",
    schedule=[anchore_finished],
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["opsera"],
    doc_md=__doc__,
):

    @task
    def report_scan(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """One line per finished run that started this DAG run (several if they finished close together)."""
        finished = []
        for event in triggering_asset_events[anchore_finished]:
            payload = event.extra.get("payload") or {}
            record = payload.get("record") or {}
            print(
                f"Run {payload.get('run_count')} of pipeline {payload.get('pipeline_id')}: anchore "
                f"{payload.get('status')} ({record.get('status')!r}: {record.get('message')})"
            )
            finished.append({"key": payload.get("key"), "status": payload.get("status"), "record": record})
        return finished

    report_scan()
