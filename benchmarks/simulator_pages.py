"""``python benchmarks/simulator_pages.py``: how fast the simulator serves 1000-record pages.

A fixed workload: a 223,773-record pipeline day (the seed example's count) and 1,000,000 audit records. It
prints generation time, memory, and per-page times (building and encoding alone, and over HTTP).
"""

from __future__ import annotations

import functools
import resource
import time
from collections.abc import Callable
from typing import Any

import msgspec
import requests

from airflow_provider_opsera.catalogue import OpseraLogType
from airflow_provider_opsera.testing.clock import NO_END, NO_START, to_ms
from airflow_provider_opsera.testing.config import SimulatorConfig
from airflow_provider_opsera.testing.simulator import OpseraSimulator
from airflow_provider_opsera.testing.store import page_of


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _per_call_ms(call: Callable[[], object], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - started) / n * 1000


def main() -> None:
    sim = OpseraSimulator(seed=42, config=SimulatorConfig())
    rss = _rss_mb()
    started = time.perf_counter()
    sim.generate("pipeline_activity", "2024-05-10", "2024-05-11", 223_773)
    print(f"generate 223,773 pipeline records: {time.perf_counter() - started:.2f}s")
    started = time.perf_counter()
    sim.generate("audit", "2024-04-01", "2024-05-01", 1_000_000)
    print(
        f"generate 1,000,000 audit records:  {time.perf_counter() - started:.2f}s, peak RSS +{_rss_mb() - rss:.0f} MB"
    )

    store, now = sim._api.store, to_ms(sim.now())
    day = store.matches(OpseraLogType.PIPELINE_ACTIVITY, to_ms("2024-05-10"), to_ms("2024-05-11"), {}, now)
    audit = store.matches(OpseraLogType.AUDIT, NO_START, NO_END, {}, now)
    for label, matches, start in (("pipeline day, newest", day, 0), ("audit, page 500", audit, 499_000)):
        build = _per_call_ms(functools.partial(page_of, matches, "desc", start, 1000), 20)
        body = {"count": matches.total, "data": page_of(matches, "desc", start, 1000)}
        encode = _per_call_ms(functools.partial(msgspec.json.encode, body), 20)
        print(f"build 1000 records ({label}): {build:.1f} ms, encode {encode:.1f} ms")

    with sim:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {sim.token}"
        cases: dict[str, tuple[str, dict[str, Any]]] = {
            "v1 pipeline date (capped at 1000 of 223,773)": (
                "/api/v1/logs/pipelines",
                {"date": "2024-05-10"},
            ),
            "v1 pipeline date + type filter": (
                "/api/v1/logs/pipelines",
                {"date": "2024-05-10", "type": "sdlc"},
            ),
            "v2 audit page 1 of 1,000 (page_size 1000)": ("/api/v2/logs/audit/user", {"page_size": 1000}),
            "v2 audit page 900 of 1,000": ("/api/v2/logs/audit/user", {"page_size": 1000, "page": 900}),
            "v2 audit filtered by user_email": (
                "/api/v2/logs/audit/user",
                {"page_size": 1000, "user_email": "support@opsera.io", "page": 10},
            ),
        }
        for label, (path, params) in cases.items():
            session.get(sim.url + path, params=params).raise_for_status()  # warm (builds any index)
            ms = _per_call_ms(functools.partial(session.get, sim.url + path, params=params), 30)
            print(f"HTTP {label}: {ms:.1f} ms a page ({1000 / ms:.0f} pages/s)")


if __name__ == "__main__":
    main()
