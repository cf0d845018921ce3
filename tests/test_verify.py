"""Verifying a landed archive: archives built with ``landing.land`` on ``file://`` (and moto's S3), then
broken in each way an auditor must hear about: a tampered or missing part, a missing day, a broken revision
chain, an overlap, a bad signature, drift against the API (the simulator)."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys

import pendulum
import pytest
from airflow.sdk import ObjectStoragePath
from connections import MOTO_CONN_ID

from airflow_provider_opsera.exceptions import LandingIntegrityError
from airflow_provider_opsera.hooks.opsera import OpseraHook
from airflow_provider_opsera.landing import land
from airflow_provider_opsera.operators.verify import OpseraVerifyArchiveOperator
from airflow_provider_opsera.testing import OpseraSimulator
from airflow_provider_opsera.verify import Status, verify_archive
from airflow_provider_opsera.verify.__main__ import main

JAN1 = pendulum.datetime(2026, 1, 1)
FAST = {"retry_min_wait": 0.01, "retry_max_wait": 0.05}


# -- building archives ----------------------------------------------------------------------------------
def records(n: int, tag: str) -> list[bytes]:
    return [b'{"_id":"%s-%04d","createdAt":"2026-01-01T00:00:00.000Z"}' % (tag.encode(), i) for i in range(n)]


def _write(folder: ObjectStoragePath, name: str, data: bytes) -> None:
    base = folder.path.rstrip("/")
    if "/" in name and folder.protocol in ("file", "local", ""):
        folder.fs.makedirs(f"{base}/{name.rsplit('/', 1)[0]}", exist_ok=True)
    with folder.fs.open(f"{base}/{name}", "wb") as handle:
        handle.write(data)


def _read(folder: ObjectStoragePath, name: str) -> bytes:
    with folder.fs.open(f"{folder.path.rstrip('/')}/{name}", "rb") as handle:
        return handle.read()


def _part(folder: ObjectStoragePath, index: int) -> str:
    """The name of the folder's index-th part, as its manifest lists it (part names are run-unique)."""
    return json.loads(_read(folder, "manifest.json"))["parts"][index]["name"]


def _kept(folder: ObjectStoragePath) -> list[str]:
    try:
        entries = folder.fs.ls(f"{folder.path.rstrip('/')}/_manifests", detail=False)
    except FileNotFoundError:
        return []
    return sorted(str(e).rsplit("/", 1)[-1] for e in entries if str(e).endswith(".json"))


def ensure_chain(folder: ObjectStoragePath, reason: str = "landed") -> dict:
    """Make the folder's manifest the next revision of its chain (landing's format 2), unless landing did.

    Independent of the verifier's readers: the format as the contract spells it.
    """
    manifest = json.loads(_read(folder, "manifest.json"))
    if manifest.get("manifest_format", 1) >= 2:  # landing keeps the chain itself
        return manifest
    kept = _kept(folder)
    previous = hashlib.sha256(_read(folder, f"_manifests/{kept[-1]}")).hexdigest() if kept else None
    manifest.update(manifest_format=2, revision=len(kept) + 1, previous=previous, reason=reason)
    data = json.dumps(manifest, indent=2).encode() + b"\n"
    _write(folder, f"_manifests/manifest-{len(kept) + 1:06d}.json", data)
    _write(folder, "manifest.json", data)
    return manifest


def sign(folder: ObjectStoragePath, key: bytes, key_id: str) -> None:
    """Sign the current revision (manifest.json and its kept copy, the same bytes)."""
    manifest = json.loads(_read(folder, "manifest.json"))
    manifest.pop("signature", None)
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    manifest["signature"] = {
        "alg": "HMAC-SHA256",
        "key_id": key_id,
        "value": hmac.new(key, canonical, hashlib.sha256).hexdigest(),
    }
    data = json.dumps(manifest, indent=2).encode() + b"\n"
    _write(folder, f"_manifests/manifest-{manifest['revision']:06d}.json", data)
    _write(folder, "manifest.json", data)


def land_interval(
    base: str,
    start: pendulum.DateTime,
    n: int,
    *,
    hours: int = 24,
    name: str | None = None,
    conn_id: str | None = None,
    payloads: list[bytes] | None = None,
) -> ObjectStoragePath:
    end = start.add(hours=hours)
    name = name or f"dt={start.to_date_string()}" + ("" if hours == 24 else f"T{start.hour:02d}")
    folder = ObjectStoragePath(f"{base}/opsera/audit/{name}/", conn_id=conn_id)
    land(
        [payloads if payloads is not None else records(n, name)],
        folder,
        {"log_type": "audit", "start": start.isoformat(), "end": end.isoformat()},
        records_per_part=4,
    )
    ensure_chain(folder)
    return folder


def reland(folder: ObjectStoragePath, n: int, tag: str) -> None:
    """Land the folder's interval again (the next revision)."""
    manifest = json.loads(_read(folder, "manifest.json"))
    metadata = {k: manifest[k] for k in ("log_type", "start", "end")}
    land([records(n, tag)], folder, metadata, records_per_part=4)
    ensure_chain(folder, reason=f"rerun {tag}")


def archive(base: str, days: int = 5, **kwargs) -> list[ObjectStoragePath]:
    return [land_interval(base, JAN1.add(days=d), 5 + d, **kwargs) for d in range(days)]


def statuses(report) -> dict[str, str]:
    return {i.start.to_date_string(): i.status.value for i in report.intervals}


@pytest.fixture
def base(tmp_path) -> str:
    return (tmp_path / "archive").as_uri()


def verify(base: str, days: int = 5, **kwargs):
    return verify_archive(base, "audit", JAN1, JAN1.add(days=days), **kwargs)


# -- all well -------------------------------------------------------------------------------------------
def test_an_intact_archive_verifies_and_the_command_exits_0(base, tmp_path, capsys):
    archive(base)
    report = verify(base)
    assert report.ok
    assert set(statuses(report).values()) == {"ok"}
    assert [i.records for i in report.intervals] == [5, 6, 7, 8, 9]
    assert all(f.revision == 1 and f.manifest_sha256 for f in report.folders)

    out = tmp_path / "report"
    code = main(
        [base, "--log-type", "audit", "--from", "2026-01-01", "--to", "2026-01-06", "--report", str(out)]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "VERIFIED: 5 intervals (5 ok)" in printed
    assert {p.name for p in out.iterdir()} == {"report.json", "report.md", "report.html"}
    saved = json.loads((out / "report.json").read_text())
    assert saved["ok"] is True and saved["counts"] == {"ok": 5}
    assert [i["records"] for i in saved["intervals"]] == [5, 6, 7, 8, 9]
    assert "VERIFIED: 5 intervals (5 ok)" in (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    assert page.count('class="cell s-ok"') == 5
    assert "http://" not in page and "https://" not in page and "<script" not in page  # self-contained


def test_a_hand_written_format_1_manifest_is_a_warning(base):
    folder = archive(base, days=1)[0]
    manifest = json.loads(_read(folder, "manifest.json"))
    for key in ("revision", "previous", "reason", "signature"):
        manifest.pop(key, None)
    manifest["manifest_format"] = 1
    _write(folder, "manifest.json", json.dumps(manifest).encode())
    report = verify(base, days=1)
    assert report.ok and statuses(report) == {"2026-01-01": "warning"}
    assert "no chain (format 1)" in report.intervals[0].findings[0].message


# -- tampering ------------------------------------------------------------------------------------------
def test_a_tampered_part_and_a_missing_part_are_tampered(base, capsys):
    folders = archive(base)
    # Day 2: a part rewritten with other records (same count); day 4: a part deleted.
    forged, deleted = _part(folders[1], 0), _part(folders[3], 1)
    _write(folders[1], forged, gzip.compress(b"".join(r + b"\n" for r in records(4, "forged"))))
    folders[3].fs.rm(f"{folders[3].path.rstrip('/')}/{deleted}")
    report = verify(base)
    assert not report.ok
    assert statuses(report) == {
        "2026-01-01": "ok",
        "2026-01-02": "tampered",
        "2026-01-03": "ok",
        "2026-01-04": "tampered",
        "2026-01-05": "ok",
    }
    messages = [f.message for i in report.intervals for f in i.findings]
    assert any(f"{forged}'s sha256" in m for m in messages)
    assert f"{deleted} is missing" in messages
    code = main([base, "--log-type", "audit", "--from", "2026-01-01", "--to", "2026-01-06", "--no-report"])
    assert code == 1
    assert "FAILED: 5 intervals (3 ok, 2 tampered)" in capsys.readouterr().out


def test_a_part_with_an_extra_record_is_a_count_mismatch(base):
    folder = archive(base, days=1)[0]
    part = json.loads(_read(folder, "manifest.json"))["parts"][0]
    body = gzip.decompress(_read(folder, part["name"])) + b'{"_id":"extra"}\n'
    _write(folder, part["name"], gzip.compress(body))
    report = verify(base, days=1)
    assert statuses(report) == {"2026-01-01": "tampered"}
    assert any(f"holds {part['records'] + 1} records" in f.message for f in report.intervals[0].findings)


def test_a_removed_day_is_missing(base):
    folders = archive(base)
    folders[2].fs.rm(folders[2].path.rstrip("/"), recursive=True)
    report = verify(base)
    assert not report.ok
    assert statuses(report)["2026-01-03"] == "missing"
    assert report.intervals[2].findings[0].message == "no manifest covers this interval"
    assert [s for d, s in statuses(report).items() if d != "2026-01-03"] == ["ok"] * 4


def test_a_folder_without_its_manifest_is_missing(base):
    folders = archive(base, days=2)
    folders[1].fs.rm(f"{folders[1].path.rstrip('/')}/manifest.json")
    report = verify(base, days=2)
    assert statuses(report) == {"2026-01-01": "ok", "2026-01-02": "missing"}
    assert any("no manifest.json" in f.message for f in report.intervals[1].findings)


def test_an_edited_kept_revision_breaks_the_chain(base):
    folders = archive(base, days=2)
    # A second revision of day 1, then revision 1's kept bytes edited: revision 2's previous no longer holds.
    reland(folders[0], 3, "rerun")
    assert verify(base, days=2).ok
    # Whitespace only: the same JSON, other bytes. The chain pins bytes, not meaning.
    kept = _read(folders[0], "_manifests/manifest-000001.json")
    _write(folders[0], "_manifests/manifest-000001.json", kept.rstrip() + b"\n\n")
    report = verify(base, days=2)
    assert statuses(report) == {"2026-01-01": "broken_chain", "2026-01-02": "ok"}
    assert any("revision 2's previous" in f.message for f in report.intervals[0].findings)


def test_an_edited_previous_in_manifest_json_breaks_the_chain(base):
    folders = archive(base, days=2)
    manifest = json.loads(_read(folders[1], "manifest.json"))
    manifest["previous"] = "0" * 64
    _write(folders[1], "manifest.json", json.dumps(manifest, indent=2).encode())
    report = verify(base, days=2)
    assert statuses(report) == {"2026-01-01": "ok", "2026-01-02": "broken_chain"}
    messages = [f.message for f in report.intervals[1].findings]
    assert any("manifest.json differs from _manifests/manifest-000001.json" in m for m in messages)


def test_a_lost_revision_breaks_the_chain(base):
    folder = archive(base, days=1)[0]
    for n in (2, 3):
        reland(folder, n, f"r{n}")
    folder.fs.rm(f"{folder.path.rstrip('/')}/_manifests/manifest-000002.json")
    report = verify(base, days=1)
    assert statuses(report) == {"2026-01-01": "broken_chain"}
    assert any("revision 2 missing" in f.message for f in report.intervals[0].findings)


# -- coverage -------------------------------------------------------------------------------------------
def test_two_manifests_for_one_day_are_an_overlap(base):
    archive(base, days=3)
    land_interval(base, JAN1.add(days=1), 4, name="dt=2026-01-02-copy")
    land_interval(base, JAN1.add(days=2, hours=6), 2, hours=1)  # an hour inside day 3
    report = verify(base, days=3)
    assert not report.ok
    assert statuses(report) == {"2026-01-01": "ok", "2026-01-02": "overlap", "2026-01-03": "overlap"}
    assert report.intervals[1].records == 6 + 4
    (finding,) = report.intervals[2].findings
    assert (
        finding.message
        == "dt=2026-01-03 and dt=2026-01-03T06 both cover [2026-01-03T06:00:00Z, 2026-01-03T07:00:00Z)"
    )


def test_hourly_folders_are_placed_by_their_manifests(base):
    # 24 hourly folders named anyhow cover day 1; day 2 misses 10:00-11:00.
    for h in range(48):
        if h != 34:
            land_interval(base, JAN1.add(hours=h), 1, hours=1, name=f"hour-{h:03d}")
    daily = verify(base, days=2)
    assert statuses(daily) == {"2026-01-01": "ok", "2026-01-02": "missing"}
    assert daily.intervals[0].records == 24
    assert daily.intervals[1].findings[0].message == (
        "no manifest covers [2026-01-02T10:00:00Z, 2026-01-02T11:00:00Z)"
    )
    hourly = verify(base, days=2, interval="1h")
    assert len(hourly.intervals) == 48
    assert [i.start.hour for i in hourly.intervals if i.status is Status.MISSING] == [10]
    assert sum(1 for i in hourly.intervals if i.status is Status.OK) == 47


def test_folders_outside_the_range_are_not_checked(base):
    folders = archive(base, days=4)
    _write(folders[0], _part(folders[0], 0), b"not gzip")  # day 1, outside [Jan 2, Jan 4)
    report = verify_archive(base, "audit", "2026-01-02", "2026-01-04")
    assert report.ok and statuses(report) == {"2026-01-02": "ok", "2026-01-03": "ok"}


# -- signatures -----------------------------------------------------------------------------------------
def test_signatures_good_bad_and_unchecked(base, monkeypatch):
    folders = archive(base, days=3)
    for folder in folders:
        sign(folder, b"right-key", "opsera_signing")
    monkeypatch.setenv(
        "AIRFLOW_CONN_OPSERA_SIGNING", json.dumps({"conn_type": "generic", "password": "right-key"})
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_OTHER_SIGNING", json.dumps({"conn_type": "generic", "password": "wrong-key"})
    )
    good = verify(base, days=3, signing_conn_id="opsera_signing")
    assert good.ok and set(statuses(good).values()) == {"ok"}

    unchecked = verify(base, days=3)
    assert unchecked.ok and set(statuses(unchecked).values()) == {"warning"}
    assert "no signing key given" in unchecked.intervals[0].findings[0].message

    # The reason rewritten, in manifest.json and its kept copy alike: the chain holds, the signature does not.
    manifest = json.loads(_read(folders[1], "manifest.json"))
    manifest["reason"] = "forged"
    data = json.dumps(manifest, indent=2).encode()
    _write(folders[1], "manifest.json", data)
    _write(folders[1], "_manifests/manifest-000001.json", data)
    forged = verify(base, days=3, signing_conn_id="opsera_signing")
    assert statuses(forged) == {"2026-01-01": "ok", "2026-01-02": "bad_signature", "2026-01-03": "ok"}

    wrong = verify(base, days=3, signing_conn_id="other_signing")
    assert set(statuses(wrong).values()) == {"bad_signature"}
    assert "signed with key opsera_signing" in wrong.intervals[0].findings[0].message


# -- S3 -------------------------------------------------------------------------------------------------
def test_an_archive_on_s3(moto_s3):
    base = f"s3://{moto_s3('opsera-verify')}"
    folders = archive(base, days=3, conn_id=MOTO_CONN_ID)
    report = verify(base, days=3, conn_id=MOTO_CONN_ID)
    assert report.ok and set(statuses(report).values()) == {"ok"}
    assert report.folders[0].uri == f"{base}/opsera/audit/dt=2026-01-01"
    _write(folders[2], _part(folders[2], 0), gzip.compress(b'{"_id":"x"}\n' * 4))
    folders[0].fs.rm(f"{folders[0].path.rstrip('/')}/manifest.json")
    report = verify(
        base, days=3, conn_id=MOTO_CONN_ID, report_path=f"{base}/evidence/", report_conn_id=MOTO_CONN_ID
    )
    assert statuses(report) == {"2026-01-01": "missing", "2026-01-02": "ok", "2026-01-03": "tampered"}
    evidence = ObjectStoragePath(f"{base}/evidence/", conn_id=MOTO_CONN_ID)
    assert json.loads(_read(evidence, "report.json"))["counts"] == {"ok": 1, "missing": 1, "tampered": 1}
    assert b'data-status="tampered"' in _read(evidence, "report.html")


# -- against the API ------------------------------------------------------------------------------------
@pytest.fixture
def sim(monkeypatch):
    with OpseraSimulator(seed=11) as simulator:
        monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", simulator.connection_json(FAST))
        yield simulator


def land_from_api(base: str, days: int) -> None:
    hook = OpseraHook()
    for d in range(days):
        start = JAN1.add(days=d)
        payloads = [
            r.payload for b in hook.iter_log_batches("audit", start, start.add(days=1), raw=True) for r in b
        ]
        land_interval(base, start, 0, payloads=payloads)


def test_against_the_api_shows_drift_after_records_are_added(base, sim, tmp_path):
    sim.generate("audit", JAN1, JAN1.add(days=4), 400)
    land_from_api(base, 3)  # day 4 is never landed
    before = verify(base, days=4, against_api=True)
    assert statuses(before) == {
        "2026-01-01": "ok",
        "2026-01-02": "ok",
        "2026-01-03": "ok",
        "2026-01-04": "missing",
    }
    assert all(i.api_records == i.records for i in before.intervals[:3])
    assert before.intervals[3].gap_api_count == 100

    sim.generate("audit", JAN1.add(days=1, hours=5), JAN1.add(days=1, hours=6), 7)
    after = verify(base, days=4, against_api=True, report_path=str(tmp_path / "report"))
    assert not after.ok
    assert statuses(after)["2026-01-02"] == "drift"
    day2 = after.intervals[1]
    assert (day2.records, day2.api_records, day2.drift) == (100, 107, 7)
    assert "the API holds 107 records now, the archive 100 (+7)" in day2.findings[0].message
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert saved["intervals"][1]["drift"] == 7 and saved["intervals"][1]["status"] == "drift"
    assert "+7" in (tmp_path / "report" / "report.md").read_text()
    page = (tmp_path / "report" / "report.html").read_text()
    assert 'data-status="drift"' in page and "drift: <b>+7</b>" in page


# -- the command and the operator -----------------------------------------------------------------------
def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "airflow_provider_opsera.verify", *args],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=120,
        check=False,
    )


def test_the_command_as_a_subprocess(base, tmp_path):
    folders = archive(base, days=3)
    args = ["--log-type", "audit", "--from", "2026-01-01", "--to", "2026-01-04"]
    done = run_cli(base, *args, "--report", str(tmp_path / "ok"))
    assert done.returncode == 0, done.stderr
    assert "VERIFIED: 3 intervals (3 ok)" in done.stdout
    assert (tmp_path / "ok" / "report.html").is_file()

    folders[1].fs.rm(folders[1].path.rstrip("/"), recursive=True)
    done = run_cli(base, *args, "--report", str(tmp_path / "bad"))
    assert done.returncode == 1
    assert "2026-01-02" in done.stdout and "missing" in done.stdout
    assert json.loads((tmp_path / "bad" / "report.json").read_text())["counts"] == {"ok": 2, "missing": 1}

    done = run_cli(base, "--log-type", "audit", "--from", "2026-01-04", "--to", "2026-01-01")
    assert done.returncode == 2 and "must be before" in done.stderr


def test_the_operator_returns_the_summary_or_fails(base, tmp_path):
    folders = archive(base, days=3)
    operator = OpseraVerifyArchiveOperator(
        task_id="verify",
        base_url=base,
        log_type="audit",
        start="2026-01-01T00:00:00+00:00",
        end="2026-01-04T00:00:00+00:00",
        report_path=str(tmp_path / "evidence"),
    )
    summary = operator.execute({})
    assert summary["ok"] is True and summary["counts"] == {"ok": 3} and summary["problems"] == []
    json.dumps(summary)  # an XCom value
    assert (tmp_path / "evidence" / "report.md").is_file()

    garbled = _part(folders[0], 0)
    _write(folders[0], garbled, b"garbage")
    with pytest.raises(LandingIntegrityError, match=rf"1 tampered.*{re.escape(garbled)}"):
        operator.execute({})


# -- the example DAG ------------------------------------------------------------------------------------
LOG_TYPES = ("user_activity", "audit", "token_activity", "pipeline_activity")
FEB1, MAR1 = pendulum.datetime(2026, 2, 1), pendulum.datetime(2026, 3, 1)


def test_the_monthly_evidence_dag_verifies_last_month_and_keeps_the_reports(
    airflow_db, sim, tmp_path, monkeypatch
):
    from airflow.utils.state import DagRunState, TaskInstanceState
    from dag_runs import load_example_dag

    base = (tmp_path / "archive").as_uri()
    monkeypatch.setenv("AIRFLOW_VAR_OPSERA_OUTPUT_BASE", base)
    hook = OpseraHook()
    for log_type in LOG_TYPES:
        sim.generate(log_type, FEB1, MAR1, 28 * 3)
        for day in range(28):
            start = FEB1.add(days=day)
            batches = hook.iter_log_batches(log_type, start, start.add(days=1), raw=True)
            folder = ObjectStoragePath(f"{base}/opsera/{log_type}/dt={start.to_date_string()}/")
            meta = {"log_type": log_type, "start": start.isoformat(), "end": start.add(days=1).isoformat()}
            land(([r.payload for r in b] for b in batches), folder, meta)
            ensure_chain(folder)
    dag = load_example_dag("opsera_monthly_evidence")

    run = dag.test(logical_date=MAR1)
    assert (run.data_interval_start, run.data_interval_end) == (FEB1, MAR1)
    assert run.state == DagRunState.SUCCESS
    for log_type in LOG_TYPES:
        saved = json.loads(
            (tmp_path / "archive" / "opsera-evidence" / log_type / "2026-02" / "report.json").read_text()
        )
        assert saved["ok"] and saved["counts"] == {"ok": 28} and saved["against_api"]
        assert sum(i["api_records"] for i in saved["intervals"]) == 28 * 3

    sim.generate("audit", FEB1.add(days=9), FEB1.add(days=10), 2)  # late audit records on Feb 10
    run = dag.test(logical_date=MAR1)
    assert run.state == DagRunState.FAILED
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states.pop("verify_audit") == TaskInstanceState.FAILED
    assert set(states.values()) == {TaskInstanceState.SUCCESS}
    saved = json.loads(
        (tmp_path / "archive" / "opsera-evidence" / "audit" / "2026-02" / "report.json").read_text()
    )
    assert saved["counts"] == {"ok": 27, "drift": 1} and saved["intervals"][9]["drift"] == 2
