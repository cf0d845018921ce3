"""An alias's first asset event waits its turn (operators/first_event.py).

Airflow 3.0-3.4's API server fails a task (no retry) when two tasks record the first event of an alias for an
asset at once: both insert the alias-asset link (and the asset, if no DAG declares it). The Celery cluster test
shows it happening in a backfill; here: the decision, the waiting loop with a fake Airflow, and the task SDK
lookup in real ``dag.test()`` runs.
"""

from __future__ import annotations

import logging

import pendulum
import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_opsera.operators import first_event
from airflow_provider_opsera.operators.first_event import await_first_event_turn, may_record_now

LOG = logging.getLogger("test_first_event")
ALIAS, URI = "opsera:d.audit_logs", "s3://bucket/opsera/audit"


# -- the decision -------------------------------------------------------------------------------------------
keys = st.tuples(
    st.sampled_from(["manual__a", "backfill__b", "scheduled__c", "backfill__d"]),
    st.sampled_from(["t", "t_0", "t_1"]),
)


@given(st.sets(keys, min_size=1, max_size=8))
def test_of_the_running_instances_exactly_the_first_records_an_unresolved_alias(running):
    allowed = [key for key in running if may_record_now(False, running, key)]
    assert allowed == [min(running)]


@given(st.sets(keys, max_size=8), keys)
def test_a_resolved_alias_or_an_instance_alone_records_at_once(running, mine):
    assert may_record_now(True, running, mine)
    assert may_record_now(False, {mine}, mine)
    assert may_record_now(False, set(), mine)


# -- the loop, with a fake Airflow ------------------------------------------------------------------------------
class FakeAirflow:
    def __init__(self, mine, running, resolves_after=None, fail=None):
        self.mine = mine
        self._running = running
        self.resolves_after = resolves_after  # lookups answered "no" before the link exists
        self.fail = fail
        self.lookups = 0

    def resolves(self, alias_name, uri):
        assert (alias_name, uri) == (ALIAS, URI)
        if self.fail:
            raise self.fail
        self.lookups += 1
        return self.resolves_after is not None and self.lookups > self.resolves_after

    def running(self):
        return self._running


class Clock:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def wait(airflow, clock, **kwargs):
    return await_first_event_turn(airflow, ALIAS, URI, LOG, clock=clock, sleep=clock.sleep, **kwargs)


def test_an_alias_that_resolves_costs_one_lookup_and_no_wait(caplog):
    airflow, clock = FakeAirflow(("r2", "t"), [("r1", "t"), ("r2", "t")], resolves_after=0), Clock()
    assert wait(airflow, clock) is False
    assert (airflow.lookups, clock.sleeps) == (1, [])
    assert not caplog.records


def test_the_first_running_instance_records_the_first_event_without_waiting(caplog):
    caplog.set_level(logging.INFO)
    airflow, clock = FakeAirflow(("r1", "t"), [("r1", "t"), ("r2", "t"), ("r3", "t")]), Clock()
    assert wait(airflow, clock) is False
    assert clock.sleeps == []
    assert (
        "First asset event of alias opsera:d.audit_logs for s3://bucket/opsera/audit: recorded by this run (r1)"
        in caplog.text
    )


def test_a_later_instance_waits_until_the_first_ones_event_made_the_link(caplog):
    caplog.set_level(logging.INFO)
    airflow, clock = FakeAirflow(("r3", "t"), [("r1", "t"), ("r3", "t")], resolves_after=4), Clock()
    assert wait(airflow, clock, poll=2.0) is True
    assert clock.sleeps == [2.0] * 4
    assert "Waiting for run r1 to record the first asset event of alias opsera:d.audit_logs" in caplog.text
    assert "now resolves to s3://bucket/opsera/audit: recording this run's event" in caplog.text
    assert caplog.text.count("Waiting for run") == 1  # said once, not at every poll


def test_mapped_instances_of_one_run_take_turns_too():
    first, second = ("r1", "t_0"), ("r1", "t_1")
    assert wait(FakeAirflow(first, [first, second]), Clock()) is False
    clock = Clock()
    assert wait(FakeAirflow(second, [first, second], resolves_after=1), clock) is True
    assert len(clock.sleeps) == 1


def test_a_wait_that_runs_out_records_the_event_with_a_warning(caplog):
    caplog.set_level(logging.INFO)
    airflow, clock = FakeAirflow(("r2", "t"), [("r1", "t"), ("r2", "t")]), Clock()
    assert wait(airflow, clock, timeout=10.0, poll=3.0) is True
    assert clock.now >= 10.0 and len(clock.sleeps) == 4
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1
    assert "still does not resolve to s3://bucket/opsera/audit after 10 s" in warning[0].getMessage()
    assert "('r1', 't')" in warning[0].getMessage() and "clear the task" in warning[0].getMessage()


def test_an_airflow_that_cannot_answer_never_fails_the_task(caplog):
    airflow = FakeAirflow(("r2", "t"), [("r1", "t")], fail=RuntimeError("Airflow answered ErrorResponse()"))
    clock = Clock()
    assert wait(airflow, clock) is False
    assert clock.sleeps == []
    assert "Could not ask Airflow whether alias opsera:d.audit_logs resolves" in caplog.text
    assert "RuntimeError: Airflow answered ErrorResponse()" in caplog.text


def test_a_context_without_a_task_instance_is_a_lookup_that_cannot_answer(caplog):
    lookup = first_event.TaskSdkLookup({})
    assert await_first_event_turn(lookup, ALIAS, URI, LOG) is False
    assert "the task's context has no task instance" in caplog.text


# -- the task SDK lookup in real runs -------------------------------------------------------------------------
DAG_FILE = """
import pendulum
from airflow.sdk import DAG, Param
from airflow_provider_opsera.operators.logs import OpseraAuditLogsOperator

try:
    from airflow.timetables.interval import CronDataIntervalTimetable
except ImportError:
    from airflow.sdk.timetables.interval import CronDataIntervalTimetable

with DAG(
    "opsera_first_event",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    params={"base": Param("file:///tmp", type="string")},
):
    OpseraAuditLogsOperator(
        task_id="audit_logs",
        output_path="{{ params.base }}/opsera/audit/dt={{ data_interval_start | ds }}/",
        retries=0,
    )
"""
DAY1 = pendulum.datetime(2024, 3, 1, tz="UTC")


@pytest.fixture
def dag(opsera_simulator, airflow_db, tmp_path, monkeypatch):
    """The DAG file in a temporary DAGs folder: Airflow 3.3's ``dag.test()`` only runs DAGs from there."""
    from airflow import settings
    from airflow_compat import DagBag

    opsera_simulator.generate("audit", DAY1, DAY1.add(days=3), 30)
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", opsera_simulator.connection_json())
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "opsera_first_event.py").write_text(DAG_FILE)
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(dags))
    monkeypatch.setattr(settings, "DAGS_FOLDER", str(dags))
    bag = DagBag(dag_folder=str(dags))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag("opsera_first_event")


def _run(dag, day, base):
    from airflow.utils.state import DagRunState

    run = dag.test(logical_date=day.add(days=1), run_conf={"base": base})
    assert run.state == DagRunState.SUCCESS
    return run


def test_the_first_run_records_the_first_event_and_later_runs_find_the_alias_resolved(dag, tmp_path, capfd):
    from dag_runs import asset_events

    base = f"file://{tmp_path}/lake"
    _run(dag, DAY1, base)
    first = "".join(capfd.readouterr())
    assert f"First asset event of alias opsera:opsera_first_event.audit_logs for {base}/opsera/audit" in first
    _run(dag, DAY1.add(days=1), base)
    second = "".join(capfd.readouterr())
    for output in (first, second):
        assert "Could not ask Airflow" not in output
        assert "Waiting for run" not in output
    assert "First asset event" not in second  # the alias resolves: one lookup, nothing else
    assert sorted(e["folder"] for e in asset_events(f"{base}/opsera/audit")) == [
        f"{base}/opsera/audit/dt=2024-03-01",
        f"{base}/opsera/audit/dt=2024-03-02",
    ]


def test_a_run_waits_for_an_earlier_running_instance_and_then_records_its_event(
    dag, tmp_path, capfd, monkeypatch
):
    """The earlier run's task is running (as far as Airflow's database says) and never records the new asset's
    first event: the later run waits, then records its own when the wait runs out."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from dag_runs import asset_events
    from sqlalchemy import update

    first_run = _run(dag, DAY1, f"file://{tmp_path}/lake")
    with create_session() as session:
        session.execute(
            update(TaskInstance)
            .where(TaskInstance.dag_id == dag.dag_id, TaskInstance.run_id == first_run.run_id)
            .values(state="running")
        )
    capfd.readouterr()
    monkeypatch.setattr(first_event, "FIRST_EVENT_TIMEOUT", 1.5)
    monkeypatch.setattr(first_event, "FIRST_EVENT_POLL", 0.5)
    other = f"file://{tmp_path}/other"  # a new asset for the alias: not resolved yet
    _run(dag, DAY1.add(days=1), other)
    output = "".join(capfd.readouterr())
    assert f"Waiting for run {first_run.run_id} to record the first asset event" in output
    assert f"still does not resolve to {other}/opsera/audit after 2 s" in output
    assert [e["folder"] for e in asset_events(f"{other}/opsera/audit")] == [
        f"{other}/opsera/audit/dt=2024-03-02"
    ]
