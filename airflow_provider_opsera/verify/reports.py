"""Writing the three reports (``report.json``, ``report.md``, ``report.html``) to a folder.

The folder is a local path or any ``ObjectStoragePath`` URL (``s3://bucket/evidence/2026-01/``), so an evidence
DAG can keep its reports next to the archive they describe.
"""

from __future__ import annotations

import json
import pathlib

from airflow.sdk import ObjectStoragePath

from airflow_provider_opsera.landing import storage_uri
from airflow_provider_opsera.verify import html, text
from airflow_provider_opsera.verify.model import VerificationReport

DEFAULT_REPORT_PATH = "opsera-verify-report"


def report_folder(path: str, conn_id: str | None = None) -> ObjectStoragePath:
    """A URL as it is; a plain path (relative or absolute) as a ``file://`` URL."""
    if "://" in path:
        return ObjectStoragePath(path.rstrip("/") + "/", conn_id=conn_id or None)
    return ObjectStoragePath(pathlib.Path(path).resolve().as_uri() + "/")


def write_reports(report: VerificationReport, path: str, *, conn_id: str | None = None) -> dict[str, str]:
    """Write ``report.json``, ``report.md`` and ``report.html`` into ``path``; returns their URIs by format."""
    folder = report_folder(path, conn_id)
    base = folder.path.rstrip("/")
    if folder.protocol in ("file", "local", ""):
        folder.fs.makedirs(base, exist_ok=True)
    contents = {
        "json": json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n",
        "md": text.markdown(report),
        "html": html.render(report),
    }
    written = {}
    for kind, body in contents.items():
        target = f"{base}/report.{kind}"
        with folder.fs.open(target, "wb") as handle:
            handle.write(body.encode())
        written[kind] = f"{storage_uri(folder).rstrip('/')}/report.{kind}"
    return written
