"""The Postgres table layout and row mapping: pure, no database (those tests are in test_postgres_load.py)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_opsera.catalogue import ENDPOINTS, FieldKind, OpseraLogType
from airflow_provider_opsera.responses import Record
from airflow_provider_opsera.timeutils import to_utc
from airflow_provider_opsera.transfers.postgres.rows import (
    INT_MAX,
    INT_MIN,
    ON_TYPE_MISMATCH,
    OnTypeMismatch,
    OpseraRecordError,
    RowMapper,
    copy_line,
    copy_text,
)
from airflow_provider_opsera.transfers.postgres.table import (
    MAX_IDENTIFIER,
    column_name,
    default_table,
    layout_for,
)

UTC = dt.timezone.utc
PIPELINE = {
    "_id": "61d5f0b7c1c0f1a2b3c4d5e6",
    "user_id": "60157c8c70628140f776e359",
    "pipeline_id": "611e7dca57f4eff66e9db084",
    "tool_identifier": "consumer.response",
    "step_id": "611508513ce36642d3180dc8",
    "step_index": 2,
    "step_name": "anchore",
    "step_configuration": {"tool": "event based automation", "topic": "opsera.pipeline.response"},
    "action": "start confirmation",
    "api_response": {"status": "analyzing", "runCount": 12},
    "message": "Anchore Scan Started Successfully",
    "status": "analyzing",
    "run_count": 12,
    "type": "sdlc",
    "createdAt": "2024-05-09T10:11:12.345Z",
    "updatedAt": "2024-05-09T10:11:13.000Z",
    "__v": 0,
}


def record(payload: dict[str, Any] | bytes, rid: str = PIPELINE["_id"]) -> Record:
    data = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
    return Record(rid, "2024-05-09T10:11:12.345000Z", "sdlc", data)


def as_dict(mapper: RowMapper, row: tuple[Any, ...]) -> dict[str, Any]:
    return {c.name: v for c, v in zip(mapper.layout.staged, row, strict=True)}


# -- layout -----------------------------------------------------------------------------------------------
def test_layout_has_the_fixed_columns_and_one_typed_column_per_catalogue_field():
    for log_type, endpoint in ENDPOINTS.items():
        layout = layout_for(log_type)
        names = [c.name for c in layout.columns]
        assert names[:2] == ["_id", "created_at"] and names[-1] == "raw"
        assert [c.field for c in layout.fields] == list(endpoint.fields)
        assert {c.name: c.sql_type for c in layout.columns}["created_at"] == "timestamptz"
        assert ("created_at",) in layout.indexes


def test_a_field_kind_is_its_sql_type():
    # The operators' OpenLineage schema facets name each catalogue field's kind as its type.
    assert [(k.value, k.sql_type, str(k)) for k in FieldKind] == [
        (t, t, t) for t in ("text", "integer", "timestamptz", "jsonb")
    ]
    assert all(isinstance(k, FieldKind) for e in ENDPOINTS.values() for k in e.fields.values())


def test_pipeline_activity_columns_and_indexes():
    layout = layout_for("pipeline_activity")
    types = {c.name: c.sql_type for c in layout.columns}
    assert types["run_count"] == "integer" and types["step_configuration"] == "jsonb"
    assert types["updated_at"] == "timestamptz" and types["__v"] == "integer" and types["raw"] == "jsonb"
    assert ("pipeline_id", "run_count") in layout.indexes


def test_names():
    assert column_name("updatedAt") == "updated_at"
    assert column_name("user_email") == "user_email"
    assert column_name("__v") == "__v"
    assert default_table(OpseraLogType.TOKEN_ACTIVITY) == "opsera_token_activity_logs"
    layout = layout_for("audit")
    long = layout.index_name("t" * 60, ("user_id", "created_at"))
    assert len(long) <= MAX_IDENTIFIER and long != layout.index_name("t" * 61, ("user_id", "created_at"))


# -- mapping --------------------------------------------------------------------------------------------
def test_a_documented_record_maps_to_typed_values_and_keeps_its_bytes_in_raw():
    mapper = RowMapper("pipeline_activity")
    rec = record(PIPELINE)
    row = as_dict(mapper, mapper.row(rec))
    assert row["_id"] == PIPELINE["_id"] and row["created_at"] == rec.key
    assert row["run_count"] == 12 and row["step_index"] == 2 and row["__v"] == 0
    # Times in the API's format pass as text (COPY reads them as timestamptz).
    assert row["updated_at"] == "2024-05-09T10:11:13.000Z"
    assert row["raw"] == rec.payload.decode()
    # jsonb fields are checked here but taken from raw by the upsert, so the server parses the JSON once.
    assert "step_configuration" not in row and "api_response" not in row


def test_unknown_fields_stay_in_raw_and_missing_or_null_fields_are_null():
    mapper = RowMapper("pipeline_activity")
    payload = {**PIPELINE, "new_field": {"x": 1}, "message": None, "api_response": None}
    del payload["step_name"]
    row = as_dict(mapper, mapper.row(record(payload)))
    assert row["message"] is None and row["step_name"] is None
    assert json.loads(row["raw"])["new_field"] == {"x": 1}


def test_naive_times_are_read_as_utc_and_offsets_are_kept():
    mapper = RowMapper("audit")
    base = {"_id": "a", "createdAt": "2024-05-09T10:00:00.000Z"}
    for text, expected in [
        ("2024-05-09T10:00:00", dt.datetime(2024, 5, 9, 10, tzinfo=UTC)),
        ("2024-05-09T12:00:00+02:00", dt.datetime(2024, 5, 9, 10, tzinfo=UTC)),
        ("2024-05-09T10:00:00.5Z", dt.datetime(2024, 5, 9, 10, 0, 0, 500000, tzinfo=UTC)),
    ]:
        value = as_dict(mapper, mapper.row(record({**base, "updatedAt": text}, "a")))["updated_at"]
        moment = dt.datetime.fromisoformat(value)
        assert moment == expected and moment.utcoffset() == dt.timedelta(0)  # the same instant, in UTC


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("run_count", "12", "should be an integer (column type integer) but is a string ('12')"),
        ("run_count", True, "but is a boolean (true)"),
        ("run_count", 12.5, "but is a number (12.5)"),
        ("run_count", 2**31, "outside the integer column's range"),
        ("user_id", 42, "should be a string (column type text) but is an integer (42)"),
        ("updatedAt", "yesterday", "should be an ISO 8601 time"),
        ("updatedAt", 1715250000, "but is an integer (1715250000)"),
        ("step_configuration", "jenkins", "should be an object or array (column type jsonb) but is a string"),
        ("status", {"code": 1}, 'but is an object ({"code":1})'),
    ],
)
def test_a_known_field_of_the_wrong_type_is_an_error_naming_the_record_and_field(field, value, words):
    mapper = RowMapper("pipeline_activity")
    with pytest.raises(OpseraRecordError) as err:
        mapper.row(record({**PIPELINE, field: value}))
    assert err.value.record_id == PIPELINE["_id"] and err.value.field == field
    message = str(err.value)
    assert f"_id={PIPELINE['_id']}" in message and repr(field) in message and words in message
    assert 'on_type_mismatch="raw_only"' in message


def test_raw_only_keeps_a_mistyped_value_in_raw_and_counts_it():
    mapper = RowMapper("pipeline_activity", on_type_mismatch="raw_only")
    row = as_dict(mapper, mapper.row(record({**PIPELINE, "run_count": "twelve", "step_index": 3})))
    assert row["run_count"] is None and row["step_index"] == 3
    assert json.loads(row["raw"])["run_count"] == "twelve"
    assert mapper.mismatches == {"run_count": 1}
    assert mapper.examples == [(PIPELINE["_id"], "run_count", "a string ('twelve')")]


def test_a_nul_character_is_refused_by_name_but_an_escaped_backslash_u_is_fine():
    mapper = RowMapper("audit")
    with pytest.raises(OpseraRecordError, match=r"_id=n1 contains the character \\u0000"):
        mapper.row(record(b'{"_id":"n1","createdAt":"2024-05-09T10:00:00.000Z","action":"a\\u0000b"}', "n1"))
    text = b'{"_id":"n2","createdAt":"2024-05-09T10:00:00.000Z","action":"C:\\\\u0000"}'
    assert as_dict(mapper, mapper.row(record(text, "n2")))["action"] == "C:\\u0000"


def test_dict_payloads_are_accepted_too():
    mapper = RowMapper("pipeline_activity")
    rec = Record(PIPELINE["_id"], "2024-05-09T10:11:12.345000Z", "sdlc", PIPELINE)
    assert json.loads(as_dict(mapper, mapper.row(rec))["raw"]) == PIPELINE


def test_on_type_mismatch_is_checked():
    with pytest.raises(ValueError, match="on_type_mismatch must be one of fail, raw_only"):
        RowMapper("audit", on_type_mismatch="ignore")
    # The plain strings and the enum alike; ON_TYPE_MISMATCH spells the same choices as plain strings.
    assert RowMapper("audit", on_type_mismatch="raw_only").on_type_mismatch is OnTypeMismatch.RAW_ONLY
    assert RowMapper("audit", on_type_mismatch=OnTypeMismatch.FAIL).on_type_mismatch is OnTypeMismatch.FAIL
    assert ON_TYPE_MISMATCH == ("fail", "raw_only")


# -- property: every value maps to its column type, or to an error naming the record and field ------------
_KEYS = st.text(max_size=5).filter(lambda s: "\x00" not in s)
_JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12).filter(lambda s: "\x00" not in s),
    st.sampled_from(["2024-05-09T10:00:00.000Z", "2024-05-09", "2024-13-40T00:00:00Z", "12", "null"]),
)
_JSON_VALUES = st.recursive(
    _JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=3),
    max_leaves=6,
)


def _well_typed(kind: FieldKind, value: Any) -> bool:
    if value is None:
        return True
    if kind == FieldKind.TEXT:
        return isinstance(value, str)
    if kind == FieldKind.INTEGER:
        return isinstance(value, int) and not isinstance(value, bool) and INT_MIN <= value <= INT_MAX
    if kind == FieldKind.JSON:
        return isinstance(value, (dict, list))
    if not isinstance(value, str):
        return False
    try:  # ISO 8601 with a date, in Python's or pendulum's reading
        dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return True
    except ValueError:
        pass
    try:
        return len(value) >= 8 and value[:4].isdigit() and bool(to_utc(value))
    except ValueError:
        return False


@settings(max_examples=300, deadline=None)
@given(
    log_type=st.sampled_from(list(OpseraLogType)),
    data=st.data(),
    mode=st.sampled_from(["fail", "raw_only"]),
)
def test_every_field_maps_to_its_type_or_names_the_culprit(log_type, data, mode):
    layout = layout_for(log_type)
    fields = {c.field: c.kind for c in layout.fields}
    chosen = data.draw(st.dictionaries(st.sampled_from(sorted(fields)), _JSON_VALUES, max_size=len(fields)))
    payload = {"_id": "r1", **chosen, "createdAt": "2024-05-09T10:00:00.000Z", "extra": 1}
    mapper = RowMapper(log_type, on_type_mismatch=mode)
    bad = [f for f in layout.fields if f.field in chosen and not _well_typed(f.kind, chosen[f.field])]
    try:
        row = as_dict(mapper, mapper.row(record(payload, "r1")))
    except OpseraRecordError as err:
        assert mode == "fail" and bad and err.record_id == "r1" and err.field == bad[0].field
        return
    assert mode == "raw_only" or not bad
    assert json.loads(row["raw"]) == payload
    for column in layout.fields:
        if column.kind == FieldKind.JSON:  # checked above (bad), filled from raw by the upsert
            assert column.name not in row
            continue
        value, given_value = row[column.name], chosen.get(column.field or "")
        if column in bad or given_value is None:
            assert value is None
        elif column.kind == FieldKind.TIMESTAMP:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            assert moment.utcoffset() == dt.timedelta(0)
            assert moment == to_utc(given_value)
        else:
            assert value == given_value
    assert sum(mapper.mismatches.values()) == (len(bad) if mode == "raw_only" else 0)


_PIPELINE_FIELDS = ENDPOINTS[OpseraLogType.PIPELINE_ACTIVITY].fields
#: Values each kind's column takes as they are: what the fast path must read as the careful one does.
_WELL_TYPED = {
    FieldKind.TEXT: st.none() | st.text(max_size=8).filter(lambda s: "\x00" not in s),
    FieldKind.INTEGER: st.none() | st.integers(INT_MIN, INT_MAX),
    FieldKind.TIMESTAMP: st.none()
    | st.sampled_from(["2024-05-09T10:00:00.000Z", "2024-02-29T23:59:59.999Z"]),
    FieldKind.JSON: st.none()
    | st.dictionaries(_KEYS, _JSON_SCALARS, max_size=2)
    | st.lists(_JSON_SCALARS, max_size=2),
}


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.dictionaries(st.sampled_from(sorted(_PIPELINE_FIELDS)), _JSON_VALUES),
        st.fixed_dictionaries({}, optional={f: _WELL_TYPED[kind] for f, kind in _PIPELINE_FIELDS.items()}),
    ),
    st.booleans(),
)
def test_the_fast_path_and_the_checked_path_agree(chosen, derived):
    mapper = RowMapper("pipeline_activity", on_type_mismatch="raw_only")
    data = msgspec.json.encode({"_id": "r1", **chosen, "createdAt": "2024-05-09T10:00:00.000Z"})
    careful = mapper.row(record(data, "r1"), derived=derived)
    checked = mapper._checked("r1", data)
    if not derived:
        assert tuple(checked[i] for i in mapper._staged) == careful[2:-1]
    fast = mapper.well_typed_rows([record(data, "r1")], derived=derived)
    if fast is not None:
        assert fast == [careful]


# -- COPY text format -------------------------------------------------------------------------------------
def test_copy_text_escapes_what_copy_treats_specially():
    assert copy_text(None) == "\\N"
    assert copy_text("a\tb\nc\rd\\e") == "a\\tb\\nc\\rd\\\\e"
    assert copy_text("\\N") == "\\\\N"  # the text "\N", not NULL
    assert copy_text(7) == "7"
    assert copy_text(dt.datetime(2024, 5, 9, tzinfo=UTC)) == "2024-05-09T00:00:00+00:00"
    assert copy_line(["x", None, 1]) == "x\t\\N\t1\n"


def test_a_time_that_leaves_years_1_to_9999_in_utc_keeps_its_offset():
    mapper = RowMapper("audit")
    payload = {"_id": "a", "createdAt": "2024-05-09T10:00:00.000Z", "updatedAt": "0001-01-01T00:30:00+01:00"}
    assert as_dict(mapper, mapper.row(record(payload, "a")))["updated_at"] == "0001-01-01T00:30:00+01:00"


@settings(max_examples=200, deadline=None)
@given(
    log_type=st.sampled_from(list(OpseraLogType)),
    data=st.data(),
    mode=st.sampled_from(["fail", "raw_only"]),
    derived=st.booleans(),
)
def test_a_whole_response_maps_as_its_records_do_one_by_one(log_type, data, mode, derived):
    # batch_rows decodes a response in one pass when it can; it must give exactly the rows (or the error, for
    # the same record and field) that row() gives record by record.
    fields = sorted(layout_for(log_type).fields, key=lambda c: c.name)
    names = [c.field for c in fields]
    batch = []
    for i in range(data.draw(st.integers(0, 4))):
        chosen = data.draw(st.dictionaries(st.sampled_from(names), _JSON_VALUES, max_size=3))
        if data.draw(st.booleans()):
            chosen = {}  # mostly well typed: the one-pass path is taken
        payload = {"_id": f"r{i}", **chosen, "createdAt": "2024-05-09T10:00:00.000Z"}
        if data.draw(st.integers(0, 9)) == 0:
            payload["message"] = "nul \u0000"
        batch.append(record(payload, f"r{i}"))
    one_by_one, whole = RowMapper(log_type, mode), RowMapper(log_type, mode)
    try:
        expected: Any = [one_by_one.row(r, derived=derived) for r in batch]
    except OpseraRecordError as err:
        expected = (err.record_id, err.field, str(err))
    try:
        got: Any = whole.batch_rows(batch, derived=derived)
    except OpseraRecordError as err:
        got = (err.record_id, err.field, str(err))
    assert got == expected
    assert whole.mismatches == one_by_one.mismatches


def test_a_well_typed_response_is_decoded_in_one_pass():
    mapper = RowMapper("pipeline_activity")
    batch = [record({**PIPELINE, "_id": f"r{i}"}, f"r{i}") for i in range(3)]
    calls = []
    mapper._loose = type("Spy", (), {"decode": lambda self, data: calls.append(data)})()  # per-record decoder
    rows = mapper.batch_rows(batch, derived=True)
    assert not calls and [r[0] for r in rows] == ["r0", "r1", "r2"]
    assert (
        json.loads(rows[0][[c.name for c in mapper.layout.columns].index("step_configuration")])
        == (PIPELINE["step_configuration"])
    )
