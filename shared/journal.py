"""Journal record format, hash chain and verification (DESIGN 3, REQUIREMENTS 35-37).

The appliance appends one signed record per key event; an auditor replays the export with
this same module. Every record names the hash of the one before it (``prev_hash``) and
carries a consecutive ``seq``, and the appliance audit key signs each record's hash, so an
edited, deleted, reordered, duplicated or foreign-signed record is found and named by its
seq. Truncation of the tail cannot be seen from the entries alone: the verifier needs the
head (hash) or length recorded elsewhere (a receipt, the previous ceremony's record).

Records carry officer key fingerprints, never names (DESIGN 8). Everything hashed or
signed is canonical CBOR (:mod:`shared.canonical`); the record map includes a ``type``
so a journal signature can never be mistaken for a signature over another document.
"""

from __future__ import annotations

import hashlib
import re
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared import canonical
from shared.bitcoin import ecdsa
from shared.checks import FieldChecks

GENESIS = bytes(32)
RECORD_TYPE = "coldstation-journal-record"
RECORD_FORMAT = 1
EXPORT_TYPE = "coldstation-journal"
EXPORT_VERSION = 1

#: Events the appliance may journal. Add new ones here (both writer and reader refuse
#: anything else, so an auditor never silently skips an event it does not understand).
EVENTS = frozenset(
    {
        "token_init",
        "key_generated",
        "officer_enrolled",
        "officer_revoked",
        "policy_installed",
        "activation",
        "signing_decision",
        "key_suspended",
        "key_reactivated",
        "key_archived",
        "backup",
        "backup_stored",
        "backup_tested",
        "restore",
        "export",
        "wallet_exported",
        "journal_export",
        "pin_lockout",
        "pin_status",
        "wallet_pinned",
        "wallet_unpinned",
        "intent",
        "intent_abandoned",
        "journal_recovered",
        "pin_rekeyed",
        "init_completed",
        "signing_reissued",
    }
)
#: Records that vouch for something to the outside (the coordinator, the auditors).
WALLET_RECEIPT_EVENTS = frozenset({"wallet_exported", "wallet_pinned"})
#: A key's state changes (receipts too: the coordinator stops receiving to a suspended key):
#: event -> (the states a key may leave by it, the state it sets). The one rule the station's
#: fold, the auditors' key book and the coordinator's key states all apply.
KEY_TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "key_suspended": (frozenset({"active"}), "suspended"),
    "key_reactivated": (frozenset({"suspended"}), "active"),
    "key_archived": (frozenset({"active", "suspended"}), "archived"),
}
KEY_STATE_EVENTS = frozenset(KEY_TRANSITIONS)
DECISIONS = frozenset({"approved", "refused"})

MAX_SEQ = 2**63 - 1
MAX_TIME = 2**40  # year ~36812: far beyond any real clock, small enough to refuse garbage
MAX_APPLIANCE_ID = 64
MAX_ACTORS = 64
MAX_SUBJECTS = 16
MAX_SUBJECT_NAME = 32
MAX_SUBJECT_BYTES = 64
MAX_DETAIL_TEXT = 4096
MAX_DETAIL_ITEMS = 256
MAX_DETAIL_DEPTH = 4
MAX_RECORD_BYTES = 32 * 1024
MAX_ENTRY_BYTES = MAX_RECORD_BYTES + 256
#: An export holds the whole journal, however long: the caps that matter are per record
#: (above). These only refuse a document no real journal reaches (a station journaling one
#: record a second for a century writes some 3 billion) before it is decoded in memory; an
#: auditor reads an export entry by entry (:mod:`shared.audit.journal_stream`).
MAX_EXPORT_ENTRIES = 2**32
MAX_EXPORT_BYTES = MAX_EXPORT_ENTRIES * (MAX_ENTRY_BYTES + 8)

_FINGERPRINT = re.compile(r"[0-9a-f]{16}")
_SUBJECT_NAME = re.compile(r"[a-z][a-z0-9_]*")
_RECORD_KEYS = frozenset(
    {
        "type",
        "format",
        "seq",
        "prev_hash",
        "time",
        "appliance",
        "event",
        "actors",
        "subjects",
        "decision",
        "details",
    }
)
_EXPORT_KEYS = frozenset({"type", "version", "appliance", "audit_key", "entries"})


class JournalError(ValueError):
    """A journal record, entry or export that is malformed; the message says what."""


_check = FieldChecks(JournalError)


def is_fingerprint(value: object) -> bool:
    """True for an officer key fingerprint: 16 lowercase hex digits (8 bytes)."""
    return isinstance(value, str) and _FINGERPRINT.fullmatch(value) is not None


def _check_event(event: object) -> str:
    if not isinstance(event, str) or event not in EVENTS:
        raise JournalError(f"unknown journal event {event!r}")
    return event


def _check_actors(actors: object) -> tuple[str, ...]:
    if not isinstance(actors, list | tuple):
        raise JournalError("actors must be a list of officer key fingerprints")
    if len(actors) > MAX_ACTORS:
        raise JournalError(f"{len(actors)} actors exceeds the limit of {MAX_ACTORS}")
    for actor in actors:
        if not is_fingerprint(actor):
            raise JournalError(f"actor {actor!r} is not a key fingerprint (16 lowercase hex)")
    if len(set(actors)) != len(actors):
        raise JournalError("actors lists the same fingerprint twice")
    return tuple(actors)


def _check_subjects(subjects: object) -> dict[str, bytes]:
    if not isinstance(subjects, Mapping):
        raise JournalError("subjects must be a map of name to hash")
    if len(subjects) > MAX_SUBJECTS:
        raise JournalError(f"{len(subjects)} subjects exceeds the limit of {MAX_SUBJECTS}")
    out: dict[str, bytes] = {}
    for name, value in subjects.items():
        if (
            not isinstance(name, str)
            or len(name) > MAX_SUBJECT_NAME
            or not _SUBJECT_NAME.fullmatch(name)
        ):
            raise JournalError(f"subject name {name!r} is not a short lowercase identifier")
        if not isinstance(value, bytes) or not 1 <= len(value) <= MAX_SUBJECT_BYTES:
            raise JournalError(f"subject {name!r} must be 1..{MAX_SUBJECT_BYTES} bytes")
        out[name] = value
    return out


def _check_decision(decision: object) -> str | None:
    if decision is not None and (not isinstance(decision, str) or decision not in DECISIONS):
        raise JournalError(f"decision must be None, 'approved' or 'refused', not {decision!r}")
    return decision


def _check_detail(value: object, path: str, depth: int) -> None:
    """Details hold plain values only, bounded in size and depth, so any replay can read them."""
    if depth > MAX_DETAIL_DEPTH:
        raise JournalError(f"details {path} nested deeper than {MAX_DETAIL_DEPTH} levels")
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -(2**64) <= value < 2**64:
            raise JournalError(f"details {path} integer outside the 64-bit range")
        return
    if isinstance(value, str | bytes):
        if len(value) > MAX_DETAIL_TEXT:
            raise JournalError(f"details {path} longer than {MAX_DETAIL_TEXT}")
        return
    if isinstance(value, list | tuple):
        if len(value) > MAX_DETAIL_ITEMS:
            raise JournalError(f"details {path} has more than {MAX_DETAIL_ITEMS} items")
        for i, item in enumerate(value):
            _check_detail(item, f"{path}[{i}]", depth + 1)
        return
    if isinstance(value, Mapping):
        _check_detail_map(value, path, depth)
        return
    raise JournalError(f"details {path} has unsupported type {type(value).__name__}")


def _check_detail_map(value: Mapping[Any, Any], path: str, depth: int) -> None:
    if len(value) > MAX_DETAIL_ITEMS:
        raise JournalError(f"details {path} has more than {MAX_DETAIL_ITEMS} keys")
    for key, item in value.items():
        if not isinstance(key, str) or not 0 < len(key) <= MAX_SUBJECT_NAME * 2:
            raise JournalError(f"details {path} key {key!r} is not short text")
        _check_detail(item, f"{path}.{key}", depth + 1)


def _check_details(details: object) -> dict[str, Any]:
    """Validate, then copy through canonical CBOR so later caller edits cannot alter the
    record after it has been hashed and signed (and tuples become lists, as on read)."""
    if not isinstance(details, Mapping):
        raise JournalError("details must be a map")
    _check_detail_map(details, "", 0)
    encoded, copied = canonical.encode_and_copy(dict(details))
    if len(encoded) > MAX_RECORD_BYTES:
        raise JournalError(f"details are {len(encoded)} bytes, over the record limit")
    if not isinstance(copied, dict):  # a map encodes to a map; said for the type checker
        raise JournalError("details must be a map")
    return copied


# -- records ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One journal record: what happened, to which subjects, decided by which officers."""

    seq: int
    prev_hash: bytes
    time: int
    appliance_id: str
    event: str
    actors: tuple[str, ...] = ()
    subjects: dict[str, bytes] = field(default_factory=dict)
    decision: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check.integer(self.seq, "seq", 0, MAX_SEQ)
        _check.fixed_bytes(self.prev_hash, "prev_hash", 32)
        _check.integer(self.time, "time", 0, MAX_TIME)
        _check.text(self.appliance_id, "appliance id", MAX_APPLIANCE_ID)
        _check_event(self.event)
        object.__setattr__(self, "actors", _check_actors(self.actors))
        object.__setattr__(self, "subjects", _check_subjects(self.subjects))
        _check_decision(self.decision)
        object.__setattr__(self, "details", _check_details(self.details))
        encoded = canonical.encode(self.to_plain())
        if len(encoded) > MAX_RECORD_BYTES:
            raise JournalError(f"record is {len(encoded)} bytes, over the {MAX_RECORD_BYTES} limit")
        object.__setattr__(self, "_digest", hashlib.sha256(encoded).digest())

    def to_plain(self) -> dict[str, Any]:
        """The map that is hashed and signed; ``type``/``format`` give domain separation."""
        return {
            "type": RECORD_TYPE,
            "format": RECORD_FORMAT,
            "seq": self.seq,
            "prev_hash": self.prev_hash,
            "time": self.time,
            "appliance": self.appliance_id,
            "event": self.event,
            "actors": list(self.actors),
            "subjects": dict(self.subjects),
            "decision": self.decision,
            "details": self.details,
        }

    @classmethod
    def from_plain(cls, plain: object) -> Record:
        """Strict inverse of :meth:`to_plain`: exact keys, exact types."""
        plain = _check.exact_keys(plain, "record", _RECORD_KEYS)
        if plain["type"] != RECORD_TYPE:
            raise JournalError(f"record type {plain['type']!r} is not {RECORD_TYPE!r}")
        if plain["format"] != RECORD_FORMAT or isinstance(plain["format"], bool):
            raise JournalError(f"unsupported record format {plain['format']!r}")
        return cls(
            seq=plain["seq"],
            prev_hash=plain["prev_hash"],
            time=plain["time"],
            appliance_id=plain["appliance"],
            event=plain["event"],
            actors=_check_actors(plain["actors"]),
            subjects=plain["subjects"],
            decision=plain["decision"],
            details=plain["details"],
        )

    def hash(self) -> bytes:
        """SHA-256 of the canonical record: what the audit key signs and the next links to.

        Computed once, at construction, from the validated copy the record holds.
        """
        return self._digest  # type: ignore[attr-defined, no-any-return]


def _check_der(sig: object) -> bytes:
    """Strict DER and low S, as Bitcoin requires: one encoding per signature."""
    if not isinstance(sig, bytes) or not 8 <= len(sig) <= 72:
        raise JournalError("signature must be 8..72 bytes of DER")
    if not ecdsa.is_strict_der(sig + b"\x01") or not ecdsa.is_low_s(sig):
        raise JournalError("signature is not strict low-S DER")
    return sig


@dataclass(frozen=True)
class Entry:
    """A record plus the appliance audit key's signature over ``record.hash()``."""

    record: Record
    signature: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.record, Record):
            raise JournalError("entry record must be a Record")
        _check_der(self.signature)

    def to_bytes(self) -> bytes:
        return canonical.encode({"record": self.record.to_plain(), "sig": self.signature})

    @classmethod
    def from_bytes(cls, data: bytes) -> Entry:
        """Parse one stored entry; refuses non-canonical or oversized bytes."""
        if not isinstance(data, bytes):
            raise JournalError("entry must be bytes")
        plain = _decode(data, MAX_ENTRY_BYTES, "entry")
        plain = _check.exact_keys(plain, "entry", frozenset({"record", "sig"}))
        return cls(Record.from_plain(plain["record"]), _check_der(plain["sig"]))

    def verify(self, audit_pubkey: bytes) -> bool:
        return ecdsa.verify(audit_pubkey, self.signature, self.record.hash())


def _decode(data: bytes, max_size: int, what: str) -> Any:
    try:
        return canonical.decode(data, max_size=max_size)
    except canonical.CanonicalError as exc:
        raise JournalError(f"{what}: {exc}") from exc


def seal(
    record: Record, sign: Callable[[bytes], bytes], *, audit_pubkey: bytes | None = None
) -> Entry:
    """Sign ``record.hash()`` with ``sign`` (the HSM); check the result when the key is given,
    since a faulty token must never put an unverifiable entry in the journal."""
    entry = Entry(record, sign(record.hash()))
    if audit_pubkey is not None and not entry.verify(audit_pubkey):
        raise JournalError(f"seq {record.seq}: fresh signature does not verify")
    return entry


def next_record(
    previous: Entry | None,
    *,
    time: int,
    appliance_id: str,
    event: str,
    actors: Iterable[str] = (),
    subjects: Mapping[str, bytes] | None = None,
    decision: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> Record:
    """The record that chains onto ``previous`` (or the genesis record when None).

    Refuses a clock that runs backwards or a different appliance id, because per-day limits
    are counted from record times and the chain belongs to one appliance.
    """
    if previous is None:
        seq, prev_hash = 0, GENESIS
    else:
        last = previous.record
        if time < last.time:
            raise JournalError(f"time {time} is before seq {last.seq}'s time {last.time}")
        if appliance_id != last.appliance_id:
            raise JournalError(f"appliance {appliance_id!r} does not match the journal's")
        seq, prev_hash = last.seq + 1, last.hash()
    return Record(
        seq=seq,
        prev_hash=prev_hash,
        time=time,
        appliance_id=appliance_id,
        event=event,
        actors=tuple(actors),
        subjects=dict(subjects or {}),
        decision=decision,
        details=dict(details or {}),
    )


# -- verification -------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One problem, located by list position and (where known) the record's seq."""

    position: int
    seq: int | None
    problem: str

    def __str__(self) -> str:
        where = f"position {self.position}" + ("" if self.seq is None else f" (seq {self.seq})")
        return f"{where}: {self.problem}"


@dataclass(frozen=True)
class JournalReport:
    """Verification result; ``head`` is the last record's hash (start hash when empty)."""

    findings: list[Finding]
    length: int
    head: bytes
    last_seq: int | None

    @property
    def ok(self) -> bool:
        return not self.findings


def verify_journal(
    entries: Sequence[Entry],
    audit_pubkey: bytes,
    *,
    expected_head: bytes | None = None,
    expected_length: int | None = None,
    start_prev_hash: bytes = GENESIS,
    start_seq: int = 0,
    appliance_id: str | None = None,
) -> JournalReport:
    """Check signatures, seq order and hash links; name every break by position and seq.

    ``start_prev_hash``/``start_seq`` let a ceremony's segment be checked against the head
    of the previous one (REQUIREMENTS 36). ``appliance_id`` defaults to the first record's.
    """
    verifier = StreamVerifier(audit_pubkey, appliance_id, start_prev_hash, start_seq)
    if not all(isinstance(e, Entry) for e in entries):
        raise JournalError("entries must be Entry objects (parse them with Entry.from_bytes)")
    for entry in entries:
        verifier.add(entry.record, entry.verify(audit_pubkey))
    return verifier.finish(expected_length, expected_head)


@dataclass
class StreamVerifier:
    """The journal's verification, one entry at a time (:func:`verify_journal` folds it
    over a list; the audit replay over a stream of a year's records).

    Feed each entry (with whether its signature verified) to :meth:`add`, then call
    :meth:`finish`. What it keeps per entry is its hash (first position of each, for
    duplicates and links) and its seq: no entry is held.
    """

    audit_pubkey: bytes
    appliance_id: str | None = None
    start_prev_hash: bytes = GENESIS
    start_seq: int = 0
    _found: list[tuple[int, int | None, str | _Link]] = field(default_factory=list)
    _by_hash: dict[bytes, int] = field(default_factory=dict)
    _by_seq: dict[int, int] = field(default_factory=dict)
    _seqs: array[int] = field(default_factory=lambda: array("q"))
    _running_max: array[int] = field(default_factory=lambda: array("q"))
    _seen: set[int] = field(default_factory=set)
    _last: Record | None = None
    _last_hash: bytes | None = None

    def __post_init__(self) -> None:
        if not ecdsa.is_valid_pubkey(self.audit_pubkey) or len(self.audit_pubkey) != 33:
            raise JournalError("audit key must be a valid 33-byte compressed public key")
        _check.fixed_bytes(self.start_prev_hash, "start_prev_hash", 32)
        _check.integer(self.start_seq, "start_seq", 0, MAX_SEQ)

    @property
    def length(self) -> int:
        return len(self._seqs)

    def _add(self, position: int, seq: int | None, problem: str | _Link) -> None:
        self._found.append((position, seq, problem))

    def add(self, record: Record, signed: bool) -> None:
        """The next entry's record, and whether its signature verified."""
        position, seq, digest = len(self._seqs), record.seq, record.hash()
        if self.appliance_id is None and position == 0:
            self.appliance_id = record.appliance_id
        if not signed:
            self._add(
                position,
                seq,
                "signature does not verify under the audit key "
                "(record altered or signed by another key)",
            )
        if self.appliance_id is not None and record.appliance_id != self.appliance_id:
            self._add(
                position, seq, f"appliance {record.appliance_id!r} is not {self.appliance_id!r}"
            )
        self._order(position, record, digest)
        self._link(position, record)
        last = self._last
        if last is not None and record.time < last.time:
            self._add(
                position, seq, f"time {record.time} is before the previous record's {last.time}"
            )
        self._by_hash.setdefault(digest, position)
        self._by_seq.setdefault(seq, position)
        self._seqs.append(seq)
        self._running_max.append(max(seq, self._running_max[-1]) if position else seq)
        self._seen.add(seq)
        self._last, self._last_hash = record, digest

    def _order(self, position: int, record: Record, digest: bytes) -> None:
        seq, last = record.seq, self._last
        expected = last.seq + 1 if last is not None else self.start_seq
        if digest in self._by_hash:
            self._add(position, seq, f"duplicate of the record at position {self._by_hash[digest]}")
        elif seq in self._by_seq:
            self._add(
                position,
                seq,
                f"a different record with seq {seq} is at position {self._by_seq[seq]}",
            )
        elif seq < expected:
            where = f"comes after seq {expected - 1}" if position else f"is before start {expected}"
            self._add(position, seq, f"out of order: seq {seq} {where}")
        elif seq > expected:
            after = f"seq {expected - 1}" if position else "the start"
            self._add(position, seq, f"seq {seq} follows {after}: expected seq {expected}")

    def _link(self, position: int, record: Record) -> None:
        last = self._last
        expected = self._last_hash if last is not None else self.start_prev_hash
        if record.prev_hash == expected:
            return
        if last is not None:
            before = f"position {position - 1} (seq {last.seq})"
        else:
            before = "the start hash"
        # where prev_hash points is known only once every hash is (it may be a later one)
        self._add(
            position,
            record.seq,
            _Link(f"chain break: prev_hash does not match the hash of {before}", record.prev_hash),
        )

    def finish(
        self, expected_length: int | None = None, expected_head: bytes | None = None
    ) -> JournalReport:
        """The report ``verify_journal`` would give for every entry added."""
        self._missing()
        end = len(self._seqs)
        head = self._last_hash if self._last_hash is not None else self.start_prev_hash
        last_seq = self._last.seq if self._last is not None else None
        self._end(expected_head, expected_length)
        findings = [
            Finding(position, seq, self._text(problem))
            for position, seq, problem in sorted(self._found, key=lambda f: f[0])
        ]
        return JournalReport(findings, end, head, last_seq)

    def _text(self, problem: str | _Link) -> str:
        if isinstance(problem, str):
            return problem
        target = self._by_hash.get(problem.prev_hash)
        if target is None:
            return problem.text
        return f"{problem.text}; it links to seq {self._seqs[target]} at position {target}"

    def _missing(self) -> None:
        if not self._seqs:
            return
        highest = max(self._seen)
        if highest - self.start_seq > 2 * len(self._seqs) + 1000:
            self._add(0, highest, f"seq jumps to {highest}: far more records missing than present")
            return
        for seq in range(self.start_seq, highest):
            if seq not in self._seen:
                # the first position holding a higher seq: where the running maximum passes it
                self._add(bisect_right(self._running_max, seq), seq, f"record seq {seq} is missing")

    def _end(self, expected_head: bytes | None, expected_length: int | None) -> None:
        end = len(self._seqs)
        last = self._last.seq if self._last is not None else self.start_seq - 1
        ends = f"journal ends at seq {last}" if end else "journal is empty"
        if expected_length is not None:
            _check.integer(expected_length, "expected_length", 0, MAX_SEQ)
            want = self.start_seq + expected_length - 1
            if expected_length > end:
                self._add(end, last + 1, f"{ends}, expected head at seq {want} (truncated)")
            elif expected_length < end:
                self._add(
                    expected_length,
                    want + 1,
                    f"journal continues to seq {last}, expected head at seq {want}",
                )
        if expected_head is None:
            return
        _check.fixed_bytes(expected_head, "expected_head", 32)
        head = self._last_hash if self._last_hash is not None else self.start_prev_hash
        if head == expected_head:
            return
        at = self._by_hash.get(expected_head)
        if at is not None:
            self._add(
                at + 1,
                self._seqs[at] + 1,
                f"journal continues to seq {last} past the expected head at seq {self._seqs[at]}",
            )
        else:
            self._add(
                end,
                last + 1,
                f"{ends}, head {head.hex()[:16]}… is not the expected "
                f"head {expected_head.hex()[:16]}… (truncated or altered)",
            )


@dataclass(frozen=True)
class _Link:
    """A chain-break message still waiting to say which record ``prev_hash`` names."""

    text: str
    prev_hash: bytes


# -- outpoints --------------------------------------------------------------------------------


def outpoints_digest(outpoints: Iterable[Any]) -> bytes:
    """SHA-256 over the serialized outpoints (36 bytes each: txid in internal byte order,
    vout little-endian), in input order. A signing record commits to a transaction's
    inputs by this digest; the full list is in the transcript the record names, so a record
    stays small whatever the input count (Core's standard maximum is some 1,450 inputs)."""
    digest = hashlib.sha256()
    for outpoint in outpoints:
        digest.update(outpoint.serialize())
    return digest.digest()


# -- receipts ------------------------------------------------------------------------------


def receipt_problem(record: Record, *, wallet: bool) -> str | None:
    """Why a signed record cannot serve as a receipt, or None when it can.

    The coordinator and the auditors rely on receipts, so beyond the audit key's signature
    (checked by the caller) a receipt must be a record the station wrote inside an activated
    ceremony: never a deferred record (written from the pending folder at a later
    activation), and carrying the quorum in force with at least that many distinct officers
    (``actors``; for an approval, also that many approval signatures). ``wallet`` selects a
    wallet receipt (export, pin or key state) instead of a signing approval.
    """
    details = record.details
    if details.get("deferred") is not None:
        return f"seq {record.seq} is a deferred record, not a receipt"
    if wallet:
        if record.event not in WALLET_RECEIPT_EVENTS | KEY_STATE_EVENTS:
            return (
                f"seq {record.seq} records {record.event!r}, not a wallet export, pin or key state"
            )
    elif record.event != "signing_decision" or record.decision != "approved":
        return f"seq {record.seq} records {record.event}/{record.decision}, not an approval"
    quorum = details.get("quorum")
    if not isinstance(quorum, int) or isinstance(quorum, bool) or quorum < 1:
        return f"seq {record.seq} names no quorum"
    if len(record.actors) < quorum:
        return f"seq {record.seq} has {len(record.actors)} officer(s), the quorum is {quorum}"
    if not wallet:
        approvals = details.get("approvals")
        if not isinstance(approvals, Mapping) or not set(record.actors) <= set(approvals):
            return f"seq {record.seq} lacks an approval signature for each officer"
    return None


# -- export document ----------------------------------------------------------------------


def _check_audit_key(audit_pubkey: object) -> bytes:
    if not isinstance(audit_pubkey, bytes) or len(audit_pubkey) != 33:
        raise JournalError("audit key must be a 33-byte compressed public key")
    if not ecdsa.is_valid_pubkey(audit_pubkey):
        raise JournalError("audit key is not a point on secp256k1")
    return audit_pubkey


def audit_key_fingerprint(audit_pubkey: bytes) -> str:
    """16 hex digits of SHA-256 of the audit key: what the appliance's status shows and the
    coordinator prints at wallet import, so ops can compare them when pinning the key."""
    return hashlib.sha256(audit_pubkey).hexdigest()[:16]


def export_journal(entries: Iterable[Entry], appliance_id: str, audit_pubkey: bytes) -> bytes:
    """The journal export (a typed CBOR map, the body of a ``ur:bytes``)."""
    _check.text(appliance_id, "appliance id", MAX_APPLIANCE_ID)
    _check_audit_key(audit_pubkey)
    blobs = [e.to_bytes() for e in entries]
    if len(blobs) > MAX_EXPORT_ENTRIES:
        raise JournalError(f"{len(blobs)} entries exceeds the limit of {MAX_EXPORT_ENTRIES}")
    data = canonical.encode(
        {
            "type": EXPORT_TYPE,
            "version": EXPORT_VERSION,
            "appliance": appliance_id,
            "audit_key": audit_pubkey,
            "entries": blobs,
        }
    )
    if len(data) > MAX_EXPORT_BYTES:
        raise JournalError(f"export is {len(data)} bytes, over the {MAX_EXPORT_BYTES} limit")
    return data


def parse_export(data: bytes) -> tuple[str, bytes, list[Entry]]:
    """(appliance id, audit key, entries) from an export; verify them with verify_journal.

    Parsing checks only form; the chain and signatures are judged by :func:`verify_journal`
    so the auditor gets a report naming each break rather than one exception.
    """
    if not isinstance(data, bytes):
        raise JournalError("export must be bytes")
    plain = _decode(data, MAX_EXPORT_BYTES, "journal export")
    plain = _check.exact_keys(plain, "journal export", _EXPORT_KEYS)
    if plain["type"] != EXPORT_TYPE:
        raise JournalError(f"document type {plain['type']!r} is not {EXPORT_TYPE!r}")
    if plain["version"] != EXPORT_VERSION or isinstance(plain["version"], bool):
        raise JournalError(f"unsupported journal export version {plain['version']!r}")
    appliance_id = _check.text(plain["appliance"], "appliance id", MAX_APPLIANCE_ID)
    audit_key = _check_audit_key(plain["audit_key"])
    blobs = plain["entries"]
    if not isinstance(blobs, list) or len(blobs) > MAX_EXPORT_ENTRIES:
        raise JournalError(f"entries must be a list of at most {MAX_EXPORT_ENTRIES} items")
    entries = []
    for i, blob in enumerate(blobs):
        try:
            entries.append(Entry.from_bytes(blob))
        except JournalError as exc:
            raise JournalError(f"entry at position {i}: {exc}") from exc
    return appliance_id, audit_key, entries
