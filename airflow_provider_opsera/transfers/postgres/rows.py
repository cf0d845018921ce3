"""From one record's JSON bytes to one table row: pure, driven by the catalogue's field kinds.

A row is ``(_id, created_at, <known fields...>, raw)`` in ``TableLayout.staged`` order: ``raw`` is the
record's JSON text exactly as the API sent it (unknown fields included); the typed columns are decoded from it.
Times are ISO 8601 text in UTC (the API's own text when it is in the API's format), which COPY reads as
timestamptz: cheaper than making datetime objects only for the driver to format them back into text.
jsonb fields are checked here but not staged: the upsert takes them from ``raw`` by the same rule. A known
field whose value has the wrong type is an :class:`OpseraRecordError` naming the record's ``_id`` and the
field, unless the mapper was told to keep such values only in ``raw`` (``on_type_mismatch="raw_only"``), in
which case its column is NULL.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections import Counter
from collections.abc import Sequence
from typing import Annotated, Any

import msgspec

from airflow_provider_opsera.catalogue import FieldKind, OpseraLogType
from airflow_provider_opsera.exceptions import OpseraRecordError
from airflow_provider_opsera.responses import Record
from airflow_provider_opsera.timeutils import API_TIME, to_utc
from airflow_provider_opsera.transfers.postgres.table import TableLayout, layout_for


class OnTypeMismatch(str, enum.Enum):
    """What a documented field whose value has an unexpected type does. Plain strings (``"fail"``) are
    accepted wherever one is expected."""

    #: The load fails with an :class:`OpseraRecordError` naming the record and the field.
    FAIL = "fail"
    #: The column is NULL; the value stays in ``raw`` and is counted.
    RAW_ONLY = "raw_only"

    def __str__(self) -> str:
        return self.value


#: The values of :class:`OnTypeMismatch` as plain strings, for checking a parameter early.
ON_TYPE_MISMATCH: tuple[str, ...] = tuple(m.value for m in OnTypeMismatch)

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
_UTC = dt.timezone.utc
_MISMATCH = object()


_KIND_WORDS = {
    FieldKind.TEXT: "a string",
    FieldKind.INTEGER: "an integer",
    FieldKind.TIMESTAMP: "an ISO 8601 time",
    FieldKind.JSON: "an object or array",
}


def describe(value: Any) -> str:
    """How a decoded JSON value reads in an error message: its JSON type and a short excerpt."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"a string ({text!r})"
    if isinstance(value, msgspec.Raw):
        return describe(msgspec.json.decode(value))
    text = msgspec.json.encode(value).decode()
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{'an array' if isinstance(value, list) else 'an object'} ({text})"


# -- one value of each kind -------------------------------------------------------------------------------
def _text(value: Any) -> Any:
    return value if value is None or isinstance(value, str) else _MISMATCH


def _integer(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and INT_MIN <= value <= INT_MAX:
        return value
    return _MISMATCH


def _timestamp(value: Any) -> Any:
    """An ISO 8601 time as text in UTC (the API's own text if it is in the API's format), for timestamptz."""
    if value is None:
        return None
    if isinstance(value, str) and API_TIME.fullmatch(value):
        return value
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
        except ValueError:
            # Other ISO 8601 forms (basic, week dates), but with a date: pendulum reads "10:00" as today.
            if len(value) < 8 or not value[:4].isdigit():
                return _MISMATCH
            try:
                moment = to_utc(value)
            except ValueError:
                return _MISMATCH
    else:
        return _MISMATCH
    # Naive means UTC, as everywhere in the provider (the session's time zone must not decide).
    if moment.tzinfo is None:
        return moment.replace(tzinfo=_UTC).isoformat()
    try:
        return moment.astimezone(_UTC).isoformat()
    except (
        OverflowError
    ):  # e.g. 0001-01-01T00:30+01:00 lies before year 1 in UTC: PostgreSQL reads the offset
        return moment.isoformat()


def _json(value: Any) -> Any:
    """A ``msgspec.Raw`` object or array passes (the upsert takes it from ``raw``); JSON ``null`` or absent is
    NULL; anything else is a mismatch. The same rule as :func:`.sql.from_raw`."""
    if value is None:
        return None
    data = bytes(value).strip()
    if data[:1] in (b"{", b"["):
        return value
    return None if data == b"null" else _MISMATCH


_CHECKS = {
    FieldKind.TEXT: _text,
    FieldKind.INTEGER: _integer,
    FieldKind.TIMESTAMP: _timestamp,
    FieldKind.JSON: _json,
}


# -- decoders -------------------------------------------------------------------------------------------
def _strict_type(kind: FieldKind) -> Any:
    """The msgspec type that accepts exactly the well-typed values of a kind (the fast path)."""
    if kind is FieldKind.INTEGER:
        return Annotated[int, msgspec.Meta(ge=INT_MIN, le=INT_MAX)] | None
    if kind is FieldKind.TIMESTAMP:
        # The API's own format passes as it is; any other time takes the checked path (and is parsed there).
        return Annotated[str, msgspec.Meta(pattern=rf"^(?:{API_TIME.pattern})\Z")] | None
    if kind is FieldKind.JSON:
        return msgspec.Raw  # checked and decoded to text after; a Raw field never fails decoding
    return str | None


def _struct(name: str, kinds: Sequence[tuple[str, FieldKind]], strict: bool) -> type[msgspec.Struct]:
    # Field names are positional (f0, f1, ...): JSON names like ``__v`` are not valid struct attributes.
    fields = [
        (
            f"f{i}",
            _strict_type(kind) if strict or kind is FieldKind.JSON else Any,
            msgspec.field(name=field, default=None),
        )
        for i, (field, kind) in enumerate(kinds)
    ]
    return msgspec.defstruct(name, fields, gc=False)


class RowMapper:
    """Turns records of one log type into staged rows: ``TableLayout.staged`` order, every value checked.

    :param log_type: the log type whose catalogue fields become typed columns.
    :param on_type_mismatch: ``"fail"`` (default) raises :class:`OpseraRecordError` for a known field with an
        unexpected type; ``"raw_only"`` loads NULL in its column instead (the value stays in ``raw``) and
        counts it in :attr:`mismatches`.
    """

    def __init__(
        self, log_type: OpseraLogType | str, on_type_mismatch: OnTypeMismatch | str = "fail"
    ) -> None:
        try:
            self.on_type_mismatch = OnTypeMismatch(on_type_mismatch)
        except ValueError:
            raise ValueError(
                f"on_type_mismatch must be one of {', '.join(ON_TYPE_MISMATCH)}, not {on_type_mismatch!r}."
            ) from None
        self.layout: TableLayout = layout_for(log_type)
        kinds = [(c.field or "", c.kind) for c in self.layout.fields]
        self._checks = [_CHECKS[k] for _, k in kinds]
        # The fast path decodes a whole response at once, failing unless every value is well typed; the careful
        # path decodes one record with any values, then checks each by its kind.
        well_typed = _struct("WellTypedRecord", kinds, strict=True)
        self._well_typed = msgspec.json.Decoder(list[well_typed])  # type: ignore[valid-type]
        self._loose = msgspec.json.Decoder(_struct("LooseRecord", kinds, strict=False))
        # jsonb fields are checked but not staged: the upsert takes them from raw.
        self._json_at = [i for i, (_, k) in enumerate(kinds) if k is FieldKind.JSON]
        self._staged = [i for i, (_, k) in enumerate(kinds) if k is not FieldKind.JSON]
        #: ``raw_only`` mode: how many values of each field were kept only in ``raw``.
        self.mismatches: Counter[str] = Counter()
        #: ``raw_only`` mode: the first few ``(_id, field, value description)`` kept only in ``raw``.
        self.examples: list[tuple[str, str, str]] = []

    @property
    def log_type(self) -> OpseraLogType:
        return self.layout.log_type

    def batch_rows(self, batch: Sequence[Record], *, derived: bool = False) -> list[tuple[Any, ...]]:
        """:meth:`row` of every record of one response: in one pass (:meth:`well_typed_rows`) when all are
        well typed, else record by record, which names the first record at fault."""
        rows = self.well_typed_rows(batch, derived=derived)
        return rows if rows is not None else [self.row(r, derived=derived) for r in batch]

    def well_typed_rows(
        self, batch: Sequence[Record], *, derived: bool = False
    ) -> list[tuple[Any, ...]] | None:
        """The fast path: the rows of a whole response, decoded in one pass, if every record is JSON bytes
        without ``\\u0000`` and every known value is well typed (jsonb values are still checked one by one);
        None if not. Its property-tested twin is :meth:`row`."""
        payloads = [r.payload for r in batch]
        if not all(type(p) is bytes for p in payloads):
            return None
        joined = b"[" + b",".join(payloads) + b"]"
        if b"\\u0000" in joined:
            return None
        try:
            decoded = self._well_typed.decode(joined)
        except msgspec.ValidationError:
            return None
        rows = []
        for record, struct in zip(batch, decoded, strict=True):
            values = list(msgspec.structs.astuple(struct))
            for i in self._json_at:  # a Raw value passes any decode: an object or array only
                value = _json(values[i])
                values[i] = value if value is not _MISMATCH else self._mismatch(record.id, i, values[i])
            rows.append(self._row(record, values, record.payload, derived))
        return rows

    def row(self, record: Record, *, derived: bool = False) -> tuple[Any, ...]:
        """The careful path: the staged row of one record (``payload`` as the API's JSON bytes, or a dict),
        every value checked by its kind: ``_id``, ``created_at``, the fields other than jsonb ones, and
        ``raw``, the record's JSON text.

        With ``derived``, the jsonb fields too (as JSON text, or None): the row of every
        :attr:`TableLayout.columns`, for a COPY straight into the table.
        """
        data = record.payload
        if not isinstance(data, (bytes, bytearray, memoryview)):
            data = msgspec.json.encode(data)
        data = bytes(data)
        if b"\\u0000" in data:
            self._refuse_nul(record.id, data)
        return self._row(record, self._checked(record.id, data), data, derived)

    def _row(self, record: Record, values: list[Any], data: bytes, derived: bool) -> tuple[Any, ...]:
        """The row from a record's checked field values and its JSON bytes."""
        text = data.decode()
        if not derived:
            return (record.id, record.key, *[values[i] for i in self._staged], text)
        for i in self._json_at:
            if values[i] is not None:
                values[i] = bytes(values[i]).decode()
        return (record.id, record.key, *values, text)

    def _checked(self, record_id: str, data: bytes) -> list[Any]:
        """Every field value of one record, checked by its kind: a mismatch fails, or is kept only in raw."""
        try:
            decoded = msgspec.structs.astuple(self._loose.decode(data))
        except msgspec.ValidationError as err:  # not an object at all: the hook checks that, so rare
            raise OpseraRecordError(
                f"{self.log_type.value} record _id={record_id} is not a JSON object ({err}).", record_id
            ) from None
        values = []
        for i, (check, value) in enumerate(zip(self._checks, decoded, strict=True)):
            checked = check(value)
            values.append(checked if checked is not _MISMATCH else self._mismatch(record_id, i, value))
        return values

    def _mismatch(self, record_id: str, index: int, value: Any) -> Any:
        column = self.layout.fields[index]
        field, kind = column.field or "", column.kind
        got = describe(value)
        if kind is FieldKind.INTEGER and isinstance(value, int) and not isinstance(value, bool):
            got += ", outside the integer column's range"
        if self.on_type_mismatch is OnTypeMismatch.FAIL:
            raise OpseraRecordError(
                f"{self.log_type.value} record _id={record_id}: field {field!r} should be "
                f"{_KIND_WORDS[kind]} (column type {kind.sql_type}) but is {got}. The API's schema seems to have "
                'changed; pass on_type_mismatch="raw_only" to load such values only in the raw column.',
                record_id,
                field,
            )
        self.mismatches[field] += 1
        if len(self.examples) < 5:
            self.examples.append((record_id, field, got))
        return None

    def _refuse_nul(self, record_id: str, data: bytes) -> None:
        """PostgreSQL can store neither NUL in text nor ``\\u0000`` in jsonb: say which record has one."""

        def has_nul(value: Any) -> bool:
            if isinstance(value, str):
                return "\x00" in value
            if isinstance(value, dict):
                return any(has_nul(k) or has_nul(v) for k, v in value.items())
            if isinstance(value, list):
                return any(has_nul(v) for v in value)
            return False

        if has_nul(msgspec.json.decode(data)):
            raise OpseraRecordError(
                f"{self.log_type.value} record _id={record_id} contains the character \\u0000, which PostgreSQL "
                "cannot store in a text or jsonb column.",
                record_id,
            )


# -- COPY text format, for drivers without psycopg 3's write_row ---------------------------------------------
def copy_text(value: Any) -> str:
    """One value in PostgreSQL's COPY text format (``\\N`` for NULL, backslash escapes)."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def copy_line(row: Sequence[Any]) -> str:
    """One row as a line of COPY text format."""
    return "\t".join(map(copy_text, row)) + "\n"
