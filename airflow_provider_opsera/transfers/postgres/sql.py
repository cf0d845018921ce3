"""The SQL of a load, composed with :mod:`psycopg.sql` so every schema, table and column name is quoted safely.

Pure: these functions build statements; :mod:`.load` runs them.
"""

from __future__ import annotations

from psycopg import sql

from airflow_provider_opsera.transfers.postgres.table import LOADED_AT, Column, TableLayout

#: The column of the records' ``updatedAt``, which orders two versions of one record.
UPDATED_AT = "updated_at"

#: First key of the advisory lock taken around the upsert (the second is the table's name hash), so that
#: concurrent loads into one table create it once and upsert one after the other.
LOCK_NAMESPACE = 0x0F5E4A  # "opsera"
#: First key of the advisory lock taken around creating a schema (the second is the schema's name hash):
#: concurrent ``CREATE SCHEMA IF NOT EXISTS`` of one new schema is not safe in PostgreSQL (all but one fail
#: with a unique violation on ``pg_namespace_nspname_index``), and loads of several tables share a schema.
SCHEMA_LOCK_NAMESPACE = 0x0F5E4B

#: Existing columns of a table (none if the table does not exist). Parameters: schema, table.
EXISTING_COLUMNS = sql.SQL(
    "SELECT a.attname FROM pg_catalog.pg_attribute a "
    "JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped"
)
#: Whether a schema exists. Parameter: schema.
SCHEMA_EXISTS = sql.SQL("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s")
#: Serialises loads into one table until commit. Parameter: ``schema.table``.
LOCK_TABLE = sql.SQL("SELECT pg_advisory_xact_lock({}, hashtext(%s))").format(sql.Literal(LOCK_NAMESPACE))
#: The same lock if it is free now (then held until commit): one row, true or false. Parameter: ``schema.table``.
TRY_LOCK_TABLE = sql.SQL("SELECT pg_try_advisory_xact_lock({}, hashtext(%s))").format(
    sql.Literal(LOCK_NAMESPACE)
)
#: Serialises the creation of one schema until commit. Parameter: the schema.
LOCK_SCHEMA = sql.SQL("SELECT pg_advisory_xact_lock({}, hashtext(%s))").format(
    sql.Literal(SCHEMA_LOCK_NAMESPACE)
)
#: The same lock if it is free now (then held until commit): one row, true or false. Parameter: the schema.
TRY_LOCK_SCHEMA = sql.SQL("SELECT pg_try_advisory_xact_lock({}, hashtext(%s))").format(
    sql.Literal(SCHEMA_LOCK_NAMESPACE)
)


def target(schema: str, table: str) -> sql.Identifier:
    return sql.Identifier(schema, table)


def _names(columns: tuple[Column, ...], prefix: str | None = None) -> sql.Composed:
    if prefix is None:
        return sql.SQL(", ").join(sql.Identifier(c.name) for c in columns)
    return sql.SQL(", ").join(sql.Identifier(prefix, c.name) for c in columns)


def _definition(column: Column, primary_key: bool = True) -> sql.Composed:
    if column.name == "_id":
        return sql.SQL("{} text" + (" PRIMARY KEY" if primary_key else " NOT NULL")).format(
            sql.Identifier(column.name)
        )
    not_null = " NOT NULL" if column.name in ("created_at", "raw") else ""
    return sql.SQL("{} " + column.sql_type + not_null).format(sql.Identifier(column.name))


def create_schema(schema: str) -> sql.Composed:
    return sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))


def create_table(layout: TableLayout, schema: str, table: str, primary_key: bool = True) -> sql.Composed:
    """The table; without ``primary_key`` for a first load, which adds it (:func:`add_primary_key`) after
    the rows: one index build instead of one index insert per row."""
    columns: list[sql.Composable] = [_definition(c, primary_key) for c in layout.columns]
    columns.append(sql.SQL("loaded_at timestamptz NOT NULL DEFAULT now()"))
    return sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
        target(schema, table), sql.SQL(", ").join(columns)
    )


def add_primary_key(schema: str, table: str) -> sql.Composed:
    """The primary key of a table created without one; named ``<table>_pkey`` as if declared inline."""
    return sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (_id)").format(target(schema, table))


def create_indexes(layout: TableLayout, schema: str, table: str) -> list[sql.Composed]:
    return [
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
            sql.Identifier(layout.index_name(table, columns)),
            target(schema, table),
            sql.SQL(", ").join(map(sql.Identifier, columns)),
        )
        for columns in layout.indexes
    ]


def add_column(schema: str, table: str, column: Column) -> sql.Composed:
    """For a table created before the catalogue knew this field: old rows keep NULL there."""
    return sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} " + column.sql_type).format(
        target(schema, table), sql.Identifier(column.name)
    )


def create_staging(layout: TableLayout, staging: str) -> sql.Composed:
    """The temporary table COPY writes into: no constraints (fast), dropped with the transaction."""
    columns = sql.SQL(", ").join(
        sql.SQL("{} " + c.sql_type).format(sql.Identifier(c.name)) for c in layout.staged
    )
    return sql.SQL("CREATE TEMPORARY TABLE {} ({}) ON COMMIT DROP").format(sql.Identifier(staging), columns)


def copy_into(layout: TableLayout, staging: str) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(staging), _names(layout.staged))


def copy_into_table(layout: TableLayout, schema: str, table: str, *, loaded_at: bool = False) -> sql.Composed:
    """COPY straight into the table: every column, and ``loaded_at`` too if asked (else its default)."""
    names = _names((*layout.columns, LOADED_AT) if loaded_at else layout.columns)
    return sql.SQL("COPY {} ({}) FROM STDIN").format(target(schema, table), names)


#: The transaction's start time as text, which COPY reads back as this load's ``loaded_at``.
NOW = sql.SQL("SELECT now()::text")


def from_raw(column: Column) -> sql.Composed:
    """A jsonb field's value, taken from ``raw``: an object or array as it is, anything else NULL (the row
    mapper has already failed the load, or counted the value as kept only in raw, for a non-null scalar)."""
    value = sql.SQL("{} -> {}").format(sql.Identifier("raw"), sql.Literal(column.field))
    return sql.SQL("CASE WHEN jsonb_typeof({0}) IN ('object', 'array') THEN {0} END").format(value)


def existing_id(schema: str, table: str) -> sql.Composed:
    """One of the given ``_id`` values (parameter: a text array) that the table already holds, if any: a load
    into an existing table COPYs a chunk of records straight in when none of them is there yet."""
    return sql.SQL("SELECT _id FROM {} WHERE _id = ANY(%s::text[]) LIMIT 1").format(target(schema, table))


def loaded_here(schema: str, table: str, staging: str) -> sql.Composed:
    """A staged ``_id`` this very transaction has already COPYed straight into the table, if any: such rows
    carry the transaction's ``now()`` as ``loaded_at`` (another load's rows carry its own start time)."""
    return sql.SQL(
        "SELECT s._id FROM {} s JOIN {} t ON t._id = s._id WHERE t.loaded_at = now() LIMIT 1"
    ).format(sql.Identifier(staging), target(schema, table))


def duplicate_id(table: str | sql.Identifier) -> sql.Composed:
    """An ``_id`` staged more than once, if any: a hash aggregate over the ids, cheaper than sorting rows."""
    name = table if isinstance(table, sql.Identifier) else sql.Identifier(table)
    return sql.SQL("SELECT _id FROM {} GROUP BY _id HAVING count(*) > 1 LIMIT 1").format(name)


def upsert(layout: TableLayout, schema: str, table: str, staging: str) -> sql.Composed:
    """One ``INSERT ... ON CONFLICT (_id) DO UPDATE`` from the staging table; returns (inserted, updated).

    Rows whose content is unchanged are left alone (no new row version, ``loaded_at`` kept), so a rerun
    changes nothing. A stored row is never replaced by an older version of its record (:func:`not_older`).
    Rows go in staging (API) order, unsorted: sorting the wide rows spills to disk and adds
    a fifth to the statement, and the advisory lock (:data:`LOCK_TABLE`) already keeps concurrent loads from
    deadlocking. :func:`duplicate_id` has made sure no ``_id`` was staged twice.
    """
    columns = layout.columns
    updated = [c for c in columns if c.name != "_id"]
    assignments = sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c.name)) for c in (*updated, LOADED_AT)
    )
    guard = not_older(layout)
    return sql.SQL(
        "WITH upserted AS ("
        "INSERT INTO {target} AS t ({names}, loaded_at) "
        "SELECT {values}, now() FROM {staging} "
        "ON CONFLICT (_id) DO UPDATE SET {assignments} "
        "WHERE ({old}) IS DISTINCT FROM ({new}){newer} "
        "RETURNING (t.xmax = 0) AS inserted"
        ") SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM upserted"
    ).format(
        target=target(schema, table),
        names=_names(columns),
        values=sql.SQL(", ").join(
            from_raw(c) if c in layout.derived else sql.Identifier(c.name) for c in columns
        ),
        staging=sql.Identifier(staging),
        assignments=assignments,
        old=_names(tuple(updated), "t"),
        new=_names(tuple(updated), "excluded"),
        newer=sql.SQL(" AND {}").format(guard) if guard is not None else sql.SQL(""),
    )


def not_older(layout: TableLayout) -> sql.Composed | None:
    """The upsert's guard on ``updated_at`` (the record's ``updatedAt``): a staged version replaces the stored
    row only if the stored row has no ``updated_at``, or the staged one's is as new or newer. A version without
    ``updatedAt`` therefore never replaces one with it (it cannot show it is newer). None for a layout
    without the column."""
    if UPDATED_AT not in {c.name for c in layout.columns}:
        return None
    column = sql.Identifier(UPDATED_AT)
    return sql.SQL("(t.{0} IS NULL OR excluded.{0} >= t.{0})").format(column)
