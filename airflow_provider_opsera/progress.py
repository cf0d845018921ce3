"""Progress lines for long extractions: one every ``every`` seconds, never one per page."""

from __future__ import annotations

import logging
import time
from typing import Any

from airflow_provider_opsera.extraction import ExtractionStats


class Progress:
    """Counts records as they flow to a sink and logs a summary line at most every ``every`` seconds."""

    def __init__(self, log: logging.Logger | Any, what: str, every: float = 15.0) -> None:
        self.log, self.what, self.every = log, what, every
        self.records = 0
        self.started = time.monotonic()
        self._next = self.started + every

    def add(self, n: int, stats: ExtractionStats | None = None) -> None:
        self.records += n
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.every
            self.log.info("%s: %s", self.what, self.summary(stats))

    def summary(self, stats: ExtractionStats | None = None) -> str:
        took = max(time.monotonic() - self.started, 1e-9)
        text = f"{self.records:,} records in {took:.1f}s ({self.records / took:,.0f}/s)"
        if stats is not None:
            text += f", {stats.requests} requests, {stats.retries} retries, {stats.splits} splits"
        return text
