"""A throwaway Airflow 3 deployment for the browser test: its own AIRFLOW_HOME, a fresh PostgreSQL database,
LocalExecutor, and ``api-server``, ``scheduler`` and ``dag-processor`` as separate processes (the example DAG
the test runs defers nothing, so no triggerer)."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import secrets
import subprocess
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import requests
from ui_processes import ManagedProcess, wait_for

AIRFLOW = str(pathlib.Path(sys.executable).with_name("airflow"))
PG_ADMIN_DSN = "host=127.0.0.1 port=5432 dbname=postgres user=postgres connect_timeout=5"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{db}"
#: the Airflow processes this test starts, in start order
COMPONENTS = ("dag-processor", "scheduler", "api-server")


@contextlib.contextmanager
def scratch_database(prefix: str = "opsera_ui_") -> Iterator[str]:
    """A new, empty database on the machine's PostgreSQL, dropped (with its sessions) afterwards."""
    import psycopg

    name = prefix + secrets.token_hex(4)
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _inherited_env() -> dict[str, str]:
    """This process's environment minus any Airflow setting, connection or variable of the test session."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "_AIRFLOW", "PYTEST_")) and k not in ("OPSERA_TEST_POSTGRES_DSN",)
    }


class AirflowStack:
    """Airflow's processes on ``127.0.0.1:<port>``; :meth:`start` migrates the database and waits for each."""

    def __init__(
        self,
        root: pathlib.Path,
        *,
        dags_folder: pathlib.Path,
        database: str,
        port: int,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.root = root
        self.home = root / "airflow-home"
        self.logs = root / "process-logs"
        self.home.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.processes: dict[str, ManagedProcess] = {}
        self.env = _inherited_env()
        self.env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "8",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": PG_URL.format(db=database),
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                "AIRFLOW__API__BASE_URL": self.url,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(port),
                "AIRFLOW__API__WORKERS": "1",
                # one key for every process, so the scheduler's task tokens validate in the api-server
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                # only the runs the test triggers: unpausing a daily DAG would also start yesterday's run
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost",
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.env.update(extra_env or {})

    # -- lifecycle ----------------------------------------------------------------------------------------
    def start(self, timeout: float = 240.0) -> None:
        self.cli("db", "migrate", timeout=timeout)
        for name in COMPONENTS:
            argv = [AIRFLOW, name]
            if name == "api-server":
                argv += ["--host", "127.0.0.1", "--port", str(self.port)]
            self.processes[name] = ManagedProcess(name, argv, self.env, self.logs / f"{name}.log")
        alive = list(self.processes.values())
        wait_for(self._api_ready, timeout, "the api-server to answer /api/v2/monitor/health", alive=alive)
        wait_for(self._scheduler_healthy, timeout, "the scheduler's heartbeat", alive=alive)

    def stop(self) -> None:
        for name in reversed(COMPONENTS):
            proc = self.processes.get(name)
            if proc is not None:
                proc.stop()

    def _api_ready(self) -> bool:
        response = requests.get(f"{self.url}/api/v2/monitor/health", timeout=5)
        return response.status_code == 200

    def _scheduler_healthy(self) -> bool:
        body = requests.get(f"{self.url}/api/v2/monitor/health", timeout=5).json()
        return body.get("scheduler", {}).get("status") == "healthy"

    def wait_for_dag(self, dag_id: str, filename: str, timeout: float = 180.0) -> dict[str, Any]:
        """The DAG once the dag-processor has serialized it; an import error in ``filename`` fails at once."""

        def parsed() -> tuple[str, Any] | None:
            response = requests.get(f"{self.url}/api/v2/dags/{dag_id}", timeout=10)
            if response.status_code == 200:
                return "dag", response.json()
            errors = self.api("GET", "importErrors")["import_errors"]
            mine = [e for e in errors if pathlib.Path(e["filename"]).name == filename]
            return ("import error", mine[0]["stack_trace"]) if mine else None

        kind, value = wait_for(
            parsed, timeout, f"the DAG {dag_id} to be parsed", alive=list(self.processes.values())
        )
        if kind != "dag":
            raise RuntimeError(f"{filename} does not import in the dag-processor:\n{value}")
        return value

    def check_alive(self) -> None:
        for proc in self.processes.values():
            proc.check_alive()

    # -- use ----------------------------------------------------------------------------------------------
    def cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """``airflow <args>`` with the stack's environment; fails with its output on a non-zero exit."""
        result = subprocess.run(
            [AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"airflow {' '.join(args)} exited {result.returncode}:\n{result.stdout[-3000:]}\n"
                f"{result.stderr[-3000:]}"
            )
        return result

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """A call to the REST API (the all-admins auth manager authorises every request); the JSON body."""
        response = requests.request(method, f"{self.url}/api/v2/{path.lstrip('/')}", timeout=30, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def connection(self, conn_id: str) -> dict[str, Any]:
        """The stored connection as ``airflow connections get -o json`` shows it (password included)."""
        out = self.cli("connections", "get", conn_id, "-o", "json").stdout
        rows = json.loads(out[out.index("[") :])
        return rows[0]

    def log_tails(self, lines: int = 60) -> str:
        parts = []
        for name, proc in self.processes.items():
            state = "running" if proc.alive() else f"exited {proc.popen.returncode}"
            parts.append(f"----- {name} (pid {proc.pid}, {state}): last {lines} lines of {proc.log_path}")
            # the api-server's access log would drown everything else
            kept = [line for line in proc.log_text().splitlines() if "[http.access]" not in line]
            parts.append("\n".join(kept[-lines:]))
        return "\n".join(parts)

    def task_log_tails(self, lines: int = 40) -> str:
        """The end of every task log under AIRFLOW_HOME/logs (a failed run's reason is usually there)."""
        parts = []
        for path in sorted((self.home / "logs").glob("dag_id=*/**/*.log")):
            text = path.read_text(errors="replace").splitlines()
            parts.append(f"----- task log {path.relative_to(self.home)}")
            parts.append("\n".join(text[-lines:]))
        return "\n".join(parts)
