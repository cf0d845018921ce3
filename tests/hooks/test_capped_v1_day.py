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


# -- a server that cuts a v1 answer short below the documented cap -----------------------------------------
@pytest.fixture
def low_cap_sim(monkeypatch):
    """A server capping v1 answers at 100 records (the provider expects 1000) and counting every match."""
    import dataclasses

    with OpseraSimulator(seed=11) as simulator:
        simulator.config = dataclasses.replace(simulator.config, cap=100, v1_count="total")
        monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", simulator.connection_json())
        yield simulator


def test_an_answer_shorter_than_its_count_is_not_taken_as_the_whole_day(low_cap_sim):
    """100 records with count 2000, under the documented cap: never landed as the day (it used to be)."""
    low_cap_sim.generate("pipeline_activity", DAY, NEXT, 2000, split_values=["sdlc"])
    message = error_of("pipeline_activity")  # split by type, and the one type's answer is still short
    assert "the API counts 2000 records for the day" in message and message.endswith(LAST)
    # With the split field fixed by a filter, the short answer itself is the reason.
    low_cap_sim.generate("user_activity", DAY, NEXT, 300, split_values=["pipeline"])
    message = error_of("user_activity", {"type": "pipeline"})
    assert "the response holds 100 records, fewer than its count of 300: the server cut it short" in message
    assert message.endswith(LAST)


def test_an_answer_shorter_than_its_count_is_split_and_proven(low_cap_sim):
    """The same server, a day whose records of each type fit in one short answer: split by type, exact."""
    types = ["login", "logout", "create", "update", "delete", "view", "export", "import"]
    low_cap_sim.generate("user_activity", DAY, NEXT, 400, split_values=types)
    got = list(OpseraHook().iter_logs("user_activity", DAY, NEXT))
    truth = low_cap_sim.ground_truth("user_activity", DAY, NEXT)
    assert sorted(r["_id"] for r in got) == sorted(r["_id"] for r in truth)
    assert len(truth) == 400
