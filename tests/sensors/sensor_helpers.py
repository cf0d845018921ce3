"""Helpers for the sensor tests: scenario DAG files for ``dag.test()``, and reading a run's outcome."""

from __future__ import annotations

import json
import pathlib
import textwrap
import threading
import time
from typing import Any

FAST_RETRIES = {"retry_min_wait": 0.01, "retry_max_wait": 0.1}

_DAG_FILE = textwrap.dedent(
    """
    import json

    import pendulum
    from airflow.sdk import DAG

    from airflow_provider_opsera.sensors.pipeline import OpseraPipelineStatusSensor

    for spec in json.loads({specs!r}):
        with DAG(
            dag_id=spec["dag_id"],
            schedule=None,
            start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
            catchup=False,
            params={{"pipeline_id": ""}},
        ) as dag:
            OpseraPipelineStatusSensor(task_id="wait", pipeline_id="{{{{ params.pipeline_id }}}}", **spec["kwargs"])
        globals()[spec["dag_id"]] = dag
    """
)


def write_dags(folder: pathlib.Path, specs: dict[str, dict[str, Any]]) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "opsera_sensor_scenarios.py"
    rows = [{"dag_id": dag_id, "kwargs": kwargs} for dag_id, kwargs in specs.items()]
    path.write_text(_DAG_FILE.format(specs=json.dumps(rows)))
    return path


def xcom_value(dag_run, task_id: str = "wait") -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(
                run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id, key="return_value"
            )
        ).first()
        return None if row is None else XComModel.deserialize_value(row)


def task_state(dag_run, task_id: str = "wait") -> str:
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = dag_run.get_task_instance(task_id, session=session)
        return str(ti.state)


def script(sim, pid: str) -> None:
    """A run whose first steps are done and whose anchore step is analyzing."""
    sim.script_run(
        pid,
        174,
        [
            {"step_name": "source", "events": [(-20, "success", "Checked out")]},
            {"step_name": "build", "events": [(-15, "running"), (-5, "success", "Build 88 passed")]},
            {"step_name": "anchore", "events": [(0, "analyzing", "Anchore Scan Started Successfully")]},
        ],
    )


def then(sim, pid: str, *events, steps: list[dict[str, Any]] | None = None) -> threading.Thread:
    """Once the sensor has looked, script the anchore step's next ``events`` (or whole ``steps``) of run 174.

    Offsets are seconds after that first look, so the sensor is sure to see the step waiting first, however
    long ``dag.test()`` takes to start the task.
    """

    def go() -> None:
        deadline = time.monotonic() + 300
        while sim.request_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        sim.script_run(pid, 174, steps or [{"step_name": "anchore", "events": list(events)}])

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread
