"""The simulated API's logic, free of HTTP: who may call, what a query matches, which records a response holds."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pendulum

from airflow_provider_opsera.catalogue import OpseraLogType
from airflow_provider_opsera.testing.clock import NO_END, NO_START
from airflow_provider_opsera.testing.config import RequestLog, SimulatorConfig
from airflow_provider_opsera.testing.faults import FaultPlan
from airflow_provider_opsera.testing.query import ApiError, Query, Route, parse
from airflow_provider_opsera.testing.shapes import stable_hash
from airflow_provider_opsera.testing.store import LogStore, page_of


@dataclass(frozen=True)
class Grant:
    """What a token may do: its scopes and its owner's role."""

    scopes: frozenset[str]
    role: str


@dataclass
class Answer:
    """What the API answers before any fault: status, JSON body, the query and the page's records."""

    status: int
    body: dict[str, Any]
    query: Query | None = None
    records: list[dict[str, Any]] = field(default_factory=list)


def authorize(route: Route, header: str | None, tokens: dict[str, Grant]) -> None:
    """401 without a known bearer token; 403 when its scope or its owner's role does not fit the route."""
    scheme, _, token = (header or "").strip().partition(" ")
    grant = tokens.get(token.strip()) if scheme.lower() == "bearer" else None
    if grant is None:
        raise ApiError(
            401, "Unauthorized: a valid personal access token is required (Authorization: Bearer)."
        )
    if not grant.scopes & route.scopes:
        raise ApiError(
            403,
            f"Forbidden: the token's scope ({', '.join(sorted(grant.scopes)) or 'none'}) cannot read this route; "
            f"it needs a token of scope {route.scopes_text}.",
        )
    if grant.role not in route.roles:
        raise ApiError(
            403,
            f"Forbidden: this route is limited to {route.roles_text}; the token's owner has role {grant.role!r}.",
        )


class SimulatedApi:
    """Everything the HTTP handler needs: tokens, config, store, faults, clock, and the request log.

    ``lock`` guards the store and counters: the server thread answers while a test's thread adds data.
    """

    def __init__(self, seed: int, config: SimulatorConfig, clock: Callable[[], pendulum.DateTime]) -> None:
        self.seed = seed
        self.config = config
        self.clock = clock
        self.tokens: dict[str, Grant] = {}
        self.store = LogStore()
        self.faults = FaultPlan()
        self.lock = threading.RLock()
        self.log: list[RequestLog] = []
        #: Requests being answered now, and the most at once since the log was last cleared.
        self.in_flight = 0
        self.max_in_flight = 0
        self._page_requests: defaultdict[str, int] = defaultdict(int)

    def answer(self, route: Route, auth: str | None, pairs: list[tuple[str, str]], now_ms: int) -> Answer:
        """The response to one request, as the real API would give it (faults come later)."""
        config = self.config
        try:
            authorize(route, auth, self.tokens)
            query = parse(route, pairs, config, now_ms)
        except ApiError as exc:
            return Answer(exc.status, {"message": exc.message})
        with self.lock:
            matches = self.store.matches(query.log_type, query.lo, query.hi, query.filters, now_ms)
            key = stable_hash(self.seed, query.key)
            rotation = 0
            if query.paged:
                nth = self._page_requests[query.key]
                self._page_requests[query.key] += 1
                rotation = nth * config.page_shift % matches.total if matches.total else 0
            data = page_of(matches, config.sort, query.offset, query.limit, rotation=rotation, key=key)
            count = matches.total if query.paged or config.v1_count == "total" else len(data)
        return Answer(200, {"count": count, "data": data}, query, data)

    def outside(self, query: Query, n: int, now_ms: int) -> list[dict[str, Any]]:
        """Up to ``n`` real records just before and just after the query's window (same filters)."""
        out: list[dict[str, Any]] = []
        with self.lock:
            if query.lo != NO_START:
                before = self.store.matches(query.log_type, NO_START, query.lo, query.filters, now_ms)
                out += before.ascending(before.total - (n + 1) // 2, before.total)
            if query.hi != NO_END:
                after = self.store.matches(query.log_type, query.hi, NO_END, query.filters, now_ms)
                out += after.ascending(0, n - len(out))
        return out

    def enter(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def record(self, entry: RequestLog) -> None:
        with self.lock:
            self.log.append(entry)

    def requests(self, log_type: OpseraLogType | None = None) -> list[RequestLog]:
        with self.lock:
            return [r for r in self.log if log_type is None or r.log_type == log_type]
