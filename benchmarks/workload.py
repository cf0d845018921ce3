"""The fixed workload: which records the simulator holds, and the query each measured run makes.

Every figure in RESULTS.md comes from these data sets, served by one simulator process with 50 ms of added
latency a request. ``smoke()`` is the same shape, tiny, for the test that keeps the suite from rotting.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import pendulum

from airflow_provider_opsera.catalogue import USER_ACTIVITY_TYPES

#: Seconds the simulator adds to every response: a WAN round trip.
LATENCY = 0.05
#: The hook's defaults, stated so the baselines use the same.
PAGE_SIZE = 1000
CONCURRENCY = 4
#: The seed's pipeline-log count for one day.
SEED_DAY_COUNT = 223_773


@dataclass(frozen=True)
class DataSet:
    """``n`` records of one log type with ``createdAt`` spread over one UTC day."""

    key: str
    log_type: str
    day: str
    n: int
    #: Values of the split field (``type``) to spread the records over; None keeps the simulator's default.
    split_values: tuple[str, ...] | None = None

    @property
    def start(self) -> str:
        return self._midnight().isoformat()

    @property
    def end(self) -> str:
        return self._midnight().add(days=1).isoformat()

    def _midnight(self) -> pendulum.DateTime:
        return pendulum.from_format(self.day, "YYYY-MM-DD", tz="UTC")

    @property
    def pages(self) -> int:
        return math.ceil(self.n / PAGE_SIZE)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DataSet:
        values = data.get("split_values")
        return cls(**{**data, "split_values": tuple(values) if values is not None else None})


@dataclass(frozen=True)
class Workload:
    """All data sets of one run, by role."""

    #: W1: one day of audit (v2) records.
    day: DataSet
    #: W2: one day of user-activity (v1) records, more than the cap of 1000, so the day must be split by type.
    split_day: DataSet
    #: W2, the seed's count as v1 records: more than 14 types x 1000 can hold, so it cannot be proven complete.
    split_day_too_big: DataSet
    #: W3: memory at a small and a large day.
    small_day: DataSet
    large_day: DataSet
    #: Repetitions of the fast configurations (floor and ours on W1); their median is reported.
    reps: int = 3

    def datasets(self) -> list[DataSet]:
        return [self.day, self.split_day, self.split_day_too_big, self.small_day, self.large_day]


def full() -> Workload:
    """The benchmark's workload (sized so ``make bench`` ends in well under 10 minutes on 2 cores)."""
    return Workload(
        day=DataSet("w1", "audit", "2024-05-10", SEED_DAY_COUNT),
        # v1 has no paging and no time below a day: one day holds at most 14 types x 999 provable records.
        # 12,000 spread evenly puts about 860 under each type, safely under the cap.
        split_day=DataSet("w2", "user_activity", "2024-05-10", 12_000, USER_ACTIVITY_TYPES),
        split_day_too_big=DataSet(
            "w2_seed_count", "user_activity", "2024-05-11", SEED_DAY_COUNT, USER_ACTIVITY_TYPES
        ),
        small_day=DataSet("w3_50k", "audit", "2024-05-20", 50_000),
        large_day=DataSet("w3_1m", "audit", "2024-05-21", 1_000_000),
        reps=3,
    )


def smoke() -> Workload:
    """The same shape, a few pages each: for the smoke test."""
    return Workload(
        day=DataSet("w1", "audit", "2024-05-10", 2_500),
        split_day=DataSet("w2", "user_activity", "2024-05-10", 1_500, USER_ACTIVITY_TYPES[:4]),
        split_day_too_big=DataSet(
            "w2_seed_count", "user_activity", "2024-05-11", 5_000, USER_ACTIVITY_TYPES[:2]
        ),
        small_day=DataSet("w3_50k", "audit", "2024-05-20", 1_200),
        large_day=DataSet("w3_1m", "audit", "2024-05-21", 3_000),
        reps=1,
    )


def load(sim: Any, datasets: list[DataSet]) -> None:
    """Generate every data set in an :class:`~airflow_provider_opsera.testing.OpseraSimulator`."""
    for ds in datasets:
        values = list(ds.split_values) if ds.split_values is not None else None
        sim.generate(ds.log_type, ds.start, ds.end, ds.n, split_values=values)
