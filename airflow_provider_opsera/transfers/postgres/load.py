"""Running a load on one database connection, in one transaction.

Into an existing table: COPY into a temporary table, then one upsert; the table is only touched at the end,
under an advisory lock. A first load (the table does not exist yet, and no other load holds its lock) takes
the lock first, creates the table without indexes, COPYs straight into it (nothing can conflict with rows of a
table nobody else can see yet), then builds the primary key and indexes over the loaded rows: one index build
each instead of an index insert per row, and no second copy of every row. A load that finds the lock taken
stages its records meanwhile and takes the upsert path, so concurrent runs still extract in parallel.

Works on the connection :class:`~airflow.providers.postgres.hooks.postgres.PostgresHook` hands out: psycopg 3
(``cursor.copy()`` and ``write_row``) or, where the hook still uses psycopg2 (SQLAlchemy 1.x), psycopg2's
``copy_expert`` fed by a streaming reader. Records are written as they arrive, so memory stays flat, and
nothing is committed unless everything succeeded.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from airflow_provider_opsera.catalogue import FieldKind
from airflow_provider_opsera.compat import copy_expert
from airflow_provider_opsera.exceptions import OpseraError
from airflow_provider_opsera.responses import Record
from airflow_provider_opsera.transfers.postgres import sql as q
from airflow_provider_opsera.transfers.postgres.rows import RowMapper, copy_line
from airflow_provider_opsera.transfers.postgres.table import LOADED_AT, TableLayout


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
    statement: sql.Composed,
    batches: Iterable[list[Record]],
    on_batch: Callable[[int], None] | None,
    *,
    derived: bool = False,
) -> int:
    """COPY every record with ``statement``; the number of rows written. ``derived``: the jsonb field
    columns too (:meth:`RowMapper.row`)."""
    count = 0

    def counted() -> Iterator[list[Record]]:
        nonlocal count
        for batch in batches:
            yield batch
            count += len(batch)
            if on_batch is not None:
                on_batch(len(batch))

    if db.psycopg2:
        lines = (copy_line(row) for batch in counted() for row in mapper.batch_rows(batch, derived=derived))
        copy_expert(db.cursor, statement.as_string(None), _CopyReader(lines))
        return count
    from psycopg.copy import QueuedLibpqWriter

    # A thread sends what is formatted: rows are mapped while the server reads the previous ones (at most
    # psycopg's queue of 1024 x 32 kB waits), instead of the mapping stopping whenever the server is busy.
    with db.cursor.copy(statement, writer=QueuedLibpqWriter(db.cursor)) as copy:
        # Every value is text or an int by now (RowMapper): naming the types spares a lookup per value.
        columns = mapper.layout.columns if derived else mapper.layout.staged
        copy.set_types(["integer" if c.kind is FieldKind.INTEGER else "text" for c in columns])
        write = copy.write_row
        for batch in counted():
            for row in mapper.batch_rows(batch, derived=derived):
                write(row)
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


def _missing(db: _Statements, schema: str, table: str) -> bool:
    return not db.rows(q.EXISTING_COLUMNS, (schema, table))


def _sqlstate(err: BaseException) -> str | None:
    return getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)  # psycopg 3, psycopg2


def _came_twice(layout: TableLayout, rid: Any, schema: str, table: str) -> OpseraError:
    # The extraction yields each record once; if that ever breaks, load nothing rather than pick one.
    return OpseraError(
        f"{layout.log_type.value} record _id={rid} came more than once in this load; nothing was written to "
        f"{schema}.{table}."
    )


@dataclass(frozen=True)
class _Load:
    """One load's parts: where the records go, and what to call after each batch."""

    db: _Statements
    mapper: RowMapper
    batches: Iterable[list[Record]]
    schema: str
    table: str
    on_batch: Callable[[int], None] | None


def _first_load(load: _Load) -> LoadResult:
    """Create the table (and schema) without indexes, COPY every record into it, then index it."""
    db, mapper, schema, table = load.db, load.mapper, load.schema, load.table
    layout = mapper.layout
    if not db.rows(q.SCHEMA_EXISTS, (schema,)):
        db.run(q.create_schema(schema))
    db.run(q.create_table(layout, schema, table, primary_key=False))
    statement = q.copy_into_table(layout, schema, table)
    rows = _stream(db, mapper, statement, load.batches, load.on_batch, derived=True)
    db.run(sql.SQL("SAVEPOINT opsera_primary_key"))
    try:
        db.run(q.add_primary_key(schema, table))
    except Exception as err:
        if _sqlstate(err) != "23505":  # unique_violation: an _id came twice
            raise
        db.run(sql.SQL("ROLLBACK TO SAVEPOINT opsera_primary_key"))
        twice = db.rows(q.duplicate_id(q.target(schema, table)))
        raise _came_twice(layout, twice[0][0] if twice else "?", schema, table) from None
    for index in q.create_indexes(layout, schema, table):
        db.run(index)
    return LoadResult(rows=rows, inserted=rows, updated=0, created=True)


def _load_via_staging(load: _Load) -> LoadResult:
    """COPY into a temporary table, then upsert from it (creating the table if it is still missing)."""
    db, mapper, schema, table = load.db, load.mapper, load.schema, load.table
    layout = mapper.layout
    staging = f"opsera_staging_{uuid.uuid4().hex[:12]}"
    db.run(q.create_staging(layout, staging))
    rows = _stream(db, mapper, q.copy_into(layout, staging), load.batches, load.on_batch)
    twice = db.rows(q.duplicate_id(staging))
    if twice:
        raise _came_twice(layout, twice[0][0], schema, table)
    db.run(q.LOCK_TABLE, (f"{schema}.{table}",))
    created = _ensure_table(db, layout, schema, table)
    inserted, updated = db.rows(q.upsert(layout, schema, table, staging))[0]
    return LoadResult(rows=rows, inserted=int(inserted), updated=int(updated), created=created)


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
    left exactly as it was (or not created). ``on_batch(n)`` is called after each batch has been written.
    """
    if getattr(conn, "autocommit", False):
        conn.autocommit = False  # the whole load must be one transaction
    try:
        with conn.cursor() as cursor:
            db = _Statements(cursor)
            # A first load holds the table's lock from the start. If another load holds it (creating the table,
            # or upserting), this one does not wait: it stages its records meanwhile, and waits for the lock
            # only before its upsert, as every load into an existing table does.
            first = (
                _missing(db, schema, table)
                and db.rows(q.TRY_LOCK_TABLE, (f"{schema}.{table}",))[0][0]
                and _missing(db, schema, table)  # created and committed by another load just before
            )
            run = _first_load if first else _load_via_staging
            result = run(_Load(db, mapper, batches, schema, table, on_batch))
        conn.commit()
    except BaseException:
        # The connection may be gone; the server then rolls back on its own.
        with contextlib.suppress(Exception):
            conn.rollback()
        raise
    return result
