"""The verification's report.html in a real browser (Debian's Chromium, headless, via Playwright).

A month of audit logs landed from the simulator, then broken in every way the verifier reports, verified
against the API: the calendar has one cell per day, each status its own colour, and hovering the drifted day
shows its counts. Needs no Airflow processes or database: only Chromium and Playwright (``make test-browser``).
"""

from __future__ import annotations

import gzip
import json
import os
import re

import pytest
from test_verify import FAST, JAN1, _read, _write, ensure_chain, land_interval, sign
from ui_pages import CHROMIUM, CHROMIUM_ARGS, Screenshots

from airflow_provider_opsera.hooks.opsera import OpseraHook
from airflow_provider_opsera.testing import OpseraSimulator
from airflow_provider_opsera.verify import Status, verify_archive

pytestmark = pytest.mark.browser

DAYS = 31
KEY = "evidence-key"
#: Which day (of January 2026) is broken, and how.
BROKEN = {
    5: Status.TAMPERED,
    9: Status.MISSING,
    13: Status.BROKEN_CHAIN,
    17: Status.OVERLAP,
    21: Status.DRIFT,
    25: Status.WARNING,
    28: Status.BAD_SIGNATURE,
}


@pytest.fixture(scope="module")
def chromium_ready(request: pytest.FixtureRequest) -> None:
    root = request.config.pluginmanager.get_plugin(str(request.config.rootpath / "tests" / "conftest.py"))
    root.require_service(os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing (apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        root.require_service(False, "the playwright package is missing (pip install -e '.[browser]')")


@pytest.fixture
def month_report(tmp_path, monkeypatch) -> tuple[str, object]:
    """January 2026 landed from the simulator, broken as in BROKEN, verified against the API."""
    base = (tmp_path / "archive").as_uri()
    monkeypatch.setenv("AIRFLOW_CONN_OPSERA_SIGNING", json.dumps({"conn_type": "generic", "password": KEY}))
    with OpseraSimulator(seed=5) as sim:
        monkeypatch.setenv("AIRFLOW_CONN_OPSERA_DEFAULT", sim.connection_json(FAST))
        sim.generate("audit", JAN1, JAN1.add(days=DAYS), 20 * DAYS)
        hook = OpseraHook()
        folders = {}
        for day in range(1, DAYS + 1):
            start = JAN1.add(days=day - 1)
            batches = hook.iter_log_batches("audit", start, start.add(days=1), raw=True)
            folders[day] = folder = land_interval(
                base, start, 0, payloads=[r.payload for b in batches for r in b]
            )
            if BROKEN.get(day) is not Status.WARNING:
                sign(folder, KEY.encode(), "opsera_signing")
        hook.close()

        # A listed part rewritten (part names are run-unique: take the second one the manifest lists).
        forged = json.loads(_read(folders[5], "manifest.json"))["parts"][1]["name"]
        _write(folders[5], forged, gzip.compress(b'{"_id":"forged"}\n' * 4))
        folders[9].fs.rm(folders[9].path.rstrip("/"), recursive=True)
        manifest = json.loads(_read(folders[13], "manifest.json"))
        manifest["previous"] = "0" * 64
        sign_data = json.dumps(manifest, indent=2).encode()
        _write(folders[13], "manifest.json", sign_data)
        extra = land_interval(base, JAN1.add(days=16, hours=3), 2, hours=1)
        sign(extra, KEY.encode(), "opsera_signing")
        sim.generate("audit", JAN1.add(days=20, hours=8), JAN1.add(days=20, hours=9), 7)
        manifest = json.loads(_read(folders[25], "manifest.json"))
        for key in ("revision", "previous", "reason", "signature"):
            manifest.pop(key, None)
        _write(folders[25], "manifest.json", json.dumps({**manifest, "manifest_format": 1}).encode())
        manifest = json.loads(_read(folders[28], "manifest.json"))
        data = json.dumps({**manifest, "reason": "forged"}, indent=2).encode()
        _write(folders[28], "manifest.json", data)
        _write(folders[28], f"_manifests/manifest-{manifest['revision']:06d}.json", data)
        ensure_chain(folders[28])

        out = tmp_path / "report"
        report = verify_archive(
            base,
            "audit",
            "2026-01-01",
            "2026-02-01",
            against_api=True,
            signing_conn_id="opsera_signing",
            report_path=str(out),
        )
    return str(out / "report.html"), report


def test_the_calendar_shows_each_day_by_status_and_the_drift_on_hover(
    chromium_ready, month_report, screenshots: Screenshots, ui_report
):
    from playwright.sync_api import expect, sync_playwright

    path, report = month_report
    expected = {d: BROKEN.get(d, Status.OK).value for d in range(1, DAYS + 1)}
    assert {i.start.day: i.status.value for i in report.intervals} == expected
    ui_report.record("verify report", path)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.goto(f"file://{path}")
            expect(page.locator("#summary")).to_have_text(
                "FAILED: 31 intervals (24 ok, 1 warning, 1 drift, 1 missing, 1 overlap, 1 bad signature, "
                "1 broken chain, 1 tampered)"
            )
            cells = page.locator("#calendar .cell")
            expect(cells).to_have_count(DAYS)
            shown = {
                int(cells.nth(i).locator(".n").inner_text()): cells.nth(i).get_attribute("data-status")
                for i in range(DAYS)
            }
            assert shown == expected

            colours = {
                status: page.locator(f'#calendar .cell[data-status="{status}"]').first.evaluate(
                    "e => getComputedStyle(e).backgroundColor"
                )
                for status in set(expected.values())
            }
            assert len(set(colours.values())) == len(colours) == len(Status), colours
            for status, colour in colours.items():  # the legend's swatch is the cell's colour
                swatch = page.locator(f'ul.legend li[data-status="{status}"] .swatch')
                assert swatch.evaluate("e => getComputedStyle(e).backgroundColor") == colour

            drift = page.locator('#calendar .cell[data-status="drift"]')
            tip = drift.locator(".tip")
            expect(tip).to_be_hidden()
            drift.hover()
            expect(tip).to_be_visible()
            expect(tip).to_contain_text("status: drift")
            expect(tip).to_contain_text("archived records: 20")
            expect(tip).to_contain_text("API now: 27")
            expect(tip).to_contain_text("drift: +7")
            expect(tip).to_contain_text("the API holds 27 records now, the archive 20 (+7)")
            screenshots.take(
                page, "verify-report-drift-hover", "report.html, the drifted day (Jan 21) hovered"
            )

            tampered = page.locator('#calendar .cell[data-status="tampered"]')
            tampered.hover()
            expect(tampered.locator(".tip")).to_contain_text(
                re.compile(r"part-[0-9a-f]+-00001\.ndjson\.gz's sha256")
            )
            expect(tip).to_be_hidden()
            screenshots.take(
                page, "verify-report-tampered-hover", "report.html, the tampered day (Jan 5) hovered"
            )
        finally:
            browser.close()
