"""Shared polling: N status triggers in one event loop, against the simulator on a busy account."""

from __future__ import annotations

import asyncio
import time

import pytest

from airflow_provider_opsera.testing.pytest_plugin import opsera_simulator  # noqa: F401
from airflow_provider_opsera.triggers import polling
from airflow_provider_opsera.triggers.pipeline import OpseraPipelineStatusTrigger

FAST_RETRIES = {"retry_min_wait": 0.01, "retry_max_wait": 0.1}


def pid(i: int) -> str:
    return f"65{i:022x}"


@pytest.fixture
def sim(opsera_simulator, monkeypatch):  # noqa: F811
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", opsera_simulator.connection_json(FAST_RETRIES))
    opsera_simulator.background_pipeline_traffic(10_000)
    return opsera_simulator


def script(sim, n: int) -> None:
    for i in range(n):
        end = "failed" if i % 3 == 2 else "success"
        sim.script_run(
            pid(i), 3, [{"step_name": "anchore", "events": [(-5, "analyzing"), (0.6 + 0.2 * i, end)]}]
        )


def triggers(n: int, share: bool, **kwargs) -> list[OpseraPipelineStatusTrigger]:
    return [
        OpseraPipelineStatusTrigger(
            pipeline_id=pid(i),
            step_name="anchore",
            lookback_s=3600,
            poll_interval=0.5,
            deadline=time.time() + 30,
            share_polls=share,
            **kwargs,
        )
        for i in range(n)
    ]


async def first_events(ts):
    async def one(t):
        async for e in t.run():
            return e.payload

    events = await asyncio.gather(*(one(t) for t in ts))
    return events, polling.active_pollers()


def outcome(event):
    r = event["record"]
    return event["status"], r["pipeline_id"], r["run_count"], r["status"]


def test_n_triggers_share_one_request_stream_and_decide_as_alone(sim):
    n = 12
    script(sim, n)
    sim.reset_requests()
    alone, _ = asyncio.run(first_events(triggers(n, share=False)))
    unshared = sim.request_count()
    sim.reset_requests()
    shared, left = asyncio.run(first_events(triggers(n, share=True)))
    together = sim.request_count()
    assert [outcome(e) for e in shared] == [outcome(e) for e in alone]
    assert {e["status"] for e in shared} == {"success", "failure"}
    # First looks with one lookback are one request each alone, one shared; polls likewise.
    assert together * 4 <= unshared, (together, unshared)
    assert left == []  # the last trigger to leave stopped the poller


def test_requests_per_round_do_not_grow_with_n(sim):
    script(sim, 30)

    async def main():
        ts = triggers(30, share=True)
        events, _ = await first_events(ts)
        return events

    sim.reset_requests()
    started = time.time()
    events = asyncio.run(main())
    took = time.time() - started
    assert all(e["status"] in ("success", "failure") for e in events)
    # 30 watchers, a poll every 0.5 s: at most ~2 requests per interval (plus the shared first look).
    assert sim.request_count() <= 2 * (took / 0.5) + 3, (sim.request_count(), took)


def test_a_cancelled_trigger_leaves_cleanly_and_the_others_poll_on(sim):
    sim.script_run(pid(0), 3, [{"step_name": "anchore", "events": [(-5, "analyzing")]}])
    sim.script_run(pid(1), 3, [{"step_name": "anchore", "events": [(-5, "analyzing"), (1.5, "success")]}])

    async def main():
        never, soon = triggers(2, share=True)
        waiting = asyncio.create_task(anext(never.run()))
        finishing = asyncio.create_task(anext(soon.run()))
        await asyncio.sleep(0.7)
        (poller,) = polling.active_pollers()
        assert poller.users == 2
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert poller.users == 1
        event = await finishing
        return event.payload, polling.active_pollers()

    event, left = asyncio.run(main())
    assert event["status"] == "success"
    assert left == []


def test_watchers_on_other_connections_or_types_do_not_share(sim, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_OTHER", sim.connection_json(FAST_RETRIES))
    sim.script_run(pid(0), 3, [{"step_name": "anchore", "events": [(-5, "analyzing")]}])

    async def main():
        ts = [
            *triggers(1, share=True),
            *triggers(1, share=True, opsera_conn_id="opsera_other"),
            *triggers(1, share=True, pipeline_type="sdlc"),
        ]
        tasks = [asyncio.create_task(anext(t.run())) for t in ts]
        await asyncio.sleep(0.5)
        keys = sorted((p.conn_id, p.pipeline_type or "") for p in polling.active_pollers())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return keys, polling.active_pollers()

    keys, left = asyncio.run(main())
    assert keys == [("opsera_default", ""), ("opsera_default", "sdlc"), ("opsera_other", "")]
    assert left == []


def test_an_api_error_reaches_every_member_of_the_round(sim, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_OPSERA_DEFAULT", sim.connection_json(FAST_RETRIES).replace(sim.token, "nope")
    )
    events, left = asyncio.run(first_events(triggers(3, share=True)))
    assert [e["status"] for e in events] == ["error"] * 3
    assert all("401" in e["message"] for e in events)
    assert sim.request_count() == 1 and left == []
