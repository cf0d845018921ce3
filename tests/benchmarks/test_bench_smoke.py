"""The benchmark suite on a tiny workload, so its code cannot rot. No timing is asserted: only that every
configuration delivers the workload's records and the report renders."""

from __future__ import annotations

import uuid

import pytest

from benchmarks import bounds, child, dlt_baseline, report, suite, workload

WORK = workload.smoke()


@pytest.fixture
def target_spec(opsera_simulator, tmp_path, monkeypatch):
    """A spec factory against the in-process simulator, loaded with the smoke workload."""
    workload.load(opsera_simulator, WORK.datasets())
    # the configurations set these for their own process; here they must not outlive the test
    for name in (
        "AIRFLOW_CONN_POSTGRES_BENCH",
        "RUNTIME__DLTHUB_TELEMETRY",
        "RUNTIME__LOG_LEVEL",
        "PROVIDERS__ENABLE_AIRFLOW_SECRETS",
    ):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)

    def spec(config: str, dataset: workload.DataSet, **extra):
        return {
            "config": config,
            "dataset": dataset.to_json(),
            "url": opsera_simulator.url,
            "token": opsera_simulator.token,
            "out_dir": str(tmp_path / config),
            "reps": 1,
            **extra,
        }

    return spec


def _row(config: str, dataset: workload.DataSet, result: dict) -> report.Row:
    kind = child.CONFIGS[config]
    return report.Row("W1", kind.sink, kind.who, dataset.key, dataset.n, result, variant=kind.variant)


def test_every_configuration_delivers_the_workload(target_spec, postgres_dsn, request):
    configs = [
        "floor",
        "ours_count",
        "ours_file",
        "naive_count",
        "naive_file",
        "ours_postgres",
        "ours_postgres_existing",
        "naive_postgres",
    ]
    if dlt_baseline.available():
        configs += ["dlt_file", "dlt_postgres"]
    schema = f"opsera_bench_test_{uuid.uuid4().hex[:8]}"
    import psycopg

    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    request.addfinalizer(lambda: _drop(postgres_dsn, schema))

    rows = []
    for config in configs:
        result = child.measure(target_spec(config, WORK.day, pg_dsn=postgres_dsn, pg_schema=schema))
        assert result["records"] == WORK.day.n, config
        assert len(result["walls"]) == 1 and result["peak_rss_mb"] > 0
        rows.append(_row(config, WORK.day, result))

    ours_file = next(r for r in rows if r.who == "ours" and r.sink == "file")
    floor, naive, _ = report.ratios(rows, ours_file)
    assert floor is not None and naive is not None
    checks = report.targets(rows, WORK.day.key, WORK.small_day.key, WORK.large_day.key)
    notes = bounds.lines(rows, WORK)
    assert len(notes) == len(rows)
    markdown = report.render_markdown(rows, checks, report.machine(), suite.describe(WORK), notes)
    assert "| workload | sink | run |" in markdown and "## What bounds each figure" in markdown
    targets = report.text_table(*report.targets_table(checks))
    assert "W1(b) ours/floor >= 0.8" in targets and "W1(c) existing table ours/floor >= 0.75" in targets
    assert "postgres (existing table)" in markdown


def test_a_missed_upsert_target_is_reported_not_raised():
    def row(who: str, sink: str, wall: float, variant: str = "") -> report.Row:
        result = {"walls": [wall], "records": 1000}
        return report.Row("W1", sink, who, WORK.day.key, 1000, result, variant=variant)

    rows = [
        row("floor", "none", 1.0),
        row("ours", "postgres", 1.25),
        row("ours", "postgres", 1.5, "existing table"),
    ]
    checks = {c.what: c for c in report.targets(rows, WORK.day.key, WORK.small_day.key, WORK.large_day.key)}
    assert checks["W1(c) ours/floor >= 0.6"].ok is True
    existing = checks["W1(c) existing table ours/floor >= 0.75"]
    assert (existing.measured, existing.ok) == ("0.67", False)
    assert "| W1(c) existing table ours/floor >= 0.75 | 0.67 | MISSED |" in report.markdown_table(
        *report.targets_table(list(checks.values()))
    )


def _drop(dsn: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in (schema, dlt_baseline.dataset_name(schema)):
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def test_a_day_too_large_for_v1_is_reported_not_miscounted(target_spec):
    split = child.measure(target_spec("ours_count", WORK.split_day))
    assert split["records"] == WORK.split_day.n and split["error"] is None
    assert split["requests"] > WORK.split_day.pages  # the capped first answer, then one query per type

    too_big = child.measure(target_spec("ours_count", WORK.split_day_too_big))
    assert too_big["error"].startswith("OpseraIncompleteResultError")


def test_plan_names_known_configurations():
    steps = suite.plan(WORK)
    assert {s.config for s in steps} <= child.CONFIGS.keys()
    assert {s.workload for s in steps} == {"W1", "W1(a)", "W1(b)", "W1(c)", "W2", "W3"}


def test_the_simulator_and_a_child_run_as_processes(tmp_path):
    sim = suite.Simulator(smoke=True, latency=0.0)
    try:
        spec = {
            "config": "floor",
            "dataset": WORK.day.to_json(),
            "url": sim.url,
            "token": sim.token,
            "out_dir": str(tmp_path / "floor"),
            "reps": 1,
        }
        result = suite.run_child(spec, tmp_path / "floor.log", timeout=120)
    finally:
        sim.close()
    assert result["records"] == WORK.day.n, result
    assert sim.process.returncode == 0
