"""The one decision of the pipeline status sensor: wait, succeed or fail, from the records seen.

Pure: no I/O, no clock. Poke mode, reschedule mode and the deferrable trigger all call :func:`decide`, so the
three modes cannot disagree about what a status means.

Which record decides: the newest (by ``createdAt``, then ``_id``) pipeline-activity record of the watched
pipeline, of the watched run (``run_count``; ``None`` means the highest run count among the pipeline's
records), and of the watched step when ``step_id`` or ``step_name`` is given.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_opsera.timeutils import created_key

#: Statuses of a run or step still in progress. ``paused`` is an approval gate: the run waits for a person.
DEFAULT_WAITING_STATUSES: frozenset[str] = frozenset(
    {"analyzing", "running", "processing event", "queued", "pending", "created", "paused"}
)
#: Statuses of a run or step that ended badly.
DEFAULT_FAILURE_STATUSES: frozenset[str] = frozenset(
    {"failed", "failure", "error", "rejected", "stopped", "halted", "cancelled", "canceled"}
)
#: What Opsera's UI shows for success; only documentation here (``success_statuses=None`` accepts any other).
KNOWN_SUCCESS_STATUSES: tuple[str, ...] = ("success", "successful", "passed", "completed")


def normalise_status(value: Any) -> str:
    """A status as compared: lower case, surrounding blanks dropped, inner runs of blanks as one space."""
    if value is None:
        return ""
    return " ".join(str(value).split()).lower()


def _status_set(name: str, values: Any) -> frozenset[str]:
    if isinstance(values, str):
        # A bare string would otherwise become a set of its letters.
        values = [values]
    try:
        items = list(values)
    except TypeError:
        raise ValueError(f"{name} must be a list of statuses, not {type(values).__name__}.") from None
    out = frozenset(normalise_status(v) for v in items)
    if "" in out:
        raise ValueError(f"{name} holds an empty status.")
    return out


@dataclass(frozen=True)
class StatusRules:
    """How statuses are read: ``waiting``, ``failure``, and ``success`` (``None``: anything else succeeds)."""

    waiting: frozenset[str] = DEFAULT_WAITING_STATUSES
    failure: frozenset[str] = DEFAULT_FAILURE_STATUSES
    success: frozenset[str] | None = None

    @classmethod
    def build(cls, waiting: Any = None, failure: Any = None, success: Any = None) -> StatusRules:
        """Rules from a DAG author's lists (``None``: the defaults); a status in two sets is a ``ValueError``."""
        rules = cls(
            waiting=DEFAULT_WAITING_STATUSES if waiting is None else _status_set("waiting_statuses", waiting),
            failure=DEFAULT_FAILURE_STATUSES if failure is None else _status_set("failure_statuses", failure),
            success=None if success is None else _status_set("success_statuses", success),
        )
        named = [("waiting_statuses", rules.waiting), ("failure_statuses", rules.failure)]
        if rules.success is not None:
            named.append(("success_statuses", rules.success))
        for i, (a, sa) in enumerate(named):
            for b, sb in named[i + 1 :]:
                both = sorted(sa & sb)
                if both:
                    raise ValueError(
                        f"{', '.join(both)} is in both {a} and {b}; a status can only mean one thing."
                    )
        return rules

    def to_json(self) -> dict[str, Any]:
        """The rules as JSON, keyed like :meth:`build`'s arguments: ``build(**rules.to_json()) == rules``."""
        return {
            "waiting": sorted(self.waiting),
            "failure": sorted(self.failure),
            "success": None if self.success is None else sorted(self.success),
        }


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def run_of(record: Mapping[str, Any]) -> int | None:
    """A record's ``run_count`` as an integer (the API sends a number; a digit string is accepted)."""
    value = record.get("run_count")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


@dataclass(frozen=True)
class Watch:
    """What the sensor watches: a pipeline, optionally one run and one step of it."""

    pipeline_id: str
    run_count: int | None = None
    step_id: str | None = None
    step_name: str | None = None

    @classmethod
    def build(
        cls, pipeline_id: Any, run_count: Any = None, step_id: Any = None, step_name: Any = None
    ) -> Watch:
        """A watch from a DAG author's (possibly templated, so textual) arguments."""
        pid = _text(pipeline_id)
        if pid is None:
            raise ValueError("pipeline_id is required: the _id of the Opsera pipeline to watch.")
        run: int | None = None
        if run_count is not None and _text(run_count) is not None:
            text = _text(run_count)
            if isinstance(run_count, bool) or text is None or not text.isdigit():
                raise ValueError(f"run_count={run_count!r} must be a run number (a non-negative integer).")
            run = int(text)
        name = _text(step_name)
        return cls(pid, run, _text(step_id), None if name is None else name.lower())

    def of_pipeline(self, record: Mapping[str, Any]) -> bool:
        return _text(record.get("pipeline_id")) == self.pipeline_id

    def of_step(self, record: Mapping[str, Any]) -> bool:
        if self.step_id is not None and _text(record.get("step_id")) != self.step_id:
            return False
        if self.step_name is not None:
            name = _text(record.get("step_name"))
            if name is None or name.lower() != self.step_name:
                return False
        return True

    def describe(self) -> str:
        text = f"pipeline {self.pipeline_id}"
        text += f" run {self.run_count}" if self.run_count is not None else " (newest run)"
        if self.step_id is not None or self.step_name is not None:
            step = " / ".join(s for s in (self.step_name, self.step_id) if s)
            text += f" step {step}"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "pipeline_id": self.pipeline_id,
            "run_count": self.run_count,
            "step_id": self.step_id,
            "step_name": self.step_name,
        }


def record_order(record: Mapping[str, Any]) -> tuple[str, str]:
    """Sort key: ``createdAt`` (comparable text), then ``_id`` (Mongo ids grow with insertion) for ties."""
    return created_key(record.get("createdAt")) or "", str(record.get("_id") or "")


class Outcome(str, enum.Enum):
    WAIT = "wait"
    SUCCESS = "success"
    FAILURE = "failure"


@dataclass(frozen=True)
class Decision:
    """What to do now, and the record that says so (``None`` when nothing of the watched run was seen)."""

    outcome: Outcome
    record: dict[str, Any] | None
    #: The deciding record's status, normalised.
    status: str | None
    #: One line for the log or the failure message.
    reason: str
    #: True when the status is in none of the sets and ``success_statuses`` was given: waiting, with a warning.
    unknown_status: bool = False


def message_of(record: Mapping[str, Any]) -> str:
    """The record's human message: ``message``, else ``api_response.message``."""
    message = _text(record.get("message"))
    if message is None and isinstance(record.get("api_response"), Mapping):
        message = _text(record["api_response"].get("message"))
    return message or "(no message)"


def target_run(watch: Watch, records: Iterable[Mapping[str, Any]]) -> int | None:
    """The run watched: ``watch.run_count``, else the highest run count among the pipeline's records."""
    if watch.run_count is not None:
        return watch.run_count
    runs = [r for r in (run_of(rec) for rec in records if watch.of_pipeline(rec)) if r is not None]
    return max(runs) if runs else None


def relevant(watch: Watch, records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The fewest records that give the same :func:`decide` answer as ``records`` (at most two).

    The newest record of the target run (for the run count, when it is not fixed) and the newest record of
    the watched step in that run. ``relevant(a + b) == relevant(relevant(a) + b)``: what a poll learned can
    be carried forward in a handful of bytes, in any order.
    """
    mine = [dict(r) for r in records if watch.of_pipeline(r)]
    run = target_run(watch, mine)
    if run is None:
        return []
    of_run = [r for r in mine if run_of(r) == run]
    keep: dict[str, dict[str, Any]] = {}
    if watch.run_count is None and of_run:
        marker = max(of_run, key=record_order)
        keep[str(marker.get("_id"))] = marker
    steps = [r for r in of_run if watch.of_step(r)]
    if steps:
        newest = max(steps, key=record_order)
        keep[str(newest.get("_id"))] = newest
    return sorted(keep.values(), key=record_order)


def decide(watch: Watch, rules: StatusRules, records: Iterable[Mapping[str, Any]]) -> Decision:
    """Wait, succeed or fail, from the newest record of the watched pipeline / run / step in ``records``.

    The caller must only pass records it can prove include the newest one of the watched run and step (a
    complete window reaching up to now); this function trusts that.
    """
    mine: list[Mapping[str, Any]] = [r for r in records if watch.of_pipeline(r)]
    run = target_run(watch, mine)
    if run is None:
        return Decision(Outcome.WAIT, None, None, f"no record of {watch.describe()} yet")
    steps = [r for r in mine if run_of(r) == run and watch.of_step(r)]
    if not steps:
        return Decision(Outcome.WAIT, None, None, f"run {run} of {watch.describe()} has no record yet")
    newest: Mapping[str, Any] = max(steps, key=record_order)
    record = dict(newest)
    status = normalise_status(record.get("status"))
    where = f"{watch.describe()}: run {run}"
    if record.get("step_name") is not None:
        where += f", step {record.get('step_name')}"
    said = f"{where} is {status or '(no status)'!r} ({message_of(record)}; record {record.get('_id')} at {record.get('createdAt')})"
    if not status:
        # A record without a status says nothing about how the run went: never read it as success.
        return Decision(
            Outcome.WAIT, record, status, f"{said}: no status; still waiting", unknown_status=True
        )
    if status in rules.waiting:
        return Decision(Outcome.WAIT, record, status, said)
    if status in rules.failure:
        return Decision(Outcome.FAILURE, record, status, said)
    if rules.success is None or status in rules.success:
        return Decision(Outcome.SUCCESS, record, status, said)
    return Decision(
        Outcome.WAIT,
        record,
        status,
        f"{said}: a status in none of waiting_statuses, failure_statuses or success_statuses; still waiting",
        unknown_status=True,
    )
