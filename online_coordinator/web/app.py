"""The coordinator's web application: sign in, enrol a requester's passkey, make a batch
from an uploaded payout CSV, show its request as an animated QR drawn at the screen's pixel
density, and sign the request's hash with the passkey (issue 19, first pages).

Starlette serves server-rendered Jinja2 pages (autoescaped) and a small script
(``static/webauthn.js``) that calls the browser's WebAuthn API with the options the server
made (``PublicKeyCredential.parseCreationOptionsFromJSON`` / ``parseRequestOptionsFromJSON``)
and posts back ``credential.toJSON()``. Nothing of HTTP, sessions, password hashing or
WebAuthn is written here: Starlette and uvicorn, itsdangerous-signed session cookies
(Starlette's SessionMiddleware), argon2-cffi (``online_coordinator.users``) and py_webauthn.

Security, in one place:
- Sessions: a signed cookie (``SameSite=Strict``, ``Secure`` when the origin is https,
  8 hours), its key in ``STATE_DIR/web-session.key`` (mode 600), never in the environment.
- CSRF: every POST carries the session's token (form field or ``X-CSRF-Token``), compared in
  constant time; with SameSite=Strict this is defence in depth.
- Headers: a Content-Security-Policy allowing only this origin's scripts and styles (no
  inline script), no framing, no referrer, no MIME sniffing.
- Roles (``online_coordinator.users.ROLES``): only requesters enrol passkeys and sign
  request hashes, and only for requests that name them.
- The server listens on 127.0.0.1 by default; teams put it behind a TLS reverse proxy at
  the origin the passkeys are registered for (docs/runbooks/web.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import cv2
import jinja2
import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders, UploadFile
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_registration_response,
)
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.decode_credential_public_key import (
    DecodedEC2PublicKey,
    decode_credential_public_key,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from online_coordinator.audit_report import UploadError, replay_upload
from online_coordinator.batch import (
    BatchError,
    attest_request,
    broadcast_batch,
    create_batch,
    find_batch,
    import_signed,
)
from online_coordinator.chain.rpc import ChainUnavailable, RpcError
from online_coordinator.config import load_config
from online_coordinator.evidence import export_evidence
from online_coordinator.exit_codes import CommandError
from online_coordinator.fees import MIN_RELAY_FEE_RATE
from online_coordinator.finish import FinishError, ImportResult
from online_coordinator.payouts import MAX_CSV_BYTES
from online_coordinator.status import AlertError, acknowledge_alert, open_alerts
from online_coordinator.store import Store
from online_coordinator.transport import VIDEO_SUFFIXES, receive
from online_coordinator.users import (
    ROLES,
    User,
    UserError,
    add_user,
    authenticate,
    end_sessions,
    find_user,
    passkey_owner,
    passkeys,
    record_login,
    revoke_passkeys,
    set_disabled,
    set_password,
)
from online_coordinator.users import (
    add_passkey as store_passkey,
)
from online_coordinator.wallet import (
    WalletError,
    address_warnings,
    load_wallet,
    next_address,
    wallet_summary,
)
from online_coordinator.web.qr import jpeg_size, request_frames
from shared.adapters.decoders import QrDecoder, default_decoder
from shared.audit.report import to_html
from shared.bitcoin.amount import AmountError, format_btc, parse_sat_per_vb
from shared.psbt.model import Psbt
from shared.request import hash_words, read_assertion, read_request
from shared.requester import (
    Assertion,
    Requester,
    RequesterError,
    cose_key_of,
    enrolment_json,
    origin_host,
    verify_assertion,
)
from shared.ur.registry import decode_psbt
from shared.ur.ur import URDecoder

HERE = Path(__file__).parent
SESSION_KEY_FILE = "web-session.key"
SESSION_SECONDS = 8 * 3600
MAX_JSON_BYTES = 64 * 1024
MAX_FRAME_BYTES = 4 * 1024 * 1024  # one camera frame (JPEG)
MAX_FRAME_PIXELS = 4096 * 4096
MAX_FORM_OVERHEAD = 64 * 1024  # the batch form's fields and multipart framing
MAX_FORM_BYTES = 16 * 1024  # a form of short fields
MAX_UPLOAD_BYTES = 32 * 1024 * 1024  # a signed response: a PSBT, UR text, or a short video
MAX_BUNDLE_BYTES = 512 * 1024 * 1024  # a station's audit bundle, packed (a year: ~100 MB)
#: Who may replay a bundle here: the auditors (viewers) and the administrators.
AUDIT_ROLES = ("viewer", "administrator")
MAX_SCANS = 32
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class WebError(Exception):
    """A request the application refuses: ``status`` and one line for the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class WebSettings:
    """Where the state is, and the origin passkeys are registered for (its host is the
    WebAuthn RP id)."""

    state: Path
    origin: str

    @property
    def rp_id(self) -> str:
        return origin_host(self.origin)

    @property
    def secure(self) -> bool:
        return self.origin.startswith("https://")


def session_key(state: Path) -> str:
    """The session-signing key, made on first use (mode 600) and kept in the state."""
    path = state / SESSION_KEY_FILE
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48), encoding="ascii")
    return path.read_text(encoding="ascii").strip()


def build_app(settings: WebSettings) -> Starlette:
    """The application for ``settings`` (``serve`` runs it under uvicorn; tests too)."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True
    )
    pages = Pages(settings, Jinja2Templates(env=environment))
    routes = [
        Route("/", pages.home),
        Route("/login", pages.login, methods=["GET", "POST"]),
        Route("/logout", pages.logout, methods=["POST"]),
        Route("/login/passkey-options", pages.login_options, methods=["POST"]),
        Route("/login/passkey", pages.login_passkey, methods=["POST"]),
        Route("/wallets", pages.wallets),
        Route("/wallets/{name}", pages.wallet),
        Route("/wallets/{name}/address", pages.issue_address, methods=["POST"]),
        Route("/evidence.json", pages.evidence),
        Route("/audit", pages.audit, methods=["GET", "POST"]),
        Route("/users", pages.users, methods=["GET", "POST"]),
        Route("/alerts", pages.alerts),
        Route("/alerts/{alert_id:int}/acknowledge", pages.acknowledge, methods=["POST"]),
        Route("/passkey", pages.passkey),
        Route("/passkey/options", pages.passkey_options, methods=["POST"]),
        Route("/passkey/register", pages.passkey_register, methods=["POST"]),
        Route("/passkey/enrolment.json", pages.enrolment),
        Route("/batches/new", pages.new_batch, methods=["GET", "POST"]),
        Route("/batches/{label}", pages.batch),
        Route("/batches/{label}/qr.json", pages.qr_frames),
        Route("/batches/{label}/scan", pages.scan, methods=["POST"]),
        Route("/batches/{label}/upload", pages.upload, methods=["POST"]),
        Route("/batches/{label}/broadcast", pages.broadcast, methods=["POST"]),
        Route("/batches/{label}/assertion-options", pages.assertion_options, methods=["POST"]),
        Route("/batches/{label}/attest", pages.attest, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [
        Middleware(
            SessionMiddleware,
            secret_key=session_key(settings.state),
            session_cookie="coldstation_session",
            max_age=SESSION_SECONDS,
            same_site="strict",
            https_only=settings.secure,
        )
    ]
    return Starlette(routes=routes, middleware=[Middleware(SecurityHeaders), *middleware])


class SecurityHeaders:
    """ASGI middleware: :data:`_SECURITY_HEADERS` on every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)


class Pages:
    """The routes' handlers: each checks the session, calls one domain function, renders."""

    def __init__(self, settings: WebSettings, templates: Jinja2Templates) -> None:
        self.settings, self.templates = settings, templates
        self.scans = Scans()

    # -- plumbing -----------------------------------------------------------------------------

    @contextmanager
    def store(self) -> Iterator[Store]:
        with Store.open(load_config(self.settings.state).database) as store:
            yield store

    def render(self, request: Request, template: str, status: int = 200, **values: Any) -> Response:
        values |= {"user": request.session.get("user"), "csrf": _csrf(request)}
        return self.templates.TemplateResponse(request, template, values, status_code=status)

    def user(self, store: Store, request: Request, *roles: str) -> User:
        """The signed-in user (401 when none, or signed out since), of one of ``roles``
        when any are named (403 otherwise)."""
        name = request.session.get("user")
        user = find_user(store, name) if isinstance(name, str) else None
        if user is None or request.session.get("epoch") != user.session_epoch:
            request.session.clear()  # never signed in, or signed out since (any copy)
            raise WebError(401, "sign in first")
        if roles and user.role not in roles:
            article = "an" if roles[0][0] in "aeiou" else "a"
            wanted = f"{article} {' or '.join(roles)}"
            raise WebError(403, f"only {wanted} may do this; {user.name} is a {user.role}")
        return user

    # -- pages --------------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            return self.render(request, "login.html")
        try:
            form = await small_form(request)
        except WebError as exc:
            return self.render(request, "login.html", exc.status, error=str(exc))
        if not _csrf_ok(request, str(form.get("csrf", ""))):
            return self.render(request, "login.html", 403, error="the form expired: try again")
        name, password = str(form.get("name", ""))[:100], str(form.get("password", ""))
        try:  # argon2 takes tens of milliseconds: not on the event loop
            user = await run_in_threadpool(self._with_store, _authenticate, request, name, password)
        except UserError as exc:
            return self.render(request, "login.html", 401, error=str(exc), name=name)
        _signed_in(request, user)
        return RedirectResponse("/", status_code=303)

    async def login_options(self, request: Request) -> Response:
        return await self._api(request, self._login_options)

    def _login_options(self, request: Request, store: Store, _body: object) -> dict[str, Any]:
        """Sign-in by passkey: a fresh challenge, any credential of this site (the
        browser offers the discoverable ones it holds)."""
        options = generate_authentication_options(
            rp_id=self.settings.rp_id, user_verification=UserVerificationRequirement.REQUIRED
        )
        request.session["login_challenge"] = options.challenge.hex()
        return dict(json.loads(options_to_json(options)))

    async def login_passkey(self, request: Request) -> Response:
        return await self._api(request, self._login_passkey)

    def _login_passkey(self, request: Request, store: Store, body: object) -> dict[str, Any]:
        challenge = request.session.pop("login_challenge", None)
        if not isinstance(challenge, str):
            raise WebError(400, "no sign-in in progress: start again")
        try:
            assertion = Assertion.from_webauthn_json(json.dumps(json_object(body)))
            owner = passkey_owner(store, assertion.credential_id)
            if owner is None:
                raise RequesterError("this passkey is not enrolled here (or was revoked)")
            verify_assertion(assertion, (owner[1],), bytes.fromhex(challenge))
        except RequesterError as exc:
            store.event("login_failed", f"passkey sign-in refused: {exc}")
            raise WebError(401, f"passkey sign-in refused: {exc}") from None
        user = owner[0]
        record_login(store, user, "with a passkey")
        _signed_in(request, user)
        return {"message": f"signed in as {user.name}", "next": "/"}

    async def logout(self, request: Request) -> Response:
        try:
            form = await small_form(request)
        except WebError:
            return RedirectResponse("/login", status_code=303)
        if _csrf_ok(request, str(form.get("csrf", ""))):

            def end(request: Request, store: Store) -> Response:
                end_sessions(store, self.user(store, request))
                return RedirectResponse("/login", status_code=303)

            await self._page(request, end)
            request.session.clear()
        return RedirectResponse("/login", status_code=303)

    async def home(self, request: Request) -> Response:
        return await self._page(request, self._home)

    def _home(self, request: Request, store: Store) -> Response:
        user = self.user(store, request)
        batches = store.all("SELECT label, state, created FROM batches ORDER BY id DESC")
        return self.render(request, "home.html", batches=batches, role=user.role)

    # -- wallets, evidence, users ---------------------------------------------------------------

    async def wallets(self, request: Request) -> Response:
        return await self._page(request, self._wallets)

    def _wallets(self, request: Request, store: Store) -> Response:
        self.user(store, request)
        rows = store.all("SELECT id, name FROM wallets ORDER BY name")
        summaries = [wallet_summary(store, row["id"]) for row in rows]
        return self.render(request, "wallets.html", wallets=[_wallet_line(w) for w in summaries])

    async def wallet(self, request: Request) -> Response:
        return await self._page(request, self._wallet)

    def _wallet(self, request: Request, store: Store, issued: str | None = None) -> Response:
        user = self.user(store, request)
        try:
            wallet = load_wallet(store, request.path_params["name"])
        except WalletError as exc:
            raise WebError(404, str(exc)) from None
        summary = wallet_summary(store, wallet.id)
        coins = store.all(
            "SELECT txid, vout, value, height, state FROM utxos WHERE wallet_id = ? AND "
            "state IN ('available', 'locked') ORDER BY height, txid, vout",
            wallet.id,
        )
        return self.render(
            request,
            "wallet.html",
            wallet=_wallet_line(summary),
            addresses=summary["addresses"],
            coins=[
                (f"{c['txid']}:{c['vout']}", format_btc(c["value"]), c["height"], c["state"])
                for c in coins
            ],
            issued=issued,
            may_issue=user.role in ("requester", "operator"),
            warnings=[w["message"] for w in address_warnings(store) if w["wallet"] == wallet.name],
        )

    async def issue_address(self, request: Request) -> Response:
        return await self._form_post(request, ("requester", "operator"), self._issue_address)

    def _issue_address(self, request: Request, store: Store, user: User, form: Any) -> Response:
        note = _note(form, 200, "say who the address is for")
        try:
            wallet = load_wallet(store, request.path_params["name"])
            slot = next_address(store, wallet, change=False, note=note)
        except WalletError as exc:
            raise WebError(400, str(exc)) from None
        store.event(
            "web_address_issued", f"{slot.address} of {wallet.name} for {note}", actor=user.name
        )
        return self._wallet(request, store, issued=slot.address)

    async def evidence(self, request: Request) -> Response:
        return await self._page(request, self._evidence)

    def _evidence(self, request: Request, store: Store) -> Response:
        user = self.user(store, request)
        store.event("web_evidence_export", "coordinator evidence exported", actor=user.name)
        return Response(
            export_evidence(store),
            media_type="application/json",
            headers={"Content-Disposition": 'attachment; filename="coordinator-evidence.json"'},
        )

    async def users(self, request: Request) -> Response:
        if request.method == "GET":
            return await self._page(request, self._users)
        return await self._form_post(request, ("administrator",), self._change_users)

    def _change_users(self, request: Request, store: Store, user: User, form: Any) -> Response:
        names = ("name", "role", "password", "revoke", "disable", "enable", "reset")
        fields = {k: str(form.get(k, "")) for k in names}
        try:
            if fields["revoke"]:
                count = revoke_passkeys(store, fields["revoke"])
                done = f"{count} passkey(s) of {fields['revoke']} revoked"
            elif fields["disable"] or fields["enable"]:
                name = fields["disable"] or fields["enable"]
                set_disabled(store, name, bool(fields["disable"]))
                done = f"user {name} {'disabled' if fields['disable'] else 'enabled'}"
            elif fields["reset"]:
                set_password(store, fields["reset"], fields["password"])
                done = f"password of {fields['reset']} set: every session of theirs ended"
            else:
                added = add_user(store, fields["name"], fields["role"], fields["password"])
                done = f"user {added.name} added as {added.role}"
        except UserError as exc:
            return self._users(request, store, error=str(exc), status=400)
        store.event("web_user_change", done, actor=user.name)
        return self._users(request, store, done=done)

    def _users(
        self,
        request: Request,
        store: Store,
        done: str | None = None,
        error: str | None = None,
        status: int = 200,
    ) -> Response:
        self.user(store, request, "administrator")
        rows = store.all(
            "SELECT u.name, u.role, u.disabled, (SELECT COUNT(*) FROM passkeys p WHERE "
            "p.user_id = u.id AND p.revoked = 0) AS passkeys FROM users u ORDER BY u.name"
        )
        return self.render(
            request, "users.html", status, users=rows, roles=ROLES, done=done, error=error
        )

    async def alerts(self, request: Request) -> Response:
        return await self._page(request, self._alerts)

    def _alerts(self, request: Request, store: Store) -> Response:
        user = self.user(store, request)
        return self.render(
            request,
            "alerts.html",
            alerts=open_alerts(store),
            may_acknowledge=user.role in ("operator", "administrator"),
        )

    async def acknowledge(self, request: Request) -> Response:
        return await self._form_post(request, ("operator", "administrator"), self._acknowledge)

    def _acknowledge(self, request: Request, store: Store, user: User, form: Any) -> Response:
        note = _note(form, 500, "say what was checked and done")
        try:
            alert_id = request.path_params["alert_id"]
            acknowledge_alert(store, alert_id, f"{user.name}: {note}", actor=user.name)
        except AlertError as exc:
            raise WebError(400, str(exc)) from None
        return RedirectResponse("/alerts", status_code=303)

    async def passkey(self, request: Request) -> Response:
        return await self._page(request, self._passkey)

    def _passkey(self, request: Request, store: Store) -> Response:
        user = self.user(store, request, "requester")
        held = passkeys(store, user)
        return self.render(
            request,
            "passkey.html",
            passkeys=[(p, enrolment_json(p)) for p in held],
            origin=self.settings.origin,
        )

    async def batch(self, request: Request) -> Response:
        return await self._page(request, self._batch)

    def _batch(self, request: Request, store: Store, note: str | None = None) -> Response:
        """The batch as its requester signs it: every payout (address, BTC, reference), the
        fee and the purpose beside the request hash; signing is offered only to the
        requester who made the batch on this site (a batch made elsewhere in their name is
        flagged, and signed, if at all, with ``batch attest`` after checking it)."""
        user = self.user(store, request)
        label = request.path_params["label"]
        found = _latest_request(store, label)
        psbt = Psbt.parse(bytes(found["unsigned_psbt"]))
        meta = read_request(psbt)
        digest = bytes(found["request_hash"])
        made_by = _made_on_the_web_by(store, found["batch_id"])
        payouts = store.all(
            "SELECT line, address, amount, reference FROM payouts WHERE batch_id = ? ORDER BY line",
            found["batch_id"],
        )
        mine = user.role == "requester" and made_by == user.name == meta.requester
        return self.render(
            request,
            "batch.html",
            label=label,
            state=found["state"],
            requester=meta.requester,
            purpose=meta.purpose,
            made_by=made_by,
            payouts=[(p["address"], format_btc(p["amount"]), p["reference"]) for p in payouts],
            fee=format_btc(found["fee"]),
            request_hash=digest.hex(),
            words=hash_words(digest),
            attested=read_assertion(psbt) is not None,
            may_attest=mine and found["state"] == "open",
            not_made_here=user.role == "requester" and meta.requester == user.name and not mine,
            may_import=user.role == "operator" and found["state"] in ("open", "signed"),
            may_broadcast=user.role == "operator" and found["state"] == "signed",
            note=note,
        )

    async def new_batch(self, request: Request) -> Response:
        if request.method == "GET":
            return await self._page(request, self._new_batch_form)
        refused = await self._upload_refused(request, ("requester",), MAX_CSV_BYTES, "payout file")
        if refused is not None:
            return refused
        form = await request.form(max_files=1, max_fields=8, max_part_size=MAX_CSV_BYTES + 1)
        upload = form.get("csv")
        csv = await upload.read(MAX_CSV_BYTES + 1) if isinstance(upload, UploadFile) else b""
        fields = {k: str(form.get(k, "")).strip() for k in ("wallet", "label", "purpose", "fee")}
        csv_name = upload.filename if isinstance(upload, UploadFile) else "payouts.csv"

        def create(request: Request, store: Store) -> Response:
            user = self.user(store, request, "requester")
            if not _csrf_ok(request, str(form.get("csrf", ""))):
                raise WebError(403, "the form expired: load it again")
            try:
                if len(csv) > MAX_CSV_BYTES:
                    raise BatchError(f"{csv_name}: larger than {MAX_CSV_BYTES} bytes")
                rate = (
                    parse_sat_per_vb(fields["fee"], MIN_RELAY_FEE_RATE) if fields["fee"] else None
                )
                created = create_batch(
                    load_config(self.settings.state),
                    store,
                    fields["wallet"],
                    csv,
                    csv_name=csv_name or "payouts.csv",
                    label=fields["label"],
                    purpose=fields["purpose"],
                    fee_rate=rate,
                    requester=user.name,
                )
            except (BatchError, WalletError, AmountError, ChainUnavailable) as exc:
                return self._new_batch_form(
                    request, store, errors=str(exc).splitlines(), values=fields, status=400
                )
            store.event(
                "web_batch_created",
                f"batch {created.built.label} made from {csv_name} on the web page",
                batch_id=store.row("SELECT id FROM batches WHERE label = ?", created.built.label)[
                    "id"
                ],
                actor=user.name,
            )
            return RedirectResponse(f"/batches/{quote(fields['label'])}", status_code=303)

        return await self._page(request, create)

    def _new_batch_form(
        self,
        request: Request,
        store: Store,
        errors: list[str] | None = None,
        values: dict[str, str] | None = None,
        status: int = 200,
    ) -> Response:
        self.user(store, request, "requester")
        wallets = [r["name"] for r in store.all("SELECT name FROM wallets ORDER BY name")]
        return self.render(
            request,
            "new_batch.html",
            status,
            wallets=wallets,
            errors=errors or [],
            values=values or {},
        )

    async def qr_frames(self, request: Request) -> Response:
        return await self._page(request, self._qr_frames)

    def _qr_frames(self, request: Request, store: Store) -> Response:
        self.user(store, request)
        found = _latest_request(store, request.path_params["label"])
        try:
            frames = request_frames(
                bytes(found["unsigned_psbt"]),
                request.query_params.get("preset", "fast"),
                request.query_params.get("framing", "ur"),
            )
        except ValueError as exc:
            raise WebError(400, str(exc)) from None
        return JSONResponse(frames)

    async def scan(self, request: Request) -> Response:
        """One camera frame from the operator's browser: decoded here (zxing-cpp, then
        pyzbar), fed to this operator's transfer for the batch; the response, once whole, is
        imported as ``batch import`` does. Answers the progress (parts known, needed)."""
        if not _csrf_ok(request, request.headers.get("x-csrf-token", "")):
            return JSONResponse({"error": "missing or wrong CSRF token"}, status_code=403)
        try:
            image = await bounded_body(request, MAX_FRAME_BYTES)
            size = jpeg_size(image)
            if size is None or size[0] * size[1] > MAX_FRAME_PIXELS:
                raise WebError(415, "a frame is one JPEG picture of at most 4096 x 4096 pixels")
        except WebError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return await run_in_threadpool(self._scan, request, image)

    def _scan(self, request: Request, image: bytes) -> Response:
        try:
            with self.store() as store:
                user = self.user(store, request, "operator")
                label = request.path_params["label"]
                find_batch(store, label)
                progress = self.scans.frame((user.name, label), image)
                if progress.get("complete"):
                    data = progress.pop("payload")
                    result = import_signed(store, label, data, "browser camera", "camera")
                    progress["message"] = _imported(label, result)
                    self.scans.forget((user.name, label))
                return JSONResponse(progress)
        except (BatchError, FinishError) as exc:
            self.scans.forget((request.session.get("user", ""), request.path_params["label"]))
            return JSONResponse({"error": str(exc)}, status_code=400)
        except WebError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)

    async def upload(self, request: Request) -> Response:
        """The signed response as a file: a PSBT (binary or base64), UR text, or a video of
        the station's screen; read by the same code as ``batch import FILE``."""
        received = await self._file_upload(request, ("operator",), "response", MAX_UPLOAD_BYTES)
        if isinstance(received, Response):
            return received
        upload, data = received
        suffix = Path(upload.filename or "").suffix.lower()
        suffix = suffix if suffix in VIDEO_SUFFIXES else ".bin"

        def take(request: Request, store: Store) -> Response:
            user = self.user(store, request, "operator")
            label = request.path_params["label"]
            with tempfile.TemporaryDirectory(prefix="coldstation-upload-") as folder:
                path = Path(folder) / f"response{suffix}"
                path.write_bytes(data)
                try:
                    payload = receive(str(path), timeout=60, expected=("crypto-psbt", "psbt"))
                    result = import_signed(store, label, payload.data, "uploaded file", "upload")
                except (CommandError, BatchError, FinishError) as exc:
                    message = str(exc).replace(str(path), upload.filename or "the file")
                    raise WebError(400, message) from None
            store.event(
                "web_response_imported",
                f"batch {label}: a signed response uploaded",
                batch_id=find_batch(store, label)["id"],
                actor=user.name,
            )
            return self._batch(request, store, note=_imported(label, result))

        return await self._page(request, take)

    async def _file_upload(
        self, request: Request, roles: tuple[str, ...], field: str, limit: int
    ) -> tuple[UploadFile, bytes] | Response:
        """One file posted by a user of ``roles``: the role checked and the declared size
        bounded before the body is read, then the CSRF token; the file and its bytes, or the
        page that says why not."""
        refused = await self._upload_refused(request, roles, limit, "file")
        if refused is not None:
            return refused
        form = await request.form(max_files=1, max_fields=4, max_part_size=limit + 1)
        upload = form.get(field)
        if not isinstance(upload, UploadFile) or not _csrf_ok(request, str(form.get("csrf", ""))):
            return self.render(request, "error.html", 400, error="choose a file (and reload)")
        return upload, await upload.read(limit + 1)

    async def _upload_refused(
        self, request: Request, roles: tuple[str, ...], limit: int, what: str
    ) -> Response | None:
        """Who asks, and how much they declare, before a byte of the upload is read: the
        page refusing it, or None."""
        try:
            await run_in_threadpool(self._with_store, self._role_only, request, roles)
            declared = request.headers.get("content-length", "")
            if not declared.isdigit() or int(declared) > limit + MAX_FORM_OVERHEAD:
                raise WebError(413, f"the {what} may be at most {limit} bytes")
        except WebError as exc:
            if exc.status == 401:
                return RedirectResponse("/login", status_code=303)
            return self.render(request, "error.html", exc.status, error=str(exc))
        return None

    def _role_only(self, request: Request, store: Store, roles: tuple[str, ...]) -> None:
        self.user(store, request, *roles)

    async def audit(self, request: Request) -> Response:
        """The audit replay of an uploaded station bundle against this coordinator's
        evidence (module ``audit_report``): findings on the page, or the HTML report."""
        if request.method == "GET":
            return await self._page(request, self._audit_form)
        received = await self._file_upload(request, AUDIT_ROLES, "bundle", MAX_BUNDLE_BYTES)
        if isinstance(received, Response):
            return received
        upload, data = received
        name = (upload.filename or "bundle")[-120:]
        download = request.query_params.get("as") == "html"

        def replayed(request: Request, store: Store) -> Response:
            user = self.user(store, request, *AUDIT_ROLES)
            try:
                report, inputs = replay_upload(store, name, data)
            except UploadError as exc:
                return self._audit_form(request, store, error=str(exc), status=400)
            store.event(
                "web_audit_replay",
                f"audit replay of an uploaded bundle ({len(data)} bytes): "
                f"{len(report.findings)} finding(s)",
                actor=user.name,
            )
            if download:
                return Response(
                    to_html(report, inputs),
                    media_type="text/html",
                    headers={"Content-Disposition": 'attachment; filename="audit-report.html"'},
                )
            return self.render(request, "audit.html", report=report, counts=report.counts())

        return await self._page(request, replayed)

    def _audit_form(
        self, request: Request, store: Store, error: str | None = None, status: int = 200
    ) -> Response:
        self.user(store, request, *AUDIT_ROLES)
        return self.render(request, "audit.html", status, report=None, error=error)

    async def broadcast(self, request: Request) -> Response:
        return await self._api(request, self._broadcast)

    def _broadcast(self, request: Request, store: Store, _body: object) -> dict[str, Any]:
        user = self.user(store, request, "operator")
        label = request.path_params["label"]
        try:
            result = broadcast_batch(store, load_config(self.settings.state).rpc(), label)
        except ChainUnavailable as exc:
            raise WebError(
                503,
                f"node unavailable: {exc}. If a send was attempted its exact bytes are "
                "recorded: press broadcast again (or run sync); never rebuild these payouts",
            ) from None
        except (BatchError, FinishError, RpcError) as exc:
            raise WebError(400, str(exc)) from None
        store.event("web_broadcast", f"batch {label} broadcast from the web page", actor=user.name)
        again = "already broadcast as" if result.already else "broadcast"
        return {"message": f"batch {label}: {again} {result.txid} ({result.how})"}

    async def enrolment(self, request: Request) -> Response:
        return await self._page(request, self._enrolment)

    def _enrolment(self, request: Request, store: Store) -> Response:
        user = self.user(store, request, "requester")
        held = passkeys(store, user)
        if not held:
            raise WebError(404, "no passkey enrolled yet")
        return Response(
            enrolment_json(held[0]),
            media_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="{user.name}.requester.json"'},
        )

    # -- WebAuthn -----------------------------------------------------------------------------

    async def passkey_options(self, request: Request) -> Response:
        return await self._api(request, self._passkey_options)

    def _passkey_options(self, request: Request, store: Store, _body: object) -> dict[str, Any]:
        user = self.user(store, request, "requester")
        if passkeys(store, user):
            raise WebError(409, "you already hold a passkey: an administrator revokes it first")
        options = generate_registration_options(
            rp_id=self.settings.rp_id,
            rp_name="Coldstation coordinator",
            user_name=user.name,
            user_id=hashlib.sha256(f"coldstation user {user.id}".encode()).digest()[:16],
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.PREFERRED,
                user_verification=UserVerificationRequirement.REQUIRED,
            ),
            supported_pub_key_algs=[COSEAlgorithmIdentifier.ECDSA_SHA_256],
        )
        request.session["challenge"] = options.challenge.hex()
        return dict(json.loads(options_to_json(options)))

    async def passkey_register(self, request: Request) -> Response:
        return await self._api(request, self._passkey_register)

    def _passkey_register(self, request: Request, store: Store, body: object) -> dict[str, Any]:
        user = self.user(store, request, "requester")
        challenge = _pop_challenge(request)
        try:
            verified = verify_registration_response(
                credential=json_object(body),
                expected_challenge=challenge,
                expected_rp_id=self.settings.rp_id,
                expected_origin=self.settings.origin,
                require_user_verification=True,
                supported_pub_key_algs=[COSEAlgorithmIdentifier.ECDSA_SHA_256],
            )
            key = decode_credential_public_key(verified.credential_public_key)
        except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
            raise WebError(400, f"the passkey's registration does not verify: {exc}") from None
        if not isinstance(key, DecodedEC2PublicKey):
            raise WebError(400, "the passkey is not a P-256 (ES256) key")
        try:
            requester = Requester(
                user.name,
                verified.credential_id,
                cose_key_of(b"\x04" + key.x + key.y),
                self.settings.rp_id,
                self.settings.origin,
            )
            store_passkey(store, user, requester)
        except (RequesterError, UserError) as exc:
            raise WebError(400, str(exc)) from None
        return {
            "message": f"passkey enrolled (key fingerprint {requester.key_fingerprint}): give "
            "the enrolment file to the administrators",
            "enrolment": enrolment_json(requester),
        }

    async def assertion_options(self, request: Request) -> Response:
        return await self._api(request, self._assertion_options)

    def _assertion_options(self, request: Request, store: Store, _body: object) -> dict[str, Any]:
        user, digest, _ = self._attestable(request, store)
        options = generate_authentication_options(
            rp_id=self.settings.rp_id,
            challenge=digest,
            allow_credentials=[
                PublicKeyCredentialDescriptor(id=p.credential_id) for p in passkeys(store, user)
            ],
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        return dict(json.loads(options_to_json(options)))

    async def attest(self, request: Request) -> Response:
        return await self._api(request, self._attest)

    def _attest(self, request: Request, store: Store, body: object) -> dict[str, Any]:
        user, digest, label = self._attestable(request, store)
        text = json.dumps(json_object(body))
        try:
            assertion = Assertion.from_webauthn_json(text)
            verify_assertion(assertion, passkeys(store, user), digest)
            attest_request(store, label, text.encode(), actor=user.name)
        except (RequesterError, BatchError) as exc:
            raise WebError(400, str(exc)) from None
        return {
            "message": f"signed: the request hash of batch {label} carries your passkey's "
            "assertion; the station verifies it"
        }

    def _attestable(self, request: Request, store: Store) -> tuple[User, bytes, str]:
        """The requester, the request hash they may sign, and the batch label: the batch's
        open request must name them, and they must have made it on this site."""
        user = self.user(store, request, "requester")
        label = request.path_params["label"]
        found = _latest_request(store, label)
        if _made_on_the_web_by(store, found["batch_id"]) != user.name:
            raise WebError(
                403,
                f"batch {label} was not made by {user.name} on this site: check every payout "
                "and sign it with `batch attest` if it is yours",
            )
        if found["state"] != "open":
            raise WebError(409, f"batch {label}'s request is {found['state']}, not open")
        named = read_request(Psbt.parse(bytes(found["unsigned_psbt"]))).requester
        if named != user.name:
            raise WebError(403, f"batch {label} was requested by {named!r}, not by {user.name}")
        if not passkeys(store, user):
            raise WebError(409, "enrol a passkey first")
        return user, bytes(found["request_hash"]), label

    # -- how handlers run ---------------------------------------------------------------------

    async def _page(
        self, request: Request, handler: Callable[[Request, Store], Response]
    ) -> Response:
        """A page: the handler (database, hashing, decoding) runs in a worker thread, so one
        slow request never stalls the others."""
        try:
            return await run_in_threadpool(self._with_store, handler, request)
        except WebError as exc:
            if exc.status == 401:
                return RedirectResponse("/login", status_code=303)
            return self.render(request, "error.html", exc.status, error=str(exc))

    def _with_store(self, handler: Callable[..., Any], request: Request, *args: Any) -> Any:
        with self.store() as store:
            return handler(request, store, *args)

    async def _form_post(
        self,
        request: Request,
        roles: tuple[str, ...],
        handler: Callable[[Request, Store, User, Any], Response],
    ) -> Response:
        """A form of short fields posted by a user of one of ``roles``: the form bounded
        before it is read, the role and the session's CSRF token checked, then ``handler``."""
        try:
            form = await small_form(request)
        except WebError as exc:
            return self.render(request, "error.html", exc.status, error=str(exc))

        def checked(request: Request, store: Store) -> Response:
            user = self.user(store, request, *roles)
            if not _csrf_ok(request, str(form.get("csrf", ""))):
                raise WebError(403, "the form expired: load it again")
            return handler(request, store, user, form)

        return await self._page(request, checked)

    async def _api(
        self, request: Request, handler: Callable[[Request, Store, object], dict[str, Any]]
    ) -> Response:
        """A JSON call from the page's script: CSRF header checked, body read bounded; the
        handler asks for the user and role it needs (none, to sign in)."""
        if not _csrf_ok(request, request.headers.get("x-csrf-token", "")):
            return JSONResponse({"error": "missing or wrong CSRF token"}, status_code=403)
        try:
            raw = await bounded_body(request, MAX_JSON_BYTES)
            body = json.loads(raw) if raw else {}
        except WebError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except (ValueError, RecursionError):
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        try:
            return JSONResponse(await run_in_threadpool(self._with_store, handler, request, body))
        except WebError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)


async def bounded_body(request: Request, limit: int) -> bytes:
    """The request's body, refused (413) as soon as it is known to pass ``limit`` bytes:
    by its Content-Length before anything is read, else while it streams in."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise WebError(413, f"request too large (at most {limit} bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise WebError(413, f"request too large (at most {limit} bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


async def small_form(request: Request) -> Any:
    """A form of a few short fields (sign-in, a note, a user): its declared length checked
    before it is read, no files."""
    declared = request.headers.get("content-length", "")
    if not declared.isdigit() or int(declared) > MAX_FORM_BYTES:
        raise WebError(413, f"the form is too large (at most {MAX_FORM_BYTES} bytes)")
    return await request.form(max_files=0, max_fields=8)


def _note(form: Any, limit: int, what: str) -> str:
    """A free-text note a form carries: printable, 1 to ``limit`` characters."""
    note = str(form.get("note", "")).strip()
    if not 0 < len(note) <= limit or not note.isprintable():
        raise WebError(400, f"{what} (1 to {limit} characters)")
    return note


def _authenticate(request: Request, store: Store, name: str, password: str) -> User:
    del request  # the threadpool helper's signature
    return authenticate(store, name, password)


def json_object(body: object) -> dict[str, Any]:
    """A credential posted by the page: a JSON object, or 400."""
    if not isinstance(body, dict):
        raise WebError(400, "the body must be a JSON object")
    return body


class Scans:
    """The transfers in progress, one per (operator, batch), in this process's memory: a
    page left open costs at most :data:`MAX_SCANS` decoders, the oldest dropped first."""

    def __init__(self) -> None:
        self._decoders: dict[tuple[str, str], URDecoder] = {}
        self._decoder: QrDecoder | None = None

    def frame(self, key: tuple[str, str], image: bytes) -> dict[str, Any]:
        if self._decoder is None:
            self._decoder = default_decoder()
        decoder = self._decoders.pop(key, None) or URDecoder(expected_types=("crypto-psbt",))
        self._decoders[key] = decoder  # newest last
        while len(self._decoders) > MAX_SCANS:
            self._decoders.pop(next(iter(self._decoders)))
        pixels = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_GRAYSCALE)
        texts = self._decoder.decode(pixels) if pixels is not None else []
        notes = [str(decoder.receive(text)) for text in texts[:4]]
        progress = decoder.progress
        answer: dict[str, Any] = {
            "seen": len(texts),
            "known": progress.fragments_known,
            "needed": progress.seq_len,
            "left": progress.estimated_parts_left,
            "status": str(progress),
            "notes": [n for n in notes if n.startswith("rejected")][:1],
            "complete": decoder.is_complete,
        }
        if decoder.result is not None:
            answer["payload"] = decode_psbt(decoder.result.cbor)
        return answer

    def forget(self, key: tuple[str, str]) -> None:
        self._decoders.pop(key, None)


def _imported(label: str, result: ImportResult) -> str:
    receipts = ", ".join(result.receipts) or "no receipt"
    again = " (already imported: counted once)" if result.duplicate else ""
    state = (
        "complete: ready to broadcast"
        if result.complete
        else "more signatures needed: " + "; ".join(result.missing[:3])
    )
    return (
        f"{result.signatures} valid signature(s), approved by {receipts}{again}; "
        f"batch {label}: {state}"
    )


def _wallet_line(summary: dict[str, Any]) -> dict[str, Any]:
    coins = summary["coins"]
    spendable = sum(coins.get(state, {}).get("sats") or 0 for state in ("available", "locked"))
    return {
        "name": summary["wallet"],
        "kind": summary["kind"],
        "network": summary["network"],
        "balance": format_btc(spendable),
        "coins": sum(coins.get(state, {}).get("count") or 0 for state in ("available", "locked")),
    }


def _made_on_the_web_by(store: Store, batch_id: int) -> str | None:
    """Who made the batch on the web page (the ``web_batch_created`` event's actor)."""
    row = store.one(
        "SELECT actor FROM events WHERE kind = 'web_batch_created' AND batch_id = ? "
        "ORDER BY id LIMIT 1",
        batch_id,
    )
    return None if row is None else row["actor"]


def _latest_request(store: Store, label: str) -> Any:
    try:
        batch = find_batch(store, label)
    except BatchError as exc:
        raise WebError(404, str(exc)) from None
    row = store.one(
        "SELECT * FROM requests WHERE batch_id = ? ORDER BY id DESC LIMIT 1", batch["id"]
    )
    if row is None:
        raise WebError(404, f"batch {label} has no request")
    return row


def _signed_in(request: Request, user: User) -> None:
    """A new session for ``user`` (never the one the sign-in page had: no fixation)."""
    request.session.clear()
    request.session.update(
        {"user": user.name, "epoch": user.session_epoch, "csrf": secrets.token_urlsafe(24)}
    )


def _csrf(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(24)
        request.session["csrf"] = token
    return token


def _csrf_ok(request: Request, given: str) -> bool:
    expected = request.session.get("csrf")
    return isinstance(expected, str) and hmac.compare_digest(
        expected.encode(), given.encode("utf-8", "replace")
    )


def _pop_challenge(request: Request) -> bytes:
    challenge = request.session.pop("challenge", None)
    if not isinstance(challenge, str):
        raise WebError(400, "no registration in progress: start again")
    return bytes.fromhex(challenge)
