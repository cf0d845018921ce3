"""Every injected fault kind, its targeting and consumption, and latency."""

from __future__ import annotations

import json
import threading
import time
from email.utils import parsedate_to_datetime

import pytest
import requests

from airflow_provider_opsera.testing import FAULT_KINDS, OpseraSimulator

DAY, NEXT = "2024-05-08", "2024-05-09"


@pytest.fixture
def loaded(sim: OpseraSimulator) -> OpseraSimulator:
    sim.generate("pipeline_activity", "2024-05-07", "2024-05-10", 900)
    sim.generate("audit", "2024-05-07", "2024-05-10", 900)
    return sim


def test_429_with_and_without_retry_after(loaded: OpseraSimulator, api):
    loaded.inject("429")
    loaded.inject("429", retry_after=3)
    loaded.inject("429", retry_after="http-date")
    first, second, third = (api.get("audit") for _ in range(3))
    assert first.status_code == second.status_code == third.status_code == 429
    assert "Retry-After" not in first.headers and second.headers["Retry-After"] == "3"
    assert 0 < parsedate_to_datetime(third.headers["Retry-After"]).timestamp() - time.time() <= 2
    assert api.get("audit").status_code == 200
    assert [r.fault for r in loaded.requests] == ["429", "429", "429", None]


@pytest.mark.parametrize("kind", ["500", "502", "503", "504"])
def test_gateway_errors_have_html_bodies(loaded: OpseraSimulator, api, kind):
    loaded.inject(kind, times=2)
    for _ in range(2):
        response = api.get("pipeline_activity", date=DAY)
        assert response.status_code == int(kind)
        assert response.headers["Content-Type"].startswith("text/html") and "<html>" in response.text
    assert api.get("pipeline_activity", date=DAY).status_code == 200
    assert loaded.request_count(status=int(kind)) == 2


def test_resets_before_and_mid_body(loaded: OpseraSimulator, api):
    loaded.inject("reset_before")
    with pytest.raises(requests.ConnectionError):
        api.get("pipeline_activity", date=DAY)
    loaded.inject("reset_mid_body")
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
        api.get("pipeline_activity", date=DAY)
    assert api.get("pipeline_activity", date=DAY).status_code == 200
    logged = loaded.requests
    assert [(r.status, r.fault) for r in logged] == [
        (0, "reset_before"),
        (200, "reset_mid_body"),
        (200, None),
    ]


def test_slow_answers_late_and_does_not_block_others(loaded: OpseraSimulator, api):
    loaded.inject("slow", delay=0.6)
    with pytest.raises(requests.exceptions.ReadTimeout):
        api.get("audit", timeout=0.2)
    loaded.inject("slow", delay=0.5)
    started = time.monotonic()
    box: dict[str, requests.Response] = {}
    slow = threading.Thread(target=lambda: box.setdefault("r", api.get("audit")))
    slow.start()
    time.sleep(0.05)
    fast = requests.get(
        api.sim.url + "/api/v2/logs/audit/user", headers={"Authorization": f"Bearer {api.sim.token}"}
    )
    assert fast.status_code == 200 and "r" not in box  # answered while the slow one still waits
    slow.join()
    assert box["r"].status_code == 200 and time.monotonic() - started >= 0.5


def test_latency_is_awaited_per_request(loaded: OpseraSimulator):
    loaded.config.latency = 0.4
    url = loaded.url + "/api/v2/logs/audit/user"
    headers = {"Authorization": f"Bearer {loaded.token}"}
    started = time.monotonic()
    threads = [
        threading.Thread(target=requests.get, args=(url,), kwargs={"headers": headers}) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 0.4 <= time.monotonic() - started < 1.5  # in parallel: one after another would take 1.6 s


def test_body_faults(loaded: OpseraSimulator, api):
    loaded.inject("malformed_json")
    response = api.get("pipeline_activity", date=DAY)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)
    loaded.inject("missing_data")
    assert set(api.ok("pipeline_activity", date=DAY)) == {"count"}
    loaded.inject("data_not_list")
    assert api.ok("pipeline_activity", date=DAY) == {"count": 1, "data": {}}


@pytest.mark.parametrize(
    ("kind", "field"), [("record_missing_id", "_id"), ("record_missing_created_at", "createdAt")]
)
def test_one_record_lacks_a_field(loaded: OpseraSimulator, api, kind, field):
    loaded.inject(kind)
    data = api.ok("audit", page_size=50)["data"]
    assert len(data) == 50 and sum(field not in r for r in data) == 1


def test_duplicates_outside_window_and_changing_total(loaded: OpseraSimulator, api):
    loaded.inject("duplicate_records", n=4)
    data = api.ok("audit", start_date=DAY, end_date=DAY, page_size=50)["data"]
    assert len(data) == 54 and len({r["_id"] for r in data}) == 50
    loaded.inject("outside_window", n=4)
    data = api.ok("pipeline_activity", date=DAY)["data"]
    outside = [r for r in data if not r["createdAt"].startswith(DAY)]
    assert len(outside) == 4 and {r["createdAt"][:10] for r in outside} == {"2024-05-07", NEXT}
    truth = api.ok("audit", start_date=DAY, end_date=DAY)["count"]
    loaded.inject("total_changes", delta=-3)
    assert api.ok("audit", start_date=DAY, end_date=DAY)["count"] == truth - 3
    assert api.ok("audit", start_date=DAY, end_date=DAY)["count"] == truth
    assert [r.fault for r in loaded.requests] == [
        "duplicate_records",
        "outside_window",
        None,
        "total_changes",
        None,
    ]


def test_data_faults_wait_for_a_page_with_records(loaded: OpseraSimulator, api):
    loaded.inject("record_missing_id", log_type="audit")
    assert api.ok("audit", start_date="2023-01-01", end_date="2023-01-01")["data"] == []
    assert api.get("audit", page_size="5000").status_code == 422
    assert api.ok("pipeline_activity", date=DAY)["data"][0]["_id"]
    data = api.ok("audit", page_size=10)["data"]
    assert sum("_id" not in r for r in data) == 1
    assert [r.fault for r in loaded.requests] == [None, None, None, "record_missing_id"]


def test_rules_target_log_types_and_are_consumed_in_order(loaded: OpseraSimulator, api):
    loaded.inject("503", log_type="audit", times=2)
    loaded.inject("500", times=None, log_type="pipeline_activity")
    assert api.get("pipeline_activity").status_code == 500
    assert api.get("audit").status_code == 503
    assert api.get("audit").status_code == 503
    assert api.get("audit").status_code == 200
    assert api.get("pipeline_activity").status_code == 500
    loaded.clear_faults()
    assert api.get("pipeline_activity").status_code == 200


def test_random_faults_are_seeded(loaded: OpseraSimulator, api):
    def run(seed: int) -> list[int]:
        loaded.clear_faults()
        loaded.inject_random(0.5, ["429", "502", "missing_data"], seed=seed)
        return [api.get("audit").status_code for _ in range(30)]

    first = run(1)
    assert first == run(1)
    assert 5 < sum(s != 200 for s in first) < 25 and {429, 502} <= set(first)
    loaded.clear_faults()
    loaded.inject("500", times=3, probability=0.5)
    statuses = [api.get("audit").status_code for _ in range(40)]
    assert statuses.count(500) == 3


def test_inject_refuses_typos():
    simulator = OpseraSimulator()
    with pytest.raises(ValueError, match="unknown fault kind"):
        simulator.inject("418")
    with pytest.raises(ValueError, match="does not take"):
        simulator.inject("slow", dealy=3)
    with pytest.raises(ValueError):
        simulator.inject("500", times=0)
    assert "outside_window" in FAULT_KINDS and len(FAULT_KINDS) == 17
