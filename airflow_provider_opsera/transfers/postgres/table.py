"""The Postgres table of one log type, as data: its columns and indexes, derived from the catalogue.

Every table has ``_id text primary key``, ``created_at timestamptz not null``, one typed column per field the
catalogue lists for the log type (``updatedAt`` becomes ``updated_at``), ``raw jsonb not null`` (the whole
record, unknown fields included) and ``loaded_at timestamptz``. COPY writes the :attr:`TableLayout.staged`
columns; the jsonb field columns are taken from ``raw`` by the upsert.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from airflow_provider_opsera.catalogue import FieldKind, OpseraLogType, endpoint_for

#: Indexes a compliance query needs, besides the primary key: every table is read by time; pipeline activity
#: by run; the user-centred logs by who did it.
_BY_USER = (("user_id", "created_at"),)
EXTRA_INDEXES: dict[OpseraLogType, tuple[tuple[str, ...], ...]] = {
    OpseraLogType.USER_ACTIVITY: _BY_USER,
    OpseraLogType.AUDIT: _BY_USER,
    OpseraLogType.TOKEN_ACTIVITY: _BY_USER,
    OpseraLogType.PIPELINE_ACTIVITY: (("pipeline_id", "run_count"),),
}

#: PostgreSQL truncates longer identifiers, which would make two index names collide silently.
MAX_IDENTIFIER = 63


@dataclass(frozen=True)
class Column:
    """One column: its SQL name, the record field it holds (``None`` for ``raw``/``loaded_at``) and its kind."""

    name: str
    field: str | None
    kind: FieldKind

    @property
    def sql_type(self) -> str:
        return self.kind.sql_type


_ID_COLUMN = Column("_id", "_id", FieldKind.TEXT)
_CREATED_COLUMN = Column("created_at", "createdAt", FieldKind.TIMESTAMP)
_RAW_COLUMN = Column("raw", None, FieldKind.JSON)
#: Set by the database when a row is inserted or its content changes; not part of what COPY writes.
LOADED_AT = Column("loaded_at", None, FieldKind.TIMESTAMP)


def column_name(field: str) -> str:
    """The SQL column of a record field: camelCase becomes snake_case (``updatedAt`` -> ``updated_at``)."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", field).lower()


@dataclass(frozen=True)
class TableLayout:
    """The columns and indexes of a log type's table."""

    log_type: OpseraLogType
    #: The typed columns of the catalogue's fields, in catalogue order.
    fields: tuple[Column, ...]
    #: Column lists of the secondary indexes.
    indexes: tuple[tuple[str, ...], ...]

    @property
    def columns(self) -> tuple[Column, ...]:
        """The table's columns a load writes: ``_id``, ``created_at``, the known fields, ``raw``."""
        return (_ID_COLUMN, _CREATED_COLUMN, *self.fields, _RAW_COLUMN)

    @property
    def staged(self) -> tuple[Column, ...]:
        """The columns COPY writes, in order: all but the jsonb fields, which the upsert takes from ``raw``
        (the server then parses each record's JSON once, not once more per object inside it)."""
        return tuple(c for c in self.columns if c not in self.derived)

    @property
    def derived(self) -> tuple[Column, ...]:
        """The jsonb field columns, filled from ``raw`` by the upsert."""
        return tuple(c for c in self.fields if c.kind is FieldKind.JSON)

    @property
    def required(self) -> frozenset[str]:
        """Columns an existing table must already have; the typed ones can be added to it later."""
        return frozenset({"_id", "created_at", "raw"})

    def index_name(self, table: str, columns: tuple[str, ...]) -> str:
        name = f"{table}_{'_'.join(columns)}_idx"
        if len(name) <= MAX_IDENTIFIER:
            return name
        import hashlib

        digest = hashlib.blake2b(name.encode(), digest_size=4).hexdigest()
        return f"{name[: MAX_IDENTIFIER - len(digest) - 5]}_{digest}_idx"


def default_table(log_type: OpseraLogType | str) -> str:
    """``opsera_<log_type>_logs``, e.g. ``opsera_pipeline_activity_logs``."""
    return f"opsera_{endpoint_for(log_type).log_type.value}_logs"


def layout_for(log_type: OpseraLogType | str) -> TableLayout:
    """The table layout of a log type, from its catalogue entry."""
    endpoint = endpoint_for(log_type)
    fields = tuple(Column(column_name(f), f, kind) for f, kind in endpoint.fields.items())
    layout = TableLayout(
        endpoint.log_type, fields, (("created_at",), *EXTRA_INDEXES.get(endpoint.log_type, ()))
    )
    names = [c.name for c in layout.columns]
    if len(set(names)) != len(names) or "loaded_at" in names:  # a catalogue edit must not break the table
        raise ValueError(f"{endpoint.log_type.value}: catalogue fields map to clashing columns: {names}")
    return layout
