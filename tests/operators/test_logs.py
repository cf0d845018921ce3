"""The log operators against the simulator: construction, XCom and landing paths, outlets, lineage, errors."""

from __future__ import annotations

import json
import sys

import pendulum
import pytest
from airflow.sdk import DAG, Asset, AssetAlias, ObjectStoragePath

from airflow_provider_opsera.catalogue import OpseraLogType
from airflow_provider_opsera.landing import iter_landed_records, read_manifest
from airflow_provider_opsera.operators import outlets
from airflow_provider_opsera.operators.logs import (
    OpseraAuditLogsOperator,
    OpseraLogsOperator,
    OpseraPipelineActivityLogsOperator,
    OpseraTokenActivityLogsOperator,
    OpseraUserActivityLogsOperator,
)

DAY = pendulum.datetime(2024, 5, 9, tz="UTC")
NEXT = DAY.add(days=1)
FAST_RETRIES = {"retry_min_wait": 0.01, "retry_max_wait": 0.1}


@pytest.fixture
def sim(opsera_simulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", opsera_simulator.connection_json(FAST_RETRIES))
    return opsera_simulator


def run(op: OpseraLogsOperator):
    """Execute as a worker would after rendering: the context needs only the outlet event accessors."""
    from airflow.sdk.execution_time.context import OutletEventAccessors

    context = {"outlet_events": OutletEventAccessors()}
    return op.execute(context), context  # type: ignore[arg-type]


# -- construction ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cls", "log_type"),
    [
        (OpseraUserActivityLogsOperator, "user_activity"),
        (OpseraAuditLogsOperator, "audit"),
        (OpseraTokenActivityLogsOperator, "token_activity"),
        (OpseraPipelineActivityLogsOperator, "pipeline_activity"),
    ],
)
def test_each_subclass_fixes_its_log_type(cls, log_type):
    op = cls(task_id="t")
    assert op.log_type == log_type
    assert {"start", "end", "filters", "output_path"} <= set(op.template_fields)
    assert (op.start, op.end) == ("{{ data_interval_start }}", "{{ data_interval_end }}")
    assert op.opsera_conn_id == "opsera_default"
    assert op.max_xcom_records == 1000
    with pytest.raises(ValueError, match=f"always reads {log_type}"):
        cls(task_id="u", log_type="audit" if log_type != "audit" else "token_activity")


def test_the_shared_operator_takes_any_log_type_and_needs_one():
    assert OpseraLogsOperator(task_id="a", log_type=OpseraLogType.AUDIT).log_type == "audit"
    assert OpseraLogsOperator(task_id="b", log_type="pipeline_activity").log_type == "pipeline_activity"
    with pytest.raises(ValueError, match="needs log_type"):
        OpseraLogsOperator(task_id="c")
    with pytest.raises(ValueError, match="Unknown Opsera log type"):
        OpseraLogsOperator(task_id="d", log_type="deploys")


def test_a_wrong_filter_key_fails_when_the_dag_is_parsed():
    with pytest.raises(ValueError, match="allowed: scope"):
        OpseraTokenActivityLogsOperator(task_id="t", filters={"type": "api"})
    with pytest.raises(ValueError, match="selects time or pages"):
        OpseraAuditLogsOperator(task_id="t", filters={"page": 2})
    OpseraAuditLogsOperator(task_id="ok", filters={"user_email": "{{ params.email }}", "action": None})


@pytest.mark.parametrize(
    ("output_path", "expected"),
    [
        ("s3://bucket/opsera/audit/", Asset(uri="s3://bucket/opsera/audit")),
        ("s3://aws_prod@bucket/opsera/audit", Asset(uri="s3://bucket/opsera/audit")),
        ("file:///data/opsera/audit/", Asset(uri="file:///data/opsera/audit")),
        ("s3://bucket/opsera/audit/dt={{ ds }}/", Asset(uri="s3://bucket/opsera/audit")),
        ("s3://bucket/{{ ds }}/audit/", Asset(uri="s3://bucket")),
        ("{{ var.value.base }}/opsera/audit/dt={{ ds }}/", AssetAlias(name="opsera:d.t")),
        ("s3://{{ var.value.bucket }}/audit/", AssetAlias(name="opsera:d.t")),
    ],
)
def test_outlet_is_the_dataset_folder(output_path, expected):
    with DAG("d", schedule=None):
        op = OpseraAuditLogsOperator(task_id="t", output_path=output_path)
    assert op.outlets == [expected]


def test_no_output_path_no_outlet():
    assert OpseraAuditLogsOperator(task_id="t").outlets == []


@pytest.mark.parametrize(
    ("template", "folder"),
    [
        ("s3://b/opsera/audit/dt={{ ds }}/", "s3://b/opsera/audit/"),
        ("{{ params.base }}/opsera/audit/dt={{ ds }}/", "{{ params.base }}/opsera/audit/"),
        ("{{ params.base }}/opsera/audit/", "{{ params.base }}/opsera/audit/"),
        ("s3://{{ params.bucket }}/x/", "s3://{{ params.bucket }}/x/"),
        ("/data/{{ ds }}", "/data/"),
        ("s3://b/x/", "s3://b/x/"),
    ],
)
def test_dataset_folder(template, folder):
    assert outlets.dataset_folder(template) == folder


# -- XCom path ------------------------------------------------------------------------------------------------
def test_without_output_path_the_records_are_the_xcom_value(sim):
    sim.generate("token_activity", DAY, NEXT, 120)
    sim.generate("token_activity", NEXT, NEXT.add(hours=1), 5)
    op = OpseraTokenActivityLogsOperator(task_id="t", start=DAY.isoformat(), end=str(NEXT))
    records, _ = run(op)
    truth = sim.ground_truth("token_activity", DAY, NEXT)
    assert len(records) == len(truth) == 120
    assert sorted(records, key=lambda r: r["_id"]) == sorted(truth, key=lambda r: r["_id"])
    json.dumps(records)  # XCom-serialisable


def test_more_records_than_max_xcom_records_is_a_clear_error(sim):
    sim.generate("user_activity", DAY, NEXT, 60)
    op = OpseraUserActivityLogsOperator(task_id="t", start=DAY, end=NEXT, max_xcom_records=50)
    with pytest.raises(ValueError, match=r"more than max_xcom_records=50 .* Set output_path"):
        run(op)


def test_filters_pass_through_and_empty_rendered_values_filter_nothing(sim):
    sim.generate("pipeline_activity", DAY, NEXT, 300)
    op = OpseraPipelineActivityLogsOperator(task_id="t", start=DAY, end=NEXT, filters={"type": "sdlc"})
    records, _ = run(op)
    expected = sim.ground_truth("pipeline_activity", DAY, NEXT, {"type": "sdlc"})
    assert 0 < len(records) < 300
    assert {r["_id"] for r in records} == {r["_id"] for r in expected}

    op = OpseraPipelineActivityLogsOperator(task_id="u", start=DAY, end=NEXT, filters={"type": "{{ x }}"})
    op.filters = {"type": "None"}  # what "{{ params.type }}" renders to when the param is unset
    records, _ = run(op)
    assert len(records) == 300


# -- the empty interval ---------------------------------------------------------------------------------------
def test_an_empty_interval_tells_the_author_what_to_do(sim):
    op = OpseraAuditLogsOperator(task_id="t", start=DAY, end=DAY)
    with pytest.raises(ValueError, match="CronDataIntervalTimetable"):
        run(op)
    op = OpseraAuditLogsOperator(task_id="u", start="None", end="None")
    with pytest.raises(ValueError, match=r"no data interval.*CronDataIntervalTimetable.*start and end"):
        run(op)
    assert sim.request_count() == 0


# -- landing path ---------------------------------------------------------------------------------------------
def test_landing_returns_the_manifest_and_emits_the_asset_event(sim, tmp_path):
    sim.generate("audit", DAY, NEXT, 2345)
    folder = f"file://{tmp_path}/audit/dt=2024-05-09/"
    op = OpseraAuditLogsOperator(task_id="t", start=DAY, end=NEXT, output_path=folder, records_per_part=1000)
    manifest, context = run(op)

    assert manifest == read_manifest(ObjectStoragePath(folder))
    assert manifest["log_type"] == "audit"
    assert (manifest["start"], manifest["end"]) == (DAY.isoformat(), NEXT.isoformat())
    assert manifest["record_count"] == 2345
    assert [p["records"] for p in manifest["parts"]] == [1000, 1000, 345]
    landed = list(iter_landed_records(folder))  # the URL string, as given to the operator: decoded dicts
    truth = sim.ground_truth("audit", DAY, NEXT)
    assert sorted(landed, key=lambda r: r["_id"]) == sorted(truth, key=lambda r: r["_id"])
    assert len({r["_id"] for r in landed}) == len(landed)

    event = context["outlet_events"][op.outlets[0]]
    assert op.outlets == [Asset(uri=f"file://{tmp_path}/audit/dt=2024-05-09")]
    assert event.extra["folder"] == f"file://{tmp_path}/audit/dt=2024-05-09"
    assert event.extra["record_count"] == 2345


def test_progress_is_reported_while_landing(sim, tmp_path, monkeypatch):
    from airflow_provider_opsera.operators import base
    from airflow_provider_opsera.progress import Progress

    lines: list[str] = []

    class Recorder:
        def info(self, message, *args):
            lines.append(message % args)

    class EveryBatch(Progress):  # the real one logs at most every 15 s
        def __init__(self, log, what):
            super().__init__(Recorder(), what, every=0.0)

    monkeypatch.setattr(base, "Progress", EveryBatch)
    sim.generate("audit", DAY, NEXT, 2500)
    run(OpseraAuditLogsOperator(task_id="t", start=DAY, end=NEXT, output_path=f"file://{tmp_path}/a/"))
    assert lines
    assert all("Opsera audit [2024-05-09" in line and "requests" in line for line in lines)
    assert "2,500 records" in lines[-1]


# -- OpenLineage ----------------------------------------------------------------------------------------------
def test_openlineage_facets_name_the_endpoint_and_the_folder(sim, tmp_path):
    pytest.importorskip("airflow.providers.openlineage", reason="the OpenLineage provider is optional")
    sim.generate("token_activity", DAY, NEXT, 40)
    op = OpseraTokenActivityLogsOperator(
        task_id="t", start=DAY, end=NEXT, output_path=f"file://{tmp_path}/tok/"
    )
    manifest, _ = run(op)
    lineage = op.get_openlineage_facets_on_complete(None)
    (source,) = lineage.inputs
    assert (source.namespace, source.name) == (sim.url, "/api/v1/logs/user/tokens")
    assert "token_id" in [f.name for f in source.facets["schema"].fields]
    (target,) = lineage.outputs
    assert (target.namespace, target.name) == ("file", f"{tmp_path}/tok")
    assert target.outputFacets["outputStatistics"].rowCount == 40
    assert target.outputFacets["outputStatistics"].size == sum(p["bytes"] for p in manifest["parts"])
    assert target.outputFacets["outputStatistics"].fileCount == len(manifest["parts"])
    assert [f.name for f in target.facets["schema"].fields] == [
        f.name for f in source.facets["schema"].fields
    ]


def test_openlineage_stays_optional(monkeypatch):
    # As if the OpenLineage provider were not installed: importing it fails.
    monkeypatch.setitem(sys.modules, "airflow.providers.openlineage.extractors", None)
    assert OpseraAuditLogsOperator(task_id="t").get_openlineage_facets_on_complete(None) is None


# -- Airflow 3's default cron timetable -----------------------------------------------------------------------
CRON_TRIGGER_DAG = """
import pendulum
from airflow.sdk import DAG
from airflow_provider_opsera.operators.logs import OpseraAuditLogsOperator

with DAG("opsera_cron_trigger", schedule="@daily", start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
    OpseraAuditLogsOperator(task_id="audit", retries=0)
"""


def test_a_dag_on_the_default_cron_timetable_fails_with_advice(sim, airflow_db, tmp_path, monkeypatch, capfd):
    """schedule="@daily" is a CronTriggerTimetable in Airflow 3: its runs have an empty data interval."""
    from airflow import settings
    from airflow.utils.state import DagRunState
    from airflow_compat import DagBag

    (tmp_path / "cron_trigger.py").write_text(CRON_TRIGGER_DAG)
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(tmp_path))
    monkeypatch.setattr(settings, "DAGS_FOLDER", str(tmp_path))
    dag = DagBag(dag_folder=str(tmp_path)).get_dag("opsera_cron_trigger")
    run = dag.test(logical_date=NEXT)
    assert run.state == DagRunState.FAILED
    output = "".join(capfd.readouterr())
    assert "CronDataIntervalTimetable" in output
    assert sim.request_count() == 0
