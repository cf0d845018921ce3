"""Concurrent runs of one interval into one folder: never a broken folder, on file:// and on S3 (moto).

Two runs race with slow record streams, started a stagger apart, while a reader keeps checking the folder:
a published manifest must list only parts that exist and verify, at every moment; each run succeeds or fails
with LandingConflictError's message; the winner's parts are never removed; the chain records both revisions.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pendulum
import pytest
from airflow.sdk import ObjectStoragePath
from connections import MOTO_CONN_ID

from airflow_provider_opsera import landing
from airflow_provider_opsera.exceptions import LandingConflictError, LandingIntegrityError
from airflow_provider_opsera.landing import (
    iter_landed_records,
    land,
    list_revisions,
    manifest_digest,
    read_manifest,
)

#: The issue's reproduction: 4,500 user activity records in parts of 500.
RECORDS = 4500
RECORDS_PER_PART = 500
BATCH = 250
STAGGERS = (0.0, 0.05, 0.2, 1.0)


def records(n: int, tag: str) -> list[bytes]:
    return [b'{"_id":"%s%05d","createdAt":"2024-05-09T00:00:00.000Z"}' % (tag.encode(), i) for i in range(n)]


def slow(items: list[bytes], pause: float) -> Iterator[list[bytes]]:
    """A slow API: one batch at a time, ``pause`` seconds apart."""
    for i in range(0, len(items), BATCH):
        time.sleep(pause)
        yield items[i : i + BATCH]


@pytest.fixture(params=["file", "s3"])
def make_folder(request, tmp_path) -> Callable[[], ObjectStoragePath]:
    """A fresh folder per call: local, or in a fresh bucket on moto's S3."""
    if request.param == "file":
        return lambda: ObjectStoragePath(f"file://{tmp_path}/{uuid.uuid4().hex[:8]}/user_activity/")
    make_bucket = request.getfixturevalue("moto_s3")

    def s3() -> ObjectStoragePath:
        bucket = make_bucket(f"opsera-race-{uuid.uuid4().hex[:10]}")
        return ObjectStoragePath(f"s3://{bucket}/opsera/user_activity/dt=2024-05-09/", conn_id=MOTO_CONN_ID)

    return s3


def names(folder: ObjectStoragePath) -> set[str]:
    """What the folder holds (nothing when S3 has no object under it any more)."""
    folder.fs.invalidate_cache()
    try:
        return {str(p).rstrip("/").rsplit("/", 1)[-1] for p in folder.fs.ls(folder.path, detail=False)}
    except FileNotFoundError:
        return set()


def manifest_bytes(folder: ObjectStoragePath) -> bytes | None:
    return landing._read(folder, landing.MANIFEST)


class Reader(threading.Thread):
    """Reads the folder back, verified, over and over; records every time a published manifest was broken
    (a part missing or not matching while that manifest stayed the current one)."""

    def __init__(self, folder: ObjectStoragePath) -> None:
        super().__init__(daemon=True)
        self.folder = folder
        self.stop = threading.Event()
        self.broken: list[str] = []
        self.reads = 0

    def run(self) -> None:
        while not self.stop.is_set():
            before = manifest_bytes(self.folder)
            if before is None:
                time.sleep(0.01)
                continue
            try:
                for _ in iter_landed_records(self.folder, raw=True):
                    pass
                self.reads += 1
            except LandingIntegrityError as err:
                # Replaced while being read: the reader raced a newer revision, which is not a broken folder.
                if manifest_bytes(self.folder) == before:
                    self.broken.append(str(err))


def race(folder: ObjectStoragePath, stagger: float, pause: float, **kwargs: Any) -> dict[str, Any]:
    """Run A, then B ``stagger`` seconds later, into ``folder``; each one's manifest or error, and under
    ``"overlapped"`` whether B started before A ended."""
    outcome: dict[str, Any] = {}
    spans: dict[str, list[Any]] = {}

    def run(tag: str, wait: float) -> None:
        time.sleep(wait)
        spans[tag] = [time.monotonic(), None]
        try:
            outcome[tag] = land(
                slow(records(RECORDS, tag), pause),
                folder,
                {"log_type": "user_activity", "run_tag": tag},
                records_per_part=RECORDS_PER_PART,
                **kwargs,
            )
        except LandingConflictError as err:
            outcome[tag] = err
        except BaseException as err:
            outcome[tag] = ("unexpected", err)
        spans[tag][1] = time.monotonic()

    threads = [
        threading.Thread(target=run, args=("A", 0.0)),
        threading.Thread(target=run, args=("B", stagger)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
        assert not thread.is_alive(), "a run hung"
    return outcome, spans["B"][0] < spans["A"][1]


def check_outcome(folder: ObjectStoragePath, outcome: dict[str, Any]) -> dict[str, Any]:
    """The folder after both runs: complete, the winner's, every revision chained; returns the winner."""
    for tag, result in outcome.items():
        assert isinstance(result, (dict, LandingConflictError)), f"run {tag}: {result!r}"
        if isinstance(result, LandingConflictError):
            assert "Another run is publishing" in str(result) or "were removed while" in str(result)
    won = [m for m in outcome.values() if isinstance(m, dict)]
    assert won, "at least one run lands"
    current = read_manifest(folder)
    winner = max(won, key=lambda m: m["revision"])
    assert current == winner
    # Nothing the winner published is removed: every part there, verified (sha256 and count), its records.
    tag = winner["run_tag"]
    assert list(iter_landed_records(folder, raw=True)) == records(RECORDS, tag)
    assert [p["records"] for p in winner["parts"]] == [RECORDS_PER_PART] * (RECORDS // RECORDS_PER_PART)
    # One revision per successful run, chained, the first one a first landing; nothing else left behind.
    revisions = list_revisions(folder)
    assert [m["revision"] for _, m in revisions] == list(range(1, len(won) + 1))
    assert [m["previous"] for _, m in revisions] == [None] + [manifest_digest(b) for b, _ in revisions[:-1]]
    assert [m["reason"] for _, m in revisions] == ["first landing"] + ["rerun"] * (len(won) - 1)
    assert sorted(m["run"] for _, m in revisions) == sorted(m["run"] for m in won)
    assert names(folder) == {"manifest.json", "_manifests", *(p["name"] for p in winner["parts"])}
    return winner


@pytest.mark.parametrize("stagger", STAGGERS)
def test_two_runs_of_one_interval_never_publish_a_broken_folder(make_folder, stagger):
    folder = make_folder()
    reader = Reader(folder)
    reader.start()
    try:
        outcome, overlapped = race(folder, stagger, pause=0.06)
        # With no stagger both runs may publish before the reader finishes one pass; let it read the end state
        # too, so the assertion below is about the folder, not about thread timing.
        deadline = time.monotonic() + 30
        while reader.reads == 0 and reader.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        reader.stop.set()
        reader.join(timeout=60)
    check_outcome(folder, outcome)
    # Both runs write side by side and take turns publishing: both land, the later one over the earlier.
    assert all(isinstance(m, dict) for m in outcome.values()), outcome
    assert reader.broken == []
    assert reader.reads > 0
    assert overlapped or stagger >= 1.0  # a run takes about a second: only the last stagger may not overlap


def test_a_run_publishing_while_another_writes_leaves_the_other_s_files_alone(make_folder):
    """The issue's sequence, made deterministic: B has written some parts (and, locally, holds an unfinished
    temporary file) when A publishes and cleans up; then B finishes and publishes over A."""
    folder = make_folder()
    b_started, a_done = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def b_batches() -> Iterator[list[bytes]]:
        items = records(RECORDS, "B")
        yield items[:1200]  # two whole parts and 200 records of a third, still open
        b_started.set()
        assert a_done.wait(60)
        yield items[1200:]

    def run_b() -> None:
        try:
            outcome["B"] = land(b_batches(), folder, {"run_tag": "B"}, records_per_part=RECORDS_PER_PART)
        except BaseException as err:
            outcome["B"] = err

    thread = threading.Thread(target=run_b)
    thread.start()
    assert b_started.wait(60)
    in_flight = {n for n in names(folder) if n.startswith(("part-", ".part-"))}
    assert len(in_flight) >= 2
    outcome["A"] = land([records(RECORDS, "A")], folder, {"run_tag": "A"}, records_per_part=RECORDS_PER_PART)
    assert in_flight <= names(folder), "A's cleanup removed B's in-flight files"
    assert list(iter_landed_records(folder, raw=True)) == records(RECORDS, "A")
    a_done.set()
    thread.join(timeout=60)
    assert isinstance(outcome["B"], dict), outcome["B"]
    winner = check_outcome(folder, outcome)
    assert winner["run_tag"] == "B"


def test_the_publish_lock_lets_one_run_in_at_a_time(make_folder):
    folder = make_folder()
    inside, seen, errors = [], [], []
    guard = threading.Lock()

    def contend(i: int) -> None:
        publisher = landing._Publisher(folder, uuid.uuid4().hex[:12])
        try:
            for _ in range(3):
                with landing._PublishLock(publisher, timeout=120):
                    with guard:
                        inside.append(i)
                        seen.append(len(inside))
                    time.sleep(0.02)
                    with guard:
                        inside.remove(i)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert errors == []
    assert seen == [1] * 12
    assert not any(n.startswith(".lock-") for n in names(folder))


def _claim(run: str, **fields: Any) -> str:
    return json.dumps({"run": run, "host": "another-host", "pid": 1, **fields})


def test_a_run_that_cannot_get_the_lock_fails_clearly_and_leaves_the_folder(make_folder):
    folder = make_folder()
    before = land([records(50, "old")], folder, {"run_tag": "old"})
    held = f".lock-{time.time_ns() // 1_000_000:013d}-{'f' * 12}.json"
    (folder / held).write_text(_claim("f" * 12, at=pendulum.now("UTC").isoformat()))
    with pytest.raises(LandingConflictError, match=r"Another run is publishing to .*waited 1s for its lock"):
        land([records(60, "new")], folder, {"run_tag": "new"}, lock_timeout=1.0)
    # Its parts and marker are gone; the previous state is as it was; the other run's claim is untouched.
    assert read_manifest(folder) == before
    assert names(folder) == {"manifest.json", "_manifests", held, *(p["name"] for p in before["parts"])}
    assert list(iter_landed_records(folder, raw=True)) == records(50, "old")


def test_a_dead_run_s_lock_claim_does_not_block(make_folder, monkeypatch):
    folder = make_folder()
    land([records(5, "old")], folder, {})
    stale = f".lock-{(time.time_ns() // 1_000_000) - 3_000:013d}-{'f' * 12}.json"
    (folder / stale).write_text(_claim("f" * 12))
    monkeypatch.setattr(landing, "LOCK_STALE_AFTER", 2.0)
    manifest = land([records(6, "new")], folder, {}, lock_timeout=30)
    assert names(folder) == {"manifest.json", "_manifests", *(p["name"] for p in manifest["parts"])}


def test_a_run_whose_parts_were_removed_fails_clearly_and_publishes_nothing(make_folder):
    """A run taken for dead (its parts removed by another run's cleanup) must not publish their names."""
    folder = make_folder()
    before = land([records(50, "old")], folder, {})

    def batches() -> Iterator[list[bytes]]:
        yield records(10, "new")
        for name in names(folder):
            if name.startswith("part-") and name not in {p["name"] for p in before["parts"]}:
                (folder / name).unlink()
        yield records(10, "new2")

    with pytest.raises(LandingConflictError, match="were removed while it wrote them"):
        land(batches(), folder, {}, records_per_part=10)
    assert read_manifest(folder) == before
    assert list(iter_landed_records(folder, raw=True)) == records(50, "old")


# -- end to end: two operator runs against the simulator ------------------------------------------------------
def test_two_operator_runs_into_one_folder_against_a_slow_api(tmp_path, monkeypatch):
    from airflow.sdk.execution_time.context import OutletEventAccessors

    from airflow_provider_opsera.operators.logs import OpseraLogsOperator
    from airflow_provider_opsera.testing import OpseraSimulator

    day = pendulum.datetime(2024, 5, 9, tz="UTC")
    end = day.add(days=5)  # the v1 endpoint proves at most 1000 records of a type a day complete
    url = f"file://{tmp_path}/lake/opsera/user_activity/"
    folder = ObjectStoragePath(url)
    with OpseraSimulator(seed=5, latency=0.25) as sim:
        sim.generate("user_activity", day, end, RECORDS)
        settings = {"page_size": 500, "concurrency": 1, "retry_min_wait": 0.01, "retry_max_wait": 0.1}
        monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", sim.connection_json(settings))
        truth = sorted(r["_id"] for r in sim.ground_truth("user_activity", day, end))
        outcome: dict[str, Any] = {}

        spans: dict[str, list[float]] = {}

        def run(task_id: str, wait: float) -> None:
            time.sleep(wait)
            spans[task_id] = [time.monotonic()]
            op = OpseraLogsOperator(
                task_id=task_id,
                log_type="user_activity",
                start=day,
                end=end,
                output_path=url,
                records_per_part=RECORDS_PER_PART,
            )
            try:
                outcome[task_id] = op.execute({"outlet_events": OutletEventAccessors()})  # type: ignore[arg-type]
            except BaseException as err:
                outcome[task_id] = err
            spans[task_id].append(time.monotonic())

        reader = Reader(folder)
        reader.start()
        threads = [
            threading.Thread(target=run, args=("scheduled", 0.0)),
            threading.Thread(target=run, args=("manual", 0.5)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=240)
        reader.stop.set()
        reader.join(timeout=60)

    assert all(isinstance(m, dict) for m in outcome.values()), outcome
    assert spans["manual"][0] < spans["scheduled"][1], "the runs did not overlap"
    assert reader.broken == []
    current = read_manifest(folder)
    assert current == max(outcome.values(), key=lambda m: m["revision"])
    assert sorted(r["_id"] for r in iter_landed_records(folder)) == truth
    assert [m["reason"] for _, m in list_revisions(folder)] == ["first landing", "rerun"]
    assert names(folder) == {"manifest.json", "_manifests", *(p["name"] for p in current["parts"])}
