"""A v1 day that reaches the 1000-record cap and cannot be split any further: the error says why and what helps.

v1 endpoints only query whole days, so narrowing the interval cannot help; the message says so, and names the
one thing that can (for user activity: the audit log type, through the paged v2 API).
"""

from __future__ import annotations

import pendulum
import pytest

from airflow_provider_opsera import OpseraIncompleteResultError
from airflow_provider_opsera.hooks.opsera import OpseraHook
from airflow_provider_opsera.testing import OpseraSimulator

DAY = pendulum.datetime(2024, 5, 10)
NEXT = DAY.add(days=1)
WINDOW = "[2024-05-10T00:00:00+00:00, 2024-05-11T00:00:00+00:00)"
CAP = (
    "the response holds 1000 records, the API's cap. The v1 API cannot return more than 1000 records for one "
    "day and filter, and {path} only queries whole days, so a narrower interval cannot help; "
)
SPLIT = "the day was already split by type, and its records of type={value} alone reach the cap. "
FILTERED = (
    "the filter type={value} fixes type, the only field a v1 day can be split by, so its records cannot be "
    "split any further. "
)
USER_HELP = (
    "What can help: the audit log type reads user activity through the v2 API (GET /api/v2/logs/audit/user), "
    "which pages and has no such limit; extract this day with it instead. "
)
PIPELINE_HELP = (
    "No other filter of this endpoint can split the day, so it cannot be read completely through the v1 API. "
)
LAST = "The provider never returns a set it cannot prove complete."


@pytest.fixture
def sim(monkeypatch):
    with OpseraSimulator(seed=7) as simulator:
        monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", simulator.connection_json())
        # Every record of the day has one type: the provider's split by type cannot divide it.
        simulator.generate("user_activity", DAY, NEXT, 3000, split_values=["pipeline"])
        simulator.generate("pipeline_activity", DAY, NEXT, 1500, split_values=["sdlc"])
        yield simulator


def error_of(log_type: str, filters=None) -> str:
    with pytest.raises(OpseraIncompleteResultError) as err:
        list(OpseraHook().iter_logs(log_type, DAY, NEXT, filters))
    return str(err.value)


def test_user_activity_without_filters(sim):
    assert error_of("user_activity") == (
        f"user_activity {WINDOW} type=pipeline: "
        + CAP.format(path="/api/v1/logs/user/actions")
        + SPLIT.format(value="pipeline")
        + USER_HELP
        + LAST
    )


def test_user_activity_with_a_type_filter(sim):
    assert error_of("user_activity", {"type": "pipeline"}) == (
        f"user_activity {WINDOW}: "
        + CAP.format(path="/api/v1/logs/user/actions")
        + FILTERED.format(value="pipeline")
        + USER_HELP
        + LAST
    )


def test_pipeline_activity_without_filters(sim):
    assert error_of("pipeline_activity") == (
        f"pipeline_activity {WINDOW} type=sdlc: "
        + CAP.format(path="/api/v1/logs/pipelines")
        + SPLIT.format(value="sdlc")
        + PIPELINE_HELP
        + LAST
    )


def test_pipeline_activity_with_a_type_filter(sim):
    assert error_of("pipeline_activity", {"type": "sdlc"}) == (
        f"pipeline_activity {WINDOW}: "
        + CAP.format(path="/api/v1/logs/pipelines")
        + FILTERED.format(value="sdlc")
        + PIPELINE_HELP
        + LAST
    )


def test_the_audit_log_type_reads_the_day_the_v1_endpoint_cannot(sim):
    # What the user activity message advises works: v2 pages through a day of one type, whatever its size.
    sim.generate("audit", DAY, NEXT, 3000, split_values=["pipeline"])
    records = list(OpseraHook().iter_logs("audit", DAY, NEXT, {"type": "pipeline"}))
    assert len(records) == 3000
