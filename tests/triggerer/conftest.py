"""The real-triggerer tests: marked ``triggerer``, run only when asked for (``make test-triggerer``, a path
under tests/triggerer, ``-m triggerer`` or ``OPSERA_TRIGGERER_TESTS=1``). A missing PostgreSQL skips them,
except under ``CI=true``, where it fails the run."""

from __future__ import annotations

import os
import pathlib
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
# The browser test's process helpers (started by id, stopped by process group) and Airflow stack.
sys.path.insert(0, str(HERE.parent / "ui"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "triggerer: runs Airflow's scheduler, api-server and triggerer (make test-triggerer)"
    )


def _asked_for(config: pytest.Config) -> bool:
    if os.environ.get("OPSERA_TRIGGERER_TESTS", "").lower() in ("1", "true", "yes"):
        return True
    if "triggerer" in (config.option.markexpr or ""):
        return True
    here = config.invocation_params.dir
    for arg in config.args:
        path = (here / arg.split("::")[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _asked_for(config):
        return
    deselected = [item for item in items if item.get_closest_marker("triggerer")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("triggerer")]
