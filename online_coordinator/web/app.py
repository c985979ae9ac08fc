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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import cv2
import jinja2
import numpy as np
from starlette.applications import Starlette
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
from online_coordinator.fees import MIN_RELAY_FEE_RATE
from online_coordinator.finish import FinishError, ImportResult
from online_coordinator.payouts import MAX_CSV_BYTES
from online_coordinator.status import AlertError, acknowledge_alert, open_alerts
from online_coordinator.store import Store
from online_coordinator.users import (
    User,
    UserError,
    authenticate,
    find_user,
    passkeys,
)
from online_coordinator.users import (
    add_passkey as store_passkey,
)
from online_coordinator.wallet import WalletError
from online_coordinator.web.qr import request_frames
from shared.adapters.decoders import QrDecoder, default_decoder
from shared.bitcoin.amount import AmountError, parse_sat_per_vb
from shared.psbt.model import Psbt
from shared.request import hash_words, read_assertion, read_request
from shared.requester import (
    Assertion,
    Requester,
    RequesterError,
    cose_key_of,
    enrolment_json,
    verify_assertion,
)
from shared.ur.registry import decode_psbt
from shared.ur.ur import URDecoder

HERE = Path(__file__).parent
SESSION_KEY_FILE = "web-session.key"
SESSION_SECONDS = 8 * 3600
MAX_JSON_BYTES = 64 * 1024
MAX_FRAME_BYTES = 4 * 1024 * 1024  # one camera frame (JPEG)
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
        return urlsplit(self.origin).hostname or ""

    @property
    def secure(self) -> bool:
        return self.origin.startswith("https://")


def check_origin(origin: str) -> str:
    """An origin passkeys may be registered at: https, or http on localhost (tests, a
    workstation); no path, query or fragment."""
    parts = urlsplit(origin)
    local = parts.hostname in ("localhost", "127.0.0.1")
    if parts.scheme not in ("https", "http") or (parts.scheme == "http" and not local):
        raise ValueError(f"origin {origin!r} must be https:// (or http://localhost)")
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"origin {origin!r} must be scheme://host[:port] only")
    return f"{parts.scheme}://{parts.netloc}"


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

    def user(self, store: Store, request: Request, role: str | None = None) -> User:
        name = request.session.get("user")
        user = find_user(store, name) if isinstance(name, str) else None
        if user is None:
            request.session.clear()
            raise WebError(401, "sign in first")
        if role is not None and user.role != role:
            raise WebError(403, f"only a {role} may do this; {user.name} is a {user.role}")
        return user

    # -- pages --------------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            return self.render(request, "login.html")
        form = await request.form()
        if not _csrf_ok(request, str(form.get("csrf", ""))):
            return self.render(request, "login.html", 403, error="the form expired: try again")
        name, password = str(form.get("name", "")), str(form.get("password", ""))
        try:
            with self.store() as store:
                user = authenticate(store, name, password)
        except UserError as exc:
            return self.render(request, "login.html", 401, error=str(exc), name=name)
        request.session.clear()  # a new session at each login (no fixation)
        request.session.update({"user": user.name, "csrf": secrets.token_urlsafe(24)})
        return RedirectResponse("/", status_code=303)

    async def logout(self, request: Request) -> Response:
        form = await request.form()
        if _csrf_ok(request, str(form.get("csrf", ""))):
            request.session.clear()
        return RedirectResponse("/login", status_code=303)

    async def home(self, request: Request) -> Response:
        return await self._page(request, self._home)

    def _home(self, request: Request, store: Store) -> Response:
        user = self.user(store, request)
        batches = store.all("SELECT label, state, created FROM batches ORDER BY id DESC")
        return self.render(request, "home.html", batches=batches, role=user.role)

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
        form = await request.form()
        note = str(form.get("note", "")).strip()

        def close(request: Request, store: Store) -> Response:
            user = self.user(store, request)
            if user.role not in ("operator", "administrator"):
                raise WebError(
                    403, f"only an operator or administrator may; {user.name} is a {user.role}"
                )
            if not _csrf_ok(request, str(form.get("csrf", ""))):
                raise WebError(403, "the form expired: load it again")
            if not note or len(note) > 500 or not note.isprintable():
                raise WebError(400, "say what was checked and done (1 to 500 characters)")
            try:
                acknowledge_alert(
                    store, request.path_params["alert_id"], f"{user.name}: {note}", actor=user.name
                )
            except AlertError as exc:
                raise WebError(400, str(exc)) from None
            return RedirectResponse("/alerts", status_code=303)

        return await self._page(request, close)

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

    def _batch(self, request: Request, store: Store) -> Response:
        user = self.user(store, request)
        label = request.path_params["label"]
        found = _latest_request(store, label)
        psbt = Psbt.parse(bytes(found["unsigned_psbt"]))
        digest = bytes(found["request_hash"])
        return self.render(
            request,
            "batch.html",
            label=label,
            state=found["state"],
            requester=read_request(psbt).requester,
            request_hash=digest.hex(),
            words=hash_words(digest),
            attested=read_assertion(psbt) is not None,
            may_attest=user.role == "requester" and found["state"] == "open",
            may_import=user.role == "operator" and found["state"] in ("open", "signed"),
            may_broadcast=user.role == "operator" and found["state"] == "signed",
        )

    async def new_batch(self, request: Request) -> Response:
        if request.method == "GET":
            return await self._page(request, self._new_batch_form)
        form = await request.form()
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
                create_batch(
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
                bytes(found["unsigned_psbt"]), request.query_params.get("preset", "fast")
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
        image = await request.body()
        if len(image) > MAX_FRAME_BYTES:
            return JSONResponse({"error": "frame too large"}, status_code=413)
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
                credential=body,  # type: ignore[arg-type]
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
            "message": "passkey enrolled: give the enrolment file to the administrators",
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
        text = json.dumps(body)
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
        open request must name them."""
        user = self.user(store, request, "requester")
        label = request.path_params["label"]
        found = _latest_request(store, label)
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
        try:
            with self.store() as store:
                return handler(request, store)
        except WebError as exc:
            if exc.status == 401:
                return RedirectResponse("/login", status_code=303)
            return self.render(request, "error.html", exc.status, error=str(exc))

    async def _api(
        self, request: Request, handler: Callable[[Request, Store, object], dict[str, Any]]
    ) -> Response:
        """A JSON call from the page's script: CSRF header checked, body read bounded."""
        if not _csrf_ok(request, request.headers.get("x-csrf-token", "")):
            return JSONResponse({"error": "missing or wrong CSRF token"}, status_code=403)
        raw = await request.body()
        if len(raw) > MAX_JSON_BYTES:
            return JSONResponse({"error": "request too large"}, status_code=413)
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        try:
            with self.store() as store:
                return JSONResponse(handler(request, store, body))
        except WebError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)


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


def _csrf(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(24)
        request.session["csrf"] = token
    return token


def _csrf_ok(request: Request, given: str) -> bool:
    expected = request.session.get("csrf")
    return isinstance(expected, str) and hmac.compare_digest(expected, given)


def _pop_challenge(request: Request) -> bytes:
    challenge = request.session.pop("challenge", None)
    if not isinstance(challenge, str):
        raise WebError(400, "no registration in progress: start again")
    return bytes.fromhex(challenge)
