"""``python -m benchmarks.child '<spec json>'``: one configuration, measured in a process of its own.

Each repetition is prepared (untimed), run (timed with ``perf_counter``) and checked (untimed). The process's
peak RSS (``ru_maxrss``, its own and any children's) covers its whole life, imports included; the RSS after
imports is reported beside it. The result is printed as one line starting with :data:`MARKER`.
"""

from __future__ import annotations

import gc
import json
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks import baselines, dlt_baseline, ours
from benchmarks.common import BaseConfig, Target
from benchmarks.workload import DataSet

MARKER = "BENCH_RESULT "

CONFIGS: dict[str, type[BaseConfig]] = {
    "floor": baselines.Floor,
    "ours_count": ours.OursCount,
    "ours_file": ours.OursFile,
    "ours_postgres": ours.OursPostgres,
    "ours_postgres_existing": ours.OursPostgresExisting,
    "naive_count": baselines.NaiveCount,
    "naive_file": baselines.NaiveFile,
    "naive_postgres": baselines.NaivePostgres,
    "dlt_file": dlt_baseline.DltFile,
    "dlt_postgres": dlt_baseline.DltPostgres,
}


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _cpu_s() -> float:
    """CPU seconds used so far by this process (all threads) and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def peak_rss_mb() -> float:
    # Linux reports ru_maxrss in KiB; dlt may hand work to child processes, so theirs count too.
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one configuration ``spec["reps"]`` times; return walls, records, requests and memory."""
    config = CONFIGS[spec["config"]]()
    target = Target(
        dataset=DataSet.from_json(spec["dataset"]),
        url=spec["url"],
        token=spec["token"],
        out_dir=Path(spec["out_dir"]),
        pg_dsn=spec.get("pg_dsn"),
        pg_schema=spec.get("pg_schema", "opsera_bench"),
    )
    config.warm()
    # The first full garbage collection walks every object the imports made (Airflow's: ~0.2 s on this
    # machine), once per process: a start-up cost, like the imports, not part of the first run's figure.
    gc.collect()
    walls: list[float] = []
    cpus: list[float] = []
    outcome = None
    base_rss = _rss_mb()
    for _ in range(int(spec.get("reps", 1))):
        config.prepare(target)
        cpu, started = _cpu_s(), time.perf_counter()
        outcome = config.run(target)
        walls.append(time.perf_counter() - started)
        cpus.append(_cpu_s() - cpu)
        config.check(target, outcome)
    assert outcome is not None
    return {
        "walls": walls,
        "cpu_s": cpus,
        "records": outcome.records,
        "requests": outcome.requests,
        "note": outcome.note,
        "error": outcome.error,
        "extra": outcome.extra,
        "base_rss_mb": base_rss,
        "peak_rss_mb": peak_rss_mb(),
    }


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    try:
        result = measure(spec)
    except Exception as err:
        traceback.print_exc()
        result = {"failed": f"{type(err).__name__}: {err}"}
    print(MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
