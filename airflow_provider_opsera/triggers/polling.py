"""Shared polling: one request stream per connection and ``pipeline_type`` in one triggerer's event loop.

Every pipeline trigger runs its rounds through a :class:`SharedPoller` (``await poller.run_round(search,
due)``). The poller waits until the earliest due time among the searches waiting on it, then runs one round
for all of them: their pending queries are coalesced (:func:`~airflow_provider_opsera.pipeline.sharing.
coalesce`), each shared request is sent once, and its answer is fed to every member's own
:class:`~airflow_provider_opsera.pipeline.search.WatchSearch`, which checks and trims it against its own
query exactly as if it had asked alone. So each trigger decides as it would alone, from its own search
state, with the same :func:`~airflow_provider_opsera.pipeline.decision.decide`; a watcher is served at the
pace of the fastest one, never later than its own due time plus one round.

The registry (:func:`shared_poller`) holds no state a trigger needs: a poller is only the live request
stream. It is created by the first trigger that asks for its key ``(conn_id, pipeline_type)`` in the running
event loop and stopped (its HTTP session closed) when the last one leaves, by firing, timing out or being
cancelled. After a triggerer restart the triggers come back from their kwargs, and the first one rebuilds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from airflow_provider_opsera.catalogue import OpseraLogType
from airflow_provider_opsera.hooks.opsera import OpseraAsyncHook
from airflow_provider_opsera.pipeline.search import Query, RoundStats, WatchSearch
from airflow_provider_opsera.pipeline.sharing import Shared, coalesce

_log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Waiter:
    search: WatchSearch
    due: float
    future: asyncio.Future[RoundStats]


class SharedPoller:
    """The request stream of one connection and ``pipeline_type`` in one event loop (see the module)."""

    def __init__(self, conn_id: str, pipeline_type: str | None, logger: Any = None) -> None:
        self.conn_id = conn_id
        self.pipeline_type = pipeline_type
        self.log = logger if logger is not None else _log
        #: Triggers holding this poller (``shared_poller``); the last to leave stops it.
        self.users = 0
        #: Requests sent (one per shared query; the hook's retries not counted), and rounds run.
        self.requests = 0
        self.rounds = 0
        self._waiting: list[_Waiter] = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def run_round(self, search: WatchSearch, due: float) -> RoundStats:
        """Run ``search``'s current round (its ``pending`` queries until none) in the first shared round at
        or after ``due`` (epoch seconds). Raises what the API raised for one of its requests."""
        future: asyncio.Future[RoundStats] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(search, due, future)
        self._waiting.append(waiter)
        self._changed.set()
        if self._closing:
            raise RuntimeError("this shared poller was stopped: its last user left")
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._serve(), name=f"opsera shared poll {self.conn_id}")
        try:
            return await future
        finally:
            if waiter in self._waiting:  # cancelled while waiting
                self._waiting.remove(waiter)
                self._changed.set()

    async def close(self) -> None:
        task, self._task = self._task, None
        # The flag as well as the cancel: asyncio.wait_for can swallow a cancel that meets a wake-up.
        self._closing = True
        self._changed.set()
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _serve(self) -> None:
        try:
            async with OpseraAsyncHook(self.conn_id, logger=self.log) as hook:
                while not self._closing:
                    self._changed.clear()
                    if not self._waiting:
                        await self._changed.wait()
                        continue
                    delay = min(w.due for w in self._waiting) - time.time()
                    if delay > 0:
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(self._changed.wait(), delay)
                        continue
                    batch, self._waiting = self._waiting, []
                    await self._round(hook, batch)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # the connection could not be read or opened: every waiter hears it
            batch, self._waiting = self._waiting, []
            for waiter in batch:
                if not waiter.future.done():
                    waiter.future.set_exception(err)

    async def _round(self, hook: OpseraAsyncHook, batch: list[_Waiter]) -> None:
        self.rounds += 1
        active = [w for w in batch if not w.future.done()]
        while active:
            pending: list[tuple[_Waiter, Query]] = []
            for waiter in active:
                if waiter.search.pending is None:
                    waiter.future.set_result(waiter.search.stats)
                else:
                    pending.append((waiter, waiter.search.pending))
            if not pending:
                return
            await asyncio.gather(*(self._send(hook, group) for group in coalesce(pending)))
            active = [w for w in active if not w.future.done()]

    async def _send(self, hook: OpseraAsyncHook, group: Shared[_Waiter]) -> None:
        first = group.members[0][0].search
        sent = time.time()
        self.requests += 1
        try:
            page = await hook.get_page(
                OpseraLogType.PIPELINE_ACTIVITY, group.query.params(sent, first.filters, first.cap)
            )
        except Exception as err:
            for waiter, _ in group.members:
                if not waiter.future.done():
                    waiter.future.set_exception(err)
            return
        received = time.time()
        records = [r.payload for r in page.records]
        for waiter, query in group.members:
            if waiter.future.done():
                continue
            try:
                waiter.search.feed(query, sent, received, page.count, records)
            except Exception as err:  # e.g. a window that cannot be proven: that watcher's error alone
                waiter.future.set_exception(err)


_POLLERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str | None], SharedPoller]] = (
    weakref.WeakKeyDictionary()
)


def active_pollers() -> list[SharedPoller]:
    """The shared pollers of the running event loop (for tests and the log)."""
    return list(_POLLERS.get(asyncio.get_running_loop(), {}).values())


@contextlib.asynccontextmanager
async def shared_poller(
    conn_id: str, pipeline_type: str | None, logger: Any = None, *, share: bool = True
) -> AsyncIterator[SharedPoller]:
    """The poller of ``(conn_id, pipeline_type)`` in the running loop, held for the block's duration.

    ``share=False`` gives the caller a poller of its own (one request stream per trigger, as before sharing).
    """
    if not share:
        own = SharedPoller(conn_id, pipeline_type, logger)
        try:
            yield own
        finally:
            await own.close()
        return
    pollers = _POLLERS.setdefault(asyncio.get_running_loop(), {})
    key = (conn_id, pipeline_type or None)
    poller = pollers.get(key)
    if poller is None:
        poller = pollers[key] = SharedPoller(conn_id, pipeline_type, logger)
    poller.users += 1
    try:
        yield poller
    finally:
        poller.users -= 1
        if poller.users == 0:
            if pollers.get(key) is poller:
                del pollers[key]
            await poller.close()
