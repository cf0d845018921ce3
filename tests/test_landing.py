"""Landing parts and manifest in a folder: bounded parts, byte-for-byte records, atomic by manifest."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json

import pendulum
import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_opsera import __version__, landing
from airflow_provider_opsera.landing import (
    LandingIntegrityError,
    canonical_bytes,
    iter_landed_records,
    land,
    list_revisions,
    manifest_digest,
    read_manifest,
    sign_manifest,
    signature_valid,
    signing_key,
)


def records(n: int, tag: str = "a") -> list[bytes]:
    # Odd but valid JSON spellings that a re-encoder would change: they must land as sent.
    return [
        b'{"_id":"%s%05d","createdAt":"2024-05-09T00:00:%02d.100Z","n":1.50,"u":"\\u00e9"}'
        % (tag.encode(), i, i % 60)
        for i in range(n)
    ]


def batches(items: list[bytes], size: int = 37):
    for i in range(0, len(items), size):
        yield items[i : i + size]


@pytest.fixture
def folder(tmp_path) -> ObjectStoragePath:
    return ObjectStoragePath(f"file://{tmp_path}/opsera/audit/dt=2024-05-09/")


def names(folder: ObjectStoragePath) -> set[str]:
    return {p.name for p in folder.iterdir()}


def landed_names(manifest) -> set[str]:
    """What a folder holds once its runs are done: the manifest, its revisions, the current parts."""
    return {"manifest.json", "_manifests", *(p["name"] for p in manifest["parts"])}


def part(folder: ObjectStoragePath, index: int) -> ObjectStoragePath:
    return folder / read_manifest(folder)["parts"][index]["name"]


def test_parts_are_bounded_and_manifest_describes_them(folder):
    data = records(250)
    manifest = land(batches(data), folder, {"log_type": "audit"}, records_per_part=100)

    assert manifest["log_type"] == "audit"
    assert manifest["record_count"] == 250
    assert manifest["provider_version"] == __version__
    # Named after the run, which no other run shares: concurrent runs never write the same name.
    run = manifest["run"]
    assert [p["name"] for p in manifest["parts"]] == [
        f"part-{run}-00000.ndjson.gz",
        f"part-{run}-00001.ndjson.gz",
        f"part-{run}-00002.ndjson.gz",
    ]
    assert [p["records"] for p in manifest["parts"]] == [100, 100, 50]
    for part in manifest["parts"]:
        raw = (folder / part["name"]).read_bytes()
        assert hashlib.sha256(raw).hexdigest() == part["sha256"]
        assert len(raw) == part["bytes"]
    assert read_manifest(folder) == manifest
    assert json.loads((folder / "manifest.json").read_text()) == manifest
    assert names(folder) == landed_names(manifest)
    assert (folder / "_manifests" / "manifest-000001.json").read_bytes() == (
        folder / "manifest.json"
    ).read_bytes()


def test_records_land_byte_for_byte(folder):
    data = records(30)
    land(batches(data, 7), folder, {})
    assert list(iter_landed_records(folder, raw=True)) == data
    assert gzip.decompress(part(folder, 0).read_bytes()) == b"\n".join(data) + b"\n"


def test_a_record_with_newlines_is_made_one_line_keeping_its_values(folder):
    pretty = b'{\n  "_id": "x",\n  "n": 1.50,\n  "s": "a\\nb"\n}'
    land([[b'{"_id":"w"}', pretty]], folder, {})
    assert list(iter_landed_records(folder, raw=True)) == [
        b'{"_id":"w"}',
        b'{"_id":"x","n":1.50,"s":"a\\nb"}',
    ]


def test_same_records_give_the_same_bytes(folder, tmp_path):
    first = land(batches(records(120)), folder, {}, records_per_part=50)
    other = ObjectStoragePath(f"file://{tmp_path}/other/")
    second = land(batches(records(120), 11), other, {}, records_per_part=50)
    assert [p["sha256"] for p in first["parts"]] == [p["sha256"] for p in second["parts"]]


def test_rerun_with_fewer_records_leaves_exactly_the_new_parts(folder, monkeypatch):
    old = land(batches(records(250, "old")), folder, {}, records_per_part=100)
    (folder / "README.txt").write_text("not ours")
    seen = {}
    remove_unneeded = landing._remove_unneeded

    def check_then_remove(publisher, manifest):
        # The new manifest is in place before any stale part goes.
        seen["manifest"] = read_manifest(folder)
        seen["stale_still_there"] = all((folder / p["name"]).exists() for p in old["parts"])
        remove_unneeded(publisher, manifest)

    monkeypatch.setattr(landing, "_remove_unneeded", check_then_remove)
    manifest = land(batches(records(120, "new")), folder, {}, records_per_part=100)

    assert seen == {"manifest": manifest, "stale_still_there": True}
    # New parts never overwrite the ones the previous manifest lists: they carry their own run's name.
    assert manifest["run"] != old["run"]
    assert names(folder) == {*landed_names(manifest), "README.txt"}
    assert [p["name"] for p in manifest["parts"]] == [
        f"part-{manifest['run']}-00000.ndjson.gz",
        f"part-{manifest['run']}-00001.ndjson.gz",
    ]
    assert list(iter_landed_records(folder, raw=True)) == records(120, "new")


def test_previous_state_stays_readable_while_parts_change(folder):
    old = land(batches(records(50)), folder, {}, records_per_part=10)
    during = []

    def watched():
        during.append((read_manifest(folder), list(iter_landed_records(folder, raw=True))))
        yield records(10, "n")
        during.append((read_manifest(folder), list(iter_landed_records(folder, raw=True))))

    land(watched(), folder, {}, records_per_part=5)
    assert during == [(old, records(50)), (old, records(50))]
    assert read_manifest(folder)["record_count"] == 10


def test_failed_run_leaves_the_previous_state_and_no_temporary_files(folder):
    land(batches(records(50)), folder, {})

    def failing():
        yield records(10, "b")
        raise RuntimeError("API went away")

    before = names(folder)
    with pytest.raises(RuntimeError, match="API went away"):
        land(failing(), folder, {})
    # The previous complete state, untouched: same files, same records.
    assert names(folder) == before
    assert list(iter_landed_records(folder, raw=True)) == records(50)

    land(batches(records(20, "c")), folder, {})
    assert list(iter_landed_records(folder, raw=True)) == records(20, "c")


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_leftovers_of_an_interrupted_process_are_cleaned_up(folder):
    land(batches(records(5)), folder, {})
    # A provider before run ids: its temporary file and a part no manifest lists.
    (folder / f".part-00003.ndjson.gz.{'0' * 32}.tmp").write_bytes(b"partial")
    (folder / "part-00007.ndjson.gz").write_bytes(b"old")
    # A run killed on this host: its marker names a process that is gone.
    dead = "d" * 12
    claim = {"run": dead, "host": landing._identity(), "pid": dead_pid(), "at": "2024-05-09T00:00:00+00:00"}
    (folder / f".run-{dead}.json").write_text(json.dumps({**claim, "at": pendulum.now("UTC").isoformat()}))
    (folder / f"part-{dead}-00000.ndjson.gz").write_bytes(b"whole but never listed")
    (folder / f".part-{dead}-00001.ndjson.gz.{dead}.{'1' * 32}.tmp").write_bytes(b"partial")
    (folder / "_manifests" / f".manifest-000002.json.{dead}.{'2' * 32}.tmp").write_bytes(b"partial")
    manifest = land(batches(records(5)), folder, {})
    assert names(folder) == landed_names(manifest)
    assert names(folder / "_manifests") == {"manifest-000001.json", "manifest-000002.json"}


def test_a_live_run_keeps_its_files_until_its_marker_is_stale(folder, monkeypatch):
    """Another run's files are its own while its marker is fresh (on another host: by age alone)."""
    other = "e" * 12
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / f".run-{other}.json"
    claim = {"run": other, "host": "elsewhere", "pid": 1, "at": pendulum.now("UTC").isoformat()}
    marker.write_text(json.dumps(claim))
    theirs = {f"part-{other}-00000.ndjson.gz", f".part-{other}-00001.ndjson.gz.{other}.{'3' * 32}.tmp"}
    for name in theirs:
        (folder / name).write_bytes(b"in flight")
    manifest = land(batches(records(5)), folder, {})
    assert names(folder) == {*landed_names(manifest), marker.name, *theirs}

    claim["at"] = pendulum.now("UTC").subtract(seconds=11).isoformat()
    marker.write_text(json.dumps(claim))
    monkeypatch.setattr(landing, "RUN_STALE_AFTER", 10.0)
    manifest = land(batches(records(5)), folder, {})
    assert names(folder) == landed_names(manifest)


def test_empty_interval_writes_a_manifest_without_parts(folder):
    land(batches(records(5)), folder, {})
    manifest = land([[], []], folder, {"log_type": "token_activity"})
    assert manifest["record_count"] == 0
    assert manifest["parts"] == []
    assert names(folder) == {"manifest.json", "_manifests"}
    assert list(iter_landed_records(folder)) == []


def test_a_corrupted_part_is_detected(folder):
    land(batches(records(20)), folder, {})
    part(folder, 0).write_bytes(gzip.compress(b"\n".join(records(19)) + b"\n"))
    with pytest.raises(LandingIntegrityError, match="sha256"):
        list(iter_landed_records(folder))


def test_records_come_back_as_dicts_by_default(folder):
    land(batches(records(30), 7), folder, {}, records_per_part=10)
    got = list(iter_landed_records(folder))
    assert got == [json.loads(line) for line in records(30)]
    assert all(type(r) is dict for r in got)
    assert got[0] == {"_id": "a00000", "createdAt": "2024-05-09T00:00:00.100Z", "n": 1.5, "u": "\u00e9"}
    assert all(type(r) is bytes for r in iter_landed_records(folder, raw=True))


def test_a_plain_url_string_reads_the_folder(folder, tmp_path):
    land(batches(records(25)), folder, {}, records_per_part=10)
    url = f"file://{tmp_path}/opsera/audit/dt=2024-05-09/"
    assert isinstance(url, str)
    assert list(iter_landed_records(url)) == [json.loads(line) for line in records(25)]
    assert list(iter_landed_records(url, raw=True)) == records(25)
    assert list(iter_landed_records(url.rstrip("/"), conn_id=None)) == list(iter_landed_records(folder))


def test_an_s3_url_string_takes_the_connection_id(moto_s3):
    from connections import MOTO_CONN_ID

    bucket = moto_s3("opsera-landing-url-string")
    land(batches(records(15)), ObjectStoragePath(f"s3://{bucket}/audit/", conn_id=MOTO_CONN_ID), {})
    got = list(iter_landed_records(f"s3://{bucket}/audit/", conn_id=MOTO_CONN_ID))
    assert got == [json.loads(line) for line in records(15)]


def test_arguments_are_checked_at_the_call(folder):
    with pytest.raises(ValueError, match="conn_id applies to a URL string"):
        iter_landed_records(folder, conn_id="aws_default")
    with pytest.raises(TypeError, match="ObjectStoragePath or a URL string"):
        iter_landed_records(42)  # type: ignore[call-overload]


def _first_part_then_error(folder) -> tuple[list[bytes], LandingIntegrityError]:
    """What iterating yields before it raises, and the error."""
    got: list[bytes] = []
    with pytest.raises(LandingIntegrityError) as err:
        for line in iter_landed_records(folder, raw=True):
            got.append(line)
    return got, err.value


def test_a_tampered_part_raises_before_yielding_any_of_its_records(folder):
    land(batches(records(30)), folder, {}, records_per_part=10)
    # The middle part swapped for one of the same length and count, but other bytes.
    part(folder, 1).write_bytes(gzip.compress(b"\n".join(records(10, "x")) + b"\n"))
    got, err = _first_part_then_error(folder)
    assert f"{part(folder, 1).name} does not match its sha256" in str(err)
    assert got == records(30)[:10]  # the first part, verified; nothing of the tampered one
    with pytest.raises(LandingIntegrityError, match="sha256"):
        list(iter_landed_records(folder))  # decoded dicts: the same check


def test_a_part_with_the_wrong_count_raises_before_yielding_any_of_its_records(folder):
    land(batches(records(30)), folder, {}, records_per_part=10)
    # A part cut short whose manifest entry was updated to its sha256, but not its count.
    short = gzip.compress(b"\n".join(records(30)[10:19]) + b"\n")
    name = part(folder, 1).name
    (folder / name).write_bytes(short)
    manifest = read_manifest(folder)
    manifest["parts"][1]["sha256"] = hashlib.sha256(short).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    got, err = _first_part_then_error(folder)
    assert str(err) == f"{name} holds 9 records; the manifest says 10."
    assert got == records(30)[:10]


def test_a_missing_part_raises(folder):
    land(batches(records(30)), folder, {}, records_per_part=10)
    name = part(folder, 2).name
    (folder / name).unlink()
    got, err = _first_part_then_error(folder)
    assert f"{name} listed in the manifest is missing" in str(err)
    assert got == records(30)[:20]


def test_without_verify_a_tampered_part_is_read_as_it_is(folder):
    land(batches(records(20)), folder, {}, records_per_part=10)
    part(folder, 1).write_bytes(gzip.compress(b"\n".join(records(3, "x")) + b"\n"))
    assert list(iter_landed_records(folder, raw=True, verify=False)) == records(20)[:10] + records(3, "x")


def test_records_per_part_must_be_positive(folder):
    with pytest.raises(ValueError, match="records_per_part"):
        land([], folder, {}, records_per_part=0)


def test_memory_stays_flat_as_records_grow(tmp_path):
    """Ten times the records must not need more memory: nothing collects the stream."""
    import tracemalloc

    def stream(n_batches: int):
        for b in range(n_batches):
            yield [
                b'{"_id":"%d-%d","createdAt":"2024-05-09T00:00:00.000Z","pad":"%s"}' % (b, i, b"x" * 200)
                for i in range(1000)
            ]

    def peak(n_batches: int) -> int:
        folder = ObjectStoragePath(f"file://{tmp_path}/m{n_batches}/")
        tracemalloc.start()
        try:
            land(stream(n_batches), folder, {}, records_per_part=25_000)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak(1)  # first use imports and caches things: not what is measured
    small, large = peak(5), peak(50)
    assert large < small * 1.5 + 1_000_000, (small, large)


def test_a_folder_without_manifest_is_not_complete(tmp_path):
    folder = ObjectStoragePath(f"file://{tmp_path}/never-landed/")
    assert read_manifest(folder) is None
    with pytest.raises(LandingIntegrityError, match=r"no manifest\.json"):
        list(iter_landed_records(folder))


# -- the revision chain ---------------------------------------------------------------------------------------
def test_every_revision_chains_back_to_the_first_landing(folder):
    first = land(batches(records(30, "a")), folder, {"log_type": "audit"}, records_per_part=10)
    first_bytes = (folder / "manifest.json").read_bytes()
    land(batches(records(20, "b")), folder, {"log_type": "audit"}, records_per_part=10)
    last = land(batches(records(25, "c")), folder, {"log_type": "audit"}, reason="recheck: late records")

    revisions = list_revisions(folder)
    assert [m["revision"] for _, m in revisions] == [1, 2, 3]
    assert [m["reason"] for _, m in revisions] == ["first landing", "rerun", "recheck: late records"]
    assert [m["previous"] for _, m in revisions] == [
        None,
        manifest_digest(revisions[0][0]),
        manifest_digest(revisions[1][0]),
    ]
    assert all(m["manifest_format"] == landing.MANIFEST_FORMAT == 2 for _, m in revisions)
    # Each revision's bytes as written, never rewritten; manifest.json is the newest of them.
    assert revisions[0][0] == first_bytes
    assert revisions[-1][0] == (folder / "manifest.json").read_bytes()
    assert [m for _, m in revisions] == [json.loads(data) for data, _ in revisions]
    assert revisions[-1][1] == last == read_manifest(folder)
    # The current revision's parts are kept; superseded revisions' parts are removed, their files stay.
    assert names(folder) == landed_names(last)
    assert not any((folder / p["name"]).exists() for p in first["parts"])
    assert list(iter_landed_records(folder, raw=True)) == records(25, "c")


def test_list_revisions_of_a_folder_never_landed_is_empty(tmp_path):
    assert list_revisions(ObjectStoragePath(f"file://{tmp_path}/nothing/")) == []


def test_a_format_1_folder_keeps_its_manifest_as_revision_1(folder):
    """A folder landed before the chain: its first rerun keeps the old manifest, byte for byte, as revision 1."""
    land(batches(records(10)), folder, {"log_type": "audit"})
    old = read_manifest(folder)
    for key in ("revision", "previous", "reason", "run"):
        del old[key]
    legacy = json.dumps({**old, "manifest_format": 1}, indent=2).encode() + b"\n"
    (folder / "manifest.json").write_bytes(legacy)
    for revision in (folder / "_manifests").iterdir():
        revision.unlink()
    assert list_revisions(folder) == []  # format 1: no chain

    manifest = land(batches(records(12)), folder, {"log_type": "audit"})
    revisions = list_revisions(folder)
    assert revisions[0] == (legacy, json.loads(legacy))
    assert (manifest["revision"], manifest["previous"], manifest["reason"]) == (
        2,
        manifest_digest(legacy),
        "rerun",
    )
    assert revisions[1][1] == manifest


def test_a_signed_manifest_verifies_and_a_tampered_one_does_not(folder):
    key = b"a shared secret"
    manifest = land(
        batches(records(20)), folder, {"log_type": "audit"}, signing_key=key, signing_key_id="signer"
    )
    signature = manifest["signature"]
    assert (signature["alg"], signature["key_id"]) == ("HMAC-SHA256", "signer")
    # The documented computation: HMAC-SHA256 over the canonical JSON of the manifest without its signature.
    unsigned = {k: v for k, v in read_manifest(folder).items() if k != "signature"}
    canonical = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert canonical_bytes(unsigned) == canonical
    assert signature["value"] == hmac.new(key, canonical, hashlib.sha256).hexdigest()
    assert signature_valid(read_manifest(folder), key)
    assert signature_valid(list_revisions(folder)[0][1], key)

    assert not signature_valid(read_manifest(folder), b"another key")
    tampered = read_manifest(folder)
    tampered["record_count"] -= 1
    assert not signature_valid(tampered, key)
    tampered = read_manifest(folder)
    tampered["parts"][0]["sha256"] = hashlib.sha256(b"other bytes").hexdigest()
    assert not signature_valid(tampered, key)
    # Re-signing needs the key; without a signature nothing verifies.
    assert not signature_valid({k: v for k, v in tampered.items() if k != "signature"}, key)
    assert signature_valid(sign_manifest(tampered, key, "signer"), key)


def test_the_signature_covers_the_chain(folder):
    key = b"k"
    land(batches(records(5)), folder, {}, signing_key=key, signing_key_id="signer")
    land(batches(records(6)), folder, {}, signing_key=key, signing_key_id="signer")
    (_, first), (_, second) = list_revisions(folder)
    assert signature_valid(first, key) and signature_valid(second, key)
    assert not signature_valid({**second, "previous": "0" * 64}, key)
    assert not signature_valid({**second, "reason": "first landing"}, key)


def test_signing_needs_a_key_id(folder):
    with pytest.raises(ValueError, match="signing_key_id"):
        land([], folder, {}, signing_key=b"k")


def test_the_signing_key_is_a_connection_password(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_OPSERA_SIGNING", json.dumps({"conn_type": "generic", "password": "s3cret"})
    )
    assert signing_key("opsera_signing") == b"s3cret"
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_SIGNING", json.dumps({"conn_type": "generic", "login": "x"}))
    with pytest.raises(ValueError, match="has no password"):
        signing_key("opsera_signing")
