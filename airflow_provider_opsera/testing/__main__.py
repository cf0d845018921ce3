"""``python -m airflow_provider_opsera.testing``: run the simulator until interrupted (SIGINT or SIGTERM)."""

from __future__ import annotations

import argparse
import datetime as dt
import errno
import re
import shlex
import signal
import sys
import threading
from collections.abc import Sequence

from airflow_provider_opsera.connection import DEFAULT_CONN_ID
from airflow_provider_opsera.testing.scenarios import SCENARIOS
from airflow_provider_opsera.testing.simulator import OpseraSimulator

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
#: What each scenario serves, for ``--help``.
SCENARIO_HELP = {
    "demo": "a realistic day (--day) of every log type, pipeline activity above the 1000-record cap, and a "
    "scripted pipeline run whose anchore step is analyzing, then passes",
    "empty": "no records at all",
}


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0-65535)")
    return port


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_opsera.testing", description="Serve a simulated Opsera logs API."
    )
    parser.add_argument(
        "--port", type=_port, default=8080, help="port to listen on (default: 8080; 0: any free port)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, loopback only)"
    )
    parser.add_argument("--token", help="the bearer token to accept (default: a fixed token from the seed)")
    parser.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="demo",
        help="the data to serve (default: demo): "
        + "; ".join(f"{name}: {SCENARIO_HELP.get(name, name)}" for name in SCENARIOS),
    )
    parser.add_argument("--day", metavar="YYYY-MM-DD", help="the demo's full day (default: yesterday, UTC)")
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="seconds added to every response (default: 0)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=42,
        metavar="N",
        help="seed of the generated data and the default token (default: 42)",
    )
    return parser


def _fail(parser: argparse.ArgumentParser, message: str) -> int:
    """One line on stderr, argparse's way (``prog: error: ...``); exit status 2."""
    print(f"{parser.prog}: error: {message}", file=sys.stderr, flush=True)
    return 2


def _day_problem(day: str) -> str | None:
    try:
        if _DAY.fullmatch(day):
            dt.date.fromisoformat(day)
            return None
    except ValueError:
        pass
    return f"--day {day!r} is not a date: give the demo's day as YYYY-MM-DD, e.g. --day 2024-05-10"


def _listen_problem(err: OSError, host: str, port: int) -> str:
    if err.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is already in use: stop what is listening there, or pick another port "
            "with --port (--port 0 picks any free port)"
        )
    reason = err.strerror or str(err)
    return f"cannot listen on {host}:{port} ({reason}): check --host and --port"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.day is not None and (problem := _day_problem(args.day)):
        return _fail(parser, problem)

    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    sim = OpseraSimulator(
        seed=args.seed, host=args.host, port=args.port, latency=args.latency, token=args.token
    )
    sim.load_scenario(args.scenario, day=args.day)
    try:
        sim.start()
    except OSError as err:
        return _fail(parser, _listen_problem(err, args.host, args.port))
    with sim:
        print(f"Opsera API simulator ({args.scenario}) serving on {sim.url}")
        print(f"AIRFLOW_CONN_{DEFAULT_CONN_ID.upper()}={shlex.quote(sim.connection_json())}")
        print("Stop with Ctrl+C.", flush=True)
        while not stopping.wait(0.5):
            pass
    print(f"Stopped after {len(sim.requests)} requests.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
