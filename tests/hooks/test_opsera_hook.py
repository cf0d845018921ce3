"""OpseraHook against the simulator on loopback: completeness per endpoint, retries, errors, token hygiene."""

from __future__ import annotations

import json
import logging
import time

import pendulum
import pytest

from airflow_provider_opsera import (
    OpseraAPIError,
    OpseraAuthError,
    OpseraError,
    OpseraIncompleteResultError,
    OpseraLogType,
)
from airflow_provider_opsera.hooks.opsera import DECODE_AHEAD, OpseraHook
from airflow_provider_opsera.testing import OpseraSimulator

DAY = pendulum.datetime(2024, 5, 10)
NEXT = DAY.add(days=1)
FAST = {"retry_min_wait": 0.01, "retry_max_wait": 0.05}
USER_TYPES = ["authentication", "pipeline", "registry", "policy", "tag", "task"]


@pytest.fixture
def sim(monkeypatch):
    with OpseraSimulator(seed=7) as simulator:
        monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", simulator.connection_json(FAST))
        yield simulator


def ids(records) -> list[str]:
    return sorted(r["_id"] for r in records)


def fetch(log_type, start=DAY, end=NEXT, filters=None):
    hook = OpseraHook()
    records = list(hook.iter_logs(log_type, start, end, filters))
    return records, hook.last_stats


@pytest.mark.parametrize("sort", ["desc", "random"])
@pytest.mark.parametrize("end_inclusive", [True, False])
def test_user_activity_day_over_the_cap_comes_back_complete(sim, sort, end_inclusive):
    sim.config.sort = sort
    sim.config.end_inclusive = end_inclusive
    sim.generate(OpseraLogType.USER_ACTIVITY, DAY, NEXT, 5000, split_values=USER_TYPES)
    sim.generate(OpseraLogType.USER_ACTIVITY, NEXT, NEXT.add(days=1), 700, split_values=USER_TYPES)
    records, stats = fetch(OpseraLogType.USER_ACTIVITY)
    truth = sim.ground_truth(OpseraLogType.USER_ACTIVITY, DAY, NEXT)
    assert len(truth) == 5000
    assert ids(records) == ids(truth)
    # one capped request, then one per type (6 types, about 830 records each); ceil(5000/1000) = 5
    assert stats.requests == 1 + len(USER_TYPES)
    print(f"user_activity 5000 records: {stats.requests} requests (minimum 5)")


def test_user_activity_with_page_count_semantics_fails_loudly(sim):
    sim.config.v1_count = "page"
    sim.generate(OpseraLogType.USER_ACTIVITY, DAY, NEXT, 2500, split_values=USER_TYPES)
    with pytest.raises(OpseraIncompleteResultError, match="echoes"):
        fetch(OpseraLogType.USER_ACTIVITY)


def test_a_day_that_cannot_be_split_raises(sim):
    sim.generate(OpseraLogType.USER_ACTIVITY, DAY, NEXT, 3000, split_values=["pipeline"])
    with pytest.raises(OpseraIncompleteResultError) as err:
        fetch(OpseraLogType.USER_ACTIVITY)
    assert "type=pipeline" in str(err.value) and "2024-05-10" in str(err.value)


def test_pipeline_activity_over_the_cap_splits_by_pipeline_type(sim):
    sim.generate(OpseraLogType.PIPELINE_ACTIVITY, DAY, NEXT, 2500)
    records, _ = fetch(OpseraLogType.PIPELINE_ACTIVITY)
    assert ids(records) == ids(sim.ground_truth(OpseraLogType.PIPELINE_ACTIVITY, DAY, NEXT))


def test_pipeline_records_without_a_type_cannot_be_split(sim):
    sim.generate(OpseraLogType.PIPELINE_ACTIVITY, DAY, NEXT, 1500, split_values=[])
    with pytest.raises(OpseraIncompleteResultError):
        fetch(OpseraLogType.PIPELINE_ACTIVITY)


def test_token_activity_over_several_days_with_scope_filter(sim):
    sim.generate(
        OpseraLogType.TOKEN_ACTIVITY, DAY, DAY.add(days=3), 900, split_values=["api", "security-logs"]
    )
    start, end = DAY.add(hours=6), DAY.add(days=2, hours=12)
    records, stats = fetch(OpseraLogType.TOKEN_ACTIVITY, start, end, {"scope": "api"})
    assert ids(records) == ids(sim.ground_truth(OpseraLogType.TOKEN_ACTIVITY, start, end, {"scope": "api"}))
    assert stats.requests == 3  # one per day: the endpoint takes only `date`


def test_token_activity_day_over_the_cap_splits_by_scope(sim):
    sim.generate(OpseraLogType.TOKEN_ACTIVITY, DAY, NEXT, 1800, split_values=["api", "security-logs"])
    records, _ = fetch(OpseraLogType.TOKEN_ACTIVITY)
    assert ids(records) == ids(sim.ground_truth(OpseraLogType.TOKEN_ACTIVITY, DAY, NEXT))


def test_audit_window_complete_and_deduplicated_while_pages_shift(sim):
    sim.generate(OpseraLogType.AUDIT, DAY, NEXT, 20_000, split_values=USER_TYPES)
    sim.config.page_shift = 37
    records, stats = fetch(OpseraLogType.AUDIT)
    got = ids(records)
    assert len(got) == len(set(got)) == 20_000
    assert got == ids(sim.ground_truth(OpseraLogType.AUDIT, DAY, NEXT))
    assert stats.refetches >= 1
    print(f"audit 20000 records with shifting pages: {stats.requests} requests (minimum 20)")


def test_audit_request_count_is_the_minimum(sim):
    sim.generate(OpseraLogType.AUDIT, DAY, NEXT, 20_000, split_values=USER_TYPES)
    records, stats = fetch(OpseraLogType.AUDIT)
    assert len(records) == 20_000
    assert stats.requests == 20
    print(f"audit 20000 records: {stats.requests} requests (minimum 20)")


def test_audit_partial_interval_and_filters(sim):
    sim.generate(OpseraLogType.AUDIT, DAY, NEXT, 3000, split_values=USER_TYPES)
    start, end = DAY.add(hours=3, minutes=17, seconds=5), DAY.add(hours=9, seconds=30)
    records, _ = fetch(OpseraLogType.AUDIT, start, end, {"type": "tag"})
    assert ids(records) == ids(sim.ground_truth(OpseraLogType.AUDIT, start, end, {"type": "tag"}))


def test_iter_logs_accepts_iso_strings_and_naive_datetimes(sim):
    sim.generate(OpseraLogType.AUDIT, DAY, NEXT, 50)
    by_string, _ = fetch(OpseraLogType.AUDIT, "2024-05-10T00:00:00Z", "2024-05-11")
    naive, _ = fetch(OpseraLogType.AUDIT, DAY.naive(), NEXT.naive())
    assert ids(by_string) == ids(naive) == ids(sim.ground_truth(OpseraLogType.AUDIT, DAY, NEXT))


@pytest.mark.parametrize("kind", ["429", "503", "502", "reset_before"])
def test_transient_failures_are_retried(sim, kind):
    sim.generate(OpseraLogType.AUDIT, DAY, NEXT, 2500)
    sim.inject(kind, times=3)
    records, stats = fetch(OpseraLogType.AUDIT)
    assert ids(records) == ids(sim.ground_truth(OpseraLogType.AUDIT, DAY, NEXT))
    assert stats.retries == 3


def test_retry_after_is_honoured(sim):
    sim.generate(OpseraLogType.AUDIT, DAY, NEXT, 10)
    sim.inject("429", times=1, retry_after=1)
    hook = OpseraHook()
    records = list(hook.iter_logs(OpseraLogType.AUDIT, DAY, NEXT))
    assert len(records) == 10
    served = [r for r in sim.requests if r.path.endswith("/audit/user")]
    assert (
        served[1].time - served[0].time
    ).total_seconds() >= 0.9  # waited what the server asked, not the 0.01 s backoff


def test_bad_token_is_not_retried(sim, monkeypatch):
    conn = json.loads(sim.connection_json(FAST))
    conn["password"] = "not-a-valid-token"
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", json.dumps(conn))
    with pytest.raises(OpseraAuthError, match="401"):
        fetch(OpseraLogType.AUDIT)
    assert sim.request_count() == 1


def test_wrong_scope_is_a_403_naming_scopes_and_roles(sim, monkeypatch):
    sim.add_token("readonly-token", scopes=("api-readonly",), role="auditor")
    conn = json.loads(sim.connection_json(FAST))
    conn["password"] = "readonly-token"
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", json.dumps(conn))
    with pytest.raises(OpseraAuthError) as err:
        fetch(OpseraLogType.USER_ACTIVITY)
    assert "403" in str(err.value) and "Security Logs" in str(err.value) and "Power Users" in str(err.value)
    assert sim.request_count() == 1
    # the same token may read the v2 audit route
    fetch(OpseraLogType.AUDIT)


def test_422_is_not_retried(sim):
    # The endpoint table allows HH:MM:SS; the newer reference (and the simulator's default) reject it.
    with pytest.raises(OpseraAPIError) as err:
        OpseraHook().get_logs("audit", {"start_date": "2024-05-10", "start_time": "10:00:00"})
    assert err.value.status_code == 422
    assert sim.request_count() == 1


def test_persistent_5xx_gives_up_with_status_url_and_excerpt(sim):
    sim.inject("502", times=100)
    with pytest.raises(OpseraAPIError) as err:
        OpseraHook().get_logs("audit", {"page": 1})
    assert err.value.status_code == 502
    assert "/api/v2/logs/audit/user" in err.value.url
    assert err.value.body
    assert "gave up after 6 attempts" in str(err.value)
    assert sim.request_count() == 6


@pytest.mark.parametrize("kind", ["malformed_json", "missing_data", "data_not_list", "record_missing_id"])
def test_malformed_bodies_are_specific_errors(sim, kind):
    sim.generate(OpseraLogType.AUDIT, DAY, NEXT, 20)
    sim.inject(kind, times=100)
    with pytest.raises(OpseraAPIError) as err:
        fetch(OpseraLogType.AUDIT)
    assert "audit" in str(err.value)


def test_token_never_appears_in_logs_or_errors(sim, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    sim.generate(OpseraLogType.AUDIT, DAY, NEXT, 1500)
    sim.inject("503", times=2)
    fetch(OpseraLogType.AUDIT)
    sim.inject("500", times=100)
    with pytest.raises(OpseraError) as err:
        fetch(OpseraLogType.AUDIT)
    out = capsys.readouterr()
    text = caplog.text + out.out + out.err + str(err.value) + repr(err.value) + repr(OpseraHook().settings)
    assert "retry 1" in text  # the retries were logged ...
    assert sim.token not in text  # ... without the token


def test_bad_input_is_rejected_before_any_request(sim):
    hook = OpseraHook()
    with pytest.raises(ValueError, match="CronDataIntervalTimetable"):
        list(hook.iter_logs("audit", DAY, DAY))
    with pytest.raises(ValueError, match="not an ISO 8601"):
        list(hook.iter_logs("audit", "yesterday-ish", NEXT))
    with pytest.raises(ValueError, match="allowed: action, type, user_id, user_email"):
        list(hook.iter_logs("audit", DAY, NEXT, {"scope": "api"}))
    with pytest.raises(ValueError, match="selects time or pages"):
        list(hook.iter_logs("user_activity", DAY, NEXT, {"date": "2024-05-10"}))
    with pytest.raises(ValueError, match="Unknown Opsera log type"):
        list(hook.iter_logs("audits", DAY, NEXT))
    assert sim.request_count() == 0


@pytest.mark.parametrize(
    ("conn", "message"),
    [
        ({"conn_type": "opsera", "host": "http://127.0.0.1:1"}, "no API token"),
        ({"conn_type": "opsera", "host": "ftp://x", "password": "t"}, "not an http"),
        ({"conn_type": "opsera", "password": "t", "extra": {"page_size": 5000}}, "page_size"),
        ({"conn_type": "opsera", "password": "t", "extra": {"timeout": "soon"}}, "timeout"),
    ],
)
def test_bad_connections_are_clear_errors(monkeypatch, conn, message):
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", json.dumps(conn))
    with pytest.raises(OpseraError, match=message):
        list(OpseraHook().iter_logs("audit", DAY, NEXT))


def test_connection_defaults(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", json.dumps({"conn_type": "opsera", "password": "t"}))
    settings = OpseraHook().settings
    assert settings.base_url == "https://app.opsera.io"
    assert (
        settings.timeout,
        settings.verify,
        settings.max_retries,
        settings.page_size,
        settings.concurrency,
    ) == (
        60.0,
        True,
        5,
        1000,
        4,
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_OPSERA_DEFAULT",
        json.dumps({"conn_type": "opsera", "host": "tenant.example.com", "password": "t"}),
    )
    assert OpseraHook().settings.base_url == "https://tenant.example.com"


def test_test_connection(sim, monkeypatch):
    ok, message = OpseraHook().test_connection()
    assert ok, message
    assert "audit" in message and "user_activity" in message
    conn = json.loads(sim.connection_json(FAST))
    conn["password"] = "bad"
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", json.dumps(conn))
    ok, message = OpseraHook().test_connection()
    assert not ok and "401" in message


@pytest.mark.parametrize("concurrency", [1, 3])
def test_requests_open_at_once_are_the_connections_concurrency(sim, monkeypatch, concurrency):
    # Calls beyond `concurrency` only decode: they wait for a request slot before sending anything.
    monkeypatch.setenv(
        "AIRFLOW_CONN_OPSERA_DEFAULT", sim.connection_json({**FAST, "concurrency": concurrency})
    )
    sim.config.latency = 0.02
    sim.generate(OpseraLogType.AUDIT, DAY, NEXT, 12_000)
    records, stats = fetch(OpseraLogType.AUDIT)
    assert len(records) == 12_000 and stats.requests >= 12
    assert sim.max_in_flight() == concurrency


def test_memory_does_not_hold_the_interval(sim):
    # Records are streamed one response at a time: consuming lazily never holds more than a few pages.
    sim.generate(OpseraLogType.AUDIT, DAY, NEXT, 30_000)
    hook = OpseraHook()
    batches = hook.iter_log_batches(OpseraLogType.AUDIT, DAY, NEXT)
    first = next(batches)
    assert len(first) <= 1000
    time.sleep(1.0)  # let the extraction run as far ahead as it will while nobody consumes
    # At most `concurrency` (4) + DECODE_AHEAD (2) calls in flight and 2 x concurrency responses waiting:
    # never the interval.
    assert sim.request_count() <= 1 + (4 + DECODE_AHEAD) + 8 + 1
    rest = sum(len(b) for b in batches)
    assert len(first) + rest == 30_000
