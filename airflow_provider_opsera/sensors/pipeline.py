"""``OpseraPipelineStatusSensor``: wait for an Opsera pipeline run, or one step of it, to finish."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.bases.sensor import PokeReturnValue

from airflow_provider_opsera.catalogue import OpseraLogType
from airflow_provider_opsera.compat import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
)
from airflow_provider_opsera.connection import DEFAULT_CONN_ID
from airflow_provider_opsera.exceptions import OpseraError
from airflow_provider_opsera.hooks.opsera import OpseraHook
from airflow_provider_opsera.pipeline.decision import (
    DEFAULT_FAILURE_STATUSES,
    DEFAULT_WAITING_STATUSES,
    Decision,
    Outcome,
    StatusRules,
    Watch,
    decide,
)
from airflow_provider_opsera.pipeline.search import WatchSearch, coverage_note, parse_lookback, run_round_sync
from airflow_provider_opsera.triggers.pipeline import OpseraPipelineStatusTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Extra time the scheduler gives a deferred sensor beyond ``timeout``: the trigger's own deadline (after a
#: final poll) should decide, the scheduler's deferral timeout is only a backstop.
DEFERRAL_GRACE = timedelta(minutes=5)


def _default_deferrable() -> bool:
    from airflow_provider_opsera.compat import conf

    return conf.getboolean("operators", "default_deferrable", fallback=False)


class OpseraPipelineStatusSensor(BaseSensorOperator):
    """Waits until an Opsera pipeline run, or one step of it, leaves its in-progress statuses.

    It watches the newest pipeline-activity record of the pipeline (and run, and step, when given). No record
    yet, or a status in ``waiting_statuses``: keep waiting. A status in ``failure_statuses``: fail with the
    record's status and message. Any other status succeeds (or, when ``success_statuses`` is given, only
    those succeed and others keep it waiting, with a warning), returning the record as XCom. Statuses
    compare case-insensitively.

    The activity endpoint filters neither by pipeline nor by run and caps each answer at 1000 records, so the
    sensor reads the account's recent activity in windows it can prove complete (a capped answer is narrowed,
    never trusted) and decides only from a record proven to be the newest of the run. After the first look,
    each poll reads only what is new since the previous one.

    :param pipeline_id: the pipeline's ``_id`` (templated).
    :param run_count: the run to watch (templated); None watches the newest run seen (the highest run count).
    :param step_id: watch one step by its id (templated).
    :param step_name: watch one step by its name, e.g. ``"anchore"`` (templated; case-insensitive).
    :param waiting_statuses: statuses that keep the sensor waiting.
    :param failure_statuses: statuses that fail it.
    :param success_statuses: None: any status in neither set succeeds; a list: only these succeed.
    :param lookback: how far back the first look searches: ``"30m"``, ``"6h"``, ``"1d"`` (default), ``"1w"``.
    :param pipeline_type: the pipeline's ``type`` (``sdlc``, ``sfdc``, ``ai-ml``, ``sql``), optional
        (templated). Given, every query filters on it: on a busy account each answer then holds only that
        type's records, so the search proves longer windows and downloads less. Only set it if every record of
        the pipeline carries that type.
    :param opsera_conn_id: the ``opsera`` connection.
    :param deferrable: hand the wait to the triggerer (default: ``[operators] default_deferrable``).

    Plus the usual sensor arguments: ``poke_interval``, ``timeout``, ``mode``, ``soft_fail``.
    """

    template_fields: Sequence[str] = ("pipeline_id", "run_count", "step_id", "step_name", "pipeline_type")
    ui_color = "#d9f0e3"

    def __init__(
        self,
        *,
        pipeline_id: str,
        run_count: int | str | None = None,
        step_id: str | None = None,
        step_name: str | None = None,
        waiting_statuses: Iterable[str] = DEFAULT_WAITING_STATUSES,
        failure_statuses: Iterable[str] = DEFAULT_FAILURE_STATUSES,
        success_statuses: Iterable[str] | None = None,
        lookback: str | int | timedelta = "1d",
        pipeline_type: str | None = None,
        opsera_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.pipeline_id = pipeline_id
        self.run_count = run_count
        self.step_id = step_id
        self.step_name = step_name
        # Checked now, so a mistake fails when the DAG is parsed rather than hours into a wait.
        self.rules = StatusRules.build(waiting_statuses, failure_statuses, success_statuses)
        self.waiting_statuses = sorted(self.rules.waiting)
        self.failure_statuses = sorted(self.rules.failure)
        self.success_statuses = None if self.rules.success is None else sorted(self.rules.success)
        self.lookback = lookback
        self.lookback_s = parse_lookback(lookback)
        self.pipeline_type = pipeline_type
        self.opsera_conn_id = opsera_conn_id
        self.deferrable = _default_deferrable() if deferrable is None else bool(deferrable)
        self._search: WatchSearch | None = None
        self._warned_partial = False
        #: When ``execute`` began (epoch seconds): the trigger's deadline is ``timeout`` after it.
        self._started: float | None = None

    # -- the one check, shared by every mode -----------------------------------------------------------------
    def _check(self) -> Decision:
        """One round of requests (the first look, or what is new since the last poke) and the decision."""
        watch = Watch.build(self.pipeline_id, self.run_count, self.step_id, self.step_name)
        search = self._search
        # Reschedule mode starts each poke afresh (nothing survives between pokes); poke mode carries on.
        if search is None or self.reschedule or search.watch != watch:
            pipeline_type = str(self.pipeline_type).strip() if self.pipeline_type is not None else ""
            search = self._search = WatchSearch(
                watch, None, lookback_s=self.lookback_s, now=time.time(), pipeline_type=pipeline_type or None
            )
        else:
            search.start_poll()
        hook = OpseraHook(opsera_conn_id=self.opsera_conn_id)

        def fetch(params: dict[str, str]) -> tuple[int | None, list[dict[str, Any]]]:
            page = hook.get_logs(OpseraLogType.PIPELINE_ACTIVITY, params)
            return page["count"], page["data"]

        try:
            stats = run_round_sync(search, fetch, time.time)
        finally:
            hook.close()
        for note in search.take_notes():
            self.log.warning("%s", note)
        decision = decide(watch, self.rules, search.state.records)
        self.log.info(
            "%s [%d request(s), %d records, %d of them unrelated].",
            decision.reason,
            stats.requests,
            stats.records,
            stats.unrelated,
        )
        if decision.unknown_status:
            self.log.warning("%s", decision.reason)
        partial = coverage_note(search)
        if partial and not self._warned_partial:
            self._warned_partial = True
            self.log.warning("%s", partial)
        return decision

    def poke(self, context: Context) -> bool | PokeReturnValue:
        decision = self._check()
        if decision.outcome is Outcome.FAILURE:
            raise AirflowFailException(f"Opsera {decision.reason}")
        if decision.outcome is Outcome.SUCCESS:
            return PokeReturnValue(is_done=True, xcom_value=decision.record)
        if self.deferrable:
            self._defer()
        return False

    # -- modes -------------------------------------------------------------------------------------------------
    def execute(self, context: Context) -> Any:
        """``BaseSensorOperator.execute`` in every mode, so Airflow alone handles timeouts and its fail flags.

        Deferrable mode checks in the worker first (a run that already finished needs no trigger): its first
        poke that finds the run still waiting defers instead of returning, and ``TaskDeferred`` leaves the
        base class's poke loop untouched.
        """
        self._search = None  # a retry starts with a fresh first look
        self._warned_partial = False
        self._started = time.time()
        return super().execute(context)

    def _defer(self) -> None:
        """Hand the wait to the trigger, with what the checks in the worker learned."""
        search = self._search
        assert search is not None  # only called after a check
        self.defer(
            trigger=OpseraPipelineStatusTrigger(
                **search.watch.to_json(),
                waiting_statuses=self.waiting_statuses,
                failure_statuses=self.failure_statuses,
                success_statuses=self.success_statuses,
                lookback_s=self.lookback_s,
                pipeline_type=search.filters.get("type"),
                opsera_conn_id=self.opsera_conn_id,
                poll_interval=self.poke_interval,
                deadline=(self._started or time.time()) + self.timeout,
                state=search.state.to_json(),
                keep_polling_on_error=self.silent_fail,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) + DEFERRAL_GRACE,
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after the trigger: the record on success; anything else fails (closed)."""
        status = event.get("status") if isinstance(event, dict) else None
        message = str(event.get("message") or "") if isinstance(event, dict) else ""
        if status == "success" and isinstance(event, dict) and isinstance(event.get("record"), dict):
            self.log.info("%s", message)
            return event["record"]
        if status == "failure":
            raise AirflowFailException(f"Opsera {message}")
        if status == "timeout":
            raise AirflowSensorTimeout(message)
        if status == "error":
            if self.never_fail:
                raise AirflowSkipException(f"Skipping due to never_fail is set to True: {message}")
            if isinstance(event, dict) and event.get("error") == "auth":
                # The token was refused: the same error, with the same message, as poke mode raises.
                from airflow_provider_opsera.exceptions import OpseraAuthError

                code = event.get("status_code")
                raise OpseraAuthError(message, status_code=code if isinstance(code, int) else None)
            raise OpseraError(f"Waiting for the Opsera pipeline failed: {message}")
        raise AirflowException(f"Unexpected event from OpseraPipelineStatusTrigger: {event!r:.300}")


__all__ = ["OpseraPipelineStatusSensor"]
