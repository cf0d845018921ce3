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

_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_DAY_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_minute_prefix: dict[int, str] = {}


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
        m = value.astimezone(dt.timezone.utc) if value.tzinfo is not None else value
        # by fields, not by subtraction: pendulum's difference is an Interval with its own arithmetic
        seconds = (m.toordinal() - _EPOCH_ORDINAL) * 86400 + m.hour * 3600 + m.minute * 60 + m.second
        micros = seconds * 1_000_000 + m.microsecond
        return -((-micros) // 1000) if ceil else micros // 1000
    if isinstance(value, dt.date):
        return (value.toordinal() - _EPOCH_ORDINAL) * MS_DAY
    raise TypeError(f"cannot read a time from {type(value).__name__}")


def from_ms(ms: int) -> pendulum.DateTime:
    """The UTC moment of an epoch-milliseconds value."""
    return pendulum.from_timestamp(ms // MS_SECOND, tz="UTC").add(microseconds=(ms % MS_SECOND) * 1000)


def iso_ms(ms: int) -> str:
    """``2022-05-10T17:09:24.080Z``: the API's timestamp format, built without datetime objects (hot path)."""
    minute, rest = divmod(ms, MS_MINUTE)
    prefix = _minute_prefix.get(minute)
    if prefix is None:
        if len(_minute_prefix) > 200_000:  # a page's records share minutes; the cache only needs recent ones
            _minute_prefix.clear()
        day, minutes = divmod(minute, 24 * 60)
        date = dt.date.fromordinal(day + _EPOCH_ORDINAL).isoformat()
        prefix = _minute_prefix[minute] = f"{date}T{minutes // 60:02d}:{minutes % 60:02d}:"
    return f"{prefix}{rest // 1000:02d}.{rest % 1000:03d}Z"


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
