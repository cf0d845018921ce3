"""The completeness proofs: pure state machines that decide, from each response, what to yield and ask next.

Nothing here does I/O or knows threads. A proof starts with the queries of a plan (:mod:`planning`) and is fed
one response at a time: ``feed(ask, page) -> Step(records to yield, next asks)``. When no ask is outstanding,
everything it yielded is the interval's records, each exactly once, or it has raised
:class:`OpseraIncompleteResultError`. The order responses arrive in does not matter. :func:`drive` runs a
proof one request at a time (tests drive proofs this way); :mod:`.runner` runs it concurrently.

- :class:`SplitDayProof` (v1: no paging, capped): a response with fewer records than the cap is complete. One
  that reaches the cap is possibly truncated whatever ``count`` says: a multi-day query is split into days; a
  one-day query is split by the split field's values (seen in the response first, then the documented ones).
  The split is proven complete only when the per-value results add up to the total the API reports for the
  day (``count`` when it exceeds the page, or a ``count=1`` probe).
- :class:`WindowPagingProof` (v2: paged, ``count`` is the total): after page 1 tells the total, the other
  pages are asked for at once. A window is complete when the distinct ids received reach the largest total
  reported. If records moved between pages (fewer distinct ids than the total), the window is asked for again
  as smaller windows, deduplicated against what was already yielded.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from airflow_provider_opsera.catalogue import Endpoint
from airflow_provider_opsera.exceptions import OpseraAPIError, OpseraIncompleteResultError
from airflow_provider_opsera.extraction.stats import ExtractionStats
from airflow_provider_opsera.planning import (
    Piece,
    can_split_by_value,
    split_by_values,
    split_days,
    split_minutes,
    windows_for_total,
)
from airflow_provider_opsera.responses import Page, Record
from airflow_provider_opsera.timeutils import sort_key

log = logging.getLogger(__name__)

#: A v2 window larger than this many pages is split into windows of about half that before paging, so the
#: ids kept for de-duplication stay bounded however long the interval is.
WINDOW_PAGES = 100
#: How many times a v2 window whose pages shifted is fetched again (as smaller windows) before giving up.
MAX_REFETCH = 4


@dataclass(frozen=True, eq=False)
class Ask:
    """One request a proof wants answered: its query parameters and what the proof needs to place the answer."""

    params: dict[str, str]
    ticket: object


class Step(NamedTuple):
    """What one response gave: the records to yield now, and the requests to make next."""

    records: list[Record]
    asks: list[Ask]


class Proof(Protocol):
    stats: ExtractionStats

    def start(self) -> list[Ask]: ...

    def feed(self, ask: Ask, page: Page) -> Step: ...


def proof_for(
    endpoint: Endpoint, pieces: list[Piece], *, page_size: int = 1000, stats: ExtractionStats | None = None
) -> Proof:
    """The proof that fits the endpoint: window paging for paged (v2) endpoints, day splitting for v1."""
    stats = stats or ExtractionStats()
    if endpoint.paged:
        return WindowPagingProof(endpoint, pieces, page_size=page_size, stats=stats)
    return SplitDayProof(endpoint, pieces, stats=stats)


def drive(proof: Proof, fetch: Callable[[dict[str, str]], Page]) -> Iterator[list[Record]]:
    """Run a proof one request at a time, in order: each response's new records as one list."""
    queue = deque(proof.start())
    while queue:
        ask = queue.popleft()
        page = fetch(ask.params)
        proof.stats.responses += 1
        step = proof.feed(ask, page)
        queue.extend(step.asks)
        if step.records:
            proof.stats.records += len(step.records)
            yield step.records


def _incomplete(
    endpoint: Endpoint, piece: Piece, message: str, advice: str | None = None
) -> OpseraIncompleteResultError:
    if advice is None:
        advice = (
            "Narrow the interval or the filters."
            if endpoint.paged
            else f"{endpoint.path} only queries whole days, so a narrower interval cannot help."
        )
    return OpseraIncompleteResultError(
        f"{endpoint.log_type.value} {piece.describe()}: {message} {advice} "
        "The provider never returns a set it cannot prove complete.",
        window=piece.describe(),
    )


#: What can still read a v1 day the v1 API cannot return whole, by log type.
_CAPPED_DAY_HELP = {
    "user_activity": (
        "What can help: the audit log type reads user activity through the v2 API (GET "
        "/api/v2/logs/audit/user), which pages and has no such limit; extract this day with it instead."
    ),
}


def _capped_day(endpoint: Endpoint, piece: Piece, n_records: int) -> OpseraIncompleteResultError:
    """A one-day v1 response at the cap that no value of the split field can divide any further."""
    split_field = endpoint.split_field
    filters = {k: v for k, v in piece.filters if piece.split is None or k != piece.split[0]}
    shown = ", ".join(f"{k}={v}" for k, v in sorted(filters.items()))
    if piece.split is not None:
        why = (
            f"the day was already split by {piece.split[0]}, and its records of "
            f"{piece.split[0]}={piece.split[1]}{f' matching {shown}' if shown else ''} alone reach the cap"
        )
    elif split_field is not None and split_field in filters:
        why = (
            f"the filter {shown} fixes {split_field}, the only field a v1 day can be split by, so its records "
            "cannot be split any further"
        )
    else:
        why = "the endpoint has no filter to split a day by"
    help_text = _CAPPED_DAY_HELP.get(
        endpoint.log_type.value,
        "No other filter of this endpoint can split the day, so it cannot be read completely through the v1 API.",
    )
    return _incomplete(
        endpoint,
        piece,
        f"the response holds {n_records} records, the API's cap. The v1 API cannot return more than "
        f"{endpoint.cap} records for one day and filter, and {endpoint.path} only queries whole days, so a "
        f"narrower interval cannot help; {why}.",
        help_text,
    )


def _in_slice(piece: Piece, records: list[Record], stats: ExtractionStats) -> list[Record]:
    lo, hi, split = piece.lo_key, piece.hi_key, piece.split
    out = []
    for rec in records:
        if not lo <= rec.key < hi or (split is not None and rec.split != split[1]):
            stats.outside += 1
            continue
        out.append(rec)
    return out


def _in_span(piece: Piece, records: list[Record]) -> int:
    lo, hi = sort_key(piece.span_start), sort_key(piece.span_end)
    split = piece.split
    return sum(1 for r in records if lo <= r.key < hi and (split is None or r.split == split[1]))


def _dedupe(records: list[Record]) -> list[Record]:
    seen: set[str] = set()
    out = []
    for rec in records:
        if rec.id not in seen:
            seen.add(rec.id)
            out.append(rec)
    return out


# -- v1 -----------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class _SplitGroup:
    """A capped one-day v1 query, split by the values of one field, waiting to be proven complete."""

    piece: Piece
    total: int | None
    queried: set[str] = field(default_factory=set)
    outstanding: int = 0
    found: int = 0


@dataclass(frozen=True, eq=False)
class _DayQuery:
    """A v1 query for one piece; part of a split group once the day was split by value."""

    piece: Piece
    group: _SplitGroup | None = None


@dataclass(frozen=True, eq=False)
class _CountProbe:
    """A ``count=1`` query that tells whether ``count`` is the day's total (and what it is)."""

    group: _SplitGroup


class SplitDayProof:
    """The v1 proof: capped queries split into days, then by the values of the endpoint's split field."""

    def __init__(self, endpoint: Endpoint, pieces: list[Piece], *, stats: ExtractionStats) -> None:
        self.endpoint = endpoint
        self.pieces = pieces
        self.stats = stats

    def start(self) -> list[Ask]:
        return [self._ask(_DayQuery(piece)) for piece in self.pieces]

    def _ask(self, ticket: _DayQuery | _CountProbe) -> Ask:
        if isinstance(ticket, _CountProbe):
            ticket.group.outstanding += 1
            return Ask({**ticket.group.piece.query(self.endpoint), "count": "1"}, ticket)
        if ticket.group is not None:
            ticket.group.outstanding += 1
        return Ask(ticket.piece.query(self.endpoint), ticket)

    def feed(self, ask: Ask, page: Page) -> Step:
        ticket = ask.ticket
        if isinstance(ticket, _CountProbe):
            return Step([], self._on_probe(ticket.group, page))
        assert isinstance(ticket, _DayQuery)
        return self._on_day(ticket, page)

    def _on_day(self, ticket: _DayQuery, page: Page) -> Step:
        piece, group, endpoint = ticket.piece, ticket.group, self.endpoint
        if len(page.records) < endpoint.cap:
            records = _dedupe(_in_slice(piece, page.records, self.stats))
            asks: list[Ask] = []
            if group is not None:
                group.found += _in_span(piece, _dedupe(page.records))
                asks = self._settle(group)
            return Step(records, asks)
        # Reached the cap: possibly truncated, whatever ``count`` says.
        if piece.days > 1:
            self.stats.splits += 1
            return Step([], [self._ask(_DayQuery(day)) for day in split_days(piece)])
        if not can_split_by_value(endpoint, piece):
            raise _capped_day(endpoint, piece, len(page.records))
        total = page.count if page.count is not None and page.count > len(page.records) else None
        new_group = _SplitGroup(piece, total)
        self.stats.splits += 1
        seen = [r.split for r in page.records if r.split is not None]
        asks = []
        if total is None:
            if not endpoint.takes_count:
                raise _incomplete(
                    endpoint,
                    piece,
                    f"the response holds {len(page.records)} records, the API's cap, and reports no larger "
                    f"total, so a split by {endpoint.split_field} cannot be proven complete.",
                )
            # Does ``count`` mean the total (v2's reading) or the page size? Ask for one record to find out.
            asks.append(self._ask(_CountProbe(new_group)))
        asks += self._query_values(new_group, seen or list(endpoint.split_values))
        if not new_group.outstanding:
            raise _incomplete(
                endpoint,
                piece,
                f"the response reached the cap and its records carry no {endpoint.split_field} to split by.",
            )
        return Step([], asks)

    def _on_probe(self, group: _SplitGroup, page: Page) -> list[Ask]:
        if page.count is None or page.count <= len(page.records):
            raise _incomplete(
                self.endpoint,
                group.piece,
                f"{self.endpoint.path} reached its cap of {self.endpoint.cap} and its count field only echoes "
                "the page, so there is no total to prove a split complete against.",
            )
        group.total = page.count
        return self._settle(group)

    def _query_values(self, group: _SplitGroup, values: list[str]) -> list[Ask]:
        field_name = self.endpoint.split_field
        assert field_name is not None
        fresh = [v for v in dict.fromkeys(values) if v not in group.queried]
        group.queried.update(fresh)
        return [
            self._ask(_DayQuery(child, group)) for child in split_by_values(group.piece, field_name, fresh)
        ]

    def _settle(self, group: _SplitGroup) -> list[Ask]:
        group.outstanding -= 1
        if group.outstanding or group.total is None or group.found >= group.total:
            return []
        remaining = [v for v in self.endpoint.split_values if v not in group.queried]
        if remaining:
            return self._query_values(group, remaining)
        raise _incomplete(
            self.endpoint,
            group.piece,
            f"the API counts {group.total} records for the day but the split by {self.endpoint.split_field} "
            f"({', '.join(sorted(group.queried))}) found {group.found}; the rest carry values this provider "
            "cannot query.",
        )


# -- v2 -----------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class _Window:
    """A v2 window being paged."""

    piece: Piece
    attempt: int = 0
    #: ids yielded by earlier attempts at this span, to not yield them twice.
    prior: tuple[set[str], ...] = ()
    received: set[str] = field(default_factory=set)
    total: int = -1
    pages: int = 0
    outstanding: int = 0
    planned: bool = False
    #: Whether the last planned page came back full (there may be more than the total says).
    last_full: bool = False
    #: Distinct ids received when a page past the total was last asked for.
    probed: int = 0


@dataclass(frozen=True, eq=False)
class _PageQuery:
    window: _Window
    page: int


class WindowPagingProof:
    """The v2 proof: windows paged to the total they report, asked for again smaller when pages shift."""

    def __init__(
        self, endpoint: Endpoint, pieces: list[Piece], *, page_size: int, stats: ExtractionStats
    ) -> None:
        self.endpoint = endpoint
        self.pieces = pieces
        self.page_size = page_size
        self.stats = stats

    def start(self) -> list[Ask]:
        return [self._ask(_Window(piece), 1) for piece in self.pieces]

    def _ask(self, window: _Window, page: int) -> Ask:
        window.outstanding += 1
        params = {**window.piece.query(self.endpoint), "page": str(page), "page_size": str(self.page_size)}
        return Ask(params, _PageQuery(window, page))

    def feed(self, ask: Ask, page: Page) -> Step:
        ticket = ask.ticket
        assert isinstance(ticket, _PageQuery)
        window = ticket.window
        window.outstanding -= 1
        if page.count is None:
            raise OpseraAPIError(
                f"{self.endpoint.log_type.value}: a page of {self.endpoint.path} came without its total count; "
                "paging cannot be proven complete without it.",
            )
        size = self.page_size
        asks: list[Ask] = []
        if not window.planned:
            window.planned = True
            if page.count > WINDOW_PAGES * size and window.piece.minutes > 1 and not window.prior:
                # Too large to page with bounded memory: page it as smaller windows instead.
                self.stats.splits += 1
                subs = split_minutes(window.piece, windows_for_total(page.count, WINDOW_PAGES * size // 2))
                return Step([], [self._ask(_Window(sub, attempt=window.attempt), 1) for sub in subs])
        if page.count > window.total:
            pages = math.ceil(page.count / size)
            first_new = max(window.pages, 1) + 1
            window.total, window.pages = page.count, max(window.pages, pages, 1)
            asks += [self._ask(window, n) for n in range(first_new, pages + 1)]
        if ticket.page >= window.pages:
            window.last_full = len(page.records) >= size
        out = []
        received, prior = window.received, window.prior
        lo, hi = window.piece.lo_key, window.piece.hi_key
        for rec in page.records:
            if rec.id in received:
                self.stats.duplicates += 1
                continue
            received.add(rec.id)
            if not lo <= rec.key < hi:
                self.stats.outside += 1
            elif not any(rec.id in p for p in prior):
                out.append(rec)
        if not window.outstanding:
            asks += self._finish(window)
        return Step(out, asks)

    def _finish(self, window: _Window) -> list[Ask]:
        if len(window.received) > window.total and window.last_full and len(window.received) > window.probed:
            # More distinct records than the total, and a full last page: the total under-reports. Ask for
            # the next page, and again only while such pages bring new ids (some servers repeat a page).
            window.probed = len(window.received)
            window.pages += 1
            return [self._ask(window, window.pages)]
        if len(window.received) >= window.total:
            window.received = set()  # let the ids go; nothing later refers to this window
            return []
        self.stats.refetches += 1
        piece = window.piece
        if window.attempt >= MAX_REFETCH:
            raise _incomplete(
                self.endpoint,
                piece,
                f"the API counts {window.total} records but {window.attempt + 1} rounds of paging returned only "
                f"{len(window.received)} distinct ones (records kept moving between pages).",
            )
        log.info(
            "Records moved between pages of %s %s (%d distinct of %d); fetching it again in smaller windows.",
            self.endpoint.log_type.value,
            piece.describe(),
            len(window.received),
            window.total,
        )
        prior = (*window.prior, window.received)
        parts = windows_for_total(window.total, max(1, self.page_size // 2))
        subs = split_minutes(piece, parts) if piece.minutes > 1 else [piece]
        return [self._ask(_Window(sub, attempt=window.attempt + 1, prior=prior), 1) for sub in subs]
