"""A busy account's unrelated pipeline traffic: records computed from their index, nothing stored.

Record ``i`` is created at ``start + (i + jitter_i) * 3600 s / per_hour``, so a day of 10,000 records an hour
(240,000) costs no memory, a time window is arithmetic, and the ``type`` filter is too: types repeat in a
shuffled pattern of :data:`PERIOD` slots, so "the j-th sdlc record" is a division away.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Any

from airflow_provider_opsera.catalogue import OpseraLogType
from airflow_provider_opsera.testing.clock import MS_HOUR, iso_ms
from airflow_provider_opsera.testing.shapes import (
    PIPELINE_STATUSES,
    PIPELINE_TYPES,
    STEPS,
    build_pipeline,
    mix64,
    object_id,
)
from airflow_provider_opsera.testing.sources import Periodic, Positions, Source

PERIOD = 100


def _table(weights: dict[str, float], size: int = 256) -> list[str]:
    """A lookup table where each value fills a share of the slots proportional to its weight."""
    total = sum(weights.values())
    table: list[str] = []
    for value, w in weights.items():
        table += [value] * round(w / total * size)
    return (table + [next(iter(weights))] * size)[:size]


class BackgroundTraffic(Source):
    """Pipeline-activity records at a steady rate from ``start`` (to ``end``, or forever), visible once past."""

    log_type = OpseraLogType.PIPELINE_ACTIVITY

    def __init__(
        self,
        per_hour: int,
        start_ms: int,
        end_ms: int | None,
        *,
        pipeline_ids: Sequence[str],
        user_ids: Sequence[str],
        seed: int,
        salt: int,
    ) -> None:
        if per_hour <= 0:
            raise ValueError("per_hour must be a positive number of records")
        if not pipeline_ids:
            raise ValueError("pipeline_ids must not be empty")
        self.per_hour, self.start_ms, self.salt = int(per_hour), start_ms, salt
        self.pipeline_ids, self.user_ids = tuple(pipeline_ids), tuple(user_ids)
        self._steps = _table(
            {s[0]: w for s, w in zip(STEPS, (1.0, 1.0, 0.8, 0.8, 0.7, 0.3, 0.6), strict=True)}
        )
        self._statuses = _table(PIPELINE_STATUSES)
        self._types = _table(PIPELINE_TYPES, PERIOD)
        random.Random(seed).shuffle(self._types)
        self._end = self._raw_index_lt(end_ms) if end_ms is not None else None

    def time_at(self, i: int) -> int:
        jitter = mix64(self.salt + i) & 0xFFFF
        return self.start_ms + ((i << 16) + jitter) * MS_HOUR // (self.per_hour << 16)

    def _raw_index_lt(self, t: int) -> int:
        if t <= self.start_ms:
            return 0
        guess = (t - self.start_ms) * self.per_hour // MS_HOUR
        # times are within one slot of the even grid: the answer is a step or two from the guess
        return bisect_left(range(max(0, guess - 2), guess + 3), t, key=self.time_at) + max(0, guess - 2)

    def index_lt(self, t: int) -> int:
        i = self._raw_index_lt(t)
        return i if self._end is None else min(i, self._end)

    def visible(self, now_ms: int) -> int:
        return self.index_lt(now_ms + 1)

    def records(self, indices: Iterable[int]) -> list[dict[str, Any]]:
        out = []
        pipelines, users, steps, statuses, types = (
            self.pipeline_ids,
            self.user_ids,
            self._steps,
            self._statuses,
            self._types,
        )
        for i in indices:
            h = mix64(self.salt + i)
            row = {
                "pipeline_id": pipelines[(h >> 16) % len(pipelines)],
                "user_id": users[(h >> 24) % len(users)],
                "step_name": steps[(h >> 32) & 0xFF],
                "status": statuses[(h >> 40) & 0xFF],
                "type": types[i % PERIOD],
            }
            ms = self.time_at(i)
            out.append(build_pipeline(row, object_id(ms // 1000, self.salt, i), iso_ms(ms), h))
        return out

    def record(self, i: int) -> dict[str, Any]:
        return self.records((i,))[0]

    def value_of(self, i: int, field: str) -> Any:
        if field == "type":
            return self._types[i % PERIOD]
        return super().value_of(i, field)

    def positions_for(self, field: str, value: str) -> Positions | None:
        if field != "type":
            return None
        slots = [k for k, t in enumerate(self._types) if t == value]
        return Periodic(slots, PERIOD) if slots else range(0)
