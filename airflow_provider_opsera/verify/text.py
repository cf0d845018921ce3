"""The verification as text: the table the command prints, and the Markdown report an auditor keeps."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pendulum import DateTime

from airflow_provider_opsera.verify.model import IntervalResult, Status, VerificationReport


def interval_label(start: DateTime, end: DateTime) -> str:
    """``2026-01-01`` for a whole UTC day, else ``2026-01-01 05:00`` (the start; the step is in the header)."""
    midnight = start.hour == start.minute == start.second == start.microsecond == 0
    if midnight and end == start.add(days=1):
        return start.to_date_string()
    return start.format("YYYY-MM-DD HH:mm")


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _drift(value: int | None) -> str:
    return "" if not value else f"{value:+,d}"


def _revisions(cell: IntervalResult) -> str:
    if not cell.folders:
        return "-"
    if all(f.manifest_format is not None and f.manifest_format < 2 for f in cell.folders):
        return "f1"
    return ",".join(str(r) for r in cell.revisions) or "-"


def detail(cell: IntervalResult) -> str:
    return "; ".join(f.text() for f in cell.findings)


def _likeness(cell: IntervalResult) -> tuple[Any, ...] | None:
    """What a run of alike intervals shares (None: the interval needs its own row): the status and the
    findings' sentences, for intervals with at most one folder, no drift and no partial gap."""
    if len(cell.folders) > 1 or cell.drift or cell.status.severity > Status.MISSING.severity:
        return None
    if cell.gaps and cell.gaps != [(cell.start, cell.end)]:
        return None
    if cell.status is Status.DRIFT or (cell.gap_api_count or 0):
        return None
    return (cell.status, tuple(f.message for f in cell.findings))


def _runs(cells: Sequence[IntervalResult], collapse: bool) -> Iterable[list[IntervalResult]]:
    run: list[IntervalResult] = []
    for cell in cells:
        alike = _likeness(cell)
        if collapse and run and alike is not None and alike == _likeness(run[-1]):
            run.append(cell)
            continue
        if run:
            yield run
        run = [cell]
    if run:
        yield run


def header(report: VerificationReport) -> list[str]:
    api = ", compared with the API now" if report.against_api else ""
    key = f", signatures checked with {report.signing_conn_id}" if report.signing_conn_id else ""
    return [
        f"Opsera archive verification: {report.log_type} under {report.base_url}",
        f"[{report.start.isoformat()}, {report.end.isoformat()}), interval {report.interval}{api}{key}",
    ]


def table(report: VerificationReport, *, full: bool = False) -> str:
    """The interval table; runs of three or more plain ok (or wholly missing) intervals share a row unless
    ``full``."""
    head: tuple[str, ...] = ("interval", "status", "records", "parts", "rev", "API now", "drift", "detail")
    rows: list[tuple[str, ...]] = []
    for run in _runs(report.intervals, collapse=not full):
        first, last = run[0], run[-1]
        if len(run) >= 3:
            label = f"{interval_label(first.start, first.end)} .. {interval_label(last.start, last.end)}"
            records = [c.records for c in run if c.records is not None]
            parts = [c.parts for c in run if c.parts is not None]
            rows.append(
                (
                    label,
                    f"{first.status.label} ({len(run)})",
                    _n(sum(records)) if records else "-",
                    _n(sum(parts)) if parts else "-",
                    "",
                    "",
                    "",
                    "; ".join(dict.fromkeys(f.message for f in first.findings)),
                )
            )
            continue
        for cell in run:
            # One finding a line; the folder named only when the interval has more than one.
            said = [f.text() if len(cell.folders) > 1 else f.message for f in cell.findings] or [""]
            rows.append(
                (
                    interval_label(cell.start, cell.end),
                    cell.status.label,
                    _n(cell.records),
                    _n(cell.parts),
                    _revisions(cell),
                    _n(cell.api_records) if report.against_api else "",
                    _drift(cell.drift),
                    said[0],
                )
            )
            rows += [("", "", "", "", "", "", "", more) for more in said[1:]]
    if not report.against_api:  # no API columns
        head = head[:5] + head[7:]
        rows = [r[:5] + r[7:] for r in rows]
        right = {2, 3}
    else:
        right = {2, 3, 5, 6}
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(len(head) - 1)]

    def line(values: Sequence[str]) -> str:
        cols = [v.rjust(widths[i]) if i in right else v.ljust(widths[i]) for i, v in enumerate(values[:-1])]
        return ("  " + "  ".join(cols) + "  " + values[-1]).rstrip()

    out = [*header(report), "", line(head), line(["-" * w for w in widths] + ["-" * 6])]
    out += [line(r) for r in rows]
    out.append("")
    for finding in report.general:
        out.append(f"  archive: {finding.status.label}: {finding.text()}")
    out.append(report.summary_line())
    return "\n".join(out)


# -- Markdown ------------------------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    return str(value if value is not None else "").replace("|", "\\|").replace("\n", " ")


def _md_table(head: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    out += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return out


def markdown(report: VerificationReport) -> str:
    """The whole verification as Markdown: what was asked, the verdict, every problem, interval and folder."""
    counts = report.counts()
    out = [f"# Opsera archive verification: {report.log_type}", "", f"**{report.summary_line()}**", ""]
    out += _md_table(
        ("", ""),
        [
            ("Archive", f"`{report.base_url}` (folders under `opsera/{report.log_type}/`)"),
            ("Log type", report.log_type),
            ("Range", f"[{report.start.isoformat()}, {report.end.isoformat()})"),
            ("Expected interval", report.interval),
            ("Compared with the API", "yes, counts as of the verification" if report.against_api else "no"),
            (
                "Signing key",
                f"connection `{report.signing_conn_id}`" if report.signing_conn_id else "none given",
            ),
            ("Verified at", report.verified_at.isoformat()),
            ("Verifier", f"airflow-provider-opsera {report.provider_version}"),
        ],
    )
    out += ["", "## Statuses", ""]
    out += _md_table(
        ("status", "intervals", "meaning", "passes"),
        [(s.label, counts.get(s.value, 0), s.meaning, "yes" if not s.failed else "no") for s in Status],
    )
    out += ["", "## Problems", ""]
    problems = [c for c in report.intervals if c.status is not Status.OK]
    if not problems and not report.general:
        out.append("None: every interval verifies.")
    for cell in problems:
        out.append(f"- **{interval_label(cell.start, cell.end)}** ({cell.status.label})")
        out += [f"  - {f.status.label}: {f.text()}" for f in cell.findings]
    for finding in report.general:
        out.append(f"- **archive** ({finding.status.label}): {finding.text()}")
    out += ["", "## Intervals", ""]
    out += _md_table(
        ("interval", "start", "end", "status", "records", "parts", "revision", "API now", "drift", "folders"),
        [
            (
                interval_label(c.start, c.end),
                c.start.isoformat(),
                c.end.isoformat(),
                c.status.label,
                _n(c.records),
                _n(c.parts),
                _revisions(c),
                _n(c.api_records) if report.against_api else "",
                _drift(c.drift),
                ", ".join(f.name for f in c.folders),
            )
            for c in report.intervals
        ],
    )
    out += ["", "## Folders", ""]
    out += _md_table(
        (
            "folder",
            "start",
            "end",
            "status",
            "records",
            "parts",
            "bytes",
            "revision",
            "format",
            "signed",
            "manifest.json sha256",
        ),
        [
            (
                f.name,
                f.start.isoformat() if f.start else "",
                f.end.isoformat() if f.end else "",
                f.status.label,
                _n(f.record_count),
                _n(f.parts),
                _n(f.bytes),
                f.revision if f.revision is not None else "",
                f.manifest_format if f.manifest_format is not None else "",
                "yes" if f.signed else "no",
                f"`{f.manifest_sha256}`" if f.manifest_sha256 else "",
            )
            for f in report.folders
            if f.touches(report.start, report.end)
        ],
    )
    out += [
        "",
        "The manifest.json sha256 pins the exact manifest each line verified: recompute it to show the archive "
        "is still the one this report describes.",
        "",
    ]
    return "\n".join(out)
