"""The audit report as auditors open and print it, in Debian's headless Chromium (issue 18:
at 1280 px and in print the fee, quorum, approvals, refusals, broadcast and result columns
were cut off; amounts were raw satoshis, officers bare fingerprints, and nothing said which
batch, purpose or payees a ceremony paid, or how urgent a finding is and what to do next).

The page is the real one: ``coldstation-audit replay --html`` on the real evidence (SoftHSM2
appliance, coordinator on regtest) with a rogue broadcast added, so the findings table has
rows. Layout is measured in the browser: no element wider than the window at 1280 px, nor
than an A4 landscape page in print media, and no cell whose content is cut off."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from selenium.webdriver.common.print_page_options import PrintOptions

from tests.audit.conftest import Copy
from tests.audit.test_tamper import add_rogue_broadcast, audit
from tests.browser import chromium, require_chromium

#: A4 landscape (297 mm) less the report's 10 mm page margins, in CSS pixels (96 per inch).
PRINT_WIDTH_PX = round((297 - 20) / 25.4 * 96)

OVERFLOW = """
const width = document.documentElement.clientWidth;
const wide = [...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > width + 1)
  .map(e => e.tagName + ' ' + e.textContent.slice(0, 40));
const cut = [...document.querySelectorAll('td, th')]
  .filter(e => e.scrollWidth > e.clientWidth + 1)
  .map(e => e.textContent.slice(0, 40));
return {width: width, scroll: document.documentElement.scrollWidth, wide: wide, cut: cut};
"""


def _report(evidence: Copy) -> tuple[Path, dict]:
    rogue = add_rogue_broadcast(evidence)
    run = audit(evidence)
    assert run.code == 1 and run.report is not None
    assert any(f["txid"] == rogue for f in run.report["findings"])
    return evidence.bundle.parent / "report.html", run.report


def test_the_report_says_whom_each_ceremony_paid_in_btc_with_officers_named(
    evidence: Copy,
) -> None:
    html, report = _report(evidence)
    page = html.read_text()
    officers = report["appliances"][0]["officers"]
    assert officers and all(name for name in officers.values())
    approved = [c for c in report["ceremonies"] if c["decision"] == "approved"]
    assert approved
    for ceremony in approved:
        assert ceremony["batch"] and ceremony["payees"] and ceremony["payee_count"] >= 1
        assert f"batch {ceremony['batch']}" in page
        for fp in ceremony["approvals"]:
            assert f"{officers[fp]} ({fp})" in page  # named, the fingerprint beside
        address, _ = ceremony["payees"][0]
        assert address in page
    assert " BTC" in page and "(sat)" not in page
    first = report["findings"][0]
    assert first["severity"] == "critical" and first["next_step"]
    assert report["summary"]["critical_findings"] >= 1


def test_the_report_fits_1280_px_and_an_a4_landscape_page(evidence: Copy) -> None:
    require_chromium()
    html, report = _report(evidence)
    with chromium(1280) as browser:
        browser.get(html.as_uri())
        screen = browser.execute_script(OVERFLOW)
        assert screen["width"] <= 1280
        assert screen["scroll"] <= screen["width"], screen["wide"][:5]
        assert screen["wide"] == [] and screen["cut"] == [], screen
        severity = browser.execute_script(
            "return [...document.querySelectorAll('td.critical, td.high')].map(e => e.textContent)"
        )
        assert severity and severity[0] == "critical"  # most urgent first

        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
        browser.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": PRINT_WIDTH_PX, "height": 700, "deviceScaleFactor": 1, "mobile": False},
        )
        printed = browser.execute_script(OVERFLOW)
        assert printed["width"] <= PRINT_WIDTH_PX  # less a scrollbar
        assert printed["wide"] == [] and printed["cut"] == [], printed
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

        options = PrintOptions()
        options.orientation = "landscape"
        pdf = base64.b64decode(browser.print_page(options))
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page") >= 1
    assert json.dumps(report)  # the JSON report stays machine-readable alongside
