"""Whether an existing relation can take a load: checked before any row moves, each misfit a clear error.

A table the provider did not create may still serve (a DBA's own DDL, an older layout), so the check asks
only what a load needs: a table (not a view), the columns it writes with types it can write into, ``ON
CONFLICT (_id)``'s unique index, and no other column that refuses a row without a value. Anything else (more
columns, other indexes, a wider integer) is the owner's business and is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import sql

from airflow_provider_opsera.catalogue import FieldKind
from airflow_provider_opsera.exceptions import OpseraError
from airflow_provider_opsera.transfers.postgres.table import LOADED_AT, TableLayout

#: The relation of that name, if any: its kind. Parameters: schema, table.
RELATION_KIND = sql.SQL(
    "SELECT c.relkind FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relname = %s"
)
#: Every column: name, type as PostgreSQL spells it, NOT NULL, and whether it fills itself (default,
#: identity, generated). Parameters: schema, table.
COLUMNS = sql.SQL(
    "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull, "
    "(a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '') "
    "FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
)
#: A unique, non-partial index on exactly ``(_id)``: what ``ON CONFLICT (_id)`` needs. Parameters: schema, table.
UNIQUE_ON_ID = sql.SQL(
    "SELECT 1 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indrelid "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0] "
    "WHERE n.nspname = %s AND c.relname = %s AND i.indisunique AND i.indisvalid AND i.indnatts = 1 "
    "AND i.indpred IS NULL AND i.indexprs IS NULL AND a.attname = '_id'"
)

_KIND_NAMES = {
    "v": "a view",
    "m": "a materialized view",
    "f": "a foreign table",
    "S": "a sequence",
    "i": "an index",
    "I": "a partitioned index",
    "c": "a composite type",
    "t": "a TOAST table",
}

#: Column types a load can write each kind into without losing anything (``format_type`` spellings).
ACCEPTED: dict[FieldKind, frozenset[str]] = {
    FieldKind.TEXT: frozenset({"text", "character varying"}),
    FieldKind.INTEGER: frozenset({"integer", "bigint", "numeric"}),
    FieldKind.TIMESTAMP: frozenset({"timestamp with time zone"}),
    FieldKind.JSON: frozenset({"jsonb"}),
}
#: How the expected type reads in an error message.
_SPELLED = {
    FieldKind.TEXT: "text",
    FieldKind.INTEGER: "integer (or bigint)",
    FieldKind.TIMESTAMP: "timestamptz",
    FieldKind.JSON: "jsonb",
}
#: Columns every row of a load fills, so NOT NULL on them is fine.
_ALWAYS_FILLED = frozenset({"_id", "created_at", "raw", LOADED_AT.name})


@dataclass(frozen=True)
class ExistingColumn:
    name: str
    type: str
    not_null: bool
    fills_itself: bool


def _misfit(schema: str, table: str, problem: str, remedy: str) -> OpseraError:
    return OpseraError(f"Table {schema}.{table} cannot take this load: {problem}. {remedy}")


def check_relation(rows: Any, layout: TableLayout, schema: str, table: str) -> bool:
    """Refuse a relation of that name that is not a table; True if a table exists, False if nothing does.

    ``rows(statement, params)`` runs a query and returns its rows.
    """
    kinds = [kind for (kind,) in rows(RELATION_KIND, (schema, table))]
    if not kinds:
        return False
    kind = kinds[0]
    if kind in ("r", "p"):
        return True
    raise _misfit(
        schema,
        table,
        f"it is {_KIND_NAMES.get(kind, f'a relation of kind {kind!r}')}, not a table",
        f"Load into a table: name another one (the operator's table=), or rename or drop this "
        f"{layout.log_type.value} relation.",
    )


def check_fits(rows: Any, layout: TableLayout, schema: str, table: str) -> None:
    """Raise :class:`OpseraError` naming the table, the column and what is expected, for the first misfit.

    Called for a table that exists, before any record is written to it.
    """
    columns = {
        name: ExistingColumn(name, type_, bool(not_null), bool(fills))
        for name, type_, not_null, fills in rows(COLUMNS, (schema, table))
    }
    missing = sorted(layout.required - columns.keys())
    if missing:
        raise OpseraError(
            f"Table {schema}.{table} exists but lacks the column(s) {', '.join(missing)} that an Opsera "
            f"{layout.log_type.value} table needs; load into a new table, or drop this one."
        )
    for wanted in (*layout.columns, LOADED_AT):
        have = columns.get(wanted.name)
        if have is None:
            continue  # added by the load (a field a newer catalogue knows)
        if have.type not in ACCEPTED[wanted.kind]:
            raise _misfit(
                schema,
                table,
                f"column {wanted.name} is {have.type}, but an Opsera {layout.log_type.value} table needs "
                f"{_SPELLED[wanted.kind]} there",
                f"ALTER TABLE {schema}.{table} ALTER COLUMN {wanted.name} TYPE {wanted.kind.sql_type} USING "
                f"{wanted.name}::{wanted.kind.sql_type} (if its values convert), or load into a new table.",
            )
    for column in columns.values():
        if column.not_null and not column.fills_itself and column.name not in _ALWAYS_FILLED:
            raise _misfit(
                schema,
                table,
                f"column {column.name} is NOT NULL without a default, and a load leaves it empty"
                + (
                    ""
                    if column.name in {c.name for c in layout.columns}
                    else f" (it is not a column of an Opsera {layout.log_type.value} table)"
                ),
                f"ALTER TABLE {schema}.{table} ALTER COLUMN {column.name} DROP NOT NULL, or give it a default.",
            )
    if not rows(UNIQUE_ON_ID, (schema, table)):
        raise _misfit(
            schema,
            table,
            "it has no primary key (or unique index) on _id alone, which the load's upsert "
            "(ON CONFLICT (_id)) needs",
            f"ALTER TABLE {schema}.{table} ADD PRIMARY KEY (_id) (after removing duplicate _id values), or "
            f"load into a new table.",
        )
