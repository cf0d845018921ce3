"""The runner: the only code of an extraction that knows threads.

It runs a proof (:mod:`.proofs`) with bounded concurrency and streams its records. It owns the request
slots (``concurrency`` HTTP requests open at once; a few more calls may be decoding meanwhile), the worker
pool, the hand-off to the consumer and cancellation. The hook supplies only ``fetch``: "these parameters,
holding a slot while the request is open, and stop retrying once cancelled".
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Protocol

from airflow_provider_opsera.extraction.proofs import Ask, Proof
from airflow_provider_opsera.responses import Page, Record

#: Calls kept going beyond the ``concurrency`` open requests: each decodes its response after giving its
#: request slot to the next call, so decoding overlaps the round trips instead of adding to them.
DECODE_AHEAD = 2
#: Most records handed to the consumer at once.
BATCH_RECORDS = 1000


@dataclass(frozen=True)
class Call:
    """What a fetch gets beside its parameters: the slot to hold while its request is open, and the event
    that says the extraction ended (stop retrying)."""

    slot: threading.BoundedSemaphore
    cancelled: threading.Event


class Fetch(Protocol):
    def __call__(self, params: dict[str, str], call: Call) -> Page: ...


#: Hand-off marker from the producer thread: the proof is done.
_DONE = object()


@dataclass(frozen=True)
class _Failed:
    error: BaseException


class Runner:
    """Runs one proof: ``batches()`` yields each response's new records, one list per response."""

    def __init__(self, proof: Proof, fetch: Fetch, *, concurrency: int = 4, decode_ahead: int = DECODE_AHEAD):
        self.proof = proof
        self.fetch = fetch
        self.concurrency = max(1, concurrency)
        self.workers = self.concurrency + max(0, decode_ahead)
        self.call = Call(threading.BoundedSemaphore(self.concurrency), threading.Event())

    def batches(self) -> Iterator[list[Record]]:
        """Run the proof; the work runs on a thread of its own, a few responses ahead of the consumer (a
        bounded queue), so requests stay in flight while the consumer compresses or loads what it has."""
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
            self.call.cancelled.set()
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
            self.call.cancelled.set()  # calls still in flight stop retrying
            put(_Failed(error))
            return
        put(_DONE)

    def _run(self) -> Iterator[list[Record]]:
        proof, stats = self.proof, self.proof.stats
        pending: deque[Ask] = deque(proof.start())
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="opsera")
        inflight: dict[Future[Page], Ask] = {}

        def submit() -> None:
            while pending and len(inflight) < self.workers:
                ask = pending.popleft()
                inflight[pool.submit(self.fetch, ask.params, self.call)] = ask

        try:
            while pending or inflight:
                if self.call.cancelled.is_set():
                    return  # the consumer is gone
                submit()
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for future in done:
                    ask = inflight.pop(future)
                    page = future.result()
                    stats.responses += 1
                    step = proof.feed(ask, page)
                    pending.extend(step.asks)
                    submit()  # keep every slot busy before handing the batch on
                    stats.records += len(step.records)
                    # A window proven at once (held records) goes on in page-sized batches.
                    for i in range(0, len(step.records), BATCH_RECORDS):
                        yield step.records[i : i + BATCH_RECORDS]
        finally:
            for future in inflight:
                future.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
