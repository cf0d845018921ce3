"""Bad input fuzzing: random response bodies, random records, random hook, operator and connection arguments.

The rule under test: whatever comes in, the provider answers with a result or with one of its own exceptions
(or ``ValueError`` for a bad argument, as Airflow does), with a message; never ``KeyError``, ``TypeError``,
``AttributeError`` (or any other accident) from inside the package, and never a partial landing.

The regression tests at the end pin down the inputs that broke that rule when these tests were written
(times that overflow in UTC, invalid UTF-8, ``createdAt`` values that are not date-times, non-finite numbers in
the connection's extras).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import re
import uuid
from types import SimpleNamespace
from typing import Any

import msgspec
import pendulum
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from reliability_helpers import FAST, postgres_conn_json

from airflow_provider_opsera.catalogue import ENDPOINTS, TIME_AND_PAGING_KEYS, OpseraLogType
from airflow_provider_opsera.connection import OpseraConnectionSettings
from airflow_provider_opsera.exceptions import MalformedResponseError, OpseraError
from airflow_provider_opsera.extraction import drive, proof_for
from airflow_provider_opsera.hooks.opsera import OpseraHook
from airflow_provider_opsera.planning import initial_pieces
from airflow_provider_opsera.responses import Page, Record, decode_page
from airflow_provider_opsera.testing import OpseraSimulator
from airflow_provider_opsera.timeutils import sort_key

ENDPOINT_LIST = list(ENDPOINTS.values())
BASE = pendulum.datetime(2024, 5, 10, tz="UTC")
KEY = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
#: Exceptions a caller may get: the provider's own, and ValueError for a bad argument (Airflow's convention).
ALLOWED = (OpseraError, ValueError)
#: What must never escape: accidents inside the package.
ACCIDENTS = (KeyError, TypeError, AttributeError, IndexError, AssertionError, OverflowError, UnicodeError)
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
    derandomize=True,
)


def assert_clean(err: BaseException) -> None:
    """An allowed exception, with a message, that is not an accident in disguise."""
    assert isinstance(err, ALLOWED) and not isinstance(err, ACCIDENTS), f"{type(err).__name__}: {err}"
    assert str(err).strip(), f"{type(err).__name__} without a message"


# -- strategies ---------------------------------------------------------------------------------------------
ODD_TEXT = st.sampled_from(
    [
        "\u0000",
        "\u2028",
        "\u2029",
        "\ufeff",
        "\U0001f4a5",
        "é",
        "a\nb",
        "\r\n",
        "\\",
        '"',
        "\t",
        "\u02bb",
        "\x7f",
        "",
    ]
)
TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=24) | ODD_TEXT
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
#: Any time, up to the ends of the calendar (with an offset, some leave years 1-9999 in UTC).
MOMENTS = st.datetimes(
    min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=st.just(dt.timezone.utc)
) | st.sampled_from(
    [dt.datetime(1, 1, 1, tzinfo=dt.timezone.utc), dt.datetime(9999, 12, 31, 23, 59, tzinfo=dt.timezone.utc)]
)
NEAR = st.datetimes(
    min_value=dt.datetime(2024, 5, 9, 23),
    max_value=dt.datetime(2024, 5, 11, 1),
    timezones=st.just(dt.timezone.utc),
)
OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda m: dt.timezone(dt.timedelta(minutes=m))
)


def api_time(moment: dt.datetime) -> str:
    return f"{moment.year:04d}-" + moment.strftime("%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


CREATED = st.one_of(
    NEAR.map(api_time),
    MOMENTS.map(api_time),
    # local time with an offset, as written (years 1 and 9999 with an offset leave the calendar in UTC)
    st.tuples(MOMENTS, OFFSETS).map(lambda p: p[0].replace(tzinfo=p[1]).isoformat()),
    st.sampled_from(["", "yesterday", "2024-05-10", "2024-05-10T00:00:00", "P1D", "2024-02-30T00:00:00Z"]),
    JSON_VALUES,
)
IDS = st.one_of(
    st.text(min_size=1, max_size=24), st.integers(), st.sampled_from(["", None, 1.5, True, [], {}])
)


@st.composite
def records(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON_VALUES)  # not an object at all
    record: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        record["_id"] = draw(IDS)
    if draw(st.integers(0, 9)):
        record["createdAt"] = draw(CREATED)
    for name in ("type", "scope"):
        if draw(st.booleans()):
            record[name] = draw(st.sampled_from(["sdlc", "api", "pipeline"]) | JSON_VALUES)
    record.update(draw(st.dictionaries(TEXT, JSON_VALUES, max_size=3)))
    return record


ENVELOPES = (
    st.fixed_dictionaries(
        {},
        optional={
            "count": st.integers(min_value=-5, max_value=10**6) | JSON_VALUES,
            "data": st.lists(records(), max_size=6) | JSON_VALUES,
        },
    )
    | JSON_VALUES
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """Response bodies: JSON of any shape and formatting, truncated or altered JSON (invalid UTF-8 included),
    text that is not JSON, or bytes."""
    kind = draw(st.integers(0, 6))
    if kind == 6:
        return draw(st.binary(max_size=80))
    if kind == 5:
        return draw(st.text(max_size=80)).encode()
    text = json.dumps(
        draw(ENVELOPES), ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, 1, "\t"]))
    ).encode()
    if kind == 4 and text:
        cut = draw(st.integers(0, len(text)))
        return text[:cut]
    if kind == 3 and text:
        at = draw(st.integers(0, len(text) - 1))
        junk = draw(
            st.sampled_from([b"{", b"]", b",", b'"', b"\\", b"0", b" ", b"\xff", b"\xc3", b"\xed\xa0\x80"])
        )
        return text[:at] + junk + text[at + 1 :]
    return text


def check_page(page: Page, raw: bool) -> None:
    assert page.count is None or (type(page.count) is int and page.count >= 0)
    for rec in page.records:
        assert isinstance(rec.id, str) and rec.id
        assert KEY.match(rec.key), rec.key
        assert rec.split is None or isinstance(rec.split, str)
        if raw:
            assert isinstance(rec.payload, bytes) and b"\n" not in rec.payload and b"\r" not in rec.payload
            assert isinstance(msgspec.json.decode(rec.payload), dict)
        else:
            assert isinstance(rec.payload, dict)


# -- response bodies ----------------------------------------------------------------------------------------
@FUZZ
@given(body=bodies(), endpoint=st.sampled_from(ENDPOINT_LIST), raw=st.booleans())
@example(
    body=b'{"count": 1, "data": [{"_id": "a", "createdAt": "2024-05-10T00:00:00.000Z"}]}',
    endpoint=ENDPOINT_LIST[1],
    raw=True,
)
@example(
    body=b'{"count": 1, "data": [{"_id": "a\\u0000", "createdAt": "2024-05-10T00:00:00.000Z"}]}',
    endpoint=ENDPOINT_LIST[0],
    raw=False,
)
@example(body=b"<html><body>502 Bad Gateway</body></html>", endpoint=ENDPOINT_LIST[2], raw=True)
@example(body=b"", endpoint=ENDPOINT_LIST[3], raw=False)
def test_decode_page_takes_any_body(body, endpoint, raw):
    try:
        page = decode_page(body, endpoint, "http://x/api", raw=raw)
    except MalformedResponseError as err:
        assert_clean(err)
        assert endpoint.log_type.value in str(err)
        return
    check_page(page, raw)


@FUZZ
@given(body=bodies(), endpoint=st.sampled_from(ENDPOINT_LIST))
def test_raw_and_decoded_records_agree(body, endpoint):
    """The landing (raw) and XCom (decoded) paths see the same records, or both refuse the response."""
    outcomes = []
    for raw in (False, True):
        try:
            outcomes.append(decode_page(body, endpoint, "http://x/api", raw=raw))
        except MalformedResponseError:
            outcomes.append(None)
    decoded, raw_page = outcomes
    if decoded is None or raw_page is None:
        # The raw path does not look inside records beyond their id and time: it may accept what the decoded
        # path refuses (e.g. invalid numbers deep in a record), never the other way round.
        assert raw_page is None or decoded is None
        if decoded is not None:
            pytest.fail("the raw path refused a response the decoded path accepted")
        return
    assert decoded.count == raw_page.count
    assert [(r.id, r.key, r.split) for r in decoded.records] == [
        (r.id, r.key, r.split) for r in raw_page.records
    ]
    for a, b in zip(decoded.records, raw_page.records, strict=True):
        assert msgspec.json.decode(b.payload) == a.payload


# -- the extraction engine on random pages -------------------------------------------------------------------
@st.composite
def pages(draw: st.DrawFn, endpoint) -> list[Page]:
    values = ["sdlc", "api", "pipeline", "tag"]
    out = []
    for _ in range(draw(st.integers(1, 6))):
        n = draw(st.sampled_from([0, 1, 3, 10, endpoint.cap if not endpoint.paged else 10]))
        recs = [
            Record(
                draw(st.sampled_from([f"id{i}" for i in range(40)])),
                sort_key(pendulum.instance(draw(NEAR))),
                draw(st.sampled_from([None, *values])),
                {},
            )
            for _ in range(min(n, 12))
        ]
        # a capped v1 answer is the cap's worth of records: pad with distinct filler ids
        recs += [
            Record(f"fill{len(out)}-{i}", recs[0].key if recs else sort_key(BASE), None, {})
            for i in range(n - len(recs))
        ]
        out.append(Page(draw(st.none() | st.integers(0, 40)), recs))
    return out


@FUZZ
@given(data=st.data(), endpoint=st.sampled_from(ENDPOINT_LIST))
def test_extraction_engine_on_random_pages(data, endpoint):
    """Whatever the pages say (lying counts, duplicates, records out of the window, caps): a result without
    duplicates inside the window, or the provider's own error; and a bounded number of calls."""
    answers = data.draw(pages(endpoint))
    calls = itertools.count()

    def fetch(params: dict[str, str]) -> Page:
        n = next(calls)
        if n > 20_000:
            raise AssertionError("the engine keeps asking: no bound on requests")
        return answers[n % len(answers)]

    start, end = BASE, BASE.add(days=1)
    proof = proof_for(endpoint, initial_pieces(endpoint, start, end, {}), page_size=10)
    got: list[Record] = []
    try:
        for batch in drive(proof, fetch):
            got.extend(batch)
    except OpseraError as err:
        assert_clean(err)
        return
    ids = [r.id for r in got]
    assert len(ids) == len(set(ids))
    assert all(sort_key(start) <= r.key < sort_key(end) for r in got)


# -- hook arguments ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fuzz_sim():
    with OpseraSimulator(seed=99) as sim:
        for log_type in OpseraLogType:
            sim.generate(log_type, BASE, BASE.add(days=2), 30)
        yield sim


TIMES = st.one_of(
    NEAR,
    NEAR.map(lambda d: d.replace(tzinfo=None)),
    NEAR.map(lambda d: d.isoformat()),
    NEAR.map(api_time),
    st.dates(min_value=dt.date(2024, 5, 9), max_value=dt.date(2024, 5, 12)),
    st.sampled_from(
        [
            "",
            " ",
            "None",
            "{{ data_interval_start }}",
            "2024-05-10T00:00:00+05:00",
            "next week",
            "9999-12-31T23:00:00-05:00",
            "0001-01-01T00:30:00+01:00",
            "10:00",
        ]
    ),
    st.text(max_size=12),
    st.integers(),
    st.none(),
    st.floats(),
    st.lists(st.integers(), max_size=2),
)
FILTER_KEYS = (
    st.sampled_from(sorted({*TIME_AND_PAGING_KEYS, "type", "scope", "action", "user_id", "user_email"}))
    | TEXT
)
FILTERS = (
    st.none()
    | st.dictionaries(FILTER_KEYS, SCALARS | st.lists(SCALARS, max_size=2), max_size=3)
    | JSON_VALUES
)


def interval_is_short(start: Any, end: Any) -> bool:
    """Keep fuzzed intervals to a few days: a valid 8000-year interval is a valid, very long, extraction."""
    try:
        from airflow_provider_opsera.timeutils import to_utc

        return abs((to_utc(end) - to_utc(start)).total_seconds()) < 5 * 86400
    except Exception:
        return True


@FUZZ
@given(
    log_type=st.sampled_from([t.value for t in OpseraLogType]) | TEXT | st.integers(),
    start=TIMES,
    end=TIMES,
    filters=FILTERS,
)
def test_hook_arguments(fuzz_sim, monkeypatch, log_type, start, end, filters):
    assume(interval_is_short(start, end))
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", fuzz_sim.connection_json({**FAST, "max_retries": 0}))
    before = fuzz_sim.request_count()
    hook = OpseraHook()
    try:
        records = list(hook.iter_logs(log_type, start, end, filters))
    except ALLOWED as err:
        assert_clean(err)
        if isinstance(err, ValueError):
            assert fuzz_sim.request_count() == before, "a bad argument must be refused before any request"
        return
    finally:
        hook.close()
    assert all(isinstance(r, dict) and "_id" in r for r in records)
    statuses = {r.status for r in fuzz_sim.requests[before:]}
    assert statuses <= {200}, f"the hook sent a request the API refused: {statuses}"


@FUZZ
@given(
    extra=st.dictionaries(
        st.sampled_from(
            [
                "timeout",
                "verify",
                "max_retries",
                "page_size",
                "concurrency",
                "retry_min_wait",
                "retry_max_wait",
            ]
        ),
        st.one_of(
            st.integers(min_value=-10, max_value=10**4),
            st.floats(min_value=-10, max_value=1e6, allow_nan=False, allow_infinity=False),
            st.text(max_size=8),
            st.booleans(),
            st.none(),
            st.lists(st.integers(), max_size=2),
            st.sampled_from(
                ["1", "0.5", "true", "false", "/etc/ssl/ca.crt", "1e3", " 7 ", "inf", "nan", "-inf", "1e400"]
            ),
        ),
        max_size=4,
    ),
    host=st.one_of(
        st.none(),
        st.text(max_size=20),
        st.sampled_from(["api.example", "http://127.0.0.1:1", "ftp://x", "https://h/p/"]),
    ),
)
def test_connection_settings(extra, host):
    conn = SimpleNamespace(conn_id="fuzz", password="s3cr3t-T0KEN", host=host, port=None, extra_dejson=extra)
    try:
        settings_ = OpseraConnectionSettings.from_connection(conn)
    except OpseraError as err:
        assert_clean(err)
        assert "fuzz" in str(err)
        return
    for value in (settings_.timeout, settings_.retry_min_wait, settings_.retry_max_wait):
        assert math.isfinite(value) and value >= 0
    assert settings_.max_retries >= 0 and 1 <= settings_.page_size <= 1000 and settings_.concurrency >= 1
    assert settings_.base_url.startswith(("http://", "https://"))
    assert "s3cr3t-T0KEN" not in repr(settings_)


# -- operator arguments --------------------------------------------------------------------------------------
def run_operator(op: Any) -> Any:
    from airflow.sdk.execution_time.context import OutletEventAccessors

    return op.execute({"outlet_events": OutletEventAccessors()})


@settings(FUZZ, max_examples=40)
@given(
    log_type=st.sampled_from([t.value for t in OpseraLogType]),
    start=TIMES,
    end=TIMES,
    filters=FILTERS,
    max_xcom_records=st.integers(min_value=-2, max_value=100),
    records_per_part=st.integers(min_value=-1, max_value=50),
    land=st.booleans(),
)
def test_operator_arguments(
    fuzz_sim,
    monkeypatch,
    tmp_path_factory,
    log_type,
    start,
    end,
    filters,
    max_xcom_records,
    records_per_part,
    land,
):
    from airflow_provider_opsera.operators.logs import OpseraLogsOperator

    assume(interval_is_short(start, end))
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", fuzz_sim.connection_json({**FAST, "max_retries": 0}))
    folder = tmp_path_factory.mktemp("landing") if land else None
    try:
        op = OpseraLogsOperator(
            task_id=f"fuzz_{uuid.uuid4().hex[:6]}",
            log_type=log_type,
            start=start,
            end=end,
            filters=filters,
            output_path=f"file://{folder}/" if folder else None,
            max_xcom_records=max_xcom_records,
            records_per_part=records_per_part,
        )
    except ALLOWED as err:
        assert_clean(err)
        return
    try:
        result = run_operator(op)
    except ALLOWED as err:
        assert_clean(err)
        if folder is not None:
            # never a partial landing: nothing, or at most hidden temporaries, and certainly no manifest
            assert not [p.name for p in folder.iterdir() if not p.name.startswith(".")]
        return
    if folder is not None:
        assert (folder / "manifest.json").exists()
        assert result["record_count"] == sum(p["records"] for p in result["parts"])
    else:
        assert isinstance(result, list) and len(result) <= max(max_xcom_records, 0)


@pytest.mark.parametrize(
    ("table", "schema"),
    [
        ('we"ird', None),
        ("Ünïcödé table", None),
        ("x" * 63, None),
        ("drop table x; --", None),
        ("t", "Schéma ünïcode"),
        ("t", "   "),
        ("x" * 64, None),
        ("t\x00", None),
        ("t", "pg_catalog"),
    ],
)
def test_postgres_table_and_schema_names(fuzz_sim, monkeypatch, postgres_dsn, table, schema):
    """Any name is quoted; what PostgreSQL cannot take is a clear error, and nothing is loaded."""
    import psycopg
    from airflow_compat import postgres_driver
    from psycopg import sql

    from airflow_provider_opsera.transfers.postgres import OpseraLogsToPostgresOperator

    schema = schema or f"opsera_fuzz_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", fuzz_sim.connection_json(FAST))
    monkeypatch.setenv("AIRFLOW_CONN_POSTGRES_DEFAULT", postgres_conn_json(postgres_dsn))
    op = OpseraLogsToPostgresOperator(
        task_id="names", log_type="audit", table=table, schema=schema, start=BASE, end=BASE.add(days=1)
    )
    droppable = schema.strip() and schema != "pg_catalog"
    try:
        try:
            result = run_operator(op)
        except (*ALLOWED, postgres_driver().Error) as err:
            # The database's own refusals (no privilege on pg_catalog) come as the driver's errors, with messages.
            assert isinstance(err, postgres_driver().Error) or not isinstance(err, ACCIDENTS), repr(err)
            assert str(err).strip()
            return
        with psycopg.connect(postgres_dsn, autocommit=True) as pg:
            name = sql.Identifier(schema, table)
            count = pg.execute(sql.SQL("SELECT count(*) FROM {}").format(name)).fetchone()[0]
        assert count == result["rows"] == len(fuzz_sim.ground_truth("audit", BASE, BASE.add(days=1)))
    finally:
        if droppable:
            with psycopg.connect(postgres_dsn, autocommit=True) as pg:
                pg.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


# -- unusual but valid records, end to end ------------------------------------------------------------------
VALID_RECORD_EXTRAS = st.dictionaries(
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=12).filter(
        lambda k: k not in ("_id", "createdAt", "type", "scope")
    ),
    JSON_VALUES,
    max_size=4,
)
_day = itertools.count(1)


@settings(FUZZ, max_examples=25)
@given(
    extras=st.lists(VALID_RECORD_EXTRAS, min_size=1, max_size=8),
    ids=st.lists(
        st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=30),
        min_size=8,
        max_size=8,
        unique=True,
    ),
    log_type=st.sampled_from([t.value for t in OpseraLogType]),
)
def test_unusual_records_arrive_byte_for_byte(fuzz_sim, monkeypatch, tmp_path_factory, extras, ids, log_type):
    """Unicode, ``\\u0000``, line separators, deep nesting, huge numbers: every path keeps every record as sent."""
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_opsera.landing import iter_landed_records, land

    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", fuzz_sim.connection_json(FAST))
    day = BASE.add(days=10 + next(_day))
    recs = [
        {**extra, "_id": rid, "createdAt": api_time(day.add(minutes=i * 7))}
        for i, (rid, extra) in enumerate(zip(ids, itertools.cycle(extras)))
    ]
    fuzz_sim.add_records(log_type, recs)
    truth = sorted(fuzz_sim.ground_truth(log_type, day, day.add(days=1)), key=lambda r: r["_id"])
    assert [r["_id"] for r in truth] == sorted(ids)

    hook = OpseraHook()
    decoded = sorted(hook.iter_logs(log_type, day, day.add(days=1)), key=lambda r: r["_id"])
    assert decoded == truth
    folder = ObjectStoragePath(f"file://{tmp_path_factory.mktemp('land')}/")
    batches = (
        [r.payload for r in b] for b in hook.iter_log_batches(log_type, day, day.add(days=1), raw=True)
    )
    manifest = land(batches, folder, {"log_type": log_type})
    landed = sorted(iter_landed_records(folder), key=lambda r: r["_id"])
    assert landed == truth and manifest["record_count"] == len(truth)
    hook.close()


# -- regressions: inputs that once escaped as accidents ------------------------------------------------------
OVERFLOWING_TIMES = ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00"]


@pytest.mark.parametrize("created", OVERFLOWING_TIMES)
@pytest.mark.parametrize("raw", [False, True])
def test_created_at_that_overflows_in_utc_is_a_malformed_response(created, raw):
    body = json.dumps({"count": 1, "data": [{"_id": "a", "createdAt": created}]}).encode()
    with pytest.raises(MalformedResponseError, match="not an ISO 8601 time"):
        decode_page(body, ENDPOINTS[OpseraLogType.AUDIT], "http://x/api", raw=raw)


@pytest.mark.parametrize("start", ["9999-12-31T23:00:00-05:00", "0001-01-01T00:30:00+01:00"])
def test_interval_that_overflows_in_utc_is_a_value_error(fuzz_sim, monkeypatch, start):
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", fuzz_sim.connection_json(FAST))
    with pytest.raises(ValueError, match="start"):
        list(OpseraHook().iter_logs("audit", start, "2024-05-10"))


@pytest.mark.parametrize("raw", [False, True])
@pytest.mark.parametrize(
    "body",
    [
        b'{"count": 1, "data": [{"_id": "a", "createdAt": "2024-05-10T00:00:00.000Z", "user_email": "\xff"}]}',
        b'{"count": 1, "data": [{"_id": "a", "createdAt": "2024-05-10T00:00:00.000Z", "\xc3": 1}]}',
    ],
)
def test_invalid_utf8_in_a_record_is_a_malformed_response(body, raw):
    with pytest.raises(MalformedResponseError):
        decode_page(body, ENDPOINTS[OpseraLogType.AUDIT], "http://x/api", raw=raw)


@pytest.mark.parametrize(
    "created",
    ["2024-05-10T25:00:00.000Z", "2024-13-10T00:00:00.000Z", "2024-05-1xT00:00:00.000Z", "10:00", "12:30:00"],
)
def test_created_at_that_is_not_a_date_time_is_a_malformed_response(created):
    body = json.dumps({"count": 1, "data": [{"_id": "a", "createdAt": created}]}).encode()
    with pytest.raises(MalformedResponseError, match="not an ISO 8601 time"):
        decode_page(body, ENDPOINTS[OpseraLogType.AUDIT], "http://x/api")


@pytest.mark.parametrize(
    "extra",
    [
        {"max_retries": "inf"},
        {"timeout": "nan"},
        {"timeout": "inf"},
        {"retry_min_wait": "nan"},
        {"retry_max_wait": "inf"},
    ],
)
def test_non_finite_connection_numbers_are_refused(extra):
    conn = SimpleNamespace(conn_id="c", password="tok", host="h", port=None, extra_dejson=extra)
    with pytest.raises(OpseraError, match=next(iter(extra))):
        OpseraConnectionSettings.from_connection(conn)


def test_a_server_repeating_a_full_page_past_the_total_does_not_page_forever():
    """Some APIs answer any page past the end with the last (or first) page again: 10 records, total 5."""
    endpoint = ENDPOINTS[OpseraLogType.AUDIT]
    page = Page(5, [Record(f"id{i}", sort_key(BASE.add(minutes=i)), None, {}) for i in range(10)])
    calls = itertools.count()

    def fetch(params: dict[str, str]) -> Page:
        if next(calls) >= 100:
            raise RuntimeError(f"still paging: page {params['page']} of a total of 5 records")
        return page

    proof = proof_for(endpoint, initial_pieces(endpoint, BASE, BASE.add(days=1), {}), page_size=10)
    try:
        records = [r for batch in drive(proof, fetch) for r in batch]
    except OpseraError:
        return  # refusing the contradiction loudly is fine
    assert sorted(r.id for r in records) == sorted(r.id for r in page.records)
