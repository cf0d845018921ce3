"""Apache Airflow provider for Opsera's audit and activity logs API.

The public surface: :class:`OpseraLogType` and the exceptions here; ``hooks.opsera.OpseraHook``;
``operators.logs``; ``transfers.postgres``; ``sensors.pipeline``; ``triggers.pipeline``; ``testing``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from airflow_provider_opsera.catalogue import OpseraLogType
from airflow_provider_opsera.exceptions import (
    LandingConflictError,
    LandingIntegrityError,
    OpseraAPIError,
    OpseraAuthError,
    OpseraConnectionError,
    OpseraError,
    OpseraIncompleteResultError,
    OpseraRecordError,
)

__all__ = [
    "LandingConflictError",
    "LandingIntegrityError",
    "OpseraAPIError",
    "OpseraAuthError",
    "OpseraConnectionError",
    "OpseraError",
    "OpseraIncompleteResultError",
    "OpseraLogType",
    "OpseraRecordError",
    "__version__",
]
