"""Provider metadata read by Airflow's providers manager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from airflow_provider_opsera import __version__


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-opsera",
        "name": "Opsera",
        "description": "Opsera audit and activity logs: hook, log operators, Postgres transfer and a "
        "deferrable pipeline status sensor.",
        "versions": [__version__],
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
                        "host": "https://app.opsera.io",
                        "password": "Personal access token (API or Security Logs scope)",
                        "extra": '{"timeout": 60, "verify": true, "max_retries": 5, "page_size": 1000, '
                        '"concurrency": 4}',
                    },
                },
                "conn-fields": {
                    "timeout": {
                        "label": "Timeout (seconds)",
                        "description": "Per-request timeout. Default 60.",
                        "schema": {"type": ["number", "null"], "minimum": 1},
                    },
                    "verify": {
                        "label": "Verify TLS",
                        "description": "Verify the server's TLS certificate (true/false, or a CA bundle path). "
                        "Default true.",
                        "schema": {"type": ["boolean", "string", "null"]},
                    },
                    "max_retries": {
                        "label": "Max retries",
                        "description": "Retries on 429, 5xx, timeouts and dropped connections. Default 5.",
                        "schema": {"type": ["integer", "null"], "minimum": 0},
                    },
                    "page_size": {
                        "label": "Page size",
                        "description": "Records per page on the v2 audit endpoint (1-1000). Default 1000.",
                        "schema": {"type": ["integer", "null"], "minimum": 1, "maximum": 1000},
                    },
                    "concurrency": {
                        "label": "Concurrency",
                        "description": "Parallel requests while extracting. Default 4.",
                        "schema": {"type": ["integer", "null"], "minimum": 1, "maximum": 32},
                    },
                },
            }
        ],
    }
