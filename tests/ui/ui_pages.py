"""Playwright helpers for Airflow 3's React UI: the connection form, the connections table, toasts, screenshots.

Selectors go by role, label and text as a user sees the page; the only test id used is the DAG pause switch's
``toggle-pause``, which has no accessible name.
"""

from __future__ import annotations

import json
import pathlib
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page, Request, Route

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
]
#: Airflow's toast titles for the Test button's two outcomes (``connections.testSuccess/testError.title``)
TEST_TOAST = re.compile(r"^Test Connection (Successful|Failed)$")


@dataclass
class Screenshots:
    """Numbered full-page PNGs in one folder; ``taken`` lists (file, what it shows)."""

    folder: pathlib.Path
    taken: list[tuple[str, str]] = field(default_factory=list)

    def take(self, page: Page, name: str, shows: str) -> pathlib.Path:
        path = self.folder / f"{len(self.taken) + 1:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken.append((path.name, shows))
        print(f"screenshot {path.name}: {shows}", flush=True)
        return path


# -- navigation -----------------------------------------------------------------------------------------
def open_connections(page: Page, base_url: str) -> None:
    """Home, then Admin > Connections in the navigation bar."""
    from playwright.sync_api import expect

    page.goto(base_url + "/")
    page.get_by_role("button", name="Admin").click()
    page.get_by_role("menuitem", name="Connections").click()
    expect(page.get_by_role("button", name="Add Connection")).to_be_visible()


def dialog_titled(page: Page, title: str | re.Pattern[str]) -> Locator:
    """The open dialog whose heading reads ``title`` (Airflow's dialogs do not name themselves by it)."""
    return page.get_by_role("dialog").filter(has=page.get_by_role("heading", name=title))


def open_add_connection_form(page: Page, conn_id: str, hook_name: str) -> Locator:
    """Add Connection, the id typed and the connection type chosen from the searchable select: the dialog."""
    from playwright.sync_api import expect

    page.get_by_role("button", name="Add Connection").click()
    dialog = dialog_titled(page, "Add Connection")
    expect(dialog).to_be_visible()
    dialog.get_by_role("textbox", name="Connection ID").fill(conn_id)
    dialog.get_by_role("combobox", name="Connection Type").fill(hook_name)
    page.get_by_role("option", name=hook_name, exact=True).click()
    expect(dialog.get_by_role("button", name="Standard Fields")).to_be_visible()
    return dialog


def field_group(scope: Locator, label: str) -> Locator:
    """The form field (Chakra's ``role=group`` field root) whose label reads ``label`` (a trailing ``*`` or
    space aside). Located through the group rather than ``get_by_label``: Airflow 3.3's datalist field (the
    one a string schema with ``enum``/``examples`` gets) labels a ``for`` id its input does not carry."""
    pattern = re.compile(rf"^\s*{re.escape(label)}\s*\*?\s*$")
    return scope.get_by_role("group").filter(has=scope.page.locator("label").filter(has_text=pattern))


def field_control(scope: Locator, label: str) -> Locator:
    """The input, textarea or select the user types into in the field labelled ``label``."""
    return field_group(scope, label).locator(
        "input:not([aria-hidden=true]), textarea:not([aria-hidden=true]), select"
    )


def describe_control(control: Locator) -> dict[str, Any]:
    """Tag, type and rendered height of a form control, for the record and the single-line check."""
    box = control.bounding_box() or {}
    return {
        "tag": control.evaluate("e => e.tagName.toLowerCase()"),
        "type": control.get_attribute("type"),
        "height_px": round(box.get("height", 0)),
    }


def connection_row(page: Page, conn_id: str) -> Locator:
    return page.get_by_role("row").filter(has=page.get_by_role("cell", name=conn_id, exact=True))


def save_connection(page: Page, dialog: Locator, conn_id: str) -> dict[str, Any]:
    """Press Save, expect Airflow's 201, and the connection's row in the table; the POSTed body."""
    from playwright.sync_api import expect

    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.rstrip("/").endswith("/api/v2/connections")
    ) as created:
        dialog.get_by_role("button", name="Save").click()
    response = created.value
    assert response.status == 201, f"saving {conn_id} answered {response.status}: {response.text()}"
    expect(dialog).to_be_hidden()
    expect(connection_row(page, conn_id)).to_be_visible()
    return json.loads(response.request.post_data or "{}")


def settle(locator: Locator) -> None:
    """Wait (up to 3 s) for the element's CSS animations (a toast sliding in) to end: a screenshot shows it whole."""
    locator.evaluate(
        "e => Promise.race([Promise.all(e.getAnimations({subtree: true}).map(a => a.finished)),"
        " new Promise(done => setTimeout(done, 3000))])"
    )


# -- the Test button ------------------------------------------------------------------------------------
@dataclass
class ButtonOutcome:
    status: bool
    message: str
    toast_title: str
    toast_text: str
    seconds: float


class PortZeroFix:
    """Works around an Airflow 3.3.2 UI bug on the connections table's Test button.

    The button posts ``port: Number(connection.port)``, which is ``0`` for a connection without a port (every
    Opsera connection: the provider hides the port field); the API then sees a port that "differs from the
    stored connection" (``_same_endpoint`` treats ``""`` as unset, not ``0``) and refuses with 400 "Include
    the credentials to test in the request body", before any hook runs. This route puts the stored ``null``
    back, only in that case, so the provider's own ``test_connection()`` answers. ``applied`` counts them.
    """

    def __init__(self, stored_ports: dict[str, int | None]) -> None:
        self.stored_ports = stored_ports
        self.applied = 0

    def __call__(self, route: Route, request: Request) -> None:
        body = request.post_data_json or {}
        conn_id = body.get("connection_id")
        if body.get("port") == 0 and conn_id in self.stored_ports and self.stored_ports[conn_id] is None:
            body["port"] = None
            self.applied += 1
            print(
                f"WORKAROUND: Test button posted port=0 for {conn_id} (stored port: null); sent null",
                flush=True,
            )
            route.continue_(post_data=json.dumps(body))
            return
        route.continue_()


def press_test_button(page: Page, conn_id: str, timeout_s: float) -> ButtonOutcome:
    """Press the Test Connection button on ``conn_id``'s row; the API's answer and the toast it shows."""
    from playwright.sync_api import expect

    # an earlier test's toast must not be mistaken for this one's
    expect(page.get_by_role("status", name=TEST_TOAST)).to_have_count(0, timeout=30_000)
    button = connection_row(page, conn_id).get_by_role("button", name="Test Connection")
    started = time.monotonic()
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/api/v2/connections/test"),
        timeout=timeout_s * 1000,
    ) as answered:
        button.click()
    response = answered.value
    toast = page.get_by_role("status", name=TEST_TOAST)
    expect(toast).to_be_visible(timeout=10_000)
    seconds = time.monotonic() - started
    settle(toast)
    try:
        body = response.json()
    except ValueError:
        body = {"status": False, "message": response.text()}
    message = body.get("message") if response.ok else body.get("detail", response.text())
    return ButtonOutcome(
        status=bool(body.get("status")) and response.ok,
        message=str(message),
        toast_title=toast.locator("[data-part=title]").inner_text(),
        toast_text=toast.locator("[data-part=description]").inner_text(),
        seconds=seconds,
    )
