"""A software passkey for tests: what a platform authenticator and a browser produce.

``SoftPasskey`` holds a P-256 key (``cryptography``) and makes what
``navigator.credentials.get({publicKey: {challenge, rpId, userVerification: "required"}})``
returns: authenticatorData (RP id hash, flags, a counter of 0 as synced passkeys report),
clientDataJSON (type, challenge as base64url, origin) and an ES256 signature over
authenticatorData || SHA-256(clientDataJSON).
Each knob (flags, type, origin, RP id, challenge) can be turned to make the assertions an
attacker would try. The browser tests use Chromium's own virtual authenticator instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from shared import canonical
from shared.requester import Assertion, Requester, base64url, cose_key_of

RP_ID = "coordinator.custodian.example"
ORIGIN = f"https://{RP_ID}"
FLAG_UP, FLAG_UV, FLAG_AT = 0x01, 0x04, 0x40


@dataclass
class SoftPasskey:
    """One requester's passkey."""

    name: str
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    credential_id: bytes = field(default_factory=lambda: os.urandom(32))

    @property
    def cose_key(self) -> bytes:
        point = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return cose_key_of(point)

    def requester(self, officer: str | None = None, active: bool = True) -> Requester:
        """The policy's entry for this passkey."""
        return Requester(
            self.name, self.credential_id, self.cose_key, RP_ID, ORIGIN, active, officer
        )

    def register(self, challenge: bytes, *, origin: str = ORIGIN, rp_id: str = RP_ID) -> dict:
        """What ``navigator.credentials.create()`` returns (``toJSON()``), attestation
        "none", for a server's registration ``challenge``."""
        point = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        attested = (
            bytes(16)  # AAGUID: none
            + struct.pack(">H", len(self.credential_id))
            + self.credential_id
            + cose_key_of(point)
        )
        authenticator_data = (
            hashlib.sha256(rp_id.encode()).digest()
            + bytes([FLAG_UP | FLAG_UV | FLAG_AT])
            + struct.pack(">I", 0)
            + attested
        )
        attestation = canonical.encode(
            {"fmt": "none", "attStmt": {}, "authData": authenticator_data}
        )
        client_data = json.dumps(
            {"type": "webauthn.create", "challenge": base64url(challenge), "origin": origin},
            separators=(",", ":"),
        ).encode()
        encoded = base64url(self.credential_id)
        return {
            "id": encoded,
            "rawId": encoded,
            "type": "public-key",
            "response": {
                "clientDataJSON": base64url(client_data),
                "attestationObject": base64url(attestation),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def assert_(
        self,
        challenge: bytes,
        *,
        origin: str = ORIGIN,
        rp_id: str = RP_ID,
        flags: int = FLAG_UP | FLAG_UV,
        kind: str = "webauthn.get",
        signer: ec.EllipticCurvePrivateKey | None = None,
    ) -> Assertion:
        """An assertion over ``challenge`` (the request hash)."""
        authenticator_data = (
            hashlib.sha256(rp_id.encode()).digest() + bytes([flags]) + struct.pack(">I", 0)
        )
        client_data = json.dumps(
            {
                "type": kind,
                "challenge": base64url(challenge),
                "origin": origin,
                "crossOrigin": False,
            },
            separators=(",", ":"),
        ).encode()
        signed = authenticator_data + hashlib.sha256(client_data).digest()
        signature = (signer or self.key).sign(signed, ec.ECDSA(hashes.SHA256()))
        return Assertion(self.credential_id, authenticator_data, client_data, signature)
