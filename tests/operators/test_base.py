"""The shared shell of the two extract operators: common parameters, outlets and lineage in one base."""

from __future__ import annotations

import subprocess
import sys

import pendulum
import pytest
from airflow.sdk import DAG, AssetAlias

from airflow_provider_opsera.catalogue import OpseraLogType
from airflow_provider_opsera.connection import DEFAULT_CONN_ID
from airflow_provider_opsera.operators.base import OpseraExtractOperator
from airflow_provider_opsera.operators.logs import OpseraAuditLogsOperator, OpseraLogsOperator
from airflow_provider_opsera.transfers.postgres import OpseraLogsToPostgresOperator

DAY = pendulum.datetime(2024, 5, 9, tz="UTC")
COMMON = ("start", "end", "filters", "opsera_conn_id")


def both(**kwargs):
    return (
        OpseraLogsOperator(task_id="to_storage", log_type="audit", **kwargs),
        OpseraLogsToPostgresOperator(task_id="to_postgres", log_type="audit", **kwargs),
    )


def test_both_operators_are_the_shared_shell():
    for op in both():
        assert isinstance(op, OpseraExtractOperator)
        assert tuple(op.template_fields[: len(COMMON)]) == COMMON == OpseraExtractOperator.template_fields
        assert op.template_fields_renderers == {"filters": "json"}
        assert (op.start, op.end) == ("{{ data_interval_start }}", "{{ data_interval_end }}")
        assert op.opsera_conn_id == DEFAULT_CONN_ID == "opsera_default"
        assert op.log_type is OpseraLogType.AUDIT
    assert "output_path" in OpseraLogsOperator.template_fields
    assert "table" in OpseraLogsToPostgresOperator.template_fields


def test_both_check_log_type_and_filter_keys_alike_when_the_dag_is_parsed():
    for cls in (OpseraLogsOperator, OpseraLogsToPostgresOperator):
        with pytest.raises(ValueError, match="Unknown Opsera log type 'deploys'"):
            cls(task_id="t", log_type="deploys")
        with pytest.raises(ValueError, match="audit does not take filter 'scope'; allowed: "):
            cls(task_id="t", log_type="audit", filters={"scope": "{{ params.scope }}"})
        with pytest.raises(ValueError, match="selects time or pages"):
            cls(task_id="t", log_type="audit", filters={"page": 2})
        op = cls(task_id="t", log_type="audit", filters={"action": "{{ params.action }}", "user_id": None})
        assert op.filters == {"action": "{{ params.action }}", "user_id": None}


def test_both_name_a_run_time_outlet_by_the_same_alias():
    with DAG("d", schedule=None):
        storage = OpseraAuditLogsOperator(task_id="t", output_path="{{ var.value.base }}/audit/")
        postgres = OpseraLogsToPostgresOperator(task_id="u", log_type="audit")
    assert storage.outlets == [AssetAlias(name="opsera:d.t")]
    assert postgres.outlets == [AssetAlias(name="opsera:d.u")] == [postgres.asset_alias]


def test_both_render_the_interval_alike():
    for op in both(start=DAY, end=DAY):
        with pytest.raises(ValueError, match=r"start and end both rendered to .*CronDataIntervalTimetable"):
            op.execute({})  # type: ignore[arg-type]


def test_without_openlineage_neither_has_lineage(monkeypatch):
    # As if the OpenLineage provider were not installed: importing it fails.
    monkeypatch.setitem(sys.modules, "airflow.providers.openlineage.extractors", None)
    for op in both():
        assert op.get_openlineage_facets_on_complete(None) is None


def test_importing_the_operators_imports_no_openlineage():
    code = (
        "import sys\n"
        "import airflow_provider_opsera.operators.logs, airflow_provider_opsera.transfers.postgres\n"
        "print(sorted(m for m in sys.modules if m.startswith(('airflow.providers.openlineage.extractors',"
        " 'airflow.providers.common.compat.openlineage', 'openlineage'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_before_a_run_both_name_the_endpoint_as_input_with_its_schema():
    pytest.importorskip("airflow.providers.openlineage", reason="the OpenLineage provider is optional")
    for op in both():
        lineage = op.get_openlineage_facets_on_complete(None)
        (source,) = lineage.inputs
        assert (source.namespace, source.name) == ("https://app.opsera.io", "/api/v2/logs/audit/user")
        assert {"_id", "createdAt", "user_email"} <= {f.name for f in source.facets["schema"].fields}
        assert lineage.outputs == []
