"""Which expected intervals the manifests cover: the requested range cut into slots, gaps and overlaps.

Pure: times and :class:`FolderResult` s in, :class:`IntervalResult` s out. A folder's interval is its
manifest's ``[start, end)``, whatever the folder is called, so hourly folders (or folders named otherwise)
are placed by what they say, not by their names.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

import pendulum
from pendulum import DateTime

from airflow_provider_opsera.verify.model import Finding, FolderResult, IntervalResult, Status

_COMPACT = re.compile(r"^\s*(\d+)\s*(m|min|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_step(text: str | dt.timedelta) -> dt.timedelta:
    """``1d``, ``6h``, ``15m``, ``1w`` or an ISO 8601 duration (``P1D``, ``PT1H``) as a timedelta."""
    if isinstance(text, dt.timedelta):
        step = text
    else:
        match = _COMPACT.match(str(text))
        if match:
            step = dt.timedelta(**{_UNITS[match.group(2).lower()]: int(match.group(1))})
        else:
            try:
                parsed = pendulum.parse(str(text).strip())
            except Exception:
                parsed = None
            if not isinstance(parsed, dt.timedelta) or any(
                getattr(parsed, unit, 0) for unit in ("months", "years")
            ):
                raise ValueError(
                    f"interval {text!r} is not a duration such as 1d, 6h, 15m, 1w or P1D (months vary in "
                    "length: verify monthly folders with --interval 1d, their days are covered or not)."
                )
            step = dt.timedelta(seconds=parsed.total_seconds())
    if step <= dt.timedelta(0):
        raise ValueError(f"interval must be positive, not {text!r}.")
    return step


def slots(start: DateTime, end: DateTime, step: dt.timedelta) -> list[tuple[DateTime, DateTime]]:
    """``[start, end)`` cut into consecutive slots of ``step`` (the last one shorter if need be)."""
    if start >= end:
        raise ValueError(f"from ({start.isoformat()}) must be before to ({end.isoformat()}).")
    if (end - start).total_seconds() / step.total_seconds() > 100_000:
        raise ValueError(
            f"[{start.isoformat()}, {end.isoformat()}) holds more than 100,000 intervals of {step}."
        )
    cut, lo = [], start
    while lo < end:
        hi = min(lo + step, end)
        cut.append((lo, hi))
        lo = hi
    return cut


def _fmt(moment: DateTime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _span(lo: DateTime, hi: DateTime) -> str:
    return f"[{_fmt(lo)}, {_fmt(hi)})"


def gaps(
    lo: DateTime, hi: DateTime, covered: Sequence[tuple[DateTime, DateTime]]
) -> list[tuple[DateTime, DateTime]]:
    """The parts of ``[lo, hi)`` that none of ``covered`` covers."""
    found, cursor = [], lo
    for start, end in sorted(covered):
        if start > cursor:
            found.append((cursor, min(start, hi)))
        cursor = max(cursor, end)
        if cursor >= hi:
            break
    if cursor < hi:
        found.append((cursor, hi))
    return [(a, b) for a, b in found if a < b]


def overlaps(folders: Sequence[FolderResult]) -> list[tuple[FolderResult, FolderResult, DateTime, DateTime]]:
    """Every pair of placed folders whose intervals share time, with the time they share."""
    placed = sorted(
        ((f, f.span) for f in folders if f.span is not None), key=lambda item: (item[1], item[0].name)
    )
    pairs = []
    for i, (first, (lo1, hi1)) in enumerate(placed):
        for second, (lo2, hi2) in placed[i + 1 :]:
            if lo2 >= hi1:
                break
            lo, hi = max(lo1, lo2), min(hi1, hi2)
            if lo < hi:
                pairs.append((first, second, lo, hi))
    return pairs


def intervals(
    start: DateTime, end: DateTime, step: dt.timedelta, folders: Sequence[FolderResult]
) -> list[IntervalResult]:
    """One :class:`IntervalResult` per slot: the folders that touch it, its gaps and its overlaps.

    Folders without a known interval are left out (the caller reports them on their own). A folder without
    ``manifest.json`` whose interval is known (from a kept revision, or its ``dt=`` name) touches its slot
    without covering it.
    """
    complete = [f for f in folders if f.manifest_sha256 is not None]
    shared = overlaps(complete)
    results = []
    for lo, hi in slots(start, end, step):
        cell = IntervalResult(lo, hi, folders=[f for f in folders if f.touches(lo, hi)])
        covering = [
            (max(span[0], lo), min(span[1], hi))
            for f in cell.folders
            if f.manifest_sha256 is not None and (span := f.span) is not None
        ]
        cell.gaps = gaps(lo, hi, covering)
        for a, b in cell.gaps:
            whole = (a, b) == (lo, hi)
            cell.own.append(
                Finding(
                    Status.MISSING,
                    "no manifest covers this interval" if whole else f"no manifest covers {_span(a, b)}",
                )
            )
        for first, second, a, b in shared:
            a, b = max(a, lo), min(b, hi)
            if a < b:
                cell.own.append(
                    Finding(Status.OVERLAP, f"{first.name} and {second.name} both cover {_span(a, b)}")
                )
        results.append(cell)
    return results
