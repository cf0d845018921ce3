"""Operators that extract one data interval of Opsera logs, into object storage or into XCom."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import Asset, AssetAlias, BaseOperator, ObjectStoragePath

from airflow_provider_opsera.catalogue import OpseraLogType, endpoint_for, validate_filters
from airflow_provider_opsera.hooks.opsera import OpseraHook
from airflow_provider_opsera.landing import DEFAULT_RECORDS_PER_PART, land, storage_uri
from airflow_provider_opsera.operators import outlets
from airflow_provider_opsera.operators.rendering import blank_to_none, rendered_filters, rendered_interval
from airflow_provider_opsera.progress import Progress

if TYPE_CHECKING:
    from airflow.sdk import Context
    from pendulum import DateTime


class OpseraLogsOperator(BaseOperator):
    """Extract every Opsera log record of one type created in ``[start, end)`` (the data interval).

    With ``output_path`` (any ``ObjectStoragePath`` URL: ``s3://bucket/prefix/``, ``file:///dir/``, with
    ``output_conn_id`` for its credentials), the records are written byte for byte as the API sent them to
    gzipped NDJSON parts (``part-00000.ndjson.gz``, ...), then ``manifest.json`` (log type, interval, record
    count, parts with their counts and sha256, provider version). A rerun of the interval replaces the
    folder's content; a folder with a manifest is always complete. The manifest is the XCom value and the
    folder is an outlet asset. Without ``output_path``, the records themselves are the XCom value, up to
    ``max_xcom_records``.

    :param log_type: ``user_activity``, ``audit``, ``token_activity`` or ``pipeline_activity`` (fixed by
        the four subclasses).
    :param opsera_conn_id: the Opsera connection.
    :param start: start of the interval, inclusive (templated; default the data interval's start).
    :param end: end of the interval, exclusive (templated; default the data interval's end).
    :param filters: the endpoint's own query parameters, e.g. ``{"type": "sdlc"}`` (templated).
    :param output_path: the folder to land the records in (templated).
    :param output_conn_id: the connection for ``output_path``'s store (e.g. an ``aws`` connection).
    :param max_xcom_records: most records returned through XCom when there is no ``output_path``.
    :param records_per_part: most records in one part file.
    """

    #: Set by the subclasses that fix the log type.
    fixed_log_type: ClassVar[OpseraLogType | None] = None

    template_fields: Sequence[str] = (
        "start",
        "end",
        "filters",
        "output_path",
        "opsera_conn_id",
        "output_conn_id",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"filters": "json"}
    ui_color = "#e3eefc"

    def __init__(
        self,
        *,
        log_type: OpseraLogType | str | None = None,
        opsera_conn_id: str = OpseraHook.default_conn_name,
        start: Any = "{{ data_interval_start }}",
        end: Any = "{{ data_interval_end }}",
        filters: Mapping[str, Any] | None = None,
        output_path: str | ObjectStoragePath | None = None,
        output_conn_id: str | None = None,
        max_xcom_records: int = 1000,
        records_per_part: int = DEFAULT_RECORDS_PER_PART,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.log_type = self._resolve_log_type(log_type)
        self.opsera_conn_id = opsera_conn_id
        self.start = start
        self.end = end
        if isinstance(filters, Mapping):
            # Keys never come from templates: a wrong one is a DAG import error, not a failed run.
            validate_filters(self.log_type, blank_to_none(filters))
            filters = dict(filters)
        self.filters = filters
        self.output_path = output_path
        self.output_conn_id = output_conn_id
        if max_xcom_records < 0:
            raise ValueError(f"max_xcom_records must be 0 or more, not {max_xcom_records}.")
        self.max_xcom_records = max_xcom_records
        if records_per_part < 1:
            raise ValueError(f"records_per_part must be at least 1, not {records_per_part}.")
        self.records_per_part = records_per_part
        self._outlet: Asset | AssetAlias | None = None
        self._dataset_folder: str | None = None
        if output_path is not None:
            unrendered = str(output_path)
            self._dataset_folder = outlets.dataset_folder(unrendered)
            dag_id = self.dag.dag_id if self.has_dag() else None
            self._outlet = outlets.declare_outlet(unrendered, dag_id, self.task_id)
            self.outlets = [*self.outlets, self._outlet]
        self._lineage: dict[str, Any] = {}

    @classmethod
    def _resolve_log_type(cls, log_type: OpseraLogType | str | None) -> str:
        if cls.fixed_log_type is not None:
            if log_type is not None and endpoint_for(log_type).log_type is not cls.fixed_log_type:
                raise ValueError(
                    f"{cls.__name__} always reads {cls.fixed_log_type.value} logs, not {log_type!r}."
                )
            return cls.fixed_log_type.value
        if log_type is None:
            allowed = ", ".join(t.value for t in OpseraLogType)
            raise ValueError(f"{cls.__name__} needs log_type: one of {allowed}.")
        return endpoint_for(log_type).log_type.value

    # -- run -----------------------------------------------------------------------------------------------
    def execute(self, context: Context) -> Any:
        lo, hi = self._interval()
        filters = validate_filters(self.log_type, self._rendered_filters())
        hook = OpseraHook(opsera_conn_id=self.opsera_conn_id)
        self._lineage = {"api": hook.settings.base_url}
        try:
            if self.output_path is not None:
                return self._land(context, hook, lo, hi, filters)
            return self._to_xcom(hook, lo, hi, filters)
        finally:
            hook.close()

    def _interval(self) -> tuple[DateTime, DateTime]:
        return rendered_interval(self.start, self.end)

    def _rendered_filters(self) -> dict[str, Any] | None:
        return rendered_filters(self.filters)

    def _batches(self, hook: OpseraHook, lo: DateTime, hi: DateTime, filters: dict[str, str], raw: bool):
        return hook.iter_log_batches(self.log_type, lo, hi, filters, raw=raw)

    def _to_xcom(self, hook: OpseraHook, lo: DateTime, hi: DateTime, filters: dict[str, str]) -> list[dict]:
        records: list[dict[str, Any]] = []
        for batch in self._batches(hook, lo, hi, filters, raw=False):
            records.extend(record.payload for record in batch)
            if len(records) > self.max_xcom_records:
                raise ValueError(
                    f"Opsera {self.log_type} [{lo.isoformat()}, {hi.isoformat()}) holds more than "
                    f"max_xcom_records={self.max_xcom_records} records, too many for XCom. Set output_path to "
                    "land them in object storage, narrow start/end or filters, or raise max_xcom_records."
                )
        self.log.info("Returning %d %s records through XCom.", len(records), self.log_type)
        return records

    def _folder(self) -> ObjectStoragePath:
        if isinstance(self.output_path, ObjectStoragePath):
            conn_id = self.output_conn_id or self.output_path.conn_id
            return ObjectStoragePath(storage_uri(self.output_path), conn_id=conn_id)
        path = str(self.output_path).strip()
        if not path:
            raise ValueError(
                "output_path rendered to an empty string; it must name a folder, e.g. s3://bucket/prefix/."
            )
        return ObjectStoragePath(path, conn_id=self.output_conn_id or None)

    def _land(
        self, context: Context, hook: OpseraHook, lo: DateTime, hi: DateTime, filters: dict[str, str]
    ) -> dict[str, Any]:
        folder = self._folder()
        uri = storage_uri(folder)
        endpoint = endpoint_for(self.log_type)
        what = f"Opsera {self.log_type} [{lo.isoformat()}, {hi.isoformat()}) -> {uri}"
        self.log.info("Landing %s", what)
        progress = Progress(self.log, what)
        started = time.monotonic()

        def payloads() -> Iterator[list[bytes]]:
            for batch in self._batches(hook, lo, hi, filters, raw=True):
                yield [record.payload for record in batch]

        manifest = land(
            payloads(),
            folder,
            {
                "log_type": self.log_type,
                "start": lo.isoformat(),
                "end": hi.isoformat(),
                "filters": filters,
                "source": {"api": hook.settings.base_url, "endpoint": endpoint.path},
            },
            records_per_part=self.records_per_part,
            # Level 1: 2.5x less CPU than level 6 for parts about 20% larger (benchmarks/RESULTS.md, W1(b)).
            compresslevel=1,
            on_batch=lambda n: progress.add(n, hook.last_stats),
        )
        self.log.info(
            "Landed %d %s records in %d part(s), %s bytes, to %s in %.1fs (%s); manifest.json written last.",
            manifest["record_count"],
            self.log_type,
            len(manifest["parts"]),
            f"{sum(p['bytes'] for p in manifest['parts']):,}",
            uri,
            time.monotonic() - started,
            progress.summary(hook.last_stats),
        )
        self._lineage.update(folder=folder, manifest=manifest)
        self._emit_asset_event(context, uri, manifest)
        return manifest

    def _emit_asset_event(self, context: Context, uri: str, manifest: dict[str, Any]) -> None:
        if self._outlet is None or self._dataset_folder is None:
            return
        root = self._dataset_folder
        if outlets.is_templated(root):
            root = self.render_template(root, context)
        extra = {
            "folder": uri,
            "manifest": f"{uri}/manifest.json",
            "log_type": self.log_type,
            "start": manifest["start"],
            "end": manifest["end"],
            "record_count": manifest["record_count"],
        }
        asset = outlets.emit(context, self._outlet, str(root), uri, extra)
        self.log.info("Asset event for %s: %s", asset.uri, uri)

    # -- lineage -------------------------------------------------------------------------------------------
    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the Opsera endpoint as input, the landed folder as output (OpenLineage is optional)."""
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
        endpoint = endpoint_for(self.log_type)
        fields = {"_id": "text", "createdAt": "timestamptz", **endpoint.fields}
        schema = SchemaDatasetFacet(
            fields=[SchemaDatasetFacetFields(name=k, type=v) for k, v in fields.items()]
        )
        api = self._lineage.get("api") or "https://app.opsera.io"
        inputs = [Dataset(namespace=api, name=endpoint.path, facets={"schema": schema})]
        outputs = []
        folder: ObjectStoragePath | None = self._lineage.get("folder")
        manifest: dict[str, Any] | None = self._lineage.get("manifest")
        if folder is not None and manifest is not None:
            name = folder.key.rstrip("/") if folder.bucket else folder.path.rstrip("/")
            stats = OutputStatisticsOutputDatasetFacet(
                rowCount=manifest["record_count"],
                size=sum(p["bytes"] for p in manifest["parts"]),
                fileCount=len(manifest["parts"]),
            )
            outputs.append(
                OutputDataset(
                    namespace=folder.namespace,
                    name=name,
                    facets={"schema": schema},
                    outputFacets={"outputStatistics": stats},
                )
            )
        return OperatorLineage(inputs=inputs, outputs=outputs)


class OpseraUserActivityLogsOperator(OpseraLogsOperator):
    """User activity logs (``GET /api/v1/logs/user/actions``); see :class:`OpseraLogsOperator`."""

    fixed_log_type = OpseraLogType.USER_ACTIVITY


class OpseraAuditLogsOperator(OpseraLogsOperator):
    """Audit logs (``GET /api/v2/logs/audit/user``); see :class:`OpseraLogsOperator`."""

    fixed_log_type = OpseraLogType.AUDIT


class OpseraTokenActivityLogsOperator(OpseraLogsOperator):
    """Token activity logs (``GET /api/v1/logs/user/tokens``); see :class:`OpseraLogsOperator`."""

    fixed_log_type = OpseraLogType.TOKEN_ACTIVITY


class OpseraPipelineActivityLogsOperator(OpseraLogsOperator):
    """Pipeline activity logs (``GET /api/v1/logs/pipelines``); see :class:`OpseraLogsOperator`."""

    fixed_log_type = OpseraLogType.PIPELINE_ACTIVITY
