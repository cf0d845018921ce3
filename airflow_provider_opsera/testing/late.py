"""Late records: explicit records that the API only shows some time after their ``createdAt``.

Audit systems persist some records late: a record created at 23:59 may first be served at 00:20, after its day
was landed. :class:`LateRecords` holds such records with the moment each becomes visible (``createdAt`` plus
its delay, on the simulator's clock); until then no query, count or ground truth includes it. Records of this
source and of :class:`~airflow_provider_opsera.testing.sources.StaticRecords` can also be updated in place
(:func:`update_in`): same ``_id`` and ``createdAt``, new content and ``updatedAt``.
"""

from __future__ import annotations

import datetime as dt
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from airflow_provider_opsera.catalogue import OpseraLogType
from airflow_provider_opsera.testing.clock import MS_SECOND, iso_ms, parse_iso_ms
from airflow_provider_opsera.testing.sources import MISSING, Source, StaticRecords, View, matches_value


def delay_ms(delay: Any) -> int:
    """Milliseconds of a delay given as a ``timedelta`` or seconds."""
    if isinstance(delay, dt.timedelta):
        return round(delay.total_seconds() * MS_SECOND)
    if isinstance(delay, (int, float)) and not isinstance(delay, bool) and delay >= 0:
        return round(delay * MS_SECOND)
    raise ValueError(f"a visibility delay must be a timedelta or seconds >= 0, not {delay!r}")


class LateRecords(Source):
    """Explicit records, each visible from its ``createdAt`` plus its own delay (simulator clock)."""

    def __init__(self, log_type: OpseraLogType) -> None:
        self.log_type = log_type
        self._times = array("q")
        self._visible_at = array("q")
        self._encoded: list[bytes] = []
        self._docs: list[dict[str, Any]] = []

    def add(self, records: Iterable[Mapping[str, Any]], delays: Iterable[int]) -> None:
        rows = list(zip(self._times, self._visible_at, self._encoded, strict=True))
        for rec, delay in zip(records, delays, strict=True):
            _id, created = rec.get("_id"), rec.get("createdAt")
            if not isinstance(_id, str) or not isinstance(created, str):
                raise ValueError(f"a record needs string _id and createdAt (ISO 8601): {dict(rec)!r:.200}")
            t = parse_iso_ms(created)
            rows.append((t, t + delay, msgspec.json.encode(rec)))
        rows.sort(key=lambda row: row[0])
        self._times = array("q", [r[0] for r in rows])
        self._visible_at = array("q", [r[1] for r in rows])
        self._encoded = [r[2] for r in rows]
        self._docs = [msgspec.json.decode(e) for e in self._encoded]

    def __len__(self) -> int:
        return len(self._times)

    def time_at(self, i: int) -> int:
        return self._times[i]

    def index_lt(self, t: int) -> int:
        return bisect_left(self._times, t)

    def visible(self, now_ms: int) -> int:  # not a prefix here: select() checks each record
        return len(self._times)

    def record(self, i: int) -> dict[str, Any]:
        return msgspec.json.decode(self._encoded[i])

    def value_of(self, i: int, field: str) -> Any:
        return self._docs[i].get(field, MISSING)

    def select(self, lo: int, hi: int, filters: Mapping[str, str], now_ms: int) -> View:
        a, b = self.index_lt(lo), self.index_lt(hi)
        keep = array(
            "q",
            [
                i
                for i in range(a, b)
                if self._visible_at[i] <= now_ms
                and all(matches_value(self.value_of(i, k), w) for k, w in filters.items())
            ],
        )
        return View(self, keep, 0, len(keep))

    def replace(self, i: int, record: Mapping[str, Any]) -> None:
        self._encoded[i] = msgspec.json.encode(record)
        self._docs[i] = msgspec.json.decode(self._encoded[i])


def _replace_static(source: StaticRecords, i: int, record: Mapping[str, Any]) -> None:
    source._encoded[i] = msgspec.json.encode(record)
    source._docs[i] = msgspec.json.decode(source._encoded[i])


def update_in(
    sources: Iterable[Source], record_id: str, changes: Mapping[str, Any], now_ms: int
) -> dict[str, Any]:
    """Update the explicit record ``record_id`` in place: ``changes`` merged in, ``updatedAt`` set to now
    unless ``changes`` gives it. ``_id`` and ``createdAt`` cannot change. Returns the record as now served."""
    if "_id" in changes or "createdAt" in changes:
        raise ValueError("an update keeps the record's _id and createdAt")
    for source in sources:
        docs = getattr(source, "_docs", None)
        if not isinstance(source, (StaticRecords, LateRecords)) or docs is None:
            continue
        for i, doc in enumerate(docs):
            if doc.get("_id") == record_id:
                new = {**doc, **changes}
                if "updatedAt" not in changes:
                    new["updatedAt"] = iso_ms(now_ms)
                if isinstance(source, LateRecords):
                    source.replace(i, new)
                else:
                    _replace_static(source, i, new)
                return dict(new)
    raise KeyError(f"no record added with add_records or add_late_records has _id {record_id!r}")
