"""Decoding one response body into checked records. Shared by the hook and the trigger."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import msgspec

from airflow_provider_opsera.catalogue import Endpoint
from airflow_provider_opsera.retry import RetryableAPIError, excerpt
from airflow_provider_opsera.timeutils import created_key


class Record(NamedTuple):
    """One log record: its id, the comparable form of its ``createdAt``, its split-field value, and the
    record itself (a dict, or the JSON bytes exactly as the API sent them)."""

    id: str
    key: str
    split: str | None
    payload: Any


@dataclass
class Page:
    """One decoded response: the ``count`` the API reported (``None`` if absent) and the records of ``data``."""

    count: int | None
    records: list[Record]


class _RawEnvelope(msgspec.Struct):
    data: list[msgspec.Raw]
    count: Any = None


class _Envelope(msgspec.Struct):
    data: list[Any]
    count: Any = None


class _Meta(msgspec.Struct):
    id: Any = msgspec.field(name="_id", default=None)
    createdAt: Any = None
    type: Any = None
    scope: Any = None


_meta_decoder = msgspec.json.Decoder(_Meta)
_raw_decoder = msgspec.json.Decoder(_RawEnvelope)
_dict_decoder = msgspec.json.Decoder(_Envelope)


class MalformedResponseError(RetryableAPIError):
    """A 200 response whose body is not ``{"count": ..., "data": [records]}`` with ``_id`` and ``createdAt``."""


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
    records: list[Record] = []
    field = endpoint.split_field
    if raw:
        for i, item in enumerate(envelope.data):
            try:
                meta = _meta_decoder.decode(item)
            except msgspec.ValidationError:
                raise MalformedResponseError(
                    f"{endpoint.log_type.value}: record #{i} of the response is not a JSON object.",
                    url=url,
                    body=excerpt(bytes(item)),
                ) from None
            rid, key = _check(endpoint, url, i, meta.id, meta.createdAt)
            split = _split(endpoint, getattr(meta, field)) if field else None
            data = bytes(item)
            if b"\n" in data or b"\r" in data:  # formatting whitespace only: JSON strings escape newlines
                data = data.replace(b"\n", b"").replace(b"\r", b"")
            records.append(Record(rid, key, split, data))
    else:
        for i, item in enumerate(envelope.data):
            if not isinstance(item, dict):
                raise MalformedResponseError(
                    f"{endpoint.log_type.value}: record #{i} of the response is not a JSON object.",
                    url=url,
                    body=excerpt(repr(item)),
                )
            rid, key = _check(endpoint, url, i, item.get("_id"), item.get("createdAt"))
            records.append(Record(rid, key, _split(endpoint, item.get(field)) if field else None, item))
    return Page(count=_count(envelope.count), records=records)
