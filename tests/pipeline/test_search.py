"""The search plan against an in-memory model of the pipeline-activity endpoint (no HTTP: the simulator
tests are in tests/sensors and tests/triggers).

The model answers ``range`` (up to its now), ``date`` and ``type`` with a cap, in a chosen order, with
``count`` as the total or as the page size: the readings the API notes leave open. The property: whatever
the search decides from must be exactly what the full record set says, up to the moment the server read its
clock for its newest complete answer (a record created later is in no answer yet; the next poll sees it).
"""

from __future__ import annotations

import datetime as dt
import math
import random

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from airflow_provider_opsera.exceptions import OpseraIncompleteResultError
from airflow_provider_opsera.pipeline.decision import StatusRules, Watch, decide
from airflow_provider_opsera.pipeline.search import (
    CLOCK_MARGIN,
    MIN_POLL_INTERVAL,
    REQUEST_ALLOWANCE,
    WatchSearch,
    WatchState,
    coverage_note,
    format_range,
    next_interval,
    parse_lookback,
    run_round_sync,
)

PID = "611e7dca57f4eff66e9db084"
T0 = dt.datetime(2024, 5, 10, 12, 0, tzinfo=dt.timezone.utc).timestamp()
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def ms(epoch: float) -> int:
    """Whole epoch milliseconds: the API's only precision (``createdAt``, and the server's clock)."""
    return math.floor(epoch * 1000)


def iso(epoch: float) -> str:
    return (
        dt.datetime.fromtimestamp(ms(epoch) // 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        + f".{ms(epoch) % 1000:03d}Z"
    )


class Account:
    """An in-memory pipeline-activity endpoint with a clock.

    Like the API (and the simulator) it knows times only to the millisecond: a record's time is its
    ``createdAt``, and a ``range`` window ends at the server's clock, read half-way through the request. A
    record created after that reading is in no answer, however soon the client looks at it.
    """

    def __init__(
        self, *, sort: str = "desc", count_mode: str = "total", latency: float = 0.05, seed: int = 0
    ):
        self.records: list[tuple[int, dict]] = []
        self.sort, self.count_mode, self.latency = sort, count_mode, latency
        self.now = T0
        self.rng = random.Random(seed)
        self.calls: list[dict[str, str]] = []
        #: The server's clock (ms) at its newest complete answer that reached up to its now: no answer so far
        #: can say anything about records created after it.
        self.answered_ms: int | None = None
        self._n = 0

    def add(self, at: float, **fields) -> dict:
        self._n += 1
        record = {"_id": f"{ms(at):015d}{self._n:09d}", "createdAt": iso(at), **fields}
        self.records.append((ms(at), record))
        return record

    def background(self, start: float, end: float, per_hour: int, types=("sdlc", "sfdc", "ai-ml", "sql")):
        step = 3600 / per_hour
        t, i = start, 0
        while t < end:
            self.add(
                t,
                pipeline_id=f"other{i % 37:019d}",
                run_count=1 + i % 300,
                step_name="build",
                status="success",
                type=types[i % len(types)],
            )
            t, i = t + step, i + 1

    def clock(self) -> float:
        return self.now

    def fetch(self, params: dict[str, str]) -> tuple[int | None, list[dict]]:
        self.calls.append(dict(params))
        self.now += self.latency / 2  # the server reads its clock half-way through the request
        now_ms = ms(self.now)
        if "range" in params:
            value = params["range"]
            lo, hi = now_ms - int(value[:-1]) * UNITS[value[-1]] * 1000, now_ms
        else:
            day = ms(dt.datetime.fromisoformat(params["date"]).replace(tzinfo=dt.timezone.utc).timestamp())
            lo, hi = day, min(day + 86400_000 - 1, now_ms)
        match = [
            (t, r)
            for t, r in self.records
            if lo <= t <= hi and ("type" not in params or r.get("type") == params["type"])
        ]
        if self.sort == "desc":
            match.sort(key=lambda p: -p[0])
        elif self.sort == "asc":
            match.sort(key=lambda p: p[0])
        else:
            self.rng.shuffle(match)
        limit = min(int(params.get("count", 1000)), 1000)
        page = [dict(r) for _, r in match[:limit]]
        if len(match) < limit and hi == now_ms:
            self.answered_ms = now_ms
        self.now += self.latency / 2
        return (len(match) if self.count_mode == "total" else len(page)), page

    def truth(self, watch: Watch, since: float, until: float | None = None):
        """The decision from every record created in ``[since, until]``; ``until`` defaults to the server's
        clock at its newest complete answer reaching up to its now (what the API could have told by then)."""
        hi = ms(until) if until is not None else self.answered_ms
        assert hi is not None, "no complete answer yet"
        return decide(
            watch, StatusRules(), [r for t, r in self.records if math.ceil(since * 1000) <= t <= hi]
        )


def first_look(account: Account, watch: Watch, lookback: str, **kwargs) -> WatchSearch:
    search = WatchSearch(watch, None, lookback_s=parse_lookback(lookback), now=account.now, **kwargs)
    run_round_sync(search, account.fetch, account.clock)
    return search


def poll(account: Account, search: WatchSearch, after: float):
    account.now += after
    search.start_poll()
    return run_round_sync(search, account.fetch, account.clock)


def run_event(account: Account, at: float, status: str, run: int = 174, step: str = "anchore", **extra):
    return account.add(
        at,
        pipeline_id=PID,
        run_count=run,
        step_name=step,
        step_id=f"s-{step}",
        status=status,
        type="sdlc",
        message=f"{step} {status}",
        **extra,
    )


def test_parse_lookback_and_format_range():
    assert parse_lookback("1d") == 86400
    assert parse_lookback(" 90M ") == 5400
    assert parse_lookback("1.5h") == 5400
    assert parse_lookback("2w") == 1209600
    assert parse_lookback(45) == 45
    assert parse_lookback(dt.timedelta(minutes=2)) == 120
    for bad in ("1y", "", "d", "-1d", 0, "0s", True):
        with pytest.raises(ValueError):
            parse_lookback(bad)
    assert [format_range(s) for s in (86400, 5400, 61, 604800, 0)] == ["1d", "90m", "61s", "1w", "1s"]


def test_next_interval_keeps_the_next_poll_window_under_the_cap():
    assert next_interval(WatchState(horizon=0.0), 60.0) == 60.0  # no poll yet: as asked
    assert next_interval(WatchState(horizon=0.0, rate=0.1), 60.0) == 60.0  # a quiet account: as asked
    busy = WatchState(horizon=0.0, rate=10.0)  # 10 records a second: 500 (half the cap) in 50 s
    assert next_interval(busy, 60.0) == pytest.approx(50 - CLOCK_MARGIN - REQUEST_ALLOWANCE)
    assert next_interval(WatchState(horizon=0.0, rate=1000.0), 60.0) == MIN_POLL_INTERVAL


def test_a_quiet_account_is_one_request_and_complete():
    account = Account()
    account.background(T0 - 86400, T0, per_hour=20)
    record = run_event(account, T0 - 3600, "analyzing")
    search = first_look(account, Watch(PID, step_name="anchore"), "1d")
    assert account.calls == [{"range": "1d", "count": "1000"}]
    assert search.state.complete
    assert decide(search.watch, StatusRules(), search.state.records).record == record


@pytest.mark.parametrize("sort", ["desc", "asc", "random"])
@pytest.mark.parametrize("count_mode", ["total", "page"])
def test_a_busy_account_narrows_and_never_trusts_a_capped_answer(sort, count_mode):
    account = Account(sort=sort, count_mode=count_mode)
    account.background(T0 - 7200, T0 + 600, per_hour=10_000)
    old = run_event(account, T0 - 3000, "success")  # beyond what a complete window can reach
    new = run_event(account, T0 - 30, "analyzing")
    watch = Watch(PID, step_name="anchore")
    search = first_look(account, watch, "2h")
    assert search.stats.capped >= 1
    assert len(account.calls[-1]) == 2 and "range" in account.calls[-1]
    assert not search.state.complete
    assert decide(watch, StatusRules(), search.state.records).record == new
    assert old not in search.state.records
    # Later polls ask only for what is new: one request, about a poll's worth of the busy account.
    stats = poll(account, search, 5)
    assert stats.requests == 1 and not stats.capped
    assert stats.records < 10_000 / 3600 * (5 + 2 * CLOCK_MARGIN)
    done = run_event(account, account.now + 2, "failed")
    poll(account, search, 5)
    assert decide(watch, StatusRules(), search.state.records).record == done


def test_a_busy_account_before_the_run_reached_the_step_waits_and_says_why():
    account = Account()
    account.background(T0 - 7200, T0, per_hour=10_000)
    run_event(account, T0 - 5000, "success", run=173)
    run_event(account, T0 - 20, "running", run=174, step="build")
    search = first_look(account, Watch(PID, step_name="anchore"), "2h")
    decision = decide(search.watch, StatusRules(), search.state.records)
    assert decision.record is None and "run 174" in decision.reason
    # It tried today's whole day (capped) and says the lookback could not be proven.
    assert any("date" in c for c in account.calls)
    assert any("Could not prove the lookback complete" in n for n in search.take_notes())


def test_the_warning_names_what_a_capped_answer_showed_but_could_not_prove():
    account = Account(sort="asc")  # a capped answer holds the oldest records of its window
    account.background(T0 - 7200, T0, per_hour=10_000)
    run_event(account, T0 - 7000, "success")
    search = first_look(account, Watch(PID, step_name="anchore"), "2h")
    assert decide(search.watch, StatusRules(), search.state.records).record is None
    note = coverage_note(search)
    assert note and "Only the newest" in note and "'success'" in note and "cannot be proven" in note


def test_no_warning_when_the_lookback_was_read_whole():
    account = Account()
    account.background(T0 - 3600, T0, per_hour=100)
    search = first_look(account, Watch(PID), "1h")
    assert search.state.complete and coverage_note(search) is None


def test_whole_days_extend_what_a_narrowed_range_proves():
    account = Account(count_mode="page")
    # ~700 records a day for four days: range=4d is capped, each day alone is not.
    account.background(T0 - 4 * 86400, T0, per_hour=30)
    found = run_event(account, T0 - 2.5 * 86400, "failed", run=174)
    search = first_look(account, Watch(PID, run_count=174), "4d")
    assert [c for c in account.calls if "date" in c]
    assert decide(search.watch, StatusRules(), search.state.records).record == found
    assert not search.take_notes()


def test_whole_days_stop_at_the_horizon_and_make_coverage_complete():
    account = Account()
    account.background(T0 - 3 * 86400, T0, per_hour=30)
    search = first_look(account, Watch(PID, step_name="anchore"), "3d")
    assert search.state.complete
    assert search.state.covered_from == search.state.horizon
    days = [c["date"] for c in account.calls if "date" in c]
    assert days == sorted(days, reverse=True) and len(days) <= 4


def test_a_capped_poll_restarts_coverage_with_a_warning():
    account = Account()
    account.background(T0 - 3600, T0 + 7200, per_hour=10_000)
    run_event(account, T0 - 60, "analyzing")
    search = first_look(account, Watch(PID, step_name="anchore"), "1h")
    stats = poll(account, search, 900)  # 15 minutes of a busy account: more than one answer holds
    assert stats.capped >= 1 and search.state.gaps == 1
    assert any("since the last poll" in n for n in search.take_notes())
    # What was known before the gap is not used: the record may have been superseded in the gap.
    assert decide(search.watch, StatusRules(), search.state.records).record is None
    done = run_event(account, account.now + 1, "success")
    poll(account, search, 3)
    assert decide(search.watch, StatusRules(), search.state.records).record == done


def test_a_slow_answer_is_asked_again_before_coverage_is_trusted():
    account = Account(latency=0.05)
    account.background(T0 - 3600, T0 + 600, per_hour=100)
    search = first_look(account, Watch(PID), "1h")
    account.latency = 25  # longer than the allowance: the window may not reach the previous poll
    calls = len(account.calls)
    poll(account, search, 5)
    assert len(account.calls) - calls == 3  # the poll and two repolls
    assert search.state.gaps == 1


def test_pipeline_type_filters_every_query():
    account = Account()
    account.background(T0 - 3600, T0, per_hour=10_000)
    # 10,000 an hour proves about 3 minutes complete; a quarter of that (sdlc) about 12 minutes.
    mine = run_event(account, T0 - 600, "success")
    search = first_look(account, Watch(PID), "1h", pipeline_type="sdlc")
    assert all(c.get("type") == "sdlc" for c in account.calls)
    assert decide(search.watch, StatusRules(), search.state.records).record == mine


def test_more_than_a_cap_in_one_second_is_an_error():
    account = Account()
    for _ in range(1200):
        account.add(T0 - 0.5, pipeline_id="x", status="success", run_count=1)
    with pytest.raises(OpseraIncompleteResultError, match="one second"):
        first_look(account, Watch(PID), "1h")


def test_state_round_trips_through_json():
    import json

    account = Account()
    account.background(T0 - 3600, T0, per_hour=10_000)
    run_event(account, T0 - 10, "analyzing")
    search = first_look(account, Watch(PID), "1h")
    data = json.loads(json.dumps(search.state.to_json()))
    assert WatchState.from_json(data) == search.state
    resumed = WatchSearch(Watch(PID), WatchState.from_json(data), lookback_s=3600, now=account.now)
    account.now += 2
    run_round_sync(resumed, account.fetch, account.clock)
    assert resumed.stats.requests == 1


@pytest.mark.parametrize("before", [False, True])
def test_a_record_created_while_the_answer_travels_is_seen_by_the_next_poll(before):
    """The server reads its clock half-way through a request: a record created after that is in no answer.

    The first look decides from what the server could answer (the record before, or nothing) and the next
    poll, reaching back past the previous one, sees the new record.
    """
    account = Account(latency=0.05)
    old = run_event(account, T0, "analyzing") if before else None
    new = run_event(account, T0 + 0.03125, "success")  # after the server's clock (T0 + 0.025), before receipt
    search = first_look(account, Watch(PID), "2h")
    assert account.now > T0 + 0.03125 and account.answered_ms == ms(T0 + 0.025)
    assert search.state.complete and not search.state.gaps
    assert decide(search.watch, StatusRules(), search.state.records).record == old
    assert account.truth(search.watch, search.state.horizon).record == old
    assert account.truth(search.watch, search.state.horizon, until=account.now).record == new
    poll(account, search, 1.0)
    assert decide(search.watch, StatusRules(), search.state.records).record == new
    assert account.truth(search.watch, search.state.horizon).record == new


# -- the property -------------------------------------------------------------------------------------------
events = st.lists(
    st.tuples(
        st.floats(-7000, 600),  # seconds from T0
        st.sampled_from(["analyzing", "running", "success", "failed"]),
        st.sampled_from(["anchore", "build"]),
    ),
    max_size=8,
)


def run_at(offset: float) -> int:
    """Runs follow each other in time (run counts grow), as the search assumes."""
    return 173 if offset < -4000 else 174 if offset < -1000 else 175


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Records created after the server read its clock, before the answer arrived (in no answer until the next poll).
@example(
    events=[(0.0, "analyzing", "anchore"), (0.03125, "analyzing", "anchore")],
    per_hour=0,
    sort="desc",
    count_mode="total",
    watch=Watch(PID),
    pauses=[1.0],
)
@example(
    events=[(0.03125, "analyzing", "anchore")],
    per_hour=0,
    sort="desc",
    count_mode="total",
    watch=Watch(PID),
    pauses=[1.0],
)
@given(
    events=events,
    per_hour=st.sampled_from([0, 50, 3000, 10_000]),
    sort=st.sampled_from(["desc", "asc", "random"]),
    count_mode=st.sampled_from(["total", "page"]),
    watch=st.sampled_from(
        [Watch(PID), Watch(PID, step_name="anchore"), Watch(PID, run_count=174, step_name="build")]
    ),
    pauses=st.lists(st.floats(0.5, 400), min_size=1, max_size=4),
)
def test_whatever_the_search_decides_from_is_the_truth(events, per_hour, sort, count_mode, watch, pauses):
    account = Account(sort=sort, count_mode=count_mode)
    if per_hour:
        account.background(T0 - 7200, T0 + 2000, per_hour=per_hour)
    for offset, status, step in events:
        run_event(account, T0 + offset, status, run=run_at(offset), step=step)
    search = first_look(account, watch, "2h")

    def check() -> None:
        known = decide(watch, StatusRules(), search.state.records)
        truth = account.truth(watch, search.state.horizon)
        if known.record is not None:
            # Decided from: must be exactly the newest record of the watched run and step.
            assert known.record == truth.record
        elif search.state.complete and not search.state.gaps:
            # Everything was seen: nothing to decide from means there is nothing.
            assert truth.record is None

    check()
    for pause in pauses:
        poll(account, search, pause)
        check()
