"""Complete over time: ``settle`` (no interval read before ``end + settle``) and ``recheck`` (earlier intervals
re-verified and re-landed on drift), in object storage (``file://``, the example DAG's templated folders) and
in Postgres, against the simulator with late records and records updated in place."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pendulum
import pytest
from airflow.sdk import DAG
from connections import postgres_conn_json

from airflow_provider_opsera import drift as drifts
from airflow_provider_opsera.landing import history, iter_landed_records, list_revisions, read_manifest
from airflow_provider_opsera.operators.base import DEFAULT_SETTLE
from airflow_provider_opsera.operators.logs import OpseraAuditLogsOperator
from airflow_provider_opsera.testing import OpseraSimulator
from airflow_provider_opsera.transfers.postgres import OpseraLogsToPostgresOperator

try:
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:  # older Airflow 3 releases
    from airflow.timetables.interval import CronDataIntervalTimetable  # type: ignore[no-redef]

try:
    from airflow.sdk.exceptions import TaskDeferred
except ImportError:  # Airflow 3.0
    from airflow.exceptions import TaskDeferred  # type: ignore[no-redef,attr-defined]

FAST = {"retry_min_wait": 0.01, "retry_max_wait": 0.05}
D1 = pendulum.datetime(2024, 5, 9, tz="UTC")
D2, D3, D4 = D1.add(days=1), D1.add(days=2), D1.add(days=3)


class Clock:
    """The simulator's clock, moved by the test: late records appear as it passes their delay."""

    def __init__(self, now: pendulum.DateTime | None) -> None:
        self.now = now  # None: the wall clock

    def __call__(self) -> pendulum.DateTime:
        return self.now if self.now is not None else pendulum.now("UTC")


def rec(n: int, created: pendulum.DateTime, **fields: Any) -> dict[str, Any]:
    stamp = created.format("YYYY-MM-DDTHH:mm:ss.SSS") + "Z"
    return {"_id": f"{n:024x}", "createdAt": stamp, "updatedAt": stamp, "type": "pipeline", **fields}


@pytest.fixture
def clock() -> Clock:
    return Clock(D2.add(minutes=10))


@pytest.fixture
def sim(clock: Clock, monkeypatch) -> Iterator[OpseraSimulator]:
    with OpseraSimulator(seed=5, clock=clock) as simulator:
        monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", simulator.connection_json(FAST))
        yield simulator


def ids(records) -> set[str]:
    return {r["_id"] for r in records}


# -- parameters -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (dt.timedelta(minutes=15), dt.timedelta(minutes=15)),
        (90, dt.timedelta(seconds=90)),
        (0, dt.timedelta(0)),
        ("PT15M", dt.timedelta(minutes=15)),
        ("P3D", dt.timedelta(days=3)),
        ("P1DT12H", dt.timedelta(days=1, hours=12)),
    ],
)
def test_durations(value, expected):
    assert drifts.as_duration(value, "settle") == expected


@pytest.mark.parametrize("value", ["soon", "P1M", -5, True, [1]])
def test_bad_durations_fail_when_the_dag_is_parsed(value):
    with pytest.raises((ValueError, TypeError), match="settle"):
        OpseraAuditLogsOperator(task_id="t", settle=value)


def test_defaults_and_checks():
    op = OpseraAuditLogsOperator(task_id="t", output_path="file:///tmp/x/")
    assert (op.settle, op.recheck, op.recheck_mode, op.on_drift) == (DEFAULT_SETTLE, None, "count", "reland")
    with pytest.raises(ValueError, match="on_drift must be one of reland, warn, fail"):
        OpseraAuditLogsOperator(task_id="t", output_path="file:///tmp/x/", recheck="P1D", on_drift="panic")
    with pytest.raises(ValueError, match="recheck_mode must be one of count, full"):
        OpseraAuditLogsOperator(task_id="t", output_path="file:///tmp/x/", recheck="P1D", recheck_mode="x")
    with pytest.raises(ValueError, match="recheck needs output_path"):
        OpseraAuditLogsOperator(task_id="t", recheck="P1D")
    pg = OpseraLogsToPostgresOperator(task_id="p", log_type="audit", settle="PT1H", recheck=86400)
    assert (pg.settle, pg.recheck) == (dt.timedelta(hours=1), dt.timedelta(days=1))


def test_earlier_intervals_follow_the_timetable():
    daily = CronDataIntervalTimetable("@daily", timezone="UTC")
    assert drifts.earlier_intervals(D3, D4, dt.timedelta(days=2), daily) == [(D2, D3), (D1, D2)]
    # a monthly timetable: months of their own length, not 31 days
    monthly = CronDataIntervalTimetable("@monthly", timezone="UTC")
    march, april, may = (pendulum.datetime(2024, m, 1, tz="UTC") for m in (3, 4, 5))
    assert drifts.earlier_intervals(may, may.add(months=1), dt.timedelta(days=40), monthly) == [
        (april, may),
        (march, april),
    ]
    # no timetable: the current interval's length, back to back
    assert drifts.earlier_intervals(D3, D3.add(hours=6), dt.timedelta(hours=7), None) == [
        (D3.subtract(hours=6), D3),
        (D3.subtract(hours=12), D3.subtract(hours=6)),
    ]


# -- settle ---------------------------------------------------------------------------------------------------
def test_a_run_before_end_plus_settle_defers_on_a_datetime_trigger(sim, tmp_path):
    end = pendulum.now("UTC").add(minutes=2)
    op = OpseraAuditLogsOperator(
        task_id="t",
        start=end.subtract(hours=1).isoformat(),
        end=end.isoformat(),
        output_path=f"file://{tmp_path}/",
        settle="PT10M",
        deferrable=True,
    )
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({})  # type: ignore[arg-type]
    trigger = deferred.value.trigger
    assert type(trigger).__name__ == "DateTimeTrigger"
    assert pendulum.instance(trigger.serialize()[1]["moment"]) == end.add(minutes=10)
    assert deferred.value.method_name == "execute_complete"
    assert sim.request_count() == 0  # nothing read before it settled
    json.dumps(trigger.serialize()[1], default=str)


def test_a_run_that_cannot_defer_sleeps_until_it_settled(sim, tmp_path, monkeypatch):
    from airflow_provider_opsera.operators import base

    slept: list[float] = []
    monkeypatch.setattr(base.time, "sleep", slept.append)
    end = pendulum.now("UTC").subtract(seconds=30)
    op = OpseraAuditLogsOperator(
        task_id="t",
        start=end.subtract(hours=1).isoformat(),
        end=end.isoformat(),
        output_path=f"file://{tmp_path}/",
        settle=90,
        deferrable=False,
    )
    from airflow.sdk.execution_time.context import OutletEventAccessors

    op.execute({"outlet_events": OutletEventAccessors()})  # type: ignore[arg-type]
    assert len(slept) == 1 and 55 < slept[0] <= 60
    # a settled interval does not wait at all
    slept.clear()
    op.settle = dt.timedelta(0)
    op.execute({"outlet_events": OutletEventAccessors()})  # type: ignore[arg-type]
    assert slept == []


SETTLE_DAG = """
import pendulum
from airflow.sdk import DAG
try:
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:
    from airflow.timetables.interval import CronDataIntervalTimetable
from airflow_provider_opsera.operators.logs import OpseraAuditLogsOperator

with DAG("opsera_settle", schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
         start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), params={"landing": "file:///tmp/none"}):
    OpseraAuditLogsOperator(
        task_id="audit", retries=0, deferrable=True, settle=4,
        start="{{ params.start }}", end="{{ params.end }}", output_path="{{ params.landing }}/",
    )
"""


def test_dag_test_defers_the_run_and_resumes_it_once_settled(sim, clock, airflow_db, tmp_path, monkeypatch):
    from airflow import settings
    from airflow.utils.state import DagRunState
    from airflow_compat import DagBag

    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "settle.py").write_text(SETTLE_DAG)
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(dags))
    monkeypatch.setattr(settings, "DAGS_FOLDER", str(dags))
    clock.now = None
    end = pendulum.now("UTC").replace(microsecond=0)
    sim.generate("audit", end.subtract(hours=1), end, 30)
    dag = DagBag(dag_folder=str(dags)).get_dag("opsera_settle")
    conf = {
        "start": end.subtract(hours=1).isoformat(),
        "end": end.isoformat(),
        "landing": f"file://{tmp_path}/out",
    }
    run = dag.test(logical_date=D2, run_conf=conf)
    assert run.state == DagRunState.SUCCESS
    assert pendulum.now("UTC") >= end.add(seconds=4)
    manifest = read_manifest_of(f"file://{tmp_path}/out/")
    assert manifest["record_count"] == 30
    # every request was made after end + settle (the simulator logs each with its wall-clock time)
    assert sim.requests and all(r.time >= end.add(seconds=4) for r in sim.requests)


def read_manifest_of(url: str) -> dict[str, Any]:
    from airflow.sdk import ObjectStoragePath

    manifest = read_manifest(ObjectStoragePath(url))
    assert manifest is not None
    return manifest


# -- recheck, object storage, the example DAG's layout ----------------------------------------------------------
RECHECK_DAG = """
import pendulum
from airflow.sdk import DAG, Param
try:
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:
    from airflow.timetables.interval import CronDataIntervalTimetable
from airflow_provider_opsera.operators.logs import OpseraAuditLogsOperator, OpseraPipelineActivityLogsOperator

# example_dags/opsera_logs_to_s3.py's folder layout, word for word
OUTPUT_BASE = (
    "{{ (params.output_base or var.value.get('opsera_output_base', 'file:///tmp/opsera-logs')).rstrip('/') }}"
)
DAY = "{{ data_interval_start | ds }}"

with DAG("opsera_recheck", schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
         start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False,
         params={"output_base": Param(None, type=["null", "string"])}):
    OpseraAuditLogsOperator(
        task_id="audit_logs", retries=0, recheck="P2D",
        output_path=f"{OUTPUT_BASE}/opsera/audit/dt={DAY}/",
    )
    OpseraPipelineActivityLogsOperator(
        task_id="pipeline_activity_logs", retries=0, recheck="P2D", recheck_mode="full",
        output_path=f"{OUTPUT_BASE}/opsera/pipeline_activity/dt={DAY}/",
    )
"""


@pytest.fixture
def recheck_dag(airflow_db, tmp_path, monkeypatch):
    from airflow import settings
    from airflow_compat import DagBag

    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "recheck.py").write_text(RECHECK_DAG)
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(dags))
    monkeypatch.setattr(settings, "DAGS_FOLDER", str(dags))
    return DagBag(dag_folder=str(dags)).get_dag("opsera_recheck")


def xcom(run, task_id: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalar(
            XComModel.get_many(run_id=run.run_id, dag_ids=run.dag_id, task_ids=task_id, key="return_value")
        )
        return XComModel.deserialize_value(row)


def test_a_late_record_is_landed_by_a_later_runs_recheck_in_its_own_folder(sim, clock, recheck_dag, tmp_path):
    from airflow.utils.state import DagRunState

    base = f"file://{tmp_path}/lake"
    conf = {"output_base": base}
    folder = {d: f"{base}/opsera/audit/dt={d.to_date_string()}/" for d in (D1, D2, D3)}
    sim.generate("audit", D1, D4, 300)
    # at the edges of the days too: the cheap v2 count must not mistake a neighbour's minute for drift
    sim.add_records("audit", [rec(1, D2.subtract(seconds=20)), rec(2, D2.add(seconds=20)), rec(3, D3)])
    late = rec(9, D1.add(hours=23, minutes=58))  # created on D1, persisted 3 hours later: after D1 was landed
    sim.add_late_records("audit", [late], delay=dt.timedelta(hours=3))

    clock.now = D2.add(minutes=10)
    run = recheck_dag.test(logical_date=D2, run_conf=conf)  # lands D1; nothing landed before it to recheck
    assert run.state == DagRunState.SUCCESS
    first = read_manifest_of(folder[D1])
    assert late["_id"] not in ids(iter_landed_records(folder[D1]))
    assert xcom(run, "audit_logs")["drift"] == []

    clock.now = D3.add(minutes=10)  # the late record is at the API now
    run = recheck_dag.test(logical_date=D3, run_conf=conf)  # lands D2, rechecks D1 (and D0, never landed)
    assert run.state == DagRunState.SUCCESS
    assert ids(iter_landed_records(folder[D1])) == ids(sim.ground_truth("audit", D1, D2))
    assert late["_id"] in ids(iter_landed_records(folder[D1]))
    # the drift: in the XCom value, and in the folder's manifest history
    (report,) = xcom(run, "audit_logs")["drift"]
    assert report["start"] == D1.isoformat() and report["end"] == D2.isoformat()
    assert report["target"].rstrip("/") == folder[D1].replace("file://", "file://").rstrip("/")
    assert (report["count_before"], report["count_after"]) == (
        first["record_count"],
        first["record_count"] + 1,
    )
    assert (report["added_ids"], report["removed_ids"], report["action"]) == ([late["_id"]], [], "relanded")
    revisions = [m for _, m in list_revisions(sim_path(folder[D1]))]
    assert [(m["revision"], m["reason"]) for m in revisions] == [
        (1, "first landing"),
        (2, "recheck: late records"),
    ]
    assert revisions[1]["drift"]["added_ids"] == [late["_id"]]
    (_, relanded) = history(sim_path(folder[D1]))
    assert (
        relanded["reason"] == "recheck: late records"
        and relanded["drift"]["count_after"] == report["count_after"]
    )
    assert read_manifest_of(folder[D2])["revision"] == 1  # D2 is its own run's

    clock.now = D4.add(minutes=10)
    run = recheck_dag.test(logical_date=D4, run_conf=conf)  # lands D3, rechecks D2 and D1: no drift
    assert run.state == DagRunState.SUCCESS
    assert xcom(run, "audit_logs")["drift"] == []
    assert read_manifest_of(folder[D1])["revision"] == 2
    assert read_manifest_of(folder[D2])["revision"] == 1


def sim_path(url: str):
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(url)


def test_a_record_updated_after_landing_is_relanded_with_its_new_content(sim, clock, recheck_dag, tmp_path):
    from airflow.utils.state import DagRunState

    base = f"file://{tmp_path}/lake"
    folder = f"{base}/opsera/pipeline_activity/dt={D1.to_date_string()}/"
    step = rec(7, D1.add(hours=12), status="running", pipeline_id="p1", run_count=3)
    sim.add_records("pipeline_activity", [step, rec(8, D1.add(hours=13), status="success")])
    sim.generate("pipeline_activity", D1, D3, 40)

    run = recheck_dag.test(logical_date=D2, run_conf={"output_base": base})
    assert run.state == DagRunState.SUCCESS
    (landed,) = [r for r in iter_landed_records(folder) if r["_id"] == step["_id"]]
    assert landed["status"] == "running"

    clock.now = D3.add(minutes=10)
    updated = sim.update_record("pipeline_activity", step["_id"], status="success")  # same count, new content
    run = recheck_dag.test(logical_date=D3, run_conf={"output_base": base})
    assert run.state == DagRunState.SUCCESS
    (landed,) = [r for r in iter_landed_records(folder) if r["_id"] == step["_id"]]
    assert landed == updated and landed["status"] == "success"
    (report,) = xcom(run, "pipeline_activity_logs")["drift"]
    assert (report["count_before"], report["count_after"], report["changed_ids"]) == (
        report["count_after"],
        report["count_after"],
        [step["_id"]],
    )
    manifest = read_manifest_of(folder)
    assert (manifest["revision"], manifest["reason"]) == (2, "recheck: updated records")


# -- recheck, Postgres --------------------------------------------------------------------------------------------
@pytest.fixture
def pg(postgres_dsn, monkeypatch) -> Iterator[tuple[Any, str]]:
    import psycopg

    monkeypatch.setenv("AIRFLOW_CONN_POSTGRES_DEFAULT", postgres_conn_json(postgres_dsn))
    schema = f"opsera_recheck_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        yield conn, schema
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def daily_run(op: Any, day: pendulum.DateTime) -> Any:
    """Render and execute ``op`` as the daily run of ``day`` (its data interval ``[day, day + 1)``)."""
    from airflow.sdk.execution_time.context import OutletEventAccessors

    context: dict[str, Any] = {
        "dag": op.dag,
        "data_interval_start": day,
        "data_interval_end": day.add(days=1),
        "logical_date": day,
        "ds": day.to_date_string(),
        "params": {"schema": op.params["schema"]} if "schema" in op.params else {},
        "outlet_events": OutletEventAccessors(),
    }
    op.render_template_fields(context)
    return op.execute(context)


def postgres_op(schema: str, log_type: str, **kwargs: Any) -> OpseraLogsToPostgresOperator:
    with DAG(
        f"pg_recheck_{uuid.uuid4().hex[:6]}",
        schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
        start_date=D1,
        params={"schema": schema},
    ):
        return OpseraLogsToPostgresOperator(
            task_id="load", log_type=log_type, schema="{{ params.schema }}", recheck="P2D", **kwargs
        )


def rows(conn, schema: str, log_type: str) -> dict[str, dict]:
    table = f'"{schema}"."opsera_{log_type}_logs"'
    return {r[0]: r[1] for r in conn.execute(f"SELECT _id, raw FROM {table}").fetchall()}


@pytest.mark.parametrize("log_type", ["user_activity", "audit"])
def test_postgres_a_late_record_is_upserted_by_a_later_runs_recheck(sim, clock, pg, log_type):
    conn, schema = pg
    sim.generate(log_type, D1, D4, 200)
    late = rec(11, D1.add(hours=22))
    sim.add_late_records(log_type, [late], delay=dt.timedelta(hours=5))

    clock.now = D2.add(minutes=10)
    assert daily_run(postgres_op(schema, log_type), D1)["drift"] == []
    assert late["_id"] not in rows(conn, schema, log_type)

    clock.now = D3.add(minutes=10)
    result = daily_run(postgres_op(schema, log_type), D2)
    assert late["_id"] in rows(conn, schema, log_type)
    assert set(rows(conn, schema, log_type)) == ids(sim.ground_truth(log_type, D1, D3))
    (report,) = result["drift"]
    n = len(sim.ground_truth(log_type, D1, D2))
    assert report["target"] == f"{schema}.opsera_{log_type}_logs"
    assert (report["start"], report["count_before"], report["count_after"]) == (D1.isoformat(), n - 1, n)
    assert (report["added_ids"], report["removed_ids"], report["action"]) == ([late["_id"]], [], "relanded")
    assert result["rows"] == len(sim.ground_truth(log_type, D2, D3))

    clock.now = D4.add(minutes=10)
    assert daily_run(postgres_op(schema, log_type), D3)["drift"] == []


def test_postgres_a_full_recheck_rewrites_a_record_updated_after_loading(sim, clock, pg):
    conn, schema = pg
    step = rec(21, D1.add(hours=3), status="running")
    sim.add_records("audit", [step])
    sim.generate("audit", D1, D3, 50)
    daily_run(postgres_op(schema, "audit"), D1)
    clock.now = D3.add(minutes=10)
    updated = sim.update_record("audit", step["_id"], status="success")
    # counts alone cannot see an update in place
    assert daily_run(postgres_op(schema, "audit"), D2)["drift"] == []
    assert rows(conn, schema, "audit")[step["_id"]]["status"] == "running"
    (report,) = daily_run(postgres_op(schema, "audit", recheck_mode="full"), D2)["drift"]
    assert report["changed_ids"] == [step["_id"]] and report["added"] == report["removed"] == 0
    assert rows(conn, schema, "audit")[step["_id"]] == updated


def test_on_drift_warn_reports_without_relanding_and_fail_fails(sim, clock, pg):
    from airflow_provider_opsera.compat import AirflowFailException

    conn, schema = pg
    sim.generate("audit", D1, D3, 20)
    late = rec(31, D1.add(hours=1))
    sim.add_late_records("audit", [late], delay=dt.timedelta(days=1))
    daily_run(postgres_op(schema, "audit"), D1)
    clock.now = D3.add(minutes=10)
    (report,) = daily_run(postgres_op(schema, "audit", on_drift="warn"), D2)["drift"]
    assert (report["added_ids"], report["action"]) == ([late["_id"]], "warned")
    assert late["_id"] not in rows(conn, schema, "audit")
    with pytest.raises(AirflowFailException, match=r"1 earlier interval.*drifted"):
        daily_run(postgres_op(schema, "audit", on_drift="fail"), D2)
    assert late["_id"] not in rows(conn, schema, "audit")
    assert len(rows(conn, schema, "audit")) == len(sim.ground_truth("audit", D1, D3)) - 1  # D2 loaded


def test_the_cheap_v2_count_is_exact_at_the_interval_edges(sim, clock):
    from airflow_provider_opsera.hooks.opsera import OpseraHook

    sim.generate("audit", D1.subtract(hours=1), D2.add(hours=1), 500)
    sim.add_records(
        "audit", [rec(41, D1.subtract(seconds=1)), rec(42, D1), rec(43, D2.subtract(seconds=1)), rec(44, D2)]
    )
    hook = OpseraHook()
    for inclusive in (True, False):
        sim.config.end_inclusive = inclusive
        sim.reset_requests()
        assert drifts.api_count(hook, "audit", D1, D2, {}) == len(sim.ground_truth("audit", D1, D2))
        assert drifts.api_count(hook, "audit", D1, D2, {"type": "pipeline"}) == len(
            sim.ground_truth("audit", D1, D2, {"type": "pipeline"})
        )
        assert sim.request_count() <= 6
    assert drifts.api_count(hook, "user_activity", D1, D2, {}) is None  # v1: no cheap count
    assert drifts.api_count(hook, "audit", D1.add(seconds=5), D2, {}) is None  # not on whole minutes


def test_a_folder_without_the_interval_in_its_path_is_not_mistaken_for_an_earlier_one(sim, clock, tmp_path):
    """One folder for every run holds only the newest interval: a recheck must not compare it with another."""
    sim.generate("audit", D1, D3, 40)
    sim.add_late_records("audit", [rec(51, D1.add(hours=2))], delay=dt.timedelta(days=1))
    with DAG("undated", schedule=CronDataIntervalTimetable("@daily", timezone="UTC"), start_date=D1):
        op = OpseraAuditLogsOperator(task_id="t", output_path=f"file://{tmp_path}/audit/", recheck="P1D")
    daily_run(op, D1)
    clock.now = D3.add(minutes=10)
    with DAG("undated2", schedule=CronDataIntervalTimetable("@daily", timezone="UTC"), start_date=D1):
        op = OpseraAuditLogsOperator(task_id="t", output_path=f"file://{tmp_path}/audit/", recheck="P1D")
    manifest = daily_run(op, D2)
    assert manifest["drift"] == [] and manifest["start"] == D2.isoformat()
    assert manifest["revision"] == 2  # the run's own landing, no recheck revision over it
