"""``OpseraLogsToPostgresOperator``: one data interval of an Opsera log type, upserted into a Postgres table."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset

from airflow_provider_opsera.catalogue import OpseraLogType
from airflow_provider_opsera.connection import DEFAULT_CONN_ID
from airflow_provider_opsera.operators.base import LineageOutput, OpseraExtractOperator
from airflow_provider_opsera.progress import Progress
from airflow_provider_opsera.transfers.postgres import recheck
from airflow_provider_opsera.transfers.postgres.load import LoadResult, load_records
from airflow_provider_opsera.transfers.postgres.rows import ON_TYPE_MISMATCH, RowMapper
from airflow_provider_opsera.transfers.postgres.table import default_table

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow.sdk import Context
    from pendulum import DateTime

    from airflow_provider_opsera.drift import ApiRead, Drift
    from airflow_provider_opsera.hooks.opsera import OpseraHook


def _server(host: str | None, port: int | None, database: str | None) -> tuple[str, str]:
    """``host:port`` and the database, with the postgres provider's defaults for what the connection omits."""
    return f"{host or 'localhost'}:{port or 5432}", database or "postgres"


def postgres_asset_uri(
    host: str | None, port: int | None, database: str | None, schema: str, table: str
) -> str:
    """The table's URI in the postgres provider's asset scheme: ``postgres://host:port/database/schema/table``."""
    server, database = _server(host, port, database)
    return f"postgres://{server}/{database}/{schema}/{table}"


class OpseraLogsToPostgresOperator(OpseraExtractOperator):
    """Load one data interval of an Opsera log type into a Postgres table, idempotently.

    The table (default ``opsera_<log_type>_logs`` in ``public``) is created if missing: ``_id text primary
    key``, ``created_at timestamptz not null``, one typed column per documented field of the log type
    (``user_email text``, ``run_count integer``, ``step_configuration jsonb``, ...), ``raw jsonb not null``
    holding the whole record as the API sent it (fields the API adds later are kept there), and
    ``loaded_at``; with an index on ``created_at`` (and ``pipeline_id, run_count`` for pipeline activity,
    ``user_id, created_at`` for the others).

    Records stream from the API through ``COPY ... FROM STDIN`` into a temporary table, then one
    ``INSERT ... ON CONFLICT (_id) DO UPDATE`` moves them into the table, all in one transaction: a failure
    anywhere (API error, bad record, lost connection) leaves the table exactly as it was, and a rerun of the
    same interval (or an overlapping one) leaves each ``_id`` once. Rows whose content did not change are not
    rewritten.

    :param log_type: ``user_activity``, ``audit``, ``token_activity`` or ``pipeline_activity``.
    :param opsera_conn_id: the Opsera connection.
    :param postgres_conn_id: the Postgres connection (used through ``PostgresHook``).
    :param table: target table; default ``opsera_<log_type>_logs``. Templated.
    :param schema: target schema, created if missing. Templated.
    :param start: start of the interval (inclusive); default the data interval's start. Templated.
    :param end: end of the interval (exclusive); default the data interval's end. Templated.
    :param filters: the endpoint's own filters (e.g. ``{"type": "sdlc"}``). Templated.
    :param on_type_mismatch: what a documented field with an unexpected type does: ``"fail"`` (default; the
        error names the record's ``_id`` and the field) or ``"raw_only"`` (its column is NULL, the value stays
        in ``raw``, and the task log counts such values).
    :param settle: do not read the interval before ``end + settle`` (default 5 minutes; see
        :class:`~airflow_provider_opsera.operators.base.OpseraExtractOperator`, also for ``deferrable``).
    :param recheck: also re-verify the earlier intervals that ended within this span before ``start``: the
        API's count (``recheck_mode="count"``) or its ids and ``updatedAt`` (``"full"``) against the table's
        rows of that interval (``created_at`` in it, matching ``filters``). A drifted interval is upserted
        again (``on_drift="reland"``): late records are inserted, updated ones rewritten; rows the API no
        longer holds are reported, never deleted.
    :param on_drift: ``"reland"``, ``"warn"`` or ``"fail"``; the XCom value gains ``"drift"``.

    Returns ``{"rows": n, "table": "schema.table", "inserted": i, "updated": u}`` (and ``"drift"``, with
    ``recheck``). Emits an asset event for
    ``postgres://host:port/database/schema/table`` through the asset alias :attr:`asset_alias` (the host is
    only known from the connection at run time), and reports the same table, with its columns and row count,
    as its OpenLineage output.
    """

    template_fields: Sequence[str] = (
        *OpseraExtractOperator.template_fields,
        "table",
        "schema",
        "postgres_conn_id",
    )
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        log_type: OpseraLogType | str,
        opsera_conn_id: str = DEFAULT_CONN_ID,
        postgres_conn_id: str = "postgres_default",
        table: str | None = None,
        schema: str = "public",
        start: Any = "{{ data_interval_start }}",
        end: Any = "{{ data_interval_end }}",
        filters: Mapping[str, Any] | None = None,
        on_type_mismatch: str = "fail",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            log_type=log_type, opsera_conn_id=opsera_conn_id, start=start, end=end, filters=filters, **kwargs
        )
        if on_type_mismatch not in ON_TYPE_MISMATCH:
            raise ValueError(
                f"on_type_mismatch must be one of {', '.join(ON_TYPE_MISMATCH)}, not {on_type_mismatch!r}."
            )
        self.postgres_conn_id = postgres_conn_id
        self.table = table or default_table(self.log_type)
        self.schema = schema
        self.on_type_mismatch = on_type_mismatch
        # The table's asset URI needs the connection's host and database, known only when the task runs.
        self.asset_alias = self._declare_outlet(self._asset_alias())

    def _extract(
        self, context: Context, hook: OpseraHook, lo: DateTime, hi: DateTime, filters: dict[str, str]
    ) -> dict[str, Any]:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        schema, table = _identifier(self.schema, "schema"), _identifier(self.table, "table")
        postgres = PostgresHook(postgres_conn_id=self.postgres_conn_id)
        mapper = RowMapper(self.log_type, self.on_type_mismatch)
        what = self._what(lo, hi, f"{schema}.{table}")
        progress = self._progress(what)
        self.log.info("Loading %s.", what)

        batches = self._batches(hook, lo, hi, filters, raw=True)
        try:
            with closing(postgres.get_conn()) as conn:
                result = load_records(
                    conn,
                    mapper,
                    batches,
                    schema,
                    table,
                    on_batch=lambda n: progress.add(n, hook.last_stats),
                )
        finally:
            batches.close()  # type: ignore[attr-defined]  # a generator: stops the extraction's threads
        self._report(what, result, mapper, progress, hook)

        connection = postgres.connection
        database = postgres.database or connection.schema or connection.login
        server, database = _server(connection.host, connection.port, database)
        fields = {c.name: c.sql_type for c in mapper.layout.columns}
        fields["loaded_at"] = "timestamptz"
        self._set_lineage_output(
            LineageOutput(
                namespace=f"postgres://{server}",
                name=f"{database}.{schema}.{table}",
                fields=fields,
                rows=result.rows,
            )
        )
        extra: dict[str, Any] = {
            "rows": result.rows,
            "start": lo.isoformat(),
            "end": hi.isoformat(),
            "log_type": self.log_type.value,
        }
        uri = postgres_asset_uri(connection.host, connection.port, database, schema, table)
        self._emit_asset_event(context, Asset(uri=uri), extra)
        return {
            "rows": result.rows,
            "table": f"{schema}.{table}",
            "inserted": result.inserted,
            "updated": result.updated,
        }

    # -- recheck -------------------------------------------------------------------------------------------
    def _recheck_target(self, fields: dict[str, Any]) -> tuple[str, str, str]:
        schema = _identifier(fields.get("schema", self.schema), "schema")
        table = _identifier(fields.get("table", self.table), "table")
        return schema, table, str(fields.get("postgres_conn_id") or self.postgres_conn_id)

    def _target_name(self, target: Any) -> str:
        return f"{target[0]}.{target[1]}"

    def _connect(self, target: Any) -> Any:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        return closing(PostgresHook(postgres_conn_id=target[2]).get_conn())

    def _landed_count(
        self, target: Any, start: DateTime, end: DateTime, filters: dict[str, str]
    ) -> int | None:
        with self._connect(target) as conn:
            return recheck.landed_count(conn, target[0], target[1], start, end, filters)

    def _landed_versions(
        self, target: Any, start: DateTime, end: DateTime, filters: dict[str, str]
    ) -> dict[str, str | None]:
        with self._connect(target) as conn:
            return recheck.landed_versions(conn, target[0], target[1], start, end, filters)

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
        mapper = RowMapper(self.log_type, self.on_type_mismatch)
        with self._connect(target) as conn:
            result = load_records(conn, mapper, read.records(), target[0], target[1])
        self.log.info(
            "Loaded %s again (%s): %d rows (%d new, %d changed).",
            self._what(start, end, self._target_name(target)),
            drift.reason,
            result.rows,
            result.inserted,
            result.updated,
        )

    def _report(
        self, what: str, result: LoadResult, mapper: RowMapper, progress: Progress, opsera: Any
    ) -> None:
        self.log.info(
            "Loaded %s: %d rows (%d new, %d changed, %d unchanged)%s; %s.",
            what,
            result.rows,
            result.inserted,
            result.updated,
            result.unchanged,
            ", table created" if result.created else "",
            progress.summary(opsera.last_stats),
        )
        if mapper.mismatches:
            examples = "; ".join(f"_id={i} {f}: {got}" for i, f, got in mapper.examples)
            self.log.warning(
                "Kept only in raw (unexpected type): %s. E.g. %s.",
                ", ".join(f"{f} x{n}" for f, n in mapper.mismatches.most_common()),
                examples,
            )


def _identifier(value: Any, what: str) -> str:
    """A schema or table name as rendered: any text is safe (it is quoted), but it must be one name."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty name, not {value!r}.")
    if len(value.encode()) > 63:
        raise ValueError(f"{what} {value!r} is longer than PostgreSQL's 63-byte identifier limit.")
    return value
