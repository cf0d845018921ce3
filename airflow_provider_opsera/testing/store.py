"""All sources of every log type, and the one order in which a query's matching records are served.

Records are ranked by ``(createdAt, source, index)``. A page of ranks is found without merging whole sources:
a binary search on time finds where each source's run starts, then only the page's records are merged. That
keeps page 900 of a million records as cheap as page 1, with any number of sources.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Iterator, Mapping
from itertools import accumulate, islice
from typing import Any

from airflow_provider_opsera.catalogue import OpseraLogType
from airflow_provider_opsera.testing.shapes import mix64
from airflow_provider_opsera.testing.sources import Source, View


class Matches:
    """Every record matching one query, across sources, in ascending ``(createdAt, source, index)`` rank."""

    def __init__(self, views: list[View]) -> None:
        self.views = [v for v in views if len(v)]
        self.total = sum(len(v) for v in self.views)
        self._offsets = list(accumulate((len(v) for v in self.views), initial=0))

    def ascending(self, r0: int, r1: int) -> list[dict[str, Any]]:
        """The records of ranks ``r0 .. r1-1``, oldest first."""
        r0, r1 = max(0, r0), min(r1, self.total)
        if r0 >= r1:
            return []
        if len(self.views) == 1:
            return self.views[0].records(r0, r1)
        starts = self._starts(r0)
        streams = [self._stream(s, v, j) for s, (v, j) in enumerate(zip(self.views, starts, strict=True))]
        picked = list(islice(heapq.merge(*streams), r1 - r0))
        runs: dict[int, list[int]] = {}
        for _, src, j in picked:
            runs.setdefault(src, []).append(j)
        built: dict[tuple[int, int], dict[str, Any]] = {}
        for src, js in runs.items():
            # the merge takes a prefix of each stream: a source's picks are one contiguous run, built in a batch
            built.update(zip(((src, j) for j in js), self.views[src].records(js[0], js[-1] + 1), strict=True))
        return [built[src, j] for _, src, j in picked]

    def at(self, r: int) -> dict[str, Any]:
        """The record of rank ``r`` in source-after-source order (used where the order is arbitrary anyway)."""
        s = bisect_right(self._offsets, r) - 1
        return self.views[s].records(r - self._offsets[s], r - self._offsets[s] + 1)[0]

    @staticmethod
    def _stream(s: int, view: View, j: int) -> Iterator[tuple[int, int, int]]:
        for k in range(j, len(view)):
            yield view.time(k), s, k

    def _starts(self, r: int) -> list[int]:
        """Where each view's records of rank ``>= r`` begin."""
        lo = min(v.time(0) for v in self.views)
        hi = max(v.time(len(v) - 1) for v in self.views)
        while lo < hi:  # the earliest time t with more than r records at or before it
            mid = (lo + hi) // 2
            if sum(v.count_lt(mid + 1) for v in self.views) > r:
                hi = mid
            else:
                lo = mid + 1
        below = [v.count_lt(lo) for v in self.views]
        need = r - sum(below)
        starts = []
        for view, b in zip(self.views, below, strict=True):
            take = min(view.count_lt(lo + 1) - b, need)
            need -= take
            starts.append(b + take)
        return starts


class Permutation:
    """A seeded shuffle of ``0 .. n-1`` computed one element at a time (Feistel network, cycle walking)."""

    def __init__(self, n: int, key: int) -> None:
        self.n = n
        self.half = max(1, ((n - 1).bit_length() + 1) // 2)
        self.mask = (1 << self.half) - 1
        self.keys = [mix64(key + r) for r in range(4)]

    def __call__(self, x: int) -> int:
        half, mask = self.half, self.mask
        while True:
            left, right = x >> half, x & mask
            for k in self.keys:
                left, right = right, left ^ (mix64(right ^ k) & mask)
            x = (left << half) | right
            if x < self.n:
                return x


def page_of(
    matches: Matches, sort: str, start: int, size: int, *, rotation: int = 0, key: int = 0
) -> list[dict[str, Any]]:
    """Positions ``start .. start+size-1`` of the served order (``desc``, ``asc`` or ``random``).

    ``rotation`` shifts the whole order by that many positions first (a list changing under the client's feet).
    """
    n = matches.total
    end = min(start + size, n)
    if start >= end:
        return []
    if sort == "random":
        perm = Permutation(n, key)
        return [matches.at(perm((p + rotation) % n)) for p in range(start, end)]
    first = (start + rotation) % n
    runs = [(first, min(n, first + end - start))]
    if runs[0][1] - first < end - start:
        runs.append((0, end - start - (runs[0][1] - first)))
    out: list[dict[str, Any]] = []
    for x, y in runs:
        if sort == "asc":
            out += matches.ascending(x, y)
        else:  # desc: order positions x..y-1 are ascending ranks n-y..n-x-1, reversed
            out += reversed(matches.ascending(n - y, n - x))
    return out


class LogStore:
    """The sources of each log type, in the order they were added (the tie-break between equal times)."""

    def __init__(self) -> None:
        self.sources: dict[OpseraLogType, list[Source]] = {t: [] for t in OpseraLogType}

    def add(self, source: Source) -> None:
        self.sources[source.log_type].append(source)

    def matches(
        self, log_type: OpseraLogType, lo: int, hi: int, filters: Mapping[str, str], now_ms: int
    ) -> Matches:
        return Matches([s.select(lo, hi, filters, now_ms) for s in self.sources[log_type]])
