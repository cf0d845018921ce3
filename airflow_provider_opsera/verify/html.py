"""The verification as one self-contained HTML page: a calendar of the period, one cell per interval.

Each cell is coloured by its status and shows, on hover or keyboard focus (pure CSS, no script, no external
asset), its counts, part problems and drift. Daily intervals are laid out as month calendars (Monday first);
intervals shorter than a day as one row per day; any other step as a row of cells.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterable
from html import escape

from airflow_provider_opsera.verify.model import IntervalResult, Status, VerificationReport
from airflow_provider_opsera.verify.text import interval_label

#: Background and text colour per status: distinct hues, the failing ones the loudest.
COLOURS: dict[Status, tuple[str, str]] = {
    Status.OK: ("#2da44e", "#ffffff"),
    Status.WARNING: ("#e3b341", "#24292f"),
    Status.DRIFT: ("#fb8f44", "#24292f"),
    Status.MISSING: ("#d0d7de", "#24292f"),
    Status.OVERLAP: ("#0969da", "#ffffff"),
    Status.BAD_SIGNATURE: ("#bf3989", "#ffffff"),
    Status.BROKEN_CHAIN: ("#8250df", "#ffffff"),
    Status.TAMPERED: ("#cf222e", "#ffffff"),
}

_CSS = """
:root { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; }
body { margin: 24px; }
h1 { font-size: 20px; margin: 0 0 4px; }
.summary { font-size: 16px; font-weight: 600; padding: 8px 12px; border-radius: 6px; display: inline-block; }
.summary.pass { background: #dafbe1; color: #116329; }
.summary.fail { background: #ffebe9; color: #a40e26; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; font-size: 13px; }
dl.meta dt { color: #59636e; } dl.meta dd { margin: 0; }
ul.legend { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 6px 18px; font-size: 13px; }
ul.legend li { display: flex; align-items: center; gap: 6px; }
.swatch { width: 16px; height: 16px; border-radius: 4px; display: inline-block; }
.months { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.month h2, .day-row .label { font-size: 14px; margin: 0 0 6px; }
.grid { display: grid; grid-template-columns: repeat(7, 54px); gap: 4px; }
.dow { font-size: 11px; color: #59636e; text-align: center; }
.cell, .pad { position: relative; height: 48px; border-radius: 6px; box-sizing: border-box; }
.cell { padding: 3px 5px; font-size: 12px; outline-offset: 2px; cursor: default; }
.cell .n { font-weight: 600; }
.cell .c { display: block; font-size: 10px; opacity: .9; white-space: nowrap; overflow: hidden; }
.pad.out { background: #f6f8fa; }
.day-row { display: flex; align-items: center; gap: 4px; margin-bottom: 4px; }
.day-row .label { width: 90px; margin: 0; }
.day-row .cell { width: 48px; height: 36px; }
.flow { display: flex; flex-wrap: wrap; gap: 4px; }
.flow .cell { width: 96px; }
.s-missing { background-image: repeating-linear-gradient(45deg, transparent 0 5px, rgba(255,255,255,.6) 5px 9px);
  border: 2px dashed #59636e; }
.tip { display: none; position: absolute; z-index: 10; left: 0; top: calc(100% + 6px); width: 300px;
  background: #1f2328; color: #fff; padding: 8px 10px; border-radius: 6px; font-size: 12px; line-height: 1.45;
  box-shadow: 0 4px 16px rgba(0,0,0,.25); font-weight: normal; }
.tip b { font-weight: 600; } .tip ul { margin: 4px 0 0; padding-left: 16px; }
.cell:hover .tip, .cell:focus .tip { display: block; }
.cell:hover, .cell:focus { box-shadow: 0 0 0 2px #1f2328; }
table.problems { border-collapse: collapse; font-size: 13px; margin-top: 8px; }
table.problems td, table.problems th { border-bottom: 1px solid #d1d9e0; padding: 4px 10px; text-align: left;
  vertical-align: top; }
footer { margin-top: 24px; font-size: 12px; color: #59636e; }
"""


def _status_css() -> str:
    return "\n".join(
        f".s-{s.value} {{ background-color: {bg}; color: {fg}; }}" for s, (bg, fg) in COLOURS.items()
    )


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _tip(cell: IntervalResult, against_api: bool) -> str:
    rows = [
        f"<b>{escape(cell.start.isoformat())}</b> to <b>{escape(cell.end.isoformat())}</b>",
        f"status: <b>{escape(cell.status.label)}</b>",
        f"archived records: {_n(cell.records)} in {_n(cell.parts)} part(s)",
    ]
    if cell.revisions:
        rows.append("manifest revision: " + ", ".join(str(r) for r in cell.revisions))
    if against_api:
        rows.append(f"API now: {_n(cell.api_records)}")
        if cell.drift:
            rows.append(f"drift: <b>{cell.drift:+,d}</b> (API now minus archived)")
    if cell.folders:
        rows.append("folders: " + escape(", ".join(f.name for f in cell.folders)))
    items = "".join(f"<li>{escape(f.status.label)}: {escape(f.text())}</li>" for f in cell.findings)
    findings = f"<ul>{items}</ul>" if items else ""
    return f'<div class="tip" role="tooltip">{"<br>".join(rows)}{findings}</div>'


def _cell(cell: IntervalResult, against_api: bool, label: str) -> str:
    status = cell.status.value
    counts = _n(cell.records)
    if against_api and cell.drift:
        counts += f" ({cell.drift:+,d})"
    aria = f"{interval_label(cell.start, cell.end)}: {cell.status.label}"
    return (
        f'<div class="cell s-{status}" tabindex="0" data-status="{status}" '
        f'data-start="{escape(cell.start.isoformat())}" data-end="{escape(cell.end.isoformat())}" '
        f'data-records="{cell.records if cell.records is not None else ""}" '
        f'data-drift="{cell.drift if cell.drift is not None else ""}" aria-label="{escape(aria)}">'
        f'<span class="n">{escape(label)}</span><span class="c">{escape(counts)}</span>'
        f"{_tip(cell, against_api)}</div>"
    )


def _months(cells: list[IntervalResult], against_api: bool) -> Iterable[str]:
    by_day: dict[dt.date, IntervalResult] = {
        dt.date(c.start.year, c.start.month, c.start.day): c for c in cells
    }
    months = sorted({(d.year, d.month) for d in by_day})
    for year, month in months:
        first = dt.date(year, month, 1)
        days = calendar.monthrange(year, month)[1]
        out = [f'<div class="month"><h2>{first.strftime("%B %Y")}</h2><div class="grid">']
        out += [
            f'<div class="dow">{name}</div>' for name in ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
        ]
        out += ['<div class="pad"></div>'] * first.weekday()
        for day in range(1, days + 1):
            cell = by_day.get(dt.date(year, month, day))
            if cell is None:  # outside the requested range
                out.append(
                    f'<div class="pad out" title="{dt.date(year, month, day)}: not in the range"></div>'
                )
            else:
                out.append(_cell(cell, against_api, str(day)))
        out.append("</div></div>")
        yield "".join(out)


def _day_rows(cells: list[IntervalResult], against_api: bool) -> Iterable[str]:
    days: dict[dt.date, list[IntervalResult]] = {}
    for cell in cells:
        days.setdefault(dt.date(cell.start.year, cell.start.month, cell.start.day), []).append(cell)
    for day, row in days.items():
        inner = "".join(_cell(c, against_api, c.start.format("HH:mm")) for c in row)
        yield f'<div class="day-row"><div class="label">{day.isoformat()}</div>{inner}</div>'


def calendar_html(report: VerificationReport) -> str:
    cells = report.intervals
    step = cells[0].end - cells[0].start if cells else dt.timedelta(days=1)
    midnight = bool(cells) and cells[0].start == cells[0].start.start_of("day")
    if step == dt.timedelta(days=1) and midnight:
        return f'<div class="months">{"".join(_months(cells, report.against_api))}</div>'
    if step < dt.timedelta(days=1) and dt.timedelta(days=1) % step == dt.timedelta(0):
        return f'<div class="hours">{"".join(_day_rows(cells, report.against_api))}</div>'
    inner = "".join(_cell(c, report.against_api, interval_label(c.start, c.end)) for c in cells)
    return f'<div class="flow">{inner}</div>'


def render(report: VerificationReport) -> str:
    """The report page: summary line, what was verified, legend, the calendar, then every problem."""
    counts = report.counts()
    title = f"Opsera archive verification: {report.log_type}, {report.start.to_date_string()} to {report.end.to_date_string()}"
    meta = [
        ("Archive", f"{report.base_url} (opsera/{report.log_type}/)"),
        ("Range", f"[{report.start.isoformat()}, {report.end.isoformat()})"),
        ("Expected interval", report.interval),
        ("Compared with the API", "yes, counts as of the verification" if report.against_api else "no"),
        ("Signing key", f"connection {report.signing_conn_id}" if report.signing_conn_id else "none given"),
        ("Verified at", report.verified_at.isoformat()),
        ("Verifier", f"airflow-provider-opsera {report.provider_version}"),
    ]
    legend = "".join(
        f'<li data-status="{s.value}"><span class="swatch s-{s.value}"></span>{escape(s.label)} '
        f"({counts.get(s.value, 0)})</li>"
        for s in Status
        if s is not Status.DRIFT or report.against_api
    )
    problems = [
        f"<tr><td>{escape(interval_label(c.start, c.end))}</td><td>{escape(c.status.label)}</td>"
        f"<td>{'<br>'.join(escape(f.text()) for f in c.findings)}</td></tr>"
        for c in report.intervals
        if c.status is not Status.OK
    ] + [
        f"<tr><td>archive</td><td>{escape(f.status.label)}</td><td>{escape(f.text())}</td></tr>"
        for f in report.general
    ]
    problem_html = (
        '<table class="problems"><tr><th>interval</th><th>status</th><th>findings</th></tr>'
        + "".join(problems)
        + "</table>"
        if problems
        else "<p>None: every interval verifies.</p>"
    )
    verdict = "pass" if report.ok else "fail"
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{_CSS}{_status_css()}</style>
</head>
<body>
<h1>{escape(title)}</h1>
<p class="summary {verdict}" id="summary">{escape(report.summary_line())}</p>
<dl class="meta">{"".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in meta)}</dl>
<ul class="legend" aria-label="legend">{legend}</ul>
<section aria-label="calendar" id="calendar">{calendar_html(report)}</section>
<h2>Problems</h2>
{problem_html}
<footer>Hover or focus a cell for its counts, part problems and drift. The same verification is in
report.json (for machines) and report.md (to keep).</footer>
</body>
</html>
"""
