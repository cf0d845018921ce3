"""Provider metadata read by Airflow's providers manager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from airflow_provider_opsera import __version__
from airflow_provider_opsera.connection import DEFAULT_API_URL, EXTRAS, form_placeholder

#: Where DAG authors read the provider's documentation (the Providers page links it).
DOCUMENTATION_URL = "https://pypi.org/project/airflow-provider-opsera/"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-opsera",
        "name": "Opsera",
        "description": "Opsera audit and activity logs: hook, log operators, Postgres transfer and a "
        "deferrable pipeline status sensor.",
        "versions": [__version__],
        "documentation-url": DOCUMENTATION_URL,
        "integrations": [
            {
                "integration-name": "Opsera",
                "external-doc-url": "https://docs.opsera.io/",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": "Opsera", "python-modules": ["airflow_provider_opsera.hooks.opsera"]}],
        "operators": [
            {"integration-name": "Opsera", "python-modules": ["airflow_provider_opsera.operators.logs"]}
        ],
        "sensors": [
            {"integration-name": "Opsera", "python-modules": ["airflow_provider_opsera.sensors.pipeline"]}
        ],
        "triggers": [
            {"integration-name": "Opsera", "python-modules": ["airflow_provider_opsera.triggers.pipeline"]}
        ],
        "transfers": [
            {
                "source-integration-name": "Opsera",
                "target-integration-name": "PostgreSQL",
                "python-module": "airflow_provider_opsera.transfers.postgres",
            }
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_opsera.hooks.opsera.OpseraHook",
                "hook-name": "Opsera",
                "connection-type": "opsera",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login"],
                    "relabeling": {"host": "API URL", "password": "API token"},
                    "placeholders": {
                        "host": DEFAULT_API_URL,
                        "password": "Personal access token (API or Security Logs scope)",
                        "extra": form_placeholder(),
                    },
                },
                "conn-fields": {spec.key: spec.form_field() for spec in EXTRAS},
            }
        ],
    }
