"""``python -m airflow_provider_opsera.testing``: run the simulator until interrupted (SIGINT or SIGTERM)."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from collections.abc import Sequence

from airflow_provider_opsera.testing.scenarios import SCENARIOS
from airflow_provider_opsera.testing.simulator import OpseraSimulator


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_opsera.testing", description="Serve a simulated Opsera logs API."
    )
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--token", help="the bearer token to accept (default: a fixed token from the seed)")
    parser.add_argument("--scenario", choices=SCENARIOS, default="demo")
    parser.add_argument("--day", help="the demo's full day, YYYY-MM-DD (default: yesterday, UTC)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every response")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    sim = OpseraSimulator(
        seed=args.seed, host=args.host, port=args.port, latency=args.latency, token=args.token
    )
    sim.load_scenario(args.scenario, day=args.day)
    with sim:
        print(f"Opsera API simulator ({args.scenario}) serving on {sim.url}")
        print(f"AIRFLOW_CONN_OPSERA_DEFAULT={shlex.quote(sim.connection_json())}")
        print("Stop with Ctrl+C.", flush=True)
        while not stopping.wait(0.5):
            pass
    print(f"Stopped after {len(sim.requests)} requests.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
