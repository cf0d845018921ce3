"""The pipeline triggers: ``OpseraPipelineStatusTrigger`` (the deferrable half of the pipeline status sensor)
and ``OpseraPipelineEventTrigger`` (an ``AssetWatcher``'s trigger: one event per finished run).

Both run their rounds through the shared poller of their connection and ``pipeline_type``
(:mod:`~airflow_provider_opsera.triggers.polling`): in one triggerer, N watchers cost one request stream.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_opsera.compat import BaseEventTrigger
from airflow_provider_opsera.connection import DEFAULT_CONN_ID
from airflow_provider_opsera.exceptions import OpseraAuthError
from airflow_provider_opsera.pipeline.decision import (
    Outcome,
    StatusRules,
    Watch,
    decide,
    record_order,
    run_of,
)
from airflow_provider_opsera.pipeline.search import (
    CLOCK_MARGIN,
    REQUEST_ALLOWANCE,
    WatchSearch,
    WatchState,
    coverage_note,
    next_interval,
    waiting_note,
)
from airflow_provider_opsera.timeutils import created_key, to_utc
from airflow_provider_opsera.triggers.polling import shared_poller
from airflow_provider_opsera.triggers.watermark import store_for


class OpseraPipelineStatusTrigger(BaseTrigger):
    """Polls Opsera's pipeline-activity log until the watched run (or step) finishes, or the deadline passes.

    Every poll asks only for what is new since the previous one (``range`` = elapsed time plus a margin),
    carrying what it already knows in ``state``; a busy account's unrelated records cost one small request a
    poll. It fires exactly one event, a JSON dict with ``status``:

    - ``success``: ``record`` is the deciding pipeline-activity record;
    - ``failure``: ``record`` and ``message`` say what failed;
    - ``timeout``: the deadline passed (checked after a final poll);
    - ``error``: the API could not be read (``message``). When it refused the token (HTTP 401 or 403), the
      event also carries ``"error": "auth"`` and ``status_code``, and ``message`` is the provider's own
      auth error message, so that the sensor raises the same ``OpseraAuthError`` as in poke mode.

    :param pipeline_id: the pipeline's ``_id``.
    :param run_count: the run to watch; None for the newest run seen.
    :param step_id: watch one step by its id.
    :param step_name: watch one step by its name (case-insensitive).
    :param waiting_statuses: statuses meaning "still running" (None: the defaults).
    :param failure_statuses: statuses meaning "failed" (None: the defaults).
    :param success_statuses: statuses meaning "succeeded"; None: any status in neither set above.
    :param lookback_s: how far back a first look searches, in seconds (only used when ``state`` is None).
    :param pipeline_type: filter every query on the pipeline's ``type`` (e.g. ``sdlc``).
    :param opsera_conn_id: the ``opsera`` connection.
    :param poll_interval: seconds between polls (shortened when the account is too busy for it).
    :param deadline: epoch seconds after which the trigger fires ``timeout``.
    :param state: what the sensor's check in the worker learned (``WatchState.to_json()``).
    :param keep_polling_on_error: log API errors and keep polling until the deadline (the sensor's
        ``silent_fail``) instead of firing ``error``.
    :param share_polls: poll through the triggerer's shared poller of this connection and ``pipeline_type``
        (default); False gives the trigger a request stream of its own.
    """

    def __init__(
        self,
        *,
        pipeline_id: str,
        run_count: int | None = None,
        step_id: str | None = None,
        step_name: str | None = None,
        waiting_statuses: list[str] | None = None,
        failure_statuses: list[str] | None = None,
        success_statuses: list[str] | None = None,
        lookback_s: int = 86400,
        pipeline_type: str | None = None,
        opsera_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 60.0,
        deadline: float,
        state: dict[str, Any] | None = None,
        keep_polling_on_error: bool = False,
        share_polls: bool = True,
    ) -> None:
        super().__init__()
        self.share_polls = bool(share_polls)
        self.watch = Watch.build(pipeline_id, run_count, step_id, step_name)
        self.rules = StatusRules.build(waiting_statuses, failure_statuses, success_statuses)
        self.lookback_s = int(lookback_s)
        self.pipeline_type = pipeline_type
        self.opsera_conn_id = opsera_conn_id
        self.poll_interval = float(poll_interval)
        self.deadline = float(deadline)
        self.state = dict(state) if state is not None else None
        self.keep_polling_on_error = bool(keep_polling_on_error)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        rules = self.rules.to_json()
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                **self.watch.to_json(),
                "waiting_statuses": rules["waiting"],
                "failure_statuses": rules["failure"],
                "success_statuses": rules["success"],
                "lookback_s": self.lookback_s,
                "pipeline_type": self.pipeline_type,
                "opsera_conn_id": self.opsera_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "state": self.state,
                "keep_polling_on_error": self.keep_polling_on_error,
                "share_polls": self.share_polls,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # Exactly one event: ``_wait`` returns one, and anything it raises becomes the error event.
        try:
            event = await self._wait()
        except Exception as err:  # anything unexpected becomes the error event, never a silent hang
            self.log.exception("Waiting for %s failed.", self.watch.describe())
            event = _event("error", f"{type(err).__name__}: {err}", error=err)
        yield TriggerEvent(event)

    async def _wait(self) -> dict[str, Any]:
        state = WatchState.from_json(self.state) if self.state else None
        search = WatchSearch(
            self.watch, state, lookback_s=self.lookback_s, now=time.time(), pipeline_type=self.pipeline_type
        )
        async with shared_poller(
            self.opsera_conn_id, self.pipeline_type, self.log, share=self.share_polls
        ) as poller:
            first, warned, due = True, False, time.time()
            while True:
                if not first:
                    search.start_poll()
                first = False
                try:
                    stats = await poller.run_round(search, due)
                except Exception as err:
                    if not self.keep_polling_on_error:
                        return _event("error", str(err), error=err)
                    self.log.error(
                        "Poll of %s failed, polling on (silent_fail): %s", self.watch.describe(), err
                    )
                else:
                    for note in search.take_notes():
                        self.log.warning("%s", note)
                    partial = None if warned else coverage_note(search)
                    if partial:
                        warned = True
                        self.log.warning("%s", partial)
                    self.log.info(
                        "Polled %s: %d request(s), %d records (%d unrelated).",
                        self.watch.describe(),
                        stats.requests,
                        stats.records,
                        stats.unrelated,
                    )
                    decision = decide(self.watch, self.rules, search.state.records)
                    if decision.outcome is Outcome.SUCCESS:
                        self.log.info("%s", decision.reason)
                    if decision.outcome is not Outcome.WAIT:
                        return _event(decision.outcome.value, decision.reason, decision.record)
                    if decision.unknown_status:
                        self.log.warning("%s", decision.reason)
                now = time.time()
                if now >= self.deadline:
                    return _event(
                        "timeout",
                        f"Sensor has timed out: {self.watch.describe()} did not finish by the deadline. "
                        f"{waiting_note(search, self.rules)}",
                    )
                # The shared poller runs this search's next round at this time, or sooner for a sibling.
                due = now + min(next_interval(search.state, self.poll_interval), self.deadline - now)


#: Shortest catch-up window a (re)started event trigger reads, in seconds.
MIN_CATCH_UP = 60
#: Seconds between watermark writes while no run finishes (so a restart reads back little).
WATERMARK_EVERY = 60.0


class OpseraPipelineEventTrigger(BaseEventTrigger):
    """Fires one event each time a run of the watched pipeline (or one step of it) reaches a terminal status.

    For an ``AssetWatcher``: ``schedule=[Asset("opsera://pipelines/<id>", watchers=[AssetWatcher(name=...,
    trigger=OpseraPipelineEventTrigger(pipeline_id=...))])]``. It reads the pipeline-activity log the way the
    sensor's trigger does (windows proven complete, the same shared poller) and decides each run with the
    sensor's :func:`~airflow_provider_opsera.pipeline.decision.decide` and status sets: a run whose newest
    record (of the step, when given) is in ``failure_statuses`` or counts as success fires. Each event is
    plain JSON: ``status`` (``success`` or ``failure``), ``message``, ``record`` (the deciding record),
    ``pipeline_id``, ``run_count``, ``step_id``, ``step_name`` and ``key`` (``"<pipeline_id>:<run_count>"``).

    Exactly once per run, across restarts, from data: Airflow re-creates the trigger from these kwargs and does
    not de-duplicate its events, so the trigger keeps a watermark outside the triggerer (the asset's state
    store on Airflow 3.3+, else a Variable; :mod:`~airflow_provider_opsera.triggers.watermark`): when it last
    read up to, and the runs it emitted near then. A (re)start reads the API back from the watermark, so a run
    that finished while the triggerer was down still fires, once; one already emitted does not fire again. The
    first start fires only for runs that finish from then on. The watermark is written after each event is
    handed to the triggerer: a triggerer killed in that instant may repeat that one event, never lose it.

    :param pipeline_id: the pipeline's ``_id``.
    :param step_id: fire when this step (by id) of a run reaches a terminal status.
    :param step_name: the same by step name (case-insensitive).
    :param waiting_statuses: statuses meaning "still running" (None: the sensor's defaults).
    :param failure_statuses: statuses meaning "failed" (None: the defaults).
    :param success_statuses: statuses meaning "succeeded"; None: any status in neither set above.
    :param pipeline_type: filter every query on the pipeline's ``type`` (e.g. ``sdlc``).
    :param opsera_conn_id: the ``opsera`` connection.
    :param poll_interval: seconds between polls (shortened when the account is too busy for it).
    :param catch_up_s: the longest time back a restart reads (seconds, default a day); runs that finished
        longer ago than that before a restart are not fired, with a warning.
    :param share_polls: use the triggerer's shared poller (default).
    """

    def __init__(
        self,
        *,
        pipeline_id: str,
        step_id: str | None = None,
        step_name: str | None = None,
        waiting_statuses: list[str] | None = None,
        failure_statuses: list[str] | None = None,
        success_statuses: list[str] | None = None,
        pipeline_type: str | None = None,
        opsera_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 60.0,
        catch_up_s: int = 86400,
        share_polls: bool = True,
    ) -> None:
        super().__init__()
        self.watch = Watch.build(pipeline_id, None, step_id, step_name)
        self.rules = StatusRules.build(waiting_statuses, failure_statuses, success_statuses)
        self.pipeline_type = pipeline_type or None
        self.opsera_conn_id = opsera_conn_id
        self.poll_interval = float(poll_interval)
        self.catch_up_s = int(catch_up_s)
        self.share_polls = bool(share_polls)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        rules = self.rules.to_json()
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "pipeline_id": self.watch.pipeline_id,
                "step_id": self.watch.step_id,
                "step_name": self.watch.step_name,
                "waiting_statuses": rules["waiting"],
                "failure_statuses": rules["failure"],
                "success_statuses": rules["success"],
                "pipeline_type": self.pipeline_type,
                "opsera_conn_id": self.opsera_conn_id,
                "poll_interval": self.poll_interval,
                "catch_up_s": self.catch_up_s,
                "share_polls": self.share_polls,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        store = store_for(self)
        mark = _Mark.from_json(await store.get())
        now = time.time()
        if mark is None:  # the watcher's first start: runs finishing from now on
            mark = _Mark(at=now, emitted={})
            await store.set(mark.to_json())
        behind = now - mark.at + CLOCK_MARGIN + REQUEST_ALLOWANCE
        if behind > self.catch_up_s:
            self.log.warning(
                "Last read up to %s, more than catch_up_s=%ds ago: runs of %s that finished before the last "
                "%ds are not fired.",
                _iso(mark.at),
                self.catch_up_s,
                self.watch.describe(),
                self.catch_up_s,
            )
        search = WatchSearch(
            self.watch,
            None,
            lookback_s=max(MIN_CATCH_UP, min(self.catch_up_s, int(behind) + 1)),
            now=now,
            pipeline_type=self.pipeline_type,
            full_coverage=True,
        )
        latest: dict[int, dict[str, Any]] = {}
        stored_at, first, due = mark.at, True, now
        async with shared_poller(
            self.opsera_conn_id, self.pipeline_type, self.log, share=self.share_polls
        ) as poller:
            while True:
                if not first:
                    search.start_poll()
                try:
                    await poller.run_round(search, due)
                except Exception as err:  # an event trigger keeps watching; the next poll tries again
                    self.log.error("Poll of %s failed, polling on: %s", self.watch.describe(), err)
                else:
                    for note in search.take_notes():
                        self.log.warning("%s", note)
                    if first and not search.state.complete:
                        self.log.warning(
                            "Could not prove the pipeline activity since %s complete (the API caps each answer "
                            "at %d records): a run of %s that finished before %s is not fired.",
                            _iso(mark.at),
                            search.cap,
                            self.watch.describe(),
                            _iso(search.state.covered_from or now),
                        )
                    for event in self._finished(search.take_proven(), mark, latest):
                        yield TriggerEvent(event)
                        await store.set(mark.to_json())
                        stored_at = mark.at
                    if search.state.complete and search.state.frontier is not None:
                        # Everything up to the frontier is handled: a restart need not read further back.
                        mark.advance(search.state.frontier - CLOCK_MARGIN - REQUEST_ALLOWANCE)
                        if mark.at - stored_at >= WATERMARK_EVERY:
                            await store.set(mark.to_json())
                            stored_at = mark.at
                first = False
                due = time.time() + next_interval(search.state, self.poll_interval)

    def _finished(
        self, proven: list[dict[str, Any]], mark: _Mark, latest: dict[int, dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Events for the runs whose newest record (of the step) is terminal, not emitted, after the mark."""
        for record in proven:
            run = run_of(record)
            if run is None or not self.watch.of_step(record):
                continue
            if run not in latest or record_order(record) > record_order(latest[run]):
                latest[run] = record
        events = []
        for run, record in sorted(latest.items(), key=lambda item: record_order(item[1])):
            at = _epoch(record)
            if str(run) in mark.emitted or at < mark.at - CLOCK_MARGIN:
                continue
            watch = Watch(self.watch.pipeline_id, run, self.watch.step_id, self.watch.step_name)
            decision = decide(watch, self.rules, [record])
            if decision.outcome is Outcome.WAIT:
                if decision.unknown_status:
                    self.log.warning("%s", decision.reason)
                continue
            self.log.info("%s", decision.reason)
            mark.emit(run, at)
            events.append(
                _event(
                    decision.outcome.value,
                    decision.reason,
                    decision.record,
                    pipeline_id=self.watch.pipeline_id,
                    run_count=run,
                    step_id=self.watch.step_id,
                    step_name=self.watch.step_name,
                    key=f"{self.watch.pipeline_id}:{run}",
                )
            )
        for run in [
            r for r, rec in latest.items() if str(r) in mark.emitted or _epoch(rec) < mark.at - CLOCK_MARGIN
        ]:
            del latest[run]  # fired, or finished before the mark: nothing more to decide
        return events


class _Mark:
    """The event trigger's watermark: read up to ``at`` (epoch s); ``emitted``: runs fired near then."""

    def __init__(self, at: float, emitted: dict[str, float]) -> None:
        self.at = at
        self.emitted = emitted

    @classmethod
    def from_json(cls, data: Any) -> _Mark | None:
        if not isinstance(data, dict) or not isinstance(data.get("at"), (int, float)):
            return None
        emitted = data.get("emitted")
        if not isinstance(emitted, dict):
            emitted = {}
        return cls(float(data["at"]), {str(k): float(v) for k, v in emitted.items()})

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "emitted": dict(self.emitted)}

    def emit(self, run: int, at: float) -> None:
        self.emitted[str(run)] = at
        self.advance(at)

    def advance(self, at: float) -> None:
        self.at = max(self.at, at)
        # A run whose record is older than the margin before the mark cannot pass the time test again.
        self.emitted = {k: v for k, v in self.emitted.items() if v >= self.at - 2 * CLOCK_MARGIN}


def _epoch(record: dict[str, Any]) -> float:
    key = created_key(record.get("createdAt"))
    return to_utc(key).timestamp() if key else 0.0


def _iso(epoch: float) -> str:
    return to_utc(datetime.fromtimestamp(epoch, timezone.utc)).isoformat()


def _event(
    status: str,
    message: str,
    record: dict[str, Any] | None = None,
    *,
    error: BaseException | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The trigger's one event, plain JSON: ``status``, ``message`` and the deciding ``record`` (or None).

    An ``error`` event for a refused token (``error`` an :class:`OpseraAuthError`) also carries
    ``"error": "auth"`` and ``status_code``, with the auth error's own message, for the sensor to raise again.
    """
    event: dict[str, Any] = {"status": status, "message": message, "record": record, **extra}
    if isinstance(error, OpseraAuthError):
        event.update(error="auth", status_code=error.status_code, message=str(error))
    return event
