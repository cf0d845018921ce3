"""Decoding a page: the one-pass path for well-formed pages must agree with the record-by-record path.

``decode_page`` first tries to check a whole page of raw records at once (:func:`well_formed_records`: one
msgspec pass for ids, times and split values, one regex over all the times); anything unusual, and every page
of dicts, goes to the careful path (:func:`checked_records`), which names the record at fault.
These tests pin the two to the same answers, so the speed-up can never change what is extracted.
"""

from __future__ import annotations

import json

import msgspec
import pendulum
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_opsera.catalogue import ENDPOINTS, OpseraLogType
from airflow_provider_opsera.responses import (
    MalformedResponseError,
    _dict_decoder,
    _raw_decoder,
    checked_records,
    decode_page,
    well_formed_records,
)
from airflow_provider_opsera.timeutils import api_time_keys, created_key, parsed_key

PROPS = settings(
    max_examples=300,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
AUDIT = ENDPOINTS[OpseraLogType.AUDIT]
ACTIVITY = ENDPOINTS[OpseraLogType.USER_ACTIVITY]


@st.composite
def api_times(draw: st.DrawFn) -> str:
    """Times in the API's format, on days that exist and days that do not (02-29 in any year, 04-31, ...)."""
    year = draw(st.sampled_from([1999, 2000, 2023, 2024, 2100]))
    month = draw(st.integers(1, 12))
    day = draw(st.sampled_from([1, 9, 10, 28, 29, 30, 31]))
    hms = draw(st.tuples(st.integers(0, 23), st.integers(0, 59), st.integers(0, 59), st.integers(0, 999)))
    return f"{year:04d}-{month:02d}-{day:02d}T{hms[0]:02d}:{hms[1]:02d}:{hms[2]:02d}.{hms[3]:03d}Z"


ODD_TIMES = st.sampled_from(
    [
        "2024-05-10T00:00:00Z",
        "2024-05-10T00:00:00.000+00:00",
        "2024-05-10 00:00:00",
        "2024-05-10T24:00:00.000Z",
        "2024-05-10T00:00:00.000Z\n2024-05-10T00:00:00.000Z",
        "2024-05-10T00:00:00.000Z\n",
        "",
        "10:00",
    ]
)
TIMES = st.one_of(api_times(), api_times(), ODD_TIMES)


@PROPS
@given(st.lists(TIMES, max_size=6))
def test_api_time_keys_agree_with_created_key(times):
    one_by_one = [created_key(t) for t in times]
    # created_key takes the fast path where it can: it reads every time as the careful path does.
    assert one_by_one == [parsed_key(t) for t in times]
    keys = api_time_keys(times)
    if keys is not None:
        assert keys == one_by_one
    else:
        # Only pages with something unusual are left to the careful path (February 29th is, in any year).
        assert any(
            len(t) != 24 or k != t[:23] + "000Z" or t[5:10] == "02-29"
            for t, k in zip(times, one_by_one, strict=True)
        )


def test_api_time_keys_cover_the_calendar():
    day = pendulum.datetime(2023, 1, 1, tz="UTC")
    times = [day.add(days=i).format("YYYY-MM-DD[T]HH:mm:ss.SSS[Z]") for i in range(365 * 2 + 1)]
    keys = api_time_keys([t for t in times if t[5:10] != "02-29"])
    assert keys is not None and len(keys) == 365 * 2
    assert keys == [parsed_key(t) for t in times if t[5:10] != "02-29"]
    assert created_key("2024-02-29T10:11:12.345Z") == "2024-02-29T10:11:12.345000Z"  # the careful path
    assert api_time_keys(["2023-02-29T00:00:00.000Z"]) is None
    assert api_time_keys(["2024-04-31T00:00:00.000Z"]) is None
    assert api_time_keys(["2024-05-10T00:00:00.000Z\n2024-05-10T00:00:00.000Z"]) is None
    assert api_time_keys([]) == []


RECORDS = st.fixed_dictionaries(
    {"_id": st.one_of(st.text(max_size=3), st.integers(-2, 2), st.none(), st.booleans())},
    optional={
        "createdAt": st.one_of(TIMES, st.integers(), st.none()),
        "type": st.one_of(st.sampled_from(["login", "", "api"]), st.integers(0, 3), st.none(), st.booleans()),
        "scope": st.one_of(st.sampled_from(["all", "x"]), st.none(), st.lists(st.integers(), max_size=1)),
        "note": st.text(max_size=4),
    },
)
WELL_FORMED = st.fixed_dictionaries(
    {"_id": st.text(min_size=1, max_size=4), "createdAt": api_times()},
    optional={"type": st.sampled_from(["login", "api"]), "note": st.text(max_size=4)},
)


@PROPS
@given(
    records=st.lists(st.one_of(WELL_FORMED, WELL_FORMED, RECORDS), max_size=6),
    endpoint=st.sampled_from([AUDIT, ACTIVITY, ENDPOINTS[OpseraLogType.TOKEN_ACTIVITY]]),
    indent=st.sampled_from([None, 1]),
    raw=st.booleans(),
)
def test_the_one_pass_path_agrees_with_the_careful_path(records, endpoint, indent, raw):
    body = json.dumps({"count": len(records), "data": records}, indent=indent).encode()
    decoder = msgspec.json.Decoder(dict)
    # The fast path reads raw records only; the careful one reads a page of raw records or of dicts.
    fast = well_formed_records(body, endpoint, _raw_decoder.decode(body).data)
    data = (_raw_decoder if raw else _dict_decoder).decode(body).data
    try:
        careful = checked_records(endpoint, "http://x/api", data, raw)
    except MalformedResponseError:
        assert fast is None, "the one-pass path accepted a page the careful path refuses"
        return
    if fast is None:
        return  # unusual but valid (an int id, another time format): the careful path reads it
    assert [r[:3] for r in fast] == [r[:3] for r in careful]
    assert all(b"\n" not in r.payload for r in fast)
    if raw:
        assert [decoder.decode(r.payload) for r in fast] == [decoder.decode(r.payload) for r in careful]
        assert [r.payload for r in fast] == [r.payload for r in careful]  # byte for byte
    else:
        assert [decoder.decode(r.payload) for r in fast] == [r.payload for r in careful]


@pytest.mark.parametrize("raw", [False, True])
def test_a_page_with_one_bad_record_names_it(raw):
    good = {"_id": "a", "createdAt": "2024-05-10T00:00:00.000Z"}
    bad = {"_id": "b", "createdAt": "2024-02-30T00:00:00.000Z"}
    body = json.dumps({"count": 3, "data": [good, good | {"_id": "c"}, bad]}).encode()
    with pytest.raises(MalformedResponseError, match=r"_id=b has createdAt='2024-02-30T00:00:00.000Z'"):
        decode_page(body, AUDIT, "http://x/api", raw=raw)
