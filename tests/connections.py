"""Airflow connection values shared by the test folders (``tests/`` is on sys.path: its conftest is there)."""

from __future__ import annotations

import json
from typing import Any

#: The Airflow connection id of moto's S3 endpoint (``AIRFLOW_CONN_AWS_MOTO``), set by the ``moto_s3`` fixture.
MOTO_CONN_ID = "aws_moto"


def postgres_conn_json(postgres_dsn: str, **extra: Any) -> str:
    """An Airflow postgres connection (``AIRFLOW_CONN_*`` value) for the test DSN."""
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(postgres_dsn)
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": info.get("host", "127.0.0.1"),
            "port": int(info.get("port", 5432)),
            "login": info.get("user", "postgres"),
            "password": info.get("password"),
            "schema": info.get("dbname", "test"),
            "extra": extra,
        }
    )


def aws_moto_conn_json(endpoint: str) -> str:
    """An Airflow aws connection (``AIRFLOW_CONN_*`` value) for moto's S3 server at ``endpoint``."""
    return json.dumps(
        {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
    )


def moto_s3_client(endpoint: str) -> Any:
    """A boto3 S3 client for moto's server at ``endpoint``, with moto's test credentials (no environment
    needed: for the tests that start Airflow processes rather than use the ``moto_s3`` fixture)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
