"""Property tests of the extraction engine against an in-memory model of the API's documented semantics.

The HTTP exchange itself is tested against the simulator (tests/hooks); here hypothesis drives the decision
logic (caps, splits, totals, shifting pages) through thousands of random data sets quickly.
"""

from __future__ import annotations

import random

import pendulum
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_opsera.catalogue import ENDPOINTS, OpseraLogType
from airflow_provider_opsera.exceptions import OpseraIncompleteResultError
from airflow_provider_opsera.extraction import Runner, drive, proof_for
from airflow_provider_opsera.planning import initial_pieces
from airflow_provider_opsera.responses import Page, Record
from airflow_provider_opsera.timeutils import created_key, sort_key

BASE = pendulum.datetime(2024, 3, 1)
TYPES = ["pipeline", "registry", "tag", "task"]


def make_records(n: int, days: int, types: list[str], seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        at = BASE.add(microseconds=1000 * rng.randrange(days * 86400 * 1000))
        out.append(
            {
                "_id": f"{i:024x}",
                "createdAt": at.format("YYYY-MM-DDTHH:mm:ss.SSS") + "Z",
                "type": rng.choice(types),
            }
        )
    return out


class FakeAPI:
    """The documented semantics, in memory: caps, day/minute parameters, type filter, count, paging."""

    def __init__(self, records, *, cap, v1_count="total", end_inclusive=True, shift=0, seed=0):
        self.records = sorted(records, key=lambda r: r["createdAt"])
        self.cap, self.v1_count, self.end_inclusive, self.shift = cap, v1_count, end_inclusive, shift
        self.rng = random.Random(seed)
        self.calls = 0

    def _window(self, params):
        if "date" in params:
            d = pendulum.parse(params["date"])
            return d, d.add(days=1)
        if "start" in params:
            e = pendulum.parse(params["end"])
            return pendulum.parse(params["start"]), e.add(days=1) if self.end_inclusive else e
        s = pendulum.parse(f"{params['start_date']}T{params['start_time']}:00Z")
        e = pendulum.parse(f"{params['end_date']}T{params['end_time']}:00Z")
        return s, e.add(minutes=1) if self.end_inclusive else e

    def fetch(self, params):
        self.calls += 1
        lo, hi = self._window(params)
        lo_k, hi_k = sort_key(lo), sort_key(hi)
        match = [
            r
            for r in self.records
            if lo_k <= created_key(r["createdAt"]) < hi_k and params.get("type", r["type"]) == r["type"]
        ]
        total = len(match)
        if "page" in params:
            size = int(params["page_size"])
            start = (int(params["page"]) - 1) * size
            if self.shift and match:
                k = (self.calls * self.shift) % len(match)
                match = match[k:] + match[:k]
            data = match[start : start + size]
        else:
            self.rng.shuffle(match)  # which records a capped response holds is not documented
            limit = min(self.cap, int(params.get("count", self.cap)))
            data = match[:limit]
            if self.v1_count == "page":
                total = len(data)
        return Page(total, [Record(r["_id"], created_key(r["createdAt"]), r["type"], r) for r in data])


def run(log_type, api, start, end, *, page_size=50, concurrency=3, threads=True):
    """The extraction's proof run by the threaded runner, or driven directly (one request at a time)."""
    endpoint = ENDPOINTS[log_type]
    endpoint = type(endpoint)(**{**endpoint.__dict__, "cap": api.cap})
    proof = proof_for(endpoint, initial_pieces(endpoint, start, end, {}), page_size=page_size)
    if threads:
        batches = Runner(proof, lambda params, call: api.fetch(params), concurrency=concurrency).batches()
    else:
        batches = drive(proof, api.fetch)
    return [r.id for batch in batches for r in batch], proof.stats


def truth(records, start, end):
    lo, hi = sort_key(start), sort_key(end)
    return sorted(r["_id"] for r in records if lo <= created_key(r["createdAt"]) < hi)


interval = st.tuples(st.integers(0, 4 * 24), st.integers(1, 4 * 24)).map(
    lambda t: (BASE.add(hours=t[0]), BASE.add(hours=t[0] + t[1]))
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 600),
    seed=st.integers(0, 10**6),
    span=interval,
    end_inclusive=st.booleans(),
    log_type=st.sampled_from([OpseraLogType.USER_ACTIVITY, OpseraLogType.PIPELINE_ACTIVITY]),
    threads=st.booleans(),
)
def test_v1_exactly_ground_truth_or_incomplete(n, seed, span, end_inclusive, log_type, threads):
    records = make_records(n, 5, TYPES, seed)
    api = FakeAPI(records, cap=60, end_inclusive=end_inclusive, seed=seed)
    start, end = span
    try:
        got, _ = run(log_type, api, start, end, threads=threads)
    except OpseraIncompleteResultError:
        # Only when some (day, type) really holds more than the cap.
        per = {}
        for r in records:
            key = (r["createdAt"][:10], r["type"])
            per[key] = per.get(key, 0) + 1
        assert max(per.values()) >= 60
        return
    assert sorted(got) == truth(records, start, end)
    assert len(got) == len(set(got))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 3000),
    seed=st.integers(0, 10**6),
    span=interval,
    shift=st.sampled_from([0, 0, 7, 31]),
    page_size=st.sampled_from([20, 50, 100]),
    threads=st.booleans(),
)
def test_v2_exactly_ground_truth(n, seed, span, shift, page_size, threads):
    records = make_records(n, 5, TYPES, seed)
    api = FakeAPI(records, cap=1000, shift=shift)
    start, end = span
    got, _stats = run(OpseraLogType.AUDIT, api, start, end, page_size=page_size, threads=threads)
    assert sorted(got) == truth(records, start, end)
    assert len(got) == len(set(got))


def test_v1_type_split_is_proven_by_the_total():
    day = (BASE, BASE.add(days=1))
    records = make_records(400, 1, TYPES, 1)
    api = FakeAPI(records, cap=150)
    got, stats = run(OpseraLogType.USER_ACTIVITY, api, *day)
    assert sorted(got) == truth(records, *day)
    # one capped request, then one per type seen in it
    assert stats.splits == 1 and api.calls == 1 + len(TYPES)


def test_v1_page_count_semantics_cannot_prove_a_split():
    records = make_records(400, 1, TYPES, 2)
    api = FakeAPI(records, cap=150, v1_count="page")
    with pytest.raises(OpseraIncompleteResultError, match="echoes"):
        run(OpseraLogType.USER_ACTIVITY, api, BASE, BASE.add(days=1))


def test_v1_unknown_type_values_are_detected():
    # 20 records of a type that neither the capped sample showed nor the docs list: the split falls short of
    # the day's total, and that is an error, not a short result.
    records = (
        make_records(120, 1, ["pipeline"], 3)
        + [{**r, "_id": "t" + r["_id"][1:]} for r in make_records(30, 1, ["tag"], 4)]
        + [{**r, "_id": "b" + r["_id"][1:]} for r in make_records(20, 1, ["brand_new"], 5)]
    )
    api = FakeAPI(records, cap=150)
    original = api.fetch

    def fetch(params):
        if "type" not in params:  # the capped sample happens to hold no brand_new record
            original(params)
            shown = [r for r in records if r["type"] != "brand_new"][:150]
            return Page(
                len(records), [Record(r["_id"], created_key(r["createdAt"]), r["type"], r) for r in shown]
            )
        return original(params)

    endpoint = ENDPOINTS[OpseraLogType.USER_ACTIVITY]
    endpoint = type(endpoint)(**{**endpoint.__dict__, "cap": 150})
    proof = proof_for(endpoint, initial_pieces(endpoint, BASE, BASE.add(days=1), {}))
    with pytest.raises(OpseraIncompleteResultError, match="the rest carry values"):
        list(drive(proof, fetch))


def test_v2_large_total_is_paged_in_bounded_windows():
    records = make_records(5000, 1, TYPES, 5)
    api = FakeAPI(records, cap=1000)
    got, stats = run(OpseraLogType.AUDIT, api, BASE, BASE.add(days=1), page_size=10)
    assert sorted(got) == truth(records, BASE, BASE.add(days=1))
    assert stats.splits >= 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 1500),
    seed=st.integers(0, 10**6),
    log_type=st.sampled_from([OpseraLogType.USER_ACTIVITY, OpseraLogType.AUDIT]),
)
def test_a_proof_does_not_depend_on_the_order_responses_arrive_in(n, seed, log_type):
    """The proofs are pure state machines: fed the answers in any order, they yield the same set."""
    records = make_records(n, 2, TYPES, seed)
    api = FakeAPI(records, cap=300 if log_type is OpseraLogType.USER_ACTIVITY else 1000, seed=seed)
    endpoint = ENDPOINTS[log_type]
    endpoint = type(endpoint)(**{**endpoint.__dict__, "cap": api.cap})
    start, end = BASE, BASE.add(days=2)
    proof = proof_for(endpoint, initial_pieces(endpoint, start, end, {}), page_size=40)
    rng = random.Random(seed)
    pending, got = proof.start(), []
    try:
        while pending:
            ask = pending.pop(rng.randrange(len(pending)))
            step = proof.feed(ask, api.fetch(ask.params))
            got += [r.id for r in step.records]
            pending += step.asks
    except OpseraIncompleteResultError:
        per = {}
        for r in records:
            per[(r["createdAt"][:10], r["type"])] = per.get((r["createdAt"][:10], r["type"]), 0) + 1
        assert max(per.values()) >= api.cap
        return
    assert sorted(got) == truth(records, start, end)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 1500),
    seed=st.integers(0, 10**6),
    log_type=st.sampled_from([OpseraLogType.USER_ACTIVITY, OpseraLogType.AUDIT]),
    page_size=st.sampled_from([40, 400]),
)
def test_an_id_seen_twice_keeps_its_greatest_updated_at_in_any_order(n, seed, log_type, page_size):
    """Answers carry older versions of some of their records, before or after the newest one, and the
    proof is fed them in a random order: each record comes once, as its newest version."""
    records = [{**r, "updatedAt": r["createdAt"]} for r in make_records(n, 2, TYPES, seed)]
    api = FakeAPI(records, cap=300 if log_type is OpseraLogType.USER_ACTIVITY else 1000, seed=seed)
    rng = random.Random(seed)
    newest = {r["_id"]: r["updatedAt"] for r in records}

    def fetch(params):
        page = api.fetch(params)
        out = list(page.records)
        for rec in rng.sample(page.records, min(3, len(page.records))):
            stale = {**rec.payload, "updatedAt": "2000-01-01T00:00:00.000Z"}
            out.insert(rng.randrange(len(out) + 1), rec._replace(payload=stale, updated=stale["updatedAt"]))
        return Page(page.count, [r if r.updated else r._replace(updated=r.payload["updatedAt"]) for r in out])

    endpoint = ENDPOINTS[log_type]
    endpoint = type(endpoint)(**{**endpoint.__dict__, "cap": api.cap})
    start, end = BASE, BASE.add(days=2)
    proof = proof_for(endpoint, initial_pieces(endpoint, start, end, {}), page_size=page_size)
    pending, got = proof.start(), []
    try:
        while pending:
            ask = pending.pop(rng.randrange(len(pending)))
            step = proof.feed(ask, fetch(ask.params))
            got += step.records
            pending += step.asks
    except OpseraIncompleteResultError:
        assert log_type is OpseraLogType.USER_ACTIVITY  # a (day, type) over the cap, as above
        return
    assert sorted(r.id for r in got) == truth(records, start, end)
    assert all(r.payload["updatedAt"] == newest[r.id] for r in got)


# -- a v2 window that streams: what it remembers of the records it passed on ---------------------------------
def _versioned(n: int) -> list[dict]:
    return [{**r, "updatedAt": r["createdAt"]} for r in make_records(n, 1, TYPES, 11)]


def _with_updated(page: Page) -> Page:
    return Page(page.count, [r._replace(updated=r.payload["updatedAt"]) for r in page.records])


def _newer(record: dict) -> Record:
    changed = {**record, "updatedAt": "2024-03-02T12:00:00.000Z", "action": "changed"}
    return Record(
        changed["_id"], created_key(changed["createdAt"]), changed["type"], changed, changed["updatedAt"]
    )


def _streaming_proof() -> tuple:
    endpoint = ENDPOINTS[OpseraLogType.AUDIT]
    # 24 records in pages of 4: more than HOLD_PAGES pages, so the window streams its records as they come.
    proof = proof_for(endpoint, initial_pieces(endpoint, BASE, BASE.add(days=1), {}), page_size=4)
    return proof, sorted(_versioned(24), key=lambda r: r["createdAt"])


@pytest.mark.parametrize("copy", ["same", "older", "newer"])
def test_a_streaming_window_weighs_a_later_copy_of_a_record_it_passed_on(copy):
    """A record passed on from page 1 comes again on the last page: the same or an older version is
    dropped (yielded once); a newer one cannot be taken back, so the window fails loudly."""
    proof, records = _streaming_proof()
    api = FakeAPI(records, cap=1000)
    first = records[0]

    def fetch(params):
        page = _with_updated(api.fetch(params))
        if params["page"] == "6":
            version = {
                "same": first,
                "older": {**first, "updatedAt": "2000-01-01T00:00:00.000Z"},
                "newer": _newer(first).payload,
            }[copy]
            page.records.append(
                Record(
                    first["_id"],
                    created_key(first["createdAt"]),
                    first["type"],
                    version,
                    version["updatedAt"],
                )
            )
        return page

    if copy == "newer":
        with pytest.raises(OpseraIncompleteResultError, match=f"record {first['_id']} was updated while"):
            list(drive(proof, fetch))
        return
    got = [r for batch in drive(proof, fetch) for r in batch]
    assert sorted(r.id for r in got) == sorted(r["_id"] for r in records)
    assert next(r for r in got if r.id == first["_id"]).payload == first
    assert proof.stats.duplicates == 1 and proof.stats.refetches == 0


@pytest.mark.parametrize("copy", ["same", "newer"])
def test_a_streaming_window_asked_again_does_not_pass_on_twice(copy):
    """Records moved between a streaming window's pages (one id never came): it is asked for again as smaller
    windows. What the first round passed on is not yielded again, and a newer version of it in the second
    round is a loud error, never a stale record kept silently."""
    proof, records = _streaming_proof()
    api = FakeAPI(records, cap=1000)
    lost, first = records[9], records[0]

    def fetch(params):
        page = _with_updated(api.fetch(params))
        if api.calls <= 6:  # the first round (6 pages): one record slips between pages
            page.records = [r for r in page.records if r.id != lost["_id"]]
        elif copy == "newer":
            page.records = [_newer(first) if r.id == first["_id"] else r for r in page.records]
        return page

    if copy == "newer":
        with pytest.raises(OpseraIncompleteResultError, match=f"record {first['_id']} was updated while"):
            list(drive(proof, fetch))
        return
    got = [r.id for batch in drive(proof, fetch) for r in batch]
    assert sorted(got) == sorted(r["_id"] for r in records)  # each once, the lost one included
    assert proof.stats.refetches == 1
