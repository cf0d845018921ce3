"""example_dags/opsera_logs_to_postgres.py end to end: ``dag.test()`` against the simulator, into PostgreSQL.

Each of the four tables must hold exactly the simulator's ground truth for the data interval, and a rerun of
the same interval must leave them untouched.
"""

from __future__ import annotations

import pendulum
import pytest
from dag_runs import asset_events, load_example_dag, run_day
from pg_helpers import FAST, assert_table_is, snapshot

from airflow_provider_opsera import OpseraLogType
from airflow_provider_opsera.transfers.postgres.table import default_table

DAY = pendulum.datetime(2024, 5, 9, tz="UTC")
NEXT = DAY.add(days=1)


@pytest.fixture
def sim(opsera_simulator, monkeypatch):
    """A day of every log type (pipeline activity above the API's cap of 1000 a response), and neighbours."""
    for log_type, n in (
        ("user_activity", 300),
        ("audit", 1200),
        ("token_activity", 100),
        ("pipeline_activity", 2200),
    ):
        opsera_simulator.generate(log_type, DAY, NEXT, n)
        opsera_simulator.generate(log_type, DAY.subtract(hours=1), DAY, 5)
        opsera_simulator.generate(log_type, NEXT, NEXT.add(hours=1), 5)
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", opsera_simulator.connection_json(FAST))
    return opsera_simulator


@pytest.fixture
def dag(airflow_db):
    return load_example_dag("opsera_logs_to_postgres")


def test_example_dag_loads_a_day_of_every_log_type_and_a_rerun_changes_nothing(
    sim, dag, postgres_conn, pg, pg_schema
):
    run_day(dag, {"schema": pg_schema}, DAY, NEXT)
    for log_type in OpseraLogType:
        assert_table_is(
            pg, pg_schema, default_table(log_type), log_type, sim.ground_truth(log_type, DAY, NEXT)
        )
    before = {t: snapshot(pg, pg_schema, default_table(t)) for t in OpseraLogType}

    run_day(dag, {"schema": pg_schema}, DAY, NEXT)
    assert {t: snapshot(pg, pg_schema, default_table(t)) for t in OpseraLogType} == before

    # Each run emitted an asset event for the table, in the postgres provider's URI scheme.
    events = asset_events(f"postgres://127.0.0.1:5432/test/{pg_schema}/opsera_pipeline_activity_logs")
    assert [e["rows"] for e in events] == [2200, 2200]
    assert events[0]["start"] == DAY.isoformat() and events[0]["log_type"] == "pipeline_activity"
