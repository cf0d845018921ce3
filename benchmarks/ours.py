"""The provider's own paths, called as a task would call them (no scheduler needed).

- ``count``: ``OpseraHook.iter_log_batches(..., raw=True)``, records counted and dropped;
- ``file``: ``OpseraLogsOperator.execute`` with a ``file://`` ``output_path`` (gzipped NDJSON parts + manifest);
- ``postgres``: ``OpseraLogsToPostgresOperator.execute`` into a table that does not exist yet (a first load:
  COPY straight into the new table, indexes built after);
- ``postgres_existing``: the same into an existing, indexed, empty table (every later load: new records
  COPYed straight into the indexed table as they arrive, a chunk under each savepoint; records the table
  already holds would be staged and upserted).

The operators run with a minimal context: only ``outlet_events``, which both use to emit their asset event.
"""

from __future__ import annotations

import os
from typing import Any

from benchmarks.common import BaseConfig, Outcome, Target, count_rows, drop_table, pg_connect
from benchmarks.workload import CONCURRENCY, PAGE_SIZE


class _OutletEvent:
    """Stands in for Airflow's outlet event accessor: accepts and forgets what the operator emits."""

    extra: dict[str, Any] = {}

    def add(self, *args: Any, **kwargs: Any) -> None:
        pass


class _OutletEvents(dict):
    # Keyed by the asset's kind and names, not the asset itself: Airflow 3.0's Asset is unhashable.
    def __getitem__(self, key: Any) -> _OutletEvent:
        ident = (type(key).__name__, key.name, getattr(key, "uri", None))
        if ident not in self:
            self[ident] = _OutletEvent()
        return super().__getitem__(ident)


def _context() -> Any:
    return {"outlet_events": _OutletEvents()}


def _use_simulator(target: Target) -> None:
    # The hook's defaults, spelled out: the baselines use the same page size and concurrency.
    os.environ["AIRFLOW_CONN_OPSERA_DEFAULT"] = target.connection_json(
        page_size=PAGE_SIZE, concurrency=CONCURRENCY
    )


_IMPORTS = (
    # The first connection lookup imports Airflow's task-execution machinery (about 70 ms): once per process.
    "airflow.sdk.execution_time.supervisor",
    "airflow_provider_opsera.hooks.opsera",
    "airflow_provider_opsera.operators.logs",
    "airflow_provider_opsera.transfers.postgres",
    "airflow.providers.postgres.hooks.postgres",
)


class _Ours(BaseConfig):
    imports = _IMPORTS

    def warm(self) -> None:
        super().warm()
        from airflow.sdk import Asset, ObjectStoragePath

        # Airflow discovers its providers' filesystems and asset URI schemes on first use (importing boto3
        # among others: seconds). A worker pays that once per process, not per record: keep it out of a run.
        _ = ObjectStoragePath("file:///").fs
        Asset(uri="postgres://localhost:5432/db/schema/table")


class OursCount(_Ours):
    who, sink = "ours", "count"

    def prepare(self, target: Target) -> None:
        _use_simulator(target)

    def run(self, target: Target) -> Outcome:
        from airflow_provider_opsera.exceptions import OpseraIncompleteResultError
        from airflow_provider_opsera.hooks.opsera import OpseraHook

        ds = target.dataset
        hook = OpseraHook()
        records = 0
        try:
            for batch in hook.iter_log_batches(ds.log_type, ds.start, ds.end, raw=True):
                records += len(batch)
        except OpseraIncompleteResultError as err:
            # W2's seed-sized v1 day: the expected, loud refusal to return a short set.
            return Outcome(records, hook.last_stats.requests, error=f"{type(err).__name__}: {err}")
        finally:
            hook.close()
        stats = hook.last_stats
        return Outcome(records, stats.requests, extra={"splits": stats.splits, "outside": stats.outside})


class OursFile(_Ours):
    who, sink = "ours", "file"

    def prepare(self, target: Target) -> None:
        super().prepare(target)
        _use_simulator(target)

    def run(self, target: Target) -> Outcome:
        from airflow_provider_opsera.operators.logs import OpseraLogsOperator

        ds = target.dataset
        operator = OpseraLogsOperator(
            task_id=f"bench_{ds.key}",
            log_type=ds.log_type,
            start=ds.start,
            end=ds.end,
            output_path=target.out_dir.as_uri() + "/",
        )
        manifest = operator.execute(_context())
        size = sum(part["bytes"] for part in manifest["parts"])
        return Outcome(manifest["record_count"], note=f"{size / 1e6:.0f} MB gz", extra={"bytes": size})


class OursPostgres(_Ours):
    who, sink = "ours", "postgres"

    def table(self, target: Target) -> str:
        return f"ours_{target.dataset.key}"

    def prepare(self, target: Target) -> None:
        _use_simulator(target)
        dsn = dict(part.split("=", 1) for part in (target.pg_dsn or "").split())
        os.environ["AIRFLOW_CONN_POSTGRES_BENCH"] = (
            f"postgresql://{dsn.get('user', 'postgres')}@{dsn.get('host', '127.0.0.1')}:"
            f"{dsn.get('port', '5432')}/{dsn.get('dbname', 'test')}"
        )
        drop_table(target, self.table(target))  # each repetition inserts every row, as a first load does

    def run(self, target: Target) -> Outcome:
        from airflow_provider_opsera.transfers.postgres import OpseraLogsToPostgresOperator

        ds = target.dataset
        operator = OpseraLogsToPostgresOperator(
            task_id=f"bench_{ds.key}_pg",
            log_type=ds.log_type,
            postgres_conn_id="postgres_bench",
            schema=target.pg_schema,
            table=self.table(target),
            start=ds.start,
            end=ds.end,
        )
        result = operator.execute(_context())
        return Outcome(result["rows"], note=f"{result['inserted']} inserted")

    def check(self, target: Target, outcome: Outcome) -> None:
        super().check(target, outcome)
        rows = count_rows(target, self.table(target))
        if rows != target.dataset.n:
            raise AssertionError(f"ours/postgres: the table holds {rows} rows, expected {target.dataset.n}")


class OursPostgresExisting(OursPostgres):
    """The load every day after the first: into an existing, indexed table, whose upsert path COPYs a day's
    new records straight in."""

    variant = "existing table"

    def table(self, target: Target) -> str:
        return f"ours_existing_{target.dataset.key}"

    def prepare(self, target: Target) -> None:
        super().prepare(target)
        from airflow_provider_opsera.transfers.postgres import sql as q
        from airflow_provider_opsera.transfers.postgres.table import layout_for

        layout = layout_for(target.dataset.log_type)
        with pg_connect(target) as conn:
            conn.execute(q.create_table(layout, target.pg_schema, self.table(target)))
            for statement in q.create_indexes(layout, target.pg_schema, self.table(target)):
                conn.execute(statement)

    def run(self, target: Target) -> Outcome:
        outcome = super().run(target)
        return Outcome(outcome.records, note=f"upsert path; {outcome.note}")
