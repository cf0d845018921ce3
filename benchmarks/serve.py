"""``python -m benchmarks.serve``: the simulator, loaded with the workload, in a process of its own.

Kept out of the measured processes so their peak RSS is their own and the server's CPU is not theirs. Prints
one JSON line (``url``, ``token``, ``generate_s``) once serving, then serves until its stdin closes (the
parent ended, however it ended) or it gets SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

from airflow_provider_opsera.testing import OpseraSimulator
from benchmarks import workload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve")
    parser.add_argument("--latency", type=float, default=workload.LATENCY)
    parser.add_argument("--smoke", action="store_true", help="the tiny workload of the smoke test")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())

    def watch_stdin() -> None:
        sys.stdin.read()  # returns at EOF: the parent closed the pipe or died
        stopping.set()

    work = workload.smoke() if args.smoke else workload.full()
    sim = OpseraSimulator(seed=args.seed, latency=args.latency)
    started = time.perf_counter()
    workload.load(sim, work.datasets())
    generate_s = time.perf_counter() - started
    with sim:
        print(json.dumps({"url": sim.url, "token": sim.token, "generate_s": generate_s}), flush=True)
        threading.Thread(target=watch_stdin, daemon=True).start()
        stopping.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
