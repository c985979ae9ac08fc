"""The requester's passkey in a real browser (issue 19): Debian's headless Chromium, driven
by Selenium, with Chromium's virtual authenticator (CTAP2, user verification) standing in
for a platform passkey. A requester signs in, enrols a passkey on the web page, signs out,
signs in again with the passkey alone, makes a batch from a payout file (one with errors
first: every bad row listed), and signs its request hash; the assertion Chromium made then
passes the station's own review (``shared.review.review`` under a policy listing the
enrolment file the page gave), and the same request naming another requester is
refused."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Iterator

import cv2
import numpy as np
import pytest

from online_coordinator.users import add_user
from online_coordinator.web.app import WebSettings, build_app
from shared.bitcoin.descriptor import Descriptor
from shared.policy import Policy
from shared.psbt.model import Psbt
from shared.request import read_assertion, read_request, request_hash
from shared.requester import from_enrolment_json, verify_requester
from shared.review import OurKey, PinnedWallet, review
from tests.browser import chromium, qr_y4m, require_chromium
from tests.coordinator.conftest import Desk
from tests.coordinator.softappliance import SoftAppliance, pubkey
from tests.coordinator.test_flow import create, funded_single, payee
from tests.coordinator.test_web import PASSWORD
from tests.unit.test_policy import make_policy


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served(desk: Desk) -> Iterator[str]:
    """The web application on localhost, in a thread (uvicorn), as ``serve`` runs it."""
    require_chromium()
    import uvicorn

    port = _free_port()
    origin = f"http://localhost:{port}"
    config = uvicorn.Config(
        build_app(WebSettings(desk.state, origin)),
        host="127.0.0.1",
        port=port,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield origin
    finally:
        server.should_exit = True
        thread.join(10)


def _sign_in(browser, name: str) -> None:
    """Fill the sign-in form and wait for the page that says who is signed in."""
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "name").send_keys(name)
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "sign-in").click()
    deadline = time.monotonic() + 20
    while f"Signed in as <strong>{name}</strong>" not in browser.page_source:
        assert time.monotonic() < deadline, browser.page_source[-500:]
        time.sleep(0.05)


def _wait_for(browser, element_id: str, css_class: str, seconds: float = 20) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = browser.execute_script(
            "const e = document.getElementById(arguments[0]);"
            "return e ? [e.className, e.textContent] : null",
            element_id,
        )
        if found and found[0] in (css_class, "error"):
            assert found[0] == css_class, found[1]
            return str(found[1])
        time.sleep(0.1)
    raise AssertionError(f"#{element_id} never became .{css_class}")


def test_a_passkey_made_in_chromium_signs_a_request_the_station_accepts(desk, served) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.virtual_authenticator import VirtualAuthenticatorOptions
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    appliance = SoftAppliance("cold-1")
    funded_single(desk, appliance)
    with desk.store() as store:
        add_user(store, "alice", "requester", PASSWORD)
    bad = desk.write("bad.csv", f"address,amount,reference\nbc1qnope,0.1,A\n{payee(2)},-1,B\n")
    good = desk.write("good.csv", f"{payee(1)},0.1,INV-1\n")

    with chromium(1280) as browser:
        browser.get(f"{served}/login")
        options = VirtualAuthenticatorOptions(
            protocol=VirtualAuthenticatorOptions.Protocol.CTAP2,
            transport=VirtualAuthenticatorOptions.Transport.INTERNAL,
            has_resident_key=True,
            has_user_verification=True,
            is_user_verified=True,
        )
        browser.add_virtual_authenticator(options)
        _sign_in(browser, "alice")

        browser.get(f"{served}/passkey")
        browser.find_element(By.ID, "enrol").click()
        assert "passkey enrolled" in _wait_for(browser, "result", "ok")
        enrolment = browser.find_element(By.ID, "enrolment").text
        assert [c.rp_id for c in browser.get_credentials()] == ["localhost"]

        browser.get(f"{served}/")  # sign out, then back in with the passkey alone
        browser.find_element(By.CSS_SELECTOR, "form.inline button").click()
        WebDriverWait(browser, 20).until(
            expected_conditions.element_to_be_clickable((By.ID, "passkey-sign-in"))
        ).click()
        deadline = time.monotonic() + 20
        while "Signed in as" not in browser.page_source and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "Signed in as <strong>alice</strong>" in browser.page_source

        browser.get(f"{served}/batches/new")  # a payout file with two bad rows, then a good one
        for csv in (bad, good):
            browser.find_element(By.ID, "label").clear()
            browser.find_element(By.ID, "label").send_keys("b1")
            browser.find_element(By.ID, "purpose").clear()
            browser.find_element(By.ID, "purpose").send_keys("supplier payouts")
            browser.find_element(By.ID, "csv").send_keys(csv)
            browser.find_element(By.ID, "create").click()
            shown = "errors" if csv == bad else "payouts"  # the page the form leads to
            found = WebDriverWait(browser, 20).until(
                expected_conditions.presence_of_element_located((By.ID, shown))
            )
            if csv == bad:
                assert "line 2" in found.text and "line 3" in found.text, found.text
        assert "INV-1" in browser.find_element(By.ID, "payouts").text
        browser.find_element(By.ID, "attest").click()
        assert "signed" in _wait_for(browser, "result", "ok")

    requester = from_enrolment_json(enrolment)
    assert requester.name == "alice" and requester.origin == served
    with desk.store() as store:
        row = store.one("SELECT unsigned_psbt FROM requests")
    psbt = Psbt.parse(bytes(row["unsigned_psbt"]))
    assert read_assertion(psbt) is not None
    digest = request_hash(psbt, read_request(psbt))
    assert read_request(psbt).requester == "alice"  # made on the page, in her name
    assert verify_requester((requester,), read_assertion(psbt), digest, "alice") == requester

    policy = _policy(requester)
    wallet = PinnedWallet(
        (Descriptor.parse(f"wpkh({pubkey(appliance.key).hex()})", require_checksum=False),),
        (OurKey(pubkey(appliance.key), "treasury"),),
    )
    history = {"seen_request_ids": set(), "signed_outpoints": {}, "spent_today_before": 0}
    now = int(time.time())
    judged = review(psbt, wallet, policy, now=now, **history)
    assert judged.approved_for_signing, judged.refusals
    assert judged.requester is not None and judged.requester.name == "alice"

    other = dataclasses.replace(policy, requesters=(dataclasses.replace(requester, name="bob"),))
    refused = review(psbt, wallet, other, now=now, **history)
    assert [r.code for r in refused.refusals] == ["requester"]


def _policy(requester) -> Policy:
    """A policy the request meets, listing ``requester`` (the unit tests' policy, relaxed)."""
    return make_policy(
        address_book=(),
        require_address_book=False,
        per_tx_limit=10**9,  # the change goes to a key of the pool this wallet
        per_day_limit=10**9,  # was not pinned with here: it counts as paid out
        request_ttl_max=7 * 86400,
        requesters=(requester,),
    )


def test_the_request_drawn_on_the_page_is_read_back_by_a_camera(desk, served) -> None:
    """The canvas, screenshotted as a camera would see the screen (not its frame data),
    decoded by zxing-cpp and the UR decoder: the exact request PSBT comes back."""
    from selenium.webdriver.common.by import By

    from shared.adapters.decoders import default_decoder
    from shared.ur.registry import decode_psbt
    from shared.ur.ur import URDecoder

    funded_single(desk, SoftAppliance("cold-1"))
    request = create(desk, "b1", [(payee(n), "0.01", f"INV-{n}") for n in range(1, 40)])
    with desk.store() as store:
        add_user(store, "vic", "viewer", PASSWORD)
    decoder, ur = default_decoder(), URDecoder()
    with chromium(1280, 1000) as browser:
        browser.get(f"{served}/login")
        _sign_in(browser, "vic")
        browser.get(f"{served}/batches/b1?fps=4")
        canvas = browser.find_element(By.ID, "qr")
        deadline = time.monotonic() + 60
        frames_seen: set[str] = set()
        while not ur.is_complete and time.monotonic() < deadline:
            shot = cv2.imdecode(np.frombuffer(canvas.screenshot_as_png, np.uint8), 1)
            for text in decoder.decode(shot):
                ur.receive(text)
            frames_seen.add(canvas.get_attribute("data-frame") or "")
        status = browser.find_element(By.ID, "qr-status").text
    assert ur.is_complete, f"{len(frames_seen)} frames seen; {status}"
    assert "part(s)" in status and len(frames_seen) > 1
    assert decode_psbt(ur.result.cbor) == Psbt.parse(request.read_bytes()).serialize()


def test_the_signed_response_is_scanned_through_the_browser_s_camera(desk, served) -> None:
    """An operator's page scans the station's animated QR through Chromium's fake camera
    (a Y4M video of the signed response's UR parts), sees the parts arrive, and the
    coordinator imports the response; then the page broadcasts it."""
    from selenium.webdriver.common.by import By

    from online_coordinator.transport import ur_parts
    from shared.ur.registry import encode_psbt
    from shared.ur.ur import upper

    appliance = SoftAppliance("cold-1")
    funded_single(desk, appliance)
    request = create(desk, "b1", [(payee(n), "0.01", f"INV-{n}") for n in range(1, 8)])
    signed = appliance.sign(request.read_bytes())
    parts = [upper(p) for p in ur_parts("crypto-psbt", encode_psbt(signed), 200, cycles=2)]
    assert len(parts) > 4
    video = qr_y4m(parts, desk.tmp / "station.y4m")
    with desk.store() as store:
        add_user(store, "olga", "operator", PASSWORD)
    with chromium(1280, 1000, camera=video) as browser:
        browser.get(f"{served}/login")
        _sign_in(browser, "olga")
        browser.get(f"{served}/batches/b1")
        browser.find_element(By.ID, "scan-start").click()
        progress: set[str] = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = browser.find_element(By.ID, "scan-status")
            progress.add(status.text)
            if status.get_attribute("class") in ("ok", "error"):
                break
            time.sleep(0.05)
        assert status.get_attribute("class") == "ok", status.text
        assert "1 valid signature(s)" in status.text and "ready to broadcast" in status.text
        assert any(" parts known, about " in text for text in progress), progress

        browser.get(f"{served}/batches/b1")
        browser.find_element(By.ID, "broadcast").click()
        assert "broadcast" in _wait_for(browser, "result", "ok")
    with desk.store() as store:
        sent = store.one("SELECT state FROM broadcasts")
        actors = {
            e["actor"] for e in store.all("SELECT actor FROM events WHERE kind = 'web_broadcast'")
        }
    assert sent["state"] == "mempool" and actors == {"olga"}
