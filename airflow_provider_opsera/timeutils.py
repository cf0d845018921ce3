"""Parsing and formatting of the times the API and DAG authors use. Everything is UTC."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pendulum
from pendulum import DateTime

UTC = pendulum.UTC


def to_utc(value: Any, name: str = "time") -> DateTime:
    """A datetime, pendulum DateTime or ISO 8601 string as a UTC DateTime; naive means UTC."""
    try:
        return _to_utc(value, name)
    except OverflowError:
        raise ValueError(f"{name}={value!r} is outside the years 1-9999 in UTC.") from None


def _to_utc(value: Any, name: str) -> DateTime:
    if isinstance(value, DateTime):
        return value.in_timezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return pendulum.instance(value).in_timezone(UTC)
    if isinstance(value, dt.date):
        return pendulum.datetime(value.year, value.month, value.day, tz=UTC)
    if isinstance(value, str) and value.strip():
        try:
            parsed = pendulum.parse(value.strip(), tz=UTC)
        except Exception as err:
            raise ValueError(
                f"{name}={value!r} is not an ISO 8601 date or time (e.g. 2024-05-10T00:00:00Z)."
            ) from err
        if isinstance(parsed, DateTime):
            return parsed.in_timezone(UTC)
        if isinstance(parsed, pendulum.Date):
            return pendulum.datetime(parsed.year, parsed.month, parsed.day, tz=UTC)
        raise ValueError(f"{name}={value!r} is not a date or time.")
    raise ValueError(f"{name} must be a datetime or an ISO 8601 string, not {value!r}.")


def utc_now() -> DateTime:
    """The system clock, in UTC."""
    return pendulum.now(UTC)


def parse_interval(start: Any, end: Any) -> tuple[DateTime, DateTime]:
    """The half-open interval ``[start, end)`` in UTC; ``start >= end`` is a ``ValueError``."""
    lo, hi = to_utc(start, "start"), to_utc(end, "end")
    if lo >= hi:
        raise ValueError(
            f"start ({lo.isoformat()}) must be before end ({hi.isoformat()}). An empty data interval usually "
            "means the DAG's timetable has no data intervals: use CronDataIntervalTimetable, or pass start/end."
        )
    return lo, hi


def sort_key(moment: DateTime) -> str:
    """The comparable text form of a moment: ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    m = moment.in_timezone(UTC)
    # Not strftime: it does not zero-pad years before 1000 on every platform.
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}.{m.microsecond:06d}Z"


#: The API's own time format, ``2024-05-10T23:47:07.460Z``, on a day that exists in every year (February 29th
#: is left to the careful path): the one spelling of it, checked by this regex instead of parsed.
API_TIME = re.compile(
    r"\d{4}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)"
    r"T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{3}Z"
)
# Anything else must at least carry a date and a time of day before it is parsed.
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def api_time_keys(created: list[str]) -> list[str] | None:
    """The fast path: the sort keys of many ``createdAt`` strings, if all are :data:`API_TIME` (the key is
    then the text itself, in microseconds); None if any is not. Its property-tested twin is :func:`parsed_key`,
    one by one."""
    if not all(map(API_TIME.fullmatch, created)):
        return None
    return [c[:23] + "000Z" for c in created]


def parsed_key(created: str) -> str | None:
    """The careful path: the :func:`sort_key` of any ISO 8601 date-time, read by pendulum; else None."""
    if not _DATE_TIME.match(created):
        return None
    try:
        return sort_key(to_utc(created, "createdAt"))
    except (ValueError, OverflowError):
        return None


def created_key(created: Any) -> str | None:
    """The :func:`sort_key` of a record's ``createdAt``, or ``None`` if it is not an ISO 8601 date-time: its
    text if it is :data:`API_TIME` (as :func:`api_time_keys` reads it), else read by :func:`parsed_key`."""
    if not isinstance(created, str):
        return None
    return created[:23] + "000Z" if API_TIME.fullmatch(created) else parsed_key(created)


def floor_minute(moment: DateTime) -> DateTime:
    return moment.replace(second=0, microsecond=0)


def ceil_minute(moment: DateTime) -> DateTime:
    floored = floor_minute(moment)
    return floored if floored == moment else floored.add(minutes=1)


def floor_day(moment: DateTime) -> DateTime:
    return moment.start_of("day")


def ceil_day(moment: DateTime) -> DateTime:
    floored = floor_day(moment)
    return floored if floored == moment else floored.add(days=1)
