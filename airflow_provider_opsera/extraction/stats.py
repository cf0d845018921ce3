"""What one extraction did, counted by the hook (requests, retries), the runner and the proofs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class ExtractionStats:
    """What one extraction did; ``requests`` counts HTTP attempts (retries included)."""

    requests: int = 0
    retries: int = 0
    responses: int = 0
    records: int = 0
    splits: int = 0
    refetches: int = 0
    duplicates: int = 0
    outside: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started
