"""Software keys standing in for an appliance in coordinator tests (issue 6 allows this).

A :class:`SoftAppliance` does what the coordinator sees of a real appliance: it exports a
``wpkh(<key>)`` descriptor with a signed ``wallet_exported`` receipt, pins a multisig with a
receipt, and answers a request with its signatures plus a ``signing_decision`` receipt
approving the request hash. Its journal is a real hash chain signed by a real (software)
audit key, so every check the coordinator makes runs against genuine signatures. The real
appliance's own tests (tests/appliance) cover the HSM side.
"""

from __future__ import annotations

import hashlib
import time

from coincurve import PrivateKey

from shared.bitcoin import ecdsa
from shared.bitcoin.descriptor import Descriptor
from shared.journal import Entry, next_record, seal
from shared.psbt.model import Psbt
from shared.psbt.signer import sign_psbt
from shared.request import attach_receipt, read_request, request_hash


def secret(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def pubkey(sk: bytes) -> bytes:
    return PrivateKey(sk).public_key.format(compressed=True)


class SoftAppliance:
    def __init__(self, appliance_id: str, seed: str | None = None) -> None:
        self.appliance_id = appliance_id
        seed = seed or appliance_id
        self.key = secret(f"{seed} signing key")
        self.audit = secret(f"{seed} audit key")
        self.entries: list[Entry] = []

    @property
    def audit_pubkey(self) -> bytes:
        return pubkey(self.audit)

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor.parse(f"wpkh({pubkey(self.key).hex()})", require_checksum=False)

    def record(self, event: str, **fields: object) -> Entry:
        previous = self.entries[-1] if self.entries else None
        record = next_record(
            previous, time=int(time.time()), appliance_id=self.appliance_id, event=event, **fields
        )  # type: ignore[arg-type]
        entry = seal(
            record, lambda digest: ecdsa.sign(self.audit, digest), audit_pubkey=self.audit_pubkey
        )
        self.entries.append(entry)
        return entry

    def _pin_record(self, descriptor: Descriptor) -> bytes:
        text = str(descriptor)
        return self.record(
            "wallet_exported",
            subjects={"descriptor": hashlib.sha256(text.encode()).digest()},
            details={"descriptor": text, "audit_key": self.audit_pubkey.hex()},
        ).to_bytes()

    def export(self) -> tuple[str, bytes]:
        """(descriptor text, receipt bytes), as `export-wallet` writes them."""
        return str(self.descriptor), self._pin_record(self.descriptor)

    def pin(self, descriptor_text: str) -> bytes:
        return self._pin_record(Descriptor.parse(descriptor_text))

    def sign(self, psbt_bytes: bytes, decision: str = "approved") -> bytes:
        """Sign our inputs and attach the approval receipt for the request hash."""
        psbt = Psbt.parse(psbt_bytes)
        digest = request_hash(psbt, read_request(psbt))
        signed, _ = sign_psbt(psbt, [self.key])
        entry = self.record(
            "signing_decision",
            decision=decision,
            subjects={
                "request": digest,
                "psbt": hashlib.sha256(psbt.unsigned_tx.serialize()).digest(),
            },
            details={"txid": psbt.unsigned_tx.txid_hex},
        )
        return attach_receipt(signed, entry.to_bytes()).serialize()
