"""What a Postgres table holds for one interval, for ``recheck``: its row count, and ``_id -> updatedAt``.

The rows of an interval are those with ``created_at`` in ``[start, end)`` whose record (``raw``) matches the
task's filters exactly, as the API's filters match: one table may hold the loads of several tasks with other
filters. ``updatedAt`` is read from ``raw`` as the API sent it, so it compares with the API's text as is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pendulum import DateTime
from psycopg import sql

from airflow_provider_opsera.transfers.postgres import sql as q
from airflow_provider_opsera.transfers.postgres.load import _Statements


def _where(
    start: DateTime, end: DateTime, filters: Mapping[str, str]
) -> tuple[sql.Composed, tuple[Any, ...]]:
    conditions = [sql.SQL("created_at >= %s"), sql.SQL("created_at < %s")]
    params: list[Any] = [start, end]
    for key, value in sorted(filters.items()):
        conditions.append(sql.SQL("raw ->> %s = %s"))
        params += [key, value]
    return sql.SQL(" AND ").join(conditions), tuple(params)


def landed_count(
    conn: Any, schema: str, table: str, start: DateTime, end: DateTime, filters: Mapping[str, str]
) -> int | None:
    """Rows of ``[start, end)`` (matching ``filters``) in ``schema.table``; None if the table does not exist."""
    with conn.cursor() as cursor:
        db = _Statements(cursor)
        if not db.rows(q.EXISTING_COLUMNS, (schema, table)):
            return None
        where, params = _where(start, end, filters)
        statement = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(q.target(schema, table), where)
        (count,) = db.rows(statement, params)[0]
    conn.rollback()  # read only: end the transaction the driver opened
    return int(count)


def landed_versions(
    conn: Any, schema: str, table: str, start: DateTime, end: DateTime, filters: Mapping[str, str]
) -> dict[str, str | None]:
    """``_id -> updatedAt`` (the record's own text, None when absent) of the rows of ``[start, end)``."""
    with conn.cursor() as cursor:
        db = _Statements(cursor)
        if not db.rows(q.EXISTING_COLUMNS, (schema, table)):
            return {}
        where, params = _where(start, end, filters)
        statement = sql.SQL("SELECT _id, raw ->> 'updatedAt' FROM {} WHERE {}").format(
            q.target(schema, table), where
        )
        versions = {str(rid): updated for rid, updated in db.rows(statement, params)}
    conn.rollback()
    return versions
