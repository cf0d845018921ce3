"""Test setup: an isolated Airflow home, and helpers for services that must fail in CI when missing."""

from __future__ import annotations

import importlib.metadata
import os
import pathlib
import socket
from collections.abc import Callable, Iterator

_ROOT = pathlib.Path(__file__).resolve().parent.parent
os.environ.setdefault("AIRFLOW_HOME", str(_ROOT / ".airflow-home"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(_ROOT / "example_dags"))
# Airflow 3.0's dag.test() prints task errors as rich tracebacks wrapped to the terminal width (80 columns when
# not a terminal), splitting the messages the tests look for across lines: a wide one keeps each on one line.
if importlib.metadata.version("apache-airflow").startswith("3.0."):
    os.environ.setdefault("COLUMNS", "1000")

import pytest  # noqa: E402
from connections import MOTO_CONN_ID, aws_moto_conn_json  # noqa: E402

# dag_runs.py asserts on the test's behalf: keep pytest's detailed failure messages for its asserts.
pytest.register_assert_rewrite("dag_runs")


def require_service(available: bool, reason: str) -> None:
    """Skip when a service is unreachable, except in CI (``CI=true``), where that is a failure."""
    if available:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI=true: a missing service fails the run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def airflow_db():
    """Airflow's metadata database (SQLite under AIRFLOW_HOME), migrated once per test session.

    Needed by ``dag.test()``. Migration is idempotent, so a kept AIRFLOW_HOME makes later runs quick.
    """
    import subprocess
    import sys

    airflow = pathlib.Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
    return os.environ["AIRFLOW_HOME"]


def postgres_available(
    dsn: str = "host=127.0.0.1 port=5432 dbname=test user=postgres connect_timeout=3",
) -> bool:
    try:
        import psycopg

        with psycopg.connect(dsn):
            return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def postgres_dsn():
    """The machine's PostgreSQL (127.0.0.1:5432, trust auth, database ``test``); fails in CI when down."""
    dsn = os.environ.get("OPSERA_TEST_POSTGRES_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres")
    require_service(postgres_available(dsn + " connect_timeout=3"), f"PostgreSQL not reachable at {dsn}")
    return dsn


@pytest.fixture(autouse=True)
def _no_task_retries_in_dag_test(monkeypatch):
    """A failing task fails ``dag.test()`` at once, instead of waiting out the example DAGs' retry delay."""
    try:
        from airflow.sdk.definitions.dag import DAG
    except ImportError:  # pragma: no cover
        return
    original = DAG.test

    def test(self, *args, **kwargs):
        for task in self.tasks:
            task.retries = 0
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DAG, "test", test)


@pytest.fixture(autouse=True)
def _fresh_object_store_clients():
    """Airflow caches one filesystem per connection id, and fsspec one per settings: a moto server started by
    an earlier test (same conn id, another port) must not be reused by the next one."""
    yield
    try:
        from airflow.sdk.io.store import _STORE_CACHE

        _STORE_CACHE.clear()
    except ImportError:  # pragma: no cover
        pass
    try:
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
    except ImportError:  # pragma: no cover
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, for the whole session."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def moto_s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], str]:
    """moto's S3 with fake AWS credentials and the ``aws`` connection ``MOTO_CONN_ID`` pointing at it.

    Returns ``make_bucket(name)``, which creates the bucket and returns its name.
    """
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv(f"AIRFLOW_CONN_{MOTO_CONN_ID.upper()}", aws_moto_conn_json(moto_endpoint))
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")

    def make_bucket(name: str) -> str:
        client.create_bucket(Bucket=name)
        return name

    return make_bucket
