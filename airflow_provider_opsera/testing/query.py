"""The four routes as the server sees them, and how a request's query string becomes a :class:`Query`.

Written from the API notes, not from the client's catalogue, so the two can disagree and a test will notice.
v1 routes answer a bad parameter with 400; the v2 audit route validates like a schema layer, with 422.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from airflow_provider_opsera.catalogue import ENDPOINTS, OpseraLogType
from airflow_provider_opsera.testing.clock import (
    MS_DAY,
    MS_HOUR,
    MS_MINUTE,
    MS_SECOND,
    MS_WEEK,
    NO_END,
    NO_START,
    day_start_ms,
)
from airflow_provider_opsera.testing.config import SimulatorConfig

_V1_SCOPES = frozenset({"api", "security-logs"})
_V1_ROLES = frozenset({"site_admin", "power_user"})
_V2_SCOPES = frozenset({"api", "api-readonly", "security-logs"})
_V2_ROLES = frozenset({"site_admin", "administrator", "power_user", "auditor", "security_manager"})
_RANGE = re.compile(r"^(\d+)([smhdw])$")
_UNIT_MS = {"s": MS_SECOND, "m": MS_MINUTE, "h": MS_HOUR, "d": MS_DAY, "w": MS_WEEK}
_HH_MM = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")
_HH_MM_SS = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9]))?$")
_NOT_KEYS = ("page", "page_size", "count")


@dataclass(frozen=True)
class Route:
    """One endpoint: its path, how it takes time ("days", "date" or "minutes"), its filters and who may call it."""

    log_type: OpseraLogType
    style: str
    filters: tuple[str, ...]
    #: Without a time parameter: the last this many ms (None: every record).
    default_span_ms: int | None
    scopes: frozenset[str]
    roles: frozenset[str]
    scopes_text: str
    roles_text: str

    @property
    def path(self) -> str:
        return ENDPOINTS[self.log_type].path

    @property
    def params(self) -> tuple[str, ...]:
        time = {
            "days": ("date", "start", "end", "range", "count"),
            "date": ("date",),
            "minutes": ("start_date", "start_time", "end_date", "end_time", "page", "page_size"),
        }[self.style]
        return (*time, *self.filters)


_V1_TEXT = ('"API Access" or "Security Logs (Read Only)"', "Site Admins and Power Users")
ROUTES: dict[OpseraLogType, Route] = {
    r.log_type: r
    for r in (
        Route(OpseraLogType.USER_ACTIVITY, "days", ("type",), MS_WEEK, _V1_SCOPES, _V1_ROLES, *_V1_TEXT),
        Route(OpseraLogType.PIPELINE_ACTIVITY, "days", ("type",), None, _V1_SCOPES, _V1_ROLES, *_V1_TEXT),
        Route(OpseraLogType.TOKEN_ACTIVITY, "date", ("scope",), MS_WEEK, _V1_SCOPES, _V1_ROLES, *_V1_TEXT),
        Route(
            OpseraLogType.AUDIT,
            "minutes",
            ("action", "type", "user_id", "user_email"),
            None,
            _V2_SCOPES,
            _V2_ROLES,
            '"API Access", "API Access (Read only)" or "Security Logs (Read Only)"',
            "Site Admins, Administrators, Power Users, Auditors and Security Managers",
        ),
    )
}


class ApiError(Exception):
    """A request the server refuses, with the HTTP status and the JSON ``message`` to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Query:
    """A validated request: the window ``[lo, hi)`` in epoch ms, filters, and which slice of the order to serve."""

    log_type: OpseraLogType
    lo: int
    hi: int
    filters: dict[str, str]
    offset: int
    limit: int
    paged: bool
    #: The query apart from its paging: seeds the "random" order and counts page requests for page_shift.
    key: str


def parse(route: Route, pairs: list[tuple[str, str]], config: SimulatorConfig, now_ms: int) -> Query:
    """Check a request's query parameters; raise :class:`ApiError` (400, or 422 on the v2 route) when wrong."""
    params: dict[str, str] = {}
    for key, value in pairs:
        if key in params and config.strict_params:
            raise ApiError(400, f"Query parameter {key!r} is given more than once.")
        params[key] = value
    unknown = sorted(k for k in params if k not in route.params)
    if unknown and config.strict_params:
        raise ApiError(
            400,
            f"Unknown query parameter(s) {', '.join(unknown)}; this route takes: {', '.join(route.params)}.",
        )
    params = {k: v for k, v in params.items() if k in route.params}
    filters = {k: params[k] for k in route.filters if k in params}
    key = (
        route.log_type.value
        + "?"
        + "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k not in _NOT_KEYS)
    )
    if route.style == "minutes":
        lo, hi = _minutes_window(params, config)
        page = _int_param(params, "page", 1, None, 422)
        size = _int_param(params, "page_size", min(config.default_page_size, config.cap), config.cap, 422)
        return Query(route.log_type, lo, hi, filters, (page - 1) * size, size, True, key)
    lo, hi = _days_window(route, params, config, now_ms)
    limit = min(_int_param(params, "count", config.cap, None, 400), config.cap)
    return Query(route.log_type, lo, hi, filters, 0, limit, False, key)


def _int_param(params: dict[str, str], key: str, default: int, most: int | None, status: int) -> int:
    if key not in params:
        return default
    text = params[key]
    if not text.isdigit() or int(text) < 1:
        raise ApiError(status, f"{key}={text!r} must be a positive integer.")
    if most is not None and int(text) > most:
        raise ApiError(status, f"{key}={text} is above the maximum of {most}.")
    return int(text)


def _day(params: dict[str, str], key: str, status: int) -> int:
    start = day_start_ms(params[key])
    if start is None:
        raise ApiError(status, f"{key}={params[key]!r} is not a valid date; use YYYY-MM-DD.")
    return start


def _days_window(
    route: Route, params: dict[str, str], config: SimulatorConfig, now_ms: int
) -> tuple[int, int]:
    given = [k for k in ("date", "start", "end", "range") if k in params]
    if "date" in params and len(given) > 1:
        raise ApiError(400, "Give either date, start/end or range, not several.")
    if "range" in params and len(given) > 1:
        raise ApiError(400, "range cannot be combined with start or end.")
    if "date" in params:
        day = _day(params, "date", 400)
        return day, day + MS_DAY
    if "range" in params:
        match = _RANGE.match(params["range"])
        if not match or int(match.group(1)) == 0:
            raise ApiError(
                400, f"range={params['range']!r} must be a positive integer and one of s, m, h, d, w."
            )
        return now_ms - int(match.group(1)) * _UNIT_MS[match.group(2)], now_ms + 1
    if "start" in params or "end" in params:
        lo = _day(params, "start", 400) if "start" in params else NO_START
        hi = NO_END
        if "end" in params:
            hi = _day(params, "end", 400) + (MS_DAY if config.end_inclusive else 0)
        return lo, hi
    if route.default_span_ms is None:
        return NO_START, NO_END
    return now_ms - route.default_span_ms, now_ms + 1


def _time(params: dict[str, str], key: str, config: SimulatorConfig) -> tuple[int, int]:
    """Milliseconds into the day of an ``HH:MM`` (or ``HH:MM:SS``) time, and the length of its last unit."""
    pattern = _HH_MM_SS if config.accept_seconds else _HH_MM
    match = pattern.match(params[key])
    if not match:
        wanted = "HH:MM or HH:MM:SS" if config.accept_seconds else "HH:MM"
        raise ApiError(422, f"{key}={params[key]!r} does not match the format {wanted}.")
    seconds = match.group(3) if match.re.groups >= 3 else None
    offset = int(match.group(1)) * MS_HOUR + int(match.group(2)) * MS_MINUTE + int(seconds or 0) * MS_SECOND
    return offset, MS_SECOND if seconds else MS_MINUTE


def _minutes_window(params: dict[str, str], config: SimulatorConfig) -> tuple[int, int]:
    for time_key, date_key in (("start_time", "start_date"), ("end_time", "end_date")):
        if time_key in params and date_key not in params:
            raise ApiError(422, f"{time_key} requires {date_key}.")
    lo, hi = NO_START, NO_END
    if "start_date" in params:
        lo = _day(params, "start_date", 422)
        if "start_time" in params:
            lo += _time(params, "start_time", config)[0]
    if "end_date" in params:
        hi, unit = _day(params, "end_date", 422), MS_DAY
        if "end_time" in params:
            offset, unit = _time(params, "end_time", config)
            hi += offset
        if config.end_inclusive:
            hi += unit
    return lo, hi
