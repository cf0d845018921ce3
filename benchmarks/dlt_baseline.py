"""dlt's ``rest_api`` source, paged with its page-number paginator, into its ``postgres`` and ``filesystem``
destinations: the off-the-shelf way to load the same API.

Configured as its documentation suggests for an API that reports no page total: ``total_path=None``, stop at
the first empty page. One pipeline run (extract, normalize, load) is what is timed. dlt is a benchmark-only
extra (``pip install .[bench]``); without it these configurations report that instead of a figure.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from airflow_provider_opsera.catalogue import endpoint_for
from benchmarks.baselines import day_params
from benchmarks.common import BaseConfig, Outcome, Target, pg_connect
from benchmarks.workload import PAGE_SIZE


def dataset_name(pg_schema: str) -> str:
    """dlt's dataset (its Postgres schema) beside the benchmark's own schema, dropped with it."""
    return f"{pg_schema}_dlt"


def available() -> bool:
    return importlib.util.find_spec("dlt") is not None


def _source(target: Target) -> Any:
    from dlt.sources.rest_api import rest_api_source

    ds = target.dataset
    return rest_api_source(
        {
            "client": {
                "base_url": target.url,
                "auth": {"type": "bearer", "token": target.token},
                "paginator": {
                    "type": "page_number",
                    "base_page": 1,
                    "page_param": "page",
                    "total_path": None,
                    "stop_after_empty_page": True,
                },
            },
            "resources": [
                {
                    "name": ds.key,
                    "endpoint": {
                        "path": endpoint_for(ds.log_type).path,
                        "params": {**day_params(target), "page_size": PAGE_SIZE},
                        "data_selector": "data",
                    },
                }
            ],
        }
    )


class _Dlt(BaseConfig):
    who = "dlt"
    imports = ("dlt", "dlt.sources.rest_api", "dlt.destinations")

    def destination(self, target: Target) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def prepare(self, target: Target) -> None:
        super().prepare(target)
        os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
        os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
        # Inside an Airflow install dlt looks every setting up as an Airflow Variable too: slow, and not dlt's
        # own work. Its documented switch turns that off; settings then come from code and the environment.
        os.environ.setdefault("PROVIDERS__ENABLE_AIRFLOW_SECRETS", "false")

    def run(self, target: Target) -> Outcome:
        import dlt

        pipeline = dlt.pipeline(
            pipeline_name=f"opsera_bench_{target.dataset.key}_{self.sink}",
            destination=self.destination(target),
            dataset_name=dataset_name(target.pg_schema),
            pipelines_dir=str(target.out_dir / "pipelines"),
        )
        info = pipeline.run(_source(target))
        info.raise_on_failed_jobs()
        trace = pipeline.last_trace
        rows = trace.last_normalize_info.row_counts if trace and trace.last_normalize_info else {}
        return Outcome(int(rows.get(target.dataset.key, 0)), note=f"dlt {dlt.__version__}")


class DltFile(_Dlt):
    """The ``filesystem`` destination on a local folder: gzipped JSONL (its default format and compression)."""

    sink = "file"

    def destination(self, target: Target) -> Any:
        import dlt

        return dlt.destinations.filesystem(bucket_url=(target.out_dir / "data").as_uri())


class DltPostgres(_Dlt):
    sink = "postgres"

    def prepare(self, target: Target) -> None:
        super().prepare(target)
        drop_dataset(target)

    def destination(self, target: Target) -> Any:
        import dlt

        dsn = dict(part.split("=", 1) for part in (target.pg_dsn or "").split())
        # dlt insists on a password; the benchmark database trusts local connections and ignores it
        return dlt.destinations.postgres(
            credentials=f"postgresql://{dsn.get('user', 'postgres')}:unused@{dsn.get('host', '127.0.0.1')}:"
            f"{dsn.get('port', '5432')}/{dsn.get('dbname', 'test')}"
        )


def drop_dataset(target: Target) -> None:
    with pg_connect(target) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {dataset_name(target.pg_schema)} CASCADE")
