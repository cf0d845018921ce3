"""What every measured configuration gets (:class:`Target`) and gives back (:class:`Outcome`)."""

from __future__ import annotations

import importlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from benchmarks.workload import DataSet


@dataclass
class Target:
    """Where a configuration reads from and writes to."""

    dataset: DataSet
    url: str
    token: str
    #: A folder of this configuration's own, emptied before each repetition.
    out_dir: Path
    #: libpq DSN of the benchmark database (None: Postgres unreachable) and the schema to work in.
    pg_dsn: str | None = None
    pg_schema: str = "opsera_bench"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}

    def connection_json(self, **extra: Any) -> str:
        return json.dumps({"conn_type": "opsera", "host": self.url, "password": self.token, "extra": extra})

    def clean_out_dir(self) -> None:
        shutil.rmtree(self.out_dir, ignore_errors=True)
        self.out_dir.mkdir(parents=True, exist_ok=True)


@dataclass
class Outcome:
    """What one repetition did: records delivered, HTTP requests made (when known), and a short note."""

    records: int
    requests: int | None = None
    note: str = ""
    #: Set when the run ended in an expected error (W2's too-large day), with the error's type and message.
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Config(Protocol):
    """One measured configuration. ``warm``, ``prepare`` and ``check`` are not timed; ``run`` is."""

    #: Table label: ``floor``, ``ours``, ``naive``, ``dlt``.
    who: str
    #: ``count``, ``file`` or ``postgres``.
    sink: str

    def warm(self) -> None: ...

    def prepare(self, target: Target) -> None: ...

    def run(self, target: Target) -> Outcome: ...

    def check(self, target: Target, outcome: Outcome) -> None: ...


class BaseConfig:
    """Defaults: an emptied output folder before each run, and the record count checked after it."""

    who = ""
    sink = ""
    #: Tells apart two configurations of one ``who`` and ``sink`` (shown beside the sink in the table).
    variant = ""
    #: Modules imported before anything is measured: an import is not part of a run.
    imports: tuple[str, ...] = ()

    def warm(self) -> None:
        """Once per process, before the first run: what any long-lived worker has already done."""
        for module in self.imports:
            importlib.import_module(module)

    def prepare(self, target: Target) -> None:
        target.clean_out_dir()

    def run(self, target: Target) -> Outcome:  # pragma: no cover - every configuration overrides it
        raise NotImplementedError

    def check(self, target: Target, outcome: Outcome) -> None:
        if outcome.error is None and outcome.records != target.dataset.n:
            raise AssertionError(
                f"{self.who}/{self.sink} delivered {outcome.records} records of {target.dataset.key}, "
                f"expected {target.dataset.n}"
            )


def pg_connect(target: Target) -> Any:
    import psycopg

    if target.pg_dsn is None:
        raise RuntimeError("PostgreSQL is not reachable")
    return psycopg.connect(target.pg_dsn, autocommit=True)


def drop_table(target: Target, table: str) -> None:
    from psycopg import sql

    with pg_connect(target) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(target.pg_schema, table)))


def count_rows(target: Target, table: str, schema: str | None = None) -> int:
    from psycopg import sql

    with pg_connect(target) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema or target.pg_schema, table))
        ).fetchone()
    return int(row[0]) if row else 0
