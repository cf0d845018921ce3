"""What the operators make of their rendered templates: the data interval and the filters.

Shared by the object-storage operators and the Postgres transfer, so both give the same advice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pendulum import DateTime

from airflow_provider_opsera.timeutils import parse_interval, to_utc

#: Advice when the DAG's timetable gives its runs no data intervals (or it is not known).
USE_A_DATA_INTERVAL_TIMETABLE = (
    "Give the DAG a timetable with data intervals (e.g. schedule=CronDataIntervalTimetable('@daily', "
    "timezone='UTC')), or pass start and end."
)
#: Advice when the timetable has data intervals, yet Airflow gave this one run an empty or no interval.
PASS_START_AND_END = (
    "That happens e.g. for a manual run on a day where the schedule's time does not exist (a daylight saving "
    "time change skips it), or a run triggered without a logical date. Pass explicit start and end for this "
    "run, or trigger it with a logical date on the schedule."
)
#: Timetables (by class name, Airflow core's and the Task SDK's alike) whose runs have real data intervals.
_DATA_INTERVAL_TIMETABLES = frozenset(
    {"CronDataIntervalTimetable", "DeltaDataIntervalTimetable", "_DataIntervalTimetable"}
)
_FROM_CONTEXT: Any = object()


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() in ("", "None"))


def blank_to_none(filters: Mapping[str, Any]) -> dict[str, Any]:
    """A filter value template that rendered nothing (``""``, ``"None"``) filters on nothing."""
    return {k: None if _blank(v) else v for k, v in filters.items()}


def rendered_interval(start: Any, end: Any, *, timetable: Any = _FROM_CONTEXT) -> tuple[DateTime, DateTime]:
    """The run's ``[start, end)``; no interval or an empty one is an error that says what to do.

    The advice fits the DAG's ``timetable`` (by default the running task's DAG's, if any): a timetable
    without data intervals is the cause, so switching timetables is the advice; with a timetable that has
    data intervals, Airflow gave this one run an empty interval, and passing ``start``/``end`` is.
    """
    for name, value in (("start", start), ("end", end)):
        if _blank(value):
            raise ValueError(_no_interval(f"{name} rendered to {value!r}: ", "no data interval", timetable))
    lo, hi = to_utc(start, "start"), to_utc(end, "end")
    if lo == hi:
        what = f"start and end both rendered to {lo.isoformat()}: "
        raise ValueError(_no_interval(what, "an empty data interval", timetable))
    return parse_interval(start, end)


def _no_interval(what: str, problem: str, timetable: Any) -> str:
    if timetable is _FROM_CONTEXT:
        timetable = _current_timetable()
    if timetable is not None and has_data_intervals(timetable):
        return (
            f"{what}Airflow gave this run {problem}, although the DAG's timetable "
            f"({type(timetable).__name__}) has data intervals. {PASS_START_AND_END}"
        )
    return f"{what}this run has {problem}. {USE_A_DATA_INTERVAL_TIMETABLE}"


def has_data_intervals(timetable: Any) -> bool:
    """Whether the timetable's runs have real data intervals (a cron or delta data-interval timetable, or a
    trigger timetable with an ``interval``)."""
    if {cls.__name__ for cls in type(timetable).__mro__} & _DATA_INTERVAL_TIMETABLES:
        return True
    interval = getattr(timetable, "interval", None)
    if interval is None:
        interval = getattr(timetable, "_interval", None)  # Airflow core's CronTriggerTimetable
    try:
        return bool(interval)
    except Exception:  # a relativedelta or anything else that will not say
        return False


def _current_timetable() -> Any:
    """The running task's DAG's timetable; ``None`` outside a task (or where Airflow will not say)."""
    try:
        from airflow.sdk import get_current_context

        dag = get_current_context().get("dag")
    except Exception:
        return None
    return getattr(dag, "timetable", None)


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
