"""An offline Opsera logs API for tests, demos and benchmarks: :class:`OpseraSimulator`.

``from airflow_provider_opsera.testing import OpseraSimulator, SimulatorConfig``. The names load lazily, so
importing this package (as the pytest plugin does in every test session) does not import aiohttp or Airflow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_opsera.testing.config import RequestLog, SimulatorConfig
    from airflow_provider_opsera.testing.faults import FAULT_KINDS
    from airflow_provider_opsera.testing.simulator import OpseraSimulator

__all__ = ["FAULT_KINDS", "OpseraSimulator", "RequestLog", "SimulatorConfig"]

_HOMES = {
    "OpseraSimulator": "airflow_provider_opsera.testing.simulator",
    "SimulatorConfig": "airflow_provider_opsera.testing.config",
    "RequestLog": "airflow_provider_opsera.testing.config",
    "FAULT_KINDS": "airflow_provider_opsera.testing.faults",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_HOMES[name]), name)
