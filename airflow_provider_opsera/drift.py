"""Completeness over time: when an interval may be read (``settle``), which earlier intervals a run re-verifies
(``recheck``), and how drift between the API now and what was landed is found and reported.

Sink-independent. The operators' shell (:mod:`airflow_provider_opsera.operators.base`) drives it; each sink
says what it landed for an interval (a count; ids with their ``updatedAt``) and how to re-land it.

- :func:`as_duration`: ``settle`` and ``recheck`` as a ``timedelta`` (a ``timedelta``, seconds, or an ISO 8601
  duration such as ``"PT15M"`` or ``"P3D"``).
- :func:`earlier_intervals`: the DAG's timetable intervals that ended within ``recheck`` before ``start``
  (or intervals of the current one's length, stepping back, where the timetable cannot say).
- :func:`api_count`: the API's count of ``[start, end)`` now, cheaply: on v2 one page of size 1 for the
  interval's query gives the total, and the records the query's minute margins add (one small window at each
  edge, whatever the server's reading of ``start_time``/``end_time``) are subtracted, so the count is exact.
  v1 has no cheap count (``count`` may only echo the page): the recheck reads the interval through its proof.
- :func:`read_api`: the interval in full, through the hook's proof, as ``_id -> updatedAt`` and spooled to a
  temporary file (the records' own bytes) so a drifted interval is re-landed from exactly what was compared,
  without holding it in memory.
- :class:`Drift`: one interval's report (interval, count before and after, ids added, removed, changed).
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import msgspec
import pendulum
from pendulum import DateTime

from airflow_provider_opsera.catalogue import TimeStyle, endpoint_for, validate_params
from airflow_provider_opsera.responses import Record
from airflow_provider_opsera.timeutils import sort_key, to_utc

log = logging.getLogger(__name__)

#: ``recheck_mode``: ``"count"`` compares counts (ids only once counts differ), ``"full"`` re-reads every
#: earlier interval and compares ids and ``updatedAt``.
RECHECK_MODES = ("count", "full")
#: ``on_drift``: re-land the interval, only warn, or fail the task.
ON_DRIFT = ("reland", "warn", "fail")
#: Ids listed per kind (added, removed, changed) in a report; the counts are always whole.
MAX_REPORTED_IDS = 100
#: Most earlier intervals one run re-verifies (an hourly DAG with a year of recheck would be 8,760).
MAX_INTERVALS = 1000
#: Records per batch when re-landing from the spool.
_SPOOL_BATCH = 5000
#: Most pages read at one edge of a v2 count before the cheap count gives up (and the recheck reads in full).
_EDGE_PAGES = 5


def as_duration(value: Any, name: str, *, allow_none: bool = False) -> dt.timedelta | None:
    """A ``timedelta`` from a ``timedelta``, seconds, or an ISO 8601 duration (``"PT15M"``, ``"P3D"``).

    Zero is allowed, negative is not; ``None`` only with ``allow_none``.
    """
    if value is None:
        if allow_none:
            return None
        raise ValueError(f"{name} must be a duration (a timedelta, seconds or e.g. 'PT15M'), not None.")
    if isinstance(value, dt.timedelta):
        duration = dt.timedelta(seconds=value.total_seconds())
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        duration = dt.timedelta(seconds=value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            parsed = pendulum.parse(text)
        except Exception:
            parsed = None
        if not isinstance(parsed, pendulum.Duration):
            raise ValueError(f"{name}={value!r} is not an ISO 8601 duration such as 'PT15M' or 'P3D'.")
        if parsed.years or parsed.months:
            raise ValueError(f"{name}={value!r}: give days or smaller units (a month has no fixed length).")
        duration = dt.timedelta(seconds=parsed.total_seconds())
    else:
        raise TypeError(f"{name} must be a timedelta, seconds or an ISO 8601 duration, not {value!r}.")
    if duration < dt.timedelta(0):
        raise ValueError(f"{name} must not be negative, not {value!r}.")
    return duration


# -- which intervals ----------------------------------------------------------------------------------------
def _core_timetable(timetable: Any) -> Any:
    """A timetable that can compute intervals: core's, or core's twin of a Task SDK definition."""
    if timetable is None or hasattr(timetable, "infer_manual_data_interval"):
        return timetable
    try:  # Airflow 3.2+: the SDK's timetables are definitions; the scheduler's classes compute
        from airflow.timetables.interval import CronDataIntervalTimetable, DeltaDataIntervalTimetable
    except ImportError:  # pragma: no cover - core is installed with every Airflow 3
        return None
    names = {cls.__name__ for cls in type(timetable).__mro__}
    if "CronDataIntervalTimetable" in names:
        return CronDataIntervalTimetable(timetable.expression, timetable.timezone)
    if "DeltaDataIntervalTimetable" in names:
        return DeltaDataIntervalTimetable(timetable.delta)
    return None


def _previous(timetable: Any, start: DateTime) -> tuple[DateTime, DateTime] | None:
    """The timetable's interval that ends at ``start``, or None when it does not say so."""
    if timetable is None:
        return None
    try:
        interval = timetable.infer_manual_data_interval(run_after=start)
        lo, hi = to_utc(interval.start), to_utc(interval.end)
    except Exception:
        return None
    return (lo, hi) if hi == start and lo < hi else None


def earlier_intervals(
    start: DateTime, end: DateTime, span: dt.timedelta, timetable: Any = None
) -> list[tuple[DateTime, DateTime]]:
    """The intervals before ``[start, end)`` that ended within ``span`` before ``start``, newest first.

    From ``timetable`` (the DAG's, when ``[start, end)`` is its data interval) where it says which interval ends
    where the next begins; else intervals of ``end - start``, back to back.
    """
    table = _core_timetable(timetable)
    length = end - start
    out: list[tuple[DateTime, DateTime]] = []
    hi = start
    while hi > start - span and len(out) < MAX_INTERVALS:
        previous = _previous(table, hi)
        lo = previous[0] if previous is not None else hi - length
        out.append((lo, hi))
        hi = lo
    return out


# -- the API's side -------------------------------------------------------------------------------------------
def _minute_aligned(moment: DateTime) -> bool:
    return moment.second == 0 and moment.microsecond == 0


def _v2_window(lo: DateTime, hi: DateTime) -> dict[str, str]:
    return {
        "start_date": lo.format("YYYY-MM-DD"),
        "start_time": lo.format("HH:mm"),
        "end_date": hi.format("YYYY-MM-DD"),
        "end_time": hi.format("HH:mm"),
    }


def _edge(hook: Any, log_type: str, query: dict[str, str], keep: Any) -> int | None:
    """How many distinct records of one small v2 window satisfy ``keep(key)``; None if it cannot be sure."""
    endpoint = endpoint_for(log_type)
    seen: set[str] = set()
    kept = 0
    total = None
    for number in range(1, _EDGE_PAGES + 1):
        params = validate_params(log_type, {**query, "page": number, "page_size": endpoint.cap})
        page = hook._call(endpoint, params, raw=True)
        total = page.count if total is None else max(total, page.count or 0)
        for record in page.records:
            if record.id not in seen:
                seen.add(record.id)
                kept += bool(keep(record.key))
        if total is None or len(seen) >= total or not page.records:
            return kept if total is not None and len(seen) >= total else None
    return None


def api_count(
    hook: Any, log_type: str, start: DateTime, end: DateTime, filters: Mapping[str, str]
) -> int | None:
    """The API's count of ``[start, end)`` now from a few requests (v2), or None where there is no cheap count.

    v2 (minute windows, ``count`` is the total): the total of the window ``start - 1 min .. end`` (one page of
    size 1), minus the records of that window outside ``[start, end)``. Those lie before ``start`` or at/after
    ``end``; each edge is read as a small window sharing the big one's start (or end) parameter, so it sees
    the same records there under any reading of the bounds, and only its records outside ``[start, end)`` are
    counted. v1, and intervals not on whole minutes: None (read in full instead).
    """
    endpoint = endpoint_for(log_type)
    if not (endpoint.paged and endpoint.time_style is TimeStyle.MINUTES):
        return None
    if not (_minute_aligned(start) and _minute_aligned(end)):
        return None
    first = start.subtract(minutes=1)  # the extraction's own margin (planning.V2_START_MARGIN_MINUTES)
    whole = validate_params(log_type, {**filters, **_v2_window(first, end), "page": 1, "page_size": 1})
    total = hook._call(endpoint, whole, raw=True).count
    if total is None:
        return None
    lo_key, hi_key = sort_key(start), sort_key(end)
    before = _edge(hook, log_type, {**filters, **_v2_window(first, start)}, lambda k: k < lo_key)
    if before is None:
        return None
    after = _edge(
        hook, log_type, {**filters, **_v2_window(end.subtract(minutes=1), end)}, lambda k: k >= hi_key
    )
    if after is None:
        return None
    return total - before - after


class _Identity(msgspec.Struct):
    id: Any = msgspec.field(name="_id", default=None)
    updated: Any = msgspec.field(name="updatedAt", default=None)


_IDENTITY = msgspec.json.Decoder(_Identity)


def identity(payload: bytes) -> tuple[str, str | None]:
    """A record's ``_id`` and ``updatedAt`` (None when absent) from its JSON bytes."""
    found = _IDENTITY.decode(payload)
    return str(found.id), None if found.updated is None else str(found.updated)


def updated_at(payload: bytes) -> str | None:
    """A record's ``updatedAt`` from its JSON bytes (None when absent)."""
    return identity(payload)[1]


@dataclass
class ApiRead:
    """An interval read in full: ``_id -> updatedAt``, and the records' bytes spooled to a temporary file."""

    versions: dict[str, str | None]
    spool: IO[bytes]

    def records(self) -> Iterator[list[Record]]:
        """The spooled records, in batches, as :class:`Record` (``payload``: the record's JSON bytes)."""
        self.spool.seek(0)
        batch: list[Record] = []
        for line in self.spool:
            head, payload = line.rstrip(b"\n").split(b"\t", 1)
            rid, key = msgspec.json.decode(head)
            batch.append(Record(rid, key, None, payload))
            if len(batch) >= _SPOOL_BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    def batches(self) -> Iterator[list[bytes]]:
        """The spooled records' JSON bytes, in batches (what the landing writes)."""
        for batch in self.records():
            yield [record.payload for record in batch]

    def close(self) -> None:
        self.spool.close()


def read_api(hook: Any, log_type: str, start: DateTime, end: DateTime, filters: Mapping[str, str]) -> ApiRead:
    """Every record of ``[start, end)`` now, through the hook's proof (complete or an error)."""
    spool = tempfile.TemporaryFile(prefix="opsera-recheck-")  # noqa: SIM115 - closed by ApiRead.close
    versions: dict[str, str | None] = {}
    try:
        for batch in hook.iter_log_batches(log_type, start, end, filters, raw=True):
            for record in batch:
                versions[record.id] = updated_at(record.payload)
                # one line each: [id, key] (JSON: no raw tab in it), a tab, the record's bytes (one line)
                spool.write(msgspec.json.encode([record.id, record.key]) + b"\t" + record.payload + b"\n")
    except BaseException:
        spool.close()
        raise
    return ApiRead(versions, spool)


# -- the report -----------------------------------------------------------------------------------------------
def _ids(ids: set[str]) -> list[str]:
    return sorted(ids)[:MAX_REPORTED_IDS]


@dataclass
class Drift:
    """How one earlier interval differs between what was landed and what the API holds now."""

    start: str
    end: str
    #: Where it was landed: the folder URI, or ``schema.table``.
    target: str
    before: int
    after: int
    added: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    #: Same ``_id``, another ``updatedAt`` (found by a full comparison).
    changed: set[str] = field(default_factory=set)
    #: ``"relanded"``, ``"warned"`` or ``"failed"``.
    action: str = ""

    @property
    def reason(self) -> str:
        """The revision's reason when re-landed: ``"recheck: late records"``, ``"recheck: updated records"``."""
        kinds = [
            what
            for what, ids in (
                ("late records", self.added),
                ("removed records", self.removed),
                ("updated records", self.changed),
            )
            if ids
        ]
        return "recheck: " + (", ".join(kinds) or "count changed")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (XCom, manifests): counts in full, at most ``MAX_REPORTED_IDS`` ids of each kind."""
        return {
            "start": self.start,
            "end": self.end,
            "target": self.target,
            "count_before": self.before,
            "count_after": self.after,
            "added": len(self.added),
            "removed": len(self.removed),
            "changed": len(self.changed),
            "added_ids": _ids(self.added),
            "removed_ids": _ids(self.removed),
            "changed_ids": _ids(self.changed),
            "action": self.action,
        }

    def describe(self) -> str:
        parts = [f"{len(self.added)} added", f"{len(self.removed)} removed"]
        if self.changed:
            parts.append(f"{len(self.changed)} changed")
        shown = ", ".join(_ids(self.added | self.removed | self.changed)[:5])
        return (
            f"[{self.start}, {self.end}) -> {self.target}: {self.before} landed, {self.after} at the API now "
            f"({', '.join(parts)}; e.g. {shown})"
        )


def compare(
    landed: Mapping[str, str | None], now: Mapping[str, str | None], *, updates: bool
) -> tuple[set[str], set[str], set[str]]:
    """Ids added, removed and (with ``updates``) changed by ``updatedAt`` between ``landed`` and ``now``."""
    added = now.keys() - landed.keys()
    removed = landed.keys() - now.keys()
    changed: set[str] = set()
    if updates:
        changed = {i for i in now.keys() & landed.keys() if now[i] != landed[i]}
    return set(added), set(removed), changed
