"""Each endpoint's parameters, windows, caps and errors, over real HTTP."""

from __future__ import annotations

import pytest

from airflow_provider_opsera.catalogue import ENDPOINTS, OpseraLogType
from airflow_provider_opsera.testing import OpseraSimulator

DAY, NEXT = "2024-05-08", "2024-05-09"
V1_TYPES = ("user_activity", "pipeline_activity", "token_activity")


def _ids(records: list[dict]) -> set[str]:
    return {r["_id"] for r in records}


@pytest.mark.parametrize("log_type", [*V1_TYPES, "audit"])
def test_missing_or_unknown_token_is_401(sim: OpseraSimulator, api, log_type):
    url = sim.url + ENDPOINTS[OpseraLogType(log_type)].path
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": sim.token}):
        response = api.session.get(url, headers=headers)
        assert response.status_code == 401
        assert "token" in response.json()["message"]


def test_wrong_scope_or_role_is_403_and_says_which(sim: OpseraSimulator, api):
    sim.add_token("readonly", scopes=("api-readonly",), role="site_admin")
    sim.add_token("auditor", scopes=("api",), role="auditor")
    sim.add_token("stranger", scopes=("other",), role="site_admin")
    sim.add_token("viewer", scopes=("security-logs",), role="viewer")
    for log_type in V1_TYPES:
        assert "scope" in api.get(log_type, token="readonly").json()["message"]
        message = api.get(log_type, token="auditor").json()["message"]
        assert api.get(log_type, token="auditor").status_code == 403
        assert "Site Admins and Power Users" in message and "auditor" in message
        assert api.get(log_type, token="viewer").status_code == 403
    assert api.get("audit", token="readonly").status_code == 200
    assert api.get("audit", token="auditor").status_code == 200
    assert "scope" in api.get("audit", token="stranger").json()["message"]
    assert "role" in api.get("audit", token="viewer").json()["message"]
    assert api.get("audit", token="viewer").status_code == 403


def test_v1_date_start_end_and_end_inclusive(sim: OpseraSimulator, api):
    sim.generate("user_activity", "2024-05-06", "2024-05-10", 600)
    body = api.ok("user_activity", date=DAY)
    truth = sim.ground_truth("user_activity", DAY, "2024-05-09")
    assert body["count"] == len(truth) == len(body["data"]) and _ids(body["data"]) == _ids(truth)
    both = api.ok("user_activity", start="2024-05-07", end=DAY)
    assert _ids(both["data"]) == _ids(sim.ground_truth("user_activity", "2024-05-07", "2024-05-09"))
    sim.config.end_inclusive = False
    excl = api.ok("user_activity", start="2024-05-07", end=DAY)
    assert _ids(excl["data"]) == _ids(sim.ground_truth("user_activity", "2024-05-07", DAY))
    only_start = api.ok("user_activity", start=DAY)
    assert _ids(only_start["data"]) == _ids(sim.ground_truth("user_activity", DAY, "2024-05-11"))


def test_v1_range_is_relative_to_now(sim: OpseraSimulator, api, clock):
    sim.generate("pipeline_activity", clock.now.subtract(hours=3), clock.now, 500)
    for value, since in (("30m", clock.now.subtract(minutes=30)), ("2h", clock.now.subtract(hours=2))):
        body = api.ok("pipeline_activity", range=value)
        truth = sim.ground_truth("pipeline_activity", since, clock.now.add(microseconds=1000))
        assert body["count"] == len(truth) and _ids(body["data"]) == _ids(truth)
    assert api.ok("pipeline_activity", range="1w")["count"] == 500
    assert api.ok("pipeline_activity", range="45s")["count"] < 5


@pytest.mark.parametrize(
    "params",
    [
        {"date": DAY, "start": DAY},
        {"date": DAY, "range": "1d"},
        {"range": "1d", "end": DAY},
        {"date": "2024-13-01"},
        {"date": "yesterday"},
        {"start": "2024-5-1"},
        {"range": "5y"},
        {"range": "0d"},
        {"range": "-1d"},
        {"count": "0"},
        {"count": "ten"},
        {"limit": "5"},
        {"page": "1"},
    ],
)
def test_v1_bad_parameters_are_400(api, params):
    response = api.get("user_activity", **params)
    assert response.status_code == 400
    assert response.json()["message"]


def test_repeated_and_unknown_parameters(sim: OpseraSimulator, api):
    url = sim.url + "/api/v1/logs/pipelines?type=sdlc&type=sql"
    headers = {"Authorization": f"Bearer {sim.token}"}
    assert api.session.get(url, headers=headers).status_code == 400
    assert api.get("audit", pipeline_id="x").status_code == 400
    sim.config.strict_params = False
    assert api.session.get(url, headers=headers).status_code == 200
    assert api.get("audit", pipeline_id="x").status_code == 200


def test_v1_cap_count_parameter_and_count_modes(sim: OpseraSimulator, api):
    sim.generate("pipeline_activity", DAY, "2024-05-09", 2500)
    truth = sim.ground_truth("pipeline_activity", DAY, "2024-05-09")
    body = api.ok("pipeline_activity", date=DAY)
    assert body["count"] == 2500 and len(body["data"]) == 1000
    assert body["data"] == truth[::-1][:1000]  # newest first, exactly as ground truth has them
    assert len(api.ok("pipeline_activity", date=DAY, count=10)["data"]) == 10
    assert len(api.ok("pipeline_activity", date=DAY, count=5000)["data"]) == 1000
    sim.config.v1_count = "page"
    assert api.ok("pipeline_activity", date=DAY)["count"] == 1000
    assert api.ok("pipeline_activity", date=DAY, count=7)["count"] == 7
    sim.config.cap = 300
    assert len(api.ok("pipeline_activity", date=DAY)["data"]) == 300


def test_v1_type_filter_partitions_pipeline_records(sim: OpseraSimulator, api):
    sim.generate("pipeline_activity", DAY, "2024-05-09", 2500)
    seen = set()
    for pipeline_type in ("sdlc", "sfdc", "ai-ml", "sql"):
        body = api.ok("pipeline_activity", date=DAY, type=pipeline_type)
        assert body["count"] == len(body["data"]) < 1000
        assert {r["type"] for r in body["data"]} == {pipeline_type}
        seen |= _ids(body["data"])
    assert seen == _ids(sim.ground_truth("pipeline_activity", DAY, "2024-05-09"))
    assert api.ok("pipeline_activity", date=DAY, type="nope")["count"] == 0


def test_split_values_and_field_choices(sim: OpseraSimulator, api):
    sim.generate(
        "pipeline_activity", DAY, "2024-05-09", 50, split_values=[], pipeline_id="p1", extra_field=[1, 2]
    )
    sim.generate(
        "user_activity", DAY, "2024-05-09", 60, split_values={"tag": 1, "policy": 3}, user_email="a@b.c"
    )
    records = api.ok("pipeline_activity", date=DAY)["data"]
    assert all("type" not in r and r["pipeline_id"] == "p1" and r["extra_field"] in (1, 2) for r in records)
    assert list(records[0])[-1] == "extra_field"
    assert api.ok("pipeline_activity", date=DAY, type="sdlc")["count"] == 0
    users = api.ok("user_activity", date=DAY)["data"]
    assert {r["type"] for r in users} == {"tag", "policy"} and {r["user_email"] for r in users} == {"a@b.c"}
    assert api.ok("user_activity", date=DAY, type="tag")["count"] < 30
    sim.generate(
        "pipeline_activity", NEXT, "2024-05-10", 40, step_configuration={"tool": "x"}, status={"failed": 1}
    )
    fixed = api.ok("pipeline_activity", date=NEXT)["data"]
    assert {(r["status"], r["step_configuration"]["tool"], r["api_response"]["status"]) for r in fixed} == {
        ("failed", "x", "failed")
    }
    with pytest.raises(ValueError):
        sim.generate("audit", NEXT, DAY, 10)


def test_v1_defaults_without_time_parameters(sim: OpseraSimulator, api, clock):
    ten_days_ago = clock.now.subtract(days=10)
    for log_type in V1_TYPES:
        sim.generate(log_type, ten_days_ago, clock.now, 400)
    week = (clock.now.subtract(days=7), clock.now.add(microseconds=1000))
    for log_type in ("user_activity", "token_activity"):
        assert api.ok(log_type)["count"] == len(sim.ground_truth(log_type, *week))
    assert api.ok("pipeline_activity")["count"] == 400


def test_token_route_takes_date_and_scope_only(sim: OpseraSimulator, api):
    sim.generate("token_activity", DAY, "2024-05-09", 300)
    body = api.ok("token_activity", date=DAY, scope="api")
    assert body["count"] == len(sim.ground_truth("token_activity", DAY, "2024-05-09", {"scope": "api"}))
    assert {r["scope"] for r in body["data"]} == {"api"}
    assert list(body["data"][0]) == [
        "_id",
        "token_id",
        "scope",
        "target",
        "user_id",
        "account",
        "createdAt",
        "updatedAt",
        "__v",
    ]
    for params in ({"count": "5"}, {"start": DAY}, {"range": "1d"}, {"type": "api"}):
        assert api.get("token_activity", **params).status_code == 400


def test_v2_windows_paging_and_filters(sim: OpseraSimulator, api):
    sim.generate("audit", "2024-05-07", "2024-05-10", 3000)
    window = {"start_date": DAY, "start_time": "10:15", "end_date": DAY, "end_time": "11:30"}
    records, count = api.pages(page_size=50, **window)
    truth = sim.ground_truth("audit", f"{DAY}T10:15:00Z", f"{DAY}T11:31:00Z")
    assert count == len(truth) == len(records) and _ids(records) == _ids(truth)
    sim.config.end_inclusive = False
    assert api.ok("audit", **window)["count"] == len(
        sim.ground_truth("audit", f"{DAY}T10:15:00Z", f"{DAY}T11:30:00Z")
    )
    assert api.ok("audit", start_date=DAY, end_date=DAY)["count"] == 0
    sim.config.end_inclusive = True
    assert api.ok("audit", start_date=DAY, end_date=DAY)["count"] == len(
        sim.ground_truth("audit", DAY, "2024-05-09")
    )
    assert api.ok("audit")["count"] == 3000 and len(api.ok("audit")["data"]) == 100
    user_id, email = truth[0]["user_id"], truth[0]["user_email"]
    for key, value in (
        ("user_id", user_id),
        ("user_email", email),
        ("action", "login"),
        ("type", "pipeline"),
    ):
        body = api.ok("audit", page_size=1000, **{key: value})
        assert body["count"] == len(sim.ground_truth("audit", "2024-05-07", "2024-05-10", {key: value})) > 0
        assert {r[key] for r in body["data"]} == {value}
    both = api.ok("audit", page_size=1000, type="authentication", action="login")
    assert both["count"] == len(
        sim.ground_truth("audit", "2024-05-07", "2024-05-10", {"type": "authentication"})
    )
    assert api.ok("audit", page=999)["data"] == []


@pytest.mark.parametrize(
    "params",
    [
        {"start_time": "10:00"},
        {"end_date": DAY, "start_time": "10:00"},
        {"start_date": DAY, "start_time": "10:00:00"},
        {"start_date": DAY, "start_time": "24:00"},
        {"start_date": DAY, "start_time": "9.30"},
        {"start_date": "08-05-2024"},
        {"end_date": "2024-02-30"},
        {"page": "0"},
        {"page": "x"},
        {"page_size": "1001"},
        {"page_size": "0"},
    ],
)
def test_v2_bad_parameters_are_422(api, params):
    response = api.get("audit", **params)
    assert response.status_code == 422
    assert response.json()["message"]


def test_v2_seconds_accepted_only_when_configured(sim: OpseraSimulator, api):
    sim.generate("audit", DAY, "2024-05-09", 2000)
    params = {"start_date": DAY, "start_time": "10:00:30", "end_date": DAY, "end_time": "10:30:15"}
    assert api.get("audit", **params).status_code == 422
    sim.config.accept_seconds = True
    expected = sim.ground_truth("audit", f"{DAY}T10:00:30Z", f"{DAY}T10:30:16Z")
    assert api.ok("audit", page_size=1000, **params)["count"] == len(expected)
    assert api.ok("audit", start_date=DAY, start_time="9:05")["count"] > 0


def test_unknown_path_is_404_json(sim: OpseraSimulator, api):
    response = api.session.get(
        sim.url + "/api/v1/logs/nothing", headers={"Authorization": f"Bearer {sim.token}"}
    )
    assert response.status_code == 404 and "message" in response.json()
    assert sim.requests[-1].status == 404 and sim.requests[-1].log_type is None
