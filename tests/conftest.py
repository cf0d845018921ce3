"""Test setup: an isolated Airflow home, and helpers for services that must fail in CI when missing."""

from __future__ import annotations

import os
import pathlib

_ROOT = pathlib.Path(__file__).resolve().parent.parent
os.environ.setdefault("AIRFLOW_HOME", str(_ROOT / ".airflow-home"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(_ROOT / "example_dags"))

import pytest  # noqa: E402


def require_service(available: bool, reason: str) -> None:
    """Skip when a service is unreachable, except in CI (``CI=true``), where that is a failure."""
    if available:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI=true: a missing service fails the run)")
    pytest.skip(reason)
