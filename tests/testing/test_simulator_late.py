"""Late records and records updated in place: what the simulator serves before and after."""

from __future__ import annotations

import datetime as dt

import pytest

DAY = "2024-05-09"


def record(i: int, created: str, **fields):
    return {"_id": f"late{i:020d}", "createdAt": created, "updatedAt": created, "type": "pipeline", **fields}


def test_a_late_record_appears_only_after_its_delay(sim, clock, api):
    sim.add_records("audit", [record(1, "2024-05-10T11:00:00.000Z")])
    sim.add_late_records("audit", [record(2, "2024-05-10T11:59:00.000Z")], delay=dt.timedelta(minutes=30))
    window = {
        "start_date": "2024-05-10",
        "start_time": "11:00",
        "end_date": "2024-05-10",
        "end_time": "12:00",
    }

    body = api.ok("audit", page_size=100, **window)
    assert (body["count"], [r["_id"] for r in body["data"]]) == (1, [record(1, "")["_id"]])
    assert len(sim.ground_truth("audit", "2024-05-10T11:00:00Z", "2024-05-10T12:00:00Z")) == 1

    clock.advance(28 * 60)  # 12:28: a minute before it is persisted (11:59 + 30 min)
    assert api.ok("audit", page_size=100, **window)["count"] == 1
    clock.advance(60)
    body = api.ok("audit", page_size=100, **window)
    assert body["count"] == 2
    assert {r["_id"] for r in body["data"]} == {record(1, "")["_id"], record(2, "")["_id"]}
    assert len(sim.ground_truth("audit", "2024-05-10T11:00:00Z", "2024-05-10T12:00:00Z")) == 2


def test_per_record_delays_and_v1_days(sim, clock, api):
    late = [record(3, "2024-05-10T01:00:00.000Z"), record(4, "2024-05-10T02:00:00.000Z")]
    sim.add_late_records("user_activity", late, delay={late[0]["_id"]: 0, late[1]["_id"]: 86400})
    assert [r["_id"] for r in api.ok("user_activity", date="2024-05-10")["data"]] == [late[0]["_id"]]
    clock.advance(86400)  # the second one's createdAt + 1 day has passed
    assert len(api.ok("user_activity", date="2024-05-10")["data"]) == 2
    # filters still apply to late records
    assert api.ok("user_activity", date="2024-05-10", type="registry")["data"] == []


def test_a_record_updated_in_place_is_served_with_its_new_content(sim, clock, api):
    sim.add_records("pipeline_activity", [record(5, "2024-05-10T10:00:00.000Z", status="running")])
    clock.advance(60)
    new = sim.update_record("pipeline_activity", record(5, "")["_id"], status="success")
    assert new["status"] == "success"
    assert new["updatedAt"] == "2024-05-10T12:01:00.000Z"  # the simulator's clock
    assert new["createdAt"] == "2024-05-10T10:00:00.000Z"
    (served,) = api.ok("pipeline_activity", date="2024-05-10")["data"]
    assert served == new
    # late records can be updated as well; _id and createdAt cannot change
    sim.add_late_records("pipeline_activity", [record(6, "2024-05-10T10:30:00.000Z")], delay=0)
    assert sim.update_record("pipeline_activity", record(6, "")["_id"], status="failed")["status"] == "failed"
    with pytest.raises(ValueError, match="keeps the record's _id and createdAt"):
        sim.update_record("pipeline_activity", record(6, "")["_id"], createdAt="2024-05-10T10:31:00.000Z")
    with pytest.raises(KeyError):
        sim.update_record("pipeline_activity", "nope", status="x")
