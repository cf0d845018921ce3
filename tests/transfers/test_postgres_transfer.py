"""OpseraLogsToPostgresOperator against the simulator on loopback and the real PostgreSQL.

Every test works in a schema of its own (``pg_schema``), dropped afterwards.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from typing import Any

import pendulum
import psycopg
import pytest
from pg_helpers import FAST, assert_table_is, conn_json, snapshot, when
from psycopg import sql

from airflow_provider_opsera import OpseraAPIError, OpseraError
from airflow_provider_opsera.catalogue import OpseraLogType
from airflow_provider_opsera.hooks.opsera import OpseraHook
from airflow_provider_opsera.responses import Record
from airflow_provider_opsera.transfers.postgres import OpseraLogsToPostgresOperator
from airflow_provider_opsera.transfers.postgres import sql as q
from airflow_provider_opsera.transfers.postgres.load import load_records
from airflow_provider_opsera.transfers.postgres.rows import OpseraRecordError, RowMapper
from airflow_provider_opsera.transfers.postgres.table import default_table

PIPELINE = OpseraLogType.PIPELINE_ACTIVITY
START = pendulum.datetime(2024, 4, 1)
TABLE = default_table(PIPELINE)


def run(op: OpseraLogsToPostgresOperator) -> dict[str, Any]:
    """``execute`` with the one context entry it uses (the real accessor Airflow gives a task)."""
    from airflow.sdk.execution_time.context import OutletEventAccessors

    return op.execute({"outlet_events": OutletEventAccessors()})  # type: ignore[arg-type]


def operator(schema: str, start: Any, end: Any, **kwargs: Any) -> OpseraLogsToPostgresOperator:
    kwargs.setdefault("log_type", PIPELINE)
    return OpseraLogsToPostgresOperator(
        task_id=f"load_{uuid.uuid4().hex[:6]}", schema=schema, start=start, end=end, **kwargs
    )


# -- the 50,000-record interval ---------------------------------------------------------------------------
def test_a_50000_record_interval_loads_exactly_and_a_rerun_changes_nothing(sim, postgres_conn, pg, pg_schema):
    end = START.add(days=30)
    sim.generate(PIPELINE, START, end, 50_000)
    truth = sim.ground_truth(PIPELINE, START, end)
    assert len(truth) == 50_000

    result = run(operator(pg_schema, START, end))
    assert result == {"rows": 50_000, "table": f"{pg_schema}.{TABLE}", "inserted": 50_000, "updated": 0}
    assert_table_is(pg, pg_schema, TABLE, PIPELINE, truth)
    indexes = {
        r[0] for r in pg.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = %s", (pg_schema,))
    }
    assert any("(created_at)" in i for i in indexes) and any("(pipeline_id, run_count)" in i for i in indexes)
    assert any("UNIQUE" in i and "(_id)" in i for i in indexes)

    before = snapshot(pg, pg_schema, TABLE)
    again = run(operator(pg_schema, START, end))
    assert again == {**result, "inserted": 0}
    assert snapshot(pg, pg_schema, TABLE) == before  # not even rewritten: same row versions, same loaded_at


def test_overlapping_intervals_leave_each_id_once(sim, postgres_conn, pg, pg_schema):
    end = START.add(days=6)
    sim.generate(PIPELINE, START, end, 3000)
    first = run(operator(pg_schema, START, START.add(days=4)))
    second = run(operator(pg_schema, START.add(days=2), end))
    assert first["inserted"] + second["inserted"] == 3000 and second["rows"] > second["inserted"]
    assert_table_is(pg, pg_schema, TABLE, PIPELINE, sim.ground_truth(PIPELINE, START, end))


def _record(rid: str, **fields: Any) -> Record:
    payload = {
        "_id": rid,
        "status": "running",
        "run_count": 1,
        **fields,
        "createdAt": "2024-04-01T10:00:00.000Z",
    }
    return Record(rid, "2024-04-01T10:00:00.000000Z", None, json.dumps(payload).encode())


def test_an_id_twice_in_a_first_load_fails_and_creates_nothing(pg, pg_schema, postgres_dsn):
    # A first load COPYs straight into the new table: the primary key, built after the rows, catches it.
    with (
        psycopg.connect(postgres_dsn) as conn,
        pytest.raises(OpseraError, match="record _id=a came more than once in this load"),
    ):
        load_records(
            conn, RowMapper(PIPELINE), [[_record("a"), _record("b")], [_record("a")]], pg_schema, "runs"
        )
    assert pg.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (pg_schema,)).fetchone() is None


def _definition(pg: Any, schema: str, table: str) -> tuple[Any, ...]:
    columns = pg.execute(
        "SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        (schema, table),
    ).fetchall()
    indexes = pg.execute(
        "SELECT replace(indexdef, %s, 'T') FROM pg_indexes WHERE schemaname = %s AND tablename = %s "
        "ORDER BY indexname",
        (table, schema, table),
    ).fetchall()
    constraints = pg.execute(
        "SELECT conname, contype FROM pg_constraint WHERE conrelid = %s::regclass ORDER BY conname",
        (f'"{schema}"."{table}"',),
    ).fetchall()
    return columns, indexes, [(name.replace(table, "T"), kind) for name, kind in constraints]


def test_a_first_load_and_a_load_into_an_existing_table_leave_the_same_table(pg, pg_schema, postgres_dsn):
    records = [_record("a", step_configuration={"tool": "jenkins"}), _record("b", api_response=[1])]
    with psycopg.connect(postgres_dsn) as conn:
        first = load_records(conn, RowMapper(PIPELINE), [records], pg_schema, "first")
    # The other path: an empty table created by the upsert path's own statement, then loaded.
    pg.execute(q.create_table(RowMapper(PIPELINE).layout, pg_schema, "upserted"))
    for statement in q.create_indexes(RowMapper(PIPELINE).layout, pg_schema, "upserted"):
        pg.execute(statement)
    with psycopg.connect(postgres_dsn) as conn:
        upserted = load_records(conn, RowMapper(PIPELINE), [records], pg_schema, "upserted")
    assert (first.rows, first.inserted, first.updated, first.created) == (2, 2, 0, True)
    assert (upserted.rows, upserted.inserted, upserted.updated, upserted.created) == (2, 2, 0, False)
    assert _definition(pg, pg_schema, "first") == _definition(pg, pg_schema, "upserted")
    query = "SELECT _id, created_at, status, run_count, step_configuration, api_response, raw FROM {} ORDER BY _id"
    rows = [
        pg.execute(sql.SQL(query).format(sql.Identifier(pg_schema, t))).fetchall()
        for t in ("first", "upserted")
    ]
    assert rows[0] == rows[1] and rows[0][0][4] == {"tool": "jenkins"} and rows[0][1][5] == [1]


def test_a_changed_record_is_updated_and_no_other_row_is_touched(pg, pg_schema, postgres_dsn):
    mapper = RowMapper(PIPELINE)
    with psycopg.connect(postgres_dsn) as conn:
        load_records(conn, mapper, [[_record("a"), _record("b")]], pg_schema, "runs")
    query = sql.SQL("SELECT _id, xmin::text, loaded_at, status, raw->>'status' FROM {} ORDER BY _id")
    loaded = query.format(sql.Identifier(pg_schema, "runs"))
    before = {r[0]: r for r in pg.execute(loaded)}
    with psycopg.connect(postgres_dsn) as conn:
        changed = [_record("a"), _record("b", status="success")]
        result = load_records(conn, mapper, [changed], pg_schema, "runs")
    assert (result.rows, result.inserted, result.updated, result.unchanged) == (2, 0, 1, 1)
    after = {r[0]: r for r in pg.execute(loaded)}
    assert after["a"] == before["a"]
    assert after["b"][1] != before["b"][1] and after["b"][2] > before["b"][2]  # new version, new loaded_at
    assert after["b"][3:] == ("success", "success")


def test_jsonb_fields_come_from_raw_and_a_mistyped_one_is_null_in_raw_only_mode(pg, pg_schema, postgres_dsn):
    records = [
        _record("obj", step_configuration={"tool": "jenkins"}, api_response=[1, {"a": None}]),
        _record("none", step_configuration=None),
        _record("scalar", step_configuration="jenkins", api_response=7),
    ]
    with psycopg.connect(postgres_dsn) as conn, pytest.raises(OpseraRecordError, match="_id=scalar"):
        load_records(conn, RowMapper(PIPELINE), [records], pg_schema, "runs")
    with psycopg.connect(postgres_dsn) as conn:
        load_records(conn, RowMapper(PIPELINE, "raw_only"), [records], pg_schema, "runs")
    query = sql.SQL(
        "SELECT _id, step_configuration, api_response, raw->'step_configuration' FROM {} ORDER BY _id"
    )
    assert pg.execute(query.format(sql.Identifier(pg_schema, "runs"))).fetchall() == [
        ("none", None, None, None),
        ("obj", {"tool": "jenkins"}, [1, {"a": None}], {"tool": "jenkins"}),
        ("scalar", None, None, "jenkins"),
    ]


def test_an_id_staged_twice_fails_rather_than_pick_one(pg, pg_schema, postgres_dsn):
    mapper = RowMapper(PIPELINE)
    with psycopg.connect(postgres_dsn) as conn:
        load_records(conn, mapper, [[_record("a")]], pg_schema, "runs")
    before = snapshot(pg, pg_schema, "runs")
    with (
        psycopg.connect(postgres_dsn) as conn,
        pytest.raises(OpseraError, match="record _id=a came more than once in this load"),
    ):
        load_records(
            conn, mapper, [[_record("a"), _record("b")], [_record("a", status="x")]], pg_schema, "runs"
        )
    assert snapshot(pg, pg_schema, "runs") == before


# -- failures leave the table as it was ------------------------------------------------------------------
@pytest.fixture
def preloaded(sim, postgres_conn, pg, pg_schema, monkeypatch):
    """Ten days of records, the first three already loaded; a slow, sequential, never-retrying connection."""
    end = START.add(days=10)
    sim.generate(PIPELINE, START, end, 12_000)
    run(operator(pg_schema, START, START.add(days=3)))
    monkeypatch.setenv(
        "AIRFLOW_CONN_OPSERA_DEFAULT", sim.connection_json({**FAST, "max_retries": 0, "concurrency": 1})
    )
    sim.config.latency = 0.02  # a window of a second or more in which to strike mid-stream
    sim.reset_requests()
    return end, snapshot(pg, pg_schema, TABLE)


def test_an_api_error_mid_stream_leaves_the_table_unchanged(sim, pg, pg_schema, preloaded):
    end, before = preloaded
    watcher = when(lambda: sim.request_count() >= 15, lambda: sim.inject("503", times=None))
    with pytest.raises(OpseraAPIError, match="HTTP 503"):
        run(operator(pg_schema, START, end))
    watcher.join()
    assert sim.request_count(status=200) >= 15  # pages had streamed into COPY before the failure
    assert snapshot(pg, pg_schema, TABLE) == before


def test_a_bad_record_mid_stream_fails_by_name_and_leaves_the_table_unchanged(sim, pg, pg_schema, preloaded):
    end, before = preloaded
    bad = {"_id": "66100000aaaaaaaaaaaaaaaa", "pipeline_id": "p1", "run_count": "seven", "type": "sdlc"}
    sim.add_records(PIPELINE, [{**bad, "createdAt": "2024-04-07T12:00:00.000Z"}])
    with pytest.raises(OpseraRecordError) as err:
        run(operator(pg_schema, START, end))
    assert (err.value.record_id, err.value.field) == (bad["_id"], "run_count")
    assert "_id=66100000aaaaaaaaaaaaaaaa: field 'run_count' should be an integer" in str(err.value)
    assert snapshot(pg, pg_schema, TABLE) == before

    # The author's choice: keep such values only in raw.
    sim.config.latency = 0
    result = run(operator(pg_schema, START, end, on_type_mismatch="raw_only"))
    assert result["rows"] == 12_001
    row = pg.execute(
        f'SELECT run_count, raw FROM "{pg_schema}"."{TABLE}" WHERE _id = %s', (bad["_id"],)
    ).fetchone()
    assert row[0] is None and row[1]["run_count"] == "seven"


def test_losing_the_database_connection_mid_stream_leaves_the_table_unchanged(
    sim, pg, pg_schema, preloaded, monkeypatch, postgres_dsn
):
    from airflow_compat import postgres_driver

    end, before = preloaded
    app = f"opsera-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("AIRFLOW_CONN_POSTGRES_KILLABLE", conn_json(postgres_dsn, application_name=app))
    killed = threading.Event()
    watch = psycopg.connect(postgres_dsn, autocommit=True)  # the watcher thread's own connection

    def copying() -> bool:
        query = "SELECT 1 FROM pg_stat_activity WHERE application_name = %s AND query LIKE 'COPY%%'"
        return sim.request_count() >= 15 and watch.execute(query, (app,)).fetchone() is not None

    def kill() -> None:
        watch.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (app,)
        )
        killed.set()

    watcher = when(copying, kill)
    try:
        driver = postgres_driver()
        # psycopg 3 says OperationalError; psycopg2 (Airflow 3.0) may say InterfaceError ("cursor already
        # closed") when the backend dies between two statements (here: a chunk's COPY and its ROLLBACK TO
        # SAVEPOINT). Either way the connection is gone and the table must be as it was.
        with pytest.raises((driver.OperationalError, driver.InterfaceError)):
            run(operator(pg_schema, START, end, postgres_conn_id="postgres_killable"))
        watcher.join()
    finally:
        watch.close()
    assert killed.is_set()
    assert snapshot(pg, pg_schema, TABLE) == before


def test_a_failed_first_load_creates_nothing(sim, postgres_conn, pg, pg_schema):
    sim.generate(PIPELINE, START, START.add(days=2), 500)
    sim.add_records(PIPELINE, [{"_id": "bad1", "createdAt": "2024-04-01T12:00:00.000Z", "step_index": "2"}])
    with pytest.raises(OpseraRecordError, match="_id=bad1: field 'step_index'"):
        run(operator(pg_schema, START, START.add(days=2)))
    assert pg.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (pg_schema,)).fetchone() is None


def test_an_interval_without_records_creates_the_empty_table(sim, postgres_conn, pg, pg_schema):
    result = run(operator(pg_schema, START, START.add(days=1), log_type="audit"))
    assert result == {"rows": 0, "table": f"{pg_schema}.opsera_audit_logs", "inserted": 0, "updated": 0}
    assert snapshot(pg, pg_schema, "opsera_audit_logs") == []


# -- schema drift, names, existing tables ------------------------------------------------------------------
def test_a_new_field_loads_and_stays_in_raw(sim, postgres_conn, pg, pg_schema):
    sim.generate(OpseraLogType.AUDIT, START, START.add(days=1), 300, risk_score=[1, 2, 3])
    truth = sim.ground_truth(OpseraLogType.AUDIT, START, START.add(days=1))
    assert all("risk_score" in r for r in truth)
    run(operator(pg_schema, START, START.add(days=1), log_type="audit"))
    assert_table_is(pg, pg_schema, "opsera_audit_logs", OpseraLogType.AUDIT, truth)
    columns = {
        r[0]
        for r in pg.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s", (pg_schema,)
        )
    }
    assert "risk_score" not in columns and {"user_email", "updated_at", "loaded_at", "raw"} <= columns


def test_any_schema_and_table_name_is_quoted_safely(sim, postgres_conn, pg, pg_schema):
    sim.generate(OpseraLogType.TOKEN_ACTIVITY, START, START.add(days=1), 50)
    table = 'Token "Logs"; DROP TABLE x; --'
    result = run(operator(pg_schema, START, START.add(days=1), log_type="token_activity", table=table))
    assert result["table"] == f"{pg_schema}.{table}" and result["rows"] == 50
    assert_table_is(
        pg,
        pg_schema,
        table,
        OpseraLogType.TOKEN_ACTIVITY,
        sim.ground_truth("token_activity", START, START.add(days=1)),
    )


def test_an_existing_table_gains_missing_columns_and_a_foreign_table_is_refused(
    sim, postgres_conn, pg, pg_schema
):
    sim.generate(OpseraLogType.USER_ACTIVITY, START, START.add(days=1), 100)
    pg.execute(f'CREATE SCHEMA "{pg_schema}"')
    pg.execute(
        f'CREATE TABLE "{pg_schema}".old (_id text PRIMARY KEY, created_at timestamptz NOT NULL, raw jsonb NOT NULL)'
    )
    run(operator(pg_schema, START, START.add(days=1), log_type="user_activity", table="old"))
    assert_table_is(
        pg,
        pg_schema,
        "old",
        OpseraLogType.USER_ACTIVITY,
        sim.ground_truth("user_activity", START, START.add(days=1)),
    )

    pg.execute(f'CREATE TABLE "{pg_schema}".other (id int)')
    with pytest.raises(Exception, match=r"exists but lacks the column\(s\) _id, created_at, raw"):
        run(operator(pg_schema, START, START.add(days=1), log_type="user_activity", table="other"))


# -- drivers and concurrency --------------------------------------------------------------------------------
TRICKY = [
    "tab\there",
    "new\nline and \r return",
    "back\\slash \\N and \\\\",
    "quote \" and ' and emoji \U0001f680 and ünïcödé",
    "\x01 control \x1f",
]


def test_psycopg2_connections_load_the_same_rows(sim, pg, pg_schema, postgres_dsn):
    """Where PostgresHook still hands out psycopg2 (SQLAlchemy 1.x), the load streams through copy_expert."""
    psycopg2 = pytest.importorskip("psycopg2")
    sim.generate(PIPELINE, START, START.add(days=1), 500)
    sim.add_records(
        PIPELINE,
        [
            {
                "_id": f"tricky{i}",
                "createdAt": "2024-04-01T06:00:00.000Z",
                "message": text,
                "api_response": {"m": text},
            }
            for i, text in enumerate(TRICKY)
        ],
    )
    hook = OpseraHook()
    for name, connect in (
        ("v3", lambda: psycopg.connect(postgres_dsn)),
        ("v2", lambda: psycopg2.connect(postgres_dsn)),
    ):
        conn = connect()
        try:
            batches = hook.iter_log_batches(PIPELINE, START, START.add(days=1), raw=True)
            result = load_records(conn, RowMapper(PIPELINE), batches, pg_schema, name)
        finally:
            conn.close()
        assert result.inserted == 505
        assert_table_is(pg, pg_schema, name, PIPELINE, sim.ground_truth(PIPELINE, START, START.add(days=1)))
    messages = pg.execute(
        f'SELECT message FROM "{pg_schema}".v2 WHERE _id LIKE %s ORDER BY _id', ("tricky%",)
    ).fetchall()
    assert [m for (m,) in messages] == TRICKY


def test_concurrent_overlapping_loads_into_one_table(sim, postgres_conn, pg, pg_schema):
    end = START.add(days=4)
    sim.generate(PIPELINE, START, end, 4000)
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def load(lo: Any, hi: Any) -> None:
        try:
            results.append(run(operator(pg_schema, lo, hi)))
        except BaseException as err:
            errors.append(err)

    threads = [
        threading.Thread(target=load, args=span)
        for span in ((START, end), (START.add(days=1), end), (START, end))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(r["inserted"] for r in results) == 4000
    assert_table_is(pg, pg_schema, TABLE, PIPELINE, sim.ground_truth(PIPELINE, START, end))


def test_a_load_stages_its_records_while_another_load_creates_the_table(
    sim, postgres_conn, pg, pg_schema, postgres_dsn
):
    # A first load holds the table's lock until it commits; a load started meanwhile must not queue behind it
    # with its extraction stopped (a backfill's runs would then go one at a time): it stages its records and
    # waits only to upsert them.
    end = START.add(days=2)
    sim.generate(PIPELINE, START, end, 1500)
    results: list[dict[str, Any]] = []
    with psycopg.connect(postgres_dsn) as holder:  # stands in for a first load still streaming
        assert holder.execute(q.TRY_LOCK_TABLE, (f"{pg_schema}.{TABLE}",)).fetchone() == (True,)
        loader = threading.Thread(target=lambda: results.append(run(operator(pg_schema, START, end))))
        loader.start()
        # One capped answer for the two days, then one per day: the whole interval, fetched under the lock...
        deadline = time.monotonic() + 60
        while sim.request_count(PIPELINE) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        assert sim.request_count(PIPELINE) == 3
        assert loader.is_alive() and not results  # ...while the upsert waits for it
        holder.rollback()  # the "first load" fails: this load creates the table itself
    loader.join(60)
    assert results == [{"rows": 1500, "table": f"{pg_schema}.{TABLE}", "inserted": 1500, "updated": 0}]
    assert_table_is(pg, pg_schema, TABLE, PIPELINE, sim.ground_truth(PIPELINE, START, end))


# -- parameters, lineage -----------------------------------------------------------------------------------
def test_parameters_are_checked_early():
    with pytest.raises(ValueError, match="Unknown Opsera log type"):
        OpseraLogsToPostgresOperator(task_id="t", log_type="builds")
    with pytest.raises(ValueError, match="does not take filter 'scope'"):
        OpseraLogsToPostgresOperator(task_id="t", log_type="audit", filters={"scope": "api"})
    with pytest.raises(ValueError, match="on_type_mismatch"):
        OpseraLogsToPostgresOperator(task_id="t", log_type="audit", on_type_mismatch="skip")
    op = OpseraLogsToPostgresOperator(
        task_id="t", log_type="audit", filters={"action": "{{ params.action }}"}
    )
    assert op.table == "opsera_audit_logs" and op.schema == "public"
    assert {"start", "end", "filters", "table", "schema", "postgres_conn_id"} <= set(op.template_fields)
    assert op.asset_alias in op.outlets


def test_an_empty_interval_says_how_to_fix_it(sim, postgres_conn, pg_schema):
    with pytest.raises(ValueError, match="CronDataIntervalTimetable"):
        run(operator(pg_schema, START, START))
    with pytest.raises(ValueError, match=r"no data interval.*CronDataIntervalTimetable"):
        run(operator(pg_schema, "None", START))


def test_filters_select_records_and_a_blank_filter_value_filters_on_nothing(
    sim, postgres_conn, pg, pg_schema
):
    end = START.add(days=1)
    sim.generate(PIPELINE, START, end, 400)
    sdlc = run(operator(pg_schema, START, end, filters={"type": "sdlc"}, table="sdlc"))
    truth = sim.ground_truth(PIPELINE, START, end, {"type": "sdlc"})
    assert 0 < sdlc["rows"] == len(truth) < 400
    assert_table_is(pg, pg_schema, "sdlc", PIPELINE, truth)
    assert run(operator(pg_schema, START, end, filters={"type": ""}, table="all"))["rows"] == 400


def test_the_table_is_the_openlineage_output(sim, postgres_conn, pg_schema):
    pytest.importorskip("airflow.providers.openlineage", reason="the OpenLineage provider is not installed")
    sim.generate(PIPELINE, START, START.add(days=1), 10)
    op = operator(pg_schema, START, START.add(days=1))
    run(op)
    lineage = op.get_openlineage_facets_on_complete(None)
    assert lineage.outputs[0].namespace == "postgres://127.0.0.1:5432"
    assert lineage.outputs[0].name == f"test.{pg_schema}.{TABLE}"
    assert lineage.inputs[0].name == "/api/v1/logs/pipelines"


def test_the_openlineage_output_carries_the_schema_and_the_row_count(
    sim, postgres_conn, pg_schema, monkeypatch
):
    pytest.importorskip("airflow.providers.openlineage", reason="the OpenLineage provider is not installed")
    sim.generate(PIPELINE, START, START.add(days=1), 25)
    op = operator(pg_schema, START, START.add(days=1))
    assert run(op)["rows"] == 25
    lineage = op.get_openlineage_facets_on_complete(None)
    (source,) = lineage.inputs
    assert (source.namespace, source.name) == (sim.url, "/api/v1/logs/pipelines")
    assert {"_id", "createdAt", "run_count"} <= {f.name for f in source.facets["schema"].fields}
    (target,) = lineage.outputs
    assert target.outputFacets["outputStatistics"].rowCount == 25
    columns = {f.name: f.type for f in target.facets["schema"].fields}
    assert columns["_id"] == "text" and columns["raw"] == "jsonb" and columns["loaded_at"] == "timestamptz"
    assert columns["run_count"] == "integer"

    # As if the OpenLineage provider were not installed: no lineage, and no error, even after a run.
    monkeypatch.setitem(sys.modules, "airflow.providers.openlineage.extractors", None)
    assert op.get_openlineage_facets_on_complete(None) is None
