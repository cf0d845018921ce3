"""Running the example DAGs in tests (``tests/`` is on sys.path: its conftest is there)."""

from __future__ import annotations

import pathlib
from typing import Any

EXAMPLE_DAGS = pathlib.Path(__file__).resolve().parents[1] / "example_dags"


def load_example_dag(dag_id: str) -> Any:
    """The DAG ``dag_id`` from ``example_dags/<dag_id>.py``, which must import without errors."""
    from airflow_compat import DagBag

    bag = DagBag(dag_folder=str(EXAMPLE_DAGS / f"{dag_id}.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(dag_id)


def run_day(dag: Any, conf: dict, start: Any, end: Any) -> None:
    """``dag.test()`` of the daily run at ``end``, which must succeed with the data interval ``[start, end)``."""
    from airflow.utils.state import DagRunState

    # A daily CronDataIntervalTimetable run at ``end`` reads the day before: [start, end).
    run = dag.test(logical_date=end, run_conf=conf)
    assert run.state == DagRunState.SUCCESS
    assert (run.data_interval_start, run.data_interval_end) == (start, end)


def asset_events(uri: str) -> list[dict]:
    """The extras of every asset event recorded for the asset ``uri`` (Airflow's metadata database)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = (
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == uri)
        )
        return [dict(row.extra) for row in session.scalars(query)]
