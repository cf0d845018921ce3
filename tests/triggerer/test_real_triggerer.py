"""On a real triggerer: Airflow's dag-processor, scheduler, api-server and ``airflow triggerer`` as separate
processes (LocalExecutor, a fresh PostgreSQL metadata database) against the simulator on loopback, with a busy
account (10,000 unrelated pipeline records an hour).

One scenario, in order, with the triggerer stopped and started again in the middle of it:

1. 50 deferred sensors in one DAG (``opsera_fleet_wait``) wait in the triggerer; the simulator counts the
   requests: at most 2 per poll interval, whatever N.
2. The example DAG ``opsera_pipeline_events`` is started by its watcher when a scripted run finishes.
3. The triggerer is stopped (by process id). Half the sensors' runs, and one more watched run, finish while
   it is down. It is started again: every sensor succeeds with its own record, the watched run that finished
   meanwhile starts the event DAG once, and the run reported before the restart does not start it again.
"""

from __future__ import annotations

import pathlib
import shutil
import time

import pytest

pytestmark = pytest.mark.triggerer

N = 50
POKE = 5.0
EVENTS_PID = "611e7dca57f4eff66e9db084"
ROOT = pathlib.Path(__file__).resolve().parents[2]


def pid(i: int) -> str:
    return f"65{i:022x}"


@pytest.fixture(scope="module")
def deployment(request, tmp_path_factory):
    from ui_processes import ManagedProcess, wait_for
    from ui_stack import AIRFLOW, PG_ADMIN_DSN, AirflowStack, scratch_database

    from airflow_provider_opsera.testing.simulator import OpseraSimulator

    root = request.config.pluginmanager.get_plugin(str(ROOT / "tests" / "conftest.py"))
    root.require_service(
        root.postgres_available(PG_ADMIN_DSN), "PostgreSQL at 127.0.0.1:5432 is not reachable"
    )
    base = tmp_path_factory.mktemp("triggerer")
    dags = base / "dags"
    dags.mkdir()
    shutil.copy(ROOT / "tests" / "triggerer" / "dags" / "opsera_fleet_wait.py", dags)
    shutil.copy(ROOT / "example_dags" / "opsera_pipeline_events.py", dags)
    sim = OpseraSimulator(seed=7, host="127.0.0.1").start()
    sim.background_pipeline_traffic(10_000)
    try:
        with scratch_database("opsera_triggerer_test_") as database:
            stack = AirflowStack(
                base,
                dags_folder=dags,
                database=database,
                port=root.free_port(),
                extra_env={
                    "AIRFLOW_CONN_OPSERA_DEFAULT": sim.connection_json({"retry_min_wait": 0.2}),
                    "OPSERA_FLEET_SIZE": str(N),
                    "OPSERA_FLEET_POKE_INTERVAL": str(POKE),
                    "OPSERA_EVENTS_PIPELINE_ID": EVENTS_PID,
                    "OPSERA_EVENTS_POLL_INTERVAL": "3",
                    "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "True",  # asset-triggered runs need it
                    "AIRFLOW__CORE__PARALLELISM": "16",
                    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                    "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "5",
                    "AIRFLOW__TRIGGERER__CAPACITY": "200",
                    "PYTHONPATH": str(ROOT),
                },
            )
            processes: dict[str, ManagedProcess] = {}

            def start_triggerer() -> ManagedProcess:
                n = len([k for k in processes if k.startswith("triggerer")])
                proc = ManagedProcess(
                    f"triggerer-{n}", [AIRFLOW, "triggerer"], stack.env, stack.logs / f"triggerer-{n}.log"
                )
                processes[proc.name] = proc
                stack.processes[proc.name] = proc
                return proc

            try:
                stack.start()
                start_triggerer()
                yield stack, sim, start_triggerer, wait_for
            except BaseException:
                print(stack.log_tails(80))
                print(stack.task_log_tails())
                raise
            finally:
                for proc in processes.values():
                    proc.stop()
                stack.stop()
    finally:
        sim.stop()


def _tis(stack, dag_id: str, run_id: str) -> dict[str, str]:
    body = stack.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100")
    return {ti["task_id"]: ti["state"] for ti in body["task_instances"]}


def _event_runs(stack) -> list[dict]:
    return stack.api("GET", "dags/opsera_pipeline_events/dagRuns?order_by=logical_date")["dag_runs"]


def _anchore(sim, pipeline: str, run: int, *events) -> None:
    sim.script_run(pipeline, run, [{"step_name": "anchore", "events": list(events)}])


def _report(stack, run_id: str):
    body = stack.api(
        "GET",
        f"dags/opsera_pipeline_events/dagRuns/{run_id}/taskInstances/report_scan/xcomEntries/return_value",
    )
    return body["value"]


def test_fleet_and_events_on_a_real_triggerer_across_a_restart(deployment):
    stack, sim, start_triggerer, wait_for = deployment
    alive = lambda: [p for p in stack.processes.values()]  # noqa: E731
    for i in range(N):
        _anchore(sim, pid(i), 3, (-30, "analyzing"))
    _anchore(sim, EVENTS_PID, 40, (-30, "analyzing"))
    for dag_id, filename in (
        ("opsera_fleet_wait", "opsera_fleet_wait.py"),
        ("opsera_pipeline_events", "opsera_pipeline_events.py"),
    ):
        stack.wait_for_dag(dag_id, filename)
        stack.api("PATCH", f"dags/{dag_id}", json={"is_paused": False})

    # 1. The fleet defers; once every sensor waits in the triggerer, count the requests for a while.
    run = stack.api("POST", "dags/opsera_fleet_wait/dagRuns", json={"logical_date": None})
    run_id = run["dag_run_id"]
    wait_for(
        lambda: list(_tis(stack, "opsera_fleet_wait", run_id).values()).count("deferred") == N,
        420,
        f"all {N} sensors to defer",
        interval=3,
        alive=alive(),
    )
    time.sleep(2 * POKE)  # the triggerer picks the last ones up
    start, before = time.time(), sim.request_count()
    time.sleep(6 * POKE)
    per_interval = (sim.request_count() - before) / ((time.time() - start) / POKE)
    print(f"{N} deferred sensors: {per_interval:.2f} requests per poll interval", flush=True)
    assert per_interval <= 2.0, per_interval

    # 2. The watched run finishes: its watcher starts the event DAG.
    _anchore(sim, EVENTS_PID, 40, (0, "success", "Anchore Scan Completed"))
    first = wait_for(
        lambda: [r for r in _event_runs(stack) if r["state"] == "success"],
        180,
        "the event DAG's first run",
        interval=2,
        alive=alive(),
    )
    (report,) = _report(stack, first[0]["dag_run_id"])
    assert report["key"] == f"{EVENTS_PID}:40" and report["status"] == "success"
    assert report["record"]["message"] == "Anchore Scan Completed"

    # 3. The triggerer stops (by pid); runs finish while it is down; a new triggerer takes over.
    triggerer = next(p for name, p in stack.processes.items() if name.startswith("triggerer") and p.alive())
    triggerer.stop()
    del stack.processes[triggerer.name]  # stopped on purpose: no longer one that must stay alive
    for i in range(0, N, 2):
        _anchore(sim, pid(i), 3, (0, "success"))
    _anchore(sim, EVENTS_PID, 41, (0, "analyzing"), (1, "failed", "2 critical vulnerabilities"))
    time.sleep(5)
    start_triggerer()
    time.sleep(2 * POKE)
    for i in range(1, N, 2):
        _anchore(sim, pid(i), 3, (0, "success"))
    wait_for(
        lambda: (
            stack.api("GET", f"dags/opsera_fleet_wait/dagRuns/{run_id}")["state"] in ("success", "failed")
        ),
        300,
        "the fleet's run to finish",
        interval=3,
        alive=alive(),
    )
    states = _tis(stack, "opsera_fleet_wait", run_id)
    assert set(states.values()) == {"success"}, states
    value = stack.api(
        "GET", f"dags/opsera_fleet_wait/dagRuns/{run_id}/taskInstances/wait_07/xcomEntries/return_value"
    )["value"]
    assert value["pipeline_id"] == pid(7) and value["status"] == "success"

    runs = wait_for(
        lambda: (r := _event_runs(stack)) and len(r) >= 2 and all(x["state"] == "success" for x in r) and r,
        180,
        "the event DAG's second run",
        interval=2,
        alive=alive(),
    )
    time.sleep(3 * 3)  # a repeat of run 40 would show up by now
    runs = _event_runs(stack)
    keys = [item["key"] for r in runs for item in _report(stack, r["dag_run_id"])]
    assert keys == [f"{EVENTS_PID}:40", f"{EVENTS_PID}:41"], keys
    statuses = [item["status"] for r in runs for item in _report(stack, r["dag_run_id"])]
    assert statuses == ["success", "failure"]
