"""example_dags/opsera_logs_to_s3.py end to end: ``dag.test()`` against the simulator, into file:// and s3://.

The landed records must equal the simulator's ground truth for the data interval exactly (same ``_id`` set,
no duplicates), and a rerun of the same interval must leave exactly one copy.
"""

from __future__ import annotations

import pendulum
import pytest
from airflow.sdk import ObjectStoragePath
from dag_runs import asset_events, load_example_dag, run_day

from airflow_provider_opsera.landing import iter_landed_records, read_manifest

DAY = pendulum.datetime(2024, 5, 9, tz="UTC")
NEXT = DAY.add(days=1)
LOG_TYPES = ("user_activity", "audit", "token_activity", "pipeline_activity")
FAST_RETRIES = {"retry_min_wait": 0.01, "retry_max_wait": 0.1}


@pytest.fixture
def sim(opsera_simulator, monkeypatch):
    """A day of every log type, pipeline activity above the API's cap of 1000 a response."""
    opsera_simulator.generate("user_activity", DAY, NEXT, 400)
    opsera_simulator.generate("audit", DAY, NEXT, 1500)
    opsera_simulator.generate("token_activity", DAY, NEXT, 150)
    opsera_simulator.generate("pipeline_activity", DAY, NEXT, 2200)
    # Neighbours of the interval that must not land.
    for log_type in LOG_TYPES:
        opsera_simulator.generate(log_type, DAY.subtract(hours=1), DAY, 7)
        opsera_simulator.generate(log_type, NEXT, NEXT.add(hours=1), 7)
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", opsera_simulator.connection_json(FAST_RETRIES))
    return opsera_simulator


@pytest.fixture
def dag(airflow_db):
    return load_example_dag("opsera_logs_to_s3")


def check_landed(sim, base: str, conn_id: str | None) -> dict[str, int]:
    """Every log type's folder holds exactly the interval's records, once; returns the counts."""
    counts = {}
    for log_type in LOG_TYPES:
        url = f"{base}/opsera/{log_type}/dt=2024-05-09/"
        folder = ObjectStoragePath(url, conn_id=conn_id)
        manifest = read_manifest(folder)
        assert manifest is not None, f"{log_type}: no manifest"
        landed = list(iter_landed_records(url, conn_id=conn_id))  # a URL string (s3:// or file://)
        assert list(iter_landed_records(folder)) == landed
        truth = sim.ground_truth(log_type, DAY, NEXT)
        ids = [r["_id"] for r in landed]
        assert len(ids) == len(set(ids)), f"{log_type}: duplicates"
        assert set(ids) == {r["_id"] for r in truth}, log_type
        assert sorted(landed, key=lambda r: r["_id"]) == sorted(truth, key=lambda r: r["_id"])
        assert manifest["record_count"] == len(truth)
        assert (manifest["log_type"], manifest["start"], manifest["end"]) == (
            log_type,
            DAY.isoformat(),
            NEXT.isoformat(),
        )
        names = {p.name for p in folder.iterdir()}
        assert names == {"manifest.json", "_manifests", *(p["name"] for p in manifest["parts"])}, log_type
        counts[log_type] = len(truth)
    return counts


def test_example_dag_lands_a_day_in_a_local_folder_and_a_rerun_keeps_one_copy(sim, dag, tmp_path):
    base = f"file://{tmp_path}/lake"
    run_day(dag, {"output_base": base + "/"}, DAY, NEXT)  # a trailing slash is fine
    counts = check_landed(sim, base, None)
    assert counts["pipeline_activity"] > 1000

    run_day(dag, {"output_base": base}, DAY, NEXT)
    assert check_landed(sim, base, None) == counts
    # Each run emitted an event for the dataset folder (not one asset per day) naming its day's folder.
    events = asset_events(f"{base}/opsera/audit")
    assert [e["folder"] for e in events] == [f"{base}/opsera/audit/dt=2024-05-09"] * 2
    assert events[-1]["record_count"] == counts["audit"]


def test_example_dag_lands_a_day_in_s3_and_a_rerun_keeps_one_copy(sim, dag, s3_bucket, moto_endpoint):
    import boto3

    bucket, conn_id = s3_bucket
    base = f"s3://{bucket}"
    conf = {"output_base": base, "output_conn_id": conn_id}
    run_day(dag, conf, DAY, NEXT)
    counts = check_landed(sim, base, conn_id)
    run_day(dag, conf, DAY, NEXT)
    assert check_landed(sim, base, conn_id) == counts

    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == sorted(
        f"opsera/{lt}/dt=2024-05-09/{name}"
        for lt in LOG_TYPES
        for name in [
            "manifest.json",
            "_manifests/manifest-000001.json",  # the first run's revision, kept
            "_manifests/manifest-000002.json",
            *(
                p["name"]
                for p in read_manifest(
                    ObjectStoragePath(f"{base}/opsera/{lt}/dt=2024-05-09/", conn_id=conn_id)
                )["parts"]
            ),
        ]
    )
