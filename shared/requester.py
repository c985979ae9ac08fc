"""Requesters the station can verify: passkeys (WebAuthn, P-256) listed in the signed policy.

A request's metadata names its requester, but a name is only text anyone can type; the
station's rule "the requester may not approve their own request" (REQUIREMENTS 13, 33)
needs to know who really asked. So each requester holds a passkey, the administrators'
signed policy lists its public key (:class:`Requester`), and the requester signs the
request hash with it: a WebAuthn assertion (``navigator.credentials.get``) whose challenge
is the 32-byte request hash. The coordinator carries the assertion in the PSBT
(``shared.request.attach_assertion``, outside the request hash, as receipts are); the
station verifies it before any officer is asked (:func:`verify_assertion`), refuses a
request without a valid one from an active listed requester, and never counts an approval
by the officer the requester is. The audit replay verifies the same assertion from the
transcript.

The WebAuthn checks themselves (client data type, challenge, origin, RP id hash, user
presence and verification, the signature over authenticatorData and the client data hash)
are py_webauthn's (Duo Labs), imported only when an assertion is verified: it costs some
0.3 s to import, which the station's start does not pay. The policy's public keys are
COSE_Key maps read here (EC2, ES256, P-256, nothing else) so a policy is checked without it.

The signature counter is not checked: synced passkeys report 0, and an assertion is bound
to one request hash, which the station signs at most once (request ids are never reused).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from shared import canonical
from shared.checks import FieldChecks
from shared.journal import is_fingerprint

ASSERTION_TYPE = "coldstation-requester-assertion"
MAX_REQUESTERS = 100
MAX_NAME = 64
MAX_CREDENTIAL_ID = 1023  # WebAuthn: a credential id is at most 1023 bytes
MAX_AUTHENTICATOR_DATA = 1024
MAX_CLIENT_DATA = 4096
MAX_SIGNATURE = 80  # an ES256 DER signature is at most 72 bytes
MAX_RP_ID = 253
MAX_ORIGIN = 300
MAX_ASSERTION_BYTES = 8192

_COSE_KTY, _COSE_ALG, _COSE_CRV, _COSE_X, _COSE_Y = 1, 3, -1, -2, -3
_COSE_EC2, _COSE_ES256, _COSE_P256 = 2, -7, 1

_REQUESTER_KEYS = frozenset({"name", "credential_id", "public_key", "rp_id", "origin", "active"})
#: ``officer``: the fingerprint of the officer key the same person holds, when they hold one
_REQUESTER_OPTIONAL = frozenset({"officer"})
_ASSERTION_KEYS = frozenset(
    {"type", "credential_id", "authenticator_data", "client_data_json", "signature"}
)


class RequesterError(ValueError):
    """A requester entry, an assertion, or its verification that fails."""


_check = FieldChecks(RequesterError)


def cose_p256_point(cose_key: bytes) -> bytes:
    """The uncompressed P-256 point of a COSE_Key, or RequesterError: exactly the map a
    WebAuthn ES256 credential registers (kty EC2, alg ES256, crv P-256, x, y), canonical,
    with the point on the curve."""
    try:
        plain = canonical.decode(cose_key, max_size=1024)
    except canonical.CanonicalError as exc:
        raise RequesterError(f"public key is not a canonical COSE_Key: {exc}") from None
    expected = {_COSE_KTY: _COSE_EC2, _COSE_ALG: _COSE_ES256, _COSE_CRV: _COSE_P256}
    if not isinstance(plain, dict) or set(plain) != {*expected, _COSE_X, _COSE_Y}:
        raise RequesterError("public key must be a COSE_Key with kty, alg, crv, x and y only")
    if any(plain[k] != v for k, v in expected.items()):
        raise RequesterError("public key must be an ES256 P-256 key (kty 2, alg -7, crv 1)")
    x, y = plain[_COSE_X], plain[_COSE_Y]
    if not (isinstance(x, bytes) and isinstance(y, bytes) and len(x) == len(y) == 32):
        raise RequesterError("public key coordinates must be 32 bytes each")
    point = b"\x04" + x + y
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise RequesterError("public key is not a point on P-256") from None
    return point


def cose_key_of(point: bytes) -> bytes:
    """The canonical COSE_Key of an uncompressed P-256 point (what a policy lists)."""
    if len(point) != 65 or point[0] != 4:
        raise RequesterError("a P-256 point must be 65 bytes, uncompressed")
    return canonical.encode(
        {
            _COSE_KTY: _COSE_EC2,
            _COSE_ALG: _COSE_ES256,
            _COSE_CRV: _COSE_P256,
            _COSE_X: point[1:33],
            _COSE_Y: point[33:],
        }
    )


@dataclass(frozen=True)
class Requester:
    """One requester's passkey as the policy lists it.

    ``rp_id`` and ``origin`` are where the passkey was registered (the coordinator's web
    address): an assertion made for another site does not verify. ``officer`` is the
    fingerprint of the officer key the same person holds, if any: that officer's approval
    of this requester's requests never counts. Revoked requesters stay listed, inactive.
    """

    name: str
    credential_id: bytes
    public_key: bytes  # COSE_Key
    rp_id: str
    origin: str
    active: bool = True
    officer: str | None = None

    def __post_init__(self) -> None:
        _check.text(self.name, "requester name", MAX_NAME)
        if not isinstance(self.credential_id, bytes) or not (
            0 < len(self.credential_id) <= MAX_CREDENTIAL_ID
        ):
            raise RequesterError(f"requester {self.name!r}: credential id must be 1..1023 bytes")
        if not isinstance(self.public_key, bytes):
            raise RequesterError(f"requester {self.name!r}: public key must be bytes")
        try:
            cose_p256_point(self.public_key)
        except RequesterError as exc:
            raise RequesterError(f"requester {self.name!r}: {exc}") from None
        if is_fingerprint(self.name):
            raise RequesterError(
                f"requester name {self.name!r} looks like an officer fingerprint: use a name"
            )
        _check.text(self.rp_id, f"requester {self.name!r} rp_id", MAX_RP_ID)
        _check.text(self.origin, f"requester {self.name!r} origin", MAX_ORIGIN)
        try:
            host = origin_host(self.origin)
        except RequesterError as exc:
            raise RequesterError(f"requester {self.name!r}: {exc}") from None
        if host != self.rp_id and not host.endswith(f".{self.rp_id}"):
            raise RequesterError(
                f"requester {self.name!r}: rp_id {self.rp_id!r} is not the origin's host "
                f"{host!r} (nor a domain it is under)"
            )
        _check.boolean(self.active, f"requester {self.name!r} active")
        if self.officer is not None and not is_fingerprint(self.officer):
            raise RequesterError(
                f"requester {self.name!r}: officer {self.officer!r} is not 16 hex digits"
            )

    @property
    def key_fingerprint(self) -> str:
        """16 hex digits of SHA-256 over the COSE public key: what the enrolment page shows
        the requester and the policy draft shows the administrators, to compare."""
        return hashlib.sha256(self.public_key).digest()[:8].hex()

    @property
    def credential_fingerprint(self) -> str:
        return hashlib.sha256(self.credential_id).digest()[:8].hex()

    def to_plain(self) -> dict[str, Any]:
        plain: dict[str, Any] = {
            "name": self.name,
            "credential_id": self.credential_id,
            "public_key": self.public_key,
            "rp_id": self.rp_id,
            "origin": self.origin,
            "active": self.active,
        }
        if self.officer is not None:
            plain["officer"] = self.officer
        return plain

    @classmethod
    def from_plain(cls, plain: object) -> Requester:
        data = _check.exact_keys(plain, "requester", _REQUESTER_KEYS, _REQUESTER_OPTIONAL)
        if "officer" in data and data["officer"] is None:  # one encoding: no officer, no key
            raise RequesterError(f"requester {data['name']!r}: officer is null: omit it")
        return cls(
            data["name"],
            data["credential_id"],
            data["public_key"],
            data["rp_id"],
            data["origin"],
            data["active"],
            data.get("officer"),
        )


ENROLMENT_TYPE = "coldstation-requester"


def enrolment_json(requester: Requester) -> str:
    """A requester's passkey as the coordinator hands it to the administrators (JSON,
    binary fields base64url), for ``policy draft --add-requester``."""
    plain: dict[str, Any] = {
        "type": ENROLMENT_TYPE,
        "name": requester.name,
        "credential_id": base64url(requester.credential_id),
        "public_key": base64url(requester.public_key),
        "rp_id": requester.rp_id,
        "origin": requester.origin,
    }
    return json.dumps(plain, indent=1, sort_keys=True)


def from_enrolment_json(text: str | bytes) -> Requester:
    """Read :func:`enrolment_json` output strictly (an active requester, no officer: the
    administrators link one in the draft)."""
    try:
        plain = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise RequesterError(f"not JSON: {exc}") from None
    keys = {"type", "name", "credential_id", "public_key", "rp_id", "origin"}
    data = _check.exact_keys(plain, "requester enrolment", keys)
    if data["type"] != ENROLMENT_TYPE:
        raise RequesterError(f"type {data['type']!r} is not {ENROLMENT_TYPE!r}")
    return Requester(
        data["name"],
        _base64url(data["credential_id"], "credential_id"),
        _base64url(data["public_key"], "public_key"),
        data["rp_id"],
        data["origin"],
    )


def check_requesters(requesters: Iterable[object]) -> tuple[Requester, ...]:
    """A policy's requester list: Requester entries, names and credential ids unique."""
    items = tuple(_check.items(requesters, "requesters", MAX_REQUESTERS))
    for item in items:
        if not isinstance(item, Requester):
            raise RequesterError("requesters must hold Requester entries")
    ids = [r.credential_id for r in items]
    if len(set(ids)) != len(ids):
        raise RequesterError("two requesters share a credential id")
    names = [r.name for r in items if r.active]  # a revoked name may be enrolled again
    if len(set(names)) != len(names):
        raise RequesterError("two active requesters share a name")
    return items


def check_origin(origin: str) -> str:
    """An origin passkeys may be registered at: ``https://HOST[:PORT]``, or
    ``http://localhost[:PORT]`` (one workstation, tests), and nothing else (no path, no
    user, no query): the exact text browsers put in clientDataJSON."""
    if not isinstance(origin, str) or _ORIGIN.fullmatch(origin) is None:
        raise RequesterError(
            f"origin {str(origin)[:MAX_ORIGIN]!r} must be https://HOST[:PORT] "
            "(or http://localhost[:PORT])"
        )
    return origin


def origin_host(origin: str) -> str:
    """The host of an origin :func:`check_origin` accepts (the WebAuthn RP id's domain)."""
    match = _ORIGIN.fullmatch(check_origin(origin))
    assert match is not None
    return match.group("host") or match.group("local") or ""


_HOST = r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_ORIGIN = re.compile(
    rf"https://(?P<host>{_HOST})(?::[0-9]{{1,5}})?|http://(?P<local>localhost|127\.0\.0\.1)"
    r"(?::[0-9]{1,5})?"
)


# -- assertions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Assertion:
    """A requester's WebAuthn assertion over a request hash, as the PSBT carries it."""

    credential_id: bytes
    authenticator_data: bytes
    client_data_json: bytes
    signature: bytes

    def __post_init__(self) -> None:
        for name, limit in (
            ("credential_id", MAX_CREDENTIAL_ID),
            ("authenticator_data", MAX_AUTHENTICATOR_DATA),
            ("client_data_json", MAX_CLIENT_DATA),
            ("signature", MAX_SIGNATURE),
        ):
            field_ = getattr(self, name)
            if not isinstance(field_, bytes) or not 0 < len(field_) <= limit:
                raise RequesterError(f"assertion {name} must be 1..{limit} bytes")

    def to_plain(self) -> dict[str, Any]:
        return {
            "type": ASSERTION_TYPE,
            "credential_id": self.credential_id,
            "authenticator_data": self.authenticator_data,
            "client_data_json": self.client_data_json,
            "signature": self.signature,
        }

    @classmethod
    def from_plain(cls, plain: object) -> Assertion:
        data = _check.exact_keys(plain, "assertion", _ASSERTION_KEYS)
        if data["type"] != ASSERTION_TYPE:
            raise RequesterError(f"assertion type {data['type']!r} is not {ASSERTION_TYPE!r}")
        return cls(
            data["credential_id"],
            data["authenticator_data"],
            data["client_data_json"],
            data["signature"],
        )

    def to_bytes(self) -> bytes:
        return canonical.encode(self.to_plain())

    @classmethod
    def from_bytes(cls, data: bytes) -> Assertion:
        try:
            plain = canonical.decode(data, max_size=MAX_ASSERTION_BYTES)
        except canonical.CanonicalError as exc:
            raise RequesterError(f"assertion: {exc}") from None
        return cls.from_plain(plain)

    @classmethod
    def from_webauthn_json(cls, text: str | bytes) -> Assertion:
        """What ``navigator.credentials.get()`` returned, as ``PublicKeyCredential.toJSON()``
        writes it (base64url fields), read strictly: one line names what is wrong."""
        try:
            plain = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise RequesterError(f"assertion is not JSON: {exc}") from None
        if not isinstance(plain, dict) or plain.get("type") != "public-key":
            raise RequesterError("assertion is not a public-key credential (type 'public-key')")
        response = plain.get("response")
        if not isinstance(response, dict):
            raise RequesterError("assertion has no response object")
        raw_id = _base64url(plain.get("rawId", plain.get("id")), "assertion rawId")
        if "id" in plain and _base64url(plain["id"], "assertion id") != raw_id:
            raise RequesterError("assertion id and rawId differ")
        return cls(
            raw_id,
            _base64url(response.get("authenticatorData"), "assertion authenticatorData"),
            _base64url(response.get("clientDataJSON"), "assertion clientDataJSON"),
            _base64url(response.get("signature"), "assertion signature"),
        )

    def to_webauthn_json(self) -> dict[str, Any]:
        """The assertion as a browser's ``PublicKeyCredential.toJSON()`` writes it."""
        encoded = base64url(self.credential_id)
        return {
            "id": encoded,
            "rawId": encoded,
            "type": "public-key",
            "response": {
                "authenticatorData": base64url(self.authenticator_data),
                "clientDataJSON": base64url(self.client_data_json),
                "signature": base64url(self.signature),
            },
            "clientExtensionResults": {},
        }


def assertion_challenge(assertion: Assertion) -> bytes:
    """The challenge a ``webauthn.get`` assertion's client data names (what the requester
    signed), read without verifying anything: the coordinator's early check that an
    assertion is over the request it is attached to. The station verifies the rest."""
    try:
        client = json.loads(assertion.client_data_json)
    except (ValueError, RecursionError):
        raise RequesterError("assertion clientDataJSON is not JSON") from None
    if not isinstance(client, dict) or client.get("type") != "webauthn.get":
        raise RequesterError("assertion clientDataJSON is not a webauthn.get")
    return _base64url(client.get("challenge"), "assertion challenge")


def base64url(data: bytes) -> str:
    """Unpadded base64url, as WebAuthn writes binary fields in JSON."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _base64url(value: object, name: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise RequesterError(f"{name} is missing or not text")
    if not _BASE64URL.fullmatch(value):
        raise RequesterError(f"{name} is not base64url")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError:
        raise RequesterError(f"{name} is not base64url") from None


_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


def _short(credential_id: bytes) -> str:
    return base64url(credential_id)[:16]


def verify_assertion(
    assertion: Assertion, requesters: Iterable[Requester], request_hash: bytes
) -> Requester:
    """The active listed requester whose passkey signed ``request_hash``, or RequesterError
    naming why not (unknown credential, revoked, another site, no user verification, a
    challenge that is another request's, a bad signature)."""
    from webauthn import verify_authentication_response
    from webauthn.helpers.exceptions import WebAuthnException

    by_id = {r.credential_id: r for r in requesters}
    requester = by_id.get(assertion.credential_id)
    if requester is None:
        raise RequesterError(
            f"the assertion's passkey {_short(assertion.credential_id)} is not a requester "
            "the policy lists"
        )
    if not requester.active:
        raise RequesterError(f"requester {requester.name!r} is revoked in the policy")
    try:
        verify_authentication_response(
            credential=assertion.to_webauthn_json(),
            expected_challenge=request_hash,
            expected_rp_id=requester.rp_id,
            expected_origin=requester.origin,
            credential_public_key=requester.public_key,
            credential_current_sign_count=0,
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise RequesterError(
            f"requester {requester.name!r}'s passkey assertion does not verify: {reason}"
        ) from None
    return requester


def verify_requester(
    requesters: tuple[Requester, ...],
    assertion: Assertion | None,
    request_hash: bytes,
    named: object,
) -> Requester:
    """Who asked, as a policy that lists requesters requires it shown: an assertion over
    ``request_hash`` by an active listed requester, who is the one the request names
    (``named``). The station refuses the request on RequesterError; the audit reports it."""
    if assertion is None:
        raise RequesterError(
            "the request carries no requester passkey assertion; the policy requires one"
        )
    requester = verify_assertion(assertion, requesters, request_hash)
    if named != requester.name:
        raise RequesterError(
            f"the request names requester {str(named)[:MAX_NAME]!r} but its passkey "
            f"assertion is {requester.name!r}'s"
        )
    return requester


def excluded_approver(
    requesters: tuple[Requester, ...], verified: Requester | None, named: object
) -> str | None:
    """The officer fingerprint whose approval of this request does not count: the verified
    requester's own officer key. Under a policy that lists no requesters, the request's
    unverified requester text, as before requesters were verified (it counts only if it
    happens to be an officer's fingerprint)."""
    if requesters:
        return verified.officer if verified is not None else None
    return named if isinstance(named, str) else None


def requesters_from_plain(value: object) -> tuple[Requester, ...]:
    return check_requesters(
        tuple(Requester.from_plain(p) for p in _check.items(value, "requesters", MAX_REQUESTERS))
    )
