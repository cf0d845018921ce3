"""Fixtures for the simulator's own tests: a simulator on a fake clock, and a thin ``requests`` client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pendulum
import pytest
import requests

from airflow_provider_opsera.catalogue import ENDPOINTS, OpseraLogType
from airflow_provider_opsera.testing import OpseraSimulator

NOW = pendulum.datetime(2024, 5, 10, 12, 0, 0)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: pendulum.DateTime) -> None:
        self.now = start

    def __call__(self) -> pendulum.DateTime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now = self.now.add(microseconds=int(seconds * 1_000_000))


class Client:
    """Plain HTTP against the live simulator, as any client would talk to it."""

    def __init__(self, sim: OpseraSimulator) -> None:
        self.sim = sim
        self.session = requests.Session()

    def get(
        self, log_type: str, token: str | None = None, timeout: float = 10, **params: Any
    ) -> requests.Response:
        headers = {"Authorization": f"Bearer {token or self.sim.token}"}
        url = self.sim.url + ENDPOINTS[OpseraLogType(log_type)].path
        return self.session.get(url, params=params, headers=headers, timeout=timeout)

    def ok(self, log_type: str, **params: Any) -> dict[str, Any]:
        response = self.get(log_type, **params)
        assert response.status_code == 200, response.text
        return response.json()

    def pages(self, log_type: str = "audit", page_size: int = 100, **params: Any) -> tuple[list[dict], int]:
        """Every v2 page of a query, concatenated, and the reported total."""
        out: list[dict] = []
        page = 1
        while True:
            body = self.ok(log_type, page=page, page_size=page_size, **params)
            out += body["data"]
            if len(body["data"]) < page_size:
                return out, body["count"]
            page += 1


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[OpseraSimulator]:
    with OpseraSimulator(seed=7, clock=clock) as simulator:
        yield simulator


@pytest.fixture
def api(sim: OpseraSimulator) -> Client:
    return Client(sim)
