"""The async client the trigger uses: the hook's settings, retry rule and errors, over aiohttp."""

from __future__ import annotations

import asyncio

import pytest

from airflow_provider_opsera.exceptions import OpseraAPIError, OpseraAuthError
from airflow_provider_opsera.hooks import transport
from airflow_provider_opsera.hooks.opsera import OpseraAsyncHook
from airflow_provider_opsera.testing.pytest_plugin import opsera_simulator  # noqa: F401

FAST_RETRIES = {"retry_min_wait": 0.01, "retry_max_wait": 0.1}


@pytest.fixture
def sim(opsera_simulator, monkeypatch):  # noqa: F811
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", opsera_simulator.connection_json(FAST_RETRIES))
    opsera_simulator.generate("pipeline_activity", "2024-05-09", "2024-05-10", 30)
    return opsera_simulator


def get(params, log_type="pipeline_activity"):
    async def main():
        async with OpseraAsyncHook() as client:
            page = await client.get_page(log_type, params)
            return page, client

    return asyncio.run(main())


def test_one_page_decoded_and_checked(sim):
    page, client = get({"date": "2024-05-09", "count": 1000})
    assert len(page.records) == 30 and client.requests == 1
    assert {r.id for r in page.records} == {
        r["_id"] for r in sim.ground_truth("pipeline_activity", "2024-05-09", "2024-05-10")
    }


def test_retries_follow_the_hook_rule(sim):
    sim.inject("503", times=2)
    sim.inject("malformed_json", times=1)
    page, client = get({"date": "2024-05-09"})
    assert len(page.records) == 30 and client.retries == 3


def test_errors_map_like_the_hook_and_hide_the_token(sim, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", sim.connection_json().replace(sim.token, "wrong-token"))
    with pytest.raises(OpseraAuthError, match="401") as err:
        get({"date": "2024-05-09"})
    assert "wrong-token" not in str(err.value)
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", sim.connection_json({**FAST_RETRIES, "max_retries": 1}))
    sim.inject("502", times=2)
    with pytest.raises(OpseraAPIError, match="gave up after 2 attempts"):
        get({"date": "2024-05-09"})


def test_parameters_are_validated_before_any_request(sim):
    with pytest.raises(ValueError, match="range"):
        get({"range": "yesterday"})
    assert sim.request_count() == 0


def test_the_connection_is_read_off_the_loop_where_aget_connection_is_missing(sim, monkeypatch):
    from airflow_provider_opsera.compat import BaseHook

    if hasattr(BaseHook, "aget_connection"):  # Airflow 3.0's BaseHook has none to remove
        monkeypatch.delattr(BaseHook, "aget_connection")
    page, _ = get({"date": "2024-05-09"})
    assert len(page.records) == 30
    assert transport.ssl_context(True) is True and transport.ssl_context(False) is False
