"""example_dags/opsera_pipeline_wait.py end to end: ``dag.test()`` against the simulator, both verdicts.

The DAG defers both sensors; ``dag.test()`` runs their triggers in-process. Poll intervals are shortened on
the loaded DAG's tasks (the example polls every 30-60 s).
"""

from __future__ import annotations

import pytest
from dag_runs import load_example_dag
from sensor_helpers import script, task_state, then, xcom_value

PID = "64a0c1e2f3b4a5c6d7e8f901"


@pytest.fixture
def dag(airflow_db):
    dag = load_example_dag("opsera_pipeline_wait")
    for task_id in ("wait_for_anchore", "wait_for_run"):
        dag.get_task(task_id).poke_interval = 0.3
    return dag


def test_a_passed_scan_takes_the_passed_branch_and_the_run_finishes(sim, dag):
    script(sim, PID)
    then(
        sim,
        PID,
        steps=[
            {"step_name": "anchore", "events": [(1, "success", "Anchore Scan Completed")]},
            {"step_name": "sonar", "events": [(1.5, "running"), (2.5, "success", "Quality gate passed")]},
        ],
    )
    dag_run = dag.test(run_conf={"pipeline_id": PID})
    assert str(dag_run.state) == "success"
    assert xcom_value(dag_run, "wait_for_anchore")["status"] == "success"
    assert task_state(dag_run, "scan_passed") == "success"
    assert task_state(dag_run, "scan_failed") == "skipped"
    assert task_state(dag_run, "wait_for_run") == "success"


def test_a_failed_scan_takes_the_failed_branch_and_the_run_wait_fails(sim, dag):
    script(sim, PID)
    then(sim, PID, (1, "failed", "Anchore found 3 critical vulnerabilities"))
    dag_run = dag.test(run_conf={"pipeline_id": PID, "run_count": 174})
    assert xcom_value(dag_run, "wait_for_anchore")["status"] == "failed"
    assert task_state(dag_run, "scan_failed") == "success"
    assert task_state(dag_run, "scan_passed") == "skipped"
    assert task_state(dag_run, "wait_for_run") == "failed"
    assert str(dag_run.state) == "failed"
