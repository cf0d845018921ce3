"""Scripted pipeline runs: the pipeline-activity records of a run whose step statuses change over time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_opsera.testing.clock import iso_ms
from airflow_provider_opsera.testing.shapes import (
    STEP_BY_NAME,
    build_pipeline,
    object_id,
    stable_hash,
    step_id_for,
)

_STEP_KEYS = frozenset(
    {"step_name", "step_id", "step_index", "events", "tool_identifier", "step_configuration"}
)


def run_records(
    pipeline_id: str,
    run_count: int,
    steps: Sequence[Mapping[str, Any]],
    *,
    start_ms: int,
    type: str | None,
    user_id: str,
) -> list[dict[str, Any]]:
    """One record per step event, created at ``start + offset`` seconds, shaped like the seed's example.

    ``steps``: ``{"step_name": "anchore", "step_id": ..., "step_index": 2, "events": [(offset_s, status,
    message), ...]}``; ``step_id``/``step_index`` default to the step's usual ones; ``message`` may be left
    out (``(offset_s, status)``) for a stock message.
    """
    records = []
    for position, step in enumerate(steps):
        unknown = set(step) - _STEP_KEYS
        if unknown or "step_name" not in step or "events" not in step:
            raise ValueError(
                f"a step is a dict with step_name and events (and optionally step_id, step_index, "
                f"tool_identifier, step_configuration); got keys {sorted(step)}"
            )
        name = str(step["step_name"])
        template = STEP_BY_NAME.get(name)
        base: dict[str, Any] = {
            "pipeline_id": pipeline_id,
            "user_id": user_id,
            "step_name": name,
            "step_index": step.get("step_index", template[1] if template else position),
            "step_id": step.get("step_id") or step_id_for(pipeline_id, name),
            "run_count": run_count,
        }
        for key in ("tool_identifier", "step_configuration"):
            if key in step:
                base[key] = step[key]
        if type is not None:
            base["type"] = type
        for k, event in enumerate(step["events"]):
            offset, status, *rest = event
            row = dict(base, status=status)
            if rest and rest[0]:
                row["message"] = rest[0]
            ms = start_ms + round(float(offset) * 1000)
            h = stable_hash("run", pipeline_id, run_count, name, k, offset)
            records.append(build_pipeline(row, object_id(ms // 1000, h >> 24, h), iso_ms(ms), h))
    return records
