"""``python benchmarks/postgres_executemany.py``: the Postgres load's COPY path against a plain ``executemany``.

Fixed workload: 50,000 pipeline-activity records over 30 days, served by the simulator on loopback (in a
process of its own, so its CPU is not the loader's), loaded into the PostgreSQL at
``OPSERA_BENCH_POSTGRES_DSN`` (default ``host=127.0.0.1 port=5432 dbname=test user=postgres``) in a throwaway
schema. Each configuration loads into a fresh table with the same layout and indexes, ``--repeat`` times
(default 3); the median is reported. Also prints the loader's peak Python heap for 10,000 and 50,000 records.

- ``copy``: what ``OpseraLogsToPostgresOperator`` does on a first load (the table is fresh): stream from the
  API, ``COPY ... FROM STDIN`` straight into the new table, then its primary key and indexes, one
  transaction (into an existing table it would stage and upsert; see benchmarks/README.md).
- ``executemany``: the same stream and the same row mapping (plus the jsonb fields as text), written with
  ``cursor.executemany`` of a plain ``INSERT ... VALUES`` per API response straight into the table, one
  transaction.

Both are measured end to end (API included) and database-only (records fetched into memory first). Prints
rows/s and the ratios; no assertion on times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec
import pendulum
import psycopg
from psycopg import sql

from airflow_provider_opsera.catalogue import OpseraLogType
from airflow_provider_opsera.responses import Record
from airflow_provider_opsera.transfers.postgres import sql as q
from airflow_provider_opsera.transfers.postgres.load import load_records
from airflow_provider_opsera.transfers.postgres.rows import RowMapper

LOG_TYPE = OpseraLogType.PIPELINE_ACTIVITY
RECORDS = 50_000
START = pendulum.datetime(2024, 4, 1)
END = START.add(days=30)

Batches = Iterable[list[Record]]


def load_copy(conn: psycopg.Connection, batches: Batches, schema: str, table: str) -> int:
    return load_records(conn, RowMapper(LOG_TYPE), batches, schema, table).rows


def load_executemany(conn: psycopg.Connection, batches: Batches, schema: str, table: str) -> int:
    mapper = RowMapper(LOG_TYPE)
    layout = mapper.layout
    # The row mapper leaves jsonb fields to the upsert (taken from raw); a plain INSERT sends them itself.
    renames = {f"f{i}": c.field for i, c in enumerate(layout.derived)}
    objects = msgspec.json.Decoder(
        msgspec.defstruct(
            "Objects",
            [(name, msgspec.Raw, msgspec.field(name=field, default=None)) for name, field in renames.items()],
        )
    )
    with conn.cursor() as cur:
        cur.execute(q.create_table(layout, schema, table))
        for statement in q.create_indexes(layout, schema, table):
            cur.execute(statement)
        columns = (*layout.staged, *layout.derived)
        insert = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            sql.Identifier(schema, table),
            sql.SQL(", ").join(sql.Identifier(c.name) for c in columns),
            sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        )
        rows = 0
        for batch in batches:
            values = []
            for record in batch:
                extra = msgspec.structs.astuple(objects.decode(record.payload))
                values.append(
                    (*mapper.row(record), *(bytes(v).decode() if v is not None else None for v in extra))
                )
            # psycopg sends str with the "unknown" type, so the server casts to timestamptz/jsonb as in COPY.
            cur.executemany(insert, values)
            rows += len(values)
    conn.commit()
    return rows


def measure(
    name: str,
    load: Callable[[psycopg.Connection, Batches, str, str], int],
    source: Callable[[], Batches],
    dsn: str,
    schema: str,
    repeat: int,
) -> float:
    """Median rows/s of ``repeat`` loads into a fresh table."""
    rates = []
    for i in range(repeat):
        table = f"{name}_{i}"
        with psycopg.connect(dsn) as conn:
            started = time.perf_counter()
            rows = load(conn, source(), schema, table)
            took = time.perf_counter() - started
            count = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
            ).fetchone()
        if rows != RECORDS or count is None or count[0] != RECORDS:
            raise SystemExit(f"{name}: loaded {rows} rows ({count}), expected {RECORDS}")
        rates.append(rows / took)
    return statistics.median(rates)


def peak_memory(source: Callable[[], Batches], dsn: str, schema: str) -> tuple[int, int]:
    """Rows loaded by the COPY path and the peak Python heap (tracemalloc) meanwhile."""
    import tracemalloc

    table = f"memory_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(dsn) as conn:
        tracemalloc.start()
        try:
            rows = load_copy(conn, source(), schema, table)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    return rows, peak


def serve() -> int:
    """The simulator with the workload, in a process of its own (its CPU is not the loader's); serves until
    stdin closes. Prints one JSON line: the value for an Opsera connection."""
    from airflow_provider_opsera.testing import OpseraSimulator

    with OpseraSimulator(seed=42) as sim:
        sim.generate(LOG_TYPE, START, END, RECORDS)
        print(sim.connection_json(), flush=True)
        sys.stdin.read()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve()
    dsn = os.environ.get("OPSERA_BENCH_POSTGRES_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres")
    schema = f"opsera_bench_{uuid.uuid4().hex[:8]}"

    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None and server.stdin is not None
    try:
        line = ""
        while not line.startswith("{"):  # skip any log line the server prints first
            line = server.stdout.readline()
            if not line:
                raise SystemExit("the simulator process ended before serving")
        os.environ["AIRFLOW_CONN_OPSERA_BENCH"] = line.strip()
        return run(dsn, schema, args.repeat)
    finally:
        server.stdin.close()  # the server's cue to stop
        server.wait(timeout=30)


def run(dsn: str, schema: str, repeat: int) -> int:
    from airflow_provider_opsera.hooks.opsera import OpseraHook

    hook = OpseraHook(opsera_conn_id="opsera_bench")

    def from_api() -> Batches:
        return hook.iter_log_batches(LOG_TYPE, START, END, raw=True)

    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            started = time.perf_counter()
            assert sum(len(b) for b in from_api()) == RECORDS
            api_only = RECORDS / (time.perf_counter() - started)
            # Flat memory: the Python heap's peak while loading 6 days vs all 30 (5x the records).
            peaks = {
                days: peak_memory(
                    lambda d=days: hook.iter_log_batches(LOG_TYPE, START, START.add(days=d), raw=True),
                    dsn,
                    schema,
                )
                for days in (6, 30)
            }
            fetched = list(from_api())

            def from_memory() -> Batches:
                return iter(fetched)

            results = {
                (where, how): measure(f"{how}_{where}", load, source, dsn, schema, repeat)
                for where, source in (("end_to_end", from_api), ("db_only", from_memory))
                for how, load in (("copy", load_copy), ("executemany", load_executemany))
            }
        finally:
            admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))

    print(f"{RECORDS:,} pipeline-activity records, median of {repeat}; PostgreSQL at {dsn}")
    print(f"  API alone (simulator on loopback, hook stream):  {api_only:>10,.0f} rows/s")
    for days, (rows, peak) in peaks.items():
        print(
            f"  Python heap peak, COPY load of {rows:>6,} records ({days:>2} days): {peak / 2**20:6.1f} MiB"
        )
    for where in ("end_to_end", "db_only"):
        copy, many = results[(where, "copy")], results[(where, "executemany")]
        label = "end to end (API + load)" if where == "end_to_end" else "database only (records in memory)"
        print(f"  {label}:")
        print(f"    COPY (the operator, 1st load): {copy:>10,.0f} rows/s")
        print(f"    executemany INSERT:            {many:>10,.0f} rows/s")
        print(f"    ratio COPY / executemany:      {copy / many:>10.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
