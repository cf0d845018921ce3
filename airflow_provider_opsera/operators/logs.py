"""Operators that extract one data interval of Opsera logs, into object storage or into XCom."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import ObjectStoragePath

from airflow_provider_opsera.catalogue import OpseraLogType, endpoint_for
from airflow_provider_opsera.connection import DEFAULT_CONN_ID
from airflow_provider_opsera.drift import identity
from airflow_provider_opsera.landing import (
    DEFAULT_RECORDS_PER_PART,
    WormSettings,
    iter_landed_records,
    land,
    read_manifest,
    signing_key,
    sse_arguments,
    storage_uri,
)
from airflow_provider_opsera.operators import outlets
from airflow_provider_opsera.operators.base import LineageOutput, OpseraExtractOperator

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow.sdk import Context
    from pendulum import DateTime

    from airflow_provider_opsera.drift import ApiRead, Drift
    from airflow_provider_opsera.hooks.opsera import OpseraHook


class OpseraLogsOperator(OpseraExtractOperator):
    """Extract every Opsera log record of one type created in ``[start, end)`` (the data interval).

    With ``output_path`` (any ``ObjectStoragePath`` URL: ``s3://bucket/prefix/``, ``file:///dir/``, with
    ``output_conn_id`` for its credentials), the records are written byte for byte as the API sent them to
    gzipped NDJSON parts (``part-<run>-00000.ndjson.gz``, ...), then ``manifest.json`` (log type, interval,
    record count, parts with their counts and sha256, provider version, and its place in the folder's revision
    chain: ``revision``, ``previous``, ``reason``; every revision is kept under ``_manifests/``). A rerun of the
    interval replaces the folder's content; a folder with a manifest is always complete, also while runs of the
    same interval overlap (they take turns publishing; see :mod:`airflow_provider_opsera.landing`). The
    manifest is the XCom value and the folder is an outlet asset. Without ``output_path``, the records
    themselves are the XCom value, up to ``max_xcom_records``.

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
    :param worm: land for an S3 bucket with Object Lock: ``{"mode": "COMPLIANCE" | "GOVERNANCE",
        "retain_for": "P7Y", "legal_hold": False}`` (``retain_for`` also a ``timedelta`` or seconds). Every
        object is written with that retention and legal hold; nothing is ever deleted or overwritten.
    :param sse: server-side encryption for every object written to S3, e.g. ``{"ServerSideEncryption":
        "aws:kms", "SSEKMSKeyId": "alias/audit"}``.
    :param signing_conn_id: sign each manifest with HMAC-SHA256; the key is this connection's password (any
        connection type, e.g. ``generic``) and the signature's ``key_id`` is the connection id.
    :param settle: do not read the interval before ``end + settle`` (default 5 minutes); see the shell,
        :class:`~airflow_provider_opsera.operators.base.OpseraExtractOperator`, for ``deferrable``.
    :param recheck: also re-verify the earlier intervals that ended within this span before ``start``, each
        in its own folder (``output_path`` rendered for that interval), comparing with its manifest; needs
        ``output_path``. A drifted interval is landed again as a new revision whose ``reason`` says why
        (``"recheck: late records"``) and which carries the report under ``drift``.
    :param recheck_mode: ``"count"`` or ``"full"`` (ids and ``updatedAt``).
    :param on_drift: ``"reland"``, ``"warn"`` or ``"fail"``. The manifest returned as XCom gains ``"drift"``:
        the report of every earlier interval that drifted.
    """

    template_fields: Sequence[str] = (*OpseraExtractOperator.template_fields, "output_path", "output_conn_id")
    ui_color = "#e3eefc"

    def __init__(
        self,
        *,
        log_type: OpseraLogType | str | None = None,
        opsera_conn_id: str = DEFAULT_CONN_ID,
        start: Any = "{{ data_interval_start }}",
        end: Any = "{{ data_interval_end }}",
        filters: Mapping[str, Any] | None = None,
        output_path: str | ObjectStoragePath | None = None,
        output_conn_id: str | None = None,
        max_xcom_records: int = 1000,
        records_per_part: int = DEFAULT_RECORDS_PER_PART,
        worm: WormSettings | Mapping[str, Any] | None = None,
        sse: Mapping[str, Any] | None = None,
        signing_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            log_type=log_type, opsera_conn_id=opsera_conn_id, start=start, end=end, filters=filters, **kwargs
        )
        self.output_path = output_path
        self.output_conn_id = output_conn_id
        if max_xcom_records < 0:
            raise ValueError(f"max_xcom_records must be 0 or more, not {max_xcom_records}.")
        self.max_xcom_records = max_xcom_records
        if records_per_part < 1:
            raise ValueError(f"records_per_part must be at least 1, not {records_per_part}.")
        self.records_per_part = records_per_part
        WormSettings.coerce(worm)  # checked when the DAG is parsed; used as given
        sse_arguments(sse)
        self.worm = worm
        self.sse = sse
        self.signing_conn_id = signing_conn_id
        if self.recheck is not None and output_path is None:
            raise ValueError("recheck needs output_path: only landed intervals can be re-verified.")
        self._dataset_folder: str | None = None
        if output_path is not None:
            unrendered = str(output_path)
            self._dataset_folder = outlets.dataset_folder(unrendered)
            dag_id = self.dag.dag_id if self.has_dag() else None
            self._declare_outlet(outlets.declare_outlet(unrendered, dag_id, self.task_id))

    # -- run -----------------------------------------------------------------------------------------------
    def _extract(
        self, context: Context, hook: OpseraHook, lo: DateTime, hi: DateTime, filters: dict[str, str]
    ) -> Any:
        if self.output_path is not None:
            return self._land(context, hook, lo, hi, filters)
        return self._to_xcom(hook, lo, hi, filters)

    def _to_xcom(self, hook: OpseraHook, lo: DateTime, hi: DateTime, filters: dict[str, str]) -> list[dict]:
        records: list[dict[str, Any]] = []
        for batch in self._batches(hook, lo, hi, filters, raw=False):
            records.extend(record.payload for record in batch)
            if len(records) > self.max_xcom_records:
                raise ValueError(
                    f"{self._what(lo, hi)} holds more than "
                    f"max_xcom_records={self.max_xcom_records} records, too many for XCom. Set output_path to "
                    "land them in object storage, narrow start/end or filters, or raise max_xcom_records."
                )
        self.log.info("Returning %d %s records through XCom.", len(records), self.log_type.value)
        return records

    def _folder(self) -> ObjectStoragePath:
        return _folder_of(self.output_path, self.output_conn_id)

    def _metadata(
        self, hook: OpseraHook, lo: DateTime, hi: DateTime, filters: dict[str, str]
    ) -> dict[str, Any]:
        return {
            "log_type": self.log_type.value,
            "start": lo.isoformat(),
            "end": hi.isoformat(),
            "filters": filters,
            "source": {"api": hook.settings.base_url, "endpoint": endpoint_for(self.log_type).path},
        }

    def _landing_options(self) -> dict[str, Any]:
        return {
            "records_per_part": self.records_per_part,
            # Level 1: 2.5x less CPU than level 6 for parts about 20% larger (benchmarks/RESULTS.md, W1(b)).
            "compresslevel": 1,
            "worm": self.worm,
            "sse": self.sse,
            "signing_key": signing_key(self.signing_conn_id) if self.signing_conn_id else None,
            "signing_key_id": self.signing_conn_id,
        }

    # -- recheck -------------------------------------------------------------------------------------------
    def _recheck_target(self, fields: dict[str, Any]) -> ObjectStoragePath:
        return _folder_of(fields["output_path"], fields.get("output_conn_id"))

    def _target_name(self, target: Any) -> str:
        return storage_uri(target)

    def _landed_count(
        self, target: Any, start: DateTime, end: DateTime, filters: dict[str, str]
    ) -> int | None:
        manifest = read_manifest(target)
        if manifest is None:
            return None
        landed = (manifest.get("start"), manifest.get("end"))
        if landed != (start.isoformat(), end.isoformat()):
            # e.g. an output_path without the interval in it: one folder, always the newest interval
            self.log.warning(
                "Recheck: %s holds [%s, %s), not [%s, %s): recheck needs a folder per interval "
                "(e.g. dt={{ data_interval_start | ds }} in output_path); skipped.",
                storage_uri(target),
                *landed,
                start.isoformat(),
                end.isoformat(),
            )
            return None
        return int(manifest["record_count"])

    def _landed_versions(
        self, target: Any, start: DateTime, end: DateTime, filters: dict[str, str]
    ) -> dict[str, str | None]:
        return dict(identity(line) for line in iter_landed_records(target, raw=True))

    def _reland(
        self,
        context: Context,
        hook: OpseraHook,
        target: Any,
        start: DateTime,
        end: DateTime,
        filters: dict[str, str],
        read: ApiRead,
        drift: Drift,
    ) -> None:
        manifest = land(
            read.batches(),
            target,
            {**self._metadata(hook, start, end, filters), "drift": drift.to_dict()},
            reason=drift.reason,
            **self._landing_options(),
        )
        self.log.info(
            "Landed %s again: revision %d (%s), %d records.",
            storage_uri(target),
            manifest["revision"],
            manifest["reason"],
            manifest["record_count"],
        )

    def _land(
        self, context: Context, hook: OpseraHook, lo: DateTime, hi: DateTime, filters: dict[str, str]
    ) -> dict[str, Any]:
        folder = self._folder()
        uri = storage_uri(folder)
        what = self._what(lo, hi, uri)
        self.log.info("Landing %s", what)
        progress = self._progress(what)
        started = time.monotonic()

        def payloads() -> Iterator[list[bytes]]:
            for batch in self._batches(hook, lo, hi, filters, raw=True):
                yield [record.payload for record in batch]

        manifest = land(
            payloads(),
            folder,
            self._metadata(hook, lo, hi, filters),
            on_batch=lambda n: progress.add(n, hook.last_stats),
            **self._landing_options(),
        )
        size = sum(p["bytes"] for p in manifest["parts"])
        self.log.info(
            "Landed %d %s records in %d part(s), %s bytes, to %s in %.1fs (%s); manifest.json written last.",
            manifest["record_count"],
            self.log_type.value,
            len(manifest["parts"]),
            f"{size:,}",
            uri,
            time.monotonic() - started,
            progress.summary(hook.last_stats),
        )
        self._set_lineage_output(
            LineageOutput(
                namespace=folder.namespace,
                name=folder.key.rstrip("/") if folder.bucket else folder.path.rstrip("/"),
                fields=self._source_fields(),
                rows=manifest["record_count"],
                size=size,
                files=len(manifest["parts"]),
            )
        )
        self._emit_folder_event(context, uri, manifest)
        return manifest

    def _emit_folder_event(self, context: Context, uri: str, manifest: dict[str, Any]) -> None:
        if self._outlet is None or self._dataset_folder is None:
            return
        root = self._dataset_folder
        if outlets.is_templated(root):
            root = self.render_template(root, context)
        extra = {
            "folder": uri,
            "manifest": f"{uri}/manifest.json",
            "log_type": self.log_type.value,
            "start": manifest["start"],
            "end": manifest["end"],
            "record_count": manifest["record_count"],
        }
        asset = outlets.resolve(self._outlet, str(root), uri)
        self._emit_asset_event(context, asset, extra)
        self.log.info("Asset event for %s: %s", asset.uri, uri)


def _folder_of(path: Any, conn_id: Any) -> ObjectStoragePath:
    """The folder ``output_path`` (and ``output_conn_id``) rendered to."""
    if isinstance(path, ObjectStoragePath):
        return ObjectStoragePath(storage_uri(path), conn_id=conn_id or path.conn_id)
    text = str(path).strip()
    if not text:
        raise ValueError(
            "output_path rendered to an empty string; it must name a folder, e.g. s3://bucket/prefix/."
        )
    return ObjectStoragePath(text, conn_id=conn_id or None)


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
