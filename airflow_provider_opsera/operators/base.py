"""The shell both extract operators share: one data interval of one Opsera log type, streamed to a sink.

:class:`OpseraExtractOperator` owns everything that does not depend on where the records go:

- the common parameters (``log_type``, ``opsera_conn_id``, ``start``, ``end``, ``filters``), their templating,
  and the checks that can run when the DAG is parsed (the log type, the filter keys);
- the run's frame: render the interval and filters (:mod:`.rendering`, so every sink gives the same advice),
  open the hook, hand the sink one interval, close the hook;
- the outlet it declares and the asset event it records (:mod:`.outlets`);
- progress lines while records flow (:mod:`airflow_provider_opsera.progress`);
- OpenLineage: the Opsera endpoint as input (with its schema), what the sink wrote as output (with its schema
  and output statistics). The OpenLineage provider is optional: nothing imports it until lineage is asked for,
  and without it there is no lineage (``None``).

- completeness over time (:mod:`airflow_provider_opsera.drift`): ``settle`` (no interval is read before
  ``end + settle``: a run that starts earlier defers on Airflow's ``DateTimeTrigger`` when ``deferrable``, else
  sleeps), and ``recheck`` (after its own interval, each run re-verifies the earlier intervals that ended
  within ``recheck`` before ``start``, and re-lands, warns or fails on drift, by ``on_drift``). The earlier
  intervals are the DAG's timetable's, and each one's templated fields (its folder, its filters, ...) are the
  task's own templates rendered again with that interval's data interval, logical date and ``ds``.

A sink (object storage, XCom, Postgres) adds its own parameters and implements :meth:`_extract`: stream
:meth:`_batches` into the sink, then :meth:`_emit_asset_event` and :meth:`_set_lineage_output`. For
``recheck`` it also implements :meth:`_recheck_target`, :meth:`_landed_count`, :meth:`_landed_versions`,
:meth:`_reland` and :meth:`_with_drift`. Whatever concerns every interval whatever its sink belongs here.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast

import pendulum
from airflow.sdk import Asset, AssetAlias, BaseOperator

from airflow_provider_opsera import drift as drifts
from airflow_provider_opsera.catalogue import OpseraLogType, endpoint_for, validate_filters
from airflow_provider_opsera.compat import AirflowFailException, DateTimeTrigger, conf
from airflow_provider_opsera.connection import DEFAULT_API_URL, DEFAULT_CONN_ID
from airflow_provider_opsera.hooks.opsera import OpseraHook
from airflow_provider_opsera.operators import outlets
from airflow_provider_opsera.operators.rendering import blank_to_none, rendered_filters, rendered_interval
from airflow_provider_opsera.progress import Progress

if TYPE_CHECKING:
    from airflow.sdk import Context
    from pendulum import DateTime

    from airflow_provider_opsera.responses import Record

#: ``settle`` unless the DAG says otherwise: records persisted up to a few minutes after their ``createdAt``
#: (and a few minutes of clock skew between Airflow and the API) are read by the interval's own run, for a few
#: minutes of latency; records later than that are ``recheck``'s job.
DEFAULT_SETTLE = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class LineageOutput:
    """What a sink wrote, as OpenLineage names it: the dataset, its columns and its output statistics."""

    namespace: str
    name: str
    #: column name -> type, for the schema facet.
    fields: Mapping[str, str]
    rows: int
    size: int | None = None
    files: int | None = None


class OpseraExtractOperator(BaseOperator):
    """The shared shell of the operators that extract one data interval of Opsera logs to a sink.

    Not used directly: see :class:`~airflow_provider_opsera.operators.logs.OpseraLogsOperator` and
    :class:`~airflow_provider_opsera.transfers.postgres.OpseraLogsToPostgresOperator`.

    :param log_type: ``user_activity``, ``audit``, ``token_activity`` or ``pipeline_activity`` (fixed by
        subclasses that set :attr:`fixed_log_type`).
    :param opsera_conn_id: the Opsera connection. Templated.
    :param start: start of the interval, inclusive (templated; default the data interval's start).
    :param end: end of the interval, exclusive (templated; default the data interval's end).
    :param filters: the endpoint's own query parameters, e.g. ``{"type": "sdlc"}`` (templated values; the
        keys are checked when the DAG is parsed).
    :param settle: do not read the interval before ``end + settle`` (a ``timedelta``, seconds, or an ISO 8601
        duration; default 5 minutes). A run that starts earlier defers until then (``deferrable``) or sleeps.
    :param recheck: also re-verify the intervals that ended within this span before ``start`` (same types;
        ``None``, the default: no recheck), and handle those that drifted by ``on_drift``.
    :param recheck_mode: ``"count"`` (default: compare counts, ids only when they differ; v2 counts cost
        three small requests an interval, v1 intervals are read through their proof) or ``"full"`` (re-read
        every earlier interval and compare ids and ``updatedAt``: also finds records updated in place).
    :param on_drift: ``"reland"`` (default: land the interval again, as the API has it now), ``"warn"``
        (report only) or ``"fail"`` (report, then fail the task once its own interval is landed).
    :param deferrable: wait for ``settle`` in the triggerer (no worker slot held); default
        ``[operators] default_deferrable``.
    """

    #: Set by the subclasses that fix the log type.
    fixed_log_type: ClassVar[OpseraLogType | None] = None

    #: The common parameters' template fields; each sink adds its own after these.
    template_fields: Sequence[str] = ("start", "end", "filters", "opsera_conn_id")
    template_fields_renderers: ClassVar[dict[str, str]] = {"filters": "json"}

    def __init__(
        self,
        *,
        log_type: OpseraLogType | str | None = None,
        opsera_conn_id: str = DEFAULT_CONN_ID,
        start: Any = "{{ data_interval_start }}",
        end: Any = "{{ data_interval_end }}",
        filters: Mapping[str, Any] | None = None,
        settle: Any = DEFAULT_SETTLE,
        recheck: Any = None,
        recheck_mode: str = "count",
        on_drift: str = "reland",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # Fail when the DAG is parsed, not when it runs, for what can be checked then.
        self.log_type: OpseraLogType = self._resolve_log_type(log_type)
        self.opsera_conn_id = opsera_conn_id
        self.start = start
        self.end = end
        if isinstance(filters, Mapping):
            # Keys never come from templates: a wrong one is a DAG import error, not a failed run.
            validate_filters(self.log_type, blank_to_none(filters))
            filters = dict(filters)
        self.filters = filters
        self.settle: dt.timedelta = drifts.as_duration(settle, "settle") or dt.timedelta(0)
        self.recheck = drifts.as_duration(recheck, "recheck", allow_none=True)
        if recheck_mode not in drifts.RECHECK_MODES:
            raise ValueError(
                f"recheck_mode must be one of {', '.join(drifts.RECHECK_MODES)}, not {recheck_mode!r}."
            )
        if on_drift not in drifts.ON_DRIFT:
            raise ValueError(f"on_drift must be one of {', '.join(drifts.ON_DRIFT)}, not {on_drift!r}.")
        self.recheck_mode = recheck_mode
        self.on_drift = on_drift
        self.deferrable = deferrable
        #: The template fields as written, kept when they are rendered: an earlier interval's are rendered again.
        self._templates: dict[str, Any] | None = None
        self._outlet: Asset | AssetAlias | None = None
        self._lineage_api: str | None = None
        self._lineage_output: LineageOutput | None = None

    @classmethod
    def _resolve_log_type(cls, log_type: OpseraLogType | str | None) -> OpseraLogType:
        if cls.fixed_log_type is not None:
            if log_type is not None and endpoint_for(log_type).log_type is not cls.fixed_log_type:
                raise ValueError(
                    f"{cls.__name__} always reads {cls.fixed_log_type.value} logs, not {log_type!r}."
                )
            return cls.fixed_log_type
        if log_type is None:
            allowed = ", ".join(t.value for t in OpseraLogType)
            raise ValueError(f"{cls.__name__} needs log_type: one of {allowed}.")
        return endpoint_for(log_type).log_type

    # -- run -----------------------------------------------------------------------------------------------
    def render_template_fields(self, context: Context, jinja_env: Any = None) -> None:
        if self._templates is None:  # the fields as written (a second rendering would see rendered values)
            self._templates = {name: getattr(self, name) for name in self.template_fields}
        super().render_template_fields(context, jinja_env)

    def execute(self, context: Context) -> Any:
        lo, hi = self._interval()
        self._settle(hi)
        filters = self._rendered_filters()
        with self._opsera_hook() as hook:
            result = self._extract(context, hook, lo, hi, filters)
            if self.recheck is not None:
                found = self._recheck(context, hook, lo, hi)
                result = self._with_drift(result, [d.to_dict() for d in found])
                if found and self.on_drift == "fail":
                    raise AirflowFailException(
                        f"{len(found)} earlier interval(s) drifted (on_drift='fail'): "
                        + "; ".join(d.describe() for d in found)
                    )
        return result

    def execute_complete(self, context: Context, event: Any = None) -> Any:
        """Back from the settle deferral: the interval may be read now."""
        return self.execute(context)

    def _settle(self, end: DateTime) -> None:
        """Defer (or, not deferrable, sleep) until ``end + settle``."""
        ready = end + self.settle
        now = pendulum.now("UTC")
        if now >= ready:
            return
        wait = (ready - now).total_seconds()
        if self.deferrable:
            self.log.info("Waiting %.0fs for the interval to settle (until %s), deferred.", wait, ready)
            self.defer(trigger=DateTimeTrigger(ready), method_name="execute_complete")
        self.log.info("Waiting %.0fs for the interval to settle (until %s).", wait, ready)
        time.sleep(wait)

    def _extract(
        self, context: Context, hook: OpseraHook, lo: DateTime, hi: DateTime, filters: dict[str, str]
    ) -> Any:
        """Stream ``[lo, hi)`` into the sink; the return value is the task's XCom value."""
        raise NotImplementedError

    def _interval(self) -> tuple[DateTime, DateTime]:
        return rendered_interval(self.start, self.end)

    def _rendered_filters(self) -> dict[str, str]:
        return validate_filters(self.log_type, rendered_filters(self.filters))

    @contextmanager
    def _opsera_hook(self) -> Iterator[OpseraHook]:
        hook = OpseraHook(opsera_conn_id=self.opsera_conn_id)
        self._lineage_api = hook.settings.base_url
        try:
            yield hook
        finally:
            hook.close()

    def _batches(
        self, hook: OpseraHook, lo: DateTime, hi: DateTime, filters: dict[str, str], *, raw: bool
    ) -> Iterator[list[Record]]:
        return hook.iter_log_batches(self.log_type, lo, hi, filters, raw=raw)

    # -- recheck -------------------------------------------------------------------------------------------
    def _recheck(self, context: Context, hook: OpseraHook, lo: DateTime, hi: DateTime) -> list[drifts.Drift]:
        """Re-verify the intervals that ended within ``recheck`` before ``lo``; the ones that drifted."""
        assert self.recheck is not None
        timetable = None
        if (context.get("data_interval_start"), context.get("data_interval_end")) == (lo, hi):
            timetable = getattr(
                context.get("dag") or (self.dag if self.has_dag() else None), "timetable", None
            )
        intervals = drifts.earlier_intervals(lo, hi, self.recheck, timetable)
        found: list[drifts.Drift] = []
        for start, end in intervals:
            fields = self._fields_for(context, start, end)
            filters = validate_filters(self.log_type, rendered_filters(fields.get("filters")))
            drift = self._recheck_interval(context, hook, start, end, filters, fields)
            if drift is not None:
                found.append(drift)
        self.log.info(
            "Rechecked %d earlier interval(s) of %s (%s): %d drifted.",
            len(intervals),
            self.log_type.value,
            self.recheck_mode,
            len(found),
        )
        return found

    def _recheck_interval(
        self,
        context: Context,
        hook: OpseraHook,
        start: DateTime,
        end: DateTime,
        filters: dict[str, str],
        fields: dict[str, Any],
    ) -> drifts.Drift | None:
        target = self._recheck_target(fields)
        what = self._what(start, end, self._target_name(target))
        landed = self._landed_count(target, start, end, filters)
        if landed is None:
            self.log.info("Recheck: %s was never landed; its own run lands it.", what)
            return None
        full = self.recheck_mode == "full"
        if not full:
            now = drifts.api_count(hook, self.log_type.value, start, end, filters)
            if now == landed:
                self.log.info("Recheck: %s holds %d records, as the API does now.", what, landed)
                return None
        read = drifts.read_api(hook, self.log_type.value, start, end, filters)
        try:
            if not full and len(read.versions) == landed:
                self.log.info("Recheck: %s holds %d records, as the API does now.", what, landed)
                return None
            before = self._landed_versions(target, start, end, filters)
            added, removed, changed = drifts.compare(before, read.versions, updates=full)
            if not (added or removed or changed):
                self.log.info("Recheck: %s matches the API (%d records).", what, landed)
                return None
            drift = drifts.Drift(
                start=start.isoformat(),
                end=end.isoformat(),
                target=self._target_name(target),
                before=landed,
                after=len(read.versions),
                added=added,
                removed=removed,
                changed=changed,
            )
            if self.on_drift == "reland":
                drift.action = "relanded"
                self.log.warning("Recheck: drift in %s; landing it again.", drift.describe())
                self._reland(context, hook, target, start, end, filters, read, drift)
            else:
                drift.action = "failed" if self.on_drift == "fail" else "warned"
                self.log.warning("Recheck: drift in %s (on_drift=%r).", drift.describe(), self.on_drift)
            return drift
        finally:
            read.close()

    def _fields_for(self, context: Context, start: DateTime, end: DateTime) -> dict[str, Any]:
        """The template fields for the interval ``[start, end)``: the task's templates rendered with that
        interval's data interval, logical date and the dates derived from it (``ds``, ``ts``, ...)."""
        if self._templates is None or context.get("data_interval_start") is None:
            return {name: getattr(self, name) for name in self.template_fields}
        shifted = shifted_context(context, start, end)
        return {
            name: self.render_template(value, cast("Context", shifted))
            for name, value in self._templates.items()
        }

    def _recheck_target(self, fields: dict[str, Any]) -> Any:
        """Where the sink landed the interval whose template fields are ``fields``."""
        raise NotImplementedError(f"{type(self).__name__} cannot recheck")

    def _target_name(self, target: Any) -> str:
        return str(target)

    def _landed_count(
        self, target: Any, start: DateTime, end: DateTime, filters: dict[str, str]
    ) -> int | None:
        """How many records the sink holds for the interval; None when it was never landed."""
        raise NotImplementedError

    def _landed_versions(
        self, target: Any, start: DateTime, end: DateTime, filters: dict[str, str]
    ) -> dict[str, str | None]:
        """The landed records of the interval: ``_id -> updatedAt``."""
        raise NotImplementedError

    def _reland(
        self,
        context: Context,
        hook: OpseraHook,
        target: Any,
        start: DateTime,
        end: DateTime,
        filters: dict[str, str],
        read: drifts.ApiRead,
        drift: drifts.Drift,
    ) -> None:
        """Land the interval again from ``read`` (the API now), recording ``drift`` where the sink can."""
        raise NotImplementedError

    def _with_drift(self, result: Any, drift: list[dict[str, Any]]) -> Any:
        """The XCom value with the drift report under ``"drift"``."""
        return {**result, "drift": drift}

    # -- progress ------------------------------------------------------------------------------------------
    def _what(self, lo: DateTime, hi: DateTime, target: str | None = None) -> str:
        """``Opsera audit [start, end) -> target``: how log lines and errors name this run's work."""
        what = f"Opsera {self.log_type.value} [{lo.isoformat()}, {hi.isoformat()})"
        return f"{what} -> {target}" if target is not None else what

    def _progress(self, what: str) -> Progress:
        """Progress lines for ``what``: the sink calls ``add(n, hook.last_stats)`` after each batch it wrote."""
        return Progress(self.log, what)

    # -- outlets -------------------------------------------------------------------------------------------
    def _declare_outlet(self, outlet: Asset | AssetAlias) -> Asset | AssetAlias:
        """Add ``outlet`` to the task's outlets: the asset, or the alias resolved when the task runs."""
        self._outlet = outlet
        self.outlets = [*self.outlets, outlet]
        return outlet

    def _asset_alias(self) -> AssetAlias:
        """The alias for an outlet known only at run time: ``opsera:<dag_id>.<task_id>``."""
        dag_id = self.dag.dag_id if self.has_dag() else None
        return AssetAlias(name=outlets.alias_name(dag_id, self.task_id))

    def _emit_asset_event(self, context: Context, asset: Asset, extra: dict[str, Any]) -> None:
        """Record this run's asset event for ``asset`` through the declared outlet."""
        if self._outlet is not None:
            outlets.record(context, self._outlet, asset, extra, self.log)

    # -- lineage -------------------------------------------------------------------------------------------
    def _set_lineage_output(self, output: LineageOutput) -> None:
        self._lineage_output = output

    def _source_fields(self) -> dict[str, str]:
        """The endpoint's record fields and their types, as the input dataset's schema facet names them."""
        return {"_id": "text", "createdAt": "timestamptz", **endpoint_for(self.log_type).fields}

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the Opsera endpoint as input, what the sink wrote as output (OpenLineage is optional)."""
        try:
            from airflow.providers.common.compat.openlineage.facet import (
                Dataset,
                OutputDataset,
                OutputStatisticsOutputDatasetFacet,
                SchemaDatasetFacet,
                SchemaDatasetFacetFields,
            )
            from airflow.providers.openlineage.extractors import OperatorLineage
        except ImportError:  # the OpenLineage provider is not installed: nothing asks for lineage
            return None

        def schema(fields: Mapping[str, str]) -> Any:
            return SchemaDatasetFacet(
                fields=[SchemaDatasetFacetFields(name=k, type=v) for k, v in fields.items()]
            )

        api = self._lineage_api or DEFAULT_API_URL
        path = endpoint_for(self.log_type).path
        inputs = [Dataset(namespace=api, name=path, facets={"schema": schema(self._source_fields())})]
        outputs = []
        written = self._lineage_output
        if written is not None:
            stats = OutputStatisticsOutputDatasetFacet(
                rowCount=written.rows, size=written.size, fileCount=written.files
            )
            outputs.append(
                OutputDataset(
                    namespace=written.namespace,
                    name=written.name,
                    facets={"schema": schema(written.fields)},
                    outputFacets={"outputStatistics": stats},
                )
            )
        return OperatorLineage(inputs=inputs, outputs=outputs)


def shifted_context(context: Context, start: DateTime, end: DateTime) -> dict[str, Any]:
    """``context`` as a run of the interval ``[start, end)`` would see it: its data interval, and the logical
    date moved by as much as the interval (with ``ds``, ``ds_nodash``, ``ts``, ... derived from it)."""
    shifted: dict[str, Any] = dict(context)
    current = context["data_interval_start"]
    delta = start - current if current is not None else dt.timedelta(0)
    shifted["data_interval_start"], shifted["data_interval_end"] = start, end
    logical = context.get("logical_date")
    if logical is not None:
        logical = logical + delta
        ts = logical.isoformat()
        shifted.update(
            logical_date=logical,
            ds=logical.strftime("%Y-%m-%d"),
            ds_nodash=logical.strftime("%Y%m%d"),
            ts=ts,
            ts_nodash=logical.strftime("%Y%m%dT%H%M%S"),
            ts_nodash_with_tz=ts.replace("-", "").replace(":", ""),
        )
    return shifted
