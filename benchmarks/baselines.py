"""The floor and the naive script, measured against the same simulator as the provider.

- floor: the pages the interval needs, fetched with the provider's concurrency (4) through ``requests``
  (the hook's client) and thrown away. For v2, page 1 first (it tells the total), then the rest; for a v1 day
  that must be split, the per-``type`` queries. It is what the network and the server allow.
- naive: what a DAG author writes by hand: a sequential ``requests.get`` page loop, ``json.loads``, then
  ``json.dumps`` of each record to a file, or ``executemany`` INSERT (psycopg 3, pipelined) into Postgres.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from airflow_provider_opsera.catalogue import endpoint_for
from benchmarks.common import BaseConfig, Outcome, Target, count_rows, drop_table, pg_connect
from benchmarks.workload import CONCURRENCY, PAGE_SIZE


def day_params(target: Target) -> dict[str, Any]:
    """The obvious v2 query for one whole day (the simulator reads ``end_time`` as including that minute)."""
    day = target.dataset.day
    return {"start_date": day, "start_time": "00:00", "end_date": day, "end_time": "23:59"}


def _session(target: Target, pool: int) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update(target.headers)
    return session


class Floor(BaseConfig):
    """The same pages with the same concurrency, bodies read and dropped."""

    who, sink = "floor", "none"

    def run(self, target: Target) -> Outcome:
        endpoint = endpoint_for(target.dataset.log_type)
        url = target.url + endpoint.path
        with _session(target, CONCURRENCY) as session, ThreadPoolExecutor(CONCURRENCY) as pool:

            def get(params: dict[str, Any]) -> bytes:
                response = session.get(url, params=params, timeout=60)
                response.raise_for_status()
                return response.content

            if endpoint.paged:
                base = {**day_params(target), "page_size": PAGE_SIZE}
                total = json.loads(get({**base, "page": 1}))["count"]
                queries = [{**base, "page": p} for p in range(2, math.ceil(total / PAGE_SIZE) + 1)]
                sizes = [len(body) for body in pool.map(get, queries)]
                return Outcome(
                    total, len(queries) + 1, extra={"bytes_per_page": sum(sizes) // max(1, len(sizes))}
                )
            # A v1 day over the cap: one query per value of the split field (the minimum that proves nothing).
            values = target.dataset.split_values or ()
            queries = [{"date": target.dataset.day, endpoint.split_field or "type": v} for v in values]
            records = sum(len(json.loads(body)["data"]) for body in pool.map(get, queries))
            return Outcome(records, len(queries))


def _naive_pages(target: Target) -> Any:
    """The hand-written loop: page after page until the count is reached, each body parsed with json."""
    url = target.url + endpoint_for(target.dataset.log_type).path
    params = {**day_params(target), "page_size": PAGE_SIZE}
    session = requests.Session()
    session.headers.update(target.headers)
    page, seen = 1, 0
    while True:
        response = session.get(url, params={**params, "page": page}, timeout=60)
        response.raise_for_status()
        body = json.loads(response.text)
        data = body["data"]
        yield data
        seen += len(data)
        if not data or seen >= body["count"]:
            break
        page += 1


class NaiveCount(BaseConfig):
    who, sink = "naive", "count"

    def run(self, target: Target) -> Outcome:
        records = pages = 0
        for data in _naive_pages(target):
            records += len(data)
            pages += 1
        return Outcome(records, pages)


class NaiveFile(BaseConfig):
    """One record per line, uncompressed (the naive script's advantage: it skips gzip)."""

    who, sink = "naive", "file"

    def run(self, target: Target) -> Outcome:
        records = pages = 0
        with open(target.out_dir / "records.ndjson", "w", encoding="utf-8") as out:
            for data in _naive_pages(target):
                # json.dumps per record: the C encoder (json.dump to the file would run pure Python, ~3x slower)
                out.writelines(json.dumps(record) + "\n" for record in data)
                records += len(data)
                pages += 1
        return Outcome(records, pages, note="plain NDJSON")


#: The naive table mirrors the provider's: typed columns for the documented user fields, plus raw jsonb.
_NAIVE_COLUMNS = ("_id", "created_at", "user_id", "user_email", "type", "action", "target_id", "account")


class NaivePostgres(BaseConfig):
    who, sink = "naive", "postgres"

    def table(self, target: Target) -> str:
        return f"naive_{target.dataset.key}"

    def prepare(self, target: Target) -> None:
        drop_table(target, self.table(target))
        with pg_connect(target) as conn:
            conn.execute(
                f"CREATE TABLE {target.pg_schema}.{self.table(target)} (_id text PRIMARY KEY, "
                "created_at timestamptz NOT NULL, user_id text, user_email text, type text, action text, "
                "target_id text, account text, raw jsonb NOT NULL)"
            )

    def run(self, target: Target) -> Outcome:
        import psycopg

        columns = ", ".join((*_NAIVE_COLUMNS, "raw"))
        marks = ", ".join(["%s"] * (len(_NAIVE_COLUMNS) + 1))
        insert = f"INSERT INTO {target.pg_schema}.{self.table(target)} ({columns}) VALUES ({marks})"
        records = pages = 0
        with psycopg.connect(target.pg_dsn or "") as conn, conn.cursor() as cursor:
            for data in _naive_pages(target):
                rows = [
                    (
                        r["_id"],
                        r["createdAt"],
                        *(r.get(c) for c in _NAIVE_COLUMNS[2:]),
                        json.dumps(r),
                    )
                    for r in data
                ]
                cursor.executemany(insert, rows)
                records += len(data)
                pages += 1
            conn.commit()
        return Outcome(records, pages)

    def check(self, target: Target, outcome: Outcome) -> None:
        super().check(target, outcome)
        rows = count_rows(target, self.table(target))
        if rows != target.dataset.n:
            raise AssertionError(f"naive/postgres: the table holds {rows} rows, expected {target.dataset.n}")
