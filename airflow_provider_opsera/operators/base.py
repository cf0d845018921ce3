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

A sink (object storage, XCom, Postgres) adds its own parameters and implements :meth:`_extract`: stream
:meth:`_batches` into the sink, then :meth:`_emit_asset_event` and :meth:`_set_lineage_output`. Whatever
concerns every interval whatever its sink (when it may be read, re-verifying earlier ones) belongs here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import Asset, AssetAlias, BaseOperator

from airflow_provider_opsera.catalogue import OpseraLogType, endpoint_for, validate_filters
from airflow_provider_opsera.connection import DEFAULT_API_URL, DEFAULT_CONN_ID
from airflow_provider_opsera.hooks.opsera import OpseraHook
from airflow_provider_opsera.operators import outlets
from airflow_provider_opsera.operators.rendering import blank_to_none, rendered_filters, rendered_interval
from airflow_provider_opsera.progress import Progress

if TYPE_CHECKING:
    from airflow.sdk import Context
    from pendulum import DateTime

    from airflow_provider_opsera.responses import Record


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
    def execute(self, context: Context) -> Any:
        lo, hi = self._interval()
        filters = self._rendered_filters()
        with self._opsera_hook() as hook:
            return self._extract(context, hook, lo, hi, filters)

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
            outlets.record(context, self._outlet, asset, extra)

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
