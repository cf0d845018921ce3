"""``python benchmarks/shared_polling.py``: requests per poll interval of N deferred pipeline sensors.

A fixed workload: the simulator (seed 42) on loopback with a busy account, 10,000 unrelated pipeline records
an hour. N sensors (N = 1, 10, 50) each watch the ``anchore`` step of a pipeline of their own, whose scripted
run analyzes, then passes (two in three) or fails, at times spread over the measured span. Each sensor does
its check in the worker first (the first look, as ``OpseraPipelineStatusSensor`` does before deferring), then
its ``OpseraPipelineStatusTrigger`` runs, all N in one event loop (as in one triggerer), with
``poll_interval`` 2 s, until every trigger has fired. Measured twice in the same run: each trigger polling
alone (``share_polls=False``, the provider before shared polling) and through the shared poller. Printed:
the simulator's request count during the trigger phase, per poll interval, and whether every sensor's
event (status and deciding record) is the same both ways.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository root on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from airflow_provider_opsera.catalogue import OpseraLogType
from airflow_provider_opsera.hooks.opsera import OpseraHook
from airflow_provider_opsera.pipeline.decision import Watch
from airflow_provider_opsera.pipeline.search import WatchSearch, run_round_sync
from airflow_provider_opsera.testing.simulator import OpseraSimulator
from airflow_provider_opsera.triggers.pipeline import OpseraPipelineStatusTrigger

PER_HOUR = 10_000
POLL_INTERVAL = 2.0
LOOKBACK_S = 3600
SIZES = (1, 10, 50)


def pipeline_id(i: int) -> str:
    return f"65{i:022x}"


@dataclass
class Measure:
    n: int
    share: bool
    requests: int
    seconds: float
    outcomes: dict[str, tuple[Any, ...]]

    @property
    def per_interval(self) -> float:
        return self.requests / max(self.seconds / POLL_INTERVAL, 1e-9)


def script(sim: OpseraSimulator, n: int, span: float) -> None:
    for i in range(n):
        finish = 2.0 + span * (i + 1) / (n + 1)
        end = ("failed", "Anchore found critical vulnerabilities") if i % 3 == 2 else ("success", "Scan done")
        sim.script_run(
            pipeline_id(i),
            7 + i % 5,
            [{"step_name": "anchore", "events": [(-5, "analyzing"), (finish, *end)]}],
        )


def worker_checks(n: int) -> list[dict[str, Any]]:
    """Each sensor's check in the worker (its first look), as the sensor does before deferring."""
    states = []
    hook = OpseraHook()
    try:
        for i in range(n):
            search = WatchSearch(
                Watch.build(pipeline_id(i), None, None, "anchore"),
                None,
                lookback_s=LOOKBACK_S,
                now=time.time(),
            )

            def fetch(params: dict[str, str]) -> tuple[int | None, list[dict[str, Any]]]:
                page = hook.get_logs(OpseraLogType.PIPELINE_ACTIVITY, params)
                return page["count"], page["data"]

            run_round_sync(search, fetch, time.time)
            states.append(search.state.to_json())
    finally:
        hook.close()
    return states


async def _run_triggers(triggers: list[OpseraPipelineStatusTrigger]) -> list[dict[str, Any]]:
    async def first_event(t: OpseraPipelineStatusTrigger) -> dict[str, Any]:
        async for event in t.run():
            return dict(event.payload)
        raise AssertionError("no event")

    return list(await asyncio.gather(*(first_event(t) for t in triggers)))


def measure(n: int, share: bool, span: float = 10.0, seed: int = 42) -> Measure:
    with OpseraSimulator(seed=seed) as sim:
        os.environ["AIRFLOW_CONN_OPSERA_DEFAULT"] = sim.connection_json(
            {"retry_min_wait": 0.05, "retry_max_wait": 0.5}
        )
        sim.background_pipeline_traffic(PER_HOUR)
        script(sim, n, span)
        states = worker_checks(n)
        before = sim.request_count()
        triggers = [
            OpseraPipelineStatusTrigger(
                pipeline_id=pipeline_id(i),
                step_name="anchore",
                lookback_s=LOOKBACK_S,
                poll_interval=POLL_INTERVAL,
                deadline=time.time() + span + 60,
                state=states[i],
                share_polls=share,
            )
            for i in range(n)
        ]
        started = time.monotonic()
        events = asyncio.run(_run_triggers(triggers))
        seconds = time.monotonic() - started
        requests = sim.request_count() - before
    # Record ids follow the scripted run's start time, which differs between the two runs: compare contents.
    outcomes = {pipeline_id(i): _outcome(e) for i, e in enumerate(events)}
    return Measure(n, share, requests, seconds, outcomes)


def _outcome(event: dict[str, Any]) -> tuple[Any, ...]:
    record = event.get("record") or {}
    return (
        event["status"],
        *(record.get(k) for k in ("pipeline_id", "run_count", "step_name", "status", "message")),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--sizes", default=",".join(map(str, SIZES)), help="comma-separated N (default 1,10,50)"
    )
    parser.add_argument("--span", type=float, default=10.0, help="seconds over which the runs finish")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON as well")
    args = parser.parse_args(argv)
    logging.getLogger("airflow_provider_opsera").setLevel(logging.WARNING)
    logging.getLogger("airflow.task").setLevel(logging.WARNING)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    print(
        f"Busy account: {PER_HOUR:,} unrelated pipeline records/hour; poll_interval={POLL_INTERVAL:g}s; "
        "triggers in one event loop.",
        flush=True,
    )
    header = (
        f"{'N':>3}  {'alone: req':>10} {'per poll':>8}  {'shared: req':>11} {'per poll':>8}  "
        f"{'ratio':>6}  outcomes"
    )
    print(header)
    print("-" * len(header))
    rows = []
    same_everywhere = True
    for n in sizes:
        alone = measure(n, share=False, span=args.span)
        shared = measure(n, share=True, span=args.span)
        same = alone.outcomes == shared.outcomes
        same_everywhere &= same
        ratio = alone.per_interval / shared.per_interval if shared.per_interval else float("inf")
        print(
            f"{n:>3}  {alone.requests:>10} {alone.per_interval:>8.2f}  {shared.requests:>11} "
            f"{shared.per_interval:>8.2f}  {ratio:>5.1f}x  {'unchanged' if same else 'DIFFER'}",
            flush=True,
        )
        rows.append(
            {
                "n": n,
                "alone": {
                    "requests": alone.requests,
                    "seconds": alone.seconds,
                    "per_interval": alone.per_interval,
                },
                "shared": {
                    "requests": shared.requests,
                    "seconds": shared.seconds,
                    "per_interval": shared.per_interval,
                },
                "outcomes_unchanged": same,
                "statuses": sorted({o[0] for o in shared.outcomes.values()}),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    target = next((r for r in rows if r["n"] == 50), None)
    if target is not None:
        ok = target["shared"]["per_interval"] <= 2 and same_everywhere
        print(
            f"Target (N=50: at most 2 requests per poll interval, outcomes unchanged): {'met' if ok else 'MISSED'}"
        )
        return 0 if ok else 1
    return 0 if same_everywhere else 1


if __name__ == "__main__":
    sys.exit(main())
