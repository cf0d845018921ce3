"""An empty (or missing) data interval: the advice fits the DAG's timetable.

A timetable without data intervals (Airflow 3's default for a cron schedule, ``CronTriggerTimetable``) is the
cause, so the advice is to switch timetables. A ``CronDataIntervalTimetable`` can still give one run an empty
interval (a manual run on a day a daylight saving time change skips the schedule's time): then switching to the
timetable the DAG already uses cannot help, and passing ``start``/``end`` can.
"""

from __future__ import annotations

import datetime as dt

import pendulum
import pytest

from airflow_provider_opsera.operators.rendering import has_data_intervals, rendered_interval

SWITCH = (
    "this run has an empty data interval. Give the DAG a timetable with data intervals (e.g. "
    "schedule=CronDataIntervalTimetable('@daily', timezone='UTC')), or pass start and end."
)
PASS = (
    "Airflow gave this run an empty data interval, although the DAG's timetable (CronDataIntervalTimetable) "
    "has data intervals. That happens e.g. for a manual run on a day where the schedule's time does not exist "
    "(a daylight saving time change skips it), or a run triggered without a logical date. Pass explicit start "
    "and end for this run, or trigger it with a logical date on the schedule."
)


def _timetables():
    """The same timetables from the Task SDK (newer Airflow 3 releases) and from Airflow core (every one)."""
    from airflow.timetables import interval as core_interval
    from airflow.timetables import trigger as core_trigger

    found = [(core_interval, core_trigger)]
    try:
        from airflow.sdk.definitions.timetables import interval as sdk_interval
        from airflow.sdk.definitions.timetables import trigger as sdk_trigger
    except ImportError:  # pragma: no cover - older Airflow 3 releases
        pass
    else:
        found.append((sdk_interval, sdk_trigger))
    return found


@pytest.mark.parametrize(("interval", "trigger"), _timetables())
def test_which_timetables_have_data_intervals(interval, trigger):
    day = dt.timedelta(days=1)
    assert has_data_intervals(interval.CronDataIntervalTimetable("@daily", timezone="UTC"))
    assert has_data_intervals(interval.DeltaDataIntervalTimetable(day))
    assert has_data_intervals(trigger.CronTriggerTimetable("@daily", timezone="UTC", interval=day))
    assert not has_data_intervals(trigger.CronTriggerTimetable("@daily", timezone="UTC"))
    assert not has_data_intervals(trigger.DeltaTriggerTimetable(day))


@pytest.mark.parametrize(("interval", "trigger"), _timetables())
def test_the_advice_follows_the_timetable(interval, trigger):
    moment = "2024-03-31T01:00:00+00:00"
    with pytest.raises(ValueError) as no_intervals:
        rendered_interval(moment, moment, timetable=trigger.CronTriggerTimetable("@daily", timezone="UTC"))
    assert str(no_intervals.value) == f"start and end both rendered to {moment}: {SWITCH}"

    data_intervals = interval.CronDataIntervalTimetable("0 2 * * *", timezone="Europe/Berlin")
    with pytest.raises(ValueError) as empty_run:
        rendered_interval(moment, moment, timetable=data_intervals)
    assert str(empty_run.value) == f"start and end both rendered to {moment}: {PASS}"

    with pytest.raises(ValueError) as missing:
        rendered_interval("None", "None", timetable=data_intervals)
    assert str(missing.value) == "start rendered to 'None': " + PASS.replace("an empty", "no", 1)


def test_outside_a_task_the_advice_is_the_timetable_one():
    with pytest.raises(ValueError) as err:
        rendered_interval("2024-05-10", "2024-05-10")
    assert str(err.value) == f"start and end both rendered to 2024-05-10T00:00:00+00:00: {SWITCH}"
    assert rendered_interval("2024-05-10", "2024-05-11")[1] == pendulum.datetime(2024, 5, 11)


DAGS = """
import pendulum
from airflow.sdk import DAG

try:
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:  # older Airflow 3 releases
    from airflow.timetables.interval import CronDataIntervalTimetable

from airflow_provider_opsera.operators.logs import OpseraAuditLogsOperator
from airflow_provider_opsera.transfers.postgres import OpseraLogsToPostgresOperator

START = pendulum.datetime(2024, 1, 1, tz="UTC")

with DAG("opsera_berlin_2am", schedule=CronDataIntervalTimetable("0 2 * * *", timezone="Europe/Berlin"),
         start_date=START):
    OpseraAuditLogsOperator(task_id="audit", retries=0)
    OpseraLogsToPostgresOperator(task_id="to_postgres", log_type="audit", retries=0)

with DAG("opsera_cron_trigger_daily", schedule="@daily", start_date=START):
    OpseraAuditLogsOperator(task_id="audit", retries=0)
"""


@pytest.fixture
def dags(airflow_db, tmp_path, monkeypatch):
    """The DAG file in a temporary DAGs folder: Airflow 3.3's ``dag.test()`` only runs DAGs from there."""
    from airflow import settings
    from airflow_compat import DagBag

    (tmp_path / "opsera_empty_intervals.py").write_text(DAGS)
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(tmp_path))
    monkeypatch.setattr(settings, "DAGS_FOLDER", str(tmp_path))
    bag = DagBag(dag_folder=str(tmp_path))
    assert not bag.import_errors, bag.import_errors
    return bag


def test_a_dst_day_manual_run_of_a_data_interval_dag_is_told_to_pass_start_and_end(
    opsera_simulator, dags, capfd
):
    from airflow.utils.state import DagRunState

    # 02:00 in Berlin does not exist on 31 March 2024 (clocks jump from 02:00 to 03:00): Airflow infers an
    # empty data interval for a manual run at 01:00 UTC that day, although the timetable has data intervals.
    dag = dags.get_dag("opsera_berlin_2am")
    run = dag.test(logical_date=pendulum.datetime(2024, 3, 31, 1, tz="UTC"))
    assert run.data_interval_start == run.data_interval_end
    assert run.state == DagRunState.FAILED
    output = "".join(capfd.readouterr())
    moment = "2024-03-31T01:00:00+00:00"
    assert f"start and end both rendered to {moment}: {PASS}" in output
    assert output.count(PASS) >= 2  # the Postgres transfer says the same
    assert "Give the DAG a timetable" not in output
    assert opsera_simulator.request_count() == 0


def test_a_dag_without_data_intervals_is_told_to_switch_timetables(opsera_simulator, dags, capfd):
    from airflow.utils.state import DagRunState

    run = dags.get_dag("opsera_cron_trigger_daily").test(
        logical_date=pendulum.datetime(2024, 5, 10, tz="UTC")
    )
    assert run.state == DagRunState.FAILED
    output = "".join(capfd.readouterr())
    assert f"start and end both rendered to 2024-05-10T00:00:00+00:00: {SWITCH}" in output
    assert "Airflow gave this run" not in output
    assert opsera_simulator.request_count() == 0
