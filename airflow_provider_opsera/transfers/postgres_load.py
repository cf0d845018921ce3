"""Running a load on one database connection: COPY into a temporary table, then one upsert, one transaction.

Works on the connection :class:`~airflow.providers.postgres.hooks.postgres.PostgresHook` hands out: psycopg 3
(``cursor.copy()`` and ``write_row``) or, where the hook still uses psycopg2 (SQLAlchemy 1.x), psycopg2's
``copy_expert`` fed by a streaming reader. Records are written as they arrive, so memory stays flat; the
target table is only touched at the end, under an advisory lock, and nothing is committed unless everything
succeeded.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from airflow_provider_opsera.exceptions import OpseraError
from airflow_provider_opsera.responses import Record
from airflow_provider_opsera.transfers import postgres_sql as q
from airflow_provider_opsera.transfers.postgres_rows import RowMapper, copy_line
from airflow_provider_opsera.transfers.postgres_table import LOADED_AT, TableLayout


@dataclass(frozen=True)
class LoadResult:
    """What a load did: ``rows`` records staged, of which ``inserted`` were new and ``updated`` changed."""

    rows: int
    inserted: int
    updated: int
    #: Whether the table (and maybe its schema) was created by this load.
    created: bool = False

    @property
    def unchanged(self) -> int:
        return self.rows - self.inserted - self.updated


class _Statements:
    """Runs composed statements on either driver: psycopg 3 takes them as they are, psycopg2 as strings."""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor
        self.psycopg2 = not hasattr(cursor, "copy")

    def run(self, statement: sql.Composable, params: tuple[Any, ...] | None = None) -> None:
        self.cursor.execute(statement.as_string(None) if self.psycopg2 else statement, params)

    def rows(self, statement: sql.Composable, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
        self.run(statement, params)
        return list(self.cursor.fetchall())


class _CopyReader:
    """A file-like view of COPY text lines, read lazily by psycopg2's ``copy_expert``."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self._buffer = ""

    def read(self, size: int = -1) -> str:
        parts, have = [self._buffer], len(self._buffer)
        for line in self._lines:
            parts.append(line)
            have += len(line)
            if 0 <= size <= have:
                break
        data = "".join(parts)
        if size < 0:
            self._buffer = ""
            return data
        self._buffer = data[size:]
        return data[:size]

    def readline(self, size: int = -1) -> str:
        if self._buffer:
            line, self._buffer = self._buffer, ""
            return line
        return next(self._lines, "")


def _stream(
    db: _Statements,
    mapper: RowMapper,
    staging: str,
    batches: Iterable[list[Record]],
    on_batch: Callable[[int], None] | None,
) -> int:
    """COPY every record into the staging table; the number of rows written."""
    count = 0
    statement = q.copy_into(mapper.layout, staging)

    def counted() -> Iterator[list[Record]]:
        nonlocal count
        for batch in batches:
            yield batch
            count += len(batch)
            if on_batch is not None:
                on_batch(len(batch))

    if db.psycopg2:
        lines = (copy_line(mapper.row(r)) for batch in counted() for r in batch)
        db.cursor.copy_expert(statement.as_string(None), _CopyReader(lines))
        return count
    with db.cursor.copy(statement) as copy:
        write = copy.write_row
        for batch in counted():
            for record in batch:
                write(mapper.row(record))
    return count


def _ensure_table(db: _Statements, layout: TableLayout, schema: str, table: str) -> bool:
    """Create the table (and schema) if missing; add columns a newer catalogue knows. True if created."""
    existing = {name for (name,) in db.rows(q.EXISTING_COLUMNS, (schema, table))}
    if not existing:
        # Look before creating: CREATE ... IF NOT EXISTS still needs the privilege to create.
        if not db.rows(q.SCHEMA_EXISTS, (schema,)):
            db.run(q.create_schema(schema))
        db.run(q.create_table(layout, schema, table))
        for statement in q.create_indexes(layout, schema, table):
            db.run(statement)
        return True
    missing = sorted(layout.required - existing)
    if missing:
        raise OpseraError(
            f"Table {schema}.{table} exists but lacks the column(s) {', '.join(missing)} that an Opsera "
            f"{layout.log_type.value} table needs; load into a new table, or drop this one."
        )
    for column in (*layout.columns, LOADED_AT):
        if column.name not in existing:
            db.run(q.add_column(schema, table, column))
    return False


def load_records(
    conn: Any,
    mapper: RowMapper,
    batches: Iterable[list[Record]],
    schema: str,
    table: str,
    *,
    on_batch: Callable[[int], None] | None = None,
) -> LoadResult:
    """Load every record of ``batches`` into ``schema.table`` in one transaction on ``conn``, and commit.

    Any failure (from the records' source, a record, or the database) rolls everything back: the table is
    left exactly as it was. ``on_batch(n)`` is called after each batch has been written.
    """
    if getattr(conn, "autocommit", False):
        conn.autocommit = False  # the whole load must be one transaction
    layout = mapper.layout
    staging = f"opsera_staging_{uuid.uuid4().hex[:12]}"
    try:
        with conn.cursor() as cursor:
            db = _Statements(cursor)
            db.run(q.create_staging(layout, staging))
            rows = _stream(db, mapper, staging, batches, on_batch)
            twice = db.rows(q.duplicate_id(staging))
            if twice:  # the extraction yields each record once; if that ever breaks, load nothing
                raise OpseraError(
                    f"{layout.log_type.value} record _id={twice[0][0]} came more than once in this load; "
                    f"nothing was written to {schema}.{table}."
                )
            db.run(q.LOCK_TABLE, (f"{schema}.{table}",))
            created = _ensure_table(db, layout, schema, table)
            inserted, updated = db.rows(q.upsert(layout, schema, table, staging))[0]
        conn.commit()
    except BaseException:
        # The connection may be gone; the server then rolls back on its own.
        with contextlib.suppress(Exception):
            conn.rollback()
        raise
    return LoadResult(rows=rows, inserted=int(inserted), updated=int(updated), created=created)
