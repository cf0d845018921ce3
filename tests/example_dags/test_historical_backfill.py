"""example_dags/opsera_historical_backfill.py end to end: ``dag.test()`` against the simulator, into file://.

Five days of two log types: every landed folder must hold exactly its day's records (the simulator's ground
truth, no duplicates), in the daily DAG's layout and with its manifests, for close to the fewest requests the
API allows; a rerun of the range, and the daily DAG over one of its days, must leave the same records.
"""

from __future__ import annotations

import math

import pendulum
import pytest
from airflow.sdk import ObjectStoragePath
from dag_runs import asset_events, load_example_dag, run_day

from airflow_provider_opsera.landing import iter_landed_records, read_manifest

FIRST = pendulum.datetime(2024, 5, 6, tz="UTC")
DAYS = [FIRST.add(days=i) for i in range(5)]
#: Records a day: audit (v2) pages by 1000, so 1 to 3 pages a day (away from a page's edge: its queries reach a
#: minute into each neighbouring day); user activity (v1) stays under its cap of 1000, one request a day.
PER_DAY = {"audit": [2500, 1200, 0, 950, 2050], "user_activity": [400, 0, 999, 17, 650]}
LOG_TYPES = tuple(PER_DAY)
CONF = {"start": "2024-05-06", "end": "2024-05-10", "log_types": list(LOG_TYPES)}
FAST_RETRIES = {"retry_min_wait": 0.01, "retry_max_wait": 0.1}


@pytest.fixture
def sim(opsera_simulator, monkeypatch):
    for log_type, counts in PER_DAY.items():
        for day, n in zip(DAYS, counts, strict=True):
            if n:
                opsera_simulator.generate(log_type, day, day.add(days=1), n)
        # Neighbours of the range that must not land.
        opsera_simulator.generate(log_type, FIRST.subtract(minutes=30), FIRST, 9)
        opsera_simulator.generate(log_type, DAYS[-1].add(days=1), DAYS[-1].add(days=1, minutes=30), 9)
    # Token activity and pipeline activity have records too: not selected, they must not be read.
    opsera_simulator.generate("token_activity", FIRST, DAYS[-1].add(days=1), 50)
    opsera_simulator.generate("pipeline_activity", FIRST, DAYS[-1].add(days=1), 50)
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", opsera_simulator.connection_json(FAST_RETRIES))
    return opsera_simulator


@pytest.fixture
def dag(airflow_db):
    return load_example_dag("opsera_historical_backfill")


def run(dag, conf: dict):
    from airflow.utils.state import DagRunState

    dag_run = dag.test(run_conf=conf)
    assert dag_run.state == DagRunState.SUCCESS
    return dag_run


def check_landed(sim, base: str) -> dict[str, list[dict]]:
    """Every day's folder of each log type holds exactly that day's records, once; returns them."""
    landed_by_type = {}
    for log_type in LOG_TYPES:
        records = []
        for day in DAYS:
            url = f"{base}/opsera/{log_type}/dt={day.to_date_string()}/"
            manifest = read_manifest(ObjectStoragePath(url))
            assert manifest is not None, f"{url}: no manifest"
            landed = list(iter_landed_records(url))
            ids = [r["_id"] for r in landed]
            truth = sim.ground_truth(log_type, day, day.add(days=1))
            assert len(ids) == len(set(ids)), f"{url}: duplicates"
            assert set(ids) == {r["_id"] for r in truth}, url
            # The daily DAG's manifest for that day: same interval, so its recheck finds the backfill's.
            assert (manifest["log_type"], manifest["start"], manifest["end"]) == (
                log_type,
                day.isoformat(),
                day.add(days=1).isoformat(),
            )
            assert manifest["record_count"] == len(truth)
            records.extend(sorted(landed, key=lambda r: r["_id"]))
        landed_by_type[log_type] = records
    return landed_by_type


def fewest_requests(log_type: str) -> int:
    """One request per day (the archive has a folder per day), and one per page of the API's 1000 records."""
    return sum(max(1, math.ceil(n / 1000)) for n in PER_DAY[log_type])


def test_backfill_lands_each_day_once_with_close_to_the_fewest_requests_and_a_rerun_keeps_one_copy(
    sim, dag, tmp_path
):
    base = f"file://{tmp_path}/lake"
    run(dag, {**CONF, "output_base": base})
    landed = check_landed(sim, base)
    assert sum(len(r) for r in landed.values()) == sum(sum(c) for c in PER_DAY.values())
    requests = {log_type: sim.request_count(log_type) for log_type in LOG_TYPES}
    fewest = {log_type: fewest_requests(log_type) for log_type in LOG_TYPES}
    print(f"requests {requests}, fewest {fewest}")
    assert requests == fewest
    assert sim.request_count("token_activity") == sim.request_count("pipeline_activity") == 0

    # Each day's event reaches the log type's folder asset, as the daily DAG's do, naming the day's folder.
    folders = [e["folder"] for e in asset_events(f"{base}/opsera/audit")]
    assert sorted(folders) == [f"{base}/opsera/audit/dt={day.to_date_string()}" for day in DAYS]

    # A rerun of the whole range replaces every folder: the same records, once.
    run(dag, {**CONF, "output_base": base + "/"})
    assert check_landed(sim, base) == landed

    # The daily DAG over one of the days writes the same folder: the archive still holds it once.
    daily = load_example_dag("opsera_logs_to_s3")
    run_day(daily, {"output_base": base}, DAYS[2], DAYS[3])
    assert check_landed(sim, base) == landed
    manifest = read_manifest(ObjectStoragePath(f"{base}/opsera/audit/dt={DAYS[2].to_date_string()}/"))
    assert manifest is not None
    assert manifest["revision"] == 3  # the backfill's, its rerun's, the daily DAG's


def test_a_subset_of_log_types_leaves_the_others_alone(sim, dag, tmp_path):
    base = f"file://{tmp_path}/lake"
    run(
        dag, {"start": "2024-05-08", "end": "2024-05-08", "log_types": ["user_activity"], "output_base": base}
    )
    assert [p.name for p in (tmp_path / "lake" / "opsera").iterdir()] == ["user_activity"]
    assert [p.name for p in (tmp_path / "lake" / "opsera" / "user_activity").iterdir()] == ["dt=2024-05-08"]
    assert sim.request_count("audit") == 0
    assert sim.request_count("user_activity") == 1


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"start": "2024-05-10", "end": "2024-05-06"}, "end (2024-05-06) is before start (2024-05-10)."),
        ({"start": "2024-05-06", "end": "2999-01-01"}, "end (2999-01-01) has not ended yet"),
        (
            {**CONF, "max_map_length": "9"},
            "5 days x 2 log types is 10 mapped tasks, more than [core] max_map_length (9): backfill at most 4 "
            "days per run",
        ),
    ],
)
def test_a_bad_range_fails_before_any_request(sim, dag, tmp_path, capfd, monkeypatch, conf, message):
    from airflow.utils.state import DagRunState

    conf = dict(conf)
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", conf.pop("max_map_length", "1024"))

    dag_run = dag.test(run_conf={**conf, "output_base": f"file://{tmp_path}/lake"})
    assert dag_run.state == DagRunState.FAILED
    assert message in "".join(capfd.readouterr())
    assert sim.request_count() == 0
    assert not (tmp_path / "lake").exists()


def test_an_unknown_log_type_is_refused_naming_the_known_ones(sim, dag, tmp_path):
    # The param's schema refuses it when the run is created (the UI's form and the REST API alike).
    with pytest.raises(Exception, match=r"log_types: 'audits' is not one of \['user_activity', 'audit'"):
        dag.test(run_conf={**CONF, "log_types": ["audits"], "output_base": f"file://{tmp_path}/lake"})
    assert sim.request_count() == 0


def test_the_pool_comes_from_the_variable_and_defaults_to_default_pool(airflow_db, monkeypatch):
    assert load_example_dag("opsera_historical_backfill").get_task("land_day").pool == "default_pool"
    monkeypatch.setenv("AIRFLOW_VAR_OPSERA_POOL", "opsera_api")
    assert load_example_dag("opsera_historical_backfill").get_task("land_day").pool == "opsera_api"
