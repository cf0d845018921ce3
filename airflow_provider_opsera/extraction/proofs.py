"""Executing a plan: run the queries with bounded concurrency, prove each piece complete, stream records.

The planning (which query covers what, how to split) is in :mod:`planning`; this module only decides, from
each response, whether its piece is complete and what to ask next. Records are yielded one response at a
time, so memory holds at most ``concurrency`` responses plus the ids of the v2 windows being paged.

Completeness rules:

- v1 (no paging, capped): a response with fewer records than the cap is complete. One that reaches the cap
  is possibly truncated whatever ``count`` says: a multi-day query is split into days; a one-day query is split
  by the split field's values (seen in the response first, then the documented ones). The split is proven
  complete only when the per-value results add up to the total the API reports for the day (``count`` when
  it exceeds the page, or a ``count=1`` probe). Anything short of that is :class:`OpseraIncompleteResultError`.
- v2 (paged, ``count`` is the total): after page 1 tells the total, the other pages are fetched concurrently.
  A window is complete when the distinct ids received reach the largest total reported. If records moved
  between pages (fewer distinct ids than the total), the window is fetched again as smaller windows, deduped
  against what was already yielded.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_opsera.catalogue import Endpoint
from airflow_provider_opsera.exceptions import OpseraAPIError, OpseraIncompleteResultError
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

Fetch = Callable[[dict[str, str]], Page]

#: Hand-off markers from the producer thread: the plan is done, or it failed with an error.
_DONE = object()


@dataclass(frozen=True)
class _Failed:
    error: BaseException


@dataclass
class ExtractionStats:
    """What one extraction did; ``requests`` counts HTTP attempts (retries included)."""

    requests: int = 0
    retries: int = 0
    responses: int = 0
    records: int = 0
    splits: int = 0
    refetches: int = 0
    duplicates: int = 0
    outside: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started


@dataclass(eq=False)
class _SplitGroup:
    """A capped one-day v1 query, split by the values of one field, waiting to be proven complete."""

    piece: Piece
    total: int | None
    queried: set[str] = field(default_factory=set)
    outstanding: int = 0
    found: int = 0


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


@dataclass(eq=False)
class _Task:
    piece: Piece
    params: dict[str, str]
    kind: str  # "v1", "probe", "page"
    group: _SplitGroup | None = None
    window: _Window | None = None
    page: int = 1


class Extraction:
    """One run of a plan against one endpoint."""

    def __init__(
        self,
        endpoint: Endpoint,
        pieces: list[Piece],
        fetch: Fetch,
        *,
        concurrency: int = 4,
        workers: int | None = None,
        page_size: int = 1000,
        stats: ExtractionStats | None = None,
        cancelled: threading.Event | None = None,
    ) -> None:
        self.endpoint = endpoint
        #: Set when the extraction ends early (an error, or the consumer stopped): calls still in flight
        #: then stop retrying instead of going on in the background.
        self.cancelled = cancelled or threading.Event()
        self.fetch = fetch
        self.concurrency = max(1, concurrency)
        #: Calls in flight at once. ``fetch`` may hold fewer HTTP requests open than that (the hook keeps
        #: ``concurrency`` requests open and decodes outside them), so the next request starts while a
        #: finished one is still being decoded.
        self.workers = max(self.concurrency, workers or 0)
        self.page_size = page_size
        self.stats = stats or ExtractionStats()
        self.queue: deque[_Task] = deque()
        for piece in pieces:
            if endpoint.paged:
                self._start_window(_Window(piece))
            else:
                self._push(_Task(piece, piece.query(endpoint), "v1"))

    # -- scheduling -------------------------------------------------------------------------------------
    def _push(self, task: _Task) -> None:
        if task.group is not None:
            task.group.outstanding += 1
        if task.window is not None:
            task.window.outstanding += 1
        self.queue.append(task)

    def _start_window(self, window: _Window) -> None:
        self._push(_Task(window.piece, self._page_params(window.piece, 1), "page", window=window, page=1))

    def _page_params(self, piece: Piece, page: int) -> dict[str, str]:
        return {**piece.query(self.endpoint), "page": str(page), "page_size": str(self.page_size)}

    def batches(self) -> Iterator[list[Record]]:
        """Run the plan; yield each response's new, in-slice records as one list.

        The plan runs on a thread of its own, a few responses ahead of the consumer (a bounded queue), so
        requests stay in flight while the consumer compresses or loads what it already has.
        """
        handoff: queue.Queue[Any] = queue.Queue(maxsize=max(2, 2 * self.concurrency))
        consumer_gone = threading.Event()
        producer = threading.Thread(
            target=self._produce, args=(handoff, consumer_gone), name="opsera-extraction", daemon=True
        )
        producer.start()
        try:
            while True:
                item = handoff.get()
                if item is _DONE:
                    return
                if isinstance(item, _Failed):
                    raise item.error
                yield item
        finally:
            # The consumer stopped (finished, failed, or closed the generator): stop the producer too.
            consumer_gone.set()
            self.cancelled.set()
            producer.join(timeout=5)

    def _produce(self, handoff: queue.Queue[Any], consumer_gone: threading.Event) -> None:
        def put(item: Any) -> bool:
            while not consumer_gone.is_set():
                try:
                    handoff.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            for batch in self._run():
                if not put(batch):
                    return
        except BaseException as error:
            self.cancelled.set()  # calls still in flight stop retrying
            put(_Failed(error))
            return
        put(_DONE)

    def _run(self) -> Iterator[list[Record]]:
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="opsera")
        inflight: dict[Future[Page], _Task] = {}
        try:
            while self.queue or inflight:
                if self.cancelled.is_set():
                    return  # the consumer is gone
                while self.queue and len(inflight) < self.workers:
                    task = self.queue.popleft()
                    inflight[pool.submit(self.fetch, task.params)] = task
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for future in done:
                    task = inflight.pop(future)
                    page = future.result()
                    self.stats.responses += 1
                    batch = self._handle(task, page)
                    # Keep every slot busy before handing the batch on.
                    while self.queue and len(inflight) < self.workers:
                        nxt = self.queue.popleft()
                        inflight[pool.submit(self.fetch, nxt.params)] = nxt
                    if batch:
                        self.stats.records += len(batch)
                        yield batch
        finally:
            for future in inflight:
                future.cancel()
            pool.shutdown(wait=False, cancel_futures=True)

    def _handle(self, task: _Task, page: Page) -> list[Record]:
        if task.kind == "page":
            return self._on_page(task, page)
        if task.kind == "probe":
            self._on_probe(task, page)
            return []
        return self._on_v1(task, page)

    # -- shared -----------------------------------------------------------------------------------------
    def _in_slice(self, piece: Piece, records: list[Record]) -> list[Record]:
        lo, hi, split = piece.lo_key, piece.hi_key, piece.split
        out = []
        for rec in records:
            if not lo <= rec.key < hi or (split is not None and rec.split != split[1]):
                self.stats.outside += 1
                continue
            out.append(rec)
        return out

    def _in_span(self, piece: Piece, records: list[Record]) -> int:
        lo, hi = sort_key(piece.span_start), sort_key(piece.span_end)
        split = piece.split
        return sum(1 for r in records if lo <= r.key < hi and (split is None or r.split == split[1]))

    def _incomplete(self, piece: Piece, message: str) -> OpseraIncompleteResultError:
        return OpseraIncompleteResultError(
            f"{self.endpoint.log_type.value} {piece.describe()}: {message} Narrow the interval or the filters; "
            "the provider never returns a set it cannot prove complete.",
            window=piece.describe(),
        )

    # -- v1 ---------------------------------------------------------------------------------------------
    def _on_v1(self, task: _Task, page: Page) -> list[Record]:
        piece, cap = task.piece, self.endpoint.cap
        group = task.group
        if len(page.records) < cap:
            records = self._dedupe(self._in_slice(piece, page.records))
            if group is not None:
                group.found += self._in_span(piece, self._dedupe(page.records))
                self._settle(group)
            return records
        # Reached the cap: possibly truncated, whatever ``count`` says.
        if piece.days > 1:
            self.stats.splits += 1
            for day in split_days(piece):
                self._push(_Task(day, day.query(self.endpoint), "v1"))
            return []
        if not can_split_by_value(self.endpoint, piece):
            lever = f"{piece.split[0]}={piece.split[1]}" if piece.split else "its filters"
            raise self._incomplete(
                piece,
                f"the response holds {len(page.records)} records, the API's cap, and {self.endpoint.path} "
                f"cannot split one day's {lever} any further.",
            )
        total = page.count if page.count is not None and page.count > len(page.records) else None
        new_group = _SplitGroup(piece, total)
        self.stats.splits += 1
        seen = [r.split for r in page.records if r.split is not None]
        if total is None:
            if not self.endpoint.takes_count:
                raise self._incomplete(
                    piece,
                    f"the response holds {len(page.records)} records, the API's cap, and reports no larger "
                    "total, so a split by "
                    f"{self.endpoint.split_field} cannot be proven complete.",
                )
            # Does ``count`` mean the total (v2's reading) or the page size? Ask for one record to find out.
            self._push(_Task(piece, {**piece.query(self.endpoint), "count": "1"}, "probe", group=new_group))
        self._query_values(new_group, seen or list(self.endpoint.split_values))
        if not new_group.outstanding:
            raise self._incomplete(
                piece,
                f"the response reached the cap and its records carry no {self.endpoint.split_field} to split by.",
            )
        return []

    def _on_probe(self, task: _Task, page: Page) -> None:
        group = task.group
        assert group is not None
        if page.count is None or page.count <= len(page.records):
            raise self._incomplete(
                group.piece,
                f"{self.endpoint.path} reached its cap of {self.endpoint.cap} and its count field only echoes "
                "the page, so there is no total to prove a split complete against.",
            )
        group.total = page.count
        self._settle(group)

    def _query_values(self, group: _SplitGroup, values: list[str]) -> None:
        field_name = self.endpoint.split_field
        assert field_name is not None
        fresh = [v for v in dict.fromkeys(values) if v not in group.queried]
        group.queried.update(fresh)
        for child in split_by_values(group.piece, field_name, fresh):
            self._push(_Task(child, child.query(self.endpoint), "v1", group=group))

    def _settle(self, group: _SplitGroup) -> None:
        group.outstanding -= 1
        if group.outstanding or group.total is None:
            return
        if group.found >= group.total:
            return
        remaining = [v for v in self.endpoint.split_values if v not in group.queried]
        if remaining:
            self._query_values(group, remaining)
            return
        raise self._incomplete(
            group.piece,
            f"the API counts {group.total} records for the day but the split by {self.endpoint.split_field} "
            f"({', '.join(sorted(group.queried))}) found {group.found}; the rest carry values this provider "
            "cannot query.",
        )

    @staticmethod
    def _dedupe(records: list[Record]) -> list[Record]:
        seen: set[str] = set()
        out = []
        for rec in records:
            if rec.id not in seen:
                seen.add(rec.id)
                out.append(rec)
        return out

    # -- v2 ---------------------------------------------------------------------------------------------
    def _on_page(self, task: _Task, page: Page) -> list[Record]:
        window = task.window
        assert window is not None
        window.outstanding -= 1
        if page.count is None:
            raise OpseraAPIError(
                f"{self.endpoint.log_type.value}: a page of {self.endpoint.path} came without its total count; "
                "paging cannot be proven complete without it.",
            )
        size = self.page_size
        if not window.planned:
            window.planned = True
            if page.count > WINDOW_PAGES * size and window.piece.minutes > 1 and not window.prior:
                # Too large to page with bounded memory: page it as smaller windows instead.
                self.stats.splits += 1
                for sub in split_minutes(
                    window.piece, windows_for_total(page.count, WINDOW_PAGES * size // 2)
                ):
                    self._start_window(_Window(sub, attempt=window.attempt))
                return []
        if page.count > window.total:
            pages = math.ceil(page.count / size)
            first_new = max(window.pages, 1) + 1
            window.total, window.pages = page.count, max(window.pages, pages, 1)
            for n in range(first_new, pages + 1):
                self._push(
                    _Task(window.piece, self._page_params(window.piece, n), "page", window=window, page=n)
                )
        if task.page >= window.pages:
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
            self._finish_window(window)
        return out

    def _finish_window(self, window: _Window) -> None:
        if len(window.received) > window.total and window.last_full and len(window.received) > window.probed:
            # More distinct records than the total, and a full last page: the total under-reports. Ask for
            # the next page, and again only while such pages bring new ids (some servers repeat a page).
            window.probed = len(window.received)
            window.pages += 1
            self._push(
                _Task(
                    window.piece,
                    self._page_params(window.piece, window.pages),
                    "page",
                    window=window,
                    page=window.pages,
                )
            )
            return
        if len(window.received) >= window.total:
            window.received = set()  # let the ids go; nothing later refers to this window
            return
        self.stats.refetches += 1
        piece = window.piece
        if window.attempt >= MAX_REFETCH:
            raise self._incomplete(
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
        for sub in split_minutes(piece, parts) if piece.minutes > 1 else [piece]:
            self._start_window(_Window(sub, attempt=window.attempt + 1, prior=prior))
