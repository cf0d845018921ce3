"""One line per figure on what bounds it, from the run's own wall and CPU figures.

The mechanisms are fixed (profiled with py-spy; see benchmarks/README.md); the numbers are this run's.
"""

from __future__ import annotations

import statistics

from airflow_provider_opsera.catalogue import endpoint_for
from benchmarks import workload
from benchmarks.report import Row, find
from benchmarks.workload import Workload


def _cpu(row: Row) -> tuple[float, float, float]:
    r = row.result
    own = statistics.median(r["cpu_s"]) if r.get("cpu_s") else 0.0
    other = r.get("cpu_other") or {}
    return own, float(other.get("sim") or 0.0), float(other.get("pg") or 0.0)


def _line(row: Row, rows: list[Row], work: Workload) -> str | None:
    if row.failed or row.wall is None:
        return None
    wall, (client, sim, pg) = row.wall, _cpu(row)
    ds = next(d for d in work.datasets() if d.key == row.dataset_key)
    sink = f"{row.sink} ({row.variant})" if row.variant else row.sink
    label = f"{row.workload} {row.who} {sink} ({ds.n:,})"
    latency = ds.pages / workload.CONCURRENCY * workload.LATENCY
    cpu = f"CPU {client:.1f}s here + {sim:.1f}s simulator" + (f" + {pg:.1f}s PostgreSQL" if pg else "")
    busy = f"{(client + sim + pg) / wall:.1f} of 2 cores busy on average"
    if row.result.get("error"):
        return (
            f"{label}: refused after {row.result.get('requests')} requests: the capped first answer and the "
            "split by type prove the day is larger than the API can return."
        )
    if row.who == "floor":
        return (
            f"{label}: the round trip: {latency:.1f}s of the {wall:.1f}s is 50 ms latency at concurrency "
            f"{workload.CONCURRENCY}; the rest is the simulator building and encoding each page, on one thread "
            f"({sim:.1f}s CPU)."
        )
    if row.who == "naive":
        per_page = wall / max(1, ds.pages) * 1000
        return (
            f"{label}: one request at a time: {per_page:.0f} ms a page (50 ms latency + server + json) "
            f"x {ds.pages} pages; {cpu}."
        )
    if row.who == "dlt":
        return (
            f"{label}: dlt's per-record Python work (extract, normalize, load) on sequential pages: {cpu}, "
            f"{busy}."
        )
    # ours
    requests = row.result.get("requests")
    floor_requests = (find(rows, "floor", row.dataset_key) or row).result.get("requests")
    extra = f" ({requests} requests, the floor {floor_requests})" if requests and floor_requests else ""
    what = {
        "count": "the extraction's Python work under the GIL (each page checked in one msgspec pass, ids "
        "de-duplicated) delays the fetch threads' reads and sends, and each ~50,000-record window starts with "
        f"its page 1 alone{extra}"
        if endpoint_for(ds.log_type).paged
        else f"one capped answer for the day before the per-type queries can start{extra}",
        "file": "as count, plus gzip (level 1) and the write on the consuming thread, overlapped with the "
        "fetching",
        "postgres": "a first load: row mapping and COPY on the consuming thread under the GIL, PostgreSQL "
        "parsing jsonb and writing WAL as the rows arrive, then the primary key and two indexes built after "
        "the last page (serial)",
    }[row.sink]
    if row.variant == "existing table":
        what = (
            "COPY straight into the indexed table as the rows arrive, a chunk under each savepoint: "
            "PostgreSQL's one backend parses each row and its jsonb and inserts it into the heap and three "
            "btrees (the primary key alone a fifth of its CPU), while on the client the row mapping and COPY "
            "share the GIL with the extraction; on 2 cores with the simulator, the three processes' CPU is "
            "the bound"
        )
    floor = find(rows, "floor", row.dataset_key)
    over = f", {wall - floor.wall:+.1f}s on the floor" if floor and floor.wall else ""
    return f"{label}: {what}; {cpu}, {busy}{over}; peak RSS {row.peak_rss or 0:.0f} MB."


def lines(rows: list[Row], work: Workload) -> list[str]:
    """What bounds each figure of ``rows``, plus W2's request count and W3's memory."""
    out = [line for row in rows if (line := _line(row, rows, work))]
    split = find(rows, "ours", work.split_day.key)
    if split and split.result.get("requests") is not None:
        out.append(
            f"W2 requests: {split.result['requests']} for {work.split_day.n:,} v1 records, against "
            f"ceil(n/1000) = {work.split_day.pages}: one capped answer for the day, then one per type."
        )
    small, large = (
        find(rows, "ours", work.small_day.key, "file"),
        find(rows, "ours", work.large_day.key, "file"),
    )
    if small and large and small.result.get("base_rss_mb") and large.peak_rss:
        out.append(
            f"W3 memory: the process holds {small.result['base_rss_mb']:.0f} MB before the first record "
            "(Airflow and the providers it discovers); records stream page by page, so the peak stays a few MB "
            f"above that at {large.n:,} records as at {small.n:,}."
        )
    return out
