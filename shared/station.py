"""What a cold station knows, folded from its own signed journal (DESIGN 9).

The state medium is untrusted: anyone may edit, delete or restore an older copy of any file
on it. So every fact a station decision rests on is derived here from journal records,
each signed inside the HSM by the station's audit key: the keys and their lifecycle states,
the pinned wallets, the policies installed (by hash; the policy files are a cache checked
against it), the officers enrolled, the activation share set in use, ceremonies whose
intent was journaled but not yet their effect, and the signing history (request ids seen,
outpoints signed, transactions approved and the amount approved per UTC day, each
transaction counted once).

The station folds the records that follow its last signed checkpoint (``to_bytes`` /
``from_bytes`` are the checkpoint's state); an auditor can fold a whole export. Pure: no
clock, files or devices. A record that cannot be applied raises :class:`StationError`
naming its seq, and the station stops: fail closed. Signatures are checked by the caller,
which knows the audit key; the chain (seq, prev_hash, time, appliance) is checked here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import cbor2

from shared import canonical
from shared.approval_keys import ALGORITHMS, SECP256K1
from shared.bitcoin.tx import OutPoint
from shared.checks import FieldChecks
from shared.journal import GENESIS, KEY_TRANSITIONS, MAX_DETAIL_TEXT, Record, outpoints_digest
from shared.key_models import (
    BIP32_SEED,
    HSM_KEY,
    Account,
    KeyModelError,
    check_key_model,
)
from shared.sortedblob import BlobError, FixedMap, FixedSet

STATE_TYPE = "coldstation-station-state"
#: Raised whenever the fold changes what it keeps, so a checkpoint folded by older rules is
#: not used (the station verifies once from the first record): 4, deferred refusals bind
#: no request id.
STATE_FORMAT = 4
KEY_STATES = ("active", "suspended", "archived")
BACKUP_MODELS = ("non-extractable", "wrap-with-trusted")
AUDIT_KEY_LABEL = "coldstation-audit"
REQUEST_ID_BYTES = 16
OUTPOINT_BYTES = 36
TXID_BYTES = 32
COMMITMENT_TYPE = b"coldstation-activation-commitment"


class StationError(ValueError):
    """A journal record the station state cannot follow; the message names its seq."""


def _key_model(record: Record, public_key: bytes) -> tuple[str, str, str]:
    """(key model, account xpub, account origin) of a registering record; a bip32-seed
    key's account must be the registered public key, and only generation makes one."""
    details = record.details
    try:
        key_model = check_key_model(details.get("key_model", HSM_KEY))
    except KeyModelError as exc:
        raise StationError(str(exc)) from None
    if key_model == HSM_KEY:
        return key_model, "", ""
    if record.event != "key_generated":
        raise StationError(f"a {key_model} key cannot be registered by {record.event}")
    xpub, origin = _text(details["xpub"], "xpub"), _text(details["key_origin"], "key_origin")
    try:
        account = Account.parse(xpub, origin)
    except KeyModelError as exc:
        raise StationError(str(exc)) from None
    if account.public_key != public_key:
        raise StationError("the bip32 account's key is not the registered public key")
    return key_model, xpub, origin


_check = FieldChecks(StationError)
_MAX_DETAIL_INT = 2**64 - 1


def activation_commitment(secret: bytes | bytearray) -> bytes:
    """What the journal keeps of an activation secret: a hash that identifies the share set
    (so the station picks the right shares) and reveals nothing of the 128-bit secret."""
    return hashlib.sha256(COMMITMENT_TYPE + bytes(secret)).digest()


# -- what the state holds -----------------------------------------------------------------


class _Plain:
    """A journaled fact kept in the checkpoint as a map of its fields, by name."""

    def to_plain(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class KeyEntry(_Plain):
    """A signing-token key as the journal records it (no secrets)."""

    label: str
    public_key: bytes
    key_id: bytes
    backup_model: str
    state: str
    origin: str
    seq: int
    time: int
    #: ``shared.key_models``: ``hsm-key`` (this pair signs) or ``bip32-seed`` (a seed in
    #: the token; ``public_key`` is then its account's key, ``xpub``/``key_origin`` say it).
    key_model: str = HSM_KEY
    xpub: str = ""
    key_origin: str = ""

    @classmethod
    def from_plain(cls, plain: dict[str, Any]) -> KeyEntry:
        return cls(**plain)

    def account(self) -> Account | None:
        """The bip32 account of a ``bip32-seed`` key; None for an ``hsm-key``."""
        if self.key_model != BIP32_SEED:
            return None
        return Account.parse(self.xpub, self.key_origin)


@dataclass(frozen=True)
class WalletPin(_Plain):
    """A wallet descriptor the station signs for, and how it was authorised."""

    descriptor: str
    seq: int
    authorised_by: str  # "export" (its own single key), "administrators" or "policy"


@dataclass(frozen=True)
class PolicyRef(_Plain):
    """An installed policy, by version and hash; the document itself is a checked cache."""

    version: int
    hash: bytes
    seq: int


#: days a backup blob may go without a successful test restore (REQUIREMENTS 24; counted
#: from its export when it was never tested): after that the home screen and ``status``
#: show it overdue
BACKUP_TEST_INTERVAL_DAYS = 90
MAX_CUSTODIANS = 16
MAX_REGISTER_TEXT = 200


@dataclass(frozen=True)
class BackupEntry(_Plain):
    """A backup blob in the register: exported (``backup``), kept somewhere by someone
    (``backup_stored``: a tamper-evident bag's serial, a location, custodians), and last
    test-restored (``backup_tested``). Every change is a journal record, so the register's
    history (a bag serial that changed, a failed test) is the journal's."""

    blob: bytes  # SHA-256 of the blob
    label: str
    public_key: bytes
    exported: int  # time of the backup record
    bag: str = ""
    location: str = ""
    custodians: tuple[str, ...] = ()
    stored_seq: int = -1
    tested: int = 0  # time of the last successful test restore; 0: never
    last_result: str = ""  # "ok" or "failed: reason" of the last test
    last_test_seq: int = -1

    def due(self) -> int:
        """When the next test restore is due (unix seconds)."""
        return max(self.exported, self.tested) + BACKUP_TEST_INTERVAL_DAYS * 86400

    def to_plain(self) -> dict[str, Any]:
        plain = super().to_plain()
        plain["custodians"] = list(self.custodians)
        return plain

    @classmethod
    def from_plain(cls, plain: dict[str, Any]) -> BackupEntry:
        return cls(**{**plain, "custodians": tuple(plain["custodians"])})


#: a ``pin_status`` record's entry per token, and what a token may report of its user PIN
PIN_STATUS_FIELDS = ("serial", "failures", "token")
TOKEN_PIN_REPORTS = ("none", "count low", "final try", "locked")

#: the token identity an enrolment record carries (appliance.tokens.TokenIdentity's fields)
IDENTITY_FIELDS = ("module", "label", "serial", "manufacturer", "model", "firmware", "hardware")


@dataclass(frozen=True)
class Enrolment(_Plain):
    """An officer or administrator token enrolled in a journaled ceremony.

    ``identity`` is what the token presented at enrolment (module path, label, serial,
    manufacturer, model, firmware, hardware): a later token that presents anything else
    is refused. Records written before identities were pinned have none.
    """

    fingerprint: str
    role: str
    token: str
    seq: int
    identity: dict[str, str] | None = None
    algorithm: str = "secp256k1"


@dataclass(frozen=True)
class ShareSet(_Plain):
    """The activation secret in use: its SLIP-39 identifier and its commitment."""

    identifier: int
    commitment: bytes
    threshold: int
    seq: int


@dataclass
class History:
    """What the station already decided: replay, double-spend and daily totals come from here."""

    request_ids: FixedSet = field(default_factory=lambda: FixedSet(REQUEST_ID_BYTES))
    signed_outpoints: FixedMap = field(default_factory=lambda: FixedMap(OUTPOINT_BYTES, TXID_BYTES))
    approved_txids: FixedSet = field(default_factory=lambda: FixedSet(TXID_BYTES))
    paid_by_day: dict[int, int] = field(default_factory=dict)
    #: request id -> seq (8 bytes, big-endian) of the record that approved it
    approvals: FixedMap = field(default_factory=lambda: FixedMap(REQUEST_ID_BYTES, 8))

    def approval_seq(self, request_id: bytes) -> int | None:
        """The seq of the approval of ``request_id``, if it was approved."""
        found = self.approvals.get(request_id)
        return None if found is None else int.from_bytes(found, "big")

    def paid_on_day(self, day: int) -> int:
        return self.paid_by_day.get(day, 0)

    def spender(self, outpoint: OutPoint) -> bytes | None:
        """The txid (internal byte order) of the approved transaction spending ``outpoint``."""
        return self.signed_outpoints.get(outpoint.serialize())


class OutpointView:
    """``signed_outpoints`` as the reviewer asks it: OutPoint -> txid, read-only."""

    def __init__(self, history: History) -> None:
        self._history = history

    def get(self, outpoint: OutPoint, default: bytes | None = None) -> bytes | None:
        found = self._history.spender(outpoint)
        return default if found is None else found

    def __contains__(self, outpoint: object) -> bool:
        return isinstance(outpoint, OutPoint) and self._history.spender(outpoint) is not None


# -- the fold -----------------------------------------------------------------------------


@dataclass
class StationState:
    """Everything the station decides from; see the module docstring."""

    appliance_id: str | None = None
    seq: int = -1
    head: bytes = GENESIS
    last_time: int = 0
    signing_token: str | None = None
    #: the PKCS#11 module the signing token was initialised through (``token_init``)
    signing_module: str | None = None
    keys: dict[str, KeyEntry] = field(default_factory=dict)
    wallets: dict[str, WalletPin] = field(default_factory=dict)
    policies: list[PolicyRef] = field(default_factory=list)
    enrolled: dict[str, Enrolment] = field(default_factory=dict)
    shares: ShareSet | None = None
    intents: dict[int, dict[str, Any]] = field(default_factory=dict)
    init_complete: bool = False
    #: (seq of a journal_recovered record, first lost seq, last lost seq) per recovery
    recoveries: list[tuple[int, int, int]] = field(default_factory=list)
    history: History = field(default_factory=History)
    consumed_pending: FixedSet = field(default_factory=lambda: FixedSet(32))
    #: token serial -> [station failures, what the token reports], as last journaled
    #: (``pin_status`` records): only tokens with something to report are kept
    pin_status: dict[str, list[Any]] = field(default_factory=dict)
    #: the backup register, by blob SHA-256 (:class:`BackupEntry`)
    backups: dict[bytes, BackupEntry] = field(default_factory=dict)
    #: every record's hash, in seq order (32 bytes each): anchors kept in tokens are checked
    #: against it without reading the journal back
    hashes: bytearray = field(default_factory=bytearray)
    _outpoints: Sequence[OutPoint] | None = field(default=None, repr=False, compare=False)

    # -- queries -------------------------------------------------------------------------

    @property
    def length(self) -> int:
        return self.seq + 1

    @property
    def policy(self) -> PolicyRef | None:
        """The policy in force: the newest one installed."""
        return self.policies[-1] if self.policies else None

    @property
    def audit_key(self) -> bytes | None:
        entry = self.keys.get(AUDIT_KEY_LABEL)
        return entry.public_key if entry else None

    def hash_at(self, seq: int) -> bytes:
        """The hash of record ``seq`` of the folded chain."""
        if not 0 <= seq <= self.seq:
            raise IndexError(f"the journal has no record seq {seq}")
        return bytes(self.hashes[seq * 32 : seq * 32 + 32])

    def key_by_public(self, public_key: bytes) -> KeyEntry | None:
        for entry in self.keys.values():
            if entry.public_key == public_key:
                return entry
        return None

    def open_intents(self, ceremony: str | None = None) -> dict[int, dict[str, Any]]:
        return {
            seq: d
            for seq, d in self.intents.items()
            if ceremony is None or d.get("ceremony") == ceremony
        }

    # -- applying records ----------------------------------------------------------------

    def apply(
        self, record: Record, record_hash: bytes, outpoints: Sequence[OutPoint] | None = None
    ) -> None:
        """Fold one record (already signature-checked) that follows the current head.

        An approval commits to its inputs by digest (``outpoints_sha256``); the caller hands
        the outpoints themselves (from the transcript the record names, or the transaction
        just signed) and they must match the digest.
        """
        self._outpoints = outpoints
        where = f"journal seq {record.seq} ({record.event})"
        if record.seq != self.seq + 1:
            raise StationError(f"{where} follows seq {self.seq}: expected seq {self.seq + 1}")
        if record.prev_hash != self.head:
            raise StationError(f"{where} does not link to the hash of seq {self.seq}")
        if self.appliance_id is not None and record.appliance_id != self.appliance_id:
            raise StationError(f"{where} is for appliance {record.appliance_id!r}")
        if record.time < self.last_time:
            raise StationError(f"{where} is dated before the record it follows")
        handler = _HANDLERS.get(record.event)
        try:
            if handler is not None:
                handler(self, record)
            closes = record.details.get("intent")
            if closes is not None and record.event != "intent":
                self.intents.pop(_int(closes, "intent"), None)
        except (KeyError, TypeError, ValueError, BlobError) as exc:
            if isinstance(exc, StationError):
                raise StationError(f"{where}: {exc}") from exc
            raise StationError(f"{where}: malformed details ({type(exc).__name__}: {exc})") from exc
        self.appliance_id = record.appliance_id
        self.seq, self.head, self.last_time = record.seq, record_hash, record.time
        self.hashes += record_hash

    def _token_init(self, record: Record) -> None:
        self.signing_token = _text(record.details["token"], "token")
        module = record.details.get("module")
        self.signing_module = None if module is None else _text(module, "module")

    def _key_added(self, record: Record) -> None:
        details = record.details
        label = _text(details["label"], "label")
        if label in self.keys:
            raise StationError(f"key label {label!r} is already registered")
        public_key = _check.fixed_bytes(record.subjects["public_key"], "public key", 33)
        if self.key_by_public(public_key) is not None:
            raise StationError("public key is already registered under another label")
        model = details.get("backup_model", "wrap-with-trusted")
        if model not in BACKUP_MODELS:
            raise StationError(f"unknown backup model {model!r}")
        key_id = bytes.fromhex(_text(details["key_id"], "key_id"))
        origin = "restored" if record.event == "restore" else "generated"
        key_model, xpub, key_origin = _key_model(record, public_key)
        self.keys[label] = KeyEntry(
            label,
            public_key,
            key_id,
            model,
            "active",
            origin,
            record.seq,
            record.time,
            key_model,
            xpub,
            key_origin,
        )

    def _key_state(self, record: Record) -> None:
        label = _text(record.details["label"], "label")
        entry = self.keys.get(label)
        if entry is None:
            raise StationError(f"no key labelled {label!r}")
        allowed, target = KEY_TRANSITIONS[record.event]
        if entry.state not in allowed:
            raise StationError(f"key {label!r} cannot go from {entry.state} to {target}")
        self.keys[label] = replace(entry, state=target)

    def _enrolled(self, record: Record) -> None:
        details = record.details
        role = _text(details["role"], "role")
        token = _text(details["token"], "token")
        identity = _identity(details["identity"]) if "identity" in details else None
        if identity is not None and identity["label"] != token:
            raise StationError(f"enrols token {token!r} with the identity of {identity['label']!r}")
        algorithm = _check.choice(details.get("algorithm", SECP256K1), "algorithm", ALGORITHMS)
        for fingerprint in record.actors:
            self.enrolled[fingerprint] = Enrolment(
                fingerprint, role, token, record.seq, identity, algorithm
            )

    def enrolled_identities(self) -> dict[str, dict[str, str]]:
        """Token label -> identity journaled at enrolment, for tokens enrolled with one."""
        return {e.token: e.identity for e in self.enrolled.values() if e.identity is not None}

    def _policy_installed(self, record: Record) -> None:
        digest = _check.fixed_bytes(record.subjects["policy"], "policy hash", 32)
        version = _int(record.details["version"], "version")
        expected = self.policies[-1].version + 1 if self.policies else 1
        if version != expected:
            raise StationError(f"installs policy version {version}, expected {expected}")
        self.policies.append(PolicyRef(version, digest, record.seq))

    def _wallet_pinned(self, record: Record) -> None:
        descriptor = _text(record.details["descriptor"], "descriptor")
        how = (
            "export"
            if record.event == "wallet_exported"
            else _text(record.details["authorised_by"], "authorised_by")
        )
        if how not in ("export", "administrators", "policy"):
            raise StationError(f"unknown pin authority {how!r}")
        self.wallets.setdefault(descriptor, WalletPin(descriptor, record.seq, how))

    def _wallet_unpinned(self, record: Record) -> None:
        descriptor = _text(record.details["descriptor"], "descriptor")
        if self.wallets.pop(descriptor, None) is None:
            raise StationError("unpins a descriptor that is not pinned")

    def _signing(self, record: Record) -> None:
        details, history = record.details, self.history
        request_id = details.get("request_id")
        # A deferred refusal came from a pending file nobody signed (the token was locked):
        # it is evidence, but it must not burn its request id, or anyone who can write the
        # medium could have any genuine request refused as `replayed`.
        if request_id is not None and details.get("deferred") is None:
            history.request_ids.add(_check.fixed_bytes(request_id, "request id", REQUEST_ID_BYTES))
        pending = details.get("pending")
        if pending is not None:
            self.consumed_pending.add(_check.fixed_bytes(pending, "pending file hash", 32))
        if record.decision != "approved":
            return
        if details.get("deferred") is not None:
            raise StationError("a deferred record cannot approve")
        txid = bytes.fromhex(_text(details["txid"], "txid"))[::-1]
        if request_id is not None:
            history.approvals.set(request_id, record.seq.to_bytes(8, "big"))
        for outpoint in self._approved_outpoints(details):
            history.signed_outpoints.set(outpoint.serialize(), txid)
        if txid not in history.approved_txids:
            history.approved_txids.add(txid)
            day = record.time // 86400
            paid = _int(details.get("paid_out", 0), "paid_out")
            history.paid_by_day[day] = history.paid_by_day.get(day, 0) + paid

    def _approved_outpoints(self, details: dict[str, Any]) -> Sequence[OutPoint]:
        """The inputs an approval signed: listed in the record (records before the digest
        form), or given by the caller and checked against ``outpoints_sha256``."""
        if "outpoints" in details:
            return [_outpoint(text) for text in details["outpoints"]]
        digest = bytes.fromhex(_text(details["outpoints_sha256"], "outpoints_sha256"))
        given = self._outpoints
        if given is None:
            raise StationError("its inputs are in its transcript, which was not read")
        if len(given) != _int(details["inputs"], "inputs") or outpoints_digest(given) != digest:
            raise StationError("the transcript's inputs do not match the record's digest")
        return given

    def _pin_lockout(self, record: Record) -> None:
        pending = record.details.get("pending")
        if pending is not None:
            self.consumed_pending.add(_check.fixed_bytes(pending, "pending file hash", 32))

    def _pin_status(self, record: Record) -> None:
        tokens = _check.items(record.details["tokens"], "tokens", 256)
        for item in tokens:
            plain = _check.exact_keys(item, "token PIN status", frozenset(PIN_STATUS_FIELDS))
            serial = _text(plain["serial"], "serial")
            failures = _int(plain["failures"], "failures")
            report = _check.choice(plain["token"], "token report", TOKEN_PIN_REPORTS)
            if failures == 0 and report == "none":
                self.pin_status.pop(serial, None)
            else:
                self.pin_status[serial] = [failures, report]

    def _backup(self, record: Record) -> None:
        blob = _check.fixed_bytes(record.subjects["blob"], "blob digest", 32)
        public_key = _check.fixed_bytes(record.subjects["public_key"], "public key", 33)
        label = _text(record.details["label"], "label")
        if blob not in self.backups:  # the same key under the same KEK wraps to the same blob
            self.backups[blob] = BackupEntry(blob, label, public_key, record.time)

    def _backup_stored(self, record: Record) -> None:
        entry = self._registered(record)
        custodians = _check.items(record.details["custodians"], "custodians", MAX_CUSTODIANS)
        if not custodians:
            raise StationError("a stored backup needs at least one custodian")
        self.backups[entry.blob] = replace(
            entry,
            bag=_check.text(record.details["bag"], "bag serial", MAX_REGISTER_TEXT),
            location=_check.text(record.details["location"], "location", MAX_REGISTER_TEXT),
            custodians=tuple(_check.text(c, "custodian", MAX_REGISTER_TEXT) for c in custodians),
            stored_seq=record.seq,
        )

    def _backup_tested(self, record: Record) -> None:
        entry = self._registered(record)
        result = _text(record.details["result"], "result")
        if result == "ok":
            entry = replace(entry, tested=record.time, last_result="ok")
        elif result == "failed":
            reason = _text(record.details["reason"], "reason")
            entry = replace(entry, last_result=f"failed: {reason}")
        else:
            raise StationError(f"unknown test-restore result {result!r}")
        self.backups[entry.blob] = replace(entry, last_test_seq=record.seq)

    def _registered(self, record: Record) -> BackupEntry:
        blob = bytes.fromhex(_text(record.details["blob"], "blob"))
        entry = self.backups.get(blob)
        if entry is None:
            raise StationError(f"names blob {blob.hex()[:16]}..., which no backup exported")
        return entry

    def backup_register(self, now: int) -> list[dict[str, Any]]:
        """The register for people: each blob, where it is, and whether its test is due."""
        return [
            {
                "blob": e.blob.hex(),
                "label": e.label,
                "public_key": e.public_key.hex(),
                "bag": e.bag or None,
                "location": e.location or None,
                "custodians": list(e.custodians),
                "last_test": e.last_result or "never",
                "journal_seqs": {"stored": e.stored_seq, "last_test": e.last_test_seq},
                "test_due": e.due(),
                "overdue": e.due() <= now,
            }
            for e in self.backups.values()
        ]

    def overdue_backups(self, now: int) -> list[BackupEntry]:
        """Blobs whose test restore is due (never tested counts from the export)."""
        return [e for e in self.backups.values() if e.due() <= now]

    def _intent(self, record: Record) -> None:
        _text(record.details["ceremony"], "ceremony")
        self.intents[record.seq] = dict(record.details)

    def _intent_abandoned(self, record: Record) -> None:
        seq = _int(record.details["intent"], "intent")
        if seq not in self.intents:
            raise StationError(f"abandons intent seq {seq}, which is not open")

    def _share_set(self, record: Record) -> None:
        details = record.details
        commitment = _check.fixed_bytes(details["share_commitment"], "share commitment", 32)
        self.shares = ShareSet(
            _int(details["share_identifier"], "share identifier"),
            commitment,
            _int(details["share_threshold"], "share threshold"),
            record.seq,
        )
        if record.event == "init_completed":
            self.init_complete = True

    def _recovered(self, record: Record) -> None:
        lost_through = record.details.get("lost_through")
        if lost_through is not None:
            self.recoveries.append((record.seq, record.seq, _int(lost_through, "lost_through")))

    def lost_range_holds(self, seq: int) -> bool:
        """True when a recovery ceremony journaled record ``seq`` (of the old chain) as lost:
        an anchor a token kept for it can no longer be checked, and is replaced."""
        return any(first <= seq <= last for _, first, last in self.recoveries)

    # -- checkpoint state ----------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The whole state, canonical CBOR: what a signed checkpoint carries."""
        history = self.history
        return canonical.encode(
            {
                "type": STATE_TYPE,
                "format": STATE_FORMAT,
                "appliance": self.appliance_id,
                "seq": self.seq,
                "head": self.head,
                "last_time": self.last_time,
                "signing_token": self.signing_token,
                "signing_module": self.signing_module,
                "keys": [k.to_plain() for k in self.keys.values()],
                "wallets": [w.to_plain() for w in self.wallets.values()],
                "policies": [p.to_plain() for p in self.policies],
                "enrolled": [e.to_plain() for e in self.enrolled.values()],
                "shares": None if self.shares is None else self.shares.to_plain(),
                "intents": [[seq, d] for seq, d in sorted(self.intents.items())],
                "init_complete": self.init_complete,
                "recoveries": [list(r) for r in self.recoveries],
                "request_ids": history.request_ids.to_blob(),
                "signed_outpoints": history.signed_outpoints.to_blob(),
                "approved_txids": history.approved_txids.to_blob(),
                "paid_by_day": [[day, total] for day, total in sorted(history.paid_by_day.items())],
                "approvals": history.approvals.to_blob(),
                "consumed_pending": self.consumed_pending.to_blob(),
                "pin_status": [[serial, *status] for serial, status in self.pin_status.items()],
                "backups": [b.to_plain() for b in self.backups.values()],
                "hashes": bytes(self.hashes),
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> StationState:
        """Inverse of :meth:`to_bytes` (the caller has verified the checkpoint signature)."""
        try:
            # no canonical re-encoding check: the checkpoint's signature and digest already
            # bind these exact bytes, and re-encoding 20 MB of history would cost what the
            # checkpoint saves
            plain = cbor2.loads(data)
            if plain.get("type") != STATE_TYPE or plain.get("format") != STATE_FORMAT:
                raise StationError("not a station state of a known format")
            history = History(
                FixedSet(REQUEST_ID_BYTES, plain["request_ids"], what="request ids"),
                FixedMap(
                    OUTPOINT_BYTES, TXID_BYTES, plain["signed_outpoints"], what="signed outpoints"
                ),
                FixedSet(TXID_BYTES, plain["approved_txids"], what="approved txids"),
                {int(day): int(total) for day, total in plain["paid_by_day"]},
                FixedMap(REQUEST_ID_BYTES, 8, plain["approvals"], what="approvals"),
            )
            shares = plain["shares"]
            return cls(
                appliance_id=plain["appliance"],
                seq=plain["seq"],
                head=plain["head"],
                last_time=plain["last_time"],
                signing_token=plain["signing_token"],
                signing_module=plain["signing_module"],
                keys={k["label"]: KeyEntry.from_plain(k) for k in plain["keys"]},
                wallets={w["descriptor"]: WalletPin(**w) for w in plain["wallets"]},
                policies=[PolicyRef(**p) for p in plain["policies"]],
                enrolled={e["fingerprint"]: Enrolment(**e) for e in plain["enrolled"]},
                shares=None if shares is None else ShareSet(**shares),
                intents={int(seq): dict(d) for seq, d in plain["intents"]},
                init_complete=bool(plain["init_complete"]),
                recoveries=[(int(a), int(b), int(c)) for a, b, c in plain["recoveries"]],
                history=history,
                consumed_pending=FixedSet(32, plain["consumed_pending"], what="pending"),
                pin_status={str(s): [int(n), str(t)] for s, n, t in plain["pin_status"]},
                backups={b["blob"]: BackupEntry.from_plain(b) for b in plain["backups"]},
                hashes=bytearray(plain["hashes"]),
            )
        except (cbor2.CBORDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StationError(f"station state is unreadable: {exc}") from exc


def _outpoint(text: object) -> OutPoint:
    txid_hex, _, vout = _text(text, "outpoint").partition(":")
    return OutPoint.from_hex(txid_hex, int(vout))


def transcript_outpoints(plain: object) -> list[OutPoint]:
    """The inputs' outpoints a review transcript lists, in input order."""
    if not isinstance(plain, dict) or not isinstance(plain.get("inputs"), list):
        raise StationError("the transcript lists no inputs")
    try:
        return [_outpoint(view["outpoint"]) for view in plain["inputs"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise StationError(f"the transcript's inputs are malformed: {exc}") from exc


def _text(value: object, name: str) -> str:
    """Text from a record's details (or the transcript it names), read within what the
    journal lets details hold: any characters (the record was signed as it is), at most
    ``MAX_DETAIL_TEXT`` of them."""
    return _check.text(value, name, MAX_DETAIL_TEXT, printable=False)


def _identity(value: object) -> dict[str, str]:
    """A token identity from an enrolment record: exactly its fields, each text."""
    plain = _check.exact_keys(value, "token identity", frozenset(IDENTITY_FIELDS))
    return {name: _text(plain[name], f"identity {name}") for name in IDENTITY_FIELDS}


def _int(value: object, name: str) -> int:
    """A count or a seq from a record's details: the journal keeps no larger integer."""
    return _check.integer(value, name, 0, _MAX_DETAIL_INT)


_HANDLERS = {
    "token_init": StationState._token_init,
    "key_generated": StationState._key_added,
    "restore": StationState._key_added,
    "key_suspended": StationState._key_state,
    "key_reactivated": StationState._key_state,
    "key_archived": StationState._key_state,
    "officer_enrolled": StationState._enrolled,
    "policy_installed": StationState._policy_installed,
    "wallet_exported": StationState._wallet_pinned,
    "wallet_pinned": StationState._wallet_pinned,
    "wallet_unpinned": StationState._wallet_unpinned,
    "signing_decision": StationState._signing,
    "pin_lockout": StationState._pin_lockout,
    "pin_status": StationState._pin_status,
    "backup": StationState._backup,
    "backup_stored": StationState._backup_stored,
    "backup_tested": StationState._backup_tested,
    "intent": StationState._intent,
    "intent_abandoned": StationState._intent_abandoned,
    "pin_rekeyed": StationState._share_set,
    "init_completed": StationState._share_set,
    "journal_recovered": StationState._recovered,
}
