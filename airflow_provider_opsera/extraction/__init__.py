"""Extracting one interval: a plan (:mod:`airflow_provider_opsera.planning`), a proof that each piece is
complete (:mod:`.proofs`, pure), and the runner that executes it concurrently (:mod:`.runner`, threads).

Data flows one way: operator -> hook -> runner -> proof/planner -> records.
"""

from __future__ import annotations

from airflow_provider_opsera.extraction.proofs import Ask, Proof, Step, drive, proof_for
from airflow_provider_opsera.extraction.runner import DECODE_AHEAD, Call, Fetch, Runner
from airflow_provider_opsera.extraction.stats import ExtractionStats

__all__ = [
    "DECODE_AHEAD",
    "Ask",
    "Call",
    "ExtractionStats",
    "Fetch",
    "Proof",
    "Runner",
    "Step",
    "drive",
    "proof_for",
]
