"""OpseraPipelineStatusTrigger on its own: JSON serialization, one event per run, the deadline, errors, and
never blocking the event loop (against the simulator, on loopback)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import pytest

from airflow_provider_opsera.pipeline.search import WatchState
from airflow_provider_opsera.testing.pytest_plugin import opsera_simulator  # noqa: F401
from airflow_provider_opsera.triggers.pipeline import OpseraPipelineStatusTrigger

PID = "611e7dca57f4eff66e9db084"
FAST_RETRIES = {"retry_min_wait": 0.01, "retry_max_wait": 0.1}


@pytest.fixture
def sim(opsera_simulator, monkeypatch):  # noqa: F811
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", opsera_simulator.connection_json(FAST_RETRIES))
    return opsera_simulator


def trigger(**kwargs) -> OpseraPipelineStatusTrigger:
    args = {"pipeline_id": PID, "step_name": "anchore", "poll_interval": 0.2, "deadline": time.time() + 30}
    return OpseraPipelineStatusTrigger(**{**args, **kwargs})


def events_of(t: OpseraPipelineStatusTrigger) -> list[dict]:
    """Every event the trigger yields, run to its end (the triggerer stops after the first)."""

    async def collect():
        return [event.payload async for event in t.run()]

    return asyncio.run(collect())


def anchore(sim, *events, run: int = 174, start=None) -> None:
    sim.script_run(PID, run, [{"step_name": "anchore", "events": list(events)}], start=start)


# -- serialization ----------------------------------------------------------------------------------------
def test_serialize_round_trips_through_json_and_airflow_serde():
    from airflow_compat import deserialize, serialize

    state = WatchState(
        horizon=1.0, covered_from=2.0, frontier=3.5, records=[{"_id": "a", "status": "analyzing"}]
    )
    original = trigger(
        run_count=174,
        step_id="611508513ce36642d3180dc8",
        waiting_statuses=["Analyzing", "queued"],
        failure_statuses=["failed"],
        success_statuses=["success", "passed"],
        lookback_s=3600,
        pipeline_type="sdlc",
        opsera_conn_id="opsera_prod",
        deadline=1_800_000_000.5,
        state=state.to_json(),
        keep_polling_on_error=True,
    )
    classpath, kwargs = original.serialize()
    assert classpath == "airflow_provider_opsera.triggers.pipeline.OpseraPipelineStatusTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs  # plain JSON only
    again = OpseraPipelineStatusTrigger(**json.loads(json.dumps(kwargs)))
    assert again.serialize() == (classpath, kwargs)
    assert OpseraPipelineStatusTrigger(**deserialize(serialize(kwargs))).serialize() == (classpath, kwargs)
    assert WatchState.from_json(kwargs["state"]) == state
    assert kwargs["waiting_statuses"] == ["analyzing", "queued"]


# -- events -----------------------------------------------------------------------------------------------
def test_success_is_one_json_event_with_the_record(sim):
    anchore(sim, (0, "analyzing"), (1.5, "success", "Anchore Scan Completed"))
    events = events_of(trigger())
    assert len(events) == 1
    (event,) = events
    assert event["status"] == "success"
    assert event["record"]["status"] == "success" and event["record"]["pipeline_id"] == PID
    assert json.loads(json.dumps(event)) == event
    assert sim.request_count() >= 2  # it saw "analyzing" first


def test_failure_carries_the_record_and_its_message(sim):
    anchore(sim, (0, "analyzing"), (1, "failed", "Anchore found 3 critical vulnerabilities"))
    (event,) = events_of(trigger())
    assert event["status"] == "failure"
    assert "'failed'" in event["message"] and "Anchore found 3 critical vulnerabilities" in event["message"]
    assert event["record"]["message"] == "Anchore found 3 critical vulnerabilities"


def test_the_deadline_is_checked_after_a_final_poll(sim):
    # The step succeeds just before the deadline, between two polls far apart: the final poll must see it.
    anchore(sim, (0, "analyzing"), (1.0, "success"))
    (event,) = events_of(trigger(poll_interval=3600, deadline=time.time() + 1.5))
    assert event["status"] == "success"


def test_a_run_that_never_finishes_times_out_once(sim):
    anchore(sim, (0, "analyzing"))
    deadline = time.time() + 1.0
    events = events_of(trigger(deadline=deadline))
    assert [e["status"] for e in events] == ["timeout"]
    assert "timed out" in events[0]["message"] and "'analyzing'" in events[0]["message"]
    assert sim.requests[-1].time.timestamp() >= deadline  # the last poll came at or after the deadline


def test_a_deadline_already_passed_still_polls_once(sim):
    anchore(sim, (-5, "success"))
    (event,) = events_of(trigger(deadline=time.time() - 10))
    assert event["status"] == "success"


def test_an_api_error_is_one_error_event(sim, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_OPSERA_DEFAULT", sim.connection_json(FAST_RETRIES).replace(sim.token, "nope")
    )
    events = events_of(trigger())
    assert [e["status"] for e in events] == ["error"]
    assert "401" in events[0]["message"] and "nope" not in events[0]["message"]


@pytest.mark.parametrize("refusal", ["invalid_token", "owner_lost_role"])
def test_a_refused_token_is_an_auth_error_event_with_the_hooks_message(sim, monkeypatch, refusal):
    from airflow_provider_opsera.exceptions import OpseraAuthError
    from airflow_provider_opsera.hooks.opsera import OpseraHook

    if refusal == "invalid_token":  # a token the API does not know (revoked, mistyped): 401
        monkeypatch.setenv(
            "AIRFLOW_CONN_OPSERA_DEFAULT", sim.connection_json(FAST_RETRIES).replace(sim.token, "nope")
        )
        code = 401
    else:  # the token's owner is an auditor: v1 routes are for Site Admins and Power Users only, 403
        sim.add_token(sim.token, role="auditor")
        code = 403
    anchore(sim, (-5, "success"))
    events = events_of(trigger())
    assert len(events) == 1
    (event,) = events
    assert json.loads(json.dumps(event)) == event  # JSON only
    # The message poke mode's hook call raises, word for word.
    with pytest.raises(OpseraAuthError) as refused:
        OpseraHook().get_logs("pipeline_activity", {"range": "1d"})
    assert event == {
        "status": "error",
        "error": "auth",
        "status_code": code,
        "message": str(refused.value),
        "record": None,
    }
    assert refused.value.status_code == code and sim.token not in event["message"]


def test_other_errors_carry_no_auth_marker(sim, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", sim.connection_json({"max_retries": 0}))
    sim.inject("503", times=1)
    (event,) = events_of(trigger())
    assert event["status"] == "error" and "error" not in event and "status_code" not in event


def test_transient_errors_are_retried_with_the_hook_rule(sim):
    anchore(sim, (-5, "success"))
    sim.inject("503", times=2)
    sim.inject("429", times=1, retry_after=0)
    (event,) = events_of(trigger())
    assert event["status"] == "success"
    assert sim.request_count(status=200) >= 1 and sim.request_count() >= 4


@pytest.mark.parametrize("keep_polling", [False, True])
def test_keep_polling_on_error_polls_on_after_a_failed_poll(sim, monkeypatch, keep_polling):
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", sim.connection_json({"max_retries": 0}))
    anchore(sim, (-5, "success"))
    sim.inject("503", times=1)
    (event,) = events_of(trigger(keep_polling_on_error=keep_polling))
    assert event["status"] == ("success" if keep_polling else "error")


def test_busy_account_polls_are_one_small_request_each(sim):
    sim.background_pipeline_traffic(10_000)
    anchore(sim, (0, "analyzing"), (2, "success"))
    (event,) = events_of(trigger())
    assert event["status"] == "success"
    requests = sim.requests
    first_look = [r for r in requests if r.params.get("range") in ("1d",)]
    polls = [
        r for r in requests if r.params.get("range", "").endswith("s") and int(r.params["range"][:-1]) <= 60
    ]
    assert len(first_look) == 1
    assert len(polls) >= 3 and all(r.n_records < 1000 for r in polls)


# -- the event loop ---------------------------------------------------------------------------------------
def test_the_trigger_never_blocks_the_event_loop(sim):
    """A heartbeat coroutine keeps ticking while the trigger waits on slow responses."""
    anchore(sim, (0, "analyzing"))
    sim.config.latency = 1.0  # every response takes a second

    async def main():
        ticks: list[float] = []
        stop = asyncio.Event()

        async def heartbeat():
            while not stop.is_set():
                ticks.append(time.monotonic())
                await asyncio.sleep(0.02)

        beat = asyncio.create_task(heartbeat())
        started = time.monotonic()
        events = [e.payload async for e in trigger(deadline=time.time() + 2.5).run()]
        took = time.monotonic() - started
        stop.set()
        await beat
        return events, ticks, took

    events, ticks, took = asyncio.run(main())
    assert [e["status"] for e in events] == ["timeout"]
    assert sim.request_count() >= 2  # at least two slow polls happened meanwhile
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    # A blocking call would stall the heartbeat for a whole response (a second); it never stalls that long.
    assert max(gaps) < 0.5
    assert len(ticks) > took / 0.02 / 4
