"""An operator that verifies a landed archive over a data interval and fails when it does not verify."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_opsera.catalogue import OpseraLogType, endpoint_for
from airflow_provider_opsera.connection import DEFAULT_CONN_ID
from airflow_provider_opsera.exceptions import LandingIntegrityError
from airflow_provider_opsera.operators.rendering import rendered_interval
from airflow_provider_opsera.verify import text, verify_archive

if TYPE_CHECKING:
    from airflow.sdk import Context


class OpseraVerifyArchiveOperator(BaseOperator):
    """Verify one log type's archive over ``[start, end)``, interval by interval, as audit evidence.

    The same checks as ``python -m airflow_provider_opsera.verify``: for every expected interval a manifest
    exists (gaps and overlaps), every part of the current revision matches its count and sha256, the revision
    chain (and, with ``signing_conn_id``, every signature) holds, and with ``against_api`` the API's count now
    equals the archived one. The table goes to the task log; with ``report_path``, ``report.json``,
    ``report.md`` and ``report.html`` are written there. The task fails (``LandingIntegrityError``) when any
    interval does not verify; otherwise its XCom value is the summary (verdict, counts per status, problems).

    :param base_url: the landing base, e.g. ``s3://bucket`` (templated).
    :param log_type: ``user_activity``, ``audit``, ``token_activity`` or ``pipeline_activity``.
    :param start: start of the range, inclusive (templated; default the data interval's start).
    :param end: end of the range, exclusive (templated; default the data interval's end).
    :param interval: the expected interval of a folder: ``1d`` (default), ``1h``, ...
    :param against_api: also compare each interval's count with the API now.
    :param opsera_conn_id: the Opsera connection, for ``against_api``.
    :param conn_id: the connection of the archive's store (e.g. an ``aws`` connection).
    :param signing_conn_id: the connection whose password is the manifests' signing key.
    :param report_path: a folder (path or URL) for the three reports (templated).
    :param report_conn_id: the connection of ``report_path``'s store (default: ``conn_id``).
    """

    template_fields: Sequence[str] = (
        "base_url",
        "start",
        "end",
        "report_path",
        "conn_id",
        "report_conn_id",
        "opsera_conn_id",
        "signing_conn_id",
    )
    ui_color = "#e6f4ea"

    def __init__(
        self,
        *,
        base_url: str,
        log_type: OpseraLogType | str,
        start: Any = "{{ data_interval_start }}",
        end: Any = "{{ data_interval_end }}",
        interval: str = "1d",
        against_api: bool = False,
        opsera_conn_id: str = DEFAULT_CONN_ID,
        conn_id: str | None = None,
        signing_conn_id: str | None = None,
        report_path: str | None = None,
        report_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url
        self.log_type = endpoint_for(log_type).log_type.value
        self.start = start
        self.end = end
        self.interval = interval
        self.against_api = against_api
        self.opsera_conn_id = opsera_conn_id
        self.conn_id = conn_id
        self.signing_conn_id = signing_conn_id
        self.report_path = report_path
        self.report_conn_id = report_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        lo, hi = rendered_interval(self.start, self.end)
        conn_id = self.conn_id or None
        report_path = str(self.report_path).strip() if self.report_path else None
        report = verify_archive(
            str(self.base_url).strip(),
            self.log_type,
            lo,
            hi,
            interval=self.interval,
            against_api=self.against_api,
            opsera_conn_id=self.opsera_conn_id,
            conn_id=conn_id,
            signing_conn_id=self.signing_conn_id or None,
            report_path=report_path or None,
            report_conn_id=self.report_conn_id or conn_id,
        )
        self.log.info("%s", text.table(report))
        summary = report.summary()
        if report_path:
            summary["report"] = report_path
            self.log.info("Reports (report.json, report.md, report.html) written to %s", report_path)
        if not report.ok:
            raise LandingIntegrityError(
                f"The {self.log_type} archive under {self.base_url} does not verify for "
                f"[{lo.isoformat()}, {hi.isoformat()}): {report.summary_line()}. "
                + " | ".join(summary["problems"][:10])
            )
        return summary
