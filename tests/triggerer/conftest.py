"""The real-triggerer tests: marked ``triggerer``, run only when asked for (``make test-triggerer``, a path
under tests/triggerer, ``-m triggerer`` or ``OPSERA_TRIGGERER_TESTS=1``). A missing PostgreSQL skips them,
except under ``CI=true``, where it fails the run."""

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
        "markers", "triggerer: runs Airflow's scheduler, api-server and triggerer (make test-triggerer)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    deselect_unless_asked(config, items, "triggerer", "OPSERA_TRIGGERER_TESTS", HERE)
