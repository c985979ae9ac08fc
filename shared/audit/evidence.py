"""The auditor's inputs, parsed from bytes into typed objects (no file or network I/O).

Two kinds of evidence reach an auditor: each appliance's audit bundle (its journal export,
every policy it installed, every display transcript; ``coldstation-appliance journal
export --evidence``) and the coordinator's evidence document (``coldstation-coordinator
export``). Parsing checks only *form*: whether a file can be read at all. Whether what it
says is true (signatures, hashes, quorums, decisions) is judged by :mod:`shared.audit.replay`,
which names every problem instead of stopping at the first.

Anything that cannot be parsed raises :class:`EvidenceError` with a one-line message naming
the file and the field, so the auditor's program can exit 2 without a traceback: a report
built on half-read evidence would be worse than none.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2

from shared.bitcoin.descriptor import Descriptor, DescriptorError
from shared.bitcoin.encoding import DecodeError
from shared.bitcoin.tx import Transaction
from shared.journal import Entry, JournalError, parse_export
from shared.policy import PolicyError, SignedPolicy
from shared.psbt import Psbt, PsbtError

EVIDENCE_TYPE = "coldstation-coordinator-evidence"
EVIDENCE_VERSION = 1
MAX_TRANSCRIPT_BYTES = 4 * 1024 * 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")


class EvidenceError(ValueError):
    """Evidence that cannot be read at all; the message names the file and the field."""


# -- appliance bundle ---------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyFile:
    """One ``policies/NNNN.cbor`` file: the signed policy and the hash the journal names."""

    name: str
    signed: SignedPolicy
    hash: bytes


@dataclass(frozen=True)
class Transcript:
    """One ``transcripts/<hash>.cbor`` file; ``digest`` is the hash of what it holds now."""

    name: str
    plain: dict[str, Any]
    digest: bytes


@dataclass(frozen=True)
class ApplianceBundle:
    """One appliance's audit bundle; ``source`` says where it came from, for the report."""

    source: str
    appliance_id: str
    audit_key: bytes
    entries: tuple[Entry, ...]
    policies: tuple[PolicyFile, ...]
    transcripts: Mapping[str, Transcript]


def parse_bundle(
    source: str,
    journal: bytes,
    policies: Mapping[str, bytes],
    transcripts: Mapping[str, bytes],
    journal_name: str = "journal.cbor",
) -> ApplianceBundle:
    """Parse a bundle from its files' bytes (file name -> bytes for the two folders);
    ``journal_name`` is how errors name the journal file (a bare export has no folder)."""
    try:
        appliance_id, audit_key, entries = parse_export(journal)
    except JournalError as exc:
        where = f"{source}/{journal_name}" if journal_name else source
        raise EvidenceError(f"{where}: {exc}") from exc
    parsed_policies = tuple(
        _policy(f"{source}/policies/{name}", name, data) for name, data in sorted(policies.items())
    )
    parsed_transcripts = {
        name: _transcript(f"{source}/transcripts/{name}", name, data)
        for name, data in sorted(transcripts.items())
    }
    return ApplianceBundle(
        source,
        appliance_id,
        audit_key,
        tuple(entries),
        parsed_policies,
        {t.name: t for t in parsed_transcripts.values()},
    )


def _policy(where: str, name: str, data: bytes) -> PolicyFile:
    try:
        signed = SignedPolicy.from_bytes(data)
    except PolicyError as exc:
        raise EvidenceError(f"{where}: not a signed policy: {exc}") from exc
    return PolicyFile(name, signed, signed.policy.hash())


def _transcript(where: str, name: str, data: bytes) -> Transcript:
    """A transcript is keyed by the hash in its name (what the journal points at).

    The content is hashed as stored; when that hash is the one the signed journal names,
    these are exactly the canonical bytes the appliance wrote, so plain CBOR decoding is
    enough (a file whose hash differs is reported as altered and its content never used).
    """
    stem = name.removesuffix(".cbor")
    if not _HEX64.fullmatch(stem):
        raise EvidenceError(f"{where}: a transcript's name must be its SHA-256 in hex")
    if len(data) > MAX_TRANSCRIPT_BYTES:
        raise EvidenceError(f"{where}: larger than {MAX_TRANSCRIPT_BYTES} bytes")
    try:
        plain = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise EvidenceError(f"{where}: not a CBOR transcript: {exc}") from exc
    if not isinstance(plain, dict):
        raise EvidenceError(f"{where}: a transcript must be a map")
    return Transcript(stem, plain, hashlib.sha256(data).digest())


# -- coordinator evidence -----------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """A wallet member: an appliance (with its receipts) or an external cosigner key."""

    appliance_id: str | None
    key: str
    role: str
    export_receipt: Entry | None
    pin_receipt: Entry | None

    @property
    def pubkey(self) -> bytes | None:
        """The raw public key of an appliance member (its key is ``[origin]hex``)."""
        text = self.key.split("]")[-1]
        try:
            key = bytes.fromhex(text)
        except ValueError:
            return None
        return key if len(key) == 33 else None


@dataclass(frozen=True)
class WalletEvidence:
    """A wallet as the coordinator describes it. ``birth_height`` is the coordinator's
    unsigned claim: the replay checks it (:mod:`shared.audit.birth`) and never walks the
    chain from it."""

    name: str
    network: str
    kind: str
    threshold: int | None
    birth_height: int
    descriptors: tuple[Descriptor, ...]
    members: tuple[Member, ...]


@dataclass(frozen=True)
class Receipt:
    """A receipt as the coordinator kept it; ``where`` names the field it came from."""

    appliance_id: str
    entry: Entry
    raw: bytes
    where: str


@dataclass(frozen=True)
class RequestEvidence:
    batch: str
    request_id: str
    kind: str
    replaces: str | None
    psbt: Psbt
    request_hash: bytes
    txid: str
    fee: int
    state: str
    responses: tuple[Psbt, ...]
    receipts: tuple[Receipt, ...]


@dataclass(frozen=True)
class BroadcastEvidence:
    index: int
    request_id: str | None
    txid: str
    wtxid: str
    raw: bytes
    tx: Transaction
    state: str
    block_hash: str | None
    height: int | None


@dataclass(frozen=True)
class CoordinatorEvidence:
    source: str
    appliances: Mapping[str, bytes]
    wallets: tuple[WalletEvidence, ...]
    requests: tuple[RequestEvidence, ...]
    broadcasts: tuple[BroadcastEvidence, ...]
    alerts: tuple[str, ...]


class _Field:
    """A JSON value with its path, so every error names exactly where it is.

    ``entries`` is shared by every field of one document: a receipt kept in several places
    (the request's receipts, the wallet member) is parsed once.
    """

    def __init__(self, value: Any, path: str, entries: dict[bytes, Entry]) -> None:
        self.value = value
        self.path = path
        self.entries = entries

    def fail(self, problem: str) -> EvidenceError:
        return EvidenceError(f"{self.path}: {problem}")

    def __getitem__(self, key: str | int) -> _Field:
        if isinstance(key, str):
            if not isinstance(self.value, dict) or key not in self.value:
                raise self.fail(f"missing field {key!r}")
            return _Field(self.value[key], f"{self.path}.{key}", self.entries)
        return _Field(self.value[key], f"{self.path}[{key}]", self.entries)

    def items(self) -> list[_Field]:
        if not isinstance(self.value, list):
            raise self.fail("must be a list")
        return [self[i] for i in range(len(self.value))]

    def text(self, optional: bool = False) -> str:
        if optional and self.value is None:
            return ""
        if not isinstance(self.value, str):
            raise self.fail(f"must be text, not {type(self.value).__name__}")
        return self.value

    def integer(self, optional: bool = False) -> int | None:
        if optional and self.value is None:
            return None
        if not isinstance(self.value, int) or isinstance(self.value, bool):
            raise self.fail(f"must be an integer, not {type(self.value).__name__}")
        return self.value

    def hex(self, optional: bool = False) -> bytes | None:
        if optional and self.value is None:
            return None
        try:
            return bytes.fromhex(self.text())
        except ValueError:
            raise self.fail("is not hex") from None

    def base64(self) -> bytes:
        try:
            return base64.b64decode(self.text(), validate=True)
        except (binascii.Error, ValueError):
            raise self.fail("is not base64") from None

    def psbt(self) -> Psbt:
        try:
            return Psbt.parse(self.base64())
        except PsbtError as exc:
            raise self.fail(f"not a PSBT: {exc}") from exc

    def entry(self) -> Entry | None:
        data = self.hex(optional=True)
        if data is None:
            return None
        if data not in self.entries:
            try:
                self.entries[data] = Entry.from_bytes(data)
            except JournalError as exc:
                raise self.fail(f"not a journal entry: {exc}") from exc
        return self.entries[data]


def parse_coordinator(source: str, data: bytes) -> CoordinatorEvidence:
    """Parse ``coldstation-coordinator export`` output (UTF-8 JSON)."""
    try:
        plain = json.loads(data.decode("utf-8"), object_pairs_hook=_unique)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise EvidenceError(f"{source}: not JSON: {exc}") from exc
    root = _Field(plain, source, {})
    if not isinstance(plain, dict) or plain.get("type") != EVIDENCE_TYPE:
        raise root.fail(f"not a coordinator evidence document (type {EVIDENCE_TYPE!r})")
    if root["version"].value != EVIDENCE_VERSION:
        raise root["version"].fail(f"unsupported version {root['version'].value!r}")
    return CoordinatorEvidence(
        source,
        _appliances(root["appliances"]),
        tuple(_wallet(w) for w in root["wallets"].items()),
        tuple(_request(r) for r in root["requests"].items()),
        tuple(_broadcast(i, b) for i, b in enumerate(root["broadcasts"].items())),
        tuple(f"{a['kind'].text()}: {a['message'].text()}" for a in root["alerts"].items()),
    )


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A repeated key would let two readers see two different documents: refuse it."""
    value = dict(pairs)
    if len(value) != len(pairs):
        raise ValueError("a JSON object repeats a key")
    return value


def _appliances(field: _Field) -> dict[str, bytes]:
    pinned: dict[str, bytes] = {}
    for item in field.items():
        name = item["appliance_id"].text()
        key = item["audit_key"].hex()
        if name in pinned:
            raise item.fail(f"appliance {name!r} is listed twice")
        pinned[name] = key or b""
    return pinned


def _wallet(field: _Field) -> WalletEvidence:
    descriptors = []
    for item in field["descriptors"].items():
        try:
            descriptors.append(Descriptor.parse(item.text(), require_checksum=False))
        except DescriptorError as exc:
            raise item.fail(f"not a descriptor: {exc}") from exc
    members = tuple(
        Member(
            m["appliance_id"].text(optional=True) or None,
            m["key"].text(),
            m["role"].text(),
            m["export_receipt"].entry(),
            m["pin_receipt"].entry(),
        )
        for m in field["members"].items()
    )
    return WalletEvidence(
        field["name"].text(),
        field["network"].text(),
        field["kind"].text(),
        field["threshold"].integer(optional=True),
        field["birth_height"].integer() or 0,
        tuple(descriptors),
        members,
    )


def _request(field: _Field) -> RequestEvidence:
    receipts = []
    for item in field["receipts"].items():
        entry = item["entry"].entry()
        if entry is None:
            raise item["entry"].fail("missing")
        raw = item["entry"].hex() or b""
        receipts.append(Receipt(item["appliance_id"].text(), entry, raw, item.path))
    return RequestEvidence(
        field["batch"].text(),
        field["request_id"].text(),
        field["kind"].text(),
        field["replaces"].text(optional=True) or None,
        field["unsigned_psbt"].psbt(),
        field["request_hash"].hex() or b"",
        field["txid"].text(),
        field["fee"].integer() or 0,
        field["state"].text(),
        tuple(r.psbt() for r in field["responses"].items()),
        tuple(receipts),
    )


def _broadcast(index: int, field: _Field) -> BroadcastEvidence:
    raw = field["raw"].hex() or b""
    try:
        tx = Transaction.parse(raw)
    except (DecodeError, ValueError) as exc:
        raise field["raw"].fail(f"not a transaction: {exc}") from exc
    return BroadcastEvidence(
        index,
        field["request_id"].text(optional=True) or None,
        field["txid"].text(),
        field["wtxid"].text(),
        raw,
        tx,
        field["state"].text(),
        field["block_hash"].text(optional=True) or None,
        field["height"].integer(optional=True),
    )
