"""The provider inside Airflow 3's own web UI, in a real Chromium: the Opsera connection form, the S3 example DAG
triggered from its page, and the connection's Test button against a live and a dead API.

The four tests run in order on one Airflow deployment (``conftest.py``): the first creates ``opsera_default``
through the form, which the others use. Run with ``make test-browser``; screenshots of every step go to
``tests/ui/.screenshots/<UTC time>/`` (printed as ``SCREENSHOTS: <path>``).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from ui_pages import (
    PortZeroFix,
    connection_row,
    describe_control,
    dialog_titled,
    field_control,
    field_group,
    open_add_connection_form,
    open_connections,
    press_test_button,
    save_connection,
)
from ui_processes import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

CONN_ID = "opsera_default"
DEAD_CONN_ID = "opsera_dead"
DAG_ID = "opsera_logs_to_s3"
LOG_TYPES = ("user_activity", "audit", "token_activity", "pipeline_activity")
#: the field the brief singles out: a short string (true/false/CA bundle path) must be a one-line input
SINGLE_LINE_LABEL = "Verify TLS"
RUN_TIMEOUT_S = 300
DEAD_TEST_LIMIT_S = 15


def opsera_connection_type() -> dict[str, Any]:
    """The provider's ``connection-types`` entry, read now: its labels are not hard-coded here."""
    from airflow_provider_opsera.get_provider_info import get_provider_info

    (entry,) = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == "opsera"]
    return entry


def fill_opsera_form(page: Any, conn_id: str, url: str, token: str) -> tuple[Any, dict[str, Any]]:
    """The Add Connection dialog for an Opsera connection with the API URL and token typed in."""
    entry = opsera_connection_type()
    relabel = entry["ui-field-behaviour"]["relabeling"]
    dialog = open_add_connection_form(page, conn_id, entry["hook-name"])
    dialog.get_by_label(relabel["host"], exact=True).fill(url)
    dialog.get_by_label(relabel["password"], exact=True).fill(token)
    return dialog, entry


@pytest.fixture(scope="module")
def port_zero_fix(page: Any) -> PortZeroFix:
    fix = PortZeroFix({})
    page.route("**/api/v2/connections/test", fix)
    return fix


def require_ui_connection(airflow_ui: Any) -> dict[str, Any]:
    try:
        return airflow_ui.connection(CONN_ID)
    except RuntimeError:
        pytest.fail(f"{CONN_ID} does not exist: the connection form test did not save it")


# -- 1. the connection form -----------------------------------------------------------------------------
def test_connection_form_creates_opsera_default(page, airflow_ui, opsera_api, screenshots, ui_report):
    from airflow.models.connection import Connection
    from playwright.sync_api import expect

    from airflow_provider_opsera.connection import OpseraConnectionSettings

    problems: list[str] = []
    entry = opsera_connection_type()
    relabel = entry["ui-field-behaviour"]["relabeling"]
    if (relabel.get("host"), relabel.get("password")) != ("API URL", "API token"):
        problems.append(f"relabeling is {relabel}, expected host 'API URL' and password 'API token'")

    page.goto(airflow_ui.url + "/")
    expect(page.get_by_role("button", name="Admin")).to_be_visible()
    screenshots.take(page, "home", "Airflow 3.3 home page; the all-admins auth manager logs in by itself")
    page.get_by_role("button", name="Admin").click()
    expect(page.get_by_role("menuitem", name="Connections")).to_be_visible()
    screenshots.take(page, "admin-menu", "the Admin menu open, with Connections")
    page.get_by_role("menuitem", name="Connections").click()
    expect(page.get_by_role("button", name="Add Connection")).to_be_visible()
    screenshots.take(page, "connections-empty", "Admin > Connections: none stored yet")

    dialog, entry = fill_opsera_form(page, CONN_ID, opsera_api.url, opsera_api.token)
    for hidden in entry["ui-field-behaviour"].get("hidden-fields", []):
        if field_group(dialog, hidden.capitalize()).count():
            problems.append(f"the hidden field {hidden!r} is shown")
    screenshots.take(
        page, "opsera-standard-fields", "Add Connection, type Opsera: API URL and API token filled"
    )

    dialog.get_by_role("button", name="Extra Fields", exact=True).click()
    labels = [spec["label"] for spec in entry["conn-fields"].values()]
    for label in labels:
        group = field_group(dialog, label)
        try:
            expect(group).to_have_count(1, timeout=10_000)
            expect(group).to_be_visible()
        except AssertionError:
            problems.append(f"no visible field labelled {label!r} in Extra Fields")
    ui_report.record("extra field labels (from get_provider_info)", ", ".join(labels))
    if SINGLE_LINE_LABEL not in labels:
        problems.append(f"no extra field labelled {SINGLE_LINE_LABEL!r}")
    else:
        control = field_control(dialog, SINGLE_LINE_LABEL)
        expect(control).to_have_count(1)
        control.scroll_into_view_if_needed()
        shape = describe_control(control)
        ui_report.record(f"{SINGLE_LINE_LABEL} control", shape)
        if shape["tag"] != "input":
            problems.append(f"{SINGLE_LINE_LABEL} is a <{shape['tag']}>, not a single-line <input>: {shape}")
    dialog.get_by_role("button", name="Extra Fields", exact=True).scroll_into_view_if_needed()
    screenshots.take(page, "opsera-extra-fields", "the Extra Fields section open, every field left empty")

    posted = save_connection(page, dialog, CONN_ID)
    screenshots.take(page, "connection-saved", "opsera_default in the connections table after Save")

    stored = airflow_ui.connection(CONN_ID)
    extra = stored.get("extra_dejson") or {}
    ui_report.record(
        "extra the form posted (extras untouched)", json.dumps(json.loads(posted.get("extra") or "{}"))
    )
    ui_report.record("extra stored (airflow connections get)", json.dumps(extra, sort_keys=True))
    assert (stored["conn_type"], stored["host"], stored["password"]) == (
        "opsera",
        opsera_api.url,
        opsera_api.token,
    )

    conn = Connection(
        conn_id=CONN_ID,
        conn_type=stored["conn_type"],
        host=stored["host"],
        password=stored["password"],
        port=stored.get("port"),
        extra=json.dumps(extra),
    )
    try:
        settings = OpseraConnectionSettings.from_connection(conn)
        ui_report.record("provider reads the stored connection as", repr(settings))
    except Exception as err:
        problems.append(f"the provider rejects the extra the form stored, {extra}: {err}")
    assert not problems, "\n".join(problems)


# -- 2. the example DAG, triggered from its page ----------------------------------------------------------
def test_trigger_logs_to_s3_from_the_dag_page(page, airflow_ui, s3_bucket, screenshots, ui_report):
    from playwright.sync_api import expect

    require_ui_connection(airflow_ui)
    airflow_ui.wait_for_dag(DAG_ID, f"{DAG_ID}.py")

    page.goto(airflow_ui.url + "/")
    page.get_by_role("link", name="Dags").first.click()
    dag_link = page.get_by_role("link", name=DAG_ID, exact=True)
    expect(dag_link.first).to_be_visible()
    screenshots.take(page, "dags-list", "the Dags list: the repo's example DAGs, paused at creation")
    dag_link.first.click()
    page.wait_for_url(f"**/dags/{DAG_ID}")
    header = page.get_by_test_id("header-card")
    expect(header.get_by_role("heading", name=DAG_ID)).to_be_visible()
    toggle = header.get_by_test_id("toggle-pause")
    expect(toggle).to_be_visible()
    if toggle.get_attribute("data-state") != "checked":
        toggle.click()
        expect(toggle).to_have_attribute("data-state", "checked")
    wait_for(lambda: not airflow_ui.api("GET", f"dags/{DAG_ID}")["is_paused"], 30, f"{DAG_ID} to be unpaused")
    screenshots.take(page, "dag-unpaused", f"{DAG_ID}'s page, unpaused with the toggle next to its name")

    page.get_by_role("button", name="Trigger Dag").click()
    dialog = dialog_titled(page, re.compile(f"Trigger Dag.*{DAG_ID}"))
    expect(dialog.get_by_role("button", name="Trigger", exact=True)).to_be_visible()
    screenshots.take(page, "trigger-form", "the Trigger form: single run, params empty (Variables apply)")
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith(f"/dags/{DAG_ID}/dagRuns")
    ) as triggered:
        dialog.get_by_role("button", name="Trigger", exact=True).click()
    response = triggered.value
    assert response.status in (200, 201), f"triggering answered {response.status}: {response.text()}"
    run_id = response.json()["dag_run_id"]
    ui_report.record("triggered run", run_id)
    expect(dialog).to_be_hidden()
    screenshots.take(page, "run-triggered", "right after Trigger: the new run queued or running")

    def finished() -> dict[str, Any] | None:
        run = airflow_ui.api("GET", f"dags/{DAG_ID}/dagRuns/{run_id}")
        return run if run["state"] in ("success", "failed") else None

    run = wait_for(
        finished,
        RUN_TIMEOUT_S,
        f"run {run_id} to finish",
        interval=3,
        alive=list(airflow_ui.processes.values()),
    )
    page.goto(f"{airflow_ui.url}/dags/{DAG_ID}/runs/{run_id}")
    expect(page.get_by_text(run_id).first).to_be_visible()
    screenshots.take(page, "run-finished", f"the run's page once the run finished ({run['state']})")
    ui_report.record(
        "run state",
        f"{run['state']} (data interval {run['data_interval_start']} .. {run['data_interval_end']})",
    )
    assert run["state"] == "success", f"run {run_id} ended {run['state']}"

    day = run["data_interval_start"][:10]
    s3, bucket = s3_bucket.client, s3_bucket.name
    landed = {}
    for log_type in LOG_TYPES:
        key = f"opsera/{log_type}/dt={day}/manifest.json"
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"opsera/{log_type}/dt={day}/")
        landed[log_type] = {
            "objects": sorted(o["Key"].rsplit("/", 1)[1] for o in listed.get("Contents", [])),
            "records": manifest.get("record_count"),
        }
    ui_report.record(f"landed in s3://{bucket}/opsera/*/dt={day}/", json.dumps(landed, sort_keys=True))


# -- 3. the Test button ---------------------------------------------------------------------------------
def test_test_button_on_the_good_connection(page, airflow_ui, port_zero_fix, screenshots, ui_report):
    stored = require_ui_connection(airflow_ui)
    port_zero_fix.stored_ports[CONN_ID] = stored.get("port")
    open_connections(page, airflow_ui.url)
    outcome = press_test_button(page, CONN_ID, timeout_s=120)
    screenshots.take(page, "test-good", f"Test Connection on {CONN_ID}: the result toast")
    ui_report.record(
        "Test button, good connection",
        f"{outcome.toast_title}: {outcome.toast_text!r} after {outcome.seconds:.1f}s (status {outcome.status})",
    )
    if port_zero_fix.applied:
        ui_report.record("port=0 workaround (Airflow 3.3.2 UI bug)", f"applied {port_zero_fix.applied}x")
    assert outcome.status, f"the test failed: {outcome.message}"
    assert "Connected to" in outcome.message, outcome.message
    missing = [t for t in LOG_TYPES if t not in outcome.message]
    assert not missing, f"log types {missing} not in the message {outcome.message!r}"
    assert outcome.toast_text == outcome.message


def test_test_button_on_a_dead_connection(page, airflow_ui, port_zero_fix, screenshots, ui_report, free_port):
    from playwright.sync_api import expect

    dead_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connections are refused
    open_connections(page, airflow_ui.url)
    dialog, _ = fill_opsera_form(page, DEAD_CONN_ID, dead_url, "dead-token")
    screenshots.take(page, "dead-connection-form", f"Add Connection for {DEAD_CONN_ID}: API URL {dead_url}")
    save_connection(page, dialog, DEAD_CONN_ID)
    expect(connection_row(page, DEAD_CONN_ID)).to_be_visible()
    port_zero_fix.stored_ports[DEAD_CONN_ID] = airflow_ui.connection(DEAD_CONN_ID).get("port")

    outcome = press_test_button(page, DEAD_CONN_ID, timeout_s=180)
    screenshots.take(page, "test-dead", f"Test Connection on {DEAD_CONN_ID}: the result toast")
    ui_report.record(
        "Test button, dead connection",
        f"{outcome.toast_title}: {outcome.toast_text!r} after {outcome.seconds:.1f}s (status {outcome.status})",
    )
    assert not outcome.status, f"a dead API tested fine: {outcome.message}"
    assert "refused" in outcome.message.lower(), outcome.message
    assert outcome.seconds <= DEAD_TEST_LIMIT_S, (
        f"the failure took {outcome.seconds:.0f}s (limit {DEAD_TEST_LIMIT_S}s)"
    )
