"""One first asset event at a time per alias: a workaround for a race in Airflow's API server (3.0 to 3.4).

When a task records an event through an ``AssetAlias`` for an asset the alias does not resolve to yet, the
API server links the two, and creates the asset if no DAG declares it, inside the request that marks the task
successful. Two such requests at once (the same task of two runs of a backfill, finishing together on two
workers) both insert the same ``asset`` or ``asset_alias_asset`` row; the second fails on the unique key and
Airflow sets that task to ``failed``, with no retry, although its work was done. Only the *first* event of an
alias for an asset is exposed: once the link exists, events are plain inserts.

So, before recording an alias event, an operator asks Airflow whether the alias already resolves to the
asset (nearly always: one lookup, then nothing). If not, this may be the first event: of the instances of
this task now running, the first by (run id, map index) records it; the others wait until the alias resolves
(the first one's success made the link), checking every ``poll`` seconds, for at most ``timeout`` seconds.

- :func:`may_record_now` is the decision, pure;
- :func:`await_first_event_turn` is the loop around it, with Airflow behind a :class:`Lookup` (the task
  SDK's in a worker or ``dag.test()``), a clock and a sleep that tests replace.

Nothing here ever fails a task: a lookup Airflow cannot answer, or a wait that runs out, logs a warning and
the event is recorded as it would have been without this module.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from airflow_provider_opsera.compat import alias_asset_uris

FIRST_EVENT_TIMEOUT = 300.0
FIRST_EVENT_POLL = 2.0

InstanceKey = tuple[str, str]  # (run_id, the task id, or "<task_id>_<map_index>" for a mapped instance)


class Lookup(Protocol):
    """What :func:`await_first_event_turn` asks Airflow."""

    mine: InstanceKey

    def resolves(self, alias_name: str, uri: str) -> bool:
        """Whether ``alias_name`` already resolves to the asset ``uri``."""
        ...

    def running(self) -> Iterable[InstanceKey]:
        """The instances of this task, over all runs, that are running now (this one included)."""
        ...


def may_record_now(resolved: bool, running: Iterable[InstanceKey], mine: InstanceKey) -> bool:
    """Whether this instance may record its alias event now: the alias already resolves to the asset, or this
    instance comes first among the running instances of its task."""
    if resolved:
        return True
    others = set(running) - {mine}
    return not others or mine < min(others)


def await_first_event_turn(
    lookup: Lookup,
    alias_name: str,
    uri: str,
    log: Any,
    *,
    timeout: float | None = None,
    poll: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Wait until this instance may record its event through ``alias_name`` for ``uri``; whether it waited.
    ``timeout`` and ``poll`` default to :data:`FIRST_EVENT_TIMEOUT` and :data:`FIRST_EVENT_POLL`."""
    timeout = FIRST_EVENT_TIMEOUT if timeout is None else timeout
    poll = FIRST_EVENT_POLL if poll is None else poll
    deadline = clock() + timeout
    waited = False
    while True:
        try:
            resolved = lookup.resolves(alias_name, uri)
            running = () if resolved else list(lookup.running())
        # an Airflow that cannot answer: record the event as if this module did not exist
        except Exception as exc:
            log.warning(
                "Could not ask Airflow whether alias %s resolves to %s yet (%s: %s); recording its event now.",
                alias_name,
                uri,
                type(exc).__name__,
                exc,
            )
            return waited
        if may_record_now(resolved, running, lookup.mine):
            if resolved and waited:
                log.info("Alias %s now resolves to %s: recording this run's event.", alias_name, uri)
            elif not resolved:
                log.info(
                    "First asset event of alias %s for %s: recorded by this run (%s), the first of the "
                    "task's running instances; the others wait for it.",
                    alias_name,
                    uri,
                    lookup.mine[0],
                )
            return waited
        ahead = min(set(running) - {lookup.mine})  # the instance whose event this one waits for
        if clock() >= deadline:
            log.warning(
                "Alias %s still does not resolve to %s after %.0f s of waiting for %s to record its first event; "
                "recording this run's event now (if it runs into Airflow's duplicate-asset race, clear the task).",
                alias_name,
                uri,
                timeout,
                ahead,
            )
            return waited
        if not waited:
            log.info(
                "Waiting for run %s to record the first asset event of alias %s for %s: Airflow cannot record "
                "two first events of an alias at once (at most %.0f s).",
                ahead[0],
                alias_name,
                uri,
                timeout,
            )
            waited = True
        sleep(poll)


class TaskSdkLookup:
    """:class:`Lookup` through the task SDK's channel to Airflow, for the task instance of ``context``."""

    mine: InstanceKey

    def __init__(self, context: Any) -> None:
        ti = context.get("ti")
        if ti is None:  # a context without a task instance: every question fails, and is logged as such
            self._ti, self.mine = None, ("", "")
            return
        self._ti = ti
        map_index = getattr(ti, "map_index", -1)
        key = ti.task_id if map_index is None or map_index < 0 else f"{ti.task_id}_{map_index}"
        self.mine = (ti.run_id, key)

    def resolves(self, alias_name: str, uri: str) -> bool:
        if self._ti is None:
            raise RuntimeError("the task's context has no task instance")
        return uri in alias_asset_uris(alias_name)

    def running(self) -> list[InstanceKey]:
        assert self._ti is not None  # resolves() asked first
        states = self._ti.get_task_states(dag_id=self._ti.dag_id, task_ids=[self._ti.task_id])
        return [
            (run_id, key)
            for run_id, by_task in states.items()
            for key, state in by_task.items()
            if str(getattr(state, "value", state)) == "running"
        ]
