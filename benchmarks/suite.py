"""The benchmark run: start the simulator, measure each configuration in its own process, report.

The plan is fixed (:func:`plan`); every step is a child process (``python -m benchmarks.child``), so each
figure's peak RSS is that configuration's alone and no run warms the next one's caches.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import bounds, cpu, dlt_baseline, report, workload
from benchmarks.child import CONFIGS, MARKER
from benchmarks.report import Row
from benchmarks.workload import DataSet, Workload

ROOT = Path(__file__).resolve().parent.parent
PG_DSN = os.environ.get("OPSERA_BENCH_POSTGRES_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres")
PG_SCHEMA = "opsera_bench"


@dataclass(frozen=True)
class Step:
    workload: str
    config: str
    dataset: DataSet
    reps: int = 1

    @property
    def who(self) -> str:
        return CONFIGS[self.config].who

    @property
    def sink(self) -> str:
        return CONFIGS[self.config].sink


def plan(work: Workload) -> list[Step]:
    """Every measured configuration, in the order the table shows them."""
    day, reps = work.day, work.reps
    return [
        Step("W1", "floor", day, reps),
        Step("W1(a)", "ours_count", day, reps),
        Step("W1(a)", "naive_count", day),
        Step("W1(b)", "ours_file", day, reps),
        Step("W1(b)", "naive_file", day),
        Step("W1(b)", "dlt_file", day),
        Step("W1(c)", "ours_postgres", day, reps),
        Step("W1(c)", "ours_postgres_existing", day, reps),
        Step("W1(c)", "naive_postgres", day),
        Step("W1(c)", "dlt_postgres", day),
        Step("W2", "floor", work.split_day),
        Step("W2", "ours_count", work.split_day),
        Step("W2", "ours_count", work.split_day_too_big),
        Step("W3", "floor", work.small_day),
        Step("W3", "ours_count", work.small_day),
        Step("W3", "ours_file", work.small_day),
        Step("W3", "floor", work.large_day),
        Step("W3", "ours_count", work.large_day),
        Step("W3", "ours_file", work.large_day),
    ]


def describe(work: Workload) -> list[str]:
    d, s, big = work.day, work.split_day, work.split_day_too_big
    return [
        f"Simulator (airflow_provider_opsera.testing) in its own process, {workload.LATENCY * 1000:.0f} ms added "
        f"to every response; page_size {workload.PAGE_SIZE}, concurrency {workload.CONCURRENCY} "
        "(the hook's defaults), for floor and ours alike.",
        f"W1: {d.n:,} audit (v2) records on {d.day} ({d.pages} pages); sinks: none (count), file:// gzipped "
        "NDJSON through the landing operator, Postgres through OpseraLogsToPostgresOperator. "
        f"Floor and ours: median of {work.reps} runs; naive and dlt: one run.",
        f"W2: {s.n:,} user-activity (v1) records on {s.day} over {len(s.split_values or ())} `type` values: "
        f"over the cap of 1000, so the day must be split; ceil(n/1000) = {s.pages}. v1 has neither paging nor "
        f"a time finer than a day, so one day can hold at most {len(s.split_values or ())} x 999 provable "
        f"records; the seed's {big.n:,} as v1 records is run too, and must fail loudly.",
        f"W3: memory of W1(a) and W1(b) at {work.small_day.n:,} and {work.large_day.n:,} audit records.",
    ]


# -- processes -------------------------------------------------------------------------------------------
def child_env() -> dict[str, str]:
    env = os.environ.copy()
    env.setdefault("AIRFLOW_HOME", str(ROOT / ".airflow-home"))
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    # The repository last: a PYTHONPATH given to the run (a variant of the package to compare) comes first.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(ROOT)]))
    return env


class Simulator:
    """``python -m benchmarks.serve`` as a child process; stops when this object closes its stdin."""

    def __init__(self, smoke: bool, latency: float) -> None:
        command = [sys.executable, "-m", "benchmarks.serve", "--latency", str(latency)]
        if smoke:
            command.append("--smoke")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError("the simulator process ended before serving (see its stderr above)")
        info = json.loads(line)
        self.url, self.token, self.generate_s = info["url"], info["token"], info["generate_s"]

    def close(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            self.process.wait(timeout=15)


def run_child(
    spec: dict[str, Any], log_path: Path, timeout: float, meter: cpu.CpuMeter | None = None
) -> dict[str, Any]:
    """One configuration in a fresh process; its output goes to ``log_path``, its result comes back.

    With ``meter``, the result gets ``cpu_other``: simulator and PostgreSQL CPU seconds a repetition.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "benchmarks.child", json.dumps(spec)]
    before = meter.read() if meter else {}
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=log, text=True
        )
        watch = meter.watch(process.pid) if meter else None
        try:
            stdout, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, _ = process.communicate()
            log.write(stdout)
            return {"failed": f"did not finish within {timeout:.0f}s"}
        except BaseException:  # interrupted: leave no measured process behind
            process.kill()
            raise
        finally:
            pg = watch.stop() if watch else None
        log.write(stdout)
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARKER):
            result = json.loads(line[len(MARKER) :])
            if meter is not None:
                reps = max(1, int(spec.get("reps", 1)))
                result["cpu_other"] = cpu.delta(before, meter.read(), reps)
                if pg is not None:
                    result["cpu_other"]["pg"] = pg / reps
            return result
    return {"failed": f"exited {process.returncode} without a result; see {log_path}"}


# -- Postgres --------------------------------------------------------------------------------------------
def postgres_ready(dsn: str) -> str | None:
    """None if reachable (the benchmark schema is then fresh), else why not."""
    try:
        import psycopg

        with psycopg.connect(dsn + " connect_timeout=3", autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE")
            conn.execute(f"CREATE SCHEMA {PG_SCHEMA}")
        return None
    except Exception as err:
        return f"PostgreSQL not reachable ({type(err).__name__})"


def drop_schemas(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn + " connect_timeout=3", autocommit=True) as conn:
        for schema in (PG_SCHEMA, dlt_baseline.dataset_name(PG_SCHEMA)):
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


# -- the run ---------------------------------------------------------------------------------------------
def skip_reason(step: Step, pg_problem: str | None, has_dlt: bool) -> str | None:
    if step.who == "dlt" and not has_dlt:
        return "dlt not installed (pip install '.[bench]')"
    if step.sink == "postgres" and pg_problem:
        return pg_problem
    return None


def run(args: argparse.Namespace) -> tuple[list[Row], list[report.Check], str]:
    work = workload.smoke() if args.smoke else workload.full()
    if args.reps is not None:
        work = Workload(**{**work.__dict__, "reps": args.reps})
    out = Path(args.out).resolve()
    has_dlt = dlt_baseline.available()
    pg_problem = postgres_ready(PG_DSN)
    started = time.perf_counter()
    info = report.machine()
    sim = Simulator(args.smoke, args.latency)
    print(
        f"Simulator at {sim.url}: {sum(d.n for d in work.datasets()):,} records generated in "
        f"{sim.generate_s:.1f}s (in its own process).",
        flush=True,
    )
    meter = cpu.CpuMeter(sim.process.pid)
    rows: list[Row] = []
    steps = [s for s in plan(work) if not args.only or s.config in args.only]
    try:
        for i, step in enumerate(steps):
            row = Row(step.workload, step.sink, step.who, step.dataset.key, step.dataset.n)
            row.variant = CONFIGS[step.config].variant
            row.skipped = skip_reason(step, pg_problem, has_dlt)
            if row.skipped is None:
                spec = {
                    "config": step.config,
                    "dataset": step.dataset.to_json(),
                    "url": sim.url,
                    "token": sim.token,
                    "out_dir": str(out / "data" / f"{step.dataset.key}_{step.config}"),
                    "pg_dsn": None if pg_problem else PG_DSN,
                    "pg_schema": PG_SCHEMA,
                    "reps": step.reps,
                }
                log = out / "logs" / f"{i:02d}_{step.dataset.key}_{step.config}.log"
                row.result = run_child(spec, log, args.child_timeout, meter)
            rows.append(row)
            print(_progress(row), flush=True)
    finally:
        sim.close()
        if pg_problem is None:
            drop_schemas(PG_DSN)
    checks = report.targets(rows, work.day.key, work.small_day.key, work.large_day.key)
    info["benchmark wall time"] = f"{time.perf_counter() - started:.0f}s"
    if hasattr(os, "getloadavg"):  # other work on the machine shows up as noise in every figure
        info["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    markdown = report.render_markdown(rows, checks, info, describe(work), bounds.lines(rows, work))
    return rows, checks, markdown


def _progress(row: Row) -> str:
    what = f"  {row.workload:<6} {row.who:<5} {row.sink:<8} {row.n:>9,}"
    if row.failed:
        return f"{what}  {row.failed}"
    r = row.result
    walls = ", ".join(f"{w:.2f}" for w in r["walls"])
    rps = f"{row.rps:,.0f} records/s" if row.rps else (r.get("error") or "").split(":", 1)[0]
    return f"{what}  {rps}  wall [{walls}]s  peak RSS {r['peak_rss_mb']:.0f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a tiny workload: checks the suite, not speed")
    parser.add_argument("--reps", type=int, help="repetitions of floor and ours on W1 (default 3)")
    parser.add_argument("--latency", type=float, default=workload.LATENCY)
    parser.add_argument(
        "--only",
        type=lambda text: [c for c in text.split(",") if c],
        metavar="CONFIG,...",
        help=f"run only these configurations (of: {', '.join(CONFIGS)}), e.g. floor,ours_postgres_existing",
    )
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks" / ".out"), help="scratch folder (logs, data)"
    )
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    parser.add_argument(
        "--child-timeout", type=float, default=180.0, help="seconds before a configuration is abandoned"
    )
    args = parser.parse_args(argv)
    # SIGTERM (a CI timeout, kill) unwinds like Ctrl+C: the simulator stops and the schemas are dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    rows, checks, markdown = run(args)
    print()
    print(report.text_table(report.HEADER, report.table_rows(rows)))
    print()
    header, body = report.targets_table(checks)
    print(report.text_table(header, body))
    Path(args.results).write_text(markdown)
    print(f"\nWritten to {args.results}")
    return 0
