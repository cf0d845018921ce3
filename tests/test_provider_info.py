"""The provider registers itself with Airflow: `airflow providers list` and the `opsera` connection type."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from airflow_compat import before

from airflow_provider_opsera import __version__
from airflow_provider_opsera.get_provider_info import get_provider_info


def test_provider_info_shape():
    info = get_provider_info()
    assert info["package-name"] == "airflow-provider-opsera"
    assert info["versions"] == [__version__]
    (conn,) = info["connection-types"]
    assert conn["connection-type"] == "opsera"
    assert conn["hook-class-name"] == "airflow_provider_opsera.hooks.opsera.OpseraHook"
    behaviour = conn["ui-field-behaviour"]
    assert behaviour["relabeling"] == {"host": "API URL", "password": "API token"}
    assert set(behaviour["hidden-fields"]) == {"schema", "port", "login"}
    assert behaviour["placeholders"]["host"] == "https://app.opsera.io"
    assert set(conn["conn-fields"]) == {
        "timeout",
        "verify",
        "max_retries",
        "page_size",
        "concurrency",
        "retry_min_wait",
        "retry_max_wait",
    }


def test_airflow_knows_the_provider_and_connection_type(airflow_db):
    airflow = str(Path(sys.executable).with_name("airflow"))
    providers = subprocess.run(
        [airflow, "providers", "list"], capture_output=True, text=True, check=True
    ).stdout
    assert "airflow-provider-opsera" in providers
    hooks = subprocess.run([airflow, "providers", "hooks"], capture_output=True, text=True, check=True).stdout
    assert "opsera" in hooks and "airflow_provider_opsera.hooks.opsera.OpseraHook" in hooks


@pytest.mark.skipif(
    before("3.1"),
    reason="Airflow 3.0's ProvidersManager reads get_ui_field_behaviour only through the FAB provider's "
    "connection-form path (flask_appbuilder, wtforms), which this suite does not install",
)
def test_providers_manager_sees_the_connection_form():
    from airflow.providers_manager import ProvidersManager

    pm = ProvidersManager()
    assert "opsera" in pm.hooks
    assert pm.hooks["opsera"].hook_class_name == "airflow_provider_opsera.hooks.opsera.OpseraHook"
    assert pm.field_behaviours["opsera"]["relabeling"]["password"] == "API token"
