"""The Airflow names this provider uses, imported where each Airflow 3 release keeps them.

``airflow.sdk`` is the home of the task SDK's public names, but it filled up over the 3.x releases:
``BaseHook`` arrived in 3.1's ``airflow.sdk``, ``AirflowFailException`` and friends in
``airflow.sdk.exceptions`` later still. Every module of the provider imports these names from here, so one
file knows the fallbacks and the rest of the code reads as if on the newest Airflow.
"""

from __future__ import annotations

try:
    from airflow.sdk import BaseHook
except ImportError:  # Airflow 3.0
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef,attr-defined]

try:
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowSensorTimeout,
        AirflowSkipException,
        AirflowTaskTimeout,
    )
except ImportError:  # Airflow 3.0 and 3.1
    from airflow.exceptions import (  # type: ignore[no-redef,assignment]
        AirflowException,
        AirflowFailException,
        AirflowSensorTimeout,
        AirflowSkipException,
        AirflowTaskTimeout,
    )

__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "AirflowTaskTimeout",
    "BaseHook",
]
