"""Which of many watchers' pending requests one request can answer: the pure half of shared polling.

Watchers of pipelines on one connection (and ``pipeline_type``) ask the same endpoint the same kind of
question, and the endpoint filters neither by pipeline nor by run: one answer serves all of them. A
:class:`~airflow_provider_opsera.pipeline.search.WatchSearch` checks every answer it is fed against its *own*
query, so an answer may be handed to a watcher whenever it holds every record the watcher's own request
would have held:

- ``POLL`` queries (``range`` = time since the watcher's frontier, plus margins) are answered by one ``POLL``
  from the oldest frontier among them: a superset, which each watcher trims to its own window. Frontiers
  more than :data:`SHARE_SLACK` apart are not grouped, so a watcher that lags far behind (a trigger resumed
  with old state) does not make every watcher's window long enough to be capped. A capped superset only makes
  a watcher narrow sooner than it would alone (shorten, never miss).
- ``LOOK`` and ``DAY`` queries are shared only when identical (the same ``range`` or ``date``).

After one shared poll every member's frontier is that poll's send time, so members stay in one group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from airflow_provider_opsera.pipeline.search import Kind, Query

#: Seconds: POLL frontiers at most this far apart share one request.
SHARE_SLACK = 60.0

M = TypeVar("M")


@dataclass
class Shared(Generic[M]):
    """One request (``query``) and the members it answers, each with its own query to be fed."""

    query: Query
    members: list[tuple[M, Query]] = field(default_factory=list)


def coalesce(pending: Sequence[tuple[M, Query]], slack: float = SHARE_SLACK) -> list[Shared[M]]:
    """Group ``(member, its pending query)`` pairs into as few requests as answer them all."""
    groups: list[Shared[M]] = []
    exact: dict[tuple[Kind, int | None, object], Shared[M]] = {}
    polls = sorted(((m, q) for m, q in pending if q.kind is Kind.POLL), key=lambda mq: mq[1].anchor or 0.0)
    for member, query in pending:
        if query.kind is Kind.POLL:
            continue
        key = (query.kind, query.range_s, query.day)
        if key not in exact:
            exact[key] = Shared(query)
            groups.append(exact[key])
        exact[key].members.append((member, query))
    # Newest frontier first: each group reaches back at most ``slack`` before its newest member.
    current: Shared[M] | None = None
    newest = 0.0
    for member, query in reversed(polls):
        anchor = query.anchor or 0.0
        if current is None or newest - anchor > slack:
            current, newest = Shared(query), anchor
            groups.append(current)
        current.query = query  # the oldest anchor so far: the superset of the group
        current.members.append((member, query))
    return groups
