"""Pytest fixture ``opsera_simulator``: a running simulator, with ``AIRFLOW_CONN_OPSERA_DEFAULT`` pointing at it.

Registered through the ``pytest11`` entry point, so it loads in every pytest session where the provider is
installed: it imports nothing heavy until a test asks for the fixture. Configure it with a marker::

    @pytest.mark.opsera_simulator(seed=7, scenario="demo", config=SimulatorConfig(sort="random"))
    def test_my_dag(opsera_simulator): ...
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from airflow_provider_opsera.testing.simulator import OpseraSimulator


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "opsera_simulator(seed=42, scenario=None, day=None, **kwargs): configure the opsera_simulator fixture "
        "(kwargs go to OpseraSimulator: latency, config, clock, token).",
    )


@pytest.fixture
def opsera_simulator(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[OpseraSimulator]:
    """A started :class:`OpseraSimulator` (seed 42, no data unless the marker names a scenario), stopped after."""
    from airflow_provider_opsera.connection import DEFAULT_CONN_ID
    from airflow_provider_opsera.testing.simulator import OpseraSimulator

    marker = request.node.get_closest_marker("opsera_simulator")
    kwargs: dict[str, Any] = dict(marker.kwargs) if marker else {}
    scenario, day = kwargs.pop("scenario", None), kwargs.pop("day", None)
    sim = OpseraSimulator(**kwargs)
    if scenario:
        sim.load_scenario(scenario, day=day)
    with sim:
        monkeypatch.setenv(f"AIRFLOW_CONN_{DEFAULT_CONN_ID.upper()}", sim.connection_json())
        yield sim
