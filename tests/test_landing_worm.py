"""Landing into a WORM bucket (S3 Object Lock, on moto): nothing deleted or overwritten, every object locked.

moto keeps every object version with its lock mode, retain-until date, legal hold and encryption; it answers
``head_object`` and ``get_object_legal_hold`` per version (``get_object_retention`` it does not implement, so
the retention is read from ``head_object``).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pendulum
import pytest
from airflow.sdk import ObjectStoragePath
from connections import MOTO_CONN_ID

from airflow_provider_opsera import landing
from airflow_provider_opsera.landing import (
    WormSettings,
    iter_landed_records,
    land,
    list_revisions,
    manifest_digest,
    read_manifest,
)

WORM = {"mode": "COMPLIANCE", "retain_for": "P7Y", "legal_hold": False}
SSE = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/opsera-audit"}
PREFIX = "opsera/audit/dt=2024-05-09/"


def records(n: int, tag: str) -> list[bytes]:
    return [b'{"_id":"%s%05d","createdAt":"2024-05-09T00:00:00.000Z"}' % (tag.encode(), i) for i in range(n)]


def batches(items: list[bytes], size: int = 100) -> Iterator[list[bytes]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@pytest.fixture
def s3(moto_s3, moto_endpoint):
    import boto3

    moto_s3  # noqa: B018 - the fixture sets the credentials and the aws_moto connection
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3) -> str:
    name = f"opsera-worm-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


@pytest.fixture
def folder(bucket, monkeypatch) -> ObjectStoragePath:
    """The landing folder; the filesystem refuses every delete, so a test fails if the landing issues one."""
    path = ObjectStoragePath(f"s3://{bucket}/{PREFIX}", conn_id=MOTO_CONN_ID)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"a WORM landing deleted {args}")

    for method in ("rm", "_rm", "rm_file", "_rm_file", "mv", "_mv"):
        monkeypatch.setattr(path.fs, method, refuse, raising=False)
    return path


def versions(s3, bucket: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    answer = s3.list_object_versions(Bucket=bucket)
    return answer.get("Versions", []), answer.get("DeleteMarkers", [])


def body(s3, bucket: str, key: str, version: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key, VersionId=version)["Body"].read()


def test_first_landing_and_rerun_delete_nothing_and_lock_everything(s3, bucket, folder):
    first = land(
        batches(records(1200, "a")), folder, {"log_type": "audit"}, records_per_part=500, worm=WORM, sse=SSE
    )
    second = land(
        batches(records(700, "b")), folder, {"log_type": "audit"}, records_per_part=500, worm=WORM, sse=SSE
    )
    written = pendulum.now("UTC")

    all_versions, delete_markers = versions(s3, bucket)
    assert delete_markers == []
    by_key: dict[str, list[dict[str, Any]]] = {}
    for version in all_versions:
        by_key.setdefault(version["Key"], []).append(version)
    parts = [p["name"] for p in first["parts"] + second["parts"]]
    # Both runs' parts, both revisions, manifest.json: nothing else (no lock, marker or temporary file).
    assert set(by_key) == {
        PREFIX + name
        for name in [
            *parts,
            "manifest.json",
            "_manifests/manifest-000001.json",
            "_manifests/manifest-000002.json",
        ]
    }
    # No part or revision was ever overwritten: one version each; manifest.json has one version per revision.
    assert all(len(v) == 1 for key, v in by_key.items() if not key.endswith("/manifest.json"))
    manifests = by_key[PREFIX + "manifest.json"]
    revisions = list_revisions(folder)
    assert sorted(body(s3, bucket, v["Key"], v["VersionId"]) for v in manifests) == sorted(
        d for d, _ in revisions
    )
    latest = next(v for v in manifests if v["IsLatest"])
    assert body(s3, bucket, latest["Key"], latest["VersionId"]) == revisions[-1][0]

    # Retention, legal hold and encryption on every version of every object written.
    for version in all_versions:
        head = s3.head_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
        assert head["ObjectLockMode"] == "COMPLIANCE", version["Key"]
        until = head["ObjectLockRetainUntilDate"]
        assert abs(until - written.add(years=7)) < dt.timedelta(days=1), (version["Key"], until)
        hold = s3.get_object_legal_hold(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
        assert hold["LegalHold"]["Status"] == "OFF"
        assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", "alias/opsera-audit")

    # The folder reads back as the rerun; the chain goes back to the first landing.
    assert read_manifest(folder) == second
    assert list(iter_landed_records(folder, raw=True)) == records(700, "b")
    assert [(m["revision"], m["reason"]) for _, m in revisions] == [(1, "first landing"), (2, "rerun")]
    assert revisions[1][1]["previous"] == manifest_digest(revisions[0][0])


def test_governance_mode_with_legal_hold_and_the_bucket_refuses_deletes(s3, bucket, folder):
    worm = WormSettings(mode="governance", retain_for=dt.timedelta(days=30), legal_hold=True)
    land(batches(records(10, "a")), folder, {}, worm=worm)
    all_versions, _ = versions(s3, bucket)
    assert all_versions
    for version in all_versions:
        head = s3.head_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
        assert head["ObjectLockMode"] == "GOVERNANCE"
        hold = s3.get_object_legal_hold(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
        assert hold["LegalHold"]["Status"] == "ON"
        assert "ServerSideEncryption" not in head or head["ServerSideEncryption"] != "aws:kms"  # no sse given
    locked = all_versions[0]
    with pytest.raises(s3.exceptions.ClientError, match="AccessDenied"):
        s3.delete_object(Bucket=bucket, Key=locked["Key"], VersionId=locked["VersionId"])


def test_a_failed_run_leaves_its_parts_and_the_previous_state(s3, bucket, folder):
    before = land(batches(records(30, "a")), folder, {}, records_per_part=10, worm=WORM)

    def failing() -> Iterator[list[bytes]]:
        yield records(25, "b")
        raise RuntimeError("API went away")

    with pytest.raises(RuntimeError, match="API went away"):
        land(failing(), folder, {}, records_per_part=10, worm=WORM)
    assert read_manifest(folder) == before
    assert list(iter_landed_records(folder, raw=True)) == records(30, "a")
    all_versions, delete_markers = versions(s3, bucket)
    assert delete_markers == []
    # The failed run's two finished parts stay (locked), listed by no manifest.
    listed = {PREFIX + p["name"] for p in before["parts"]}
    unlisted = {v["Key"] for v in all_versions if "/part-" in v["Key"]} - listed
    assert len(unlisted) == 2


def test_a_run_that_loses_a_revision_number_takes_the_next(s3, bucket, folder, monkeypatch):
    """Another run publishes revision 2 just before this one creates it: If-None-Match refuses this run's
    revision 2, so it becomes revision 3, chained to the other's."""
    land(batches(records(5, "a")), folder, {}, worm=WORM)
    encode, raced = landing._encode, []

    def other_run_first(manifest):
        if not raced:
            raced.append(None)  # before the other run, which calls this too
            raced[0] = land(batches(records(6, "b")), folder, {"run_tag": "b"}, worm=WORM)
        return encode(manifest)

    monkeypatch.setattr(landing, "_encode", other_run_first)
    mine = land(batches(records(7, "c")), folder, {"run_tag": "c"}, worm=WORM)
    revisions = list_revisions(folder)
    assert [m.get("run_tag") for _, m in revisions] == [None, "b", "c"]
    assert mine["revision"] == 3 and mine["previous"] == manifest_digest(revisions[1][0])
    assert list(iter_landed_records(folder, raw=True)) == records(7, "c")
    assert versions(s3, bucket)[1] == []


def test_manifest_json_ends_as_the_newest_revision(s3, bucket, folder, monkeypatch):
    """Another run publishes a newer revision between this run's revision and its manifest.json: this run then
    copies the newer one over, so manifest.json's newest version is the newest revision."""
    land(batches(records(5, "a")), folder, {}, worm=WORM)
    write_revision, raced = landing._write_revision, []

    def other_run_in_between(*args, **kwargs):
        result = write_revision(*args, **kwargs)
        if not raced:
            raced.append(None)  # before the other run, which calls this too
            raced[0] = land(batches(records(6, "b")), folder, {"run_tag": "b"}, worm=WORM)
        return result

    monkeypatch.setattr(landing, "_write_revision", other_run_in_between)
    mine = land(batches(records(7, "c")), folder, {"run_tag": "c"}, worm=WORM)
    assert mine["revision"] == 2 and raced[0]["revision"] == 3
    revisions = list_revisions(folder)
    assert landing._read(folder, "manifest.json") == revisions[-1][0]
    assert list(iter_landed_records(folder, raw=True)) == records(6, "b")
    assert versions(s3, bucket)[1] == []


@pytest.mark.parametrize("stagger", [0.0, 0.05, 0.2])
def test_concurrent_worm_runs_both_land_as_two_revisions(s3, bucket, folder, stagger):
    outcome: dict[str, Any] = {}

    def slow(tag: str) -> Iterator[list[bytes]]:
        for batch in batches(records(1000, tag), 250):
            time.sleep(0.05)
            yield batch

    def run(tag: str, wait: float) -> None:
        time.sleep(wait)
        try:
            outcome[tag] = land(slow(tag), folder, {"run_tag": tag}, records_per_part=250, worm=WORM)
        except BaseException as err:
            outcome[tag] = err

    threads = [
        threading.Thread(target=run, args=("A", 0.0)),
        threading.Thread(target=run, args=("B", stagger)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(isinstance(m, dict) for m in outcome.values()), outcome
    revisions = list_revisions(folder)
    assert [m["revision"] for _, m in revisions] == [1, 2]
    assert revisions[1][1]["previous"] == manifest_digest(revisions[0][0])
    assert landing._read(folder, "manifest.json") == revisions[1][0]
    tag = revisions[1][1]["run_tag"]
    assert list(iter_landed_records(folder, raw=True)) == records(1000, tag)
    assert versions(s3, bucket)[1] == []


# -- refusals -------------------------------------------------------------------------------------------------
def test_a_bucket_without_object_lock_is_refused_before_anything_is_written(s3, moto_s3):
    plain = moto_s3(f"opsera-plain-{uuid.uuid4().hex[:10]}")
    folder = ObjectStoragePath(f"s3://{plain}/{PREFIX}", conn_id=MOTO_CONN_ID)
    with pytest.raises(ValueError, match=f"worm needs a bucket with Object Lock enabled; bucket '{plain}'"):
        land(batches(records(5, "a")), folder, {}, worm=WORM)
    assert s3.list_objects_v2(Bucket=plain).get("KeyCount") == 0


def test_worm_and_sse_apply_to_s3_only(tmp_path):
    folder = ObjectStoragePath(f"file://{tmp_path}/x/")
    with pytest.raises(ValueError, match="apply to s3:// folders"):
        land([], folder, {}, worm=WORM)
    with pytest.raises(ValueError, match="apply to s3:// folders"):
        land([], folder, {}, sse=SSE)


@pytest.mark.parametrize(
    ("worm", "error"),
    [
        ({"mode": "FOREVER", "retain_for": "P7Y"}, "mode must be one of COMPLIANCE, GOVERNANCE"),
        ({"mode": "COMPLIANCE", "retain_for": "seven years"}, "not an ISO 8601 duration"),
        ({"mode": "COMPLIANCE", "retain_for": -5}, "positive duration"),
        ({"mode": "COMPLIANCE"}, "needs 'mode'"),
        (
            {"mode": "COMPLIANCE", "retain_for": "P1D", "hold": True},
            "worm takes legal_hold, mode, retain_for",
        ),
        (
            {"mode": "COMPLIANCE", "retain_for": "P1D", "legal_hold": "yes"},
            "legal_hold must be True or False",
        ),
    ],
)
def test_worm_settings_are_checked(worm, error):
    with pytest.raises((ValueError, TypeError), match=error):
        WormSettings.coerce(worm)


def test_worm_settings_take_durations_in_every_spelling():
    now = pendulum.now("UTC")
    for retain_for, expected in [
        ("P7Y", now.add(years=7)),
        ("PT36H", now.add(hours=36)),
        (86400, now.add(days=1)),
        (dt.timedelta(days=90), now.add(days=90)),
    ]:
        until = WormSettings.coerce({"mode": "COMPLIANCE", "retain_for": retain_for}).put_arguments()
        assert abs(until["ObjectLockRetainUntilDate"] - expected) < dt.timedelta(minutes=1), retain_for
        assert until["ObjectLockLegalHoldStatus"] == "OFF"


def test_sse_keys_are_checked():
    with pytest.raises(ValueError, match="sse takes BucketKeyEnabled, SSEKMSEncryptionContext"):
        landing.sse_arguments({"Encryption": "aws:kms"})
    assert json.dumps(landing.sse_arguments(SSE)) == json.dumps(SSE)


# -- through the operator -------------------------------------------------------------------------------------
def test_the_operator_lands_worm_encrypted_and_signed(s3, bucket, monkeypatch):
    from airflow.sdk.execution_time.context import OutletEventAccessors

    from airflow_provider_opsera.landing import signature_valid
    from airflow_provider_opsera.operators.logs import OpseraAuditLogsOperator
    from airflow_provider_opsera.testing import OpseraSimulator

    day = pendulum.datetime(2024, 5, 9, tz="UTC")
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_SIGNING", json.dumps({"conn_type": "generic", "password": "k3y"}))
    with OpseraSimulator(seed=3) as sim:
        sim.generate("audit", day, day.add(days=1), 120)
        monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", sim.connection_json())
        op = OpseraAuditLogsOperator(
            task_id="audit",
            start=day,
            end=day.add(days=1),
            output_path=f"s3://{bucket}/{PREFIX}",
            output_conn_id=MOTO_CONN_ID,
            worm=WORM,
            sse=SSE,
            signing_conn_id="opsera_signing",
        )
        first = op.execute({"outlet_events": OutletEventAccessors()})  # type: ignore[arg-type]
        second = op.execute({"outlet_events": OutletEventAccessors()})  # type: ignore[arg-type]
    assert (first["reason"], second["reason"], second["revision"]) == ("first landing", "rerun", 2)
    assert second["signature"]["key_id"] == "opsera_signing"
    assert signature_valid(second, b"k3y") and not signature_valid(second, b"other")
    all_versions, delete_markers = versions(s3, bucket)
    assert delete_markers == []
    for version in all_versions:
        head = s3.head_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
        assert (head["ObjectLockMode"], head["ServerSideEncryption"]) == ("COMPLIANCE", "aws:kms")


def test_the_operator_checks_worm_and_sse_when_the_dag_is_parsed():
    from airflow_provider_opsera.operators.logs import OpseraAuditLogsOperator

    with pytest.raises(ValueError, match="worm mode must be one of"):
        OpseraAuditLogsOperator(task_id="a", output_path="s3://b/p/", worm={"mode": "x", "retain_for": "P1Y"})
    with pytest.raises(ValueError, match="sse takes"):
        OpseraAuditLogsOperator(task_id="b", output_path="s3://b/p/", sse={"Encrypt": "AES256"})
