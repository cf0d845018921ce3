"""What Opsera's four log endpoints are, as data.

Each log type is one :class:`Endpoint` entry: its path, which time parameters it takes, which filters, its
cap, how it pages, which filter partitions its records (the lever used to split a capped response) and the
record fields it documents. The hook, the validation messages and the Postgres row mapping are generic over
these entries: adding an endpoint is adding an entry, not a branch.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class OpseraLogType(str, enum.Enum):
    """The four Opsera log types. Plain strings (``"audit"``) are accepted wherever one is expected."""

    USER_ACTIVITY = "user_activity"
    AUDIT = "audit"
    TOKEN_ACTIVITY = "token_activity"
    PIPELINE_ACTIVITY = "pipeline_activity"

    def __str__(self) -> str:
        return self.value


class TimeStyle(enum.Enum):
    """How an endpoint is told which time span to return."""

    #: ``date=YYYY-MM-DD`` or ``start=YYYY-MM-DD&end=YYYY-MM-DD`` (and ``range``, relative to now).
    DAYS = "days"
    #: ``date=YYYY-MM-DD`` only.
    SINGLE_DAY = "single_day"
    #: ``start_date``/``start_time``/``end_date``/``end_time``, minute precision.
    MINUTES = "minutes"


#: Query parameters that select time or pages. They are the hook's to set, never a filter's.
TIME_AND_PAGING_KEYS: frozenset[str] = frozenset(
    {
        "date",
        "start",
        "end",
        "range",
        "count",
        "start_date",
        "start_time",
        "end_date",
        "end_time",
        "page",
        "page_size",
    }
)


class FieldKind(str, enum.Enum):
    """The kind of a documented record field: how a record's value is checked, and its Postgres column.

    The value is the column's SQL type (also the type OpenLineage schema facets name).
    """

    TEXT = "text"
    INTEGER = "integer"
    TIMESTAMP = "timestamptz"
    JSON = "jsonb"

    def __str__(self) -> str:
        return self.value

    @property
    def sql_type(self) -> str:
        """The PostgreSQL type of a column of this kind."""
        return str(self.value)


_USER_FIELDS: dict[str, FieldKind] = {
    "user_id": FieldKind.TEXT,
    "user_email": FieldKind.TEXT,
    "type": FieldKind.TEXT,
    "action": FieldKind.TEXT,
    "target_id": FieldKind.TEXT,
    "account": FieldKind.TEXT,
    "updatedAt": FieldKind.TIMESTAMP,
    "__v": FieldKind.INTEGER,
}

#: The ``type`` values the public docs list for user activity and audit records.
USER_ACTIVITY_TYPES: tuple[str, ...] = (
    "authentication",
    "pipeline",
    "registry",
    "analytics_data_entry",
    "analytics_data_mapping_organization",
    "analytics_data_mapping_project",
    "analytics_data_mapping_user",
    "feature_flags",
    "notification_policy",
    "pipeline_template",
    "instructions",
    "policy",
    "tag",
    "task",
)


@dataclass(frozen=True)
class Endpoint:
    """One log endpoint of the Opsera API, described as data."""

    log_type: OpseraLogType
    path: str
    time_style: TimeStyle
    #: The endpoint's own non-time query parameters, accepted in ``filters``.
    filters: tuple[str, ...]
    #: Most records one response can hold.
    cap: int = 1000
    #: Whether the endpoint pages with ``page``/``page_size`` (and reports the total in ``count``).
    paged: bool = False
    #: Whether the endpoint takes ``count`` (how many records to return).
    takes_count: bool = False
    #: Whether the endpoint takes ``range=<int><s|m|h|d|w>`` (relative to now).
    takes_range: bool = False
    #: The filter whose values partition the records: the lever used to split a capped response.
    split_field: str | None = None
    #: Values of ``split_field`` the public docs list; values seen in responses are added at run time.
    split_values: tuple[str, ...] = ()
    #: The record fields the docs list (besides ``_id`` and ``createdAt``), with their kinds.
    fields: Mapping[str, FieldKind] = field(default_factory=dict)
    #: Who may call it, for error messages.
    roles: str = "Site Admins and Power Users"
    scopes: str = '"API Access" or "Security Logs (Read Only)"'

    @property
    def time_params(self) -> frozenset[str]:
        if self.time_style is TimeStyle.MINUTES:
            return frozenset({"start_date", "start_time", "end_date", "end_time"})
        if self.time_style is TimeStyle.SINGLE_DAY:
            return frozenset({"date"})
        return frozenset({"date", "start", "end", "range"})

    @property
    def paging_params(self) -> frozenset[str]:
        if self.paged:
            return frozenset({"page", "page_size"})
        return frozenset({"count"}) if self.takes_count else frozenset()

    @property
    def all_params(self) -> frozenset[str]:
        return frozenset(self.filters) | self.time_params | self.paging_params


ENDPOINTS: dict[OpseraLogType, Endpoint] = {
    e.log_type: e
    for e in (
        Endpoint(
            log_type=OpseraLogType.USER_ACTIVITY,
            path="/api/v1/logs/user/actions",
            time_style=TimeStyle.DAYS,
            filters=("type",),
            takes_count=True,
            takes_range=True,
            split_field="type",
            split_values=USER_ACTIVITY_TYPES,
            fields=_USER_FIELDS,
        ),
        Endpoint(
            log_type=OpseraLogType.AUDIT,
            path="/api/v2/logs/audit/user",
            time_style=TimeStyle.MINUTES,
            filters=("action", "type", "user_id", "user_email"),
            paged=True,
            split_field="type",
            split_values=USER_ACTIVITY_TYPES,
            fields=_USER_FIELDS,
            roles="Administrators, Power Users, Auditors or Security Managers",
            scopes='"API Access", "API Access (Read only)" or "Security Logs (Read Only)"',
        ),
        Endpoint(
            log_type=OpseraLogType.TOKEN_ACTIVITY,
            path="/api/v1/logs/user/tokens",
            time_style=TimeStyle.SINGLE_DAY,
            filters=("scope",),
            split_field="scope",
            split_values=("api",),
            fields={
                "token_id": FieldKind.TEXT,
                "scope": FieldKind.TEXT,
                "target": FieldKind.TEXT,
                "user_id": FieldKind.TEXT,
                "account": FieldKind.TEXT,
                "updatedAt": FieldKind.TIMESTAMP,
                "__v": FieldKind.INTEGER,
            },
        ),
        Endpoint(
            log_type=OpseraLogType.PIPELINE_ACTIVITY,
            path="/api/v1/logs/pipelines",
            time_style=TimeStyle.DAYS,
            filters=("type",),
            takes_count=True,
            takes_range=True,
            split_field="type",
            fields={
                "user_id": FieldKind.TEXT,
                "pipeline_id": FieldKind.TEXT,
                "tool_identifier": FieldKind.TEXT,
                "step_id": FieldKind.TEXT,
                "step_index": FieldKind.INTEGER,
                "step_name": FieldKind.TEXT,
                "step_configuration": FieldKind.JSON,
                "action": FieldKind.TEXT,
                "api_response": FieldKind.JSON,
                "message": FieldKind.TEXT,
                "status": FieldKind.TEXT,
                "run_count": FieldKind.INTEGER,
                "type": FieldKind.TEXT,
                "updatedAt": FieldKind.TIMESTAMP,
                "__v": FieldKind.INTEGER,
            },
        ),
    )
}


def endpoint_for(log_type: OpseraLogType | str) -> Endpoint:
    """The catalogue entry of a log type, given as the enum or its plain string value."""
    try:
        return ENDPOINTS[
            OpseraLogType(str(log_type.value if isinstance(log_type, OpseraLogType) else log_type))
        ]
    except ValueError:
        allowed = ", ".join(t.value for t in OpseraLogType)
        raise ValueError(f"Unknown Opsera log type {log_type!r}; use one of: {allowed}.") from None


def _scalar(key: str, value: Any, log_type: OpseraLogType) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(
            f"Filter {key!r} of {log_type.value} must be a string or an integer, not {type(value).__name__}."
        )
    text = str(value).strip()
    if not text:
        raise ValueError(f"Filter {key!r} of {log_type.value} is empty; leave it out to not filter on it.")
    return text


def validate_filters(log_type: OpseraLogType | str, filters: Mapping[str, Any] | None) -> dict[str, str]:
    """Check ``filters`` against the endpoint's own non-time parameters; return them as query strings.

    A key the endpoint does not take, or a time or paging key, is a ``ValueError`` naming the allowed keys.
    ``None`` values are dropped (a template that rendered nothing filters on nothing).
    """
    endpoint = endpoint_for(log_type)
    if filters is None:
        return {}
    if not isinstance(filters, Mapping):
        raise ValueError(f"filters must be a dict of query parameters, not {type(filters).__name__}.")
    allowed = ", ".join(endpoint.filters)
    out: dict[str, str] = {}
    for key, value in filters.items():
        if key in TIME_AND_PAGING_KEYS:
            raise ValueError(
                f"Filter {key!r} selects time or pages, which the provider sets from start/end itself; "
                f"{endpoint.log_type.value} filters allowed: {allowed}."
            )
        if key not in endpoint.filters:
            raise ValueError(f"{endpoint.log_type.value} does not take filter {key!r}; allowed: {allowed}.")
        if value is None:
            continue
        out[key] = _scalar(key, value, endpoint.log_type)
    return out


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME = re.compile(r"^([01]?[0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$")
_RANGE = re.compile(r"^[1-9][0-9]*[smhdw]$")


def validate_params(log_type: OpseraLogType | str, params: Mapping[str, Any] | None) -> dict[str, str]:
    """Check one raw call's query parameters (filters, time, paging) against the endpoint entry."""
    endpoint = endpoint_for(log_type)
    params = dict(params or {})
    time_keys = {k: params.pop(k) for k in list(params) if k in endpoint.time_params | endpoint.paging_params}
    out = validate_filters(
        endpoint.log_type, {k: v for k, v in params.items() if k not in TIME_AND_PAGING_KEYS}
    )
    stray = sorted(k for k in params if k in TIME_AND_PAGING_KEYS)
    if stray:
        allowed = ", ".join(sorted(endpoint.all_params))
        raise ValueError(f"{endpoint.log_type.value} does not take {', '.join(stray)}; allowed: {allowed}.")
    name = endpoint.log_type.value
    for key, value in time_keys.items():
        if value is None:
            continue
        text = _scalar(key, value, endpoint.log_type)
        if key in {"date", "start", "end", "start_date", "end_date"} and not _DATE.match(text):
            raise ValueError(f"{name}: {key}={text!r} is not a date; use YYYY-MM-DD.")
        if key in {"start_time", "end_time"} and not _TIME.match(text):
            raise ValueError(f"{name}: {key}={text!r} is not a time of day; use HH:MM (UTC).")
        if key == "range" and not _RANGE.match(text):
            raise ValueError(
                f"{name}: range={text!r} must be a positive integer and one of s, m, h, d, w (e.g. 30m)."
            )
        if key in {"count", "page", "page_size"}:
            if not text.isdigit() or int(text) < 1:
                raise ValueError(f"{name}: {key}={text!r} must be a positive integer.")
            if key in {"count", "page_size"} and int(text) > endpoint.cap:
                raise ValueError(f"{name}: {key}={text} is above the API's cap of {endpoint.cap}.")
        out[key] = text
    for time_key, date_key in (("start_time", "start_date"), ("end_time", "end_date")):
        if time_key in out and date_key not in out:
            raise ValueError(f"{name}: {time_key} needs {date_key} as well.")
    if "date" in out and ({"start", "end"} & out.keys()):
        raise ValueError(f"{name}: give either date or start/end, not both.")
    return out
