"""``python benchmarks/fast_paths.py``: each fast path against its careful twin, in isolation, per 1000 records.

A fixed workload: one 1000-record page of audit records and one of pipeline-activity records (jsonb fields),
as the simulator (seed 42) serves them. Each path runs ``--pages`` times (default 200) on the same page; the
figures are milliseconds a page, and what the difference adds up to over W1's 224 pages (CPU seconds, in runs
of 4 to 6 s; see benchmarks/README.md). A fast path is kept only where that is a win a user would notice.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable
from typing import Any

import msgspec

from airflow_provider_opsera.catalogue import OpseraLogType, endpoint_for
from airflow_provider_opsera.responses import (
    Record,
    _dict_decoder,
    _raw_decoder,
    checked_records,
    decode_page,
    well_formed_records,
)
from airflow_provider_opsera.testing import OpseraSimulator
from airflow_provider_opsera.timeutils import api_time_keys, parsed_key
from airflow_provider_opsera.transfers.postgres.rows import RowMapper

DAY = ("2024-05-10", "2024-05-11")
#: Pages of the benchmark's W1 workload (223,773 records): what one page's saving adds up to there.
W1_PAGES = 224


def _ms_a_page(call: Callable[[], object], pages: int) -> float:
    call()  # warm
    started = time.perf_counter()
    for _ in range(pages):
        call()
    return (time.perf_counter() - started) / pages * 1000


def _line(what: str, fast: float, careful: float) -> None:
    saved = (careful - fast) * W1_PAGES / 1000
    print(
        f"  {what:<34} fast {fast:6.2f}  careful {careful:6.2f}  {careful / fast:4.1f}x, {saved:+.2f} s on W1"
    )


def _measure(sim: OpseraSimulator, log_type: OpseraLogType, pages: int) -> None:
    sim.generate(log_type, *DAY, 1000)
    records = sim.ground_truth(log_type, *DAY)
    body = msgspec.json.encode({"count": len(records), "data": records})
    endpoint = endpoint_for(log_type)
    print(f"{log_type.value}: a page of {len(records)} records ({len(body):,} bytes), ms a page")

    raw = _raw_decoder.decode(body).data
    _line(
        "response check, raw records",
        _ms_a_page(lambda: well_formed_records(body, endpoint, raw), pages),
        _ms_a_page(lambda: checked_records(endpoint, "u", raw, True), pages),
    )
    dicts = _dict_decoder.decode(body).data
    careful = _ms_a_page(lambda: checked_records(endpoint, "u", dicts, False), pages)
    print(f"  {'response check, dicts':<34} careful {careful:6.2f} (the only path)")
    times = [r["createdAt"] for r in records]
    _line(
        "createdAt keys",
        _ms_a_page(lambda: api_time_keys(times), pages),
        _ms_a_page(lambda: [parsed_key(t) for t in times], max(1, pages // 10)),
    )
    page = decode_page(body, endpoint, "u", raw=True).records
    mapper = RowMapper(log_type)
    for derived, what in ((False, "rows, staged (existing table)"), (True, "rows, all columns (first load)")):
        _line(
            what,
            _ms_a_page(functools.partial(mapper.well_typed_rows, page, derived=derived), pages),
            _ms_a_page(functools.partial(_one_by_one, mapper, page, derived), pages),
        )


def _one_by_one(mapper: RowMapper, page: list[Record], derived: bool) -> list[tuple[Any, ...]]:
    return [mapper.row(r, derived=derived) for r in page]


def main() -> None:
    parser = argparse.ArgumentParser(prog="benchmarks/fast_paths.py", description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=200, help="pages timed per path (default 200)")
    pages = parser.parse_args().pages
    sim = OpseraSimulator(seed=42)
    for log_type in (OpseraLogType.AUDIT, OpseraLogType.PIPELINE_ACTIVITY):
        _measure(sim, log_type, pages)


if __name__ == "__main__":
    main()
