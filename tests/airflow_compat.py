"""Airflow names the tests use, imported where each supported Airflow 3 release keeps them.

``tests/`` is on sys.path (its conftest is there): ``from airflow_compat import DagBag``. The provider's own
fallbacks are in ``airflow_provider_opsera/compat.py``; the exceptions the provider raises come from there, so
the tests expect exactly those classes. Import this module lazily where the original import was lazy: it
imports Airflow.
"""

from __future__ import annotations

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

__all__ = [
    "AIRFLOW_VERSION",
    "AirflowException",
    "AirflowFailException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "DagBag",
    "TaskDeferred",
]
