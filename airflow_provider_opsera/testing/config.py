"""The simulator's knobs (one reading of each ambiguity in the API notes) and its request log entries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pendulum

from airflow_provider_opsera.catalogue import OpseraLogType


@dataclass
class SimulatorConfig:
    """How the simulated API reads the points its documentation leaves open. Mutable while the server runs.

    Each field picks one plausible reading, so a client can be tested against all of them:

    - ``v1_count``: ``"total"`` (``count`` is every match before the cap, as the seed's pipeline example
      223,773 shows) or ``"page"`` (``count == len(data)``).
    - ``end_inclusive``: v1 ``end`` includes that whole day and v2 ``end_date``/``end_time`` the whole day or
      minute; ``False``: exclusive at ``00:00`` / ``HH:MM:00``.
    - ``sort``: ``"desc"`` (newest first), ``"asc"``, or ``"random"`` (a capped v1 answer is an arbitrary seeded
      subset; v2 pages follow a stable seeded shuffle of the query's matches).
    - ``accept_seconds``: v2 times may also be ``HH:MM:SS`` (the older table's format); default ``HH:MM`` only.
    - ``strict_params``: 400 on an unknown or repeated query parameter (the real server may ignore them).
    - ``page_shift``: v2, the n-th page request of one query sees the order rotated by ``n * page_shift``
      positions: records move between pages (duplicates and gaps) while the matching set stays the same.
    - ``cap``: most records in one response (v1), and the largest v2 ``page_size``.
    - ``default_page_size``: v2 ``page_size`` when not given.
    - ``latency``: seconds added to every response (awaited: other requests are not held up).
    """

    v1_count: Literal["total", "page"] = "total"
    end_inclusive: bool = True
    sort: Literal["desc", "asc", "random"] = "desc"
    accept_seconds: bool = False
    strict_params: bool = True
    page_shift: int = 0
    cap: int = 1000
    default_page_size: int = 100
    latency: float = 0.0

    def __post_init__(self) -> None:
        if self.v1_count not in ("total", "page"):
            raise ValueError(f"v1_count must be 'total' or 'page', not {self.v1_count!r}")
        if self.sort not in ("desc", "asc", "random"):
            raise ValueError(f"sort must be 'desc', 'asc' or 'random', not {self.sort!r}")
        if self.cap < 1 or self.default_page_size < 1:
            raise ValueError("cap and default_page_size must be positive")


@dataclass(frozen=True)
class RequestLog:
    """One request the simulator received and what it answered.

    ``status`` is 0 when the connection was closed without an answer (``reset_before``); ``n_records`` counts
    the records of the body the server meant to send; ``fault`` names the injected fault, if any.
    """

    time: pendulum.DateTime
    path: str
    log_type: OpseraLogType | None
    params: dict[str, str]
    status: int
    n_records: int
    fault: str | None
