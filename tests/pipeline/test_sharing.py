"""coalesce: which pending queries one request answers."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_opsera.pipeline.search import Kind, Query
from airflow_provider_opsera.pipeline.sharing import SHARE_SLACK, coalesce


def test_polls_with_near_frontiers_share_one_request_from_the_oldest():
    pending = [("a", Query(Kind.POLL, anchor=100.0)), ("b", Query(Kind.POLL, anchor=103.0))]
    (group,) = coalesce(pending)
    assert group.query.anchor == 100.0
    assert [(m, q.anchor) for m, q in group.members] == [("b", 103.0), ("a", 100.0)]


def test_a_lagging_frontier_gets_its_own_request():
    pending = [
        ("a", Query(Kind.POLL, anchor=100.0)),
        ("late", Query(Kind.POLL, anchor=100.0 - SHARE_SLACK - 1)),
    ]
    groups = coalesce(pending)
    assert sorted(g.query.anchor for g in groups) == [100.0 - SHARE_SLACK - 1, 100.0]


def test_looks_and_days_share_only_when_identical():
    day = dt.date(2024, 5, 10)
    pending = [
        ("a", Query(Kind.LOOK, range_s=86400)),
        ("b", Query(Kind.LOOK, range_s=86400)),
        ("c", Query(Kind.LOOK, range_s=3600)),
        ("d", Query(Kind.DAY, day=day)),
        ("e", Query(Kind.DAY, day=day)),
    ]
    groups = {
        (g.query.kind, g.query.range_s, g.query.day): sorted(m for m, _ in g.members)
        for g in coalesce(pending)
    }
    assert groups == {
        (Kind.LOOK, 86400, None): ["a", "b"],
        (Kind.LOOK, 3600, None): ["c"],
        (Kind.DAY, None, day): ["d", "e"],
    }


@given(st.lists(st.floats(min_value=0, max_value=10_000, allow_nan=False), min_size=1, max_size=40))
def test_every_poll_is_answered_once_by_a_superset_within_the_slack(anchors):
    pending = [(i, Query(Kind.POLL, anchor=a)) for i, a in enumerate(anchors)]
    groups = coalesce(pending)
    members = sorted(m for g in groups for m, _ in g.members)
    assert members == list(range(len(anchors)))
    for g in groups:
        own = [q.anchor for _, q in g.members]
        assert g.query.anchor == min(own)  # the shared window reaches back to every member's frontier
        assert max(own) - min(own) <= SHARE_SLACK
