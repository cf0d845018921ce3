"""Parsing and formatting of the times the API and DAG authors use. Everything is UTC."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pendulum
from pendulum import DateTime

UTC = pendulum.UTC


def to_utc(value: Any, name: str = "time") -> DateTime:
    """A datetime, pendulum DateTime or ISO 8601 string as a UTC DateTime; naive means UTC."""
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
    return moment.in_timezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def created_key(created: Any) -> str | None:
    """The :func:`sort_key` of a record's ``createdAt``, or ``None`` if it is not an ISO 8601 time.

    The API sends ``2022-05-10T17:09:24.080Z``; that shape is turned into a key without parsing (this runs
    once per record), anything else is parsed.
    """
    if not isinstance(created, str):
        return None
    if len(created) == 24 and created[10] == "T" and created[19] == "." and created[23] == "Z":
        return created[:23] + "000Z"
    try:
        return sort_key(to_utc(created, "createdAt"))
    except ValueError:
        return None


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
