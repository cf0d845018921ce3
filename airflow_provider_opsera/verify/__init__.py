"""Verification of a landed archive, as evidence: every interval of a range accounted for.

For one log type under ``<base>/opsera/<log_type>/`` and a range cut into expected intervals (daily by
default): a manifest covers each interval (gaps and overlaps reported), every part of the current revision
matches its count and sha256, the manifests' revision chain (and signatures) holds, and, when asked, the
API's count of each interval now equals what was archived. The result is a table, and a JSON, a Markdown and
an HTML report (a calendar of the period) that an auditor can keep.

``verify_archive(...)`` in Python; ``python -m airflow_provider_opsera.verify`` from a shell (exit status 0
only when every interval verifies); ``operators.verify.OpseraVerifyArchiveOperator`` in a DAG. Reads go
through ``ObjectStoragePath``: ``s3://`` and ``file://`` alike. Nothing is written to the archive.
"""

from __future__ import annotations

from airflow_provider_opsera.verify.model import (
    Finding,
    FolderResult,
    IntervalResult,
    Status,
    VerificationReport,
)
from airflow_provider_opsera.verify.reports import write_reports
from airflow_provider_opsera.verify.verification import verify_archive

__all__ = [
    "Finding",
    "FolderResult",
    "IntervalResult",
    "Status",
    "VerificationReport",
    "verify_archive",
    "write_reports",
]
