"""Interrupted runs: a landing or a Postgres load killed in the middle, then run again.

A crash is a real one: the operator runs in a child process that is SIGKILLed (no ``except``, no ``finally``)
after N batches have gone to the sink, i.e. after N parts / in the middle of the COPY. A failure is an exception
raised at the same point, in-process (an API error, or the task being terminated). Afterwards the destination
must hold the previous complete state or nothing new, and a rerun must land exactly the ground truth.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pendulum
import pytest
from connections import MOTO_CONN_ID
from reliability_helpers import FAST, by_id, postgres_conn_json

from airflow_provider_opsera.testing import OpseraSimulator

START = pendulum.datetime(2024, 6, 1, tz="UTC")
END = START.add(days=1)
LOG_TYPE = "audit"
RECORDS_PER_PART = 200
#: The conn's page_size: the hook hands the sink one page (one batch) at a time.
PAGE = 500


def forget_filesystems() -> None:
    """After a fork: fsspec's async filesystems (s3fs) refuse to be used from another process, so drop the
    cached instances and the event loop the parent made; the child makes its own."""
    import fsspec.asyn
    from airflow.sdk.io import store as object_store

    fsspec.asyn.reset_lock()
    object_store._STORE_CACHE.clear()
    for cls in list(fsspec.registry.values()) if hasattr(fsspec, "registry") else []:
        clear = getattr(cls, "clear_instance_cache", None)
        if clear is not None:
            clear()
    try:
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
    except ImportError:  # pragma: no cover - s3fs comes with the amazon extra
        pass


def crash_child(spec: dict[str, Any]) -> None:
    """In the forked child: run the operator, and SIGKILL the process once ``kill_after`` batches reached the
    sink (both sinks call ``Progress.add`` after each batch is written: into parts, or into the COPY)."""
    from airflow_provider_opsera import progress

    original, batches = progress.Progress.add, []

    def add(self, n, stats=None):
        original(self, n, stats)
        batches.append(n)
        if len(batches) >= spec["kill_after"]:
            os.kill(os.getpid(), signal.SIGKILL)

    progress.Progress.add = add  # type: ignore[method-assign]
    forget_filesystems()
    if spec["sink"] == "file":
        from airflow_provider_opsera.operators.logs import OpseraLogsOperator

        op: Any = OpseraLogsOperator(
            task_id="crash",
            log_type=LOG_TYPE,
            start=START,
            end=END,
            output_path=spec["output_path"],
            output_conn_id=spec["output_conn_id"],
            records_per_part=RECORDS_PER_PART,
        )
    else:
        from airflow_provider_opsera.transfers.postgres import OpseraLogsToPostgresOperator

        op = OpseraLogsToPostgresOperator(
            task_id="crash", log_type=LOG_TYPE, start=START, end=END, schema=spec["schema"]
        )
    op.execute(context())
    sys.exit(3)  # finished: it was never killed


@pytest.fixture
def sim(monkeypatch) -> Iterator[OpseraSimulator]:
    with OpseraSimulator(seed=31) as simulator:
        simulator.generate(LOG_TYPE, START, END, 3000)
        monkeypatch.setenv(
            "AIRFLOW_CONN_OPSERA_DEFAULT", simulator.connection_json({**FAST, "page_size": PAGE})
        )
        yield simulator


def late_arrivals(sim: OpseraSimulator) -> None:
    """Records the API shows only after the first run: the rerun has more to land than the first run had."""
    sim.generate(LOG_TYPE, START, END, 700)


def crash(kill_after: int, **spec: Any) -> None:
    """Run the operator in a forked child process (a copy of this one: no start-up cost), SIGKILLed after
    ``kill_after`` batches reached the sink."""
    child = multiprocessing.get_context("fork").Process(
        target=crash_child, args=({**spec, "kill_after": kill_after},)
    )
    child.start()
    child.join(timeout=120)
    if child.is_alive():
        child.kill()
        pytest.fail("the child hung")
    assert child.exitcode == -signal.SIGKILL, f"the child was not killed (exit code {child.exitcode})"


def context() -> Any:
    from airflow.sdk.execution_time.context import OutletEventAccessors

    return {"outlet_events": OutletEventAccessors()}


def truth(sim: OpseraSimulator) -> list[dict[str, Any]]:
    return by_id(sim.ground_truth(LOG_TYPE, START, END))


# -- object storage (file:// and s3://) ----------------------------------------------------------------------
@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path) -> dict[str, Any]:
    """Where to land: ``{"url", "conn_id", "folder"}`` for a local folder or a fresh bucket on moto."""
    from airflow.sdk import ObjectStoragePath

    if request.param == "file":
        url, conn_id = f"file://{tmp_path}/landing/", None
    else:
        bucket = request.getfixturevalue("moto_s3")(f"opsera-crash-{uuid.uuid4().hex[:10]}")
        url, conn_id = f"s3://{bucket}/opsera/audit/", MOTO_CONN_ID
    return {"url": url, "conn_id": conn_id, "folder": ObjectStoragePath(url, conn_id=conn_id)}


def land(sim, store) -> dict[str, Any]:
    from airflow_provider_opsera.operators.logs import OpseraLogsOperator

    op = OpseraLogsOperator(
        task_id="land",
        log_type=LOG_TYPE,
        start=START,
        end=END,
        output_path=store["url"],
        output_conn_id=store["conn_id"],
        records_per_part=RECORDS_PER_PART,
    )
    return op.execute(context())


def names(folder) -> list[str]:
    folder.fs.invalidate_cache()
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def landed(folder) -> list[dict[str, Any]] | None:
    """The folder's records if it is complete (manifest and verified parts), ``None`` if it is not."""
    from airflow_provider_opsera.landing import LandingIntegrityError, iter_landed_records, read_manifest

    if read_manifest(folder) is None:
        return None
    try:
        return by_id(iter_landed_records(folder))
    except LandingIntegrityError as err:
        pytest.fail(f"a folder with a manifest must be complete: {err}")


def assert_exactly(folder, sim) -> None:
    """The ground truth, and nothing else in the folder: no stale part, no temporary file, no marker or lock."""
    from airflow_provider_opsera.landing import read_manifest

    assert landed(folder) == truth(sim)
    manifest = read_manifest(folder)
    assert names(folder) == sorted(["manifest.json", "_manifests", *(p["name"] for p in manifest["parts"])])


def test_crash_in_the_first_run_leaves_nothing_complete_and_the_rerun_lands_the_truth(sim, store):
    folder = store["folder"]
    crash(kill_after=3, sink="file", output_path=store["url"], output_conn_id=store["conn_id"])
    parts = [name for name in names(folder) if name.startswith("part-")]
    assert len(parts) >= 3 * PAGE // RECORDS_PER_PART, "the crash came too early to prove anything"
    assert landed(folder) is None  # nothing new: no manifest, so no reader takes the parts
    land(sim, store)
    assert_exactly(folder, sim)


def test_crash_in_a_rerun_keeps_the_previous_complete_state(sim, store):
    folder = store["folder"]
    land(sim, store)
    before = landed(folder)
    late_arrivals(sim)
    crash(kill_after=2, sink="file", output_path=store["url"], output_conn_id=store["conn_id"])
    assert landed(folder) == before  # the previous manifest and its parts, verified
    land(sim, store)
    assert_exactly(folder, sim)
    assert len(landed(folder)) == 3700


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("error", [Interrupt, SystemExit, KeyboardInterrupt])
def test_failure_mid_stream_cleans_up_and_the_rerun_lands_the_truth(sim, store, monkeypatch, error):
    """An exception after a few parts (an API error, the task being terminated): no manifest, no temporary
    file left behind, and the rerun lands exactly the truth."""
    from airflow_provider_opsera import progress

    folder = store["folder"]
    original, calls = progress.Progress.add, []

    def add(self, n, stats=None):
        original(self, n, stats)
        calls.append(n)
        if len(calls) == 3:
            raise error("interrupted after three batches")

    monkeypatch.setattr(progress.Progress, "add", add)
    with pytest.raises(error):
        land(sim, store)
    monkeypatch.setattr(progress.Progress, "add", original)
    assert names(folder) == [], "never a partial landing: the parts written so far are removed"
    land(sim, store)
    assert_exactly(folder, sim)


def test_api_failure_mid_stream_leaves_nothing_complete(sim, store, monkeypatch):
    """The extraction itself fails after some pages: from the first written batch on, the API answers 503."""
    from airflow_provider_opsera import progress
    from airflow_provider_opsera.exceptions import OpseraAPIError

    folder = store["folder"]
    land(sim, store)
    before = landed(folder)
    late_arrivals(sim)
    settings = {**FAST, "page_size": PAGE, "max_retries": 1, "concurrency": 1}
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", sim.connection_json(settings))
    original = progress.Progress.add

    def add(self, n, stats=None):
        original(self, n, stats)
        sim.inject("503", times=None, log_type=LOG_TYPE)

    monkeypatch.setattr(progress.Progress, "add", add)
    with pytest.raises(OpseraAPIError, match="503"):
        land(sim, store)
    monkeypatch.setattr(progress.Progress, "add", original)
    sim.clear_faults()
    assert landed(folder) == before
    land(sim, store)
    assert_exactly(folder, sim)


# -- Postgres ------------------------------------------------------------------------------------------------
@pytest.fixture
def pg_schema(postgres_dsn, monkeypatch) -> Iterator[str]:
    import psycopg

    monkeypatch.setenv("AIRFLOW_CONN_POSTGRES_DEFAULT", postgres_conn_json(postgres_dsn))
    name = f"opsera_crash_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True) as pg:
        pg.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def table_state(dsn: str, schema: str) -> list[tuple[Any, ...]] | None:
    """Every row with its row version: equal states mean nothing was inserted, changed or even rewritten."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as pg:
        name = f'"{schema}"."opsera_{LOG_TYPE}_logs"'
        if pg.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is None:
            return None
        return pg.execute(f"SELECT xmin::text, _id, raw FROM {name} ORDER BY _id").fetchall()


def load(schema: str) -> dict[str, Any]:
    from airflow_provider_opsera.transfers.postgres import OpseraLogsToPostgresOperator

    op = OpseraLogsToPostgresOperator(task_id="load", log_type=LOG_TYPE, schema=schema, start=START, end=END)
    return op.execute(context())


def assert_table_is_the_truth(dsn: str, schema: str, sim: OpseraSimulator) -> None:
    rows = table_state(dsn, schema)
    assert rows is not None
    assert by_id(raw for _, _, raw in rows) == truth(sim)


def test_crash_mid_copy_in_the_first_load_leaves_no_table(sim, tmp_path, postgres_dsn, pg_schema):
    crash(kill_after=3, sink="postgres", schema=pg_schema)
    assert table_state(postgres_dsn, pg_schema) is None
    load(pg_schema)
    assert_table_is_the_truth(postgres_dsn, pg_schema, sim)


def test_crash_mid_copy_in_a_reload_keeps_the_previous_table(sim, tmp_path, postgres_dsn, pg_schema):
    load(pg_schema)
    before = table_state(postgres_dsn, pg_schema)
    assert before is not None and len(before) == 3000
    late_arrivals(sim)
    crash(kill_after=3, sink="postgres", schema=pg_schema)
    assert table_state(postgres_dsn, pg_schema) == before  # untouched: not a row added, changed or rewritten
    result = load(pg_schema)
    assert (result["rows"], result["inserted"], result["updated"]) == (3700, 700, 0)
    assert_table_is_the_truth(postgres_dsn, pg_schema, sim)


@pytest.mark.parametrize("error", [Interrupt, SystemExit])
def test_failure_mid_copy_rolls_back(sim, postgres_dsn, pg_schema, monkeypatch, error):
    from airflow_provider_opsera import progress

    load(pg_schema)
    before = table_state(postgres_dsn, pg_schema)
    late_arrivals(sim)
    original, calls = progress.Progress.add, []

    def add(self, n, stats=None):
        original(self, n, stats)
        calls.append(n)
        if len(calls) == 4:
            raise error("interrupted in the middle of the COPY")

    monkeypatch.setattr(progress.Progress, "add", add)
    with pytest.raises(error):
        load(pg_schema)
    monkeypatch.setattr(progress.Progress, "add", original)
    assert table_state(postgres_dsn, pg_schema) == before
    load(pg_schema)
    assert_table_is_the_truth(postgres_dsn, pg_schema, sim)
