"""Fixtures for the sensor tests: a temporary DAGs folder for scenario DAGs, and the simulator.

``dag.test()`` only runs a DAG that sits in the configured DAGs folder, so scenario DAGs (written by
``sensor_helpers.write_dags``) go to a temporary folder that is the DAGs folder for the module using it.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest
from sensor_helpers import FAST_RETRIES

from airflow_provider_opsera.testing.pytest_plugin import opsera_simulator  # noqa: F401


@pytest.fixture(scope="module")
def dags_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    """A temporary DAGs folder (env and ``airflow.settings``), for the module's tests."""
    import airflow.settings

    folder = tmp_path_factory.mktemp("dags")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(folder))
        mp.setattr(airflow.settings, "DAGS_FOLDER", str(folder))
        yield folder


@pytest.fixture
def sim(opsera_simulator, monkeypatch):  # noqa: F811
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", opsera_simulator.connection_json(FAST_RETRIES))
    return opsera_simulator
