"""OpseraPipelineEventTrigger: one event per finished run, exactly once across restarts (the watermark kept
outside the trigger), runs finished while it was down, serialization, and shared polling with sensors."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from airflow_provider_opsera.testing.pytest_plugin import opsera_simulator  # noqa: F401
from airflow_provider_opsera.triggers import pipeline as trigger_module
from airflow_provider_opsera.triggers import polling
from airflow_provider_opsera.triggers.pipeline import OpseraPipelineEventTrigger, OpseraPipelineStatusTrigger
from airflow_provider_opsera.triggers.watermark import STATE_KEY, AssetStateWatermark, store_for

PID = "611e7dca57f4eff66e9db084"
FAST_RETRIES = {"retry_min_wait": 0.01, "retry_max_wait": 0.1}


class MemoryStore:
    """Stands in for the asset state store: survives the trigger objects, as the metadata database does."""

    def __init__(self) -> None:
        self.value = None
        self.writes = 0

    async def get(self):
        return json.loads(json.dumps(self.value)) if self.value is not None else None

    async def set(self, value):
        self.writes += 1
        self.value = json.loads(json.dumps(value))


@pytest.fixture
def store(monkeypatch):
    memory = MemoryStore()
    monkeypatch.setattr(trigger_module, "store_for", lambda trigger: memory)
    return memory


@pytest.fixture
def sim(opsera_simulator, monkeypatch):  # noqa: F811
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", opsera_simulator.connection_json(FAST_RETRIES))
    return opsera_simulator


def trigger(**kwargs) -> OpseraPipelineEventTrigger:
    return OpseraPipelineEventTrigger(
        **{"pipeline_id": PID, "step_name": "anchore", "poll_interval": 0.3, **kwargs}
    )


def run(sim, run_count: int, *events, start=None) -> None:
    sim.script_run(PID, run_count, [{"step_name": "anchore", "events": list(events)}], start=start)


async def collect(t: OpseraPipelineEventTrigger, seconds: float) -> list[dict]:
    """Every event the trigger yields within ``seconds``; then it is cancelled (as a triggerer stop does)."""
    events: list[dict] = []

    async def consume():
        async for event in t.run():
            events.append(event.payload)

    task = asyncio.create_task(consume())
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return events


def test_serialize_round_trips_through_json():
    original = trigger(step_id="s1", failure_statuses=["Failed"], pipeline_type="sdlc", catch_up_s=600)
    classpath, kwargs = original.serialize()
    assert classpath == "airflow_provider_opsera.triggers.pipeline.OpseraPipelineEventTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert OpseraPipelineEventTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert kwargs["failure_statuses"] == ["failed"]


def test_is_an_event_trigger_for_asset_watchers():
    from airflow.triggers.base import BaseEventTrigger

    assert isinstance(trigger(), BaseEventTrigger)
    try:
        from airflow.sdk import Asset, AssetWatcher
    except ImportError:  # pragma: no cover - Airflow 3.0 keeps AssetWatcher elsewhere
        pytest.skip("this Airflow has no airflow.sdk.AssetWatcher")
    Asset("opsera://pipelines/x", watchers=[AssetWatcher(name="w", trigger=trigger())])


def test_one_event_per_finished_run_with_the_deciding_record(sim, store):
    run(sim, 5, (-600, "success"))  # finished before the watcher started: not an event
    run(sim, 6, (0, "analyzing"), (0.8, "success", "Anchore Scan Completed"))
    run(sim, 7, (1.2, "analyzing"), (2.0, "failed", "3 critical vulnerabilities"))
    events = asyncio.run(collect(trigger(), 3.5))
    assert [(e["status"], e["run_count"]) for e in events] == [("success", 6), ("failure", 7)]
    first = events[0]
    assert first["record"]["status"] == "success" and first["record"]["run_count"] == 6
    assert first["key"] == f"{PID}:6" and first["pipeline_id"] == PID and first["step_name"] == "anchore"
    assert json.loads(json.dumps(events)) == events
    assert store.value["emitted"] == {
        "6": pytest.approx(store.value["emitted"]["6"]),
        "7": pytest.approx(store.value["emitted"]["7"]),
    }


def test_a_restart_neither_repeats_nor_misses_a_run(sim, store):
    run(sim, 6, (0, "analyzing"), (0.5, "success"))
    before = asyncio.run(collect(trigger(), 1.5))
    assert [e["run_count"] for e in before] == [6]
    # The triggerer is down: run 7 finishes meanwhile, run 8 while it comes back.
    run(sim, 7, (0.2, "analyzing"), (0.6, "failed"))
    run(sim, 8, (1.5, "analyzing"), (2.5, "success"))
    time.sleep(1.2)
    after = asyncio.run(collect(trigger(), 2.5))  # the same kwargs, a new object (a new triggerer)
    assert [(e["run_count"], e["status"]) for e in after] == [(7, "failure"), (8, "success")]
    again = asyncio.run(collect(trigger(), 1.0))
    assert again == []


def test_event_triggers_and_sensors_share_one_poller(sim, store):
    run(sim, 6, (0, "analyzing"), (1.0, "success"))

    async def main():
        sensor = OpseraPipelineStatusTrigger(
            pipeline_id=PID, step_name="anchore", poll_interval=0.3, deadline=time.time() + 10
        )
        watched = asyncio.create_task(collect(trigger(), 2.0))
        await asyncio.sleep(0.2)
        pollers = polling.active_pollers()
        sensor_event = await anext(sensor.run())
        return await watched, sensor_event.payload, pollers, polling.active_pollers()

    events, sensor_event, pollers, left = asyncio.run(main())
    assert [e["run_count"] for e in events] == [6] and sensor_event["status"] == "success"
    assert len(pollers) == 1 and left == []


def test_the_asset_state_store_is_preferred_when_the_triggerer_injects_one():
    class Accessor:
        def __init__(self):
            self.data = {}

        async def aget(self, key, default=None):
            return self.data.get(key, default)

        async def aset(self, key, value):
            self.data[key] = value

    class Injected:
        def __init__(self):
            self._by_name = {"a": Accessor()}
            self._by_uri = {}

    t = trigger()
    t.asset_state_store = Injected()
    found = store_for(t)
    assert isinstance(found, AssetStateWatermark)
    asyncio.run(found.set({"at": 1.0, "emitted": {}}))
    assert t.asset_state_store._by_name["a"].data[STATE_KEY] == {"at": 1.0, "emitted": {}}
    assert asyncio.run(found.get()) == {"at": 1.0, "emitted": {}}
    plain = store_for(trigger())
    assert type(plain).__name__ == "VariableWatermark" and plain.key.startswith(STATE_KEY)
