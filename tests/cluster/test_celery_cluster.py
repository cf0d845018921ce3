"""On a real Celery cluster: Airflow's CeleryExecutor with Redis (127.0.0.1:6379, a database of its own) as broker,
PostgreSQL as metadata database and Celery result backend, the dag-processor, scheduler and api-server, and two
``airflow celery worker`` processes, against the simulator on loopback (50 ms per response).

One scenario, in order:

1. Both example DAGs (``opsera_logs_to_s3`` into moto's S3, ``opsera_logs_to_postgres`` into a schema that does
   not exist yet) are backfilled over 30 days with ``airflow backfill create --max-active-runs 4``: 240 task
   instances. Every landed folder and every table holds exactly the simulator's ground truth, day by day; every
   task succeeded on its first try (a deadlock or the new-schema race would show as a failed try).
2. The API budget: the Opsera tasks share ``default_pool`` (P slots) and the connection opens at most C requests
   at once per task, so the simulator never answers more than P x C requests at once, whichever worker sends them.
3. A worker is SIGKILLed (its whole process group) while one of its tasks is mid-extraction; the scheduler finds
   the task without a heartbeat, Airflow's retry runs it on the other worker, and the day's folder is exact.

Two settings of the deployment, not of the DAGs: ``[scheduler] task_instance_heartbeat_timeout`` is 30 s (the
default 300 s is how long a dead worker's task waits to be noticed), and a cluster policy
(``airflow_local_settings.task_policy``) sets every task's ``retry_delay`` to 5 s (the example DAGs' 5 minutes
would make the test wait).
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import logging
import os
import pathlib
import re
import secrets
import shutil
import signal
import time
from typing import Any

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

ROOT = pathlib.Path(__file__).resolve().parents[2]
DAG_FILES = {
    "opsera_logs_to_s3": "opsera_logs_to_s3.py",
    "opsera_logs_to_postgres": "opsera_logs_to_postgres.py",
}
LOG_TYPES = ("user_activity", "audit", "token_activity", "pipeline_activity")
FIRST_DAY = dt.date(2024, 3, 1)
DAYS = 30
RECORDS_PER_DAY = 2000  # per log type: above the v1 cap of 1000 (a day is split), 40 v2 pages of 50
LATENCY = 0.05
POOL_SLOTS = 6  # P: task slots of default_pool, where the example DAGs' tasks run
CONCURRENCY = 2  # C: the Opsera connection's ``concurrency`` extra
MAX_ACTIVE_RUNS = 4
WORKERS = 2
WORKER_CONCURRENCY = 4
REDIS_URL = "redis://127.0.0.1:6379/5"
TEST_DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"
S3_CONN_ID = "aws_moto"
PG_CONN_ID = "postgres_cluster"
HEARTBEAT_TIMEOUT = 30
PRELOAD = [
    "airflow_provider_opsera.operators.logs",
    "airflow_provider_opsera.transfers.postgres",
    "airflow.providers.amazon.aws.hooks.s3",
    "airflow.providers.postgres.hooks.postgres",
    "s3fs",
]
RETRY_DELAY = 5

LOCAL_SETTINGS = f'''"""The cluster test's cluster policy: a short retry delay for every task, whatever its DAG says."""

import datetime


def task_policy(task):
    task.retry_delay = datetime.timedelta(seconds={RETRY_DELAY})
'''


def day(i: int) -> dt.date:
    return FIRST_DAY + dt.timedelta(days=i)


def _redis_available() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping())
    except Exception:
        return False


@pytest.fixture(scope="module")
def deployment(request, tmp_path_factory, moto_endpoint):
    import psycopg
    import redis
    from connections import aws_moto_conn_json, moto_s3_client, postgres_conn_json
    from ui_processes import ManagedProcess, wait_for
    from ui_stack import AIRFLOW, PG_ADMIN_DSN, PG_URL, AirflowStack, scratch_database

    from airflow_provider_opsera.testing.simulator import OpseraSimulator

    started_at = time.monotonic()
    root = request.config.pluginmanager.get_plugin(str(ROOT / "tests" / "conftest.py"))
    root.require_service(
        root.postgres_available(PG_ADMIN_DSN), "PostgreSQL at 127.0.0.1:5432 is not reachable"
    )
    root.require_service(_redis_available(), f"Redis at {REDIS_URL} is not reachable")
    broker = redis.Redis.from_url(REDIS_URL)
    broker.flushdb()

    base = tmp_path_factory.mktemp("cluster")
    dags = base / "dags"
    dags.mkdir()
    for filename in DAG_FILES.values():
        shutil.copy(ROOT / "example_dags" / filename, dags)
    policy = base / "policy"
    policy.mkdir()
    (policy / "airflow_local_settings.py").write_text(LOCAL_SETTINGS)

    bucket = "opsera-cluster-" + secrets.token_hex(4)
    s3 = moto_s3_client(moto_endpoint)
    s3.create_bucket(Bucket=bucket)
    schema = "opsera_cluster_" + secrets.token_hex(4)
    with psycopg.connect(TEST_DSN) as conn:
        exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    assert exists is None, f"schema {schema} must not exist before the run"

    sim = OpseraSimulator(seed=16, host="127.0.0.1", latency=LATENCY).start()
    span_start, span_end = day(-1), day(DAYS + 1)  # a day either side that no run may land
    for log_type in LOG_TYPES:
        # token activity splits a capped day by scope only: even scopes keep each under the v1 cap
        split = (
            dict.fromkeys(("api", "api-readonly", "security-logs"), 1.0)
            if log_type == "token_activity"
            else None
        )
        sim.generate(
            log_type,
            span_start.isoformat(),
            span_end.isoformat(),
            RECORDS_PER_DAY * (DAYS + 2),
            split_values=split,
        )

    # moto's access log and the aws connection's notice: a line per S3 call of the checks
    for noisy in ("werkzeug", "airflow.providers.amazon.aws.utils.connection_wrapper"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    env_patch = pytest.MonkeyPatch()
    env_patch.setenv(f"AIRFLOW_CONN_{S3_CONN_ID.upper()}", aws_moto_conn_json(moto_endpoint))
    try:
        with scratch_database("opsera_cluster_test_") as database:
            stack = AirflowStack(
                base,
                dags_folder=dags,
                database=database,
                port=root.free_port(),
                extra_env={
                    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                    "AIRFLOW__CELERY__BROKER_URL": REDIS_URL,
                    "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + PG_URL.format(db=database),
                    "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
                    # imported once by each worker before it forks its pool: a task's start no longer
                    # re-imports the provider and its S3 and Postgres clients (seconds of CPU per task)
                    "AIRFLOW__CELERY__EXTRA_CELERY_CONFIG": json.dumps({"imports": PRELOAD}),
                    "AIRFLOW__CORE__PARALLELISM": "32",
                    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
                    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
                    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                    "AIRFLOW__API__MAXIMUM_PAGE_LIMIT": "1000",
                    # no lineage backend here: its listener adds seconds to every task's end
                    "AIRFLOW__OPENLINEAGE__DISABLED": "True",
                    "AIRFLOW_CONN_OPSERA_DEFAULT": sim.connection_json(
                        {"concurrency": CONCURRENCY, "page_size": 50, "retry_min_wait": 0.2}
                    ),
                    f"AIRFLOW_CONN_{S3_CONN_ID.upper()}": aws_moto_conn_json(moto_endpoint),
                    f"AIRFLOW_CONN_{PG_CONN_ID.upper()}": postgres_conn_json(TEST_DSN),
                    "AIRFLOW_VAR_OPSERA_OUTPUT_BASE": f"s3://{bucket}",
                    "AIRFLOW_VAR_OPSERA_OUTPUT_CONN_ID": S3_CONN_ID,
                    "AIRFLOW_VAR_OPSERA_POSTGRES_SCHEMA": schema,
                    "AIRFLOW_VAR_OPSERA_POSTGRES_CONN_ID": PG_CONN_ID,
                    "PYTHONPATH": os.pathsep.join([str(policy), str(ROOT)]),
                },
            )
            workers: list[ManagedProcess] = []
            try:
                stack.start()
                # P slots for every task of the deployment: the example DAGs' tasks run in default_pool
                stack.cli("pools", "set", "default_pool", str(POOL_SLOTS), "Opsera API budget: P task slots")
                for i in range(WORKERS):
                    worker = ManagedProcess(
                        f"worker-{i}",
                        [
                            AIRFLOW,
                            "celery",
                            "worker",
                            "--celery-hostname",
                            f"opsera-{i}@%h",
                            "--concurrency",
                            str(WORKER_CONCURRENCY),
                            "--skip-serve-logs",  # two workers on one host would share the log server's port
                        ],
                        stack.env,
                        stack.logs / f"worker-{i}.log",
                    )
                    workers.append(worker)
                    stack.processes[worker.name] = worker
                for worker in workers:
                    wait_for(
                        lambda w=worker: " ready." in w.log_text(),
                        180,
                        f"{worker.name} to be ready",
                        alive=list(stack.processes.values()),
                    )
                yield stack, sim, workers, bucket, schema, moto_endpoint, started_at, wait_for
            except BaseException:
                print(stack.log_tails(80))
                print(stack.task_log_tails())
                raise
            finally:
                for worker in workers:
                    worker.stop()
                stack.stop()
    finally:
        sim.stop()
        env_patch.undo()
        broker.flushdb()
        with psycopg.connect(TEST_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# -- reading the deployment ---------------------------------------------------------------------------------
def _paged(stack, path: str, key: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    while True:
        sep = "&" if "?" in path else "?"
        body = stack.api("GET", f"{path}{sep}limit=1000&offset={len(rows)}")
        rows += body[key]
        if len(rows) >= body["total_entries"] or not body[key]:
            return rows


def _runs(stack, dag_id: str) -> list[dict[str, Any]]:
    return _paged(stack, f"dags/{dag_id}/dagRuns", "dag_runs")


def _task_instances(stack, dag_id: str) -> list[dict[str, Any]]:
    return _paged(stack, f"dags/{dag_id}/dagRuns/~/taskInstances", "task_instances")


def _run_day(run: dict[str, Any]) -> dt.date:
    return dt.datetime.fromisoformat(run["data_interval_start"]).date()


def _ids(records) -> list[str]:
    return sorted(r["_id"] for r in records)


def _truth(sim, log_type: str, first: dt.date, last: dt.date) -> list[dict[str, Any]]:
    return sim.ground_truth(log_type, first.isoformat(), (last + dt.timedelta(days=1)).isoformat())


def _check_s3(sim, bucket: str, days: list[dt.date], log_types: tuple[str, ...] = LOG_TYPES) -> int:
    """Every landed folder against the ground truth of its day (parts verified against the manifest); no
    folder for any other day. Returns the records read back."""
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_opsera.landing import iter_landed_records, read_manifest

    total = 0
    for log_type in log_types:
        for d in days:
            url = f"s3://{bucket}/opsera/{log_type}/dt={d.isoformat()}/"
            folder = ObjectStoragePath(url, conn_id=S3_CONN_ID)
            manifest = read_manifest(folder)
            assert manifest is not None, f"{url} has no manifest"
            landed = list(iter_landed_records(folder))
            truth = _truth(sim, log_type, d, d)
            assert len(landed) == len({r["_id"] for r in landed}), f"{url}: duplicate ids"
            assert _ids(landed) == _ids(truth), f"{url}: the landed ids differ from the ground truth"
            by_id = {r["_id"]: r for r in truth}
            assert all(r == by_id[r["_id"]] for r in landed), f"{url}: a landed record differs"
            assert manifest["record_count"] == len(truth)
            total += len(landed)
    return total


def _landed_days(s3_client, bucket: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = collections.defaultdict(set)
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="opsera/"):
        for obj in page.get("Contents", []):
            match = re.match(r"opsera/([a-z_]+)/dt=(\d{4}-\d\d-\d\d)/", obj["Key"])
            if match:
                found[match[1]].add(match[2])
    return found


def _check_postgres(sim, schema: str, days: list[dt.date]) -> int:
    """Every table against the ground truth of the backfilled days, day by day: each record once, as served."""
    import psycopg

    total = 0
    with psycopg.connect(TEST_DSN) as conn:
        for log_type in LOG_TYPES:
            rows = conn.execute(
                f'SELECT _id, created_at, raw FROM "{schema}".opsera_{log_type}_logs'
            ).fetchall()
            loaded: dict[dt.date, list[dict[str, Any]]] = collections.defaultdict(list)
            for _id, created_at, raw in rows:
                assert raw["_id"] == _id
                loaded[created_at.astimezone(dt.timezone.utc).date()].append(raw)
            assert set(loaded) <= set(days), f"{log_type}: rows outside the backfilled days"
            for d in days:
                truth = _truth(sim, log_type, d, d)
                assert _ids(loaded[d]) == _ids(truth), f"{schema}.opsera_{log_type}_logs, {d}: rows differ"
                by_id = {r["_id"]: r for r in truth}
                assert all(r == by_id[r["_id"]] for r in loaded[d]), f"{log_type} {d}: a row's raw differs"
            total += len(rows)
    return total


def _worker_of(pid: int, workers) -> Any:
    """The worker whose process group holds ``pid`` (each worker leads its own session)."""
    leaders = {w.pid: w for w in workers}
    current = pid
    for _ in range(20):
        if current in leaders:
            return leaders[current]
        try:
            sid = os.getsid(current)
        except ProcessLookupError:
            return None
        if sid in leaders:
            return leaders[sid]
        with open(f"/proc/{current}/stat") as stat:
            current = int(stat.read().rsplit(")", 1)[1].split()[1])
        if current <= 1:
            return None
    return None


def _grep(paths, pattern: str) -> list[str]:
    hits = []
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            if re.search(pattern, line, re.IGNORECASE):
                hits.append(f"{path.name}: {line.strip()[:300]}")
    return hits


def _diagnosis(stack, runs: dict[str, list], tis: dict[str, list]) -> str:
    """For a run that did not succeed or a task that needed another try: every try's state and the end of its
    task log, and the scheduler's lines about the run (a CI failure must say why, not only that)."""
    parts: list[str] = []
    for dag_id, dag_tis in tis.items():
        bad_runs = {r["dag_run_id"] for r in runs[dag_id] if r["state"] != "success"}
        for ti in dag_tis:
            if ti["state"] == "success" and ti["try_number"] == 1 and ti["dag_run_id"] not in bad_runs:
                continue
            run_id, task_id = ti["dag_run_id"], ti["task_id"]
            path = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries"
            tries = [
                (t["try_number"], t["state"], t.get("hostname"))
                for t in stack.api("GET", path)["task_instances"]
            ]
            parts.append(f"===== {dag_id} {run_id} {task_id}: state {ti['state']}, tries {tries}")
            for log in sorted(
                stack.home.glob(f"logs/dag_id={dag_id}/run_id={run_id}/task_id={task_id}/**/*.log")
            ):
                parts.append(f"----- {log.relative_to(stack.home)}")
                parts.append("\n".join(log.read_text(errors="replace").splitlines()[-40:]))
        for run_id in sorted(bad_runs):
            parts.append(f"===== scheduler and worker lines on {run_id}")
            parts += _grep(list(stack.logs.glob("*.log")), re.escape(run_id))[-40:]
    return "\n".join(parts)


# -- the scenario -------------------------------------------------------------------------------------------
def test_celery_backfill_budget_and_worker_kill(deployment):
    from connections import moto_s3_client

    stack, sim, workers, bucket, schema, moto_endpoint, started_at, wait_for = deployment
    alive = lambda: list(stack.processes.values())  # noqa: E731
    for dag_id, filename in DAG_FILES.items():
        stack.wait_for_dag(dag_id, filename)
        stack.api("PATCH", f"dags/{dag_id}", json={"is_paused": False})

    # 1 + 2. Both DAGs backfilled at once; the simulator's most requests in flight against P x C.
    sim.reset_requests()
    started = time.monotonic()
    last = day(DAYS - 1)
    for dag_id in DAG_FILES:
        stack.cli(
            "backfill",
            "create",
            "--dag-id",
            dag_id,
            "--from-date",
            FIRST_DAY.isoformat(),
            "--to-date",
            last.isoformat(),
            "--max-active-runs",
            str(MAX_ACTIVE_RUNS),
        )
    most_running = collections.Counter[str]()

    def finished() -> bool:
        done = True
        for dag_id in DAG_FILES:
            runs = _runs(stack, dag_id)
            most_running[dag_id] = max(most_running[dag_id], sum(r["state"] == "running" for r in runs))
            done = done and len(runs) == DAYS and all(r["state"] in ("success", "failed") for r in runs)
        return done

    wait_for(finished, 600, "both backfills to finish", interval=3, alive=alive())
    backfill_seconds = time.monotonic() - started
    assert min(most_running.values()) > 1, f"several runs of each DAG at once, not {dict(most_running)}"
    in_flight = sim.max_in_flight()
    requests = sim.request_count()

    runs = {dag_id: _runs(stack, dag_id) for dag_id in DAG_FILES}
    tis = {dag_id: _task_instances(stack, dag_id) for dag_id in DAG_FILES}
    diagnosis = _diagnosis(stack, runs, tis)
    if diagnosis:
        print(diagnosis, flush=True)
    for dag_id in DAG_FILES:
        assert {r["state"] for r in runs[dag_id]} == {"success"}, [
            (r["dag_run_id"], r["state"]) for r in runs[dag_id]
        ]
        assert {r["run_type"] for r in runs[dag_id]} == {"backfill"}
        assert len(tis[dag_id]) == DAYS * len(LOG_TYPES)
        retried = [
            (t["task_id"], t["dag_run_id"], t["try_number"]) for t in tis[dag_id] if t["try_number"] != 1
        ]
        assert all(t["state"] == "success" for t in tis[dag_id])
        assert not retried, f"{dag_id}: tasks needed a second try (a failed first try): {retried}"
    days = sorted(_run_day(r) for r in runs["opsera_logs_to_s3"])
    assert days == [day(i) for i in range(DAYS)], days
    assert sorted(_run_day(r) for r in runs["opsera_logs_to_postgres"]) == days

    s3_client = moto_s3_client(moto_endpoint)
    landed_days = _landed_days(s3_client, bucket)
    assert landed_days == {lt: {d.isoformat() for d in days} for lt in LOG_TYPES}
    s3_records = _check_s3(sim, bucket, days)
    pg_records = _check_postgres(sim, schema, days)
    deadlocks = _grep(
        [*stack.logs.glob("*.log"), *(stack.home / "logs").glob("**/*.log")],
        r"deadlock|UniqueViolation",
    )
    assert not deadlocks, deadlocks
    task_logs = list((stack.home / "logs").glob("**/*.log"))
    first_events = len(_grep(task_logs, r"First asset event of alias .*: recorded by this run"))
    alias_waits = len(_grep(task_logs, r"Waiting for run .* to record the first asset event"))
    bound = POOL_SLOTS * CONCURRENCY
    assert 0 < in_flight <= bound, f"{in_flight} requests in flight at once; the budget is {bound}"

    # 3. A worker SIGKILLed mid-task: the task is rerun (cleared) with slow pages, its worker killed.
    dag_id, task_id, kill_day = "opsera_logs_to_s3", "audit_logs", day(14)
    run_id = next(r["dag_run_id"] for r in runs[dag_id] if _run_day(r) == kill_day)
    ti_path = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
    first_try = stack.api("GET", ti_path)["try_number"]
    sim.config.latency = 2.0
    audit_before = sim.request_count("audit")
    stack.api(
        "POST",
        f"dags/{dag_id}/clearTaskInstances",
        json={"dry_run": False, "dag_run_id": run_id, "task_ids": [task_id], "only_failed": False},
    )

    def running_with_pid():
        ti = stack.api("GET", ti_path)
        if ti["state"] == "running" and ti.get("pid") and sim.request_count("audit") > audit_before:
            return ti
        return None

    victim_ti = wait_for(running_with_pid, 180, "the cleared task to run and send requests", interval=0.5)
    victim = _worker_of(int(victim_ti["pid"]), workers)
    assert victim is not None, f"no worker holds the task's process {victim_ti['pid']}"
    killed_try = victim_ti["try_number"]
    os.killpg(victim.pid, signal.SIGKILL)
    victim.popen.wait(timeout=30)
    del stack.processes[victim.name]  # killed on purpose: no longer one that must stay alive
    sim.config.latency = LATENCY
    killed_at = time.monotonic()

    final = wait_for(
        lambda: (
            (ti := stack.api("GET", ti_path))["state"] == "success" and ti["try_number"] > killed_try and ti
        ),
        HEARTBEAT_TIMEOUT + 240,
        "Airflow to retry the killed task",
        interval=2,
        alive=alive(),
    )
    recovery_seconds = time.monotonic() - killed_at
    tries = stack.api("GET", f"{ti_path}/tries")["task_instances"]
    outcome = [(t["try_number"], t["state"]) for t in sorted(tries, key=lambda t: t["try_number"])]
    assert dict(outcome).get(killed_try) not in (None, "success"), outcome
    kill_records = _check_s3(sim, bucket, [kill_day], ("audit",))  # raises unless exact
    assert _check_s3(sim, bucket, days) == s3_records
    survivor = next(w for w in workers if w is not victim)
    assert survivor.alive()

    print(
        "\n===== Celery cluster: figures =====\n"
        f"deployment      : CeleryExecutor, Redis broker {REDIS_URL}, PostgreSQL metadata + result backend, "
        f"{WORKERS} workers x concurrency {WORKER_CONCURRENCY}\n"
        f"backfill        : 2 DAGs x {DAYS} days ({days[0]} .. {days[-1]}), --max-active-runs {MAX_ACTIVE_RUNS}; "
        f"most runs active at once: {dict(most_running)}\n"
        f"runs            : {sum(len(r) for r in runs.values())} succeeded\n"
        f"tasks           : {sum(len(t) for t in tis.values())} task instances succeeded, all on their first try\n"
        f"records         : S3 {s3_records:,} landed ({len(LOG_TYPES) * DAYS} folders), Postgres {pg_records:,} "
        f"rows (4 tables in new schema {schema}), all equal to the ground truth, no duplicate\n"
        f"requests        : {requests:,} to the simulator ({LATENCY * 1000:.0f} ms each)\n"
        f"in flight       : at most {in_flight} at once; the budget P x C = {POOL_SLOTS} x {CONCURRENCY} = {bound}\n"
        f"backfill time   : {backfill_seconds:.0f} s wall\n"
        f"worker kill     : {dag_id}.{task_id} {kill_day} on {victim.name} (pid {victim.pid}) SIGKILLed at try "
        f"{killed_try} (first run: try {first_try}); tries {outcome}; final state {final['state']} on "
        f"{survivor.name} {recovery_seconds:.0f} s after the kill; the day's folder exact afterwards "
        f"({kill_records:,} records, verified against its manifest, no duplicate)\n"
        f"test time       : {time.monotonic() - started_at:.0f} s wall, deployment start and checks included\n"
        f"alias events    : {first_events} first events of an alias recorded, {alias_waits} tasks waited their "
        "turn for one (operators/first_event.py)\n"
        "deadlocks       : none in worker or task logs\n"
        "===================================",
        flush=True,
    )
