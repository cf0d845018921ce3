"""Pure request planning: which queries cover ``[start, end)``, and how a capped query is split.

Nothing here does I/O or reads a clock: "now" is an argument. A :class:`Piece` is one query (a superset of
some slice of the interval) together with the exact slice of records it is responsible for:
``lo <= createdAt < hi`` and, once split, one value of the endpoint's split field. Pieces produced from one
interval partition it: every record belongs to exactly one piece, so exactly-once needs no interval-wide
memory of ids.

:func:`plan` picks the cheapest plan it can prove, given the moment the extraction starts:

- v1 endpoints that take ``range`` (relative to the server's now) read a recent interval as one
  :class:`RangeWindow` reaching back past its start by :data:`CLOCK_SKEW` plus :data:`RANGE_ALLOWANCE`, when
  that window is shorter than the whole days the day plan would download. It is proven complete when its
  answer holds fewer records than the cap and came back soon enough to still reach back to ``start``; if not,
  the day plan (its fallback) runs instead. Cheaper for hourly DAGs, and complete where a whole day is over the
  cap and cannot be split.
- v2 intervals reaching into the present are cut where records can no longer arrive while the pages are read
  (:func:`stable_until`): the part before is paged as usual; the live rest is one :attr:`Piece.live` window,
  read as a single page (one answer is one snapshot, taken after the extraction started).
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from pendulum import DateTime

from airflow_provider_opsera.catalogue import Endpoint, TimeStyle
from airflow_provider_opsera.timeutils import ceil_day, ceil_minute, floor_day, floor_minute, sort_key

#: The v2 query starts this much before its slice: covers a server that reads ``start_time`` as exclusive.
V2_START_MARGIN_MINUTES = 1
#: How far the API server's clock may differ from the worker's, either way. A ``range`` window reaches back
#: this much further than the worker's clock says it must; a live v2 window starts this much earlier.
CLOCK_SKEW = dt.timedelta(seconds=60)
#: How long a ``range`` request may take, from planning to its answer, and still prove it reached back to
#: ``start`` (the server's now moves on while it waits in line or is retried). A slower answer is asked again.
RANGE_ALLOWANCE = dt.timedelta(seconds=60)


@dataclass(frozen=True)
class _Slice:
    """The records a query answers for: ``lo <= createdAt < hi`` (UTC)."""

    lo: DateTime
    hi: DateTime

    @property
    def lo_key(self) -> str:
        return sort_key(self.lo)

    @property
    def hi_key(self) -> str:
        return sort_key(self.hi)

    def describe(self) -> str:
        return f"[{self.lo.isoformat()}, {self.hi.isoformat()})"


@dataclass(frozen=True)
class Piece(_Slice):
    """One query and the slice of records it answers for."""

    #: The span the query's time parameters name (whole days, or whole minutes for v2).
    span_start: DateTime
    span_end: DateTime
    #: The endpoint's own filters (validated), plus the split value once split.
    filters: tuple[tuple[str, str], ...] = ()
    #: ``(field, value)`` when this piece is one value of the split field.
    split: tuple[str, str] | None = None
    #: A v2 window reaching into the present: records may still arrive in it while it is read.
    live: bool = False

    @property
    def days(self) -> int:
        return max(1, round((self.span_end - self.span_start).total_seconds() / 86400))

    @property
    def minutes(self) -> int:
        return max(1, round((self.span_end - self.span_start).total_seconds() / 60))

    def describe(self) -> str:
        text = super().describe()
        if self.split:
            text += f" {self.split[0]}={self.split[1]}"
        return text

    def query(self, endpoint: Endpoint) -> dict[str, str]:
        """The query parameters (without paging) that cover this piece."""
        params = dict(self.filters)
        if endpoint.time_style is TimeStyle.MINUTES:
            start = self.span_start.subtract(minutes=V2_START_MARGIN_MINUTES)
            params.update(
                start_date=start.format("YYYY-MM-DD"),
                start_time=start.format("HH:mm"),
                end_date=self.span_end.format("YYYY-MM-DD"),
                end_time=self.span_end.format("HH:mm"),
            )
        elif self.days == 1:
            params["date"] = self.span_start.format("YYYY-MM-DD")
        else:
            # Whether ``end`` is inclusive is not documented: ``end`` = the day after the last day covers
            # both readings (the extra day, if any, is filtered out on createdAt).
            params["start"] = self.span_start.format("YYYY-MM-DD")
            params["end"] = self.span_end.format("YYYY-MM-DD")
        return params


def _piece(lo: DateTime, hi: DateTime, span_start: DateTime, span_end: DateTime, filters) -> Piece:
    return Piece(
        lo=max(lo, span_start),
        hi=min(hi, span_end),
        span_start=span_start,
        span_end=span_end,
        filters=filters,
    )


def stable_until(now: DateTime) -> DateTime:
    """The minute boundary before which no record can still arrive while a v2 window is read at ``now``.

    A query ending there may reach a minute further (``end_time`` read as inclusive), and the server's clock
    may lag the worker's by :data:`CLOCK_SKEW`: both stay before the server's now.
    """
    return floor_minute(now - CLOCK_SKEW).subtract(minutes=1)


def initial_pieces(
    endpoint: Endpoint,
    start: DateTime,
    end: DateTime,
    filters: Mapping[str, str],
    *,
    now: DateTime | None = None,
) -> list[Piece]:
    """The first queries for ``[start, end)``: one covering span, or one per day where only ``date`` exists.

    With ``now`` (when the extraction starts), a v2 interval reaching past :func:`stable_until` ends with one
    :attr:`~Piece.live` piece for the part where records may still arrive.
    """
    fixed = tuple(sorted(filters.items()))
    if endpoint.time_style is TimeStyle.MINUTES:
        stable = stable_until(now) if now is not None else None
        if stable is None or ceil_minute(end) <= stable:
            return [_piece(start, end, floor_minute(start), ceil_minute(end), fixed)]
        out = [_piece(start, stable, floor_minute(start), stable, fixed)] if start < stable else []
        tail = max(start, stable)
        return [*out, replace(_piece(tail, end, floor_minute(tail), ceil_minute(end), fixed), live=True)]
    first, last = floor_day(start), ceil_day(end)
    if endpoint.time_style is TimeStyle.SINGLE_DAY:
        days = round((last - first).total_seconds() / 86400)
        return [_piece(start, end, first.add(days=i), first.add(days=i + 1), fixed) for i in range(days)]
    return [_piece(start, end, first, last, fixed)]


@dataclass(frozen=True)
class RangeWindow(_Slice):
    """One ``range=<n>s`` query (v1) answering for ``lo <= createdAt < hi``: the records of the last ``n``
    seconds before the server's now, where ``n`` is chosen when the request is made."""

    filters: tuple[tuple[str, str], ...] = ()

    def seconds_at(self, now: DateTime) -> int:
        """The ``range`` to ask for at ``now``: back to ``lo``, plus the skew margin and the allowance."""
        reach = (now - self.lo).total_seconds() + (CLOCK_SKEW + RANGE_ALLOWANCE).total_seconds()
        return max(1, math.ceil(reach))

    def query(self, seconds: int) -> dict[str, str]:
        return {**dict(self.filters), "range": f"{seconds}s"}

    def reached(self, seconds: int, answered: DateTime) -> bool:
        """Whether a ``range`` of ``seconds`` answered at ``answered`` (worker's clock) reached back to ``lo``:
        the server's now, when it answered, was at most :data:`CLOCK_SKEW` past ``answered``."""
        return answered + CLOCK_SKEW - dt.timedelta(seconds=seconds) <= self.lo


@dataclass(frozen=True)
class Plan:
    """How an interval is read: its pieces, or first one ``range`` window with the pieces as its fallback."""

    pieces: list[Piece]
    range: RangeWindow | None = None
    #: When the extraction started (worker's clock), if known.
    now: DateTime | None = None


def plan(
    endpoint: Endpoint,
    start: DateTime,
    end: DateTime,
    filters: Mapping[str, str],
    *,
    now: DateTime | None = None,
) -> Plan:
    """The cheapest plan the provider can prove for ``[start, end)`` at ``now`` (see the module docstring)."""
    pieces = initial_pieces(endpoint, start, end, filters, now=now)
    if now is None or not endpoint.takes_range:
        return Plan(pieces, None, now)
    window = RangeWindow(start, end, tuple(sorted(filters.items())))
    days = sum((p.span_end - p.span_start).total_seconds() for p in pieces)
    # The range window downloads every record since ``start``; the day plan every record of its days.
    if window.seconds_at(now) >= days:
        return Plan(pieces, None, now)
    return Plan(pieces, window, now)


def split_days(piece: Piece) -> list[Piece]:
    """A capped multi-day query as one query per day."""
    return [
        _piece(
            piece.lo, piece.hi, piece.span_start.add(days=i), piece.span_start.add(days=i + 1), piece.filters
        )
        for i in range(piece.days)
        if piece.span_start.add(days=i + 1) > piece.lo and piece.span_start.add(days=i) < piece.hi
    ]


def split_minutes(piece: Piece, parts: int) -> list[Piece]:
    """A v2 window as up to ``parts`` windows of whole minutes, in order, covering it without gaps."""
    minutes = piece.minutes
    parts = max(1, min(parts, minutes))
    bounds = [piece.span_start.add(minutes=(minutes * i) // parts) for i in range(parts + 1)]
    out = []
    for a, b in itertools.pairwise(bounds):
        if b > piece.lo and a < piece.hi and a < b:
            out.append(_piece(piece.lo, piece.hi, a, b, piece.filters))
    return out


def windows_for_total(total: int, target: int) -> int:
    """How many equal windows make ``total`` records average ``target`` each."""
    return max(2, math.ceil(total / max(1, target)))


def split_by_values(piece: Piece, field: str, values: Iterable[str]) -> list[Piece]:
    """A capped single-day query as one query per value of the split field."""
    return [
        replace(piece, filters=tuple(sorted({**dict(piece.filters), field: v}.items())), split=(field, v))
        for v in dict.fromkeys(values)
    ]


def can_split_by_value(endpoint: Endpoint, piece: Piece) -> bool:
    """True if the piece's records can still be partitioned by the endpoint's split field."""
    return (
        endpoint.split_field is not None
        and piece.split is None
        and endpoint.split_field not in dict(piece.filters)
    )
