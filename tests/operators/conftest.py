"""Fixtures for the operator tests: a fresh bucket on moto's S3 (``moto_s3``, in tests/conftest.py)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from connections import MOTO_CONN_ID

# The plugin registers itself through the pytest11 entry point; importing the fixture here too keeps these tests
# working in an environment installed before that entry point existed (a conftest fixture simply shadows it).
from airflow_provider_opsera.testing.pytest_plugin import opsera_simulator  # noqa: F401


@pytest.fixture
def s3_bucket(moto_s3: Callable[[str], str], request: pytest.FixtureRequest):
    """A fresh bucket on moto and an ``aws`` connection ``aws_moto`` pointing at it: ``(bucket, conn_id)``."""
    bucket = moto_s3(("opsera-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()))[:60].strip("-"))
    return bucket, MOTO_CONN_ID
