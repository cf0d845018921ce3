"""Token hygiene: every operator, the sensor in each mode and the trigger, run with DEBUG logging everywhere.

The token must appear in no log line, exception, XCom value, rendered template field, trigger or task
instance row, asset event, landed file (manifest or part) or Postgres row. Airflow's secrets masker is made
blind to the token for these runs: the provider must not leak it, rather than rely on Airflow hiding the leak.
A loopback server that echoes the request's headers into its error bodies plays a misbehaving gateway.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import pathlib
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pendulum
import pytest
from airflow_compat import before
from loopback import LoopbackServer
from reliability_helpers import FAST, postgres_conn_json

from airflow_provider_opsera.catalogue import OpseraLogType
from airflow_provider_opsera.testing import OpseraSimulator

DAY = pendulum.datetime(2024, 5, 10, tz="UTC")
LOGICAL = DAY.add(days=1)  # CronDataIntervalTimetable("@daily"): the run of the 11th reads the 10th
LOG_TYPES = [t.value for t in OpseraLogType]
DEBUG_LOGGERS = (
    None,
    "urllib3",
    "requests",
    "aiohttp",
    "asyncio",
    "airflow",
    "airflow.task",
    "fsspec",
    "psycopg",
)

DAG_FILE = textwrap.dedent(
    """
    import pendulum
    from airflow.sdk import DAG, task

    from airflow_provider_opsera.operators.logs import (
        OpseraAuditLogsOperator,
        OpseraPipelineActivityLogsOperator,
        OpseraTokenActivityLogsOperator,
        OpseraUserActivityLogsOperator,
    )
    from airflow_provider_opsera.sensors.pipeline import OpseraPipelineStatusSensor
    from airflow_provider_opsera.transfers.postgres import OpseraLogsToPostgresOperator

    try:
        from airflow.sdk import CronDataIntervalTimetable
    except ImportError:
        from airflow.timetables.interval import CronDataIntervalTimetable

    DAILY = dict(
        schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
        start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
        catchup=False,
        default_args={"retries": 0},
    )
    OPERATORS = {
        "user_activity": OpseraUserActivityLogsOperator,
        "audit": OpseraAuditLogsOperator,
        "token_activity": OpseraTokenActivityLogsOperator,
        "pipeline_activity": OpseraPipelineActivityLogsOperator,
    }

    with DAG(dag_id="opsera_hygiene_logs", params={"folder": "", "type": ""}, **DAILY):
        for name, operator in OPERATORS.items():
            operator(task_id=f"land_{name}", output_path="{{ params.folder }}/" + name + "/{{ ds }}/")
            operator(task_id=f"xcom_{name}", max_xcom_records=100000)
        OpseraUserActivityLogsOperator(task_id="xcom_filtered", filters={"type": "{{ params.type }}"})
        # a gateway that echoes the request (the Authorization header included) into its 500 page
        OpseraAuditLogsOperator(task_id="fails_on_echo", opsera_conn_id="opsera_echo")

    with DAG(dag_id="opsera_hygiene_postgres", params={"schema": ""}, **DAILY):
        for name in OPERATORS:
            OpseraLogsToPostgresOperator(task_id=f"pg_{name}", log_type=name, schema="{{ params.schema }}")

    SENSOR = dict(step_name="anchore", pipeline_id="{{ params.pipeline_id }}", poke_interval=0.3, timeout=60)
    for mode, kwargs in {
        "poke": {"mode": "poke", "deferrable": False},
        "reschedule": {"mode": "reschedule", "deferrable": False},
        "deferrable": {"deferrable": True},
    }.items():
        with DAG(
            dag_id=f"opsera_hygiene_sensor_{mode}",
            schedule=None,
            start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
            params={"pipeline_id": ""},
            default_args={"retries": 0},
        ):
            OpseraPipelineStatusSensor(task_id="wait", **SENSOR, **kwargs)
            OpseraPipelineStatusSensor(task_id="fails_on_echo", opsera_conn_id="opsera_echo", **SENSOR, **kwargs)

    # The positive control: a task that does leak the token, to prove the checks would see a leak.
    with DAG(dag_id="opsera_hygiene_control", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):

        @task
        def leak():
            import logging

            from airflow_provider_opsera.compat import BaseHook

            password = BaseHook.get_connection("opsera_default").password
            logging.getLogger("airflow.task").warning("control leak: %s", password)
            return f"control leak: {password}"

        leak()
    """
)


#: Airflow 3.0's task supervisor logs its own requests at DEBUG, the connection's MaskSecret request with the
#: token in it ("Sending request msg=MaskSecret(value='<token>')"). These tests blind Airflow's masker to see
#: the provider's own lines, so on 3.0 they find Airflow's leak, not the provider's; 3.1 no longer logs it.
AIRFLOW_30_LOGS_THE_SECRET = pytest.mark.skipif(
    before("3.1"),
    reason="Airflow 3.0's supervisor logs MaskSecret(value=<token>) at DEBUG (Airflow's own line)",
)


# -- set-up ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dags_folder(tmp_path_factory) -> Iterator[pathlib.Path]:
    """``dag.test()`` runs only DAGs inside the configured DAGs folder: point it at this module's own."""
    import airflow.settings

    folder = tmp_path_factory.mktemp("hygiene_dags")
    (folder / "opsera_hygiene.py").write_text(DAG_FILE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(folder))
        mp.setattr(airflow.settings, "DAGS_FOLDER", str(folder))
        yield folder


@pytest.fixture(scope="module")
def dagbag(dags_folder, airflow_db):
    from airflow_compat import DagBag

    bag = DagBag(dag_folder=str(dags_folder))
    assert not bag.import_errors, bag.import_errors
    return bag


@pytest.fixture(scope="module")
def hygiene_sim() -> Iterator[OpseraSimulator]:
    with OpseraSimulator(seed=77) as sim:
        for log_type in LOG_TYPES:
            sim.generate(log_type, DAY, DAY.add(days=1), 300)
        yield sim


@pytest.fixture
def echo_server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as server:
        server.behaviour.mode, server.behaviour.status = "echo", 500
        yield server


@pytest.fixture
def blind_masker(hygiene_sim, monkeypatch) -> None:
    """Airflow's secrets masker never learns the token, so any leak by the provider stays visible."""
    import importlib

    for module in (
        "airflow.sdk._shared.secrets_masker.secrets_masker",
        "airflow._shared.secrets_masker.secrets_masker",
    ):
        try:
            cls = importlib.import_module(module).SecretsMasker
        except (ImportError, AttributeError):
            continue
        original = cls.add_mask

        def add_mask(self, secret, name=None, _original=original):
            if isinstance(secret, str) and hygiene_sim.token in secret:
                return None
            return _original(self, secret, name)

        monkeypatch.setattr(cls, "add_mask", add_mask)


@pytest.fixture
def debug_everywhere(caplog, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__LOGGING__LOGGING_LEVEL", "DEBUG")
    for name in DEBUG_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)


@pytest.fixture
def connections(hygiene_sim, echo_server, monkeypatch) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", hygiene_sim.connection_json({**FAST, "max_retries": 1}))
    echo = {"conn_type": "opsera", "host": echo_server.url, "password": hygiene_sim.token, "extra": FAST}
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_ECHO", json.dumps(echo))
    return hygiene_sim.token


# -- where a token could end up --------------------------------------------------------------------------------
def metadata_text(dag_ids: list[str]) -> str:
    """Everything Airflow stored about these DAGs' runs: XComs, rendered fields, task instances, triggers,
    asset events, run conf."""
    from airflow.models.asset import AssetEvent
    from airflow.models.dagrun import DagRun
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    chunks: list[str] = []
    with create_session() as session:
        for row in session.scalars(select(XComModel).where(XComModel.dag_id.in_(dag_ids))):
            chunks.append(f"xcom {row.task_id} {row.value!r}")
        for row in session.scalars(
            select(RenderedTaskInstanceFields).where(RenderedTaskInstanceFields.dag_id.in_(dag_ids))
        ):
            chunks.append(f"rtif {row.task_id} {json.dumps(row.rendered_fields, default=str)}")
        for ti in session.scalars(select(TaskInstance).where(TaskInstance.dag_id.in_(dag_ids))):
            chunks.append(f"ti {ti.task_id} {ti.state} {ti.next_kwargs!r} {ti.next_method!r} {ti.note!r}")
            if ti.trigger_id is not None:
                trigger = session.get(Trigger, ti.trigger_id)
                if trigger is not None:
                    chunks.append(f"trigger {trigger.classpath} {trigger.kwargs!r}")
        for trigger in session.scalars(select(Trigger)):
            chunks.append(f"trigger {trigger.classpath} {trigger.kwargs!r}")
        for run in session.scalars(select(DagRun).where(DagRun.dag_id.in_(dag_ids))):
            chunks.append(f"run {run.run_id} {run.conf!r}")
        for event in session.scalars(select(AssetEvent)):
            chunks.append(f"asset event {event.extra!r}")
    assert any(c.startswith("xcom ") for c in chunks) and any(c.startswith("rtif ") for c in chunks)
    return "\n".join(chunks)


def files_text(folder: pathlib.Path, since: float) -> str:
    """Every file under ``folder`` written since ``since``, gzip parts decompressed."""
    chunks = []
    for path in folder.rglob("*"):
        if path.is_file() and path.stat().st_mtime >= since - 1:
            data = path.read_bytes()
            if path.suffix == ".gz":
                data = gzip.decompress(data)
            chunks.append(f"{path}\n{data.decode('utf-8', 'replace')}")
    return "\n".join(chunks)


def captured(caplog, capfd) -> str:
    out, err = capfd.readouterr()
    return caplog.text + out + err


def assert_no_token(token: str, text: str, where: str) -> None:
    # The signature alone is distinctive too: a token cut or re-encoded on the way must not slip through.
    signature = token.rsplit(".", 1)[-1]
    assert token not in text, f"the token leaked into {where}"
    assert signature not in text, f"the token's signature leaked into {where}"


def task_states(dag_run) -> dict[str, str]:
    from airflow.utils.session import create_session

    with create_session() as session:
        return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances(session=session)}


# -- the runs ------------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("blind_masker", "debug_everywhere")
def test_the_checks_see_a_leak(dagbag, connections, caplog, capfd):
    """A task that logs and returns the token: with the masker blind, both checks must catch it."""
    token = connections
    run = dagbag.get_dag("opsera_hygiene_control").test()
    assert task_states(run) == {"leak": "success"}
    with pytest.raises(AssertionError, match="leaked into logs"):
        assert_no_token(token, captured(caplog, capfd), "logs")
    with pytest.raises(AssertionError, match="leaked into metadata"):
        assert_no_token(token, metadata_text(["opsera_hygiene_control"]), "metadata")


@AIRFLOW_30_LOGS_THE_SECRET
@pytest.mark.usefixtures("blind_masker", "debug_everywhere")
def test_log_operators_and_postgres_leak_no_token(
    dagbag, hygiene_sim, connections, echo_server, tmp_path, caplog, capfd, request, monkeypatch
):
    token = connections
    since = time.time()
    airflow_home = pathlib.Path(__import__("os").environ["AIRFLOW_HOME"])

    logs_run = dagbag.get_dag("opsera_hygiene_logs").test(
        logical_date=LOGICAL, run_conf={"folder": f"file://{tmp_path}", "type": "pipeline"}
    )
    states = task_states(logs_run)
    assert states.pop("fails_on_echo") == "failed"
    assert set(states.values()) == {"success"}, states
    assert echo_server.behaviour.seen and all(
        s.headers["Authorization"] == f"Bearer {token}" for s in echo_server.behaviour.seen
    ), "the echo server must have received the token, or the test proves nothing"
    dag_ids = ["opsera_hygiene_logs"]

    try:
        dsn = request.getfixturevalue("postgres_dsn")
    except pytest.skip.Exception:
        dsn = None
    pg_text = ""
    if dsn is not None:
        import psycopg

        schema = f"opsera_hygiene_{int(since)}"
        monkeypatch.setenv("AIRFLOW_CONN_POSTGRES_DEFAULT", postgres_conn_json(dsn))
        try:
            pg_run = dagbag.get_dag("opsera_hygiene_postgres").test(
                logical_date=LOGICAL, run_conf={"schema": schema}
            )
            assert set(task_states(pg_run).values()) == {"success"}
            with psycopg.connect(dsn, autocommit=True) as pg:
                for name in LOG_TYPES:
                    rows = pg.execute(f'SELECT t::text FROM "{schema}"."opsera_{name}_logs" t').fetchall()
                    assert len(rows) == 300
                    pg_text += "\n".join(r[0] for r in rows)
        finally:
            with psycopg.connect(dsn, autocommit=True) as pg:
                pg.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        dag_ids.append("opsera_hygiene_postgres")

    logs = captured(caplog, capfd)
    assert "Starting new HTTP connection" in logs, "DEBUG logging did not reach the capture"
    assert "You sent" in logs, "the echoed error page must have been logged (redacted)"
    assert_no_token(token, logs, "log lines or exceptions")
    assert_no_token(token, metadata_text(dag_ids), "Airflow's metadata (XCom, rendered fields, ...)")
    landed = files_text(tmp_path, since)
    assert "manifest.json" in landed
    assert_no_token(token, landed, "landed files")
    assert_no_token(token, files_text(airflow_home / "logs", since), "task log files")
    assert_no_token(token, pg_text, "Postgres rows")


def finish_after_first_look(sim: OpseraSimulator, pid: str) -> threading.Thread:
    """Script the anchore step's success 1.5 s after the sensor's first request, so it waits first."""

    def go() -> None:
        deadline = time.monotonic() + 120
        while sim.request_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        sim.script_run(
            pid, 174, [{"step_name": "anchore", "events": [(1.5, "success", "Anchore Scan Completed")]}]
        )

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


@AIRFLOW_30_LOGS_THE_SECRET
@pytest.mark.usefixtures("blind_masker", "debug_everywhere")
@pytest.mark.parametrize("mode", ["poke", "reschedule", "deferrable"])
def test_the_sensor_leaks_no_token(dagbag, hygiene_sim, connections, echo_server, caplog, capfd, mode):
    token = connections
    pid = f"hygiene{mode}".ljust(24, "0")
    hygiene_sim.script_run(pid, 174, [{"step_name": "anchore", "events": [(0, "analyzing", "Scan started")]}])
    hygiene_sim.reset_requests()
    finish_after_first_look(hygiene_sim, pid)
    dag_id = f"opsera_hygiene_sensor_{mode}"
    run = dagbag.get_dag(dag_id).test(run_conf={"pipeline_id": pid})
    assert task_states(run) == {"wait": "success", "fails_on_echo": "failed"}
    assert echo_server.behaviour.seen
    assert_no_token(token, captured(caplog, capfd), f"{mode} sensor logs or exceptions")
    assert_no_token(token, metadata_text([dag_id]), f"{mode} sensor metadata")


@pytest.mark.usefixtures("blind_masker", "debug_everywhere")
@pytest.mark.parametrize("outcome", ["success", "error"])
def test_the_trigger_leaks_no_token(hygiene_sim, connections, echo_server, caplog, capfd, outcome):
    from airflow_provider_opsera.triggers.pipeline import OpseraPipelineStatusTrigger

    token = connections
    pid = f"hygienetrigger{outcome}".ljust(24, "0")[:24]
    hygiene_sim.script_run(pid, 3, [{"step_name": "anchore", "events": [(-60, "success", "Scan done")]}])
    trigger = OpseraPipelineStatusTrigger(
        pipeline_id=pid,
        step_name="anchore",
        opsera_conn_id="opsera_default" if outcome == "success" else "opsera_echo",
        poll_interval=0.2,
        deadline=time.time() + 30,
    )

    async def first_event() -> Any:
        async for event in trigger.run():
            return event

    event = asyncio.run(first_event())
    assert event.payload["status"] == outcome, event.payload
    if outcome == "error":
        assert "You sent" in event.payload["message"]  # the echoed page, redacted
    _classpath, kwargs = trigger.serialize()
    text = captured(caplog, capfd) + json.dumps(event.payload, default=str) + json.dumps(kwargs, default=str)
    assert_no_token(token, text, f"the trigger ({outcome})")
