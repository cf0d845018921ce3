"""Data sets, connection settings and ground-truth checks shared by the reliability tests."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import pendulum
from connections import postgres_conn_json  # noqa: F401  (re-exported for the reliability tests)

from airflow_provider_opsera.catalogue import OpseraLogType
from airflow_provider_opsera.hooks.opsera import OpseraHook
from airflow_provider_opsera.testing import OpseraSimulator

DAY = pendulum.datetime(2024, 5, 10, tz="UTC")
NEIGHBOURS_BEFORE = DAY.subtract(days=1)
NEIGHBOURS_AFTER = DAY.add(days=2)
LOG_TYPES = [t.value for t in OpseraLogType]
USER_TYPES = ["authentication", "pipeline", "registry", "policy", "tag", "task"]

#: Retries as fast as the settings allow: the tests count them, they do not wait for them.
FAST: dict[str, Any] = {"retry_min_wait": 0.001, "retry_max_wait": 0.01, "page_size": 500, "timeout": 30}

#: The interval each log type is extracted over in the fault matrix.
INTERVALS: dict[str, tuple[pendulum.DateTime, pendulum.DateTime]] = {
    "user_activity": (DAY, DAY.add(days=2)),
    "audit": (DAY, DAY.add(days=1)),
    "token_activity": (DAY, DAY.add(days=2)),
    "pipeline_activity": (DAY, DAY.add(days=2)),
}


def connection(sim: OpseraSimulator, **extra: Any) -> str:
    """``AIRFLOW_CONN_OPSERA_DEFAULT`` for ``sim`` with the fast settings, overridden by ``extra``."""
    return sim.connection_json({**FAST, **extra})


def load_matrix_data(sim: OpseraSimulator) -> None:
    """Per log type: a first day over the API's cap (so v1 splits by day, then by value; v2 pages), a
    smaller second day, and records the day before and after (what an ``outside_window`` fault serves)."""
    before, first, second, after = NEIGHBOURS_BEFORE, DAY, DAY.add(days=1), NEIGHBOURS_AFTER
    sim.generate("user_activity", first, second, 2500, split_values=USER_TYPES)
    sim.generate("user_activity", second, after, 400, split_values=USER_TYPES)
    sim.generate("audit", first, second, 2300, split_values=USER_TYPES)
    sim.generate("token_activity", first, second, 1500, split_values={"api": 1, "security-logs": 1})
    sim.generate("token_activity", second, after, 300, split_values={"api": 1, "security-logs": 1})
    sim.generate("pipeline_activity", first, second, 2200)
    sim.generate("pipeline_activity", second, after, 300)
    for log_type in LOG_TYPES:
        sim.generate(log_type, before, first, 40)
        sim.generate(log_type, after, after.add(days=1), 40)


def extract(
    log_type: str,
    start: Any,
    end: Any,
    filters: Mapping[str, Any] | None = None,
    *,
    raw: bool = False,
    conn_id: str = "opsera_default",
) -> tuple[list[dict[str, Any]], OpseraHook]:
    """Every record the hook yields, as dicts (raw records decoded, after checking they are one line each)."""
    hook = OpseraHook(opsera_conn_id=conn_id)
    out: list[dict[str, Any]] = []
    try:
        for batch in hook.iter_log_batches(log_type, start, end, filters, raw=raw):
            for record in batch:
                if raw:
                    assert isinstance(record.payload, bytes)
                    assert b"\n" not in record.payload and b"\r" not in record.payload
                    out.append(json.loads(record.payload))
                else:
                    out.append(record.payload)
    finally:
        hook.close()
    return out, hook


def by_id(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(records, key=lambda r: str(r["_id"]))


def assert_ground_truth(
    sim: OpseraSimulator,
    log_type: str,
    records: list[dict[str, Any]],
    start: Any,
    end: Any,
    filters: Mapping[str, Any] | None = None,
) -> None:
    """Exactly the simulator's ground truth: no record missing, none twice, none altered, none extra."""
    ids = [r["_id"] for r in records]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} duplicated records"
    truth = sim.ground_truth(log_type, start, end, filters)
    assert truth, "the ground truth must not be empty, or the check proves nothing"
    missing = {r["_id"] for r in truth} - set(ids)
    extra = set(ids) - {r["_id"] for r in truth}
    assert not missing and not extra, f"{len(missing)} missing, {len(extra)} extra"
    assert by_id(records) == by_id(truth)


def bad_statuses(sim: OpseraSimulator) -> list[Any]:
    """Requests the server refused as malformed (400/422): the client must never send one."""
    return [r for r in sim.requests if r.status in (400, 404, 422)]
