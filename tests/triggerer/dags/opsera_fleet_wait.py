"""50 deferred pipeline sensors in one DAG, each on a pipeline of its own (the real-triggerer test)."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_provider_opsera.sensors.pipeline import OpseraPipelineStatusSensor

N = int(os.environ.get("OPSERA_FLEET_SIZE", "50"))
POKE = float(os.environ.get("OPSERA_FLEET_POKE_INTERVAL", "5"))

with DAG(
    dag_id="opsera_fleet_wait",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_tasks=N,
):
    for i in range(N):
        OpseraPipelineStatusSensor(
            task_id=f"wait_{i:02d}",
            pipeline_id=f"65{i:022x}",
            step_name="anchore",
            lookback="1h",
            deferrable=True,
            poke_interval=POKE,
            timeout=900,
        )
