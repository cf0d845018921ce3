"""Helpers shared by the Postgres transfer tests."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec
from connections import postgres_conn_json as conn_json  # noqa: F401  (re-exported)
from psycopg import sql
from psycopg.types.json import set_json_loads

from airflow_provider_opsera.catalogue import FieldKind, OpseraLogType
from airflow_provider_opsera.transfers.postgres.table import layout_for

FAST = {"retry_min_wait": 0.01, "retry_max_wait": 0.05}


def snapshot(pg: Any, schema: str, table: str) -> list[tuple[Any, ...]] | None:
    """Every row with its row version (``xmin``): equal snapshots mean no row was inserted, changed or even
    rewritten. ``None`` if the table does not exist."""
    from psycopg import sql

    name = sql.Identifier(schema, table)
    if pg.execute("SELECT to_regclass(%s)", (name.as_string(pg),)).fetchone()[0] is None:
        return None
    # The row's text form hashed on the server: every column, without decoding 50,000 jsonb values here.
    query = sql.SQL("SELECT _id, xmin::text, md5(t::text) FROM {} t ORDER BY _id").format(name)
    return pg.execute(query).fetchall()


def when(
    condition: Callable[[], bool], action: Callable[[], None], timeout: float = 60.0
) -> threading.Thread:
    """Run ``action`` in a thread as soon as ``condition`` holds (polled), to act in the middle of a load."""

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                action()
                return
            time.sleep(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def instant(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def assert_table_is(
    pg: Any, schema: str, table: str, log_type: OpseraLogType, truth: list[dict[str, Any]]
) -> None:
    """The table holds exactly ``truth``: one row per record, raw equal to the record, typed columns from it."""
    layout = layout_for(log_type)
    set_json_loads(msgspec.json.decode, pg)  # decoding 50,000 rows' jsonb is most of this check's time
    names = sql.SQL(", ").join(sql.Identifier(c.name) for c in layout.columns)
    query = sql.SQL("SELECT {} FROM {}").format(names, sql.Identifier(schema, table))
    rows = {r[0]: r for r in pg.execute(query).fetchall()}
    assert len(rows) == len(truth)
    for record in truth:
        row = dict(zip([c.name for c in layout.columns], rows[record["_id"]], strict=True))
        assert row["raw"] == record
        assert row["created_at"] == instant(record["createdAt"])
        for column in layout.fields:
            value = record.get(column.field or "")
            expected = instant(value) if column.kind is FieldKind.TIMESTAMP and value is not None else value
            assert row[column.name] == expected, (record["_id"], column.name)
            if column.kind is FieldKind.JSON and value is not None:
                assert isinstance(row[column.name], dict)
