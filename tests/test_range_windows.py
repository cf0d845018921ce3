"""Recent v1 intervals read through ``range`` (issue 13, item 3), against the simulator on a controlled clock.

An interval that ended moments ago is one ``range`` window reaching back past its start: one request instead of
the whole day and its split, and complete even where the whole day is over the cap and cannot be split.
"""

from __future__ import annotations

import dataclasses

import pendulum
import pytest

from airflow_provider_opsera import OpseraIncompleteResultError
from airflow_provider_opsera.catalogue import ENDPOINTS, OpseraLogType
from airflow_provider_opsera.hooks.opsera import OpseraHook
from airflow_provider_opsera.planning import CLOCK_SKEW, RANGE_ALLOWANCE
from airflow_provider_opsera.testing import OpseraSimulator

DAY = pendulum.datetime(2024, 5, 10)


class Clock:
    """The simulator's and the worker's clock, moved by the test."""

    def __init__(self, now: pendulum.DateTime) -> None:
        self.now = now

    def __call__(self) -> pendulum.DateTime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(DAY)


@pytest.fixture
def sim(clock, monkeypatch):
    with OpseraSimulator(seed=13, clock=clock) as simulator:
        monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", simulator.connection_json())
        yield simulator


def ids(records) -> list[str]:
    return sorted(r["_id"] for r in records)


def extract(sim, clock, log_type, start, end, filters=None):
    """One run: the records, and the requests it made (counted by the simulator)."""
    sim.reset_requests()
    hook = OpseraHook(clock=clock)
    records = list(hook.iter_logs(log_type, start, end, filters))
    assert len(records) == len({r["_id"] for r in records})
    return records, sim.request_count(log_type), sim.requests


def without_range(monkeypatch, log_type: OpseraLogType) -> None:
    """The provider as it was before item 3: the endpoint's ``range`` unused."""
    monkeypatch.setitem(ENDPOINTS, log_type, dataclasses.replace(ENDPOINTS[log_type], takes_range=False))


def test_an_hourly_user_activity_run_makes_one_request_instead_of_splitting_the_day(
    sim, clock, monkeypatch, capsys
):
    # 1500 records a day: by 23:00 the day holds more than the cap, so the day plan splits it by type.
    sim.generate("user_activity", DAY, DAY.add(days=1), 1500, live=True)
    start, end = DAY.add(hours=22), DAY.add(hours=23)
    clock.now = end.add(seconds=5)  # a prompt hourly run
    truth = ids(sim.ground_truth("user_activity", start, end))
    assert 50 < len(truth) < 80

    after, after_requests, log = extract(sim, clock, "user_activity", start, end)
    assert ids(after) == truth
    assert after_requests == 1
    (request,) = log
    reach = (clock.now - start + CLOCK_SKEW + RANGE_ALLOWANCE).total_seconds()
    assert request.params == {"range": f"{int(reach)}s"} and request.n_records < 1000

    with monkeypatch.context() as m:
        without_range(m, OpseraLogType.USER_ACTIVITY)
        before, before_requests, log = extract(sim, clock, "user_activity", start, end)
    assert ids(before) == truth
    assert before_requests >= 10 and log[0].params == {"date": "2024-05-10"} and log[0].n_records == 1000
    with capsys.disabled():
        print(
            f"\nhourly user_activity run, {len(truth)} records kept: {before_requests} requests "
            f"({sum(r.n_records for r in log)} records downloaded) before range windows, {after_requests} "
            f"request ({request.n_records} records downloaded) after"
        )


def test_a_busy_pipeline_day_refused_daily_is_extracted_exactly_by_prompt_hourly_runs(sim, clock):
    # 14,400 pipeline records a day, none with a type: a day is over the cap and nothing can split it.
    sim.generate("pipeline_activity", DAY, DAY.add(days=1), 14_400, split_values=[], live=True)

    clock.now = DAY.add(days=1, seconds=5)
    truth = ids(sim.ground_truth("pipeline_activity", DAY, DAY.add(days=1)))
    assert len(truth) == 14_400
    with pytest.raises(OpseraIncompleteResultError, match="carry no type to split by"):
        list(OpseraHook(clock=clock).iter_logs("pipeline_activity", DAY, DAY.add(days=1)))

    got: list[str] = []
    for hour in range(24):
        start = DAY.add(hours=hour)
        clock.now = start.add(hours=1, seconds=5)
        records, requests, log = extract(sim, clock, "pipeline_activity", start, start.add(hours=1))
        assert requests == 1 and set(log[0].params) == {"range"}
        assert ids(records) == ids(sim.ground_truth("pipeline_activity", start, start.add(hours=1)))
        got += [r["_id"] for r in records]
    assert sorted(got) == truth  # every record of the day, exactly once


def test_a_late_hourly_run_on_a_busy_day_refuses_and_says_what_helps(sim, clock):
    sim.generate("pipeline_activity", DAY, DAY.add(days=1), 14_400, split_values=[], live=True)
    start = DAY.add(hours=5)
    clock.now = start.add(hours=4)  # three hours late: its range window holds more than the cap
    with pytest.raises(OpseraIncompleteResultError) as err:
        list(OpseraHook(clock=clock).iter_logs("pipeline_activity", start, start.add(hours=1)))
    message = str(err.value)
    assert "carry no type to split by" in message
    assert "Read first as range=14520s: the window held 1000 records, the API's cap." in message
    assert "Busy accounts" in message


def test_an_answer_too_late_to_reach_back_to_the_start_is_asked_again(sim, clock):
    sim.generate("user_activity", DAY, DAY.add(days=1), 1500, live=True)
    start, end = DAY.add(hours=22), DAY.add(hours=23)
    clock.now = end.add(seconds=5)
    # The worker's clock says the first answer came five minutes after it was planned: the server's window may
    # have started after ``start`` by then, so it is not trusted and asked again, reaching back further.
    readings = iter([clock.now, clock.now.add(minutes=5)])

    def worker_clock() -> pendulum.DateTime:
        return next(readings, clock.now.add(minutes=5))

    sim.reset_requests()
    records = list(OpseraHook(clock=worker_clock).iter_logs("user_activity", start, end))
    assert ids(records) == ids(sim.ground_truth("user_activity", start, end))
    first, second = (int(r.params["range"][:-1]) for r in sim.requests)
    assert second == first + 300


def test_old_intervals_and_whole_days_keep_the_day_plan(sim, clock):
    sim.generate("user_activity", DAY, DAY.add(days=1), 500, live=True)
    clock.now = DAY.add(days=1, minutes=5)  # a daily run: the day is cheaper than a range over a day and more
    records, requests, log = extract(sim, clock, "user_activity", DAY, DAY.add(days=1))
    assert requests == 1 and log[0].params == {"date": "2024-05-10"} and len(records) == 500
    clock.now = DAY.add(days=3)  # an hour of three days ago (a backfill): its day, not three days of range
    records, requests, log = extract(sim, clock, "user_activity", DAY.add(hours=3), DAY.add(hours=4))
    assert requests == 1 and log[0].params == {"date": "2024-05-10"}
    assert ids(records) == ids(sim.ground_truth("user_activity", DAY.add(hours=3), DAY.add(hours=4)))


def test_a_range_window_keeps_its_filters_and_a_live_interval_returns_what_exists(sim, clock):
    sim.generate("user_activity", DAY, DAY.add(days=1), 1500, live=True)
    start = DAY.add(hours=10)
    clock.now = start.add(minutes=30)  # the interval reaches into the future
    records, requests, log = extract(sim, clock, "user_activity", start, start.add(hours=1), {"type": "tag"})
    assert requests == 1 and log[0].params["type"] == "tag" and "range" in log[0].params
    assert ids(records) == ids(sim.ground_truth("user_activity", start, clock.now, {"type": "tag"}))
