"""Software keys standing in for an appliance in coordinator tests (issue 6 allows this).

A :class:`SoftAppliance` does what the coordinator sees of a real appliance: it exports a
``wpkh(<key>)`` descriptor with a signed ``wallet_exported`` receipt, pins a multisig with a
``wallet_pinned`` receipt, and answers a request with its signatures plus a
``signing_decision`` receipt approving the request hash. Its journal is a real hash chain
signed by a real (software) audit key, so every check the coordinator makes runs against
genuine signatures. The real appliance's own tests (tests/appliance) cover the HSM side.

Receipts follow the appliance's receipt contract (issue 12 item 4): a wallet receipt's
``actors`` are the officers who activated the ceremony and ``details["quorum"]`` the quorum
in force; an approved signing decision's ``actors`` are the approving officers, with
``details["quorum"]`` and ``details["approvals"]`` = {fingerprint: DER signature}. Tests
can make a receipt short of its quorum or deferred, to see the coordinator refuse it.
"""

from __future__ import annotations

import hashlib
import time

from coincurve import PrivateKey

from shared.bitcoin import ecdsa
from shared.bitcoin.address import Network
from shared.bitcoin.bip32 import ExtendedKey, KeyOrigin, parse_path
from shared.bitcoin.descriptor import Descriptor
from shared.journal import Entry, next_record, seal
from shared.psbt.model import Psbt
from shared.psbt.signer import sign_psbt
from shared.request import (
    SUBTYPE_RECEIPT,
    attach_receipt,
    proprietary_keydata,
    read_request,
    request_hash,
)

ACCOUNT_PATH = "m/84h/1h/0h"
#: children per branch a bip32 soft appliance signs with (tests stay far below)
CHILDREN = 40


def secret(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def pubkey(sk: bytes) -> bytes:
    return PrivateKey(sk).public_key.format(compressed=True)


class SoftAppliance:
    """``pool`` signing keys (the first is :attr:`key`): a fixed-key wallet hands out each
    address once, so a test that makes several batches needs a pool of them."""

    def __init__(
        self,
        appliance_id: str,
        seed: str | None = None,
        officers: int = 3,
        quorum: int = 2,
        pool: int = 12,
        bip32: bool = False,
    ) -> None:
        self.appliance_id = appliance_id
        seed = seed or appliance_id
        self.key = secret(f"{seed} signing key")
        self.keys = [self.key] + [secret(f"{seed} signing key {n}") for n in range(1, pool)]
        #: a bip32-seed key instead: one ranged export, children sign
        self.account: ExtendedKey | None = None
        if bip32:
            master = ExtendedKey.from_seed(self.key, Network.TESTNET)
            self.account = master.derive_path(ACCOUNT_PATH)
            self.origin = KeyOrigin(master.fingerprint, parse_path(ACCOUNT_PATH))
            self.keys = [
                self.account.derive_path([branch, index]).key
                for branch in (0, 1)
                for index in range(CHILDREN)
            ]
        self.audit = secret(f"{seed} audit key")
        self.officer_keys = [secret(f"{seed} officer {n}") for n in range(officers)]
        self.quorum = quorum
        self.entries: list[Entry] = []
        self.last_signed: bytes | None = None  # the signed PSBT it last handed out

    @property
    def audit_pubkey(self) -> bytes:
        return pubkey(self.audit)

    @property
    def descriptor(self) -> Descriptor:
        return self.descriptor_of(0)

    @property
    def pool_size(self) -> int:
        """How many descriptors it exports: one per key, or the one ranged account."""
        return 1 if self.account is not None else len(self.keys)

    def descriptor_of(self, position: int) -> Descriptor:
        if self.account is not None:
            xpub = self.account.neuter()
            text = f"wpkh([{self.origin.format('h')}]{xpub}/<0;1>/*)"
            return Descriptor.parse(text, require_checksum=False)
        key = pubkey(self.keys[position])
        return Descriptor.parse(f"wpkh({key.hex()})", require_checksum=False)

    @staticmethod
    def fingerprint(officer_key: bytes) -> str:
        return hashlib.sha256(pubkey(officer_key)).hexdigest()[:16]

    def officers(self, count: int | None = None) -> list[bytes]:
        """The first ``count`` officers (default: exactly the quorum)."""
        return self.officer_keys[: self.quorum if count is None else count]

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

    @staticmethod
    def label(position: int) -> str:
        """The station's label of the key exported at ``position``."""
        return f"key-{position}"

    def _wallet_record(
        self,
        event: str,
        descriptor: Descriptor,
        officers: int | None,
        deferred: bool,
        label: str | None = None,
    ) -> bytes:
        text = str(descriptor)
        details: dict[str, object] = {
            "descriptor": text,
            "audit_key": self.audit_pubkey.hex(),
            "quorum": self.quorum,
        }
        if label is not None:
            details["label"] = label
        if deferred:
            details["deferred"] = {"written_at_seq": len(self.entries)}
        return self.record(
            event,
            actors=[self.fingerprint(k) for k in self.officers(officers)],
            subjects={"descriptor": hashlib.sha256(text.encode()).digest()},
            details=details,
        ).to_bytes()

    def export(
        self, *, officers: int | None = None, deferred: bool = False, position: int = 0
    ) -> tuple[str, bytes]:
        """(descriptor text, receipt bytes), as `export-wallet` writes them."""
        descriptor = self.descriptor_of(position)
        receipt = self._wallet_record(
            "wallet_exported", descriptor, officers, deferred, self.label(position)
        )
        return str(descriptor), receipt

    def key_state(
        self,
        event: str,
        position: int = 0,
        *,
        officers: int | None = None,
        quorum: bool = True,
    ) -> bytes:
        """A ``key_suspended``/``key_reactivated``/``key_archived`` receipt, as
        ``coldstation-appliance suspend LABEL --out`` writes it."""
        details: dict[str, object] = {"label": self.label(position)}
        if quorum:
            details["quorum"] = self.quorum
        actors = [self.fingerprint(k) for k in self.officers(officers)]
        return self.record(event, actors=actors, details=details).to_bytes()

    def pin(
        self, descriptor_text: str, *, officers: int | None = None, deferred: bool = False
    ) -> bytes:
        """A ``wallet_pinned`` receipt, as `pin-wallet` writes it."""
        descriptor = Descriptor.parse(descriptor_text)
        return self._wallet_record("wallet_pinned", descriptor, officers, deferred)

    def sign(
        self,
        psbt_bytes: bytes,
        decision: str = "approved",
        *,
        approvers: int | None = None,
        deferred: bool = False,
    ) -> bytes:
        """Sign our inputs and attach the approval receipt for the request hash."""
        psbt = Psbt.parse(psbt_bytes)
        digest = request_hash(psbt, read_request(psbt))
        signed, _ = sign_psbt(psbt, self.keys)
        officers = self.officers(approvers)
        details: dict[str, object] = {"txid": psbt.unsigned_tx.txid_hex, "quorum": self.quorum}
        if decision == "approved":
            details["approvals"] = {
                self.fingerprint(k): ecdsa.sign(k, hashlib.sha256(digest).digest())
                for k in officers
            }
        if deferred:
            details["deferred"] = {"written_at_seq": len(self.entries)}
        entry = self.record(
            "signing_decision",
            decision=decision,
            actors=[self.fingerprint(k) for k in officers],
            subjects={
                "request": digest,
                "psbt": hashlib.sha256(psbt.unsigned_tx.serialize()).digest(),
            },
            details=details,
        )
        self.last_signed = attach_receipt(signed, entry.to_bytes()).serialize()
        return self.last_signed

    def reshow(self, *, reissue_record: bool = False) -> bytes:
        """The last signed PSBT shown again: as delivered (its original approval receipt),
        or with a ``signing_reissued`` record in place of it (one receipt per appliance)."""
        assert self.last_signed is not None
        if not reissue_record:
            return self.last_signed
        psbt = Psbt.parse(self.last_signed)
        digest = request_hash(psbt, read_request(psbt))
        bare = strip_receipts(psbt)
        entry = self.record("signing_reissued", subjects={"request": digest})
        return attach_receipt(bare, entry.to_bytes()).serialize()


def strip_receipts(psbt: Psbt) -> Psbt:
    """``psbt`` without its Coldstation receipts (the proprietary global records)."""
    bare = Psbt.from_unsigned_tx(psbt.unsigned_tx)
    receipt = b"\xfc" + proprietary_keydata(SUBTYPE_RECEIPT)
    for key, value in psbt.globals.raw_records().items():
        if not key.startswith(receipt):
            bare.globals.set_record(key, value)
    for src, dst in zip(psbt.inputs + psbt.outputs, bare.inputs + bare.outputs, strict=True):
        for key, value in src.raw_records().items():
            dst.set_record(key, value)
    return bare
