"""A pre-existing relation that cannot take a load is refused before any row moves, with an error that names the
table, the column and what is expected (and no request reaches the API)."""

from __future__ import annotations

import uuid
from typing import Any

import pendulum
import pytest

from airflow_provider_opsera import OpseraError
from airflow_provider_opsera.catalogue import OpseraLogType
from airflow_provider_opsera.transfers.postgres import OpseraLogsToPostgresOperator

USER = OpseraLogType.USER_ACTIVITY
START = pendulum.datetime(2024, 4, 1)
END = START.add(days=1)
GOOD = "_id text PRIMARY KEY, created_at timestamptz NOT NULL, raw jsonb NOT NULL"


def run(schema: str, table: str) -> dict[str, Any]:
    from airflow.sdk.execution_time.context import OutletEventAccessors

    op = OpseraLogsToPostgresOperator(
        task_id=f"load_{uuid.uuid4().hex[:6]}",
        log_type=USER,
        schema=schema,
        table=table,
        start=START,
        end=END,
    )
    return op.execute({"outlet_events": OutletEventAccessors()})  # type: ignore[arg-type]


MISFITS = [
    pytest.param(
        "_id text, created_at timestamptz NOT NULL, raw jsonb NOT NULL",
        r"it has no primary key \(or unique index\) on _id alone.*ADD PRIMARY KEY \(_id\)",
        id="no-primary-key",
    ),
    pytest.param(
        "_id text UNIQUE, created_at timestamptz NOT NULL, raw jsonb NOT NULL, CHECK (true)",
        None,
        id="a-unique-constraint-serves",
    ),
    pytest.param(
        "_id bigint PRIMARY KEY, created_at timestamptz NOT NULL, raw jsonb NOT NULL",
        r"column _id is bigint, but an Opsera user_activity table needs text there",
        id="id-bigint",
    ),
    pytest.param(
        "_id text PRIMARY KEY, created_at timestamptz NOT NULL, raw json NOT NULL",
        r"column raw is json, but an Opsera user_activity table needs jsonb there",
        id="raw-json",
    ),
    pytest.param(
        f"{GOOD}, tenant text NOT NULL",
        r"column tenant is NOT NULL without a default.*not a column of an Opsera user_activity table.*"
        r"DROP NOT NULL",
        id="extra-not-null",
    ),
    pytest.param(f"{GOOD}, tenant text NOT NULL DEFAULT 'acme'", None, id="extra-not-null-with-default"),
    pytest.param(
        f"{GOOD}, action integer",
        r"column action is integer, but an Opsera user_activity table needs text there",
        id="action-integer",
    ),
    pytest.param(
        "_id text PRIMARY KEY, created_at text NOT NULL, raw jsonb NOT NULL",
        r"column created_at is text, but an Opsera user_activity table needs timestamptz there",
        id="created-at-text",
    ),
    pytest.param(
        "_id text PRIMARY KEY, created_at timestamp NOT NULL, raw jsonb NOT NULL",
        r"column created_at is timestamp without time zone, but .* needs timestamptz",
        id="created-at-without-zone",
    ),
    pytest.param(
        f"{GOOD}, user_email varchar(20)",
        r"column user_email is character varying\(20\), but .* needs text",
        id="bounded-varchar",
    ),
]


@pytest.mark.parametrize(("columns", "refused"), MISFITS)
def test_an_existing_table_that_does_not_fit_is_refused_before_any_row_moves(
    sim, postgres_conn, pg, pg_schema, columns, refused
):
    sim.generate(USER, START, END, 40)
    pg.execute(f'CREATE SCHEMA "{pg_schema}"')
    pg.execute(f'CREATE TABLE "{pg_schema}".logs ({columns})')
    if refused is None:  # a table that fits, though not as the provider would make it
        assert run(pg_schema, "logs")["rows"] == 40
        assert pg.execute(f'SELECT count(*) FROM "{pg_schema}".logs').fetchone()[0] == 40
        return
    with pytest.raises(OpseraError, match=rf"^Table {pg_schema}\.logs cannot take this load: {refused}"):
        run(pg_schema, "logs")
    assert pg.execute(f'SELECT count(*) FROM "{pg_schema}".logs').fetchone()[0] == 0
    assert sim.request_count() == 0, "the API was read before the table was checked"


@pytest.mark.parametrize(
    ("ddl", "kind"),
    [
        ("CREATE VIEW {t} AS SELECT 'x'::text AS _id, now() AS created_at, '{{}}'::jsonb AS raw", "a view"),
        (
            "CREATE MATERIALIZED VIEW {t} AS SELECT 'x'::text AS _id, now() AS created_at, '{{}}'::jsonb AS raw",
            "a materialized view",
        ),
        ("CREATE SEQUENCE {t}", "a sequence"),
    ],
)
def test_a_view_or_other_relation_of_that_name_is_refused(sim, postgres_conn, pg, pg_schema, ddl, kind):
    sim.generate(USER, START, END, 5)
    pg.execute(f'CREATE SCHEMA "{pg_schema}"')
    pg.execute(ddl.format(t=f'"{pg_schema}".logs'))
    with pytest.raises(
        OpseraError, match=rf"Table {pg_schema}\.logs cannot take this load: it is {kind}, not a table"
    ):
        run(pg_schema, "logs")
    assert sim.request_count() == 0


def test_the_provider_s_own_table_fits_on_every_later_load(sim, postgres_conn, pg, pg_schema):
    sim.generate(USER, START, END, 30)
    assert run(pg_schema, "logs")["rows"] == 30
    sim.generate(USER, START, END, 5)
    assert run(pg_schema, "logs")["rows"] == 35
