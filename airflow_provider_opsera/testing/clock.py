"""Epoch milliseconds: the simulator's one time representation (UTC, the API's ``createdAt`` precision)."""

from __future__ import annotations

import datetime as dt
import math
import re

import pendulum

MS_SECOND = 1000
MS_MINUTE = 60 * MS_SECOND
MS_HOUR = 60 * MS_MINUTE
MS_DAY = 24 * MS_HOUR
MS_WEEK = 7 * MS_DAY
#: Bounds standing for "no bound" in half-open windows ``[lo, hi)``.
NO_START = -(2**62)
NO_END = 2**62

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_EPOCH_ORDINAL = _EPOCH.date().toordinal()
_DAY_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_day_prefix: dict[int, str] = {}


def to_ms(value: object, *, ceil: bool = False) -> int:
    """Epoch milliseconds of a datetime (naive means UTC), date, ISO string or epoch seconds.

    ``ceil`` rounds sub-millisecond parts up: the first whole millisecond at or after ``value``, which is what a
    half-open bound ``[start, end)`` on millisecond timestamps needs.
    """
    if isinstance(value, bool):
        raise TypeError("a boolean is not a time")
    if isinstance(value, (int, float)):
        seconds = value * MS_SECOND
        return math.ceil(seconds) if ceil else math.floor(seconds)
    if isinstance(value, str):
        value = pendulum.parse(value, tz="UTC")
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)
        micros = (moment - _EPOCH) // dt.timedelta(microseconds=1)
        return -((-micros) // 1000) if ceil else micros // 1000
    if isinstance(value, dt.date):
        return (value.toordinal() - _EPOCH_ORDINAL) * MS_DAY
    raise TypeError(f"cannot read a time from {type(value).__name__}")


def from_ms(ms: int) -> pendulum.DateTime:
    """The UTC moment of an epoch-milliseconds value."""
    return pendulum.from_timestamp(ms // MS_SECOND, tz="UTC").add(microseconds=(ms % MS_SECOND) * 1000)


def iso_ms(ms: int) -> str:
    """``2022-05-10T17:09:24.080Z``: the API's timestamp format, built without datetime objects (hot path)."""
    day, rest = divmod(ms, MS_DAY)
    prefix = _day_prefix.get(day)
    if prefix is None:
        prefix = _day_prefix[day] = dt.date.fromordinal(day + _EPOCH_ORDINAL).isoformat()
    seconds, milli = divmod(rest, MS_SECOND)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{prefix}T{hours:02d}:{minutes:02d}:{seconds:02d}.{milli:03d}Z"


def parse_iso_ms(text: str) -> int:
    """Epoch milliseconds of a record's ``createdAt``."""
    try:
        return to_ms(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:  # Python 3.10 reads only 3 or 6 fraction digits; pendulum reads the rest
        return to_ms(text)


def day_start_ms(text: str) -> int | None:
    """Midnight UTC of a ``YYYY-MM-DD`` day, or None when the text is not a real calendar day."""
    if not _DAY_TEXT.match(text):
        return None
    try:
        return to_ms(dt.date.fromisoformat(text))
    except ValueError:
        return None
