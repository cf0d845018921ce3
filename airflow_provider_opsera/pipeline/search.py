"""Finding the watched run's newest records on a busy account, as a pure plan of requests.

The pipeline-activity endpoint filters neither by pipeline nor by run, caps each response at 1000 records
and does not document its sort order. What it does offer is ``range=<n><s|m|h|d|w>``: the records of the
last ``n`` units, up to the server's now. That is the lever everything here rests on:

- A response under the cap is complete for its window. A capped one is never trusted: its window is
  narrowed (a shorter ``range``), and its records are only hints for the log.
- A complete window that reaches up to now proves its newest record of the watched run is the newest
  anywhere. So the search keeps *coverage*: a span of time, contiguous up to the last poll, in which every
  record has been seen. What it learned there is carried as at most two records
  (:func:`~airflow_provider_opsera.pipeline.decision.relevant`).
- The first look asks for the whole ``lookback``; if that is capped it narrows to the longest window that
  is not, then tries whole days (``date=``) further back, which a quiet account answers completely.
- Later polls ask only for what is new: ``range`` = time since the last poll was sent, plus a margin for
  clock skew between machines, records that become visible a little after their ``createdAt``, and the
  time the request itself takes. A poll that took longer than that allowance is repeated; a capped poll
  (the account logged more than the cap since the last poll) breaks coverage, which restarts from the
  newest complete window with a warning.

Nothing here does I/O or reads a clock: :class:`WatchSearch` is fed responses and the times they were sent
and received, and says what to ask next. ``run_round_sync`` / ``run_round_async`` drive it; between rounds,
:func:`next_interval` paces the polls so that each window stays under the cap.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_provider_opsera.catalogue import endpoint_for
from airflow_provider_opsera.exceptions import OpseraIncompleteResultError
from airflow_provider_opsera.pipeline.decision import StatusRules, Watch, decide, record_order, relevant
from airflow_provider_opsera.timeutils import created_key, sort_key, to_utc

PIPELINE = endpoint_for("pipeline_activity")
#: Seconds: clock skew between the machines that poll (worker, triggerer), and records that become visible a
#: little after their ``createdAt``. Every poll window reaches back this much before the previous poll.
CLOCK_MARGIN = 30.0
#: Seconds a poll's response may take and still prove its window reached back to the previous poll.
REQUEST_ALLOWANCE = 10.0
#: When narrowing a capped window, aim at this share of the cap.
NARROW_TARGET = 0.5
#: A poll whose answer came back too slowly to prove contiguity is repeated at most this often.
MAX_REPOLLS = 2
#: Shortest pause between polls when the account is so busy that polls must come sooner than asked.
MIN_POLL_INTERVAL = 1.0

_UNITS = (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_LOOKBACK = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)


def parse_lookback(value: Any) -> int:
    """Seconds from ``"30s"``, ``"15m"``, ``"6h"``, ``"1d"``, ``"2w"``, a number of seconds or a timedelta."""
    seconds: float
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and _LOOKBACK.match(value):
        match = _LOOKBACK.match(value)
        assert match is not None
        seconds = float(match.group(1)) * dict(_UNITS)[match.group(2).lower()]
    else:
        raise ValueError(
            f"lookback={value!r} must be a number and a unit (s, m, h, d, w), e.g. '1d' or '90m', "
            "or a number of seconds."
        )
    if not seconds >= 1:
        raise ValueError(f"lookback={value!r} must be at least one second.")
    return math.ceil(seconds)


def format_range(seconds: int) -> str:
    """The API's ``range`` value: the largest unit that divides ``seconds`` exactly (``"1d"``, ``"90s"``)."""
    seconds = max(1, int(seconds))
    for unit, size in _UNITS:
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    raise AssertionError("unreachable")  # pragma: no cover - "s" divides every integer


def _utc_day(epoch: float) -> dt.date:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).date()


def _day_start(day: dt.date) -> float:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp()


def _key(epoch: float) -> str:
    """The comparable text form of an epoch time, as :func:`created_key` gives for ``createdAt``."""
    return sort_key(to_utc(dt.datetime.fromtimestamp(epoch, dt.timezone.utc)))


@dataclass
class WatchState:
    """What the search knows, as plain JSON (carried in the trigger's kwargs).

    Times are epoch seconds of the polling machine's clock. Every record created in ``[covered_from,
    frontier]`` has been seen (``covered_from`` is None before the first complete window); ``records`` is
    what of them matters to the decision. ``complete`` means coverage reaches back to ``horizon`` (the
    first look's start minus ``lookback``), so nothing older can matter.
    """

    horizon: float
    covered_from: float | None = None
    frontier: float | None = None
    complete: bool = False
    records: list[dict[str, Any]] = field(default_factory=list)
    #: How often coverage had to restart because a poll was capped.
    gaps: int = 0
    #: Records per second in the last poll's window (None before the first poll); paces the trigger.
    rate: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WatchState:
        return cls(
            horizon=float(data["horizon"]),
            covered_from=None if data.get("covered_from") is None else float(data["covered_from"]),
            frontier=None if data.get("frontier") is None else float(data["frontier"]),
            complete=bool(data.get("complete", False)),
            records=[dict(r) for r in data.get("records") or []],
            gaps=int(data.get("gaps", 0)),
            rate=None if data.get("rate") is None else float(data["rate"]),
        )


class Kind(enum.Enum):
    """What a :class:`Query` asks for."""

    #: ``range=``: a window of the given length, up to the server's now.
    LOOK = "look"
    #: ``date=``: one whole UTC day.
    DAY = "day"
    #: ``range=``: what is new since the frontier, its length computed when sent.
    POLL = "poll"


@dataclass(frozen=True)
class Query:
    """One request of the plan. ``POLL`` queries compute their ``range`` when sent, from the frontier."""

    kind: Kind
    range_s: int | None = None
    day: dt.date | None = None
    anchor: float | None = None

    def window(self, now: float) -> int:
        """Seconds of the ``range`` asked for when sent at ``now``."""
        if self.kind is Kind.POLL:
            assert self.anchor is not None
            return max(1, math.ceil(now - self.anchor + CLOCK_MARGIN + REQUEST_ALLOWANCE))
        assert self.range_s is not None
        return self.range_s

    def params(self, now: float, filters: Mapping[str, str], cap: int) -> dict[str, str]:
        params = dict(filters)
        if self.kind is Kind.DAY:
            assert self.day is not None
            params["date"] = self.day.isoformat()
        else:
            params["range"] = format_range(self.window(now))
        # Asking for the cap explicitly makes "fewer records than asked" mean "complete" under any default.
        params["count"] = str(cap)
        return params


@dataclass
class RoundStats:
    """What one round (first look, or one poll) cost."""

    requests: int = 0
    records: int = 0
    #: Records of the watched pipeline among them; the rest are the account's unrelated traffic.
    pipeline_records: int = 0
    capped: int = 0

    @property
    def unrelated(self) -> int:
        return self.records - self.pipeline_records


class WatchSearch:
    """The plan of requests that keeps :class:`WatchState` proven, one round at a time.

    ``WatchSearch(watch, None, lookback_s=..., now=...)`` starts with the first look;
    ``WatchSearch(watch, state, ...)`` resumes with polls. :attr:`pending` is the next request of the round
    (None when the round is over); between rounds, call :meth:`start_poll`.
    """

    def __init__(
        self,
        watch: Watch,
        state: WatchState | None,
        *,
        lookback_s: int,
        now: float,
        pipeline_type: str | None = None,
        cap: int = PIPELINE.cap,
        full_coverage: bool = False,
    ) -> None:
        self.watch = watch
        #: Read older whole days until the lookback is covered, whatever the records say (the event trigger
        #: needs every run that finished in it, not only the newest).
        self.full_coverage = full_coverage
        #: Records of the watched pipeline from windows proven complete, since :meth:`take_proven`.
        self.proven: list[dict[str, Any]] = []
        self.lookback_s = lookback_s
        self.cap = cap
        self.filters = {"type": pipeline_type} if pipeline_type else {}
        #: Warnings for the caller's log, drained by :meth:`take_notes`.
        self.notes: list[str] = []
        #: Records of the watched run seen only in capped responses: they prove nothing, but say what to expect.
        self.hints: list[dict[str, Any]] = []
        self.stats = RoundStats()
        self._repolls = 0
        self._next_day: dt.date | None = None
        self._days_floor = 0.0
        self._fresh = False
        if state is None:
            self.state = WatchState(horizon=now - lookback_s)
            #: The next request of this round, or None when the round is over.
            self.pending: Query | None = Query(Kind.LOOK, range_s=lookback_s)
            self._fresh = True
        else:
            self.state = state
            self.pending = self._poll_query()

    # -- rounds ---------------------------------------------------------------------------------------------
    def start_poll(self) -> None:
        """Begin the next round: one window of what is new since the last poll."""
        self.stats = RoundStats()
        self.hints = []
        self._repolls = 0
        self.pending = self._poll_query()

    def _poll_query(self) -> Query:
        if self.state.frontier is None:  # no complete window yet (cannot happen after a first look)
            return Query(Kind.LOOK, range_s=self.lookback_s)
        return Query(Kind.POLL, anchor=self.state.frontier)

    def take_proven(self) -> list[dict[str, Any]]:
        """The watched pipeline's records from complete windows fed since the last call (repeats possible:
        windows overlap by the margins)."""
        proven, self.proven = self.proven, []
        return proven

    def take_notes(self) -> list[str]:
        notes, self.notes = self.notes, []
        return notes

    # -- responses ------------------------------------------------------------------------------------------
    def feed(
        self,
        query: Query,
        sent: float,
        received: float,
        count: int | None,
        records: Sequence[Mapping[str, Any]],
    ) -> None:
        """Take the answer to ``query`` (sent and received at these times) and plan what follows."""
        self.stats.requests += 1
        self.stats.records += len(records)
        self.stats.pipeline_records += sum(1 for r in records if self.watch.of_pipeline(r))
        # Cut short below the cap (fewer records than its own count) is as unprovable as capped.
        capped = len(records) >= self.cap or (count is not None and count > len(records))
        if capped:
            self.stats.capped += 1
            self.hints.extend(relevant(self.watch, records))
        if query.kind is Kind.DAY:
            self._on_day(query, records, capped)
        elif capped:
            self._on_capped(query, sent, count, records)
        else:
            self._on_window(query, sent, received, records)

    def _on_capped(
        self, query: Query, sent: float, count: int | None, records: Sequence[Mapping[str, Any]]
    ) -> None:
        window = query.window(sent)
        if query.kind is Kind.POLL:
            self.notes.append(
                f"The account logged {self.cap} or more pipeline records in the {format_range(window)} since the "
                "last poll, more than one response holds: coverage restarts from the newest complete window, "
                "and a status change in between cannot be seen. Poll more often (poke_interval) or set "
                "pipeline_type."
            )
            self.state.gaps += 1
            self._fresh = False
        if window <= 1:
            raise OpseraIncompleteResultError(
                f"The account logged {self.cap} or more pipeline records in one second: no range window can be "
                "proven complete. Set pipeline_type to narrow the search.",
                window="range=1s",
            )
        self.pending = Query(Kind.LOOK, range_s=_narrowed(window, count, records, sent, self.cap))

    def _on_window(
        self, query: Query, sent: float, received: float, records: Sequence[Mapping[str, Any]]
    ) -> None:
        window = query.window(sent)
        start = received - window  # the latest the window can have started (server now <= received)
        kept = _not_before(records, sent - window - CLOCK_MARGIN)
        state = self.state
        contiguous = (
            query.kind is Kind.POLL
            and received - sent <= REQUEST_ALLOWANCE
            and state.frontier is not None
            and query.anchor == state.frontier
        )
        if query.kind is Kind.POLL and not contiguous and self._repolls < MAX_REPOLLS:
            # The answer came back too slowly to prove the window reached the previous poll: ask again.
            self._repolls += 1
            self.pending = Query(Kind.POLL, anchor=query.anchor)
            return
        self.proven.extend(dict(r) for r in kept if self.watch.of_pipeline(r))
        if contiguous:
            state.records = relevant(self.watch, [*state.records, *kept])
        else:
            # A first look, or coverage restarting after a gap: only this window is known.
            if query.kind is Kind.POLL:
                state.gaps += 1
                self.notes.append(
                    f"Polls took longer than {REQUEST_ALLOWANCE:g}s to answer, so a window could not be proven "
                    "to reach back to the previous one; coverage restarts from the newest complete window."
                )
            state.records = relevant(self.watch, kept)
            state.covered_from = start
            reaches = start <= state.horizon + CLOCK_MARGIN
            state.complete = (self._fresh and window >= self.lookback_s) or reaches
            if state.complete:
                state.covered_from = state.horizon
        state.frontier = sent
        state.rate = len(records) / window
        # After a look (not a poll), older whole days may still prove what the window could not: back to the
        # lookback's start on the first look, and at most one more lookback after a gap.
        self._next_day = None
        self._days_floor = state.horizon if self._fresh else max(state.horizon, start - self.lookback_s)
        self._fresh = False
        self.pending = self._older_day() if query.kind is Kind.LOOK else None

    def _older_day(self) -> Query | None:
        """Extend coverage back by whole days while nothing of the watched run or step is known yet."""
        state = self.state
        if state.complete or not (self.full_coverage or needs_older(self.watch, state.records)):
            return None
        assert state.covered_from is not None
        if self._next_day is None:
            self._next_day = _utc_day(state.covered_from + CLOCK_MARGIN)
        if _day_start(self._next_day) + 86400 <= self._days_floor:
            return None
        return Query(Kind.DAY, day=self._next_day)

    def _on_day(self, query: Query, records: Sequence[Mapping[str, Any]], capped: bool) -> None:
        state = self.state
        assert query.day is not None
        if capped:
            self.notes.append(
                f"Could not prove the lookback complete: {query.day.isoformat()} holds {self.cap} or more "
                "pipeline records (the API's cap), and range only reaches back from now. Records older than "
                f"{_key(state.covered_from or 0)[:19]}Z are not used; a run that finished before then is not seen."
            )
            self.pending = None
            return
        day_start = _day_start(query.day)
        kept = [
            r
            for r in _not_before(records, max(day_start, state.horizon))
            if (created_key(r.get("createdAt")) or "") < _key(day_start + 86400)
        ]
        self.proven.extend(dict(r) for r in kept if self.watch.of_pipeline(r))
        state.records = relevant(self.watch, [*state.records, *kept])
        state.covered_from = min(state.covered_from or day_start, day_start + CLOCK_MARGIN)
        if state.covered_from <= state.horizon + CLOCK_MARGIN:
            state.complete, state.covered_from = True, state.horizon
        self._next_day = query.day - dt.timedelta(days=1)
        self.pending = self._older_day()


def needs_older(watch: Watch, records: Sequence[Mapping[str, Any]]) -> bool:
    """True while older records could still change the decision: the watched run or step has no record yet.

    (Run counts grow over time, so an older record cannot belong to a newer run than one already seen.)
    """
    return decide(watch, StatusRules(), records).record is None


def coverage_note(search: WatchSearch) -> str | None:
    """A warning when nothing of the watched run or step could be proven and older history was not readable.

    ``None`` when there is nothing to warn about: a record decides, or the whole lookback was read.
    """
    state = search.state
    if state.complete or not needs_older(search.watch, state.records):
        return None
    proven = format_range(max(1, int((state.frontier or 0) - (state.covered_from or 0))))
    text = (
        f"Only the newest {proven} of pipeline activity could be proven complete (the account is busy, and the "
        f"API caps each answer at {search.cap} records); an older record of {search.watch.describe()} is not "
        "used, so a run or step that finished before then is not seen."
    )
    hints = sorted(search.hints, key=record_order)
    if hints:
        hint = hints[-1]
        text += (
            f" An answer the API capped held one (status {hint.get('status')!r} at {hint.get('createdAt')}), "
            "but it cannot be proven to be the newest."
        )
    return text


def waiting_note(search: WatchSearch, rules: StatusRules) -> str:
    """What the search could and could not see, for timeout messages."""
    text = f"Last known: {decide(search.watch, rules, search.state.records).reason}."
    note = coverage_note(search)
    if note:
        text += f" {note}"
    if search.state.gaps:
        text += f" Coverage restarted {search.state.gaps} time(s) because polls were capped."
    return text


def next_interval(state: WatchState, asked: float, cap: int = PIPELINE.cap) -> float:
    """Seconds until the next poll: ``asked``, shortened so that the next window stays well under the cap.

    A poll's window is the pause since the last one plus the margins: at the state's ``rate`` (records per
    second in the last window), a pause up to ``NARROW_TARGET * cap / rate`` less the margins stays uncapped.
    """
    rate = state.rate or 0.0
    if rate <= 0:
        return asked
    room = NARROW_TARGET * cap / rate - CLOCK_MARGIN - REQUEST_ALLOWANCE
    return min(asked, max(MIN_POLL_INTERVAL, room))


def _not_before(records: Sequence[Mapping[str, Any]], epoch: float) -> list[Mapping[str, Any]]:
    """Records created at or after ``epoch``: drops stray records a server sends from outside the window."""
    lo = _key(epoch)
    return [r for r in records if (created_key(r.get("createdAt")) or "") >= lo]


def _narrowed(
    window: int, count: int | None, records: Sequence[Mapping[str, Any]], sent: float, cap: int
) -> int:
    """A shorter ``range`` for a capped window, aiming at ``NARROW_TARGET`` of the cap.

    When ``count`` reports a total larger than the page, the window is scaled by it. Otherwise an eighth of
    the window, or less if the records span less (a server that sends the newest first shows the rate that
    way). A wrong guess only costs another narrowing; too short a window only proves less.
    """
    if count is not None and count > len(records):
        guess = math.floor(window * NARROW_TARGET * cap / count)
    else:
        guess = window // 8
        keys = [k for k in (created_key(r.get("createdAt")) for r in records) if k]
        if keys:
            span = sent - to_utc(min(keys)).timestamp()
            if span > 0:
                guess = min(guess, math.floor(span * NARROW_TARGET))
    return max(1, min(window // 2, guess))


#: ``fetch(params) -> (count, records)``: one call of the pipeline-activity endpoint, retries included.
SyncFetch = Callable[[dict[str, str]], tuple[int | None, list[dict[str, Any]]]]
AsyncFetch = Callable[[dict[str, str]], Awaitable[tuple[int | None, list[dict[str, Any]]]]]


def run_round_sync(search: WatchSearch, fetch: SyncFetch, clock: Callable[[], float]) -> RoundStats:
    """Run the search's current round with a blocking client."""
    while (query := search.pending) is not None:
        sent = clock()
        count, records = fetch(query.params(sent, search.filters, search.cap))
        search.feed(query, sent, clock(), count, records)
    return search.stats


async def run_round_async(search: WatchSearch, fetch: AsyncFetch, clock: Callable[[], float]) -> RoundStats:
    """Run the search's current round with an async client."""
    while (query := search.pending) is not None:
        sent = clock()
        count, records = await fetch(query.params(sent, search.filters, search.cap))
        search.feed(query, sent, clock(), count, records)
    return search.stats
