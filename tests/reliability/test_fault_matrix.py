"""The fault matrix: every fault the simulator can inject, against every log type.

For each fault the outcome is either the simulator's ground truth exactly (no record missing, none twice) or
a specific provider error; never a short or duplicated set. Transient faults hit random requests in the
middle of an extraction (v1 day and value splits, v2 pages); persistent faults hit every request.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import pendulum
import pytest
from reliability_helpers import (
    DAY,
    INTERVALS,
    LOG_TYPES,
    assert_ground_truth,
    bad_statuses,
    connection,
    extract,
)

from airflow_provider_opsera.exceptions import (
    OpseraAPIError,
    OpseraIncompleteResultError,
)
from airflow_provider_opsera.testing import OpseraSimulator

V1 = ("user_activity", "token_activity", "pipeline_activity")


@dataclass(frozen=True)
class Fault:
    """One row of the matrix: a fault kind with its options, how often it fires, and the connection extras."""

    kind: str
    opts: dict[str, Any] = field(default_factory=dict)
    #: How many requests it hits (None: every one), drawn at random among the eligible ones.
    times: int | None = 2
    probability: float | None = 0.5
    extra: dict[str, Any] = field(default_factory=dict)
    #: Whether every hit costs one retry (transport faults and malformed bodies do; tampered data does not).
    retried: bool = True


#: Faults a correct client survives: the result must be the ground truth.
TRANSIENT: dict[str, Fault] = {
    "429-retry-after-seconds": Fault("429", {"retry_after": 1}, times=1, probability=None),
    "429-retry-after-http-date": Fault("429", {"retry_after": "http-date"}, times=1, probability=None),
    "429-no-retry-after": Fault("429"),
    "500-html": Fault("500"),
    "502-html": Fault("502"),
    "503-html": Fault("503"),
    "504-html": Fault("504"),
    "reset-before-response": Fault("reset_before"),
    "reset-mid-body": Fault("reset_mid_body"),
    "read-timeout": Fault("slow", {"delay": 1.5}, times=1, probability=None, extra={"timeout": 0.5}),
    "malformed-json": Fault("malformed_json"),
    "data-missing": Fault("missing_data"),
    "data-not-a-list": Fault("data_not_list"),
    "record-missing-_id": Fault("record_missing_id"),
    "record-missing-createdAt": Fault("record_missing_created_at"),
    "duplicate-records-every-response": Fault("duplicate_records", {"n": 5}, None, None, retried=False),
    "records-outside-the-window-every-response": Fault("outside_window", {"n": 6}, None, None, retried=False),
    "total-changes-down": Fault("total_changes", {"delta": -7}, retried=False),
}

#: Faults that never stop: the task must fail with the named error, after a bounded number of attempts.
PERSISTENT: dict[str, tuple[Fault, type[Exception], str]] = {
    "429-forever": (Fault("429", times=None, probability=None), OpseraAPIError, r"HTTP 429.*gave up after 3"),
    "503-forever": (Fault("503", times=None, probability=None), OpseraAPIError, r"HTTP 503.*gave up after 3"),
    "reset-before-forever": (
        Fault("reset_before", times=None, probability=None),
        OpseraAPIError,
        r"Could not reach Opsera .* after 3 attempts",
    ),
    "reset-mid-body-forever": (
        Fault("reset_mid_body", times=None, probability=None),
        OpseraAPIError,
        r"Could not reach Opsera .* after 3 attempts",
    ),
    "read-timeout-forever": (
        Fault("slow", {"delay": 1.5}, times=None, probability=None, extra={"timeout": 0.5, "max_retries": 1}),
        OpseraAPIError,
        r"Could not reach Opsera .* after 2 attempts.*[Tt]imeout",
    ),
    "malformed-json-forever": (
        Fault("malformed_json", times=None, probability=None),
        OpseraAPIError,
        r"not valid JSON.*gave up after 3",
    ),
    "data-missing-forever": (
        Fault("missing_data", times=None, probability=None),
        OpseraAPIError,
        r"not \{\"count\": n, \"data\": \[\.\.\.\]\}.*gave up after 3",
    ),
    "data-not-a-list-forever": (
        Fault("data_not_list", times=None, probability=None),
        OpseraAPIError,
        r"not \{\"count\": n, \"data\": \[\.\.\.\]\}.*gave up after 3",
    ),
    "record-missing-_id-forever": (
        Fault("record_missing_id", times=None, probability=None),
        OpseraAPIError,
        r"has no _id.*gave up after 3",
    ),
    "record-missing-createdAt-forever": (
        Fault("record_missing_created_at", times=None, probability=None),
        OpseraAPIError,
        r"createdAt=None, not an ISO 8601 time.*gave up after 3",
    ),
}


def inject(sim: OpseraSimulator, fault: Fault, log_type: str) -> None:
    """A random fault is split in two rules: the first eligible request surely, then others at random, so
    the fault always fires (whatever tests ran before) and usually also hits the middle of the extraction."""
    if fault.probability is None or fault.times is None:
        sim.inject(
            fault.kind, times=fault.times, probability=fault.probability, log_type=log_type, **fault.opts
        )
        return
    sim.inject(fault.kind, times=1, log_type=log_type, **fault.opts)
    if fault.times > 1:
        sim.inject(
            fault.kind, times=fault.times - 1, probability=fault.probability, log_type=log_type, **fault.opts
        )


def fired(sim: OpseraSimulator, since: pendulum.DateTime, kind: str) -> int:
    """Requests of this test that the fault hit (a slow request of an earlier test may be logged late)."""
    return sum(1 for r in sim.requests if r.time >= since and r.fault == kind)


def planned_waits(text: str) -> list[float]:
    return [float(s) for s in re.findall(r"retry \d+ in ([0-9.]+)s", text)]


# Transport faults do not depend on how records are decoded: only body faults run in both decodings.
_DECODINGS = [
    (name, raw)
    for name in TRANSIENT
    for raw in (False, True)
    if not (raw and TRANSIENT[name].kind in ("429", "500", "502", "504", "slow"))
]


@pytest.mark.parametrize(
    ("name", "raw"), _DECODINGS, ids=[f"{n}-{'raw' if r else 'dicts'}" for n, r in _DECODINGS]
)
@pytest.mark.parametrize("log_type", LOG_TYPES)
def test_transient_fault_gives_the_ground_truth(fault_sim, monkeypatch, caplog, capsys, log_type, name, raw):
    fault = TRANSIENT[name]
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", connection(fault_sim, **fault.extra))
    start, end = INTERVALS[log_type]
    since = pendulum.now("UTC")
    inject(fault_sim, fault, log_type)
    records, hook = extract(log_type, start, end, raw=raw)
    assert_ground_truth(fault_sim, log_type, records, start, end)
    assert not bad_statuses(fault_sim)
    stats = hook.last_stats
    hits = fired(fault_sim, since, fault.kind)
    if fault.kind == "slow":
        hits = stats.retries  # the server logs a parked request only once its delay is over
    assert hits >= 1, "the fault never fired: the test proves nothing"
    if fault.retried:
        assert stats.retries == hits
    else:
        assert stats.retries == 0
    if fault.kind == "429" and "retry_after" in fault.opts:
        out = capsys.readouterr()
        # One retry log line, read from logging or else from the output (Airflow 3.0 sends it to both).
        waits = planned_waits(caplog.text) or planned_waits(out.out + out.err)
        assert len(waits) == 1
        # The server's wait is honoured (seconds: exactly; an HTTP-date two seconds ahead: up to that)...
        if fault.opts["retry_after"] == 1:
            assert waits[0] == 1.0
        else:
            assert 0.0 <= waits[0] <= 2.1
    if fault.kind == "duplicate_records":
        assert stats.duplicates or stats.records  # v1 drops them within the response, v2 by id
    if fault.kind == "outside_window":
        assert stats.outside > 0


@pytest.mark.parametrize("name", list(PERSISTENT))
@pytest.mark.parametrize("log_type", LOG_TYPES)
def test_persistent_fault_is_a_specific_error(fault_sim, monkeypatch, log_type, name):
    fault, error, message = PERSISTENT[name]
    monkeypatch.setenv(
        "AIRFLOW_CONN_OPSERA_DEFAULT", connection(fault_sim, **{"max_retries": 2, **fault.extra})
    )
    start, end = INTERVALS[log_type]
    inject(fault_sim, fault, log_type)
    with pytest.raises(error) as info:
        extract(log_type, start, end, raw=True)
    err = info.value
    assert re.search(message, str(err), re.S), str(err)
    assert isinstance(err, OpseraAPIError)
    assert err.url and "/api/" in err.url
    if fault.kind in ("429", "503"):
        assert err.status_code == int(fault.kind)
        assert err.body  # an excerpt of what the gateway sent
    if fault.kind.startswith("record_") or fault.kind.endswith("data") or fault.kind == "malformed_json":
        assert log_type in str(err)
    assert not bad_statuses(fault_sim)


@pytest.mark.parametrize("log_type", LOG_TYPES)
def test_total_that_grows_between_responses(fault_sim, log_type):
    """A larger total on some responses: v2 pages further and refetches; v1 cannot prove its split and says so."""
    start, end = INTERVALS[log_type]
    fault_sim.inject("total_changes", times=2, probability=0.5, log_type=log_type, delta=7)
    try:
        records, _ = extract(log_type, start, end)
    except OpseraIncompleteResultError as err:
        assert log_type in V1, f"v2 must recover from a total that changed between pages: {err}"
        assert "counts" in str(err) and "found" in str(err)
        return
    assert_ground_truth(fault_sim, log_type, records, start, end)


def test_v2_total_that_always_overstates_is_an_incomplete_result_error(fault_sim):
    fault_sim.inject("total_changes", times=None, log_type="audit", delta=7)
    with pytest.raises(OpseraIncompleteResultError, match="records kept moving between pages"):
        extract("audit", *INTERVALS["audit"])


@pytest.mark.parametrize("shift", [1, 37, 499])
def test_v2_records_moving_between_pages(fault_sim, shift):
    """Duplicates across pages (and the gaps they leave): fetched again in smaller windows, deduped."""
    fault_sim.config.page_shift = shift
    start, end = INTERVALS["audit"]
    records, hook = extract("audit", start, end, raw=True)
    assert_ground_truth(fault_sim, "audit", records, start, end)
    assert hook.last_stats.refetches >= 1


def test_v2_records_moving_between_pages_with_faults(fault_sim):
    fault_sim.config.page_shift = 53
    fault_sim.inject_random(0.1, ["503", "reset_mid_body", "duplicate_records", "malformed_json"], seed=5)
    start, end = INTERVALS["audit"]
    records, _ = extract("audit", start, end)
    assert_ground_truth(fault_sim, "audit", records, start, end)


@pytest.mark.parametrize(
    ("n", "times"), [(502, 1), (502, None), (1002, None)], ids=["once", "always", "2-pages"]
)
def test_v2_total_understated_on_a_full_last_page_is_not_a_short_set(opsera_simulator, monkeypatch, n, times):
    """502 records, page_size 500: page 1 (full) says 495, so the total alone asks for no page 2.

    The client got 500 distinct records on a full page while the total says 495: the total is proven
    wrong by the data itself, and a full last page means there may be more. (Found by these tests.)
    """
    sim = opsera_simulator
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", connection(sim))
    start, end = DAY, DAY.add(days=1)
    sim.generate("audit", start, end, n)
    sim.inject("total_changes", times=times, log_type="audit", delta=-7)
    try:
        records, _ = extract("audit", start, end)
    except OpseraIncompleteResultError:
        return  # failing loudly is acceptable too
    assert_ground_truth(sim, "audit", records, start, end)
