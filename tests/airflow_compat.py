"""Airflow names the tests use, imported where each supported Airflow 3 release keeps them.

``tests/`` is on sys.path (its conftest is there): ``from airflow_compat import DagBag``. The provider's own
fallbacks are in ``airflow_provider_opsera/compat.py``; the exceptions the provider raises come from there, so
the tests expect exactly those classes. Import this module lazily where the original import was lazy: it
imports Airflow.
"""

from __future__ import annotations

from typing import Any

import airflow
from packaging.version import Version

from airflow_provider_opsera.compat import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
)

#: The installed Airflow release, without pre-release or local parts (for ``skipif`` and version branches).
AIRFLOW_VERSION = Version(Version(airflow.__version__).base_version)

try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 3.0 and 3.1
    from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

try:
    from airflow.sdk.exceptions import TaskDeferred
except ImportError:  # Airflow 3.0 and 3.1
    from airflow.exceptions import TaskDeferred  # type: ignore[no-redef,attr-defined]

try:
    from airflow.sdk.serde import deserialize, serialize
except ImportError:  # Airflow 3.0 and 3.1
    from airflow.serialization.serde import deserialize, serialize  # type: ignore[no-redef]


def before(release: str) -> bool:
    """Whether the installed Airflow is older than ``release`` (e.g. ``"3.1"``), for ``pytest.mark.skipif``."""
    return Version(release) > AIRFLOW_VERSION


def postgres_driver() -> Any:
    """The DB-API module PostgresHook connects with: psycopg 3, or psycopg2 where SQLAlchemy is 1.x (Airflow
    3.0 requires SQLAlchemy 1.4). The database's own errors are that module's ``Error`` subclasses."""
    from airflow.providers.postgres.hooks import postgres

    if getattr(postgres, "USE_PSYCOPG3", False):
        import psycopg

        return psycopg
    import psycopg2

    return psycopg2


__all__ = [
    "AIRFLOW_VERSION",
    "AirflowException",
    "AirflowFailException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "DagBag",
    "TaskDeferred",
    "before",
    "deserialize",
    "postgres_driver",
    "serialize",
]
