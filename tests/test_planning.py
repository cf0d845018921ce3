"""Property tests of the pure request planner: the planned queries cover [start, end) with no gap."""

from __future__ import annotations

import itertools

import pendulum
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_opsera.catalogue import ENDPOINTS, OpseraLogType, TimeStyle
from airflow_provider_opsera.planning import (
    CLOCK_SKEW,
    RANGE_ALLOWANCE,
    Piece,
    initial_pieces,
    plan,
    split_by_values,
    split_days,
    split_minutes,
    stable_until,
)

BASE = pendulum.datetime(2024, 1, 1)
moments = st.integers(min_value=0, max_value=40 * 86400 * 1000).map(
    lambda ms: BASE.add(microseconds=ms * 1000)
)
intervals = st.tuples(moments, moments).filter(lambda t: t[0] != t[1]).map(sorted)


def assert_partition(pieces: list[Piece], start, end) -> None:
    ordered = sorted(pieces, key=lambda p: p.lo)
    assert ordered[0].lo == start
    assert ordered[-1].hi == end
    for a, b in itertools.pairwise(ordered):
        assert a.hi == b.lo, f"gap or overlap between {a.describe()} and {b.describe()}"
    for p in ordered:
        assert p.lo < p.hi
        # the query's span covers the slice the piece answers for
        assert p.span_start <= p.lo and p.hi <= p.span_end


def covering_query_span(endpoint, piece: Piece):
    q = piece.query(endpoint)
    if "date" in q:
        d = pendulum.parse(q["date"])
        return d, d.add(days=1)
    if "start" in q:
        return pendulum.parse(q["start"]), pendulum.parse(q["end"])  # exclusive reading: the narrowest
    s = pendulum.parse(f"{q['start_date']}T{q['start_time']}:00Z")
    e = pendulum.parse(f"{q['end_date']}T{q['end_time']}:00Z")
    return s, e


@settings(max_examples=300, deadline=None)
@given(interval=intervals, log_type=st.sampled_from(list(OpseraLogType)))
def test_initial_pieces_cover_the_interval(interval, log_type):
    start, end = interval
    endpoint = ENDPOINTS[log_type]
    pieces = initial_pieces(endpoint, start, end, {})
    assert_partition(pieces, start, end)
    for p in pieces:
        q_start, q_end = covering_query_span(endpoint, p)
        # Under the narrowest reading of the parameters (end exclusive), the query still covers the slice.
        assert q_start <= p.lo and p.hi <= q_end, (p.describe(), p.query(endpoint))


@settings(max_examples=300, deadline=None)
@given(interval=intervals, depth=st.integers(1, 3), parts=st.integers(2, 50))
def test_repeated_splits_keep_covering(interval, depth, parts):
    start, end = interval
    for log_type in (OpseraLogType.USER_ACTIVITY, OpseraLogType.AUDIT):
        endpoint = ENDPOINTS[log_type]
        pieces = initial_pieces(endpoint, start, end, {})
        for _ in range(depth):
            nxt = []
            for p in pieces:
                if endpoint.time_style is TimeStyle.MINUTES:
                    nxt.extend(split_minutes(p, parts) if p.minutes > 1 else [p])
                else:
                    nxt.extend(split_days(p) if p.days > 1 else [p])
            pieces = nxt
        assert_partition(pieces, start, end)
        for p in pieces:
            q_start, q_end = covering_query_span(endpoint, p)
            assert q_start <= p.lo and p.hi <= q_end


@given(values=st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=10))
def test_value_split_fixes_one_value_per_piece(values):
    endpoint = ENDPOINTS[OpseraLogType.USER_ACTIVITY]
    (day,) = initial_pieces(endpoint, BASE, BASE.add(days=1), {})
    children = split_by_values(day, "type", values)
    assert [c.split[1] for c in children] == list(dict.fromkeys(values))
    for c in children:
        assert c.query(endpoint)["type"] == c.split[1]
        assert (c.lo, c.hi) == (day.lo, day.hi)


def test_single_day_endpoints_ask_per_day():
    endpoint = ENDPOINTS[OpseraLogType.TOKEN_ACTIVITY]
    pieces = initial_pieces(endpoint, BASE.add(hours=5), BASE.add(days=2, hours=1), {"scope": "api"})
    assert [p.query(endpoint) for p in pieces] == [
        {"date": "2024-01-01", "scope": "api"},
        {"date": "2024-01-02", "scope": "api"},
        {"date": "2024-01-03", "scope": "api"},
    ]


def test_v2_window_is_minute_precision_with_a_margin():
    endpoint = ENDPOINTS[OpseraLogType.AUDIT]
    (p,) = initial_pieces(endpoint, BASE.add(seconds=90), BASE.add(days=1), {})
    assert p.query(endpoint) == {
        "start_date": "2024-01-01",
        "start_time": "00:00",
        "end_date": "2024-01-02",
        "end_time": "00:00",
    }


@settings(max_examples=300, deadline=None)
@given(interval=intervals, now=moments, log_type=st.sampled_from(list(OpseraLogType)))
def test_pieces_planned_at_any_moment_cover_the_interval_and_only_the_last_is_live(interval, now, log_type):
    start, end = interval
    endpoint = ENDPOINTS[log_type]
    pieces = initial_pieces(endpoint, start, end, {}, now=now)
    assert_partition(pieces, start, end)
    for p in pieces:
        q_start, q_end = covering_query_span(endpoint, p)
        assert q_start <= p.lo and p.hi <= q_end
    live = [p for p in pieces if p.live]
    if endpoint.time_style is TimeStyle.MINUTES and end > stable_until(now):
        assert live == [max(pieces, key=lambda p: p.lo)] and live[0].lo == max(start, stable_until(now))
        # the pages before it cannot move: the server's now is past their end, even read as inclusive
        assert all(p.span_end.add(minutes=1) <= now - CLOCK_SKEW for p in pieces if not p.live)
    else:
        assert not live


@settings(max_examples=300, deadline=None)
@given(interval=intervals, late=st.integers(0, 3 * 86400))
def test_a_range_window_reaches_back_past_the_start_and_is_planned_only_when_cheaper(interval, late):
    start, end = interval
    now = end.add(seconds=late)
    for log_type in OpseraLogType:
        endpoint = ENDPOINTS[log_type]
        chosen = plan(endpoint, start, end, {}, now=now)
        assert chosen.pieces == initial_pieces(endpoint, start, end, {}, now=now)
        if chosen.range is None:
            continue
        assert endpoint.takes_range
        seconds = chosen.range.seconds_at(now)
        days = sum((p.span_end - p.span_start).total_seconds() for p in chosen.pieces)
        assert seconds < days
        # answered at once, on a server clock up to CLOCK_SKEW ahead, the window still starts before `start`
        assert chosen.range.reached(seconds, now.add(seconds=RANGE_ALLOWANCE.total_seconds()))
        assert not chosen.range.reached(seconds, now.add(seconds=RANGE_ALLOWANCE.total_seconds() + 1))
        assert chosen.range.query(seconds) == {"range": f"{seconds}s"}


def test_an_hour_that_just_ended_is_one_range_window_and_a_day_is_its_date():
    endpoint = ENDPOINTS[OpseraLogType.USER_ACTIVITY]
    hour = plan(
        endpoint, BASE.add(hours=9), BASE.add(hours=10), {"type": "tag"}, now=BASE.add(hours=10, seconds=5)
    )
    assert hour.range is not None and hour.range.query(hour.range.seconds_at(hour.now)) == {
        "range": "3725s",
        "type": "tag",
    }
    day = plan(endpoint, BASE, BASE.add(days=1), {}, now=BASE.add(days=1, seconds=5))
    assert day.range is None and [p.query(endpoint) for p in day.pieces] == [{"date": "2024-01-01"}]
    assert plan(endpoint, BASE, BASE.add(hours=1), {}).range is None  # no clock, no range
