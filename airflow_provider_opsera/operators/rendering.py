"""What the operators make of their rendered templates: the data interval and the filters.

Shared by the object-storage operators and the Postgres transfer, so both give the same advice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pendulum import DateTime

from airflow_provider_opsera.timeutils import parse_interval

NO_INTERVAL = (
    "{name} rendered to {value!r}: this run has no data interval. Give the DAG a timetable with data "
    "intervals (e.g. schedule=CronDataIntervalTimetable('@daily', timezone='UTC')), or pass start and end."
)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() in ("", "None"))


def blank_to_none(filters: Mapping[str, Any]) -> dict[str, Any]:
    """A filter value template that rendered nothing (``""``, ``"None"``) filters on nothing."""
    return {k: None if _blank(v) else v for k, v in filters.items()}


def rendered_interval(start: Any, end: Any) -> tuple[DateTime, DateTime]:
    """The run's ``[start, end)``; a start or end that rendered nothing is an error that says what to do."""
    for name, value in (("start", start), ("end", end)):
        if _blank(value):
            raise ValueError(NO_INTERVAL.format(name=name, value=value))
    return parse_interval(start, end)


def rendered_filters(filters: Any) -> dict[str, Any] | None:
    """The rendered ``filters`` dict, blank values dropped to ``None``."""
    if filters is None:
        return None
    if not isinstance(filters, Mapping):
        raise ValueError(
            f"filters must be a dict (template its values, e.g. {{'type': '{{{{ params.type }}}}'}}), "
            f"not {filters!r}."
        )
    return blank_to_none(filters)
