"""The sensor end to end, in poke, reschedule and deferrable mode, through ``dag.test()`` against the simulator.

Each test scripts a pipeline run whose ``anchore`` step is analyzing, and scripts the step's next status a
second or two after the sensor's first look (so the sensor is sure to have seen it waiting, however long
``dag.test()`` takes to start the task). In deferrable mode ``dag.test()`` runs the trigger in-process. The
busy-account variant adds 10,000 unrelated pipeline records an hour.
"""

from __future__ import annotations

import hashlib
import threading
import time

import pytest
from airflow_compat import before
from sensor_helpers import script, task_state, then, write_dags, xcom_value

MODES = {
    "poke": {"mode": "poke", "deferrable": False},
    "reschedule": {"mode": "reschedule", "deferrable": False},
    "deferrable": {"deferrable": True},
}
BASE = {"step_name": "anchore", "poke_interval": 0.3, "timeout": 60}
SCENARIOS = {
    "success": BASE,
    "failure": BASE,
    "never_finishes": {**BASE, "timeout": 3},
    "never_finishes_soft_fail": {**BASE, "timeout": 3, "soft_fail": True},
    "unknown_status": {**BASE, "success_statuses": ["success"]},
    "busy_account": BASE,
    "token_refused": BASE,
}


#: Airflow 3.0's reschedule mode under dag.test() fails every sensor's second poke itself: the first
#: reschedule date comes back as a string, and BaseSensorOperator.run_duration subtracts it from a datetime
#: ("TypeError: unsupported operand type(s) for -: 'datetime.datetime' and 'str'"). Fixed in 3.1.
RESCHEDULE_ON_30 = (
    "Airflow 3.0's reschedule mode in dag.test(): datetime - str in BaseSensorOperator.run_duration"
)
#: Airflow 3.0's dag.test() prints a deferred task's failure as a rich traceback with the source lines around
#: each raise: the sensor's line that builds the generic "Waiting for the Opsera pipeline failed" message is
#: printed as code, so the check that this message is not shown cannot hold there.
RICH_TRACEBACK_ON_30 = (
    "Airflow 3.0's rich traceback prints the source line holding the message that must not appear"
)


def skip_on_30(mode: str, skipped_mode: str, reason: str) -> None:
    if mode == skipped_mode and before("3.1"):
        pytest.skip(reason)


def dag_id(scenario: str, mode: str) -> str:
    return f"opsera_sensor_{scenario}_{mode}"


@pytest.fixture(scope="module")
def scenario_dags(dags_folder, airflow_db):
    from airflow_compat import DagBag

    specs = {dag_id(s, m): {**kwargs, **MODES[m]} for s, kwargs in SCENARIOS.items() for m in MODES}
    path = write_dags(dags_folder, specs)
    bag = DagBag(dag_folder=str(path))
    assert not bag.import_errors, bag.import_errors
    return bag


def pipeline_for(request) -> str:
    return hashlib.sha1(request.node.name.encode()).hexdigest()[:24]


def logs(caplog, capfd) -> str:
    """Everything logged: Airflow's task logs go to stdout through structlog, the rest to logging."""
    out, err = capfd.readouterr()
    return caplog.text + out + err


def run(bag, scenario: str, mode: str, pid: str):
    return bag.get_dag(dag_id(scenario, mode)).test(run_conf={"pipeline_id": pid})


@pytest.mark.parametrize("mode", list(MODES))
def test_analyzing_then_success_succeeds_with_the_record(sim, scenario_dags, mode, request):
    pid = pipeline_for(request)
    script(sim, pid)
    then(sim, pid, (1.5, "success", "Anchore Scan Completed"))
    dag_run = run(scenario_dags, "success", mode, pid)
    assert task_state(dag_run) == "success"
    record = xcom_value(dag_run)
    assert (record["pipeline_id"], record["step_name"], record["status"]) == (pid, "anchore", "success")
    assert sim.request_count() >= 2  # it looked while analyzing, then again


@pytest.mark.parametrize("mode", list(MODES))
def test_analyzing_then_failed_fails_with_the_message(sim, scenario_dags, mode, request, caplog, capfd):
    pid = pipeline_for(request)
    script(sim, pid)
    then(sim, pid, (1.5, "failed", "Anchore found 3 critical vulnerabilities"))
    dag_run = run(scenario_dags, "failure", mode, pid)
    assert task_state(dag_run) == "failed"
    assert "'failed' (Anchore found 3 critical vulnerabilities" in logs(caplog, capfd)


@pytest.mark.parametrize("mode", list(MODES))
def test_a_run_that_never_finishes_times_out(sim, scenario_dags, mode, request, caplog, capfd):
    pid = pipeline_for(request)
    script(sim, pid)
    dag_run = run(scenario_dags, "never_finishes", mode, pid)
    assert task_state(dag_run) == "failed"
    assert "timed out" in logs(caplog, capfd)
    assert sim.request_count() >= 2  # it kept looking until the timeout


@pytest.mark.parametrize("mode", list(MODES))
def test_a_run_that_never_finishes_skips_with_soft_fail(sim, scenario_dags, mode, request):
    skip_on_30(mode, "reschedule", RESCHEDULE_ON_30)
    pid = pipeline_for(request)
    script(sim, pid)
    dag_run = run(scenario_dags, "never_finishes_soft_fail", mode, pid)
    assert task_state(dag_run) == "skipped"


@pytest.mark.parametrize("mode", list(MODES))
def test_an_unknown_status_keeps_waiting_when_success_statuses_are_given(
    sim, scenario_dags, mode, request, caplog, capfd
):
    skip_on_30(mode, "reschedule", RESCHEDULE_ON_30)
    pid = pipeline_for(request)
    script(sim, pid)
    then(sim, pid, (1, "deployed", "Pushed to registry"), (2.5, "success", "Anchore Scan Completed"))
    dag_run = run(scenario_dags, "unknown_status", mode, pid)
    assert task_state(dag_run) == "success"
    assert xcom_value(dag_run)["status"] == "success"
    text = logs(caplog, capfd)
    assert "'deployed'" in text and "still waiting" in text


@pytest.mark.parametrize("mode", list(MODES))
def test_a_busy_account_still_shows_the_change(sim, scenario_dags, mode, request):
    pid = pipeline_for(request)
    sim.background_pipeline_traffic(10_000)
    script(sim, pid)
    then(sim, pid, (1.5, "success", "Anchore Scan Completed"))
    dag_run = run(scenario_dags, "busy_account", mode, pid)
    assert task_state(dag_run) == "success"
    assert xcom_value(dag_run)["status"] == "success"
    looks = [r for r in sim.requests if r.params.get("range") == "1d"]
    if mode == "reschedule":
        # Nothing survives between reschedule pokes: each is a first look (the capped day, then narrowed).
        assert len(looks) >= 2
    else:
        # One first look; every later poll is one request for what is new, well under the cap.
        assert len(looks) == 1
        polls = [r for r in sim.requests if r.params.get("range", "").endswith("s")]
        polls = [r for r in polls if int(r.params["range"][:-1]) <= 60]
        assert polls and all(r.n_records < 1000 for r in polls)


@pytest.mark.parametrize("mode", list(MODES))
def test_a_token_refused_during_the_wait_fails_with_the_auth_error(
    sim, scenario_dags, mode, request, caplog, capfd
):
    """The token's owner loses the role v1 routes need after the first look: every mode fails the same way."""
    skip_on_30(mode, "deferrable", RICH_TRACEBACK_ON_30)
    pid = pipeline_for(request)
    script(sim, pid)

    def refuse() -> None:
        deadline = time.monotonic() + 300
        while sim.request_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        sim.add_token(sim.token, role="auditor")

    threading.Thread(target=refuse, daemon=True).start()
    dag_run = run(scenario_dags, "token_refused", mode, pid)
    assert task_state(dag_run) == "failed"
    text = logs(caplog, capfd)
    assert "OpseraAuthError" in text and "HTTP 403" in text
    assert "Waiting for the Opsera pipeline failed" not in text
    # The first look succeeded; the refusal came during the wait (in deferrable mode: in the trigger).
    assert sim.requests[0].status == 200 and sim.request_count(status=403) >= 1
