"""Running a load on one database connection, in one transaction.

Every load first tries the table's advisory lock. A load that gets it holds it until it commits, and writes
into the table as the records arrive:

- a first load (the table does not exist yet) creates the table without indexes, COPYs straight into it
  (nothing can conflict with rows of a table nobody else can see yet), then builds the primary key and
  indexes over the loaded rows: one index build each instead of an index insert per row, and no second copy of
  every row;
- a load into an existing table (every daily run after the first) COPYs the records straight into it as they
  arrive, a chunk (:data:`CHUNK_ROWS`) under each savepoint, holding the chunk's records until its COPY has
  succeeded. A chunk holding an id the table (or the chunk) already has fails with a unique violation and is
  undone to its savepoint; it and every later record go to a temporary staging table, and after the last
  record one upsert moves the staged rows in (unchanged rows untouched, no row replaced by an older version).
  A daily interval's records are new, so its rows are written once, while the API is still answering (the
  server inserts and indexes one chunk's rows while the next ones are fetched), instead of twice after the
  last page.

A load that finds the lock taken (another load is creating or writing the table) stages every record meanwhile
and waits for the lock only before its upsert, so concurrent runs still extract in parallel; the lock keeps
their upserts from deadlocking. A schema that does not exist yet is created under an advisory lock of its own
(concurrent ``CREATE SCHEMA IF NOT EXISTS`` of one schema fails in PostgreSQL): a load that finds that lock
taken stages its records and creates its table (in the then committed schema) at the end.

Works on the connection :class:`~airflow.providers.postgres.hooks.postgres.PostgresHook` hands out: psycopg 3
(``cursor.copy()`` and ``write_row``) or, where the hook still uses psycopg2 (SQLAlchemy 1.x), psycopg2's
``copy_expert`` fed by a streaming reader. Records are written as they arrive (at most a chunk is held), so
memory stays flat, and nothing is committed unless everything succeeded.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from airflow_provider_opsera.catalogue import FieldKind
from airflow_provider_opsera.compat import copy_expert
from airflow_provider_opsera.exceptions import OpseraError
from airflow_provider_opsera.responses import Record
from airflow_provider_opsera.transfers.postgres import fit
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
    extra: tuple[str, ...] = (),
) -> int:
    """COPY every record with ``statement``; the number of rows written. ``derived``: the jsonb field
    columns too (:meth:`RowMapper.row`); ``extra``: text values appended to every row (``loaded_at``)."""
    count = 0

    def counted() -> Iterator[list[Record]]:
        nonlocal count
        for batch in batches:
            yield batch
            count += len(batch)
            if on_batch is not None:
                on_batch(len(batch))

    if db.psycopg2:
        lines = (
            copy_line(row + extra) for batch in counted() for row in mapper.batch_rows(batch, derived=derived)
        )
        copy_expert(db.cursor, statement.as_string(None), _CopyReader(lines))
        return count
    from psycopg.copy import QueuedLibpqWriter

    # A thread sends what is formatted: rows are mapped while the server reads the previous ones (at most
    # psycopg's queue of 1024 x 32 kB waits), instead of the mapping stopping whenever the server is busy.
    with db.cursor.copy(statement, writer=QueuedLibpqWriter(db.cursor)) as copy:
        # Every value is text or an int by now (RowMapper): naming the types spares a lookup per value.
        columns = mapper.layout.columns if derived else mapper.layout.staged
        types = ["integer" if c.kind is FieldKind.INTEGER else "text" for c in columns]
        copy.set_types(types + ["text"] * len(extra))
        write = copy.write_row
        for batch in counted():
            for row in mapper.batch_rows(batch, derived=derived):
                write(row + extra if extra else row)
    return count


def _ensure_table(db: _Statements, layout: TableLayout, schema: str, table: str) -> bool:
    """Create the table (and schema) if missing; add columns a newer catalogue knows. True if created."""
    existing = {name for (name,) in db.rows(q.EXISTING_COLUMNS, (schema, table))}
    if not existing:
        _ensure_schema(db, schema)
        db.run(q.create_table(layout, schema, table))
        for statement in q.create_indexes(layout, schema, table):
            db.run(statement)
        return True
    fit.check_fits(db.rows, layout, schema, table)  # created by another load meanwhile, or checked already
    for column in (*layout.columns, LOADED_AT):
        if column.name not in existing:
            db.run(q.add_column(schema, table, column))
    return False


def _missing(db: _Statements, schema: str, table: str) -> bool:
    return not db.rows(q.EXISTING_COLUMNS, (schema, table))


def _schema_exists(db: _Statements, schema: str) -> bool:
    return bool(db.rows(q.SCHEMA_EXISTS, (schema,)))


def _create_schema(db: _Statements, schema: str) -> None:
    """``CREATE SCHEMA IF NOT EXISTS``, called under the schema's lock (so never against another load of this
    provider); a unique violation from anyone else creating it at the same moment means it exists."""
    db.run(sql.SQL("SAVEPOINT opsera_schema"))
    try:
        db.run(q.create_schema(schema))
    except Exception as err:
        if _sqlstate(err) not in ("23505", "42P06"):  # unique_violation, duplicate_schema
            raise
        db.run(sql.SQL("ROLLBACK TO SAVEPOINT opsera_schema"))
    db.run(sql.SQL("RELEASE SAVEPOINT opsera_schema"))


def _ensure_schema(db: _Statements, schema: str) -> None:
    """The schema exists (in this transaction) once this returns; waits for a load creating it to commit."""
    # Look before creating: CREATE ... IF NOT EXISTS still needs the privilege to create.
    if _schema_exists(db, schema):
        return
    db.run(q.LOCK_SCHEMA, (schema,))
    if not _schema_exists(db, schema):  # else created, and committed, by the load that held the lock
        _create_schema(db, schema)


def _own_schema(db: _Statements, schema: str) -> bool:
    """Whether the schema exists or this load may create it now (its lock was free; then held until commit).
    False: another load is creating it; this one stages its records meanwhile."""
    if _schema_exists(db, schema):
        return True
    if not db.rows(q.TRY_LOCK_SCHEMA, (schema,))[0][0]:
        return False
    if not _schema_exists(db, schema):
        _create_schema(db, schema)
    return True


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
    """Create the table without indexes (its schema exists: :func:`_own_schema`), COPY every record into
    it, then index it."""
    db, mapper, schema, table = load.db, load.mapper, load.schema, load.table
    layout = mapper.layout
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


def _staging_table(db: _Statements, layout: TableLayout) -> str:
    staging = f"opsera_staging_{uuid.uuid4().hex[:12]}"
    db.run(q.create_staging(layout, staging))
    return staging


def _upsert_staged(load: _Load, staging: str, *, locked: bool, copied: int = 0) -> tuple[int, int, bool]:
    """Check the staged ids, then upsert them (taking the table's lock unless ``locked``, and creating the table
    if it is still missing): (inserted, updated, created). ``copied``: rows this load COPYed straight in,
    none of which may come again among the staged ones."""
    db, layout, schema, table = load.db, load.mapper.layout, load.schema, load.table
    twice = db.rows(q.duplicate_id(staging))
    if twice:
        raise _came_twice(layout, twice[0][0], schema, table)
    if not locked:
        db.run(q.LOCK_TABLE, (f"{schema}.{table}",))
    created = _ensure_table(db, layout, schema, table)
    if copied:
        twice = db.rows(q.loaded_here(schema, table, staging))
        if twice:
            raise _came_twice(layout, twice[0][0], schema, table)
    inserted, updated = db.rows(q.upsert(layout, schema, table, staging))[0]
    return int(inserted), int(updated), created


def _load_via_staging(load: _Load) -> LoadResult:
    """COPY into a temporary table, then upsert from it (creating the table if it is still missing)."""
    staging = _staging_table(load.db, load.mapper.layout)
    rows = _stream(
        load.db, load.mapper, q.copy_into(load.mapper.layout, staging), load.batches, load.on_batch
    )
    inserted, updated, created = _upsert_staged(load, staging, locked=False)
    return LoadResult(rows=rows, inserted=inserted, updated=updated, created=created)


#: Records a load into an existing table COPYs straight in at a time, each chunk under a savepoint: large enough
#: that the COPYs' round trips are a few per hundred thousand records, small enough to hold (a few MB of JSON)
#: for staging again if the table turns out to hold one of its ids.
CHUNK_ROWS = 25_000
#: Savepoints one load takes at most: PostgreSQL keeps 64 subtransactions of a session in shared memory (more
#: slow every other session's snapshots down). Past these, each chunk's ids are looked up before its COPY.
MAX_SAVEPOINTS = 48
#: How far the reading thread of a load into an existing table may run ahead of the database, in chunks.
AHEAD_CHUNKS = 1
_END = object()


def _read_ahead(batches: Iterable[list[Record]], first: int, limit: int) -> Iterator[list[Record]]:
    """``batches``, the first ``first`` records read on the caller's thread (where the hook sets itself up),
    the rest by a thread of its own up to ``limit`` batches ahead: the extraction keeps fetching while the
    database works on the chunk before. The thread is stopped, and waited for, when this generator ends."""
    source = iter(batches)
    have = 0
    for batch in source:
        yield batch
        have += len(batch)
        if have >= first:
            break
    else:
        return
    waiting: queue.Queue[Any] = queue.Queue(maxsize=limit)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                waiting.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def pump() -> None:
        try:
            for batch in source:
                if not put(batch):
                    return
            put(_END)
        except BaseException as err:  # re-raised on the load's thread
            put(err)

    reader = threading.Thread(target=pump, name="opsera-postgres-read-ahead", daemon=True)
    reader.start()
    try:
        while (item := waiting.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        reader.join()


def _chunks(batches: Iterable[list[Record]], size: int) -> Iterator[list[list[Record]]]:
    chunk: list[list[Record]] = []
    have = 0
    for batch in batches:
        chunk.append(batch)
        have += len(batch)
        if have >= size:
            yield chunk
            chunk, have = [], 0
    if chunk:
        yield chunk


class _Direct:
    """COPYs chunks straight into an existing table (held under this load's lock) while none of their ids is
    there yet: under a savepoint, so a unique violation (a rerun, an overlapping interval) undoes only that
    chunk, which then goes to staging. A chunk's rows go to the server as its batches arrive (the server
    inserts and indexes them while the API is still answering), and its records are held until its COPY
    has succeeded, to be staged if it did not."""

    def __init__(self, load: _Load) -> None:
        self.load = load
        layout = load.mapper.layout
        self.statement = q.copy_into_table(layout, load.schema, load.table, loaded_at=True)
        self.probe = q.existing_id(load.schema, load.table)
        # Every row this load COPYs carries the transaction's now(), as the upsert's rows do.
        self.now: tuple[str, ...] = (str(load.db.rows(q.NOW)[0][0]),)
        self.savepoints = 0

    def _write(self, batches: Iterable[list[Record]]) -> None:
        load = self.load
        _stream(load.db, load.mapper, self.statement, batches, None, derived=True, extra=self.now)

    def copy(self, source: Iterator[list[Record]]) -> tuple[list[list[Record]], bool]:
        """COPY the next chunk of ``source`` into the table: the chunk's batches (none: the source is done)
        and whether they went in (False: nothing of them was written; the table or the chunk itself holds one
        of their ids)."""
        db = self.load.db
        if self.savepoints >= MAX_SAVEPOINTS:  # look the ids up first, then COPY without a savepoint
            chunk = next(_chunks(source, CHUNK_ROWS), [])
            ids = [r.id for batch in chunk for r in batch]
            # An id twice within the chunk would fail this COPY, which no savepoint undoes: stage it instead.
            if not chunk or len(set(ids)) != len(ids) or db.rows(self.probe, (ids,)):
                return chunk, not chunk
            self._write(chunk)
            return chunk, True
        first = next(source, None)
        if first is None:
            return [], True
        chunk = [first]

        def rest() -> Iterator[list[Record]]:
            yield first
            have = len(first)
            while have < CHUNK_ROWS and (batch := next(source, None)) is not None:
                chunk.append(batch)  # held before it is written: a failed COPY stages all it took
                yield batch
                have += len(batch)

        self.savepoints += 1
        db.run(sql.SQL("SAVEPOINT opsera_chunk"))
        try:
            self._write(rest())
        except Exception as err:
            if _sqlstate(err) != "23505":  # unique_violation
                raise
            db.run(sql.SQL("ROLLBACK TO SAVEPOINT opsera_chunk"))
            return chunk, False
        db.run(sql.SQL("RELEASE SAVEPOINT opsera_chunk"))
        return chunk, True


def _load_into_existing(load: _Load) -> LoadResult:
    """Holding the table's lock: COPY chunks of records straight into the table while their ids are new to it;
    from the first chunk that is not, stage the records, and upsert them after the last one."""
    db, mapper, schema, table = load.db, load.mapper, load.schema, load.table
    layout = mapper.layout
    _ensure_table(db, layout, schema, table)  # columns a newer catalogue knows, before any row goes in
    direct = _Direct(load)
    copied = staged = 0
    # Records of about a page each: AHEAD_CHUNKS chunks of them may wait while the database is busy. Closed
    # here, not when collected: the reading thread must be gone before the caller closes the source.
    ahead = _read_ahead(load.batches, CHUNK_ROWS, max(1, AHEAD_CHUNKS * CHUNK_ROWS // 1000))
    with contextlib.closing(ahead):  # type: ignore[type-var]
        source = iter(ahead)
        while True:
            chunk, written = direct.copy(source)
            if not chunk:  # every record went straight in
                return LoadResult(rows=copied, inserted=copied, updated=0)
            if not written:
                break
            copied += sum(map(len, chunk))
            if load.on_batch is not None:
                for batch in chunk:
                    load.on_batch(len(batch))
        # A rerun or an overlapping interval: from here on, the upsert decides, row by row.
        staging = _staging_table(db, layout)
        statement = q.copy_into(layout, staging)
        staged += _stream(db, mapper, statement, chunk, load.on_batch)
        staged += _stream(db, mapper, statement, source, load.on_batch)
    inserted, updated, _ = _upsert_staged(load, staging, locked=True, copied=copied)
    return LoadResult(rows=copied + staged, inserted=copied + inserted, updated=updated)


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
            # Refuse a relation that cannot take the load (a view, a wrong type, no key on _id) before any
            # record is read or written.
            if fit.check_relation(db.rows, mapper.layout, schema, table):
                fit.check_fits(db.rows, mapper.layout, schema, table)
            # A load that gets the table's lock holds it from the start and writes into the table as records
            # arrive. If another load holds it (creating the table, or writing into it), this one does not
            # wait: it stages its records meanwhile, and waits for the lock only before its upsert.
            run: Callable[[_Load], LoadResult] = _load_via_staging
            if db.rows(q.TRY_LOCK_TABLE, (f"{schema}.{table}",))[0][0]:
                if not _missing(db, schema, table):
                    run = _load_into_existing
                elif _own_schema(db, schema):
                    run = _first_load
            result = run(_Load(db, mapper, batches, schema, table, on_batch))
        conn.commit()
    except BaseException:
        # The connection may be gone; the server then rolls back on its own.
        with contextlib.suppress(Exception):
            conn.rollback()
        raise
    return result
