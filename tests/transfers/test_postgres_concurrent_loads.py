"""Loads that run at once (a backfill's runs, four log types of one run) and loads into an existing table.

Against the real PostgreSQL, each test in a schema of its own (``pg_schema``, dropped afterwards).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from pg_helpers import instant, snapshot
from psycopg import sql

from airflow_provider_opsera import OpseraError
from airflow_provider_opsera.catalogue import OpseraLogType
from airflow_provider_opsera.responses import Record
from airflow_provider_opsera.transfers.postgres import load as load_module
from airflow_provider_opsera.transfers.postgres import sql as q
from airflow_provider_opsera.transfers.postgres.load import LoadResult, load_records
from airflow_provider_opsera.transfers.postgres.rows import RowMapper
from airflow_provider_opsera.transfers.postgres.table import default_table, layout_for

PIPELINE = OpseraLogType.PIPELINE_ACTIVITY


def record(rid: str, updated: str | None = "2024-04-01T10:00:00.000Z", **fields: Any) -> Record:
    payload: dict[str, Any] = {"_id": rid, "status": "running", "run_count": 1, **fields}
    payload["createdAt"] = "2024-04-01T10:00:00.000Z"
    if updated is not None:
        payload["updatedAt"] = updated
    return Record(rid, "2024-04-01T10:00:00.000000Z", None, json.dumps(payload).encode())


def load(dsn: str, schema: str, table: str, batches: Any, log_type: Any = PIPELINE) -> LoadResult:
    with psycopg.connect(dsn) as conn:
        return load_records(conn, RowMapper(log_type), batches, schema, table)


def rows_of(pg: Any, schema: str, table: str, *columns: str) -> list[tuple[Any, ...]]:
    names = sql.SQL(", ").join(map(sql.Identifier, ("_id", *columns)))
    query = sql.SQL("SELECT {} FROM {} ORDER BY _id").format(names, sql.Identifier(schema, table))
    return pg.execute(query).fetchall()


def empty_table(pg: Any, schema: str, table: str, log_type: Any = PIPELINE) -> None:
    layout = layout_for(log_type)
    pg.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    pg.execute(q.create_table(layout, schema, table))
    for statement in q.create_indexes(layout, schema, table):
        pg.execute(statement)


# -- one new schema, four log types at once -----------------------------------------------------------------
def _records_for(log_type: OpseraLogType, n: int) -> list[Record]:
    out = []
    for i in range(n):
        rid = f"{log_type.value}-{i:04d}"
        payload = {"_id": rid, "createdAt": "2024-04-01T10:00:00.000Z", "user_id": "u1"}
        out.append(Record(rid, "2024-04-01T10:00:00.000000Z", None, json.dumps(payload).encode()))
    return out


def test_four_log_types_loading_at_once_into_a_new_schema_all_succeed(pg, pg_schema, postgres_dsn):
    # Every load is inside its transaction, past creating its table (or deciding to stage), before any of
    # them commits: concurrent CREATE SCHEMA IF NOT EXISTS of one schema would fail all but one of them with
    # a unique violation on pg_namespace_nspname_index (or, here, never reach the barrier).
    barrier = threading.Barrier(len(OpseraLogType), timeout=30)
    results: dict[OpseraLogType, LoadResult] = {}
    errors: list[BaseException] = []

    def batches(log_type: OpseraLogType) -> Iterator[list[Record]]:
        barrier.wait()
        yield _records_for(log_type, 300)

    def run(log_type: OpseraLogType) -> None:
        try:
            results[log_type] = load(
                postgres_dsn, pg_schema, default_table(log_type), batches(log_type), log_type
            )
        except BaseException as err:
            errors.append(err)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(t,)) for t in OpseraLogType]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert {t: (r.rows, r.inserted, r.created) for t, r in results.items()} == {
        t: (300, 300, True) for t in OpseraLogType
    }
    for log_type in OpseraLogType:
        count = pg.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(pg_schema, default_table(log_type)))
        ).fetchone()
        assert count == (300,)


def test_a_schema_created_by_someone_else_meanwhile_is_used(pg, pg_schema, postgres_dsn):
    # Outside the provider's lock: another session creates the schema (uncommitted) while a load creates it.
    with psycopg.connect(postgres_dsn) as other:
        other.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(pg_schema)))
        threading.Timer(0.5, other.commit).start()
        result = load(postgres_dsn, pg_schema, "runs", [[record("a")]])
    assert (result.rows, result.created) == (1, True)
    assert rows_of(pg, pg_schema, "runs") == [("a",)]


def test_concurrent_loads_into_one_new_table_of_a_new_schema(pg, pg_schema, postgres_dsn):
    barrier = threading.Barrier(3, timeout=30)
    errors: list[BaseException] = []
    results: list[LoadResult] = []

    def run(i: int) -> None:
        def batches() -> Iterator[list[Record]]:
            barrier.wait()
            yield [record(f"r{i}-{j}") for j in range(50)] + [record("shared")]

        try:
            results.append(load(postgres_dsn, pg_schema, "runs", batches()))
        except BaseException as err:
            errors.append(err)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sum(r.inserted for r in results) == 151
    assert len(rows_of(pg, pg_schema, "runs")) == 151


# -- the updatedAt guard -------------------------------------------------------------------------------------
def test_an_older_version_never_replaces_a_newer_row(pg, pg_schema, postgres_dsn):
    load(postgres_dsn, pg_schema, "runs", [[record("a", "2024-04-01T12:00:00.000Z", status="success")]])
    before = snapshot(pg, pg_schema, "runs")
    older = load(
        postgres_dsn, pg_schema, "runs", [[record("a", "2024-04-01T11:00:00.000Z", status="running")]]
    )
    assert (older.inserted, older.updated, older.unchanged) == (0, 0, 1)
    assert snapshot(pg, pg_schema, "runs") == before
    newer = load(
        postgres_dsn, pg_schema, "runs", [[record("a", "2024-04-01T13:00:00.000Z", status="failed")]]
    )
    assert (newer.inserted, newer.updated) == (0, 1)
    assert rows_of(pg, pg_schema, "runs", "status", "updated_at") == [
        ("a", "failed", instant("2024-04-01T13:00:00.000Z"))
    ]


def test_the_same_updated_at_with_new_content_replaces_the_row(pg, pg_schema, postgres_dsn):
    load(postgres_dsn, pg_schema, "runs", [[record("a", status="running")]])
    result = load(postgres_dsn, pg_schema, "runs", [[record("a", status="success")]])
    assert result.updated == 1
    assert rows_of(pg, pg_schema, "runs", "status") == [("a", "success")]


def test_versions_without_updated_at(pg, pg_schema, postgres_dsn):
    # A stored row without updatedAt is replaced by any changed version; a version without updatedAt never
    # replaces a row that has one (it cannot show it is newer).
    load(postgres_dsn, pg_schema, "runs", [[record("undated", None), record("dated", status="success")]])
    result = load(
        postgres_dsn,
        pg_schema,
        "runs",
        [[record("undated", "2024-04-01T09:00:00.000Z", status="x"), record("dated", None, status="y")]],
    )
    assert (result.inserted, result.updated, result.unchanged) == (0, 1, 1)
    assert rows_of(pg, pg_schema, "runs", "status") == [("dated", "success"), ("undated", "x")]


def test_the_guard_holds_on_the_staging_path_too(pg, pg_schema, postgres_dsn):
    # Another load holds the table's lock: this one stages, then upserts, with the same guard.
    load(postgres_dsn, pg_schema, "runs", [[record("a", "2024-04-01T12:00:00.000Z", status="success")]])
    results: list[LoadResult] = []
    with psycopg.connect(postgres_dsn) as holder:
        holder.execute(q.TRY_LOCK_TABLE, (f"{pg_schema}.runs",))
        older = [[record("a", "2024-04-01T11:00:00.000Z", status="running"), record("b")]]
        loader = threading.Thread(target=lambda: results.append(load(postgres_dsn, pg_schema, "runs", older)))
        loader.start()
        loader.join(1)
        assert loader.is_alive()  # staged, waiting for the lock to upsert
        holder.rollback()
    loader.join(30)
    assert [(r.inserted, r.updated) for r in results] == [(1, 0)]
    assert rows_of(pg, pg_schema, "runs", "status") == [("a", "success"), ("b", "running")]


# -- into an existing table: chunks COPYed straight in, the rest staged ---------------------------------------
@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(load_module, "CHUNK_ROWS", 10)
    monkeypatch.setattr(load_module, "AHEAD_CHUNKS", 2)


def _batches(ids: list[str], size: int = 5, **fields: Any) -> list[list[Record]]:
    return [[record(i, **fields) for i in ids[k : k + size]] for k in range(0, len(ids), size)]


def test_new_records_go_straight_into_an_existing_table(pg, pg_schema, postgres_dsn, small_chunks):
    empty_table(pg, pg_schema, "runs")
    pg.execute(
        sql.SQL(
            "INSERT INTO {} (_id, created_at, raw, loaded_at) VALUES ('old', now(), '{{}}', now() - interval '1 day')"
        ).format(sql.Identifier(pg_schema, "runs"))
    )
    ids = [f"n{i:03d}" for i in range(47)]
    result = load(postgres_dsn, pg_schema, "runs", _batches(ids))
    assert (result.rows, result.inserted, result.updated, result.created) == (47, 47, 0, False)
    loaded = pg.execute(
        sql.SQL("SELECT count(DISTINCT loaded_at), min(_id) FROM {} WHERE _id <> 'old'").format(
            sql.Identifier(pg_schema, "runs")
        )
    ).fetchone()
    assert loaded == (1, "n000")  # one load, one loaded_at
    assert len(rows_of(pg, pg_schema, "runs")) == 48


def test_a_rerun_in_chunks_touches_no_unchanged_row(pg, pg_schema, postgres_dsn, small_chunks):
    empty_table(pg, pg_schema, "runs")
    ids = [f"n{i:03d}" for i in range(30)]
    load(postgres_dsn, pg_schema, "runs", _batches(ids))
    before = snapshot(pg, pg_schema, "runs")
    rerun = load(postgres_dsn, pg_schema, "runs", _batches(ids))
    assert (rerun.rows, rerun.inserted, rerun.updated, rerun.unchanged) == (30, 0, 0, 30)
    assert snapshot(pg, pg_schema, "runs") == before


def test_an_overlap_after_the_first_chunks_is_upserted(pg, pg_schema, postgres_dsn, small_chunks):
    # The first chunks are new (COPYed straight in); a later chunk holds loaded ids: its COPY is undone to its
    # savepoint, and it and every later chunk are staged and upserted.
    empty_table(pg, pg_schema, "runs")
    load(postgres_dsn, pg_schema, "runs", _batches([f"m{i:03d}" for i in range(20)], status="running"))
    ids = (
        [f"a{i:03d}" for i in range(25)] + [f"m{i:03d}" for i in range(20)] + [f"z{i:03d}" for i in range(12)]
    )
    result = load(postgres_dsn, pg_schema, "runs", _batches(ids, status="success"))
    assert (result.rows, result.inserted, result.updated) == (57, 37, 20)
    assert {s for _, s in rows_of(pg, pg_schema, "runs", "status")} == {"success"}
    assert len(rows_of(pg, pg_schema, "runs")) == 57


def test_an_id_twice_across_chunks_fails_and_writes_nothing(pg, pg_schema, postgres_dsn, small_chunks):
    empty_table(pg, pg_schema, "runs")
    load(postgres_dsn, pg_schema, "runs", [[record("old")]])
    before = snapshot(pg, pg_schema, "runs")
    ids = [f"a{i:03d}" for i in range(15)] + ["a003"] + [f"b{i:03d}" for i in range(10)]
    with pytest.raises(OpseraError, match="record _id=a003 came more than once in this load"):
        load(postgres_dsn, pg_schema, "runs", _batches(ids))
    within = [f"c{i:03d}" for i in range(3)] + ["c001"]
    with pytest.raises(OpseraError, match="record _id=c001 came more than once in this load"):
        load(postgres_dsn, pg_schema, "runs", _batches(within))
    assert snapshot(pg, pg_schema, "runs") == before


def test_past_the_savepoint_budget_chunks_are_looked_up_first(
    pg, pg_schema, postgres_dsn, small_chunks, monkeypatch
):
    monkeypatch.setattr(load_module, "MAX_SAVEPOINTS", 2)
    empty_table(pg, pg_schema, "runs")
    load(postgres_dsn, pg_schema, "runs", _batches([f"m{i:03d}" for i in range(10)], status="running"))
    ids = [f"a{i:03d}" for i in range(40)] + [f"m{i:03d}" for i in range(10)]
    result = load(postgres_dsn, pg_schema, "runs", _batches(ids, status="success"))
    assert (result.rows, result.inserted, result.updated) == (50, 40, 10)
    assert len(rows_of(pg, pg_schema, "runs")) == 50
    twice = [f"d{i:03d}" for i in range(25)] + ["d021"]  # within the unsaved third chunk
    with pytest.raises(OpseraError, match="record _id=d021 came more than once in this load"):
        load(postgres_dsn, pg_schema, "runs", _batches(twice))
    assert len(rows_of(pg, pg_schema, "runs")) == 50


def test_a_failing_source_stops_the_reading_thread_and_leaves_the_table(
    pg, pg_schema, postgres_dsn, small_chunks
):
    empty_table(pg, pg_schema, "runs")
    before = snapshot(pg, pg_schema, "runs")

    def batches() -> Iterator[list[Record]]:
        for k in range(6):
            yield [record(f"x{k}-{j}") for j in range(5)]
        raise RuntimeError("the API went away")

    with pytest.raises(RuntimeError, match="the API went away"):
        load(postgres_dsn, pg_schema, "runs", batches())
    assert snapshot(pg, pg_schema, "runs") == before
    assert not [t for t in threading.enumerate() if t.name == "opsera-postgres-read-ahead"]


# -- a chunk's rows go to the server as its batches arrive ----------------------------------------------------
def test_a_chunk_is_written_while_its_batches_arrive(pg, pg_schema, postgres_dsn, small_chunks, monkeypatch):
    # Nothing waits for a whole chunk: the first batch is in the COPY before the second is asked for.
    monkeypatch.setattr(load_module, "CHUNK_ROWS", 10_000)
    empty_table(pg, pg_schema, "runs")
    asked: list[int] = []
    written: list[int] = []
    stream = load_module._stream

    def spy(db, mapper, statement, batches, *args, **kwargs):
        def seen():
            for batch in batches:
                written.append(len(asked))
                yield batch

        return stream(db, mapper, statement, seen(), *args, **kwargs)

    def source() -> Iterator[list[Record]]:
        for k in range(4):
            asked.append(k)
            yield [record(f"s{k}-{j}") for j in range(5)]

    monkeypatch.setattr(load_module, "_stream", spy)
    monkeypatch.setattr(load_module, "_read_ahead", lambda batches, first, limit: (b for b in batches))
    result = load(postgres_dsn, pg_schema, "runs", source())
    assert (result.rows, result.inserted) == (20, 20)
    assert written == [1, 2, 3, 4]  # each batch written before the next was read: one chunk, streamed


def test_a_conflict_in_the_middle_of_a_chunk_stages_all_of_it(pg, pg_schema, postgres_dsn, small_chunks):
    # The third chunk's second batch holds a loaded id: its first batch, already sent, is undone with it and
    # staged; nothing is lost or written twice, the loaded row is updated once.
    empty_table(pg, pg_schema, "runs")
    load(postgres_dsn, pg_schema, "runs", [[record("m000", status="running")]])
    ids = [f"a{i:03d}" for i in range(25)] + ["m000"] + [f"z{i:03d}" for i in range(9)]
    result = load(postgres_dsn, pg_schema, "runs", _batches(ids, status="success"))
    assert (result.rows, result.inserted, result.updated) == (35, 34, 1)
    assert sorted(rows_of(pg, pg_schema, "runs", "status")) == [(i, "success") for i in sorted(ids)]


def test_a_source_failing_inside_an_open_copy_leaves_the_table(pg, pg_schema, postgres_dsn, small_chunks):
    empty_table(pg, pg_schema, "runs")
    load(postgres_dsn, pg_schema, "runs", [[record("old")]])
    before = snapshot(pg, pg_schema, "runs")

    def batches() -> Iterator[list[Record]]:
        for k in range(5):  # 25 records: the third chunk's COPY is open when the source fails
            yield [record(f"x{k}-{j}") for j in range(5)]
        raise RuntimeError("the API went away")

    with pytest.raises(RuntimeError, match="the API went away"):
        load(postgres_dsn, pg_schema, "runs", batches())
    assert snapshot(pg, pg_schema, "runs") == before


def test_a_database_error_inside_a_chunk_leaves_the_table(pg, pg_schema, postgres_dsn, small_chunks):
    # Not a unique violation (a DBA's CHECK constraint refuses one row): no staging, the whole load rolls back.
    empty_table(pg, pg_schema, "runs")
    pg.execute(
        sql.SQL("ALTER TABLE {} ADD CONSTRAINT no_bad CHECK (_id <> 'bad')").format(
            sql.Identifier(pg_schema, "runs")
        )
    )
    load(postgres_dsn, pg_schema, "runs", [[record("old")]])
    before = snapshot(pg, pg_schema, "runs")
    ids = [f"a{i:03d}" for i in range(13)] + ["bad"] + [f"b{i:03d}" for i in range(6)]
    with pytest.raises(psycopg.errors.CheckViolation):
        load(postgres_dsn, pg_schema, "runs", _batches(ids))
    assert snapshot(pg, pg_schema, "runs") == before
