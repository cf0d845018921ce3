"""Generated records (``sim.generate``): built by index from compact columns, never stored as dicts.

A segment keeps, per record, its ``createdAt`` (``array('q')`` of epoch ms, sorted) and one small code per
drawn column (``array('B'/'H')``); 1,000,000 audit records take about 12 MB. A record's dict is built only
when it is served, from its codes, its index and a hash.
"""

from __future__ import annotations

import random
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from typing import Any

from airflow_provider_opsera.catalogue import OpseraLogType
from airflow_provider_opsera.testing.clock import iso_ms
from airflow_provider_opsera.testing.shapes import BUILDERS, ColumnSpec, mix64, object_id
from airflow_provider_opsera.testing.sources import MISSING, Positions, Source, matches_value

_CHUNK = 1 << 16


class _Zero:
    """Code 0 for every record: a constant column in the middle of drawn ones."""

    def __getitem__(self, i: int) -> int:
        return 0


_ZERO: Any = _Zero()


class Column:
    """Drawn values of some fields: ``values[codes[i]]`` is record ``i``'s; ``codes`` is None for a constant."""

    __slots__ = ("codes", "values")

    def __init__(self, values: list[dict[str, Any]], codes: array | None) -> None:
        self.values, self.codes = values, codes


def _typecode(k: int) -> str:
    return "B" if k <= 0xFF else "H" if k <= 0xFFFF else "I"


def _spread(start_ms: int, end_ms: int, n: int, rng: random.Random) -> array:
    """Sorted times over ``[start, end)``: record ``i`` falls at a random point of the ``i``-th of ``n`` slots."""
    if n == 0:
        return array("q")
    span, scale = end_ms - start_ms, n << 16
    jitter = memoryview(rng.randbytes(2 * n)).cast("H")
    times = array("q")
    for lo in range(0, n, _CHUNK):  # in chunks: a list of a million big ints would cost 40 MB at its peak
        part = jitter[lo : lo + _CHUNK]
        times.extend([start_ms + ((i << 16) + f) * span // scale for i, f in enumerate(part, lo)])
    return times


def _draw(spec: ColumnSpec, n: int, rng: random.Random, parent: tuple[Column, str] | None) -> Column:
    k = len(spec.values)
    if k == 1 or n == 0:
        return Column(spec.values, None)
    if parent is None or not spec.weights_by_parent:
        codes = array(_typecode(k), rng.choices(range(k), weights=spec.weights, k=n))
        return Column(spec.values, codes)
    column, field = parent
    parent_codes = column.codes if column.codes is not None else array("B", bytes(n))
    # draw each parent value's share in one go, then deal the draws out in record order
    deal = {}
    for c, m in sorted(Counter(parent_codes).items()):
        weights = spec.weights_by_parent.get(column.values[c].get(field), spec.weights)
        deal[c] = iter(rng.choices(range(k), weights=weights, k=m)).__next__
    return Column(spec.values, array(_typecode(k), [deal[c]() for c in parent_codes]))


class Segment(Source):
    """``n`` generated records of one log type with ``createdAt`` spread over ``[start, end)``."""

    def __init__(
        self,
        log_type: OpseraLogType,
        start_ms: int,
        end_ms: int,
        n: int,
        *,
        seed: int,
        salt: int,
        specs: list[ColumnSpec],
        absent: Iterable[str] = (),
        extras: Iterable[str] = (),
        live: bool = False,
    ) -> None:
        rng = random.Random(seed)
        self.log_type = log_type
        #: A live account: each record appears once the clock has passed its ``createdAt``.
        self.live = live
        self.salt = salt
        self.times = _spread(start_ms, end_ms, n, rng)
        self.absent = frozenset(absent)
        self.extras = tuple(extras)
        self._build = BUILDERS[log_type]
        self._field_column: dict[str, Column] = {}
        drawn: list[Column | None] = [None] * len(specs)
        # independent columns first: a dependent one (action given type) reads its parent's codes
        for pass_dependent in (False, True):
            for pos, spec in enumerate(specs):
                if bool(spec.depends_on) != pass_dependent:
                    continue
                parent = None
                if spec.depends_on and spec.depends_on in self._field_column:
                    parent = (self._field_column[spec.depends_on], spec.depends_on)
                drawn[pos] = column = _draw(spec, n, rng, parent)
                for f in spec.fields:
                    self._field_column[f] = column
        self.columns = [c for c in drawn if c is not None]
        # the field's value comes from the last column drawing it (later specs override earlier ones)
        self._field_column = {f: c for c in self.columns for f in c.values[0]} if self.columns else {}
        self._positions: dict[tuple[int, str], Positions] = {}

    def __len__(self) -> int:
        return len(self.times)

    def time_at(self, i: int) -> int:
        return self.times[i]

    def index_lt(self, t: int) -> int:
        return bisect_left(self.times, t)

    def visible(self, now_ms: int) -> int:
        return self.index_lt(now_ms + 1) if self.live else len(self.times)

    def records(self, indices: Iterable[int]) -> list[dict[str, Any]]:
        times, build, salt = self.times, self._build, self.salt
        # later columns override earlier ones: constants before the first drawn column (or after the last) are
        # merged once, the rest are applied in order per record
        columns = list(self.columns)
        head: dict[str, Any] = {}
        tail: dict[str, Any] = {}
        while columns and columns[0].codes is None:
            head.update(columns.pop(0).values[0])
        while columns and columns[-1].codes is None:
            tail = columns.pop().values[0] | tail
        drawn = [(col.values, col.codes or _ZERO) for col in columns]
        salt_hex = object_id(0, salt, 0)[8:18]
        extras, absent = self.extras, self.absent
        out = []
        for i in indices:
            row = dict(head)
            for values, codes in drawn:
                row.update(values[codes[i]])
            if tail:
                row.update(tail)
            ms = times[i]
            oid = f"{ms // 1000 & 0xFFFFFFFF:08x}{salt_hex}{i & 0xFFFFFF:06x}"  # object_id(), inlined
            rec = build(row, oid, iso_ms(ms), mix64(salt + i))
            for f in extras:
                rec[f] = row.get(f)
            for f in absent:
                rec.pop(f, None)
            out.append(rec)
        return out

    def record(self, i: int) -> dict[str, Any]:
        return self.records((i,))[0]

    def value_of(self, i: int, field: str) -> Any:
        if field in self.absent:
            return MISSING
        column = self._field_column.get(field)
        if column is None:
            return self.record(i).get(field, MISSING)
        return column.values[0 if column.codes is None else column.codes[i]].get(field, MISSING)

    def positions_for(self, field: str, value: str) -> Positions | None:
        if field in self.absent:
            return range(0)
        column = self._field_column.get(field)
        if column is None:
            return None
        wanted = [c for c, vals in enumerate(column.values) if matches_value(vals.get(field, MISSING), value)]
        if column.codes is None:
            return range(len(self.times)) if wanted else range(0)
        key = (id(column), value)
        if key not in self._positions:
            self._positions[key] = self._index(column.codes, set(wanted))
        return self._positions[key]

    @staticmethod
    def _index(codes: array, wanted: set[int]) -> array:
        # from generators, not lists: a list of a million ints would cost 36 MB at its peak
        if len(wanted) == 1:
            (code,) = wanted
            return array("i", (i for i, c in enumerate(codes) if c == code))
        return array("i", (i for i, c in enumerate(codes) if c in wanted))
