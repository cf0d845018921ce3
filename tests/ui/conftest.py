"""Fixtures of the browser test: the Opsera API simulator, moto's S3, Airflow 3's processes on a fresh
PostgreSQL database, and Chromium driven by Playwright.

The test is marked ``browser`` and runs only when asked for (``make test-browser``, a path under
``tests/ui``, ``-m browser`` or ``OPSERA_BROWSER_TESTS=1``): ``make test`` deselects it. Once asked for, a
missing Chromium, Playwright or PostgreSQL skips it, except under ``CI=true``, where that fails the run.
"""

from __future__ import annotations

import datetime
import os
import pathlib
import re
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from opt_in import deselect_unless_asked
from ui_pages import CHROMIUM, CHROMIUM_ARGS, Screenshots
from ui_processes import ManagedProcess, wait_for
from ui_stack import AirflowStack, scratch_database

UI_DIR = pathlib.Path(__file__).resolve().parent
TESTS_DIR = UI_DIR.parent
REPO = TESTS_DIR.parent
SCREENSHOTS_ROOT = UI_DIR / ".screenshots"
BUCKET = "opsera-ui-landing"


# -- selection ------------------------------------------------------------------------------------------
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives Chromium against a live Airflow (make test-browser)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    deselect_unless_asked(config, items, "browser", "OPSERA_BROWSER_TESTS", UI_DIR)


def _root_conftest(config: pytest.Config) -> Any:
    """``tests/conftest.py`` (``require_service``, ``free_port``, ``postgres_available``): a conftest cannot
    import another, so it is looked up among the registered plugins."""
    return config.pluginmanager.get_plugin(str(TESTS_DIR / "conftest.py"))


# -- the run's record: printed live (-s) and again in the terminal summary ------------------------------
@dataclass
class UiReport:
    screenshots: Screenshots | None = None
    facts: list[tuple[str, str]] = field(default_factory=list)

    def record(self, key: str, value: Any) -> None:
        text = value if isinstance(value, str) else repr(value)
        self.facts.append((key, text))
        print(f"RECORD {key}: {text}", flush=True)


_REPORT = UiReport()
_STACKS: list[AirflowStack] = []
_SERVICES: list[ManagedProcess] = []


@pytest.fixture(scope="session")
def ui_report() -> UiReport:
    return _REPORT


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _REPORT.screenshots is None and not _REPORT.facts:
        return
    write = terminalreporter.write_line
    terminalreporter.section("Airflow UI browser test")
    if _REPORT.screenshots is not None:
        write(f"SCREENSHOTS: {_REPORT.screenshots.folder}")
        for name, shows in _REPORT.screenshots.taken:
            write(f"  {name}: {shows}")
    for key, value in _REPORT.facts:
        write(f"{key}: {value}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[Any]:
    """A failed browser test's report gets the end of each Airflow process's log (and the task logs)."""
    report = yield
    if report.failed and item.get_closest_marker("browser"):
        for stack in _STACKS:
            report.sections.append(("Airflow process logs (last lines)", stack.log_tails(80)))
            report.sections.append(("Airflow task logs (last lines)", stack.task_log_tails(30)))
        for proc in _SERVICES:
            report.sections.append((f"{proc.name} log (last lines)", proc.tail(30)))
    return report


# -- prerequisites --------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def browser_prerequisites(request: pytest.FixtureRequest) -> None:
    root = _root_conftest(request.config)
    root.require_service(os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing (apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401

        has_playwright = True
    except ImportError:
        has_playwright = False
    root.require_service(has_playwright, "the playwright package is missing (pip install -e '.[browser]')")
    root.require_service(
        root.postgres_available("host=127.0.0.1 port=5432 dbname=postgres user=postgres connect_timeout=3"),
        "PostgreSQL is not reachable at 127.0.0.1:5432 (user postgres, trust auth)",
    )


@pytest.fixture(scope="session")
def screenshots(ui_report: UiReport) -> Screenshots:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    if SCREENSHOTS_ROOT.is_dir():  # keep the last few runs' folders
        for old in sorted(p for p in SCREENSHOTS_ROOT.iterdir() if p.is_dir())[:-4]:
            shutil.rmtree(old, ignore_errors=True)
    folder = SCREENSHOTS_ROOT / stamp
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nSCREENSHOTS: {folder}", flush=True)
    ui_report.screenshots = Screenshots(folder)
    return ui_report.screenshots


# -- services -------------------------------------------------------------------------------------------
@dataclass
class Simulator:
    url: str
    token: str
    process: ManagedProcess


@pytest.fixture(scope="module")
def opsera_api(browser_prerequisites: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """``python -m airflow_provider_opsera.testing`` (demo scenario: yesterday, UTC) on a loopback port."""
    logs = tmp_path_factory.mktemp("simulator")
    token = "ui-" + secrets.token_urlsafe(24)
    argv = [sys.executable, "-u", "-m", "airflow_provider_opsera.testing", "--port", "0", "--token", token]
    proc = ManagedProcess("opsera-simulator", argv, os.environ, logs / "simulator.log")
    _SERVICES.append(proc)
    try:
        match = wait_for(
            lambda: re.search(r"serving on (http://\S+)", proc.log_text()),
            60,
            "the simulator to print its URL",
            interval=0.2,
            alive=[proc],
        )
        yield Simulator(url=match.group(1), token=token, process=proc)
    finally:
        proc.stop()
        _SERVICES.remove(proc)


@dataclass
class Bucket:
    name: str
    client: Any  #: boto3's S3 client on moto


@pytest.fixture(scope="module")
def s3_bucket(browser_prerequisites: None, moto_endpoint: str) -> Bucket:
    """The landing bucket on moto's S3 server (``moto_endpoint``, tests/conftest.py)."""
    from connections import moto_s3_client

    client = moto_s3_client(moto_endpoint)
    client.create_bucket(Bucket=BUCKET)
    return Bucket(BUCKET, client)


@pytest.fixture(scope="session")
def free_port(request: pytest.FixtureRequest) -> Callable[[], int]:
    """``tests/conftest.py``'s ``free_port``: a loopback port nothing listens on (bound, then released)."""
    return _root_conftest(request.config).free_port


@pytest.fixture(scope="module")
def airflow_ui(
    browser_prerequisites: None,
    opsera_api: Simulator,
    s3_bucket: Bucket,
    moto_endpoint: str,
    free_port: Callable[[], int],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AirflowStack]:
    """Airflow 3's api-server, scheduler and dag-processor (LocalExecutor, fresh PostgreSQL database, the
    repo's example DAGs), with the S3 landing settings as Variables and moto's ``aws`` connection by env var.
    ``opsera_default`` is left for the test to create in the UI."""
    from connections import MOTO_CONN_ID, aws_moto_conn_json

    root = tmp_path_factory.mktemp("airflow")
    with scratch_database() as database:
        stack = AirflowStack(
            root,
            dags_folder=REPO / "example_dags",
            database=database,
            port=free_port(),
            extra_env={
                f"AIRFLOW_CONN_{MOTO_CONN_ID.upper()}": aws_moto_conn_json(moto_endpoint),
                "AIRFLOW_VAR_OPSERA_OUTPUT_BASE": f"s3://{BUCKET}",
                "AIRFLOW_VAR_OPSERA_OUTPUT_CONN_ID": MOTO_CONN_ID,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
            },
        )
        _STACKS.append(stack)
        try:
            try:
                stack.start()
            except Exception as err:  # the fixture's own teardown runs before any report hook could add logs
                raise RuntimeError(f"Airflow did not start: {err}\n{stack.log_tails(80)}") from err
            print(f"\nAirflow UI at {stack.url} (AIRFLOW_HOME {stack.home}, database {database})", flush=True)
            yield stack
        finally:
            stack.stop()
            _STACKS.remove(stack)


# -- the browser ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def page(browser_prerequisites: None, airflow_ui: AirflowStack) -> Iterator[Any]:
    """One Chromium page (Debian's chromium, headless) for the module's tests, with generous timeouts."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1500})
            context.set_default_timeout(30_000)
            context.set_default_navigation_timeout(60_000)
            yield context.new_page()
        finally:
            browser.close()
