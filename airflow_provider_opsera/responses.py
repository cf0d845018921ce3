"""Decoding one response body into checked records. Shared by the hook and the trigger.

A page of raw records takes :func:`well_formed_records` (the fast path: one msgspec pass and one regex for
the whole page) when every record is what the API writes; anything else, and every page of dicts, takes
:func:`checked_records`, its property-tested twin, which names the record at fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import msgspec
from pendulum import DateTime

from airflow_provider_opsera.catalogue import Endpoint
from airflow_provider_opsera.exceptions import MalformedResponseError
from airflow_provider_opsera.retry import excerpt
from airflow_provider_opsera.timeutils import api_time_keys, created_key


class Record(NamedTuple):
    """One log record: its id, the comparable form of its ``createdAt``, its split-field value, the record
    itself (a dict, or the JSON bytes exactly as the API sent them), and its ``updatedAt`` as the API wrote it
    (text, or None): which of two versions of one ``_id`` is newer (:func:`supersedes`)."""

    id: str
    key: str
    split: str | None
    payload: Any
    updated: str | None = None


def supersedes(new: Record, old: Record) -> bool:
    """Whether ``new`` is a later version of ``old`` (same ``_id``): its ``updatedAt`` is greater. A version
    without a readable ``updatedAt`` never replaces one with it; equal times keep the one seen first."""
    return newer(new.updated, old.updated)


def newer(new: str | None, old: str | None) -> bool:
    """:func:`supersedes` on two ``updatedAt`` texts as the API wrote them (what is kept of a record passed on)."""
    new_key, old_key = created_key(new), created_key(old)
    return new_key is not None and (old_key is None or new_key > old_key)


@dataclass
class Page:
    """One decoded response: the ``count`` the API reported (``None`` if absent) and the records of ``data``."""

    count: int | None
    records: list[Record]
    #: When the answer was read (the worker's clock), set by the hook: what a ``range`` window is proven by.
    received: DateTime | None = None


class _RawEnvelope(msgspec.Struct):
    data: list[msgspec.Raw]
    count: Any = None


class _Envelope(msgspec.Struct):
    data: list[Any]
    count: Any = None


class _WellFormed(msgspec.Struct, gc=False):
    """What the API writes: a string ``_id``, a string ``createdAt`` (checked by :func:`api_time_keys`)."""

    id: str = msgspec.field(name="_id")
    createdAt: str
    # The split fields as strings (or absent, or null); anything else takes the careful path.
    type: str | None = None
    scope: str | None = None
    updatedAt: str | None = None


class _WellFormedEnvelope(msgspec.Struct):
    data: list[_WellFormed]


_well_formed_decoder = msgspec.json.Decoder(_WellFormedEnvelope)
_raw_decoder = msgspec.json.Decoder(_RawEnvelope)
_dict_decoder = msgspec.json.Decoder(_Envelope)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _check(endpoint: Endpoint, url: str, index: int, rid: Any, created: Any) -> tuple[str, str]:
    if not isinstance(rid, (str, int)) or isinstance(rid, bool) or rid == "":
        raise MalformedResponseError(
            f"{endpoint.log_type.value}: record #{index} of the response has no _id; every Opsera log record "
            "must carry one.",
            url=url,
        )
    key = created_key(created)
    if key is None:
        raise MalformedResponseError(
            f"{endpoint.log_type.value}: record _id={rid} has createdAt={created!r}, not an ISO 8601 time.",
            url=url,
        )
    return str(rid), key


def _split(endpoint: Endpoint, value: Any) -> str | None:
    return (
        str(value)
        if endpoint.split_field and isinstance(value, (str, int)) and not isinstance(value, bool)
        else None
    )


def decode_page(body: bytes, endpoint: Endpoint, url: str, *, raw: bool = False) -> Page:
    """Decode and check one response body; records come as dicts, or as their JSON bytes with ``raw``."""
    try:
        if raw:
            # Raw records are passed on unparsed: make sure they are text a JSON reader will accept.
            body.decode("utf-8")
        envelope = (_raw_decoder if raw else _dict_decoder).decode(body)
    except UnicodeDecodeError as err:
        raise MalformedResponseError(
            f"{endpoint.log_type.value}: the response is not valid UTF-8 ({err.reason} at byte {err.start}).",
            url=url,
            body=excerpt(body),
        ) from None
    except msgspec.ValidationError as err:
        raise MalformedResponseError(
            f'{endpoint.log_type.value}: the response is JSON but not {{"count": n, "data": [...]}} ({err}).',
            url=url,
            body=excerpt(body),
        ) from None
    except msgspec.DecodeError as err:
        raise MalformedResponseError(
            f"{endpoint.log_type.value}: the response is not valid JSON ({err}).", url=url, body=excerpt(body)
        ) from None
    records = well_formed_records(body, endpoint, envelope.data) if raw else None
    if records is None:
        records = checked_records(endpoint, url, envelope.data, raw)
    return Page(count=_count(envelope.count), records=records)


def well_formed_records(body: bytes, endpoint: Endpoint, data: list[msgspec.Raw]) -> list[Record] | None:
    """The fast path, for raw records: every record well formed, checked in one msgspec pass over ``body``
    and one regex over its times; None if any is not (then :func:`checked_records` reads the page)."""
    try:
        metas = _well_formed_decoder.decode(body).data
    except msgspec.ValidationError:
        return None
    keys = api_time_keys([m.createdAt for m in metas])
    ids = [m.id for m in metas]
    if keys is None or not all(ids) or len(metas) != len(data):
        return None  # the careful path names the record at fault, or reads times in other forms
    field = endpoint.split_field
    splits = [getattr(m, field) for m in metas] if field else [None] * len(data)
    payloads = [_one_line(bytes(item)) for item in data]
    return list(map(Record, ids, keys, splits, payloads, [m.updatedAt for m in metas]))


def _one_line(data: bytes) -> bytes:
    # Formatting whitespace only: JSON strings escape their newlines. (Nothing to replace copies nothing.)
    return data.replace(b"\n", b"").replace(b"\r", b"")


def checked_records(endpoint: Endpoint, url: str, data: list[Any], raw: bool) -> list[Record]:
    """The careful path: record by record (``data`` holds dicts, or JSON bytes with ``raw``), naming the first
    one that is not a JSON object with an ``_id`` and a ``createdAt``."""
    records: list[Record] = []
    field = endpoint.split_field
    for i, item in enumerate(data):
        record = msgspec.json.decode(item) if raw else item
        if not isinstance(record, dict):
            raise MalformedResponseError(
                f"{endpoint.log_type.value}: record #{i} of the response is not a JSON object.",
                url=url,
                body=excerpt(bytes(item) if raw else repr(item)),
            )
        rid, key = _check(endpoint, url, i, record.get("_id"), record.get("createdAt"))
        split = _split(endpoint, record.get(field)) if field else None
        updated = record.get("updatedAt")
        payload = _one_line(bytes(item)) if raw else item
        records.append(Record(rid, key, split, payload, updated if isinstance(updated, str) else None))
    return records
