"""Pure request planning: which queries cover ``[start, end)``, and how a capped query is split.

Nothing here does I/O. A :class:`Piece` is one query (a superset of some slice of the interval) together with
the exact slice of records it is responsible for: ``lo <= createdAt < hi`` and, once split, one value of the
endpoint's split field. Pieces produced from one interval partition it: every record belongs to exactly one
piece, so exactly-once needs no interval-wide memory of ids.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from pendulum import DateTime

from airflow_provider_opsera.catalogue import Endpoint, TimeStyle
from airflow_provider_opsera.timeutils import ceil_day, ceil_minute, floor_day, floor_minute, sort_key

#: The v2 query starts this much before its slice: covers a server that reads ``start_time`` as exclusive.
V2_START_MARGIN_MINUTES = 1


@dataclass(frozen=True)
class Piece:
    """One query and the slice of records it answers for."""

    #: Records kept: ``lo <= createdAt < hi`` (UTC).
    lo: DateTime
    hi: DateTime
    #: The span the query's time parameters name (whole days, or whole minutes for v2).
    span_start: DateTime
    span_end: DateTime
    #: The endpoint's own filters (validated), plus the split value once split.
    filters: tuple[tuple[str, str], ...] = ()
    #: ``(field, value)`` when this piece is one value of the split field.
    split: tuple[str, str] | None = None

    @property
    def lo_key(self) -> str:
        return sort_key(self.lo)

    @property
    def hi_key(self) -> str:
        return sort_key(self.hi)

    @property
    def days(self) -> int:
        return max(1, round((self.span_end - self.span_start).total_seconds() / 86400))

    @property
    def minutes(self) -> int:
        return max(1, round((self.span_end - self.span_start).total_seconds() / 60))

    def describe(self) -> str:
        text = f"[{self.lo.isoformat()}, {self.hi.isoformat()})"
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


def initial_pieces(
    endpoint: Endpoint, start: DateTime, end: DateTime, filters: Mapping[str, str]
) -> list[Piece]:
    """The first queries for ``[start, end)``: one covering span, or one per day where only ``date`` exists."""
    fixed = tuple(sorted(filters.items()))
    if endpoint.time_style is TimeStyle.MINUTES:
        return [_piece(start, end, floor_minute(start), ceil_minute(end), fixed)]
    first, last = floor_day(start), ceil_day(end)
    if endpoint.time_style is TimeStyle.SINGLE_DAY:
        days = round((last - first).total_seconds() / 86400)
        return [_piece(start, end, first.add(days=i), first.add(days=i + 1), fixed) for i in range(days)]
    return [_piece(start, end, first, last, fixed)]


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
