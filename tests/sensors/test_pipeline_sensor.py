"""OpseraPipelineStatusSensor in pieces: arguments, the check in the worker before deferring, how each trigger
event resumes the task, soft_fail, and what poke mode carries between pokes."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest
from airflow_compat import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferred,
)

from airflow_provider_opsera.exceptions import OpseraAuthError, OpseraError
from airflow_provider_opsera.pipeline.search import WatchState
from airflow_provider_opsera.sensors.pipeline import OpseraPipelineStatusSensor
from airflow_provider_opsera.triggers.pipeline import OpseraPipelineStatusTrigger

PID = "611e7dca57f4eff66e9db084"


def sensor(**kwargs) -> OpseraPipelineStatusSensor:
    args = {
        "task_id": "wait",
        "pipeline_id": PID,
        "step_name": "anchore",
        "poke_interval": 0.2,
        "timeout": 30,
    }
    return OpseraPipelineStatusSensor(**{**args, **kwargs})


def anchore(sim, *events) -> None:
    sim.script_run(PID, 174, [{"step_name": "anchore", "events": list(events)}])


# -- arguments --------------------------------------------------------------------------------------------
def test_defaults_follow_the_public_interface(monkeypatch):
    monkeypatch.delenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", raising=False)
    s = OpseraPipelineStatusSensor(task_id="t", pipeline_id=PID)
    assert (s.run_count, s.step_id, s.step_name, s.success_statuses) == (None, None, None, None)
    assert s.lookback == "1d" and s.lookback_s == 86400
    assert s.opsera_conn_id == "opsera_default"
    assert "paused" in s.waiting_statuses and "canceled" in s.failure_statuses
    assert s.deferrable is False and s.mode == "poke"
    assert {"pipeline_id", "run_count", "step_id", "step_name"} <= set(s.template_fields)


def test_deferrable_defaults_to_the_operators_setting(monkeypatch):
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "true")
    assert OpseraPipelineStatusSensor(task_id="t", pipeline_id=PID).deferrable is True
    assert OpseraPipelineStatusSensor(task_id="u", pipeline_id=PID, deferrable=False).deferrable is False


def test_mistakes_fail_when_the_dag_is_parsed():
    with pytest.raises(ValueError, match="lookback"):
        sensor(lookback="yesterday")
    with pytest.raises(ValueError, match="both waiting_statuses and failure_statuses"):
        sensor(failure_statuses=["failed", "paused"])
    assert sensor(lookback="90m").lookback_s == 5400
    assert sensor(lookback=dt.timedelta(hours=2)).lookback_s == 7200


# -- the check in the worker, then deferring ---------------------------------------------------------------
def test_a_finished_run_returns_at_once_without_deferring(sim):
    anchore(sim, (-5, "analyzing"), (-2, "success", "Anchore Scan Completed"))
    record = sensor(deferrable=True).execute({})
    assert record["status"] == "success"


def test_a_waiting_run_defers_with_what_the_first_look_learned(sim):
    anchore(sim, (-1, "analyzing"))
    with pytest.raises(TaskDeferred) as deferred:
        sensor(deferrable=True, timeout=600, run_count="174", pipeline_type="sdlc").execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, OpseraPipelineStatusTrigger)
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout >= dt.timedelta(seconds=600)
    _, kwargs = trigger.serialize()
    assert (kwargs["pipeline_id"], kwargs["run_count"], kwargs["step_name"]) == (PID, 174, "anchore")
    assert kwargs["pipeline_type"] == "sdlc" and kwargs["poll_interval"] == 0.2
    state = WatchState.from_json(kwargs["state"])
    assert state.frontier is not None and state.records[-1]["status"] == "analyzing"
    assert sim.request_count() == 1


def test_a_failed_run_fails_in_the_worker_check_and_soft_fail_skips(sim):
    anchore(sim, (-5, "analyzing"), (-2, "failed", "Anchore found 3 critical vulnerabilities"))
    with pytest.raises(AirflowFailException, match="Anchore found 3 critical vulnerabilities"):
        sensor(deferrable=True).execute({})
    with pytest.raises(AirflowSkipException):
        sensor(deferrable=True, soft_fail=True).execute({})


def test_never_fail_skips_what_the_worker_check_raises(sim, monkeypatch):
    anchore(sim, (-5, "analyzing"), (-2, "failed", "Anchore found 3 critical vulnerabilities"))
    with pytest.raises(AirflowSkipException, match="never_fail"):
        sensor(deferrable=True, never_fail=True).execute({})
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", sim.connection_json().replace(sim.token, "revoked"))
    with pytest.raises(AirflowSkipException, match="never_fail"):
        sensor(deferrable=True, never_fail=True).execute({})


def test_silent_fail_checks_again_in_the_worker_then_defers(sim, monkeypatch):
    """Airflow's poke loop logs a failed check and pokes again; the check that reads the API defers."""
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", sim.connection_json({"max_retries": 0}))
    anchore(sim, (-1, "analyzing"))
    sim.inject("503", times=1)
    with pytest.raises(TaskDeferred) as deferred:
        sensor(deferrable=True, silent_fail=True).execute({})
    _, kwargs = deferred.value.trigger.serialize()
    assert kwargs["keep_polling_on_error"] is True
    assert WatchState.from_json(kwargs["state"]).records[-1]["status"] == "analyzing"
    assert sim.request_count(status=503) == 1 and sim.request_count(status=200) >= 1


def test_poke_mode_carries_what_it_knows_between_pokes(sim):
    sim.background_pipeline_traffic(10_000)
    anchore(sim, (-1, "analyzing"))
    s = sensor()
    assert s.poke({}) is False
    first = len(sim.requests)
    assert s.poke({}) is False
    later = sim.requests[first:]
    assert len(later) == 1 and later[0].params["range"].endswith("s") and later[0].n_records < 1000


# -- resuming after the trigger ---------------------------------------------------------------------------
RECORD = {"_id": "r1", "pipeline_id": PID, "status": "success", "createdAt": "2024-05-10T17:09:24.080Z"}


def resume(s: OpseraPipelineStatusSensor, event):
    return s.resume_execution("execute_complete", {"event": event}, {})


def test_success_returns_the_record():
    assert resume(sensor(), {"status": "success", "message": "ok", "record": RECORD}) == RECORD


@pytest.mark.parametrize(
    ("event", "error"),
    [
        (
            {"status": "failure", "message": "run 174 is 'failed' (boom)", "record": RECORD},
            AirflowFailException,
        ),
        ({"status": "timeout", "message": "Sensor has timed out", "record": None}, AirflowSensorTimeout),
        ({"status": "error", "message": "HTTP 401", "record": None}, OpseraError),
        ({"status": "success", "message": "no record"}, AirflowException),
        ({"status": "done"}, AirflowException),
        (None, AirflowException),
        ("success", AirflowException),
    ],
)
def test_anything_but_success_fails_closed(event, error):
    with pytest.raises(error):
        resume(sensor(), event)


@pytest.mark.parametrize("status", ["failure", "timeout"])
def test_soft_fail_skips_a_failure_or_timeout_like_airflows_sensors(status):
    with pytest.raises(AirflowSkipException):
        resume(sensor(soft_fail=True), {"status": status, "message": "m", "record": None})


@pytest.mark.parametrize("refusal", ["invalid_token", "owner_lost_role"])
def test_a_token_refused_while_deferred_raises_the_auth_error_poke_mode_raises(sim, monkeypatch, refusal):
    anchore(sim, (-1, "analyzing"))
    deferrable = sensor(deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        deferrable.execute({})  # the first look in the worker still had a good token
    if refusal == "invalid_token":  # the token is revoked: the API no longer knows it (401)
        monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", sim.connection_json().replace(sim.token, "revoked"))
    else:  # the token's owner lost the role v1 routes need (403)
        sim.add_token(sim.token, role="auditor")
    (event,) = [e.payload for e in _run_trigger(deferred.value.trigger)]
    assert json.loads(json.dumps(event)) == event
    with pytest.raises(OpseraAuthError) as in_deferrable:
        resume(deferrable, event)
    with pytest.raises(OpseraAuthError) as in_poke:
        sensor().poke({})
    assert str(in_deferrable.value) == str(in_poke.value)
    assert in_deferrable.value.status_code == in_poke.value.status_code == event["status_code"]
    assert in_poke.value.status_code == (401 if refusal == "invalid_token" else 403)


def _run_trigger(trigger: OpseraPipelineStatusTrigger) -> list:
    async def collect():
        return [event async for event in trigger.run()]

    return asyncio.run(collect())


def test_an_auth_error_event_is_not_soft_failed_but_never_fail_skips_it():
    event = {"status": "error", "error": "auth", "status_code": 403, "message": "Opsera refused GET ..."}
    with pytest.raises(OpseraAuthError, match=r"^Opsera refused GET \.\.\.$"):
        resume(sensor(soft_fail=True), event)
    with pytest.raises(AirflowSkipException):
        resume(sensor(never_fail=True), event)


def test_an_error_event_is_not_soft_failed_but_never_fail_skips_it():
    with pytest.raises(OpseraError):
        resume(sensor(soft_fail=True), {"status": "error", "message": "HTTP 401"})
    with pytest.raises(AirflowSkipException):
        resume(sensor(never_fail=True), {"status": "error", "message": "HTTP 401"})
