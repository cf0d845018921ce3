"""``make demo``: a realistic day of Opsera logs, landed by the example DAG under ``./demo-output/``.

1. starts the Opsera API simulator on loopback with the ``demo`` scenario for one day (user activity, audit,
   token activity, and a pipeline-activity day above the API's cap of 1000 records a response);
2. runs ``airflow dags test opsera_logs_to_s3`` for that day, with ``file://$PWD/demo-output`` as the
   output base (the DAG's Variable ``opsera_output_base``);
3. checks every landed folder against the simulator's ground truth and prints a summary.

Airflow's own output goes to ``demo-output/airflow.log``. Nothing is left running afterwards: the simulator
lives in this process and stops with it. ``make demo`` runs ``python tools/demo.py``; it needs the repository's
``example_dags/``, so it is tooling, not part of the installed package.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence

import pendulum

DAG_ID = "opsera_logs_to_s3"
LOG_TYPES = ("user_activity", "audit", "token_activity", "pipeline_activity")


def _dags_folder() -> pathlib.Path:
    for candidate in (
        pathlib.Path(__file__).resolve().parents[1] / "example_dags",
        pathlib.Path.cwd() / "example_dags",
    ):
        if (candidate / f"{DAG_ID}.py").is_file():
            return candidate
    raise SystemExit(
        "example_dags/opsera_logs_to_s3.py not found: run the demo from the repository (make demo)."
    )


def _run(step: str, command: list[str], env: dict[str, str], log: pathlib.Path) -> float:
    """Run one Airflow CLI command, its output appended to ``log``; returns the seconds it took."""
    print(f"  {step} ...", end=" ", flush=True)
    started = time.monotonic()
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        done = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    took = time.monotonic() - started
    if done.returncode != 0:
        print("FAILED")
        tail = log.read_text(errors="replace").splitlines()[-40:]
        print("\n".join(f"    | {line}" for line in tail))
        raise SystemExit(f"{step} failed (exit {done.returncode}); the whole output is in {log}.")
    print(f"{took:.1f}s")
    return took


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/demo.py", description=__doc__.split("\n")[0])
    parser.add_argument("--day", help="the day to extract, YYYY-MM-DD (default: yesterday, UTC)")
    parser.add_argument("--output", default="demo-output", help="output folder (default: ./demo-output)")
    args = parser.parse_args(argv)
    started = time.monotonic()

    day = pendulum.parse(args.day).date() if args.day else pendulum.now("UTC").date().subtract(days=1)  # type: ignore[union-attr]
    start = pendulum.datetime(day.year, day.month, day.day, tz="UTC")
    end = start.add(days=1)
    output = pathlib.Path(args.output).resolve()
    base = output.as_uri()
    log = output / "airflow.log"
    # Only what earlier demos wrote: the summary must describe this run alone.
    shutil.rmtree(output / "opsera", ignore_errors=True)
    output.mkdir(parents=True, exist_ok=True)
    log.write_text("")

    from airflow_provider_opsera.landing import iter_landed_records, read_manifest
    from airflow_provider_opsera.testing import OpseraSimulator

    airflow = str(pathlib.Path(sys.executable).with_name("airflow"))
    with OpseraSimulator(seed=42) as sim:
        sim.load_scenario("demo", day=start.to_date_string())
        print(f"Opsera API simulator on {sim.url}: scenario 'demo' for {start.to_date_string()} (seed 42)")
        env = {
            **os.environ,
            "AIRFLOW_HOME": os.environ.get("AIRFLOW_HOME") or str(pathlib.Path.cwd() / ".airflow-home"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(_dags_folder()),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW_CONN_OPSERA_DEFAULT": sim.connection_json(),
            "AIRFLOW_VAR_OPSERA_OUTPUT_BASE": base,
        }
        steps = {
            "airflow db migrate": _run("airflow db migrate", [airflow, "db", "migrate"], env, log),
        }
        # A daily CronDataIntervalTimetable run at `end` reads the day before it: [start, end).
        command = [airflow, "dags", "test", DAG_ID, end.isoformat()]
        steps[f"airflow dags test {DAG_ID} {end.to_date_string()}"] = _run(
            f"airflow dags test {DAG_ID} {end.to_date_string()}", command, env, log
        )

        from airflow.sdk import ObjectStoragePath

        rows, problems = [], []
        for log_type in LOG_TYPES:
            folder = ObjectStoragePath(f"{base}/opsera/{log_type}/dt={start.to_date_string()}/")
            manifest = read_manifest(folder)
            if manifest is None:
                problems.append(f"{log_type}: no manifest.json in {folder}")
                continue
            ids = [record["_id"] for record in iter_landed_records(folder)]
            truth = {r["_id"] for r in sim.ground_truth(log_type, start, end)}
            exact = len(ids) == len(set(ids)) and set(ids) == truth
            if not exact:
                problems.append(f"{log_type}: landed {len(ids)} records, the simulator holds {len(truth)}")
            size = sum(p["bytes"] for p in manifest["parts"])
            rows.append(
                (log_type, len(ids), len(manifest["parts"]), size, sim.request_count(log_type), exact)
            )

    _summary(output, start, rows, steps, time.monotonic() - started)
    if problems:
        print("\n".join(["", "PROBLEMS:", *problems]))
        return 1
    return 0


def _summary(output: pathlib.Path, start, rows, steps: dict[str, float], took: float) -> None:
    print()
    print(f"Landed {start.to_date_string()} under {output}/opsera/<log type>/dt={start.to_date_string()}/")
    header = (
        f"  {'log type':<18} {'records':>8} {'parts':>6} {'gzip bytes':>11} {'API calls':>10}  ground truth"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for log_type, records, parts, size, calls, exact in rows:
        print(
            f"  {log_type:<18} {records:>8,} {parts:>6} {size:>11,} {calls:>10}  {'exact' if exact else 'MISMATCH'}"
        )
    print("  " + "-" * (len(header) - 2))
    print(
        f"  {'total':<18} {sum(r[1] for r in rows):>8,} {sum(r[2] for r in rows):>6} "
        f"{sum(r[3] for r in rows):>11,} {sum(r[4] for r in rows):>10}"
    )
    files = sorted(p.relative_to(output.parent) for p in (output / "opsera").rglob("*") if p.is_file())
    print(f"\nFiles ({len(files)}):")
    for path in files:
        print(f"  {path}")
    print(
        "\nTime taken: "
        + ", ".join(f"{name} {secs:.1f}s" for name, secs in steps.items())
        + f"; total {took:.1f}s"
    )
    print(f"Airflow's output: {output / 'airflow.log'}")


if __name__ == "__main__":
    sys.exit(main())
