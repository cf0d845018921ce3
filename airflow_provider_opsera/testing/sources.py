"""Where served records come from: the :class:`Source` interface, windowed and filtered views, static records.

A source holds the records of one log type sorted by ``createdAt`` and addressed by index, so a time window is
two bisections and only the records of the page being served are ever built.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import msgspec

from airflow_provider_opsera.catalogue import OpseraLogType
from airflow_provider_opsera.testing.clock import parse_iso_ms

MISSING: Any = object()


class Positions(Protocol):
    """Sorted record indices of a source: an ``array``, a ``range``, or a virtual sequence with ``rank``."""

    def __getitem__(self, j: int, /) -> int: ...


class Periodic:
    """Indices ``i`` with ``i % period`` in ``slots``, as an unbounded sorted sequence (no storage)."""

    __slots__ = ("period", "slots")

    def __init__(self, slots: Sequence[int], period: int) -> None:
        self.slots = sorted(slots)
        self.period = period

    def __getitem__(self, j: int) -> int:
        q, r = divmod(j, len(self.slots))
        return q * self.period + self.slots[r]

    def rank(self, x: int) -> int:
        """How many members are below ``x``."""
        q, r = divmod(x, self.period)
        return q * len(self.slots) + bisect_left(self.slots, r)


def rank(positions: Positions, x: int) -> int:
    """How many members of a sorted positions sequence are below ``x``."""
    if isinstance(positions, Periodic):
        return positions.rank(x)
    return bisect_left(positions, x)  # type: ignore[call-overload]


def matches_value(value: Any, wanted: str) -> bool:
    """The API's filters are exact matches on the field's text; a record without the field never matches."""
    return value is not MISSING and value is not None and str(value) == wanted


class Source:
    """Records of one log type, sorted by ``createdAt`` (epoch ms), addressed by index ``0 .. len-1``."""

    log_type: OpseraLogType

    def time_at(self, i: int) -> int:
        raise NotImplementedError

    def index_lt(self, t: int) -> int:
        """How many records have ``createdAt < t``."""
        raise NotImplementedError

    def visible(self, now_ms: int) -> int:
        """How many leading records exist at ``now_ms`` (time-driven sources only show ``createdAt <= now``)."""
        raise NotImplementedError

    def record(self, i: int) -> dict[str, Any]:
        raise NotImplementedError

    def records(self, indices: Iterable[int]) -> list[dict[str, Any]]:
        return [self.record(i) for i in indices]

    def value_of(self, i: int, field: str) -> Any:
        return self.record(i).get(field, MISSING)

    def positions_for(self, field: str, value: str) -> Positions | None:
        """Indices of the records whose ``field`` equals ``value``, or None when only a scan can tell."""
        return None

    def select(self, lo: int, hi: int, filters: Mapping[str, str], now_ms: int) -> View:
        """The records with ``lo <= createdAt < hi`` matching every filter, visible at ``now_ms``."""
        a = self.index_lt(lo)
        b = max(a, min(self.index_lt(hi), self.visible(now_ms)))
        base: Positions | None = None
        rest: list[tuple[str, str]] = []
        for key, wanted in filters.items():
            positions = self.positions_for(key, wanted) if base is None else None
            if positions is None:
                rest.append((key, wanted))
            else:
                base = positions
        if base is None and not rest:
            return View(self, None, a, b)
        if base is not None:
            pa, pb = rank(base, a), rank(base, b)
            if not rest:
                return View(self, base, pa, pb)
            candidates: Iterable[int] = (base[k] for k in range(pa, pb))
        else:
            candidates = range(a, b)
        # a second filter (or one no index answers) is checked record by record, within the window only
        keep = array(
            "q", [i for i in candidates if all(matches_value(self.value_of(i, k), w) for k, w in rest)]
        )
        return View(self, keep, 0, len(keep))


class View:
    """A source's matching records for one query: a sorted run ``a .. b-1`` of its indices (or of ``idx``)."""

    __slots__ = ("a", "b", "idx", "source")

    def __init__(self, source: Source, idx: Positions | None, a: int, b: int) -> None:
        self.source, self.idx, self.a, self.b = source, idx, a, b

    def __len__(self) -> int:
        return self.b - self.a

    def index(self, j: int) -> int:
        return self.a + j if self.idx is None else self.idx[self.a + j]

    def time(self, j: int) -> int:
        return self.source.time_at(self.index(j))

    def count_lt(self, t: int) -> int:
        """How many of the view's records have ``createdAt < t``."""
        k = self.source.index_lt(t)
        if self.idx is not None:
            k = rank(self.idx, k)
        return min(max(k, self.a), self.b) - self.a

    def records(self, j0: int, j1: int) -> list[dict[str, Any]]:
        if self.idx is None:
            return self.source.records(range(self.a + j0, self.a + j1))
        idx = self.idx
        return self.source.records(idx[k] for k in range(self.a + j0, self.a + j1))


class StaticRecords(Source):
    """Explicit records (``add_records``), or scripted ones that appear as their ``createdAt`` passes (``gated``)."""

    def __init__(self, log_type: OpseraLogType, *, gated: bool = False) -> None:
        self.log_type = log_type
        self.gated = gated
        self._times = array("q")
        self._docs: list[dict[str, Any]] = []
        self._encoded: list[bytes] = []

    def add(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Add records (each needs ``_id`` and an ISO ``createdAt``); keeps ``createdAt`` order, stable."""
        incoming = []
        for rec in records:
            _id, created = rec.get("_id"), rec.get("createdAt")
            if not isinstance(_id, str) or not isinstance(created, str):
                raise ValueError(f"a record needs string _id and createdAt (ISO 8601): {dict(rec)!r:.200}")
            # served copies are decoded from these bytes: callers' dicts and served dicts never alias
            encoded = msgspec.json.encode(rec)
            incoming.append((parse_iso_ms(created), encoded))
        merged = sorted([*zip(self._times, self._encoded, strict=True), *incoming], key=lambda pair: pair[0])
        self._times = array("q", [t for t, _ in merged])
        self._encoded = [e for _, e in merged]
        self._docs = [msgspec.json.decode(e) for e in self._encoded]
        return len(incoming)

    def __len__(self) -> int:
        return len(self._times)

    def time_at(self, i: int) -> int:
        return self._times[i]

    def index_lt(self, t: int) -> int:
        return bisect_left(self._times, t)

    def visible(self, now_ms: int) -> int:
        return self.index_lt(now_ms + 1) if self.gated else len(self._times)

    def record(self, i: int) -> dict[str, Any]:
        return msgspec.json.decode(self._encoded[i])

    def value_of(self, i: int, field: str) -> Any:
        return self._docs[i].get(field, MISSING)
