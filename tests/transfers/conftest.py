"""Fixtures for the Postgres transfer tests: a throwaway schema on the real PostgreSQL, a simulator, connections."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pg_helpers import FAST, conn_json

from airflow_provider_opsera.testing import OpseraSimulator


@pytest.fixture
def pg(postgres_dsn) -> Iterator[Any]:
    """An autocommit psycopg connection for setting up and checking tables."""
    import psycopg

    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def pg_schema(pg) -> Iterator[str]:
    """A schema name unique to this test, dropped (with everything in it) afterwards."""
    name = f"opsera_test_{uuid.uuid4().hex[:10]}"
    yield name
    pg.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def postgres_conn(monkeypatch, postgres_dsn) -> str:
    """``postgres_default`` pointing at the test database."""
    value = conn_json(postgres_dsn)
    monkeypatch.setenv("AIRFLOW_CONN_POSTGRES_DEFAULT", value)
    return value


@pytest.fixture
def sim(monkeypatch) -> Iterator[OpseraSimulator]:
    """A simulator with ``opsera_default`` pointing at it (fast retries)."""
    with OpseraSimulator(seed=11) as simulator:
        monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", simulator.connection_json(FAST))
        yield simulator
