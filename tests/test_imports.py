"""Every module of the provider imports on the installed Airflow release (make test-compat runs this on each)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import airflow_provider_opsera

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(airflow_provider_opsera.__path__, "airflow_provider_opsera.")
)


def test_the_package_has_modules():
    assert "airflow_provider_opsera.compat" in MODULES
    assert "airflow_provider_opsera.sensors.pipeline" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name):
    importlib.import_module(name)
