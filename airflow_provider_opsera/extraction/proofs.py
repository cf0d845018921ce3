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
- :class:`RangeWindowProof` (v1, a recent interval): one ``range`` window reaching back past the interval's
  start (:class:`~airflow_provider_opsera.planning.RangeWindow`). Under the cap, and answered soon enough to
  prove it reached back to the start, it is complete; otherwise the day plan runs, as :class:`SplitDayProof`.
- :class:`WindowPagingProof` (v2: paged, ``count`` is the total): after page 1 tells the total, the other
  pages are asked for at once. A window is complete when the distinct ids received reach the largest total
  reported. A window of at most :data:`HOLD_PAGES` pages holds its records until then, so a record seen twice
  is yielded once, as its newest version; a larger one streams its records as they come (memory stays at a
  few pages), and a newer version of a record it already yielded is an error, never a stale record kept
  silently. If records moved between pages (fewer distinct ids than the total), the window is asked for again
  as smaller windows, deduplicated against what was already yielded. A live window (reaching into the
  present) is read as pages of the cap's size: one page is one snapshot, taken after the extraction started.

Whenever one ``_id`` arrives twice within a piece (a record updated while pages shift), the version with the
greatest ``updatedAt`` is kept, whatever order the answers came in (:func:`~airflow_provider_opsera.responses.
supersedes`).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import NamedTuple, Protocol

from pendulum import DateTime

from airflow_provider_opsera.catalogue import Endpoint
from airflow_provider_opsera.exceptions import OpseraAPIError, OpseraIncompleteResultError
from airflow_provider_opsera.extraction.stats import ExtractionStats
from airflow_provider_opsera.planning import (
    Piece,
    Plan,
    RangeWindow,
    can_split_by_value,
    split_by_values,
    split_days,
    split_minutes,
    windows_for_total,
)
from airflow_provider_opsera.responses import Page, Record, newer, supersedes
from airflow_provider_opsera.timeutils import sort_key

log = logging.getLogger(__name__)

#: A v2 window larger than this many pages is split into windows of about half that before paging, so the
#: ids kept for de-duplication stay bounded however long the interval is.
WINDOW_PAGES = 100
#: A v2 window of at most this many pages holds its records until it is proven complete (then yields each
#: once, as its newest version); a larger one streams them.
HOLD_PAGES = 5
#: How many times a v2 window whose pages shifted is fetched again (as smaller windows) before giving up.
MAX_REFETCH = 4
#: How many times a ``range`` window answered too late to reach back to its start is asked for again.
MAX_RANGE_ASKS = 2


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
    endpoint: Endpoint,
    pieces: list[Piece] | Plan,
    *,
    page_size: int = 1000,
    stats: ExtractionStats | None = None,
) -> Proof:
    """The proof that fits the endpoint and plan: window paging for paged (v2) endpoints, a ``range`` window
    when the plan has one, day splitting for v1."""
    stats = stats or ExtractionStats()
    if isinstance(pieces, Plan):
        plan = pieces
        pieces = plan.pieces
        if plan.range is not None and plan.now is not None:
            return RangeWindowProof(endpoint, plan.range, plan.now, pieces, stats=stats)
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


def _capped_day(
    endpoint: Endpoint, piece: Piece, n_records: int, count: int | None = None
) -> OpseraIncompleteResultError:
    """A one-day v1 response at the cap (or cut short below it, fewer records than its ``count``) that no
    value of the split field can divide any further."""
    short = (
        f", fewer than its count of {count}: the server cut it short below the API's documented cap"
        if n_records < endpoint.cap and count is not None and count > n_records
        else ", the API's cap"
    )
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
        f"the response holds {n_records} records{short}. The v1 API cannot return more than "
        f"{endpoint.cap} records for one day and filter, and {endpoint.path} only queries whole days, so a "
        f"narrower interval cannot help; {why}.",
        help_text,
    )


def _in_slice(piece: Piece | RangeWindow, records: list[Record], stats: ExtractionStats) -> list[Record]:
    lo, hi = piece.lo_key, piece.hi_key
    split = piece.split if isinstance(piece, Piece) else None
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
    """One record per ``_id``, in the order first seen, each the newest version received."""
    kept: dict[str, Record] = {}
    for rec in records:
        old = kept.get(rec.id)
        if old is None or supersedes(rec, old):
            kept[rec.id] = rec
    return list(kept.values())


# -- v1, a recent interval ------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class _RangeQuery:
    """A ``range`` query of ``seconds``; ``attempt`` counts the asks answered too late before it."""

    seconds: int
    attempt: int = 0


class RangeWindowProof:
    """The v1 proof of a recent interval: one ``range`` window, or the day plan when it cannot be proven."""

    def __init__(
        self,
        endpoint: Endpoint,
        window: RangeWindow,
        now: DateTime,
        fallback: list[Piece],
        *,
        stats: ExtractionStats,
    ) -> None:
        self.endpoint = endpoint
        self.window = window
        self.now = now
        self.stats = stats
        self.days = SplitDayProof(endpoint, fallback, stats=stats)
        self.fell_back: str | None = None

    def start(self) -> list[Ask]:
        return [self._ask(self.now, 0)]

    def _ask(self, at: DateTime, attempt: int) -> Ask:
        seconds = self.window.seconds_at(at)
        return Ask(self.window.query(seconds), _RangeQuery(seconds, attempt))

    def feed(self, ask: Ask, page: Page) -> Step:
        ticket = ask.ticket
        if not isinstance(ticket, _RangeQuery):
            try:
                return self.days.feed(ask, page)
            except OpseraIncompleteResultError as err:
                raise OpseraIncompleteResultError(
                    f"{err.args[0]} (Read first as range={ask_range(self.window, self.now)}: {self.fell_back}. "
                    "Prompt runs of a frequent schedule keep each interval's window under the cap: see the "
                    "README, 'Busy accounts'.)",
                    window=err.window,
                ) from None
        if possibly_truncated(page, self.endpoint.cap):
            return self._fall_back(
                f"the window held {len(page.records)} records, {_short_of(page, self.endpoint.cap)}"
            )
        if page.received is None or not self.window.reached(ticket.seconds, page.received):
            if page.received is not None and ticket.attempt < MAX_RANGE_ASKS:
                return Step([], [self._ask(page.received, ticket.attempt + 1)])
            return self._fall_back("the answer came too late to prove the window reached back to its start")
        return Step(_dedupe(_in_slice(self.window, page.records, self.stats)), [])

    def _fall_back(self, why: str) -> Step:
        self.fell_back = why
        log.info(
            "%s %s: %s; reading its whole days instead.",
            self.endpoint.log_type.value,
            self.window.describe(),
            why,
        )
        self.stats.splits += 1
        return Step([], self.days.start())


def ask_range(window: RangeWindow, now: DateTime) -> str:
    """The ``range`` first asked for ``window`` at ``now``, as sent."""
    return window.query(window.seconds_at(now))["range"]


# -- v1 -----------------------------------------------------------------------------------------------------
def possibly_truncated(page: Page, cap: int) -> bool:
    """Whether a v1 answer may hold fewer records than its query matched: it reached the cap (whatever
    ``count`` says), or it holds fewer records than its own ``count``. Under either reading of v1's ``count``
    (every match, or the records sent) a smaller page than its count is cut short: a server capping below its
    documented cap. Trusting such a page would lose the rest silently."""
    n = len(page.records)
    return n >= cap or (page.count is not None and page.count > n)


def _short_of(page: Page, cap: int) -> str:
    """Why a possibly truncated answer is: the cap, or its own count."""
    return "the API's cap" if len(page.records) >= cap else f"fewer than its count of {page.count}"


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
        # Inside a split group the group's proof (its records against the day's count) judges each answer.
        short = possibly_truncated(page, endpoint.cap) if group is None else len(page.records) >= endpoint.cap
        if not short:
            records = _dedupe(_in_slice(piece, page.records, self.stats))
            asks: list[Ask] = []
            if group is not None:
                group.found += _in_span(piece, _dedupe(page.records))
                asks = self._settle(group)
            return Step(records, asks)
        # Reached the cap (or cut short below it): possibly truncated, whatever ``count`` says.
        if piece.days > 1:
            self.stats.splits += 1
            return Step([], [self._ask(_DayQuery(day)) for day in split_days(piece)])
        if not can_split_by_value(endpoint, piece):
            raise _capped_day(endpoint, piece, len(page.records), page.count)
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
    #: Records per page asked for.
    size: int
    attempt: int = 0
    #: Records yielded by earlier attempts at this span (id -> ``updatedAt``): not yielded again.
    prior: tuple[dict[str, str | None], ...] = ()
    #: Records received and held whole, by id, as the newest version seen, until the window is proven complete.
    received: dict[str, Record] = field(default_factory=dict)
    #: Records received and passed on (a streaming window), or not to be passed on (yielded by an earlier
    #: attempt): id -> the newest ``updatedAt`` seen. Only text is kept: a few strings per record, which the
    #: garbage collector does not track (a tuple per record made its every pass over them slower).
    passed: dict[str, str | None] = field(default_factory=dict)
    #: Whether the window holds its records until it is proven complete (decided from page 1's total).
    hold: bool = True
    total: int = -1
    pages: int = 0
    outstanding: int = 0
    planned: bool = False
    #: Whether the last planned page came back full (there may be more than the total says).
    last_full: bool = False
    #: Distinct ids received when a page past the total was last asked for.
    probed: int = 0

    @property
    def distinct(self) -> int:
        """Distinct ids received (an id is held or passed on, never both)."""
        return len(self.received) + len(self.passed)

    def release(self) -> None:
        """Let the records and ids go: nothing later refers to this window."""
        self.received, self.passed = {}, {}


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
        return [self._ask(self._window(piece), 1) for piece in self.pieces]

    def _window(
        self, piece: Piece, attempt: int = 0, prior: tuple[dict[str, str | None], ...] = ()
    ) -> _Window:
        # A live window's pages are as large as the API allows: the fewer pages, the less can move between them.
        return _Window(piece, self.endpoint.cap if piece.live else self.page_size, attempt, prior)

    def _ask(self, window: _Window, page: int) -> Ask:
        window.outstanding += 1
        params = {**window.piece.query(self.endpoint), "page": str(page), "page_size": str(window.size)}
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
        size = window.size
        asks: list[Ask] = []
        if not window.planned:
            window.planned = True
            if page.count > WINDOW_PAGES * size and window.piece.minutes > 1 and not window.prior:
                # Too large to page with bounded memory: page it as smaller windows instead.
                self.stats.splits += 1
                subs = split_minutes(window.piece, windows_for_total(page.count, WINDOW_PAGES * size // 2))
                live, attempt = window.piece.live, window.attempt
                return Step(
                    [], [self._ask(self._window(replace(sub, live=live), attempt), 1) for sub in subs]
                )
            window.hold = page.count <= HOLD_PAGES * size
        if page.count > window.total:
            pages = math.ceil(page.count / size)
            first_new = max(window.pages, 1) + 1
            window.total, window.pages = page.count, max(window.pages, pages, 1)
            asks += [self._ask(window, n) for n in range(first_new, pages + 1)]
        if ticket.page >= window.pages:
            window.last_full = len(page.records) >= size
        received, passed, out = window.received, window.passed, []
        lo, hi = window.piece.lo_key, window.piece.hi_key
        records = _dedupe(page.records)  # two versions within one page: the newest, wherever it stands
        self.stats.duplicates += len(page.records) - len(records)
        prior, hold = window.prior, window.hold
        for rec in records:
            rid = rec.id
            old = received.get(rid)
            if old is not None:  # held: keep the newer version
                self.stats.duplicates += 1
                if supersedes(rec, old):
                    received[rid] = rec
                continue
            if rid in passed:
                self.stats.duplicates += 1
                if not newer(rec.updated, passed[rid]):
                    continue
                if lo <= rec.key < hi:  # its older version was already passed on
                    raise self._changed(window, rec)
            earlier = [p[rid] for p in prior if rid in p] if prior else None
            if earlier:
                if any(newer(rec.updated, e) for e in earlier) and lo <= rec.key < hi:
                    raise self._changed(window, rec)
                passed[rid] = rec.updated
                continue
            if hold:
                received[rid] = rec
            else:
                passed[rid] = rec.updated
                if lo <= rec.key < hi:
                    out.append(rec)
                else:
                    self.stats.outside += 1
        if window.outstanding:
            return Step(out, asks)
        asks += self._finish(window)
        if asks or not window.hold:
            return Step(out, asks)
        # Proven complete: its records, each once, as the newest version received.
        window.release()
        return Step(_in_slice(window.piece, list(received.values()), self.stats), [])

    def _changed(self, window: _Window, rec: Record) -> OpseraIncompleteResultError:
        return _incomplete(
            self.endpoint,
            window.piece,
            f"record {rec.id} was updated while the window's {window.pages} pages were read (updatedAt "
            f"{rec.updated}), after its older version had been passed on.",
            f"Run the extraction again; a window of at most {HOLD_PAGES * window.size} records keeps the "
            "newest version by itself.",
        )

    def _finish(self, window: _Window) -> list[Ask]:
        distinct = window.distinct
        if distinct > window.total and window.last_full and distinct > window.probed:
            # More distinct records than the total, and a full last page: the total under-reports. Ask for
            # the next page, and again only while such pages bring new ids (some servers repeat a page).
            window.probed = distinct
            window.pages += 1
            return [self._ask(window, window.pages)]
        if distinct >= window.total:
            if not window.hold:
                window.release()
            return []
        self.stats.refetches += 1
        piece = window.piece
        if window.attempt >= MAX_REFETCH:
            live = (
                " The window reaches into the present and more records arrived in its last minutes than one "
                "page holds; extract it once it has ended (settle)."
                if piece.live
                else ""
            )
            raise _incomplete(
                self.endpoint,
                piece,
                f"the API counts {window.total} records but {window.attempt + 1} rounds of paging returned only "
                f"{distinct} distinct ones (records kept moving between pages).{live}",
            )
        log.info(
            "Records moved between pages of %s %s (%d distinct of %d); fetching it again in smaller windows.",
            self.endpoint.log_type.value,
            piece.describe(),
            distinct,
            window.total,
        )
        # What a streaming window passed on is not passed on again; a holding one passed on nothing.
        prior = window.prior if window.hold else (*window.prior, window.passed)
        window.release()
        parts = windows_for_total(window.total, max(1, window.size // 2))
        subs = split_minutes(piece, parts) if piece.minutes > 1 else [piece]
        attempt = window.attempt + 1
        return [self._ask(self._window(replace(sub, live=piece.live), attempt, prior), 1) for sub in subs]
