"""The results table, the targets, the machine, and RESULTS.md."""

from __future__ import annotations

import os
import platform
import statistics
from dataclasses import dataclass, field
from typing import Any

import pendulum


@dataclass
class Row:
    """One measured configuration and its result (``result`` as printed by the child)."""

    workload: str
    sink: str
    who: str
    dataset_key: str
    n: int
    result: dict[str, Any] = field(default_factory=dict)
    #: Why there is no figure (dlt not installed, Postgres unreachable, ...).
    skipped: str | None = None
    #: Tells apart two configurations of one ``who`` and ``sink`` (e.g. ``existing table``).
    variant: str = ""

    @property
    def failed(self) -> str | None:
        return self.skipped or self.result.get("failed")

    @property
    def wall(self) -> float | None:
        walls = self.result.get("walls")
        return statistics.median(walls) if walls else None

    @property
    def rps(self) -> float | None:
        wall = self.wall
        if wall is None or self.failed or self.result.get("error"):
            return None
        return self.result["records"] / wall if wall > 0 else None

    @property
    def peak_rss(self) -> float | None:
        return self.result.get("peak_rss_mb")


def find(
    rows: list[Row], who: str, dataset_key: str, sink: str | None = None, variant: str = ""
) -> Row | None:
    for row in rows:
        same_sink = sink is None or (row.sink == sink and row.variant == variant)
        if row.who == who and row.dataset_key == dataset_key and same_sink:
            return row
    return None


def ratio(ours: Row, other: Row | None) -> float | None:
    if other is None or ours.rps is None or other.rps is None:
        return None
    return ours.rps / other.rps


def ratios(rows: list[Row], row: Row) -> tuple[float | None, float | None, float | None]:
    """ours/floor, ours/naive, ours/dlt for one of our rows (the floor is per data set, the others per sink)."""
    floor = find(rows, "floor", row.dataset_key)
    naive = find(rows, "naive", row.dataset_key, row.sink)
    dlt = find(rows, "dlt", row.dataset_key, row.sink)
    return ratio(row, floor), ratio(row, naive), ratio(row, dlt)


def _num(value: float | None, digits: int = 0, suffix: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{suffix}"


HEADER = (
    "workload",
    "sink",
    "run",
    "records",
    "requests",
    "records/s",
    "wall s",
    "peak RSS MB",
    "CPU s client/sim/pg",
    "ours/floor",
    "ours/naive",
    "ours/dlt",
    "note",
)


def table_rows(rows: list[Row]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for row in rows:
        r = row.result
        if row.who == "ours":
            floor, naive, dlt = ratios(rows, row)
            ratio_cells = (_num(floor, 2), _num(naive, 1, "x"), _num(dlt, 1, "x"))
        else:
            ratio_cells = ("", "", "")
        note = str(row.failed or r.get("error") or r.get("note") or "")
        if row.failed and len(note) > 90:
            note = note[:87] + "..."
        elif r.get("error"):
            note = note.split(":", 1)[0] + " (as it must: the day cannot be proven complete)"
        walls = r.get("walls") or []
        wall = _num(row.wall, 2) + (f" (median of {len(walls)})" if len(walls) > 1 else "")
        out.append(
            (
                row.workload,
                row.sink + (f" ({row.variant})" if row.variant else ""),
                row.who,
                _num(r.get("records")) if not row.failed else "-",
                _num(r.get("requests")),
                _num(row.rps),
                wall if not row.failed else "-",
                _num(row.peak_rss, 0),
                cpu_cell(r) if not row.failed else "-",
                *ratio_cells,
                note,
            )
        )
    return out


def cpu_cell(result: dict[str, Any]) -> str:
    """CPU seconds a run: the measured process, the simulator, PostgreSQL (``-`` where not measured)."""
    cpus = result.get("cpu_s") or []
    own = statistics.median(cpus) if cpus else None
    other = result.get("cpu_other") or {}
    return "/".join(_num(v, 1) for v in (own, other.get("sim"), other.get("pg")))


def markdown_table(header: tuple[str, ...], body: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def text_table(header: tuple[str, ...], body: list[tuple[str, ...]]) -> str:
    widths = [max(len(c) for c in col) for col in zip(header, *body, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip() for cells in body]
    return "\n".join(lines)


# -- targets ---------------------------------------------------------------------------------------------
@dataclass
class Check:
    what: str
    measured: str
    ok: bool | None  # None: could not be measured
    #: Why a missed target could not be met in this run (e.g. the floor itself is below it).
    why: str = ""


def _at_least(what: str, value: float | None, bound: float, fmt: str) -> Check:
    if value is None:
        return Check(what, "not measured", None)
    return Check(what, fmt.format(value), value >= bound)


def targets(rows: list[Row], day: str, small: str, large: str) -> list[Check]:
    """The issue's targets, each with the measured figure."""
    checks = []
    for sink, label, bound, variant in (
        ("count", "W1(a)", 0.8, ""),
        ("file", "W1(b)", 0.8, ""),
        ("postgres", "W1(c)", 0.6, ""),
        ("postgres", "W1(c) existing table", 0.75, "existing table"),
    ):
        ours = find(rows, "ours", day, sink, variant)
        if ours is None and variant:
            continue
        floor, naive, dlt = ratios(rows, ours) if ours else (None, None, None)
        checks.append(_at_least(f"{label} ours/floor >= {bound}", floor, bound, "{:.2f}"))
        naive_check = _at_least(f"{label} ours/naive >= 5", naive, 5, "{:.1f}x")
        ceiling = ratio(find(rows, "floor", day) or ours, find(rows, "naive", day, sink)) if ours else None
        if naive_check.ok is False and ceiling is not None and ceiling < 5:
            naive_check.why = (
                f"unreachable: the floor itself is {ceiling:.1f}x naive, at concurrency 4 against one request "
                "at a time"
            )
        checks.append(naive_check)
        if sink != "count":
            checks.append(_at_least(f"{label} ours/dlt >= 5", dlt, 5, "{:.1f}x"))
    for sink in ("count", "file"):
        lo, hi = find(rows, "ours", small, sink), find(rows, "ours", large, sink)
        for row in (lo, hi):
            if row is None:
                continue
            peak = row.peak_rss if not row.failed else None
            label = f"W3 {sink} {row.n:,} records: peak RSS < 250 MB"
            checks.append(
                Check(label, _num(peak, 0, " MB"), None if peak is None else peak < 250)
                if peak is not None
                else Check(label, "not measured", None)
            )
        if lo and hi and lo.peak_rss is not None and hi.peak_rss is not None and not (lo.failed or hi.failed):
            growth = hi.peak_rss - lo.peak_rss
            checks.append(
                Check(f"W3 {sink}: growth {lo.n:,} -> {hi.n:,} < 30 MB", f"{growth:+.0f} MB", growth < 30)
            )
    return checks


def targets_table(checks: list[Check]) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    verdict = {True: "met", False: "MISSED", None: "-"}
    return ("target", "measured", ""), [
        (c.what, c.measured, verdict[c.ok] + (f" ({c.why})" if c.why else "")) for c in checks
    ]


# -- machine ---------------------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(extra: dict[str, str] | None = None) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    def pkg(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    info = {
        "date": pendulum.now("UTC").format("YYYY-MM-DD HH:mm [UTC]"),
        "cores": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "airflow": pkg("apache-airflow"),
        "provider": pkg("airflow-provider-opsera"),
        "dlt": pkg("dlt"),
        "os": platform.platform(),
        "load average at start": " ".join(f"{x:.2f}" for x in load) if load else "n/a",
    }
    info.update(extra or {})
    return info


def render_markdown(
    rows: list[Row],
    checks: list[Check],
    info: dict[str, str],
    workload_lines: list[str],
    notes: list[str],
) -> str:
    header, body = targets_table(checks)
    parts = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`python benchmarks/run.py`); see benchmarks/README.md for what each run does.",
        "",
        "## Machine",
        "",
        *(f"- {k}: {v}" for k, v in info.items()),
        "",
        "## Workload",
        "",
        *(f"- {line}" for line in workload_lines),
        "",
        "## Results",
        "",
        markdown_table(HEADER, table_rows(rows)),
        "",
        "## Targets",
        "",
        markdown_table(header, body),
        "",
    ]
    if notes:
        parts += ["## What bounds each figure", "", *(f"- {n}" for n in notes), ""]
    return "\n".join(parts)
