"""``OpseraPipelineStatusTrigger``: the deferrable half of the pipeline status sensor."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_opsera.catalogue import OpseraLogType
from airflow_provider_opsera.connection import DEFAULT_CONN_ID
from airflow_provider_opsera.exceptions import OpseraAuthError
from airflow_provider_opsera.hooks.opsera import OpseraAsyncHook
from airflow_provider_opsera.pipeline.decision import Outcome, StatusRules, Watch, decide
from airflow_provider_opsera.pipeline.search import (
    WatchSearch,
    WatchState,
    coverage_note,
    next_interval,
    run_round_async,
    waiting_note,
)


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
    ) -> None:
        super().__init__()
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
        async with OpseraAsyncHook(self.opsera_conn_id, logger=self.log) as client:

            async def fetch(params: dict[str, str]) -> tuple[int | None, list[dict[str, Any]]]:
                page = await client.get_page(OpseraLogType.PIPELINE_ACTIVITY, params)
                return page.count, [r.payload for r in page.records]

            first, warned = True, False
            while True:
                if not first:
                    search.start_poll()
                first = False
                try:
                    stats = await run_round_async(search, fetch, time.time)
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
                await asyncio.sleep(min(next_interval(search.state, self.poll_interval), self.deadline - now))


def _event(
    status: str, message: str, record: dict[str, Any] | None = None, *, error: BaseException | None = None
) -> dict[str, Any]:
    """The trigger's one event, plain JSON: ``status``, ``message`` and the deciding ``record`` (or None).

    An ``error`` event for a refused token (``error`` an :class:`OpseraAuthError`) also carries
    ``"error": "auth"`` and ``status_code``, with the auth error's own message, for the sensor to raise again.
    """
    event: dict[str, Any] = {"status": status, "message": message, "record": record}
    if isinstance(error, OpseraAuthError):
        event.update(error="auth", status_code=error.status_code, message=str(error))
    return event
