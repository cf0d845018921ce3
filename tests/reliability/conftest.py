"""Shared setup of the reliability tests: fast retry settings, one simulator loaded with every log type."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from reliability_helpers import connection, load_matrix_data

from airflow_provider_opsera.testing import OpseraSimulator

# Imported as well as registered through the entry point, as tests/operators does: a conftest fixture shadows it.
from airflow_provider_opsera.testing.pytest_plugin import opsera_simulator  # noqa: F401


@pytest.fixture(scope="module")
def matrix_sim() -> Iterator[OpseraSimulator]:
    """One simulator for a whole module, holding a data set per log type that makes every extraction path
    run (v1 multi-day splits and per-value splits, v2 paging), with records just outside the intervals."""
    with OpseraSimulator(seed=2024) as sim:
        load_matrix_data(sim)
        yield sim


@pytest.fixture
def fault_sim(matrix_sim: OpseraSimulator, monkeypatch: pytest.MonkeyPatch) -> OpseraSimulator:
    """``matrix_sim`` with no faults pending, an empty request log and ``opsera_default`` pointing at it."""
    matrix_sim.clear_faults()
    matrix_sim.reset_requests()
    matrix_sim.config.page_shift = 0
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", connection(matrix_sim))
    return matrix_sim
