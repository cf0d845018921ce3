"""Records that appear as time passes: scripted pipeline runs and a busy account's background traffic."""

from __future__ import annotations

import time

from airflow_provider_opsera.testing import OpseraSimulator

PIPELINE = "611e7dca57f4eff66e9db084"
ANCHORE = {
    "step_name": "anchore",
    "step_id": "611508513ce36642d3180dc8",
    "step_index": 2,
    "events": [
        (10, "analyzing", "Anchore Scan Started Successfully"),
        (70, "success", "Anchore Scan Completed"),
    ],
}


def _watched(api, **params) -> list[dict]:
    return [r for r in api.ok("pipeline_activity", **params)["data"] if r["pipeline_id"] == PIPELINE]


def test_scripted_run_statuses_appear_over_time(sim: OpseraSimulator, api, clock):
    build = {"step_name": "build", "events": [(0, "running"), (5, "success", "Build done")]}
    sim.script_run(PIPELINE, 174, [build, ANCHORE], user_id="60157c8c70628140f776e359")
    assert [r["status"] for r in _watched(api, range="1h")] == ["running"]
    clock.advance(10)
    newest = _watched(api, range="1h")[0]
    assert (newest["step_name"], newest["status"], newest["run_count"]) == ("anchore", "analyzing", 174)
    assert newest["api_response"] == {
        "pipelineId": PIPELINE,
        "customerId": "60157c8c70628140f776e359",
        "stepId": "611508513ce36642d3180dc8",
        "message": "Anchore Scan Started Successfully",
        "status": "analyzing",
        "runCount": 174,
        "stepIdentifier": "anchore-integrator",
    }
    assert newest["createdAt"] == clock.now.format("YYYY-MM-DDTHH:mm:ss.SSS[Z]") and newest["type"] == "sdlc"
    assert newest["tool_identifier"] == "consumer.response"
    clock.advance(59.999)
    assert _watched(api, range="1h")[0]["status"] == "analyzing"
    clock.advance(0.001)
    assert _watched(api, range="1h")[0]["status"] == "success"
    assert (
        len(sim.ground_truth("pipeline_activity", clock.now.subtract(hours=1), clock.now.add(seconds=1))) == 4
    )
    assert [r["status"] for r in _watched(api, type="sdlc")] == ["success", "analyzing", "success", "running"]


def test_scripted_run_with_explicit_start_and_no_type(sim: OpseraSimulator, api, clock):
    sim.script_run("p-2", 3, [ANCHORE], start=clock.now.subtract(minutes=5), type=None)
    records = sim.ground_truth("pipeline_activity", clock.now.subtract(hours=1), clock.now.add(seconds=1))
    assert [r["status"] for r in records] == ["analyzing", "success"] and "type" not in records[0]
    assert api.ok("pipeline_activity", type="sdlc")["count"] == 0


def test_background_traffic_is_visible_up_to_now_and_cheap(sim: OpseraSimulator, api, clock):
    sim.background_pipeline_traffic(10_000)  # from a day ago, on and on
    sim.script_run(PIPELINE, 9, [ANCHORE], start=clock.now.subtract(minutes=20))
    started = time.perf_counter()
    day = api.ok("pipeline_activity", range="1d")
    typed = api.ok("pipeline_activity", range="1d", type="sdlc")
    everything = api.ok("pipeline_activity")
    elapsed = time.perf_counter() - started
    assert 239_990 < day["count"] <= 240_002 and len(day["data"]) == 1000
    assert everything["count"] == day["count"]  # the traffic began a day ago
    assert 0.25 * day["count"] < typed["count"] < 0.45 * day["count"]
    assert {r["type"] for r in typed["data"]} == {"sdlc"}
    assert elapsed / 3 < 0.5, f"three capped answers over 240,000 records took {elapsed:.2f}s"
    now_text = clock.now.format("YYYY-MM-DDTHH:mm:ss.SSS[Z]")
    assert all(r["createdAt"] <= now_text for r in day["data"])
    assert day["data"][0]["createdAt"] > clock.now.subtract(seconds=2).format("YYYY-MM-DDTHH:mm:ss.SSS[Z]")
    # the watched run is buried under the traffic: the newest 1000 records span only six minutes
    assert not [r for r in day["data"] if r["pipeline_id"] == PIPELINE]
    watched = sim.ground_truth(
        "pipeline_activity", clock.now.subtract(hours=1), clock.now, {"pipeline_id": PIPELINE}
    )
    assert [r["status"] for r in watched] == ["analyzing", "success"]
    # five minutes are under the cap: exactly the ground truth
    recent = api.ok("pipeline_activity", range="5m")
    truth = sim.ground_truth(
        "pipeline_activity", clock.now.subtract(minutes=5), clock.now.add(microseconds=1000)
    )
    assert recent["data"] == truth[::-1] and 800 < recent["count"] < 900
    before = day["count"]
    sim.script_run(PIPELINE, 10, [ANCHORE])
    clock.advance(60)
    assert 140 < api.ok("pipeline_activity")["count"] - before < 200
    assert [r["status"] for r in _watched(api, range="1m")] == ["analyzing"]


def test_background_traffic_with_an_end_and_pipeline_ids(sim: OpseraSimulator, api, clock):
    sim.background_pipeline_traffic(
        3600, start=clock.now.subtract(hours=2), end=clock.now.subtract(hours=1), pipeline_ids=["a", "b"]
    )
    body = api.ok("pipeline_activity", count=5)
    assert body["count"] == 3600 and {r["pipeline_id"] for r in body["data"]} <= {"a", "b"}
    clock.advance(3600)
    assert api.ok("pipeline_activity")["count"] == 3600
