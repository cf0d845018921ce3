"""Retries stay within a bounded total time: a task cannot hang for hours on a failing or stalling API.

Per call, the worst case is ``(max_retries + 1) * timeout + max_retries * max(retry_max_wait, 300)``: every
attempt is bounded by ``timeout``, every wait by ``retry_max_wait`` or, when the server sends ``Retry-After``,
by :data:`~airflow_provider_opsera.retry.MAX_RETRY_AFTER`. The waits are recorded, not slept.
"""

from __future__ import annotations

import asyncio
import json
import types

import pendulum
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loopback import LoopbackServer
from tenacity import RetryCallState

from airflow_provider_opsera.exceptions import OpseraAPIError, RetryableAPIError
from airflow_provider_opsera.hooks.opsera import OpseraAsyncHook, OpseraHook
from airflow_provider_opsera.retry import MAX_RETRY_AFTER, RetryWait, parse_retry_after


def state(attempt: int, exc: BaseException | None) -> RetryCallState:
    call = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    call.attempt_number = attempt
    if exc is not None:
        call.set_exception((type(exc), exc, None))
    return call


RETRY_AFTER = st.one_of(
    st.none(),
    st.integers(min_value=-10, max_value=10**9).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["inf", "nan", "-inf", "1e400", "soon", "", " 5 "]),
    st.integers(min_value=-86400 * 365, max_value=86400 * 3650).map(
        lambda s: pendulum.now("UTC").add(seconds=s).format("ddd, DD MMM YYYY HH:mm:ss [GMT]")
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    attempt=st.integers(min_value=1, max_value=60),
    min_wait=st.floats(min_value=0, max_value=5),
    max_wait=st.floats(min_value=0, max_value=120),
    header=RETRY_AFTER,
)
def test_every_wait_is_bounded(attempt, min_wait, max_wait, header):
    retry_after = parse_retry_after(header)
    assert retry_after is None or retry_after >= 0
    exc = RetryableAPIError("HTTP 429", status_code=429, retry_after=retry_after)
    wait = RetryWait(min_wait, max_wait)(state(attempt, exc))
    assert 0 <= wait <= max(max_wait, min_wait, MAX_RETRY_AFTER)
    if retry_after is None:
        assert wait <= max(max_wait, min_wait) + min_wait  # backoff with jitter, capped


@pytest.fixture
def recorded_sleeps(monkeypatch) -> list[float]:
    """tenacity's sleeps, recorded instead of slept (tenacity looks ``time.sleep`` up at call time)."""
    import tenacity.nap

    sleeps: list[float] = []
    monkeypatch.setattr(tenacity.nap, "time", types.SimpleNamespace(sleep=sleeps.append))
    return sleeps


def test_a_server_asking_to_wait_a_day_is_waited_for_at_most_the_cap(
    opsera_simulator, monkeypatch, recorded_sleeps
):
    sim = opsera_simulator
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", sim.connection_json({"max_retries": 3}))
    sim.inject("429", times=None, retry_after=86400)
    with pytest.raises(OpseraAPIError, match=r"HTTP 429.*gave up after 4 attempts"):
        OpseraHook().get_logs("audit", {"page": 1})
    assert sim.request_count() == 4
    assert len(recorded_sleeps) == 3
    assert all(0 <= s <= MAX_RETRY_AFTER for s in recorded_sleeps)
    assert sum(recorded_sleeps) <= 3 * MAX_RETRY_AFTER


def test_backoff_without_retry_after_is_capped_by_retry_max_wait(
    opsera_simulator, monkeypatch, recorded_sleeps
):
    sim = opsera_simulator
    extra = {"max_retries": 8, "retry_min_wait": 1, "retry_max_wait": 20}
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", sim.connection_json(extra))
    sim.inject("503", times=None)
    with pytest.raises(OpseraAPIError, match="gave up after 9 attempts"):
        OpseraHook().get_logs("audit", {"page": 1})
    assert len(recorded_sleeps) == 8
    assert max(recorded_sleeps) <= 20 and sum(recorded_sleeps) <= 8 * 20


def test_the_async_client_is_bounded_the_same_way(opsera_simulator, monkeypatch):
    sim = opsera_simulator
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", sim.connection_json({"max_retries": 3}))
    sim.inject("429", times=None, retry_after=86400)
    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(seconds, *args, **kwargs):
        sleeps.append(seconds)
        await real_sleep(0)

    async def call() -> None:
        async with OpseraAsyncHook() as client:
            await client.get_page("pipeline_activity", {"range": "1h"})

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    with pytest.raises(OpseraAPIError, match=r"HTTP 429.*gave up after 4 attempts"):
        asyncio.run(call())
    retry_sleeps = [s for s in sleeps if s]  # aiohttp's own zero-second yields aside
    assert len(retry_sleeps) == 3 and all(s <= MAX_RETRY_AFTER for s in retry_sleeps)


def use(monkeypatch, url: str, **extra) -> None:
    conn = {"conn_type": "opsera", "host": url, "password": "tok-123456", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", json.dumps(conn))


def test_a_stalling_server_is_cut_off_by_the_async_clients_timeout(monkeypatch):
    with LoopbackServer() as server:
        server.behaviour.mode, server.behaviour.pause, server.behaviour.size = "trickle", 0.1, 30
        use(monkeypatch, server.url, timeout=0.5, max_retries=0)

        async def call() -> None:
            async with OpseraAsyncHook() as client:
                await client.get_page("pipeline_activity", {"range": "1h"})

        with pytest.raises(OpseraAPIError, match=r"(?i)timeout"):
            asyncio.run(call())


def test_a_stalling_server_is_cut_off_by_the_sync_hooks_timeout(monkeypatch):
    with LoopbackServer() as server:
        # 30 bytes at 0.1 s each: 3 s for the body, against a 0.5 s timeout
        server.behaviour.mode, server.behaviour.pause, server.behaviour.size = "trickle", 0.1, 30
        use(monkeypatch, server.url, timeout=0.5, max_retries=0)
        with pytest.raises(OpseraAPIError, match=r"(?i)timeout|timed out"):
            OpseraHook().get_logs("audit", {"page": 1})
