"""``verify_archive``: one log type's archive over a range, checked interval by interval.

Order of work: list the folders and read every manifest (small); check, for the folders whose interval
touches the range, the current revision's parts and the revision chain (the parts are streamed, several
folders at once); place the folders on the expected intervals (gaps, overlaps); with ``against_api``, count
each folder's interval (and each gap) at the API now. Nothing is written to the archive.
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pendulum

from airflow_provider_opsera import __version__
from airflow_provider_opsera.catalogue import OpseraLogType, endpoint_for
from airflow_provider_opsera.connection import DEFAULT_CONN_ID
from airflow_provider_opsera.timeutils import to_utc
from airflow_provider_opsera.verify import archive, coverage
from airflow_provider_opsera.verify.api_counts import ApiCounter
from airflow_provider_opsera.verify.model import (
    Finding,
    FolderResult,
    IntervalResult,
    Status,
    VerificationReport,
)


def signing_key_of(conn_id: str) -> bytes:
    """The HMAC key kept in an Airflow connection's password (the one :func:`landing.signing_key` reads)."""
    from airflow_provider_opsera.landing import signing_key

    return signing_key(conn_id)


def verify_archive(
    base_url: str,
    log_type: OpseraLogType | str,
    start: Any,
    end: Any,
    *,
    interval: str | dt.timedelta = "1d",
    against_api: bool = False,
    opsera_conn_id: str = DEFAULT_CONN_ID,
    conn_id: str | None = None,
    signing_conn_id: str | None = None,
    signing_key: bytes | None = None,
    report_path: str | None = None,
    report_conn_id: str | None = None,
    workers: int = 4,
) -> VerificationReport:
    """Verify the archive of ``log_type`` under ``base_url`` for ``[start, end)``, one ``interval`` at a time.

    For every expected interval: a manifest covers it (else ``missing``; two covering the same time are an
    ``overlap``), every part the current revision lists exists and matches its sha256 and record count (else
    ``tampered``), the revision chain holds (else ``broken_chain``) and, with a signing key, every signature
    verifies (else ``bad_signature``). With ``against_api``, the API's count of each folder's interval now
    differs from its ``record_count``: ``drift``. ``ok`` and ``warning`` pass; :attr:`VerificationReport.ok` is
    True only when every interval does.

    :param base_url: the landing base, e.g. ``s3://bucket`` or ``file:///tmp/opsera-logs`` (the folders are
        ``<base>/opsera/<log_type>/*/``).
    :param log_type: ``user_activity``, ``audit``, ``token_activity`` or ``pipeline_activity``.
    :param start: start of the range, inclusive (a date, datetime or ISO string; naive means UTC).
    :param end: end of the range, exclusive.
    :param interval: the expected granularity: ``1d`` (default), ``1h``, ``15m``, ``1w`` or ``P1D``.
    :param against_api: also count each interval at the API now (``opsera_conn_id``).
    :param conn_id: the connection for ``base_url``'s store (e.g. an ``aws`` connection).
    :param signing_conn_id: the connection whose password is the manifests' HMAC key (or pass
        ``signing_key``).
    :param report_path: a folder (local path or ``ObjectStoragePath`` URL) to write ``report.json``,
        ``report.md`` and ``report.html`` to (``report_conn_id`` for its credentials).
    :param workers: folders checked at once.
    """
    log_type = endpoint_for(log_type).log_type.value
    lo, hi = to_utc(start, "from"), to_utc(end, "to")
    step = coverage.parse_step(interval)
    coverage.slots(lo, hi, step)  # a bad range fails before any I/O
    key = (
        signing_key
        if signing_key is not None
        else signing_key_of(signing_conn_id)
        if signing_conn_id
        else None
    )
    key_id = signing_conn_id if signing_conn_id else ("(given key)" if key is not None else None)
    counter = ApiCounter(log_type, opsera_conn_id) if against_api else None
    if counter is not None:
        _ = counter.hook.settings  # a bad Opsera connection fails before the archive is read

    root = archive.log_type_root(base_url, log_type, conn_id)
    paths = archive.list_folders(root)
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="opsera-verify") as pool:
        read = list(pool.map(lambda p: archive.read_folder(p, log_type), paths))
        todo = [
            (path, result, data, manifest)
            for path, (result, data, manifest) in zip(paths, read, strict=True)
            if data is not None and manifest is not None and _touches(result, lo, hi)
        ]
        list(
            pool.map(
                lambda item: archive.check_folder(*item, key=key, key_id=key_id),
                todo,
            )
        )
    folders = [result for result, _, _ in read]
    cells = coverage.intervals(lo, hi, step, folders)
    general = [f for folder in folders if not folder.placed for f in folder.findings]
    if counter is not None:
        try:
            _compare_with_api(counter, [(r, m) for _, r, _, m in todo], cells)
        finally:
            counter.close()
    report = VerificationReport(
        base_url=base_url,
        log_type=log_type,
        start=lo,
        end=hi,
        interval=str(interval) if not isinstance(interval, dt.timedelta) else f"{int(step.total_seconds())}s",
        against_api=against_api,
        signing_conn_id=signing_conn_id,
        verified_at=pendulum.now("UTC"),
        provider_version=__version__,
        intervals=cells,
        folders=folders,
        general=general,
    )
    if report_path:
        from airflow_provider_opsera.verify.reports import write_reports

        write_reports(report, report_path, conn_id=report_conn_id)
    return report


def _touches(folder: FolderResult, lo: pendulum.DateTime, hi: pendulum.DateTime) -> bool:
    """Folders whose interval is unknown are checked too: they might be any interval."""
    return not folder.placed or folder.touches(lo, hi)


def _compare_with_api(
    counter: ApiCounter, folders: list[tuple[FolderResult, dict]], cells: list[IntervalResult]
) -> None:
    for folder, manifest in folders:
        span, archived = folder.span, folder.record_count
        if span is None or archived is None:
            continue
        count, problem = counter.count(*span, manifest.get("filters") or None)
        if count is None:
            folder.add(Status.WARNING, problem or "the API's count is unknown")
            continue
        folder.api_count = count
        if count != archived:
            folder.add(
                Status.DRIFT,
                f"the API holds {count} records now, the archive {archived} ({count - archived:+d})",
            )
    for cell in cells:
        if not cell.gaps:
            continue
        total = 0
        for a, b in cell.gaps:
            count, problem = counter.count(a, b)
            if problem is not None:
                cell.own.append(Finding(Status.WARNING, problem))
                break
            total += count or 0
        else:
            cell.gap_api_count = total
