"""Checks 1-3 on one appliance's bundle: the journal, its policies, its signing decisions.

The records are walked in order, keeping what the appliance itself knew at each seq: the
policy in force, the officers enrolled and revoked, the wallets pinned
(:class:`~shared.audit.change.PinnedWallets`), the keys and their states
(:class:`~shared.audit.keys.KeyBook`), the request ids already presented, the outpoints
already signed and the amount already approved each UTC day (each transaction once, as
the station counts it). Each ``signing_decision`` is then judged again with that state: its
transcript must be the file the record names; the policy in force must reach the same
decision from the transcript's facts (the daily total recomputed from the journal, not
taken from the transcript); an approval needs the policy's yes, no refusal, and a quorum of
valid approvals over exactly the recorded request hash.

For an approval whose request the coordinator evidence holds (bound by the request hash),
change is re-derived from the journal-pinned descriptors and the policy's internal wallets
(:mod:`shared.audit.change`), never taken from the transcript: a transcript calling a
payment "change" is a finding, and the limits are re-evaluated with the re-derived amounts,
which are also what the daily totals count. Every key the transcript signs with must have
been active at that seq. Every record is held to the receipt and deferred-record contract
(:mod:`shared.audit.receipts`).

The journal is replayed as it is read (:mod:`shared.audit.journal_stream`): each entry is
parsed and its signature checked (by worker processes for a long journal), the chain is
folded by a :class:`~shared.journal.StreamVerifier`, and the record is judged,
all in one pass. What later checks need of a record is kept (its hash and signature by seq,
an approval's txid and request hash, a ceremony's inputs, outputs and fee as shown), the
entry itself is not, so memory does not grow with the size of the records.

Judging a signing decision is split in two. What its record and transcript say on their
own (the transcript read and parsed, the evaluator's facts and decision, the approvals'
tally, the outpoints shown, every message that follows from them alone) is
:func:`judge`, a pure function; with worker processes, the worker that parsed the entry
runs it, under the policy the replay had in force when the chunk was sent, and hands back
the result (:class:`_Judged`: no transcript). The replay uses it only when it judges under
that same policy and from that same transcript file; otherwise, and without workers, it
runs :func:`judge` itself. What needs the journal's state as it stands at the record (the
day's total, the keys, the pins, the history, the policy in force) is judged by the replay,
in order. The verdicts are the same either way.

A signing decision names the coins it spends either as a list (``details["outpoints"]``,
older records) or by digest (``details["inputs"]``, the count, and
``details["outpoints_sha256"]``, :func:`shared.journal.outpoints_digest` of them in input
order), the list then being the transcript's. The outpoints signed, which later decisions
are checked against, are then taken from the transcript and checked against the digest: a
transcript that is missing, unreadable or hashing to another digest is a finding.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from shared import canonical
from shared.audit import transcript as tr
from shared.audit.change import ChangeDeriver, PinnedWallets, Rederived
from shared.audit.evidence import ApplianceBundle, EvidenceError, PolicyFile, Transcript
from shared.audit.facts import ChangeFacts, Failed, ReceiptFacts, derive, value
from shared.audit.journal_stream import (
    EntryProblem,
    Oversized,
    Preparer,
    parse_entry,
    read_entries,
)
from shared.audit.keys import KeyBook, KeyState
from shared.audit.model import ApplianceStatus, Ceremony, Finding
from shared.audit.receipts import deferred_problem, is_receipt, journal_receipt_problem
from shared.audit.workers import Workers
from shared.bitcoin.address import network_by_name, script_to_address
from shared.journal import (
    GENESIS,
    Entry,
    JournalError,
    Record,
    StreamVerifier,
    outpoints_digest,
)
from shared.policy import (
    Decision,
    Facts,
    Payment,
    Policy,
    PolicyError,
    SignatureTally,
    count_admin_signatures,
    count_valid_approvals,
    evaluate,
    recovery_statement,
    utc_day,
    verify_signed_policy,
    wallet_pin_statement,
)
from shared.requester import excluded_approver
from shared.station import PIN_STATUS_FIELDS, TOKEN_PIN_REPORTS


@dataclass
class _History:
    """What the appliance had already decided, as its own journal tells it."""

    seen_requests: dict[bytes, int] = field(default_factory=dict)
    signed_outpoints: dict[str, tuple[str, int]] = field(default_factory=dict)
    paid_by_day: dict[int, int] = field(default_factory=dict)
    approved_txids: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _Kept:
    """What later checks need of the first record with a seq: its hash and signature (is a
    receipt the journal's own entry?) and, for a signing decision, what a reissue names."""

    hash: bytes
    signature: bytes
    event: str
    decision: str | None = None
    txid: object = None
    request: bytes | None = None


class _Verdict(NamedTuple):
    """The policy's decision on the transcript's facts, and how it compares with the one
    the transcript records."""

    approved: bool
    violations: tuple[str, ...]
    same: bool  # the transcript records exactly this decision
    differences: tuple[str, ...]


class _Judged(NamedTuple):
    """What a signing decision's record and its transcript (``stem``: the file's name) say
    on their own, judged under the policy ``policy`` (its hash; None: none in force):
    everything the checks compute from the two alone, messages included. The rest needs
    the journal's state as it stands at the record (day totals, keys, pins, history, the
    policy in force) and is judged by the replay, in order. Made by :func:`judge`, in a
    worker ahead of the replay or by the replay itself: the same function either way."""

    policy: bytes | None
    stem: str
    consistent: tuple[str, ...]  # where the record's summary differs from the transcript
    facts: Facts | str | Failed | None  # the evaluator's facts, or why they cannot be read
    late: str | None  # decided after the record's time
    mismatches: tuple[str, ...]  # the evaluator's facts that are not the ones shown
    verdict: _Verdict | Failed | None  # under ``policy``, from ``facts``
    for_signing: bool  # the transcript says approved for signing
    refusals: str | None  # the refusals the transcript lists, as text
    inputs: tuple[list[str], str | None]  # the coins it spends, and the problem naming them
    tally: SignatureTally | str | Failed | None  # the approvals, under ``policy``
    replaces: frozenset[str] | Failed  # txids the request says it replaces
    claims: tuple[object, ...]  # each output's is_change, as the transcript shows it
    keys: tuple[tuple[int, bytes], ...]  # (input, key) the station shows it signs with
    shown: tr.Shown  # what the coordinator check compares
    paid: tr.Paid  # the batch, purpose and payees the transcript shows (for the report)
    requester: str | None  # why the requester's assertion proves nobody (policy lists them)


def judge(record: Record, plain: dict[str, Any], stem: str, policy: Policy | None) -> _Judged:
    """A signing decision judged from its record and transcript alone (see _Judged)."""
    details = record.details
    facts = derive(lambda: _caught(lambda: tr.facts(plain), tr.TranscriptError))
    late: str | None = None
    mismatches: tuple[str, ...] = ()
    if isinstance(facts, Facts):
        decided = facts.request_time
        if decided > record.time:
            late = f"decided at {decided}, after its record's time {record.time}"
        mismatches = _mismatches(plain)
    verdict = None
    if policy is not None and isinstance(facts, Facts):
        verdict = derive(lambda: _verdict(plain, evaluate(policy, facts)))
    tally = None
    requester_problem: str | None = None
    request_hash = record.subjects.get("request")
    approvals = details.get("approvals")
    if (
        policy is not None
        and record.decision == "approved"
        and request_hash is not None
        and len(request_hash) == 32
        and isinstance(approvals, dict)
    ):
        verified, requester_problem = tr.requester(plain, policy.requesters, request_hash)
        excluded = excluded_approver(
            policy.requesters, verified, tr.request(plain).get("requester")
        )
        tally = derive(
            lambda: _caught(
                lambda: count_valid_approvals(policy, request_hash, approvals, excluded),
                PolicyError,
            )
        )
    refusals = tr.refusals(plain)
    outputs, inputs = plain.get("outputs"), plain.get("inputs")
    return _Judged(
        policy.hash() if policy is not None else None,
        stem,
        _consistent(record, plain),
        facts,
        late,
        mismatches,
        verdict,
        plain.get("approved_for_signing") is True,
        "; ".join(str(r) for r in refusals) if refusals else None,
        _signed_inputs(record, plain),
        tally,
        derive(lambda: frozenset(t[::-1].hex() for t in tr.request(plain).get("replaces", []))),
        tuple(
            o.get("is_change") if isinstance(o, dict) else None
            for o in (outputs if isinstance(outputs, list) else [])
        ),
        tuple(
            (i, shown["key"])
            for i, shown in enumerate(inputs if isinstance(inputs, list) else [])
            if isinstance(shown, dict) and isinstance(shown.get("key"), bytes)
        ),
        tr.shown(plain),
        tr.paid(plain),
        requester_problem,
    )


def _verdict(plain: dict[str, Any], decision: Decision) -> _Verdict:
    same = tr.same_decision(plain, decision)
    return _Verdict(
        decision.approved,
        tuple(decision.violations),
        same,
        () if same else tuple(tr.differences(plain, decision)),
    )


def _consistent(record: Record, plain: dict[str, Any]) -> tuple[str, ...]:
    """The record's summary must say what the transcript says."""
    details = record.details
    pairs: tuple[tuple[str, Any, Any], ...] = (
        ("request hash", record.subjects.get("request"), plain.get("request_hash")),
        ("txid", details.get("txid"), tr.txid_hex(plain)),
        ("refusals", details.get("refusals", []), tr.refusals(plain)),
        ("request id", details.get("request_id"), tr.request(plain).get("request_id")),
        ("paid out", details.get("paid_out"), plain.get("paid_to_others")),
        ("fee", details.get("fee"), plain.get("fee")),
    )
    if details.get("deferred") is True and record.decision == "refused":
        pairs = pairs[:4]  # a deferred refusal carries no amounts, by contract
    return tuple(
        f"the record's {name} ({_short(in_record)}) is not the transcript's "
        f"({_short(in_transcript)})"
        for name, in_record, in_transcript in pairs
        if in_record != in_transcript
    )


def _mismatches(plain: dict[str, Any]) -> tuple[str, ...]:
    """Facts the evaluator was given that are not the ones the transcript shows."""
    facts = plain.get("facts", {})
    request = tr.request(plain)
    return tuple(
        f"the evaluator's {name} ({fact}) is not the one shown ({shown})"
        for name, fact, shown in (
            ("fee", facts.get("fee"), plain.get("fee")),
            ("vsize", facts.get("vsize"), plain.get("vsize")),
            ("network", facts.get("network"), request.get("network")),
            ("expiry", facts.get("request_expiry"), request.get("expiry")),
            ("created", facts.get("request_created"), request.get("created")),
        )
        if fact != shown
    )


def _signed_inputs(record: Record, plain: dict[str, Any] | None) -> tuple[list[str], str | None]:
    """The coins a decision spends (``txid:vout``, in input order) and the problem naming
    them: listed in the record, or, when the record commits to them by digest, the
    transcript's inputs checked against that digest (see the module docstring)."""
    details = record.details
    listed = _outpoints(record)
    if "outpoints_sha256" not in details:
        return listed, None
    digest = details.get("outpoints_sha256")
    problem = None
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        problem = "its outpoints_sha256 is not a SHA-256 in hex"
    if "outpoints" in details:
        if problem is None and not _digest_matches(listed, digest):
            problem = "the outpoints it lists do not hash to its outpoints_sha256"
        return listed, problem
    if plain is None:
        if record.decision == "approved":
            return [], (
                "its inputs are named only in its transcript (outpoints_sha256), which "
                "is missing or unreadable: the coins it signed cannot be checked "
                "against other approvals"
            )
        return [], None
    try:
        shown = [str(o) for o in tr.outpoints(plain)]
    except tr.TranscriptError as exc:
        return [], (
            f"transcript {exc}: the coins it signed cannot be checked against other approvals"
        )
    count = details.get("inputs")
    if problem is None and not _digest_matches(shown, digest):
        problem = "the transcript's inputs do not hash to the record's outpoints_sha256"
    if problem is None and (type(count) is not int or count != len(shown)):
        problem = f"the record names {count!r} inputs, the transcript shows {len(shown)}"
    return shown, problem


def _digest_matches(outpoints: list[str], digest: object) -> bool:
    try:
        parsed = [tr.parse_outpoint(o) for o in outpoints]
    except tr.TranscriptError:
        return False
    return isinstance(digest, str) and outpoints_digest(parsed).hex() == digest


@dataclass
class _Prepare:
    """Judges each signing decision of a chunk of entries ahead, in a worker (picklable):
    the policy in force is followed through the chunk's ``policy_installed`` records as the
    replay follows it; a transcript that is not there as named, or not a review, is left
    for the replay to read and name."""

    policies: dict[bytes, Policy]
    policy: bytes | None
    read: Callable[[str], Transcript | None]

    def __call__(self, record: Record) -> _Judged | None:
        if record.event == "policy_installed":
            digest = record.subjects.get("policy")
            self.policy = digest if digest in self.policies else None
            return None
        digest = record.subjects.get("transcript")
        if record.event != "signing_decision" or digest is None:
            return None
        stem = digest.hex()
        transcript = self.read(stem)
        if transcript is None or transcript.digest != digest:
            return None
        tr.check_shape(transcript.plain)
        policy = self.policies.get(self.policy) if self.policy is not None else None
        return judge(record, transcript.plain, stem, policy)


def _caught(compute: Callable[[], Any], error: type[Exception]) -> Any:
    try:
        return compute()
    except error as exc:
        return str(exc)


class ApplianceReplay:
    """Replay one bundle; read ``status``, ``ceremonies`` and ``findings`` afterwards.

    ``requests`` (request hash -> what re-deriving change needs of the request whose hash
    recomputes from its PSBT, :class:`~shared.audit.facts.ChangeFacts`) and ``change`` let
    approvals have their change re-derived; without them (a replay of the bundle alone) the
    recorded amounts are used, and ``unrederived`` counts those. ``workers`` are processes
    that may read the journal (see :func:`~shared.audit.journal_stream.read_entries`).
    A journal entry that cannot be parsed at all raises EvidenceError naming its position.
    """

    def __init__(
        self,
        bundle: ApplianceBundle,
        pinned_key: bytes | None,
        requests: Mapping[bytes, ChangeFacts] | None = None,
        change: ChangeDeriver | None = None,
        *,
        workers: Workers | None = None,
    ) -> None:
        self.bundle = bundle
        self.id = bundle.appliance_id
        self.pinned_key = pinned_key
        self.findings: list[Finding] = []
        self.ceremonies: list[Ceremony] = []
        self._kept: dict[int, _Kept] = {}
        self._workers = workers
        self._prepared: _Judged | None = None
        self.approved: dict[bytes, list[Ceremony]] = {}
        self.by_request: dict[bytes, list[Ceremony]] = {}
        self._policies = {p.hash: p for p in bundle.policies}
        self._named: set[bytes] = set()
        self._policy: Policy | None = None
        self._policy_lost = False
        self._enrolled: dict[str, str] = {}
        self._algorithms: dict[str, str] = {}  # fingerprint -> approval key curve enrolled
        self._blobs: set[str] = set()  # SHA-256 (hex) of every blob a backup exported
        self._revoked: set[str] = set()
        self._pins = PinnedWallets()
        self.keys = KeyBook(bundle.audit_key)
        self._active: tuple[Mapping[bytes, KeyState], frozenset[bytes]] | None = None
        self._requests: Mapping[bytes, ChangeFacts] = requests or {}
        self._deriver = change
        self.unrederived = 0
        self._history = _History()
        self.status = ApplianceStatus(self.id, bundle.source, bundle.audit_key.hex(), 0, "", "")

    # -- findings ---------------------------------------------------------------------------

    def add(
        self,
        check: str,
        message: str,
        *,
        seq: int | None = None,
        ceremony: Ceremony | None = None,
        **where: Any,
    ) -> Finding:
        finding = Finding(check, message, appliance=self.id, seq=seq, **where)
        self.findings.append(finding)
        if ceremony is not None:
            ceremony.findings.append(finding)
        return finding

    # -- driver -----------------------------------------------------------------------------

    def run(self) -> ApplianceReplay:
        """One pass over the journal: each entry checked, chained and judged as it is read.

        The journal-wide findings (length, chain, anchor) can only be known at the end; they
        are put first, where a replay of the whole list put them.
        """
        verifier, unverifiable = self._verifier()
        key = self.bundle.audit_key
        generated, last = 0, None
        for item in read_entries(self.bundle.journal, self._workers, self._preparer()):
            if isinstance(item, EntryProblem):
                raise EvidenceError(
                    f"{self.bundle.journal_where}: entry at position "
                    f"{item.position}: {item.message}"
                )
            entry, record = item.entry, item.entry.record
            if verifier is not None:
                verifier.add(record, item.signed)
            self._keep(entry)
            if record.event == "key_generated" and record.subjects.get("public_key") == key:
                generated += 1
            self._prepared = item.prepared
            self._record(record)
            last = record
        self._prepared = None
        walked, self.findings = self.findings, []
        self._journal(verifier, unverifiable, last)
        self._anchor(generated)
        self.findings += walked
        self._unnamed_policies()
        self.bundle.transcripts.check_unread()
        self._finish_status()
        return self

    def _preparer(self) -> Preparer | None:
        """What a worker gets to prepare the signing decisions of a chunk (see _Prepare):
        none when the transcripts cannot be read there.

        Each chunk is prepared under the policy in force at its first record, followed as
        the chunks are sent: the rare entry naming ``policy_installed`` is parsed here to
        see which policy it installs, by the replay's own rule (the bundle's file with that
        hash, or none). A guess that is wrong only costs the replay doing the work itself.
        """
        read = self.bundle.transcripts.reader()
        if read is None:
            return None
        policies = {p.hash: p.signed.policy for p in self.bundle.policies}
        marker = canonical.encode("policy_installed")
        current: list[bytes | None] = [None]

        def prepare(blobs: Sequence[bytes | Oversized]) -> _Prepare:
            preparer = _Prepare(policies, current[0], read)
            for blob in blobs:
                if isinstance(blob, bytes) and marker in blob:
                    try:
                        record = parse_entry(blob).record
                    except JournalError:
                        continue
                    if record.event == "policy_installed":
                        digest = record.subjects.get("policy")
                        current[0] = digest if digest in policies else None
            return preparer

        return prepare

    def _ahead(self, stem: str) -> _Judged | None:
        """What was judged ahead for this record, if it was judged under the policy now in
        force and from the transcript file ``stem``, which is then counted as read."""
        judged = self._prepared
        if judged is None or judged.stem != stem:
            return None
        if judged.policy != (self._policy.hash() if self._policy is not None else None):
            return None
        return judged if self.bundle.transcripts.preloaded(stem) else None

    def _verifier(self) -> tuple[StreamVerifier | None, JournalError | None]:
        try:
            return StreamVerifier(self.bundle.audit_key, self.id), None
        except JournalError as exc:
            return None, exc

    def _keep(self, entry: Entry) -> None:
        record = entry.record
        if record.seq in self._kept:
            return  # the first record with a seq is the journal's, as verify_journal counts
        if record.event == "signing_decision":
            kept = _Kept(
                record.hash(),
                entry.signature,
                _intern(record.event),
                _intern(record.decision),
                record.details.get("txid"),
                record.subjects.get("request"),
            )
        else:
            kept = _Kept(record.hash(), entry.signature, _intern(record.event))
        self._kept[record.seq] = kept

    def hash_at(self, seq: int) -> bytes | None:
        """The hash of the journal's record ``seq``, or None when there is none."""
        kept = self._kept.get(seq)
        return kept.hash if kept is not None else None

    def same_entry(self, entry: ReceiptFacts) -> bool:
        """True when ``entry`` is the journal's own entry at its seq (same record hash, same
        signature): then its signature was already checked with the journal."""
        kept = self._kept.get(entry.seq)
        return kept is not None and kept.signature == entry.signature and kept.hash == entry.hash

    def _record(self, record: Record) -> None:
        self._contract(record)
        handler = _HANDLERS.get(record.event)
        if handler is not None:
            handler(self, record)

    def _contract(self, record: Record) -> None:
        """Deferred records may only refuse; receipts carry their quorum (module receipts)."""
        deferred = deferred_problem(record)
        if deferred is not None:
            self.add("journal", deferred, seq=record.seq)
        if not is_receipt(record):
            return
        problem = None if deferred is not None else journal_receipt_problem(record)
        if problem is not None:
            self.add("receipt", f"{record.event} is no valid receipt: {problem}", seq=record.seq)
        if record.event != "signing_decision":  # wallet and key-state receipts
            for fp in record.actors:
                if fp not in self._enrolled:
                    self.add(
                        "receipt",
                        f"{record.event}: actor {fp} is not an enrolled officer",
                        seq=record.seq,
                    )
                elif fp in self._revoked:
                    self.add("receipt", f"{record.event}: actor {fp} was revoked", seq=record.seq)

    def _finish_status(self) -> None:
        status = self.status
        status.approved = sum(1 for c in self.ceremonies if c.decision == "approved")
        status.refused = len(self.ceremonies) - status.approved
        status.findings = len(self.findings)

    # -- check 1: the journal ---------------------------------------------------------------

    def _journal(
        self,
        verifier: StreamVerifier | None,
        unverifiable: JournalError | None,
        last: Record | None,
    ) -> None:
        expected = self._expected_length(last)
        try:
            if verifier is None:
                raise unverifiable or JournalError("no verifier")
            report = verifier.finish(expected_length=expected)
        except JournalError as exc:
            self.add("journal", f"cannot be verified: {exc}")
            return
        for problem in report.findings:
            self.add("journal", problem.problem, seq=problem.seq)
        self.status.records = report.length
        self.status.head = report.head.hex()
        self.status.journal_findings += len(report.findings)

    def _expected_length(self, last: Record | None) -> int | None:
        """An export ends with its own ``journal_export`` record naming the length; a journal
        that does not has lost its tail (or is not an export)."""
        if last is None or last.event != "journal_export":
            seq = last.seq if last else None
            self.add(
                "journal",
                "the journal does not end with its own journal_export "
                "record: truncated, or not an export",
                seq=seq,
            )
            self.status.journal_findings += 1
            return None
        length = last.details.get("length")
        if isinstance(length, int) and not isinstance(length, bool) and length >= 0:
            return length
        self.add("journal", "journal_export record has no valid length", seq=last.seq)
        return None

    def _anchor(self, generated: int) -> None:
        """The audit key must be the one the coordinator pinned, and the journal's own
        (``generated``: how many key_generated records register it)."""
        key = self.bundle.audit_key
        if self.pinned_key is None:
            self.status.anchored = "not pinned by the coordinator"
            self.add(
                "journal",
                "the coordinator never pinned this appliance: its audit key "
                "is anchored nowhere outside the bundle",
            )
        elif self.pinned_key != key:
            self.status.anchored = "differs from the coordinator's pin"
            self.add(
                "journal",
                f"audit key {key.hex()} is not the key the coordinator pinned "
                f"({self.pinned_key.hex()})",
            )
        else:
            self.status.anchored = "pinned by the coordinator"
        if generated != 1:
            self.add(
                "journal",
                f"the audit key has {generated} key_generated records (expected exactly one)",
            )

    # -- check 2: policies ------------------------------------------------------------------

    def _policy_installed(self, record: Record) -> None:
        digest = record.subjects.get("policy")
        version = record.details.get("version")
        found = self._policies.get(digest) if digest else None
        if found is None:
            self._policy_missing(record, digest, version)
            return
        self._named.add(found.hash)
        policy = found.signed.policy
        if policy.version != version:
            self.add(
                "policy",
                f"record says version {version}, {found.name} is version {policy.version}",
                seq=record.seq,
                file=found.name,
            )
        if found.name != f"{policy.version:04d}.cbor":
            self.add(
                "policy",
                f"policy version {policy.version} is filed as {found.name}",
                seq=record.seq,
                file=found.name,
            )
        self._verify_policy(record, found)
        self._policy, self._policy_lost = policy, False
        self.status.policy_versions.append(policy.version)

    def _policy_missing(self, record: Record, digest: bytes | None, version: object) -> None:
        shown = digest.hex()[:16] if digest else "none"
        same = [p for p in self.bundle.policies if p.signed.policy.version == version]
        if same:
            self.add(
                "policy",
                f"{same[0].name} is not the policy this record installed (hash "
                f"{same[0].hash.hex()[:16]}…, journal says {shown}…): changed after the "
                "fact",
                seq=record.seq,
                file=same[0].name,
            )
            self._named.add(same[0].hash)
        else:
            self.add(
                "policy",
                f"the policy it installed (version {version}, hash {shown}…) is not in the bundle",
                seq=record.seq,
            )
        self._policy, self._policy_lost = None, True

    def _verify_policy(self, record: Record, found: PolicyFile) -> None:
        """Admin quorum and chain: the first against the enrolled administrators, each later
        one against its predecessor (whose administrators must sign it)."""
        previous = self._policy
        if previous is None and self._policy_lost:
            self.add(
                "policy",
                "cannot verify the admin quorum: the previous policy is missing",
                seq=record.seq,
                file=found.name,
            )
            return
        try:
            verify_signed_policy(found.signed, previous)
        except PolicyError as exc:
            self.add("policy", str(exc), seq=record.seq, file=found.name)
        if found.signed.policy.appliance_id != self.id:
            self.add(
                "policy",
                f"policy is for appliance {found.signed.policy.appliance_id!r}",
                seq=record.seq,
                file=found.name,
            )
        if previous is None:
            self._check_genesis(record, found)

    def _check_genesis(self, record: Record, found: PolicyFile) -> None:
        """The first policy lists exactly the officers and administrators enrolled."""
        policy = found.signed.policy
        for role, listed in (
            ("approver", policy.officers),
            ("administrator", policy.administrators),
        ):
            enrolled = {fp for fp, r in self._enrolled.items() if r == role}
            if {o.fingerprint for o in listed} != enrolled:
                self.add(
                    "policy",
                    f"the first policy's {role}s are not those enrolled",
                    seq=record.seq,
                    file=found.name,
                )
            for officer in listed:
                curve = self._algorithms.get(officer.fingerprint, officer.algorithm)
                if curve != officer.algorithm:
                    self.add(
                        "policy",
                        f"the first policy lists {officer.fingerprint} with a {officer.algorithm} "
                        f"key; it was enrolled with a {curve} key",
                        seq=record.seq,
                        file=found.name,
                    )

    def _unnamed_policies(self) -> None:
        for found in self.bundle.policies:
            if found.hash not in self._named:
                self.add(
                    "policy",
                    f"policy version {found.signed.policy.version} is not named "
                    "by any policy_installed record",
                    file=found.name,
                )

    def _activation(self, record: Record) -> None:
        named = record.subjects.get("policy")
        if self._policy is not None and named != self._policy.hash():
            self.add(
                "policy", "activation names a policy other than the one in force", seq=record.seq
            )

    def _officer_enrolled(self, record: Record) -> None:
        role = record.details.get("role")
        algorithm = record.details.get("algorithm", "secp256k1")
        token = record.details.get("token")
        for fp in record.actors:
            self._enrolled[fp] = str(role)
            self._algorithms[fp] = str(algorithm)
            if isinstance(token, str):  # the token's label: how the team names its holder
                self.status.officers[fp] = token

    def _backup(self, record: Record) -> None:
        blob = record.subjects.get("blob")
        if isinstance(blob, bytes):
            self._blobs.add(blob.hex())

    def _backup_register(self, record: Record) -> None:
        """The register may only speak of blobs a journaled backup exported, and a test
        restore ends ok or failed."""
        blob = record.details.get("blob")
        result = record.details.get("result", "ok")
        if record.event == "backup_tested" and result not in ("ok", "failed"):
            self.add("journal", f"backup_tested has result {_short(result)}", seq=record.seq)
        if blob not in self._blobs:
            self.add(
                "journal",
                f"{record.event} names blob {_short(blob)}, which no backup record exported",
                seq=record.seq,
            )

    def _pin_status(self, record: Record) -> None:
        """PIN failures and token lockouts the station journaled: well formed, or a finding."""
        tokens = record.details.get("tokens")
        entries = tokens if isinstance(tokens, list) else [None]
        for item in entries:
            ok = (
                isinstance(item, dict)
                and set(item) == set(PIN_STATUS_FIELDS)
                and isinstance(item["serial"], str)
                and item["serial"] != ""
                and isinstance(item["failures"], int)
                and not isinstance(item["failures"], bool)
                and item["failures"] >= 0
                and item["token"] in TOKEN_PIN_REPORTS
            )
            if not ok:
                self.add("journal", f"pin_status entry {_short(item)} is malformed", seq=record.seq)

    def _officer_revoked(self, record: Record) -> None:
        self._revoked.update(record.actors)
        for fp in record.actors:
            officer = self._policy.officer(fp) if self._policy else None
            if officer is not None and officer.active:
                self.add(
                    "policy",
                    f"officer {fp} is recorded revoked but is active in the policy in force",
                    seq=record.seq,
                )

    def _wallet_exported(self, record: Record) -> None:
        if record.details.get("audit_key") != self.bundle.audit_key.hex():
            self.add("journal", "wallet export names another audit key", seq=record.seq)
        self._wallet_pinned(record)

    def _wallet_pinned(self, record: Record) -> None:
        """Pins are what change is re-derived from; a deferred record never pins."""
        if record.details.get("deferred") is not None:
            return  # named by _contract; a deferred record changes nothing
        if record.event == "wallet_pinned":
            self._pin_authority(record, "pin")
        problem = self._pins.pin(record.details.get("descriptor"), record.seq)
        if problem is not None:
            self.add("journal", f"{record.event} {problem}", seq=record.seq)

    def _wallet_unpinned(self, record: Record) -> None:
        self._admin_statement(
            record,
            wallet_pin_statement(self.id, "unpin", str(record.details.get("descriptor"))),
            "wallet_unpinned",
        )
        problem = self._pins.unpin(record.details.get("descriptor"))
        if problem is not None:
            self.add("journal", f"wallet_unpinned {problem}", seq=record.seq)

    def _pin_authority(self, record: Record, action: str) -> None:
        """A pin stands on the policy in force naming the wallet internal, or on a quorum
        of that policy's administrators signing exactly this pin."""
        descriptor = str(record.details.get("descriptor"))
        how = record.details.get("authorised_by")
        if how == "policy":
            internal = getattr(self._policy, "internal_wallets", ()) if self._policy else ()
            if descriptor not in internal:
                self.add(
                    "journal",
                    "wallet_pinned says the policy names the wallet internal, "
                    "but the policy in force does not",
                    seq=record.seq,
                )
        elif how == "administrators":
            self._admin_statement(
                record, wallet_pin_statement(self.id, action, descriptor), "wallet_pinned"
            )
        else:
            self.add("journal", f"wallet_pinned names no known authority ({how!r})", seq=record.seq)

    def _admin_statement(self, record: Record, statement: dict[str, Any], what: str) -> None:
        """The administrators' signatures a record carries, counted under the policy then
        in force over exactly ``statement``."""
        signatures = record.details.get("admin_signatures")
        if self._policy is None or not isinstance(signatures, Mapping):
            self.add(
                "journal",
                f"{what} carries no administrators' signatures a known policy can count",
                seq=record.seq,
            )
            return
        try:
            tally = count_admin_signatures(
                self._policy, canonical.digest(statement), dict(signatures)
            )
        except PolicyError as exc:
            self.add(
                "journal", f"{what}: administrators' signatures unreadable: {exc}", seq=record.seq
            )
            return
        if not tally.met:
            self.add(
                "journal",
                f"{what} has {len(tally.valid)} valid administrator "
                f"signature(s), the policy in force needs {tally.quorum}",
                seq=record.seq,
            )

    def _recovered(self, record: Record) -> None:
        """A journal recovery is always a finding: records were lost or damaged, and the
        administrators' statement of it must verify."""
        details = record.details
        kept = details.get("kept_through")
        lost = details.get("lost_through")
        head = self.hash_at(kept) if isinstance(kept, int) and kept >= 0 else GENESIS
        what = f"kept through seq {kept}, damaged tail cut from position {details.get('cut_from')}"
        if lost is not None:
            what += f", records up to seq {lost} of the old chain lost"
        self.add(
            "journal",
            f"the journal was recovered ({what}): compare with the paper log "
            "and the coordinator's receipts for what the lost records did",
            seq=record.seq,
        )
        problems, cut_from = details.get("problems"), details.get("cut_from")
        self._admin_statement(
            record,
            recovery_statement(
                self.id,
                kept if isinstance(kept, int) else -1,
                head or GENESIS,
                cut_from if isinstance(cut_from, int) else -1,
                lost if isinstance(lost, int) else None,
                list(problems) if isinstance(problems, list) else [],
            ),
            "journal_recovered",
        )

    def _reissued(self, record: Record) -> None:
        """A lost output signed again must name an approval of the same transaction."""
        seq = record.details.get("approval")
        approval = self._kept.get(seq) if isinstance(seq, int) else None
        if (
            approval is None
            or approval.event != "signing_decision"
            or approval.decision != "approved"
            or approval.txid != record.details.get("txid")
            or approval.request != record.subjects.get("request")
        ):
            self.add(
                "ceremony",
                f"signing_reissued names no approval of the same transaction (seq {seq})",
                seq=record.seq,
            )

    def _key(self, record: Record) -> None:
        problem = self.keys.apply(record)
        if problem is not None:
            self.add("journal", problem, seq=record.seq)

    # -- check 3: signing decisions ---------------------------------------------------------

    def _signing(self, record: Record) -> None:
        ceremony = self._ceremony(record)
        self.ceremonies.append(ceremony)
        judged = self._transcript(record, ceremony)
        if judged is not None:
            self._judge(record, ceremony, judged)
        elif record.decision == "approved":
            self.add(
                "ceremony",
                "approved without a readable transcript",
                seq=record.seq,
                ceremony=ceremony,
            )
        inputs, problem = judged.inputs if judged is not None else _signed_inputs(record, None)
        if problem is not None:
            self.add("ceremony", problem, seq=record.seq, ceremony=ceremony)
        if record.decision == "approved":
            if ceremony.paid_out is not None and ceremony.paid_out < 0:
                self.add(
                    "ceremony",
                    f"approved with a negative paid_out ({ceremony.paid_out} "
                    "sat): it would lower the daily total",
                    seq=record.seq,
                    ceremony=ceremony,
                )
            self._approvals(record, ceremony, judged)
            self._history_checks(record, ceremony, inputs, judged)
            self._rederive(record, ceremony, judged)
            if judged is not None:
                self._transcript_keys(record, ceremony, judged)
        self._remember(record, ceremony, inputs)
        if judged is not None:
            # only what the coordinator check compares, and what the report shows of whom
            # it paid, is kept: a year of transcripts is not held in memory
            ceremony.transcript = judged.shown
            ceremony.paid = judged.paid

    def _ceremony(self, record: Record) -> Ceremony:
        details = record.details
        request_id = details.get("request_id")
        ceremony = Ceremony(
            self.id,
            record.seq,
            record.time,
            _intern(str(record.decision)),
            request_id.hex() if isinstance(request_id, bytes) else None,
            record.subjects.get("request"),
            details.get("txid") if isinstance(details.get("txid"), str) else None,
            self._policy.version if self._policy else None,
        )
        ceremony.psbt_hash = record.subjects.get("psbt")
        ceremony.pinned = self._pins.snapshot()
        ceremony.internal = _internal_wallets(self._policy)
        ceremony.keys = self.keys.snapshot()
        ceremony.paid_out = _int_or_none(details.get("paid_out"))
        ceremony.fee = _int_or_none(details.get("fee"))
        codes = [str(r[0]) for r in details.get("refusals", []) if isinstance(r, list) and r]
        # officers who stopped the ceremony, or a quorum that was not reached, say so in text
        codes += [
            f"{name}: {details[name]}"
            for name in ("officers", "approvals")
            if isinstance(details.get(name), str)
        ]
        ceremony.refusals = tuple(codes)
        return ceremony

    def _transcript(self, record: Record, ceremony: Ceremony) -> _Judged | None:
        """The record's transcript judged with it (ahead, by a worker, when it could be),
        or None, with the finding, when there is none to judge."""
        digest = record.subjects.get("transcript")
        if digest is None:
            return None  # a PSBT that could not be decoded has no transcript
        stem = digest.hex()
        judged = self._ahead(stem)
        if judged is not None:
            return judged  # read, parsed and judged by the worker
        found = self.bundle.transcripts.get(stem)
        if found is None:
            self.add(
                "ceremony",
                f"transcript {stem} is missing from the bundle",
                seq=record.seq,
                ceremony=ceremony,
            )
            return None
        if found.digest != digest:
            self.add(
                "ceremony",
                f"transcript {found.name} was altered: its content hashes to {found.digest.hex()}",
                seq=record.seq,
                ceremony=ceremony,
                file=f"transcripts/{found.name}.cbor",
            )
            return None
        try:
            tr.check_shape(found.plain)
        except tr.TranscriptError as exc:
            self.add("ceremony", f"transcript: {exc}", seq=record.seq, ceremony=ceremony)
            return None
        return judge(record, found.plain, stem, self._policy)

    def _judge(self, record: Record, ceremony: Ceremony, judged: _Judged) -> None:
        for problem in judged.consistent:
            self.add("ceremony", problem, seq=record.seq, ceremony=ceremony)
        self._re_evaluate(record, ceremony, judged)
        if record.decision == "approved":
            if not judged.for_signing:
                self.add(
                    "ceremony",
                    "approved, but the transcript was not approved for signing",
                    seq=record.seq,
                    ceremony=ceremony,
                )
            if judged.refusals is not None:
                self.add(
                    "ceremony",
                    "approved despite refusals in the transcript: " + judged.refusals,
                    seq=record.seq,
                    ceremony=ceremony,
                )

    def _re_evaluate(self, record: Record, ceremony: Ceremony, judged: _Judged) -> None:
        facts = value(judged.facts)
        if isinstance(facts, str):
            self.add("ceremony", f"transcript {facts}", seq=record.seq, ceremony=ceremony)
            return
        if facts is None:
            if record.decision == "approved":
                self.add(
                    "ceremony",
                    "approved without a policy decision",
                    seq=record.seq,
                    ceremony=ceremony,
                )
            return
        # facts the appliance took from its own journal are recomputed from the journal
        day_total = self._history.paid_by_day.get(utc_day(facts.request_time), 0)
        if facts.spent_today_before != day_total:
            self.add(
                "ceremony",
                f"the evaluator was told {facts.spent_today_before} sat were "
                f"already approved that day; the journal says {day_total}",
                seq=record.seq,
                ceremony=ceremony,
            )
        for problem in ((judged.late,) if judged.late else ()) + judged.mismatches:
            self.add("ceremony", problem, seq=record.seq, ceremony=ceremony)
        if self._policy is None:
            self.add(
                "ceremony",
                "no known policy was in force: the decision cannot be re-evaluated",
                seq=record.seq,
                ceremony=ceremony,
            )
            return
        verdict = value(judged.verdict)
        assert verdict is not None  # judged under this policy, from these facts
        ceremony.policy_verdict = "approved" if verdict.approved else "refused"
        if not verdict.same:
            self.add(
                "ceremony",
                f"policy version {self._policy.version} does not reach the "
                "same decision: " + "; ".join(verdict.differences),
                seq=record.seq,
                ceremony=ceremony,
            )
        if record.decision == "approved" and not verdict.approved:
            self.add(
                "ceremony",
                "approved, but the policy in force refuses it: " + "; ".join(verdict.violations),
                seq=record.seq,
                ceremony=ceremony,
            )

    def _approvals(self, record: Record, ceremony: Ceremony, judged: _Judged | None) -> None:
        """A quorum of active officers approved exactly this request under this policy."""
        request_hash = record.subjects.get("request")
        approvals = record.details.get("approvals")
        if self._policy is None or request_hash is None or len(request_hash) != 32:
            self.add(
                "ceremony",
                "approvals cannot be checked: no policy in force or no request hash",
                seq=record.seq,
                ceremony=ceremony,
            )
            return
        if not isinstance(approvals, dict):
            self.add(
                "ceremony", "approved without recorded approvals", seq=record.seq, ceremony=ceremony
            )
            return
        if judged is not None:
            tally = value(judged.tally)  # counted under this policy, with the requester shown
        else:
            try:
                tally = count_valid_approvals(self._policy, request_hash, approvals, None)
            except PolicyError as exc:
                tally = str(exc)
        if isinstance(tally, str):
            self.add(
                "ceremony", f"approvals unreadable: {tally}", seq=record.seq, ceremony=ceremony
            )
            return
        assert tally is not None
        if judged is not None and judged.requester is not None:
            self.add(
                "ceremony", f"requester: {judged.requester}", seq=record.seq, ceremony=ceremony
            )
        ceremony.approvals, ceremony.quorum = tally.valid, tally.quorum
        for fp, why in tally.rejected:
            self.add(
                "ceremony",
                f"approval by {fp} does not count: {why}",
                seq=record.seq,
                ceremony=ceremony,
            )
        if not tally.met:
            self.add(
                "ceremony",
                f"{len(tally.valid)} valid approval(s), the quorum of policy "
                f"version {self._policy.version} is {tally.quorum}",
                seq=record.seq,
                ceremony=ceremony,
            )

    def _history_checks(
        self, record: Record, ceremony: Ceremony, inputs: list[str], judged: _Judged | None
    ) -> None:
        """Replays and double spends the appliance must have refused."""
        request_id = record.details.get("request_id")
        earlier = (
            self._history.seen_requests.get(request_id) if isinstance(request_id, bytes) else None
        )
        if earlier is not None:
            self.add(
                "ceremony",
                f"request id was already presented at seq {earlier}: a replay must be refused",
                seq=record.seq,
                ceremony=ceremony,
            )
        replaces = value(judged.replaces) if judged is not None else frozenset()
        for outpoint in inputs:
            spent = self._history.signed_outpoints.get(outpoint)
            if spent and spent[0] != ceremony.txid and spent[0] not in replaces:
                self.add(
                    "ceremony",
                    f"{outpoint} was already signed in {spent[0]} at seq "
                    f"{spent[1]}, and this request does not replace it",
                    seq=record.seq,
                    ceremony=ceremony,
                )

    # -- change re-derived, keys ---------------------------------------------------------

    def _active_keys(self, keys: Mapping[bytes, KeyState]) -> frozenset[bytes]:
        """The station's active keys in a key-book snapshot, less the audit key; one set per
        snapshot (a snapshot is shared by every ceremony until the next key event)."""
        if self._active is None or self._active[0] is not keys:
            active = frozenset(
                key
                for key, state in keys.items()
                if state.state == "active" and key != self.keys.audit_key
            )
            self._active = (keys, active)
        return self._active[1]

    def _rederive(self, record: Record, ceremony: Ceremony, judged: _Judged | None) -> None:
        """Change from the journal-pinned descriptors, never from the transcript."""
        request = self._requests.get(ceremony.request_hash) if ceremony.request_hash else None
        if request is None or self._deriver is None:
            self.unrederived += 1
            return
        derived = self._deriver.rederive_facts(
            request, ceremony.pinned, ceremony.internal, self._active_keys(ceremony.keys)
        )
        ceremony.paid_out_rederived = derived.paid_out
        for i in derived.foreign_inputs:
            self.add(
                "ceremony",
                f"input {i} spends a script that no descriptor pinned in the "
                f"journal at seq {record.seq} derives: the station must refuse it",
                seq=record.seq,
                ceremony=ceremony,
            )
        if judged is None:
            return
        claims = judged.claims
        for out in derived.outputs:
            if out.index < len(claims) and claims[out.index] is True and not out.is_change:
                self.add(
                    "ceremony",
                    f"output {out.index} ({out.amount} sat to "
                    f"{self._address(out.script)}) is called change in the transcript, but "
                    f"{self._not_change_because(out.wallet)}: it is a payment",
                    seq=record.seq,
                    ceremony=ceremony,
                )
        self._limits_rederived(record, ceremony, judged, derived)

    def _not_change_because(self, wallet: str | None) -> str:
        if wallet is None:
            return "no descriptor the journal had pinned derives its script"
        version = self._policy.version if self._policy else "none"
        return (
            f"it pays pinned wallet {wallet}, which is neither the wallet its inputs spend "
            f"from nor an internal wallet of the policy in force (version {version})"
        )

    def _address(self, script: bytes) -> str:
        try:
            network = network_by_name(self._policy.network) if self._policy else None
        except ValueError:
            network = None
        address = script_to_address(script, network) if network is not None else None
        return address or f"script {script.hex()}"

    def _limits_rederived(
        self, record: Record, ceremony: Ceremony, judged: _Judged, derived: Rederived
    ) -> None:
        """The per-transaction and daily limits, judged on the re-derived amounts and the
        journal's own daily total (itself summed from re-derived amounts)."""
        if self._policy is None:
            return  # already a finding: no decision can be re-evaluated
        facts = value(judged.facts)
        if not isinstance(facts, Facts):
            return  # already a finding (unreadable), or none to judge
        day_total = self._history.paid_by_day.get(utc_day(facts.request_time), 0)
        try:
            payments = tuple(Payment(o.script, o.amount, o.is_change) for o in derived.outputs)
            if payments == facts.payments and day_total == facts.spent_today_before:
                return  # the appliance's own evaluation, already re-run, is the same
            rederived = replace(facts, payments=payments, spent_today_before=day_total)
        except PolicyError as exc:
            self.add(
                "ceremony",
                f"re-derived facts cannot be evaluated: {exc}",
                seq=record.seq,
                ceremony=ceremony,
            )
            return
        decision = evaluate(self._policy, rederived)
        if not decision.approved:
            self.add(
                "ceremony",
                f"approved, but with change re-derived from the journal-pinned "
                f"descriptors ({derived.paid_out} sat paid out, {day_total} sat already "
                "approved that day) the policy in force refuses it: "
                + "; ".join(decision.violations),
                seq=record.seq,
                ceremony=ceremony,
            )

    def _transcript_keys(self, record: Record, ceremony: Ceremony, judged: _Judged) -> None:
        """Every key the station shows it signs with must have been active at this seq."""
        for i, key in judged.keys:
            problem = self.keys.signing_problem(key, ceremony.keys, record.seq)
            if problem is not None:
                self.add("ceremony", f"input {i} is {problem}", seq=record.seq, ceremony=ceremony)

    def _remember(self, record: Record, ceremony: Ceremony, inputs: list[str]) -> None:
        history = self._history
        request_id = record.details.get("request_id")
        if isinstance(request_id, bytes) and record.details.get("deferred") is None:
            # as the station folds it (shared.station): a deferred refusal binds no id
            history.seen_requests.setdefault(request_id, record.seq)
        if ceremony.request_hash is not None:
            self.by_request.setdefault(ceremony.request_hash, []).append(ceremony)
        if record.decision != "approved":
            return
        if ceremony.request_hash is not None:
            self.approved.setdefault(ceremony.request_hash, []).append(ceremony)
        for outpoint in inputs:
            if isinstance(outpoint, str) and ceremony.txid:
                history.signed_outpoints[outpoint] = (ceremony.txid, record.seq)  # latest wins
        if ceremony.txid is not None and ceremony.txid in history.approved_txids:
            return  # the station counts each transaction once toward the daily limit
        if ceremony.txid is not None:
            history.approved_txids.add(ceremony.txid)
        paid = ceremony.paid_out_rederived
        paid = ceremony.paid_out if paid is None else paid
        day = utc_day(record.time)
        history.paid_by_day[day] = history.paid_by_day.get(day, 0) + max(paid or 0, 0)


def _internal_wallets(policy: Policy | None) -> tuple[str, ...]:
    """The policy's internal wallets (policy format 2); none for older policies."""
    value = getattr(policy, "internal_wallets", ()) if policy is not None else ()
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, tuple | list) else ()


_HEX64 = re.compile(r"[0-9a-f]{64}")


def _outpoints(record: Record) -> list[str]:
    """The outpoints a decision lists (text ``txid:vout``, older records); anything else is
    ignored."""
    value = record.details.get("outpoints", [])
    return [o for o in value if isinstance(o, str)] if isinstance(value, list) else []


_WORDS: dict[str, str] = {}


def _intern(text: str | None) -> Any:
    """One copy of a word every record repeats (an event, a decision) for the whole
    replay, not one per record kept."""
    if type(text) is not str or len(text) > 64:
        return text
    found = _WORDS.get(text)
    if found is None:
        found = text
        if len(_WORDS) < 1024:
            _WORDS[text] = text
    return found


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _short(value: object) -> str:
    text = value.hex() if isinstance(value, bytes) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_HANDLERS: dict[str, Callable[[ApplianceReplay, Record], None]] = {
    "policy_installed": ApplianceReplay._policy_installed,
    "activation": ApplianceReplay._activation,
    "officer_enrolled": ApplianceReplay._officer_enrolled,
    "officer_revoked": ApplianceReplay._officer_revoked,
    "pin_status": ApplianceReplay._pin_status,
    "backup": ApplianceReplay._backup,
    "backup_stored": ApplianceReplay._backup_register,
    "backup_tested": ApplianceReplay._backup_register,
    "wallet_exported": ApplianceReplay._wallet_exported,
    "wallet_pinned": ApplianceReplay._wallet_pinned,
    "wallet_unpinned": ApplianceReplay._wallet_unpinned,
    "key_generated": ApplianceReplay._key,
    "restore": ApplianceReplay._key,
    "key_suspended": ApplianceReplay._key,
    "key_reactivated": ApplianceReplay._key,
    "key_archived": ApplianceReplay._key,
    "signing_decision": ApplianceReplay._signing,
    "journal_recovered": ApplianceReplay._recovered,
    "signing_reissued": ApplianceReplay._reissued,
}
