"""Operators: extract Opsera logs for a data interval into object storage or XCom."""

from __future__ import annotations

from airflow_provider_opsera.operators.logs import (
    OpseraAuditLogsOperator,
    OpseraLogsOperator,
    OpseraPipelineActivityLogsOperator,
    OpseraTokenActivityLogsOperator,
    OpseraUserActivityLogsOperator,
)

__all__ = [
    "OpseraAuditLogsOperator",
    "OpseraLogsOperator",
    "OpseraPipelineActivityLogsOperator",
    "OpseraTokenActivityLogsOperator",
    "OpseraUserActivityLogsOperator",
]
