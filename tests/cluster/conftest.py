"""The Celery cluster tests: marked ``cluster``, run only when asked for (``make test-cluster``, a path under
tests/cluster, ``-m cluster`` or ``OPSERA_CLUSTER_TESTS=1``). A missing PostgreSQL or Redis skips them, except
under ``CI=true``, where it fails the run."""

from __future__ import annotations

import pathlib
import sys

import pytest
from opt_in import deselect_unless_asked

HERE = pathlib.Path(__file__).resolve().parent
# The browser test's process helpers (started by id, stopped by process group) and Airflow stack.
sys.path.insert(0, str(HERE.parent / "ui"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster: runs Airflow with the CeleryExecutor and two Celery workers (make test-cluster)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    deselect_unless_asked(config, items, "cluster", "OPSERA_CLUSTER_TESTS", HERE)
