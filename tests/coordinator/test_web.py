"""The team's web application (issue 19), through Starlette's test client: sign-in with
argon2 passwords and a lockout, CSRF on every POST, roles, security headers, and the
requester's passkey enrolled and used on a real batch (a software authenticator here;
tests/coordinator/test_web_browser.py does it with Chromium's own WebAuthn)."""

from __future__ import annotations

import base64
import io
import os
import re
import tarfile
import tempfile
import warnings
import zipfile
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from online_coordinator.users import (
    MAX_FAILED_LOGINS,
    REFUSED,
    UserError,
    add_user,
    authenticate,
)
from online_coordinator.web.app import WebSettings, build_app
from shared.request import read_assertion, read_request, request_hash
from shared.requester import base64url, from_enrolment_json, verify_requester
from tests.coordinator.conftest import Desk
from tests.coordinator.softappliance import SoftAppliance
from tests.coordinator.test_flow import create, funded_single, payee
from tests.coordinator.test_requester_attest import stored_request
from tests.passkeys import SoftPasskey

#: Run on SQLite and PostgreSQL (tests/coordinator/conftest.py): the tests that write users,
#: passkeys, sessions, batches and events; the rest check the web layer alone.
BOTH_STORES = frozenset(
    {
        "test_sign_in_wrong_passwords_lock_out_and_every_attempt_is_an_event",
        "test_a_requester_enrols_a_passkey_and_signs_their_batch_s_hash",
        "test_a_requester_makes_a_batch_from_a_file_and_every_bad_row_is_listed",
        "test_sign_out_ends_every_copy_of_the_session",
        "test_wallet_pages_issue_an_address_with_its_note_and_export_the_evidence",
        "test_administrators_add_users_and_revoke_passkeys",
        "test_administrators_disable_enable_and_reset_and_sessions_end",
    }
)

ORIGIN = "https://coordinator.custodian.example"
PASSWORD = "correct horse battery"


def set_requester(desk: Desk, name: str) -> None:
    """The coordinator builds requests in ``name``'s name (coordinator.toml)."""
    path = desk.state / "coordinator.toml"
    path.write_text(re.sub(r'requester = ".*"', f'requester = "{name}"', path.read_text()))


@pytest.fixture
def web(desk: Desk) -> TestClient:
    with desk.store() as store:
        for name, role in (("alice", "requester"), ("bob", "requester"), ("vic", "viewer")):
            add_user(store, name, role, PASSWORD)
    return TestClient(build_app(WebSettings(desk.state, ORIGIN)), base_url=ORIGIN)


def csrf(client: TestClient, path: str = "/login") -> str:
    page = client.get(path).text
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def login(client: TestClient, name: str, password: str = PASSWORD):
    return client.post(
        "/login",
        data={"name": name, "password": password, "csrf": csrf(client)},
        follow_redirects=False,
    )


def api(client: TestClient, path: str, body: object = None, token: str | None = None):
    token = token if token is not None else csrf(client, "/")
    return client.post(path, json=body or {}, headers={"X-CSRF-Token": token})


def test_sign_in_wrong_passwords_lock_out_and_every_attempt_is_an_event(web, desk) -> None:
    assert web.get("/", follow_redirects=False).headers["location"] == "/login"
    refused = login(web, "alice", "wrong password!")
    assert refused.status_code == 401 and REFUSED in refused.text
    assert login(web, "nobody", PASSWORD).status_code == 401  # the same words
    for _ in range(MAX_FAILED_LOGINS - 1):
        login(web, "alice", "wrong password!")
    locked = login(web, "alice", PASSWORD)  # the right one, too late
    assert locked.status_code == 401 and REFUSED in locked.text  # the same words as a typo
    assert login(web, "bob", PASSWORD).status_code == 303
    with desk.store() as store:
        events = store.all("SELECT kind, actor FROM events WHERE kind LIKE 'login%'")
        stored = store.one("SELECT password_hash FROM users WHERE name = 'alice'")[0]
    kinds = [(e["kind"], e["actor"]) for e in events]
    assert ("login_locked", "alice") in kinds and ("login", "bob") in kinds
    assert kinds.count(("login_failed", "alice")) == MAX_FAILED_LOGINS  # 4 wrong, 1 locked
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_every_post_needs_the_session_s_csrf_token(web) -> None:
    forged = web.post("/login", data={"name": "bob", "password": PASSWORD, "csrf": "x"})
    assert forged.status_code == 403
    assert login(web, "alice").status_code == 303
    assert api(web, "/passkey/options", token="forged").status_code == 403
    assert web.post("/passkey/options", json={}).status_code == 403  # no header at all
    assert api(web, "/passkey/options").status_code == 200


def test_roles_and_headers(web) -> None:
    login(web, "vic")
    page = web.get("/passkey")
    assert page.status_code == 403 and "only a requester may do this" in page.text
    assert api(web, "/passkey/options").json() == {
        "error": "only a requester may do this; vic is a viewer"
    }
    headers = web.get("/").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    cookie = login(web, "bob").headers["set-cookie"].lower()
    assert "samesite=strict" in cookie and "httponly" in cookie and "secure" in cookie


def test_a_requester_enrols_a_passkey_and_signs_their_batch_s_hash(web, desk) -> None:
    set_requester(desk, "alice")  # the command line makes requests in alice's name too
    funded_single(desk, SoftAppliance("cold-1"))
    create(desk, "cli", [(payee(2), "0.2", "INV-2")])
    passkey = SoftPasskey("alice")

    login(web, "alice")
    made = _new_batch(web, f"{payee(1)},0.1,INV-1\n", label="b1")
    assert made.status_code == 303
    psbt = stored_request(desk, "b1")
    digest = request_hash(psbt, read_request(psbt))
    page = web.get("/batches/b1").text
    assert payee(1) in page and "0.1 BTC" in page and "INV-1" in page  # what she signs
    assert "on this site by alice" in page
    options = api(web, "/passkey/options").json()
    assert options["rp"]["id"] == "coordinator.custodian.example"
    assert options["authenticatorSelection"]["userVerification"] == "required"
    challenge = options["challenge"]
    wrong_site = passkey.register(b"\x00" * 32, origin=ORIGIN)
    assert api(web, "/passkey/register", wrong_site).status_code == 400  # another challenge
    options = api(web, "/passkey/options").json()
    raw = options["challenge"] + "=" * (-len(options["challenge"]) % 4)
    registration = passkey.register(base64.urlsafe_b64decode(raw), origin=ORIGIN)
    done = api(web, "/passkey/register", registration).json()
    assert challenge != options["challenge"]
    requester = from_enrolment_json(done["enrolment"])
    assert requester.credential_id == passkey.credential_id and requester.origin == ORIGIN
    assert web.get("/passkey/enrolment.json").json()["name"] == "alice"
    assert api(web, "/passkey/options").status_code == 409  # one passkey per requester

    # a batch made elsewhere in alice's name: flagged, and not signed here
    assert "was not made by" in web.get("/batches/cli").text
    elsewhere = api(web, "/batches/cli/assertion-options")
    assert elsewhere.status_code == 403 and "not made by alice on this site" in elsewhere.text

    asked = api(web, "/batches/b1/assertion-options").json()
    assert asked["challenge"] == base64url(digest)
    assert [c["id"] for c in asked["allowCredentials"]] == [base64url(passkey.credential_id)]
    other = SoftPasskey("alice").assert_(digest)  # a passkey alice never enrolled
    refused = api(web, "/batches/b1/attest", other.to_webauthn_json())
    assert refused.status_code == 400 and "not a requester" in refused.json()["error"]
    signed = api(web, "/batches/b1/attest", passkey.assert_(digest).to_webauthn_json())
    assert signed.status_code == 200, signed.text
    stored = stored_request(desk, "b1")
    assertion = read_assertion(stored)
    assert verify_requester((requester,), assertion, digest, "alice").name == "alice"
    assert "signed" in web.get("/batches/b1").text

    web.cookies.clear()  # signed out; back in with the passkey alone
    begun = api(web, "/login/passkey-options", token=csrf(web)).json()
    assert begun["allowCredentials"] == [] and begun["userVerification"] == "required"
    stranger = SoftPasskey("alice").assert_(_challenge(begun))
    refused = api(web, "/login/passkey", stranger.to_webauthn_json(), token=csrf(web))
    assert refused.status_code == 401 and "not enrolled here" in refused.json()["error"]
    again = api(web, "/login/passkey", stranger.to_webauthn_json(), token=csrf(web))
    assert again.status_code == 400 and "no sign-in in progress" in again.json()["error"]
    api(web, "/login/passkey-options", token=csrf(web))
    other = passkey.assert_(digest)  # alice's passkey, over something else (a request hash)
    refused = api(web, "/login/passkey", other.to_webauthn_json(), token=csrf(web))
    assert refused.status_code == 401 and "challenge" in refused.json()["error"]
    assert "Signed in as" not in web.get("/").text
    begun = api(web, "/login/passkey-options", token=csrf(web)).json()
    answer = passkey.assert_(_challenge(begun)).to_webauthn_json()
    signed_in = api(web, "/login/passkey", answer, token=csrf(web))
    assert signed_in.json() == {"message": "signed in as alice", "next": "/"}
    assert "Signed in as <strong>alice</strong>" in web.get("/").text

    login(web, "bob")  # bob may not sign alice's request
    bobs = api(web, "/batches/b1/assertion-options")
    assert bobs.status_code == 403 and "not made by bob" in bobs.json()["error"]
    with desk.store() as store:
        kinds = {(e["kind"], e["actor"]) for e in store.all("SELECT kind, actor FROM events")}
    assert {("passkey_enrolled", "alice"), ("request_attested", "alice")} <= kinds


def _challenge(options: dict) -> bytes:
    text = options["challenge"]
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _add_user(desk: Desk, name: str, role: str, password: bytes):
    read, write = os.pipe()
    os.write(write, password + b"\n")
    os.close(write)
    try:
        return desk.run("user", "add", name, "--role", role, "--password-fd", str(read))
    finally:
        os.close(read)


def test_user_add_reads_the_password_from_a_descriptor_never_argv(desk) -> None:
    added = _add_user(desk, "carol", "operator", b"a long enough password")
    assert added.code == 0 and "user carol added as operator" in added.out
    short = _add_user(desk, "dave", "viewer", b"short")
    assert short.code == 2 and "12 to 1024 characters" in short.err
    again = _add_user(desk, "carol", "viewer", b"another long password")
    assert again.code == 2 and "user carol already exists" in again.err


def test_serve_refuses_an_origin_passkeys_cannot_use(desk) -> None:
    for origin in ("http://coordinator.example", "https://x.example/path", "ftp://x"):
        result = desk.run("serve", "--origin", origin)
        assert result.code == 2 and "origin" in result.err, result


# -- a batch from an uploaded payout file, and its request as QR frames ---------------------


def _new_batch(client: TestClient, csv: str, label: str = "w1", **fields: str):
    token = csrf(client, "/batches/new")
    data = {"wallet": "treasury", "label": label, "purpose": "payouts", "csrf": token, **fields}
    return client.post(
        "/batches/new",
        data=data,
        files={"csv": ("payouts.csv", csv.encode(), "text/csv")},
        follow_redirects=False,
    )


def _frames_decoded(frames: dict) -> bytes:
    """The request the frames carry, read back as a camera would: each frame's modules
    drawn 4 pixels to a module, decoded by zxing-cpp, reassembled by the UR decoder (or
    joined as BBQr)."""
    import numpy as np

    from shared.adapters.decoders import default_decoder
    from shared.ur.bbqr import join
    from shared.ur.registry import decode_psbt
    from shared.ur.ur import URDecoder

    decoder, ur, bbqr = default_decoder(), URDecoder(), []
    side = frames["modules"]
    for frame in frames["frames"]:
        bits = np.unpackbits(np.frombuffer(base64.b64decode(frame), np.uint8))[: side * side]
        image = np.where(bits.reshape(side, side), 0, 255).astype(np.uint8)
        texts = decoder.decode(np.kron(image, np.ones((4, 4), np.uint8)))
        assert len(texts) == 1
        if frames.get("framing") == "bbqr":
            bbqr.append(texts[0])
            continue
        ur.receive(texts[0])
        if ur.is_complete:
            break
    if bbqr:
        file_type, data = join(bbqr)
        assert file_type == "P" and len(bbqr) == frames["parts"]
        return data
    result = ur.result
    assert result is not None and result.type == "crypto-psbt"
    return decode_psbt(result.cbor)


def test_a_requester_makes_a_batch_from_a_file_and_every_bad_row_is_listed(web, desk) -> None:
    funded_single(desk, SoftAppliance("cold-1"))
    login(web, "alice")
    bad = "address,amount,reference\nbc1qnotanaddress,0.1,A\n" + f"{payee(2)},-1,B\n"
    refused = _new_batch(web, bad)
    assert refused.status_code == 400
    assert "line 2" in refused.text and "line 3" in refused.text
    assert "nothing was created" in refused.text
    with desk.store() as store:
        assert store.one("SELECT COUNT(*) AS n FROM batches")["n"] == 0
    fee = _new_batch(web, f"{payee(1)},0.1,INV-1\n", fee="0.5")
    assert fee.status_code == 400 and "is below 1 sat/vB" in fee.text

    made = _new_batch(web, f"address,amount,reference\n{payee(1)},0.1,INV-1\n")
    assert made.status_code == 303 and made.headers["location"] == "/batches/w1"
    stored = stored_request(desk, "w1")
    assert read_request(stored).requester == "alice"  # the signed-in requester, not the config
    page = web.get("/batches/w1").text
    assert request_hash(stored, read_request(stored)).hex() in page

    for preset in ("fast", "robust"):
        frames = web.get(f"/batches/w1/qr.json?preset={preset}").json()
        assert _frames_decoded(frames) == stored.serialize()
        bbqr = web.get(f"/batches/w1/qr.json?preset={preset}&framing=bbqr").json()
        assert bbqr["framing"] == "bbqr" and bbqr["version"] == frames["version"]
        assert _frames_decoded(bbqr) == stored.serialize()  # as a COLDCARD Q reads them
    assert web.get("/batches/w1/qr.json?preset=huge").status_code == 400
    assert web.get("/batches/w1/qr.json?framing=qrcode").status_code == 400

    login(web, "vic")  # a viewer may look, not create
    assert _new_batch(web, f"{payee(3)},0.1,INV-3\n", label="w2").status_code == 403


def test_hostile_requests_get_a_status_and_a_line_never_a_crash(web) -> None:
    """Before sign-in and after: oversized bodies are refused by their declared length,
    a non-ASCII CSRF token, JSON nested too deep or not an object, and a scan frame that is
    not a JPEG of sane size are refused with a status and a line."""
    token = csrf(web)
    huge = web.post(
        "/login/passkey-options",
        content=b"{}",
        headers={"X-CSRF-Token": token, "Content-Length": str(200 * 1024 * 1024)},
    )
    assert huge.status_code == 413
    assert (
        web.post("/login/passkey", json={}, headers={"X-CSRF-Token": "żółw".encode()}).status_code
        == 403
    )
    deep = web.post("/login/passkey", content=b"[" * 60_000, headers={"X-CSRF-Token": token})
    assert deep.status_code == 400 and deep.json() == {"error": "the body is not JSON"}
    upload = web.post(
        "/batches/new",
        content=b"x",
        headers={"Content-Length": str(200 * 1024 * 1024)},
        follow_redirects=False,
    )
    assert upload.status_code == 303 and upload.headers["location"] == "/login"  # not read
    long_form = web.post("/login", data={"name": "a" * 20_000, "password": "x", "csrf": token})
    assert long_form.status_code == 413

    login(web, "alice")
    listed = api(web, "/passkey/register", [1, 2, 3])
    assert listed.status_code == 400  # no registration in progress, or not an object
    api(web, "/passkey/options")
    listed = api(web, "/passkey/register", [1, 2, 3])
    assert listed.json() == {"error": "the body must be a JSON object"}
    big = web.post(
        "/batches/new",
        content=b"x",
        headers={"Content-Length": str(50 * 1024 * 1024)},
        follow_redirects=False,
    )
    assert big.status_code == 413 and "at most" in big.text


def test_a_scan_frame_must_be_a_jpeg_of_sane_size(web, desk) -> None:
    with desk.store() as store:
        add_user(store, "olga", "operator", PASSWORD)
    login(web, "olga")
    token = csrf(web, "/")
    png = web.post("/batches/x/scan", content=b"\x89PNG\r\n\x1a\n", headers={"X-CSRF-Token": token})
    assert png.status_code == 415
    # a JPEG header announcing 60000 x 60000 pixels: refused before decoding
    bomb = b"\xff\xd8\xff\xc0\x00\x11\x08" + (60000).to_bytes(2, "big") * 2 + b"\x03" + bytes(9)
    refused = web.post("/batches/x/scan", content=bomb, headers={"X-CSRF-Token": token})
    assert refused.status_code == 415 and "4096" in refused.json()["error"]


def test_sign_out_ends_every_copy_of_the_session(web) -> None:
    login(web, "alice")
    stolen = dict(web.cookies)
    assert "Signed in as" in web.get("/").text
    web.post("/logout", data={"csrf": csrf(web, "/")})
    thief = TestClient(web.app, base_url=ORIGIN, cookies=stolen)
    assert thief.get("/", follow_redirects=False).headers["location"] == "/login"


def test_unknown_wrong_and_locked_out_look_the_same(web) -> None:
    answers = {login(web, "nobody", PASSWORD).text.count(REFUSED)}
    for _ in range(MAX_FAILED_LOGINS):
        answers.add(login(web, "bob", "wrong password!").text.count(REFUSED))
    answers.add(login(web, "bob", PASSWORD).text.count(REFUSED))  # locked now
    assert answers == {1}


def test_user_names_are_plain_and_never_a_fingerprint(desk) -> None:
    with desk.store() as store:
        for name in ("張偉", "0f8afed15e34d918", "a b", ""):
            with pytest.raises(UserError):
                add_user(store, name, "requester", PASSWORD)


def test_wallet_pages_issue_an_address_with_its_note_and_export_the_evidence(web, desk) -> None:
    funded_single(desk, SoftAppliance("cold-1"))
    login(web, "vic")
    listing = web.get("/wallets").text
    assert "treasury" in listing and "3 BTC" in listing
    assert "Issue a receive address" not in web.get("/wallets/treasury").text
    evidence = web.get("/evidence.json")
    assert evidence.json()["type"] == "coldstation-coordinator-evidence"
    assert "attachment" in evidence.headers["content-disposition"]
    login(web, "alice")
    page = web.post(
        "/wallets/treasury/address",
        data={"note": "customer 42", "csrf": csrf(web, "/wallets/treasury")},
    ).text
    issued = re.search(r'id="issued">([a-z0-9]+)<', page)[1]
    assert issued.startswith("bcrt1") and "customer 42" in page
    again = web.post(
        "/wallets/treasury/address", data={"note": "customer 43", "csrf": csrf(web, "/")}
    ).text
    assert re.search(r'id="issued">([a-z0-9]+)<', again)[1] != issued  # never twice
    assert web.get("/wallets/nothing").status_code == 404


def test_administrators_add_users_and_revoke_passkeys(web, desk) -> None:
    with desk.store() as store:
        add_user(store, "root", "administrator", PASSWORD)
    login(web, "alice")
    assert web.get("/users").status_code == 403
    login(web, "root")
    token = csrf(web, "/users")
    made = web.post(
        "/users", data={"name": "carl", "role": "operator", "password": PASSWORD, "csrf": token}
    )
    assert made.status_code == 200 and "user carl added as operator" in made.text
    short = web.post(
        "/users", data={"name": "dora", "role": "viewer", "password": "short", "csrf": token}
    )
    assert short.status_code == 400 and "12 to 1024 characters" in short.text
    forged = web.post(
        "/users", data={"name": "eve", "role": "administrator", "password": PASSWORD, "csrf": "x"}
    )
    assert forged.status_code == 403
    assert login(web, "carl").status_code == 303
    with desk.store() as store:
        actors = {
            r["actor"] for r in store.all("SELECT actor FROM events WHERE kind = 'web_user_change'")
        }
    assert actors == {"root"}


def test_administrators_disable_enable_and_reset_and_sessions_end(web, desk) -> None:
    """Disabling ends the user's open session at once and refuses their password; a reset
    makes the old password fail and ends sessions too; the last administrator stays."""
    with desk.store() as store:
        add_user(store, "root", "administrator", PASSWORD)
    admin = TestClient(build_app(WebSettings(desk.state, ORIGIN)), base_url=ORIGIN)
    login(admin, "root")
    token = csrf(admin, "/users")
    assert login(web, "alice").status_code == 303 and web.get("/").status_code == 200

    done = admin.post("/users", data={"disable": "alice", "csrf": token})
    assert done.status_code == 200 and "user alice disabled" in done.text
    assert web.get("/", follow_redirects=False).headers["location"] == "/login"
    assert login(web, "alice").status_code != 303
    assert 'id="enable-alice"' in admin.get("/users").text
    last = admin.post("/users", data={"disable": "root", "csrf": token})
    assert last.status_code == 400 and "last enabled administrator" in last.text
    assert (
        "user alice enabled" in admin.post("/users", data={"enable": "alice", "csrf": token}).text
    )
    assert login(web, "alice").status_code == 303

    new = "a brand new long password"
    reset = admin.post("/users", data={"reset": "alice", "password": new, "csrf": token})
    assert reset.status_code == 200 and "password of alice set" in reset.text
    assert web.get("/", follow_redirects=False).headers["location"] == "/login"
    assert login(web, "alice").status_code != 303
    assert login(web, "alice", new).status_code == 303
    short = admin.post("/users", data={"reset": "alice", "password": "short", "csrf": token})
    assert short.status_code == 400 and "12 to 1024 characters" in short.text
    stranger = admin.post("/users", data={"disable": "mallory", "csrf": token})
    assert stranger.status_code == 400 and "no user mallory" in stranger.text
    with desk.store() as store:
        kinds = [r["kind"] for r in store.all("SELECT kind FROM events ORDER BY id")]
    assert {"user_disabled", "user_enabled", "password_reset"} <= set(kinds)


def test_user_disable_and_password_from_the_command_line(desk) -> None:
    assert _add_user(desk, "carol", "operator", b"a long enough password").code == 0
    assert "user carol disabled" in desk.ok("user", "disable", "carol")
    again = desk.run("user", "disable", "carol")
    assert again.code == 2 and "already disabled" in again.err
    assert "user carol enabled" in desk.ok("user", "enable", "carol")
    read, write = os.pipe()
    os.write(write, b"the next long password\n")
    os.close(write)
    try:
        reset = desk.run("user", "password", "carol", "--password-fd", str(read))
    finally:
        os.close(read)
    assert reset.code == 0 and "password of carol set" in reset.out
    with desk.store() as store:
        assert authenticate(store, "carol", "the next long password").name == "carol"


def test_an_operator_imports_a_signed_response_from_a_file(web, desk) -> None:
    from online_coordinator.transport import ur_parts
    from shared.ur.registry import encode_psbt

    appliance = SoftAppliance("cold-1")
    funded_single(desk, appliance)
    request = create(desk, "b1", [(payee(1), "0.1", "INV-1")])
    signed = appliance.sign(request.read_bytes())
    with desk.store() as store:
        add_user(store, "olga", "operator", PASSWORD)

    def upload(name: str, data: bytes):
        return web.post(
            "/batches/b1/upload",
            data={"csrf": csrf(web, "/batches/b1")},
            files={"response": (name, data, "application/octet-stream")},
        )

    login(web, "vic")
    assert upload("signed.psbt", signed).status_code == 403
    login(web, "olga")
    junk = upload("signed.psbt", b"psbt\xff not really")
    assert junk.status_code == 400 and "not a valid PSBT" in junk.text
    assert "coldstation-upload-" not in junk.text  # the server's temporary path is not shown
    text = "\n".join(ur_parts("crypto-psbt", encode_psbt(signed), 200)).encode()
    done = upload("signed.ur.txt", text)
    assert done.status_code == 200, done.text
    assert "1 valid signature(s)" in done.text and "ready to broadcast" in done.text
    again = upload("signed.psbt", signed)
    assert "already imported: counted once" in again.text


def _packed(folder: Path, kind: str) -> bytes:
    """The bundle folder as the auditor uploads it: a tar.gz or a zip of the folder."""
    buffer = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buffer, "w") as archive:
            for path in sorted(folder.rglob("*")):
                archive.write(path, f"bundle/{path.relative_to(folder)}")
    else:
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            archive.add(folder, "bundle")
    return buffer.getvalue()


def _hostile_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        data = b"owned"
        member = tarfile.TarInfo("../../outside.txt")
        member.size = len(data)
        archive.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


def _hostile_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../outside.txt", b"owned")
    return buffer.getvalue()


def _linked_tar() -> bytes:
    """A link in a bundle (the way out of the folder that CVE-2025-4517 opened through the
    standard library's own filter): refused whatever it points at."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        link = tarfile.TarInfo("bundle/journal.cbor")
        link.type = tarfile.SYMTYPE
        archive.addfile(link.replace(linkname="/etc/passwd"))
    return buffer.getvalue()


def _flagged_zip(offset_local: int, offset_central: int, value: int) -> bytes:
    """A one-file zip with a header byte changed: the encryption flag, or the method."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("journal.cbor", b"x" * 10)
    data = bytearray(buffer.getvalue())
    local, central = data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02")
    data[local + offset_local] |= value
    data[central + offset_central] |= value
    return bytes(data)


def test_auditors_replay_an_uploaded_bundle_and_hostile_archives_are_refused(
    web, desk, tmp_path
) -> None:
    """A viewer uploads the station's bundle (tar.gz, zip or the bare journal) and sees the
    replay's findings, or downloads the HTML report; other roles may not; archives that
    would write outside their folder, and bytes that are no bundle, get one line."""
    from tests.audit.conftest import SoftCold

    bundle = SoftCold("cold-x").write_bundle(tmp_path / "station" / "bundle")
    login(web, "alice")
    assert web.get("/audit").status_code == 403
    login(web, "vic")
    token = csrf(web, "/audit")

    def post(data: bytes, name: str = "bundle.tar.gz", path: str = "/audit"):
        return web.post(path, data={"csrf": token}, files={"bundle": (name, data)})

    for kind in ("tar", "zip"):
        shown = post(_packed(bundle, kind), f"bundle.{kind}")
        assert shown.status_code == 200, shown.text
        # the coordinator never imported cold-x's wallet: the replay says so
        assert 'id="findings"' in shown.text and "cold-x" in shown.text
    bare = post((bundle / "journal.cbor").read_bytes(), "journal.cbor")
    assert bare.status_code == 200 and 'id="findings"' in bare.text
    report = post(_packed(bundle, "tar"), path="/audit?as=html")
    assert report.headers["content-disposition"] == 'attachment; filename="audit-report.html"'
    assert (
        "<h1>Coldstation audit replay</h1>" in report.text
        and "not the audit of record" in report.text
    )

    outside = tmp_path.parent / "outside.txt"
    hostile_archives = (
        (_hostile_tar(), "names &#39;../../outside.txt&#39;: refused"),
        (_hostile_zip(), "names &#39;../outside.txt&#39;: refused"),
        (_linked_tar(), "neither a file nor a folder: refused"),
        (_flagged_zip(6, 8, 1), "the zip archive encrypts"),
        (_flagged_zip(8, 10, 9), "with method 9: store, deflate, bzip2 or lzma only"),
        (_packed(bundle, "tar")[: len(_packed(bundle, "tar")) // 2], "does not unpack"),
    )
    for hostile, reason in hostile_archives:
        refused = post(hostile)
        assert refused.status_code == 400 and reason in refused.text, refused.text
    assert not outside.exists() and not Path(tempfile.gettempdir(), "outside.txt").exists()
    twice = io.BytesIO()
    with zipfile.ZipFile(twice, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate it is asked to write
        archive.writestr("journal.cbor", b"one")
        archive.writestr("journal.cbor", b"two")
    repeated = post(twice.getvalue(), "twice.zip")  # a name given twice: refused, one line
    assert repeated.status_code == 400 and "File exists" in repeated.text
    assert tempfile.gettempdir() not in repeated.text  # the server's folders are not shown
    empty = post(_packed(tmp_path / "station", "zip"), "other.zip")  # no journal.cbor at root
    assert empty.status_code == 400
    garbage = post(b"\x00" * 64, "journal.cbor")
    assert garbage.status_code == 400 and 'id="error"' in garbage.text
    with desk.store() as store:
        replays = store.all("SELECT actor FROM events WHERE kind = 'web_audit_replay'")
    assert {r["actor"] for r in replays} == {"vic"} and len(replays) == 4
