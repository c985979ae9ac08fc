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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from shared import canonical
from shared.audit import transcript as tr
from shared.audit.change import ChangeDeriver, PinnedWallets, Rederived
from shared.audit.evidence import ApplianceBundle, PolicyFile, RequestEvidence, Transcript
from shared.audit.keys import KeyBook
from shared.audit.model import ApplianceStatus, Ceremony, Finding
from shared.audit.receipts import deferred_problem, is_receipt, journal_receipt_problem
from shared.bitcoin.address import network_by_name, script_to_address
from shared.journal import (
    GENESIS,
    WALLET_RECEIPT_EVENTS,
    Entry,
    JournalError,
    Record,
    verify_journal,
)
from shared.policy import (
    Payment,
    Policy,
    PolicyError,
    count_admin_signatures,
    count_valid_approvals,
    evaluate,
    recovery_statement,
    utc_day,
    verify_signed_policy,
    wallet_pin_statement,
)


@dataclass
class _History:
    """What the appliance had already decided, as its own journal tells it."""

    seen_requests: dict[bytes, int] = field(default_factory=dict)
    signed_outpoints: dict[str, tuple[str, int]] = field(default_factory=dict)
    paid_by_day: dict[int, int] = field(default_factory=dict)
    approved_txids: set[str] = field(default_factory=set)


class ApplianceReplay:
    """Replay one bundle; read ``status``, ``ceremonies`` and ``findings`` afterwards.

    ``requests`` (request hash -> request whose hash recomputes from its PSBT) and
    ``change`` let approvals have their change re-derived; without them (a replay of the
    bundle alone) the recorded amounts are used, and ``unrederived`` counts those.
    """

    def __init__(self, bundle: ApplianceBundle, pinned_key: bytes | None,
                 requests: Mapping[bytes, RequestEvidence] | None = None,
                 change: ChangeDeriver | None = None) -> None:  # fmt: skip
        self.bundle = bundle
        self.id = bundle.appliance_id
        self.pinned_key = pinned_key
        self.findings: list[Finding] = []
        self.ceremonies: list[Ceremony] = []
        self._by_seq: dict[int, Entry] = {}
        self._hashes: dict[int, bytes] = {}
        self.approved: dict[bytes, list[Ceremony]] = {}
        self.by_request: dict[bytes, list[Ceremony]] = {}
        self._policies = {p.hash: p for p in bundle.policies}
        self._named: set[bytes] = set()
        self._policy: Policy | None = None
        self._policy_lost = False
        self._enrolled: dict[str, str] = {}
        self._revoked: set[str] = set()
        self._pins = PinnedWallets()
        self.keys = KeyBook(bundle.audit_key)
        self._requests: Mapping[bytes, RequestEvidence] = requests or {}
        self._deriver = change
        self.unrederived = 0
        self._history = _History()
        self.status = ApplianceStatus(self.id, bundle.source, bundle.audit_key.hex(), 0, "", "")

    # -- findings ---------------------------------------------------------------------------

    def add(self, check: str, message: str, *, seq: int | None = None,
            ceremony: Ceremony | None = None, **where: Any) -> Finding:  # fmt: skip
        finding = Finding(check, message, appliance=self.id, seq=seq, **where)
        self.findings.append(finding)
        if ceremony is not None:
            ceremony.findings.append(finding)
        return finding

    # -- driver -----------------------------------------------------------------------------

    def run(self) -> ApplianceReplay:
        self._journal()
        self._anchor()
        for entry in self.bundle.entries:
            self._by_seq.setdefault(entry.record.seq, entry)
            self._record(entry.record)
        self._unnamed_policies()
        self._finish_status()
        return self

    def hash_at(self, seq: int) -> bytes | None:
        """The hash of the journal's record ``seq`` (computed once, when first asked)."""
        entry = self._by_seq.get(seq)
        if entry is None:
            return None
        if seq not in self._hashes:
            self._hashes[seq] = entry.record.hash()
        return self._hashes[seq]

    def same_entry(self, entry: Entry) -> bool:
        """True when ``entry`` is the journal's own entry at its seq (record and signature):
        then its signature was already checked with the journal, under the bundle's key."""
        mine = self._by_seq.get(entry.record.seq)
        if mine is None:
            return False
        return mine.signature == entry.signature and mine.record == entry.record

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
        if record.event in WALLET_RECEIPT_EVENTS:
            for fp in record.actors:
                if fp not in self._enrolled:
                    self.add("receipt", f"{record.event}: actor {fp} is not an enrolled officer",
                             seq=record.seq)  # fmt: skip
                elif fp in self._revoked:
                    self.add("receipt", f"{record.event}: actor {fp} was revoked",
                             seq=record.seq)  # fmt: skip

    def _finish_status(self) -> None:
        status = self.status
        status.approved = sum(1 for c in self.ceremonies if c.decision == "approved")
        status.refused = len(self.ceremonies) - status.approved
        status.findings = len(self.findings)

    # -- check 1: the journal ---------------------------------------------------------------

    def _journal(self) -> None:
        entries = self.bundle.entries
        expected = self._expected_length()
        try:
            report = verify_journal(entries, self.bundle.audit_key, appliance_id=self.id,
                                    expected_length=expected)  # fmt: skip
        except JournalError as exc:
            self.add("journal", f"cannot be verified: {exc}")
            return
        for problem in report.findings:
            self.add("journal", problem.problem, seq=problem.seq)
        self.status.records = report.length
        self.status.head = report.head.hex()
        self.status.journal_findings += len(report.findings)

    def _expected_length(self) -> int | None:
        """An export ends with its own ``journal_export`` record naming the length; a journal
        that does not has lost its tail (or is not an export)."""
        entries = self.bundle.entries
        last = entries[-1].record if entries else None
        if last is None or last.event != "journal_export":
            seq = last.seq if last else None
            self.add("journal", "the journal does not end with its own journal_export "
                     "record: truncated, or not an export", seq=seq)  # fmt: skip
            self.status.journal_findings += 1
            return None
        length = last.details.get("length")
        if isinstance(length, int) and not isinstance(length, bool) and length >= 0:
            return length
        self.add("journal", "journal_export record has no valid length", seq=last.seq)
        return None

    def _anchor(self) -> None:
        """The audit key must be the one the coordinator pinned, and the journal's own."""
        key = self.bundle.audit_key
        if self.pinned_key is None:
            self.status.anchored = "not pinned by the coordinator"
            self.add("journal", "the coordinator never pinned this appliance: its audit key "
                     "is anchored nowhere outside the bundle")  # fmt: skip
        elif self.pinned_key != key:
            self.status.anchored = "differs from the coordinator's pin"
            self.add("journal", f"audit key {key.hex()} is not the key the coordinator pinned "
                     f"({self.pinned_key.hex()})")  # fmt: skip
        else:
            self.status.anchored = "pinned by the coordinator"
        generated = [e.record.seq for e in self.bundle.entries
                     if e.record.event == "key_generated"
                     and e.record.subjects.get("public_key") == key]  # fmt: skip
        if len(generated) != 1:
            self.add("journal", f"the audit key has {len(generated)} key_generated records "
                     "(expected exactly one)")  # fmt: skip

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
            self.add("policy", f"record says version {version}, {found.name} is version "
                     f"{policy.version}", seq=record.seq, file=found.name)  # fmt: skip
        if found.name != f"{policy.version:04d}.cbor":
            self.add("policy", f"policy version {policy.version} is filed as {found.name}",
                     seq=record.seq, file=found.name)  # fmt: skip
        self._verify_policy(record, found)
        self._policy, self._policy_lost = policy, False
        self.status.policy_versions.append(policy.version)

    def _policy_missing(self, record: Record, digest: bytes | None, version: object) -> None:
        shown = digest.hex()[:16] if digest else "none"
        same = [p for p in self.bundle.policies if p.signed.policy.version == version]
        if same:
            self.add("policy", f"{same[0].name} is not the policy this record installed (hash "
                     f"{same[0].hash.hex()[:16]}…, journal says {shown}…): changed after the "
                     "fact", seq=record.seq, file=same[0].name)  # fmt: skip
            self._named.add(same[0].hash)
        else:
            self.add("policy", f"the policy it installed (version {version}, hash {shown}…) "
                     "is not in the bundle", seq=record.seq)  # fmt: skip
        self._policy, self._policy_lost = None, True

    def _verify_policy(self, record: Record, found: PolicyFile) -> None:
        """Admin quorum and chain: the first against the enrolled administrators, each later
        one against its predecessor (whose administrators must sign it)."""
        previous = self._policy
        if previous is None and self._policy_lost:
            self.add("policy", "cannot verify the admin quorum: the previous policy is missing",
                     seq=record.seq, file=found.name)  # fmt: skip
            return
        try:
            verify_signed_policy(found.signed, previous)
        except PolicyError as exc:
            self.add("policy", str(exc), seq=record.seq, file=found.name)
        if found.signed.policy.appliance_id != self.id:
            self.add("policy", f"policy is for appliance {found.signed.policy.appliance_id!r}",
                     seq=record.seq, file=found.name)  # fmt: skip
        if previous is None:
            self._check_genesis(record, found)

    def _check_genesis(self, record: Record, found: PolicyFile) -> None:
        """The first policy lists exactly the officers and administrators enrolled."""
        policy = found.signed.policy
        for role, listed in (("approver", policy.officers), ("administrator",
                                                             policy.administrators)):
            enrolled = {fp for fp, r in self._enrolled.items() if r == role}
            if {o.fingerprint for o in listed} != enrolled:
                self.add("policy", f"the first policy's {role}s are not those enrolled",
                         seq=record.seq, file=found.name)  # fmt: skip

    def _unnamed_policies(self) -> None:
        for found in self.bundle.policies:
            if found.hash not in self._named:
                self.add("policy", f"policy version {found.signed.policy.version} is not named "
                         "by any policy_installed record", file=found.name)  # fmt: skip

    def _activation(self, record: Record) -> None:
        named = record.subjects.get("policy")
        if self._policy is not None and named != self._policy.hash():
            self.add("policy", "activation names a policy other than the one in force",
                     seq=record.seq)  # fmt: skip

    def _officer_enrolled(self, record: Record) -> None:
        role = record.details.get("role")
        for fp in record.actors:
            self._enrolled[fp] = str(role)

    def _officer_revoked(self, record: Record) -> None:
        self._revoked.update(record.actors)
        for fp in record.actors:
            officer = self._policy.officer(fp) if self._policy else None
            if officer is not None and officer.active:
                self.add("policy", f"officer {fp} is recorded revoked but is active in the "
                         "policy in force", seq=record.seq)  # fmt: skip

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
        self._admin_statement(record, wallet_pin_statement(
            self.id, "unpin", str(record.details.get("descriptor"))), "wallet_unpinned")
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
                self.add("journal", "wallet_pinned says the policy names the wallet internal, "
                         "but the policy in force does not", seq=record.seq)  # fmt: skip
        elif how == "administrators":
            self._admin_statement(record, wallet_pin_statement(self.id, action, descriptor),
                                  "wallet_pinned")  # fmt: skip
        else:
            self.add("journal", f"wallet_pinned names no known authority ({how!r})",
                     seq=record.seq)  # fmt: skip

    def _admin_statement(self, record: Record, statement: dict[str, Any], what: str) -> None:
        """The administrators' signatures a record carries, counted under the policy then
        in force over exactly ``statement``."""
        signatures = record.details.get("admin_signatures")
        if self._policy is None or not isinstance(signatures, Mapping):
            self.add("journal", f"{what} carries no administrators' signatures a known "
                     "policy can count", seq=record.seq)  # fmt: skip
            return
        try:
            tally = count_admin_signatures(self._policy, canonical.digest(statement),
                                           dict(signatures))  # fmt: skip
        except PolicyError as exc:
            self.add("journal", f"{what}: administrators' signatures unreadable: {exc}",
                     seq=record.seq)  # fmt: skip
            return
        if not tally.met:
            self.add("journal", f"{what} has {len(tally.valid)} valid administrator "
                     f"signature(s), the policy in force needs {tally.quorum}",
                     seq=record.seq)  # fmt: skip

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
        self.add("journal", f"the journal was recovered ({what}): compare with the paper log "
                 "and the coordinator's receipts for what the lost records did",
                 seq=record.seq)  # fmt: skip
        problems = details.get("problems")
        self._admin_statement(record, recovery_statement(
            self.id, kept if isinstance(kept, int) else -1, head or GENESIS,
            details.get("cut_from") if isinstance(details.get("cut_from"), int) else -1,
            lost if isinstance(lost, int) else None,
            list(problems) if isinstance(problems, list) else []), "journal_recovered")

    def _reissued(self, record: Record) -> None:
        """A lost output signed again must name an approval of the same transaction."""
        seq = record.details.get("approval")
        entry = self._by_seq.get(seq) if isinstance(seq, int) else None
        approval = entry.record if entry is not None else None
        if (approval is None or approval.event != "signing_decision"
                or approval.decision != "approved"
                or approval.details.get("txid") != record.details.get("txid")
                or approval.subjects.get("request") != record.subjects.get("request")):
            self.add("ceremony", f"signing_reissued names no approval of the same transaction "
                     f"(seq {seq})", seq=record.seq)  # fmt: skip

    def _key(self, record: Record) -> None:
        problem = self.keys.apply(record)
        if problem is not None:
            self.add("journal", problem, seq=record.seq)

    # -- check 3: signing decisions ---------------------------------------------------------

    def _signing(self, record: Record) -> None:
        ceremony = self._ceremony(record)
        self.ceremonies.append(ceremony)
        found = self._transcript(record, ceremony)
        if found is not None:
            ceremony.transcript = found.plain
            self._judge(record, ceremony, found.plain)
        elif record.decision == "approved":
            self.add("ceremony", "approved without a readable transcript", seq=record.seq,
                     ceremony=ceremony)  # fmt: skip
        if record.decision == "approved":
            if ceremony.paid_out is not None and ceremony.paid_out < 0:
                self.add("ceremony", f"approved with a negative paid_out ({ceremony.paid_out} "
                         "sat): it would lower the daily total", seq=record.seq,
                         ceremony=ceremony)  # fmt: skip
            self._approvals(record, ceremony)
            self._history_checks(record, ceremony)
            self._rederive(record, ceremony, found.plain if found is not None else None)
            if found is not None:
                self._transcript_keys(record, ceremony, found.plain)
        self._remember(record, ceremony)

    def _ceremony(self, record: Record) -> Ceremony:
        details = record.details
        request_id = details.get("request_id")
        ceremony = Ceremony(
            self.id, record.seq, record.time, str(record.decision),
            request_id.hex() if isinstance(request_id, bytes) else None,
            record.subjects.get("request"),
            details.get("txid") if isinstance(details.get("txid"), str) else None,
            self._policy.version if self._policy else None,
        )  # fmt: skip
        ceremony.psbt_hash = record.subjects.get("psbt")
        ceremony.pinned = self._pins.snapshot()
        ceremony.internal = _internal_wallets(self._policy)
        ceremony.keys = self.keys.snapshot()
        ceremony.paid_out = _int_or_none(details.get("paid_out"))
        ceremony.fee = _int_or_none(details.get("fee"))
        codes = [str(r[0]) for r in details.get("refusals", []) if isinstance(r, list) and r]
        # officers who stopped the ceremony, or a quorum that was not reached, say so in text
        codes += [f"{name}: {details[name]}" for name in ("officers", "approvals")
                  if isinstance(details.get(name), str)]  # fmt: skip
        ceremony.refusals = tuple(codes)
        return ceremony

    def _transcript(self, record: Record, ceremony: Ceremony) -> Transcript | None:
        digest = record.subjects.get("transcript")
        if digest is None:
            return None  # a PSBT that could not be decoded has no transcript
        found = self.bundle.transcripts.get(digest.hex())
        if found is None:
            self.add("ceremony", f"transcript {digest.hex()} is missing from the bundle",
                     seq=record.seq, ceremony=ceremony)  # fmt: skip
            return None
        if found.digest != digest:
            self.add("ceremony", f"transcript {found.name} was altered: its content hashes "
                     f"to {found.digest.hex()}", seq=record.seq, ceremony=ceremony,
                     file=f"transcripts/{found.name}.cbor")  # fmt: skip
            return None
        try:
            tr.check_shape(found.plain)
        except tr.TranscriptError as exc:
            self.add("ceremony", f"transcript: {exc}", seq=record.seq, ceremony=ceremony)
            return None
        return found

    def _judge(self, record: Record, ceremony: Ceremony, plain: dict[str, Any]) -> None:
        self._consistent(record, ceremony, plain)
        self._re_evaluate(record, ceremony, plain)
        if record.decision == "approved":
            if plain.get("approved_for_signing") is not True:
                self.add("ceremony", "approved, but the transcript was not approved for signing",
                         seq=record.seq, ceremony=ceremony)  # fmt: skip
            if tr.refusals(plain):
                self.add("ceremony", "approved despite refusals in the transcript: "
                         + "; ".join(str(r) for r in tr.refusals(plain)), seq=record.seq,
                         ceremony=ceremony)  # fmt: skip

    def _consistent(self, record: Record, ceremony: Ceremony, plain: dict[str, Any]) -> None:
        """The record's summary must say what the transcript says."""
        details = record.details
        pairs = (
            ("request hash", record.subjects.get("request"), plain.get("request_hash")),
            ("txid", details.get("txid"), tr.txid_hex(plain)),
            ("refusals", details.get("refusals", []), tr.refusals(plain)),
            ("request id", details.get("request_id"), tr.request(plain).get("request_id")),
            ("paid out", details.get("paid_out"), plain.get("paid_to_others")),
            ("fee", details.get("fee"), plain.get("fee")),
        )
        if details.get("deferred") is True and record.decision == "refused":
            pairs = pairs[:4]  # a deferred refusal carries no amounts, by contract
        for name, in_record, in_transcript in pairs:
            if in_record != in_transcript:
                self.add("ceremony", f"the record's {name} ({_short(in_record)}) is not the "
                         f"transcript's ({_short(in_transcript)})", seq=record.seq,
                         ceremony=ceremony)  # fmt: skip

    def _re_evaluate(self, record: Record, ceremony: Ceremony, plain: dict[str, Any]) -> None:
        try:
            facts = tr.facts(plain)
        except tr.TranscriptError as exc:
            self.add("ceremony", f"transcript {exc}", seq=record.seq, ceremony=ceremony)
            return
        if facts is None:
            if record.decision == "approved":
                self.add("ceremony", "approved without a policy decision", seq=record.seq,
                         ceremony=ceremony)  # fmt: skip
            return
        self._check_facts(record, ceremony, plain, facts.spent_today_before, facts.request_time)
        if self._policy is None:
            self.add("ceremony", "no known policy was in force: the decision cannot be "
                     "re-evaluated", seq=record.seq, ceremony=ceremony)  # fmt: skip
            return
        decision = evaluate(self._policy, facts)
        ceremony.policy_verdict = "approved" if decision.approved else "refused"
        if not tr.same_decision(plain, decision):
            self.add("ceremony", f"policy version {self._policy.version} does not reach the "
                     "same decision: " + "; ".join(tr.differences(plain, decision)),
                     seq=record.seq, ceremony=ceremony)  # fmt: skip
        if record.decision == "approved" and not decision.approved:
            self.add("ceremony", "approved, but the policy in force refuses it: "
                     + "; ".join(decision.violations), seq=record.seq,
                     ceremony=ceremony)  # fmt: skip

    def _check_facts(self, record: Record, ceremony: Ceremony, plain: dict[str, Any],
                     spent_before: int, decided: int) -> None:  # fmt: skip
        """Facts the appliance took from its own journal are recomputed from the journal."""
        day_total = self._history.paid_by_day.get(utc_day(decided), 0)
        if spent_before != day_total:
            self.add("ceremony", f"the evaluator was told {spent_before} sat were already "
                     f"approved that day; the journal says {day_total}", seq=record.seq,
                     ceremony=ceremony)  # fmt: skip
        if decided > record.time:
            self.add("ceremony", f"decided at {decided}, after its record's time {record.time}",
                     seq=record.seq, ceremony=ceremony)  # fmt: skip
        facts = plain.get("facts", {})
        request = tr.request(plain)
        for name, fact, shown in (("fee", facts.get("fee"), plain.get("fee")),
                                  ("vsize", facts.get("vsize"), plain.get("vsize")),
                                  ("network", facts.get("network"), request.get("network")),
                                  ("expiry", facts.get("request_expiry"), request.get("expiry")),
                                  ("created", facts.get("request_created"),
                                   request.get("created"))):  # fmt: skip
            if fact != shown:
                self.add("ceremony", f"the evaluator's {name} ({fact}) is not the one shown "
                         f"({shown})", seq=record.seq, ceremony=ceremony)  # fmt: skip

    def _approvals(self, record: Record, ceremony: Ceremony) -> None:
        """A quorum of active officers approved exactly this request under this policy."""
        request_hash = record.subjects.get("request")
        approvals = record.details.get("approvals")
        if self._policy is None or request_hash is None or len(request_hash) != 32:
            self.add("ceremony", "approvals cannot be checked: no policy in force or no "
                     "request hash", seq=record.seq, ceremony=ceremony)  # fmt: skip
            return
        if not isinstance(approvals, dict):
            self.add("ceremony", "approved without recorded approvals", seq=record.seq,
                     ceremony=ceremony)  # fmt: skip
            return
        requester = tr.request(ceremony.transcript or {}).get("requester")
        try:
            tally = count_valid_approvals(self._policy, request_hash, approvals,
                                          requester if isinstance(requester, str) else None)
        except PolicyError as exc:
            self.add("ceremony", f"approvals unreadable: {exc}", seq=record.seq,
                     ceremony=ceremony)  # fmt: skip
            return
        ceremony.approvals, ceremony.quorum = tally.valid, tally.quorum
        for fp, why in tally.rejected:
            self.add("ceremony", f"approval by {fp} does not count: {why}", seq=record.seq,
                     ceremony=ceremony)  # fmt: skip
        if not tally.met:
            self.add("ceremony", f"{len(tally.valid)} valid approval(s), the quorum of policy "
                     f"version {self._policy.version} is {tally.quorum}", seq=record.seq,
                     ceremony=ceremony)  # fmt: skip

    def _history_checks(self, record: Record, ceremony: Ceremony) -> None:
        """Replays and double spends the appliance must have refused."""
        request_id = record.details.get("request_id")
        earlier = self._history.seen_requests.get(request_id) \
            if isinstance(request_id, bytes) else None  # fmt: skip
        if earlier is not None:
            self.add("ceremony", f"request id was already presented at seq {earlier}: a "
                     "replay must be refused", seq=record.seq, ceremony=ceremony)  # fmt: skip
        replaces = {t[::-1].hex() for t in tr.request(ceremony.transcript or {}).get("replaces",
                                                                                     [])}
        for outpoint in _outpoints(record):
            spent = self._history.signed_outpoints.get(outpoint)
            if spent and spent[0] != ceremony.txid and spent[0] not in replaces:
                self.add("ceremony", f"{outpoint} was already signed in {spent[0]} at seq "
                         f"{spent[1]}, and this request does not replace it", seq=record.seq,
                         ceremony=ceremony)  # fmt: skip

    # -- change re-derived, keys ---------------------------------------------------------

    def _rederive(self, record: Record, ceremony: Ceremony, plain: dict[str, Any] | None) -> None:
        """Change from the journal-pinned descriptors, never from the transcript."""
        request = self._requests.get(ceremony.request_hash) if ceremony.request_hash else None
        if request is None or self._deriver is None:
            self.unrederived += 1
            return
        derived = self._deriver.rederive(request.psbt, ceremony.pinned, ceremony.internal)
        ceremony.paid_out_rederived = derived.paid_out
        for i in derived.foreign_inputs:
            self.add("ceremony", f"input {i} spends a script that no descriptor pinned in the "
                     f"journal at seq {record.seq} derives: the station must refuse it",
                     seq=record.seq, ceremony=ceremony)  # fmt: skip
        if plain is None:
            return
        shown = plain.get("outputs")
        claims = [o.get("is_change") if isinstance(o, dict) else None
                  for o in (shown if isinstance(shown, list) else [])]  # fmt: skip
        for out in derived.outputs:
            if out.index < len(claims) and claims[out.index] is True and not out.is_change:
                self.add("ceremony", f"output {out.index} ({out.amount} sat to "
                         f"{self._address(out.script)}) is called change in the transcript, but "
                         f"{self._not_change_because(out.wallet)}: it is a payment",
                         seq=record.seq, ceremony=ceremony)  # fmt: skip
        self._limits_rederived(record, ceremony, plain, derived)

    def _not_change_because(self, wallet: str | None) -> str:
        if wallet is None:
            return "no descriptor the journal had pinned derives its script"
        version = self._policy.version if self._policy else "none"
        return (f"it pays pinned wallet {wallet}, which is neither the wallet its inputs spend "
                f"from nor an internal wallet of the policy in force (version {version})")

    def _address(self, script: bytes) -> str:
        try:
            network = network_by_name(self._policy.network) if self._policy else None
        except ValueError:
            network = None
        address = script_to_address(script, network) if network is not None else None
        return address or f"script {script.hex()}"

    def _limits_rederived(self, record: Record, ceremony: Ceremony, plain: dict[str, Any],
                          derived: Rederived) -> None:  # fmt: skip
        """The per-transaction and daily limits, judged on the re-derived amounts and the
        journal's own daily total (itself summed from re-derived amounts)."""
        if self._policy is None:
            return  # already a finding: no decision can be re-evaluated
        try:
            facts = tr.facts(plain)
        except tr.TranscriptError:
            return  # already a finding
        if facts is None:
            return
        day_total = self._history.paid_by_day.get(utc_day(facts.request_time), 0)
        try:
            payments = tuple(Payment(o.script, o.amount, o.is_change) for o in derived.outputs)
            if payments == facts.payments and day_total == facts.spent_today_before:
                return  # the appliance's own evaluation, already re-run, is the same
            rederived = replace(facts, payments=payments, spent_today_before=day_total)
        except PolicyError as exc:
            self.add("ceremony", f"re-derived facts cannot be evaluated: {exc}", seq=record.seq,
                     ceremony=ceremony)  # fmt: skip
            return
        decision = evaluate(self._policy, rederived)
        if not decision.approved:
            self.add("ceremony", f"approved, but with change re-derived from the journal-pinned "
                     f"descriptors ({derived.paid_out} sat paid out, {day_total} sat already "
                     "approved that day) the policy in force refuses it: "
                     + "; ".join(decision.violations), seq=record.seq,
                     ceremony=ceremony)  # fmt: skip

    def _transcript_keys(self, record: Record, ceremony: Ceremony, plain: dict[str, Any]) -> None:
        """Every key the station shows it signs with must have been active at this seq."""
        inputs = plain.get("inputs")
        for i, shown in enumerate(inputs if isinstance(inputs, list) else []):
            key = shown.get("key") if isinstance(shown, dict) else None
            if not isinstance(key, bytes):
                continue
            problem = self.keys.signing_problem(key, ceremony.keys, record.seq)
            if problem is not None:
                self.add("ceremony", f"input {i} is {problem}", seq=record.seq,
                         ceremony=ceremony)  # fmt: skip

    def _remember(self, record: Record, ceremony: Ceremony) -> None:
        history = self._history
        request_id = record.details.get("request_id")
        if isinstance(request_id, bytes):
            history.seen_requests.setdefault(request_id, record.seq)
        if ceremony.request_hash is not None:
            self.by_request.setdefault(ceremony.request_hash, []).append(ceremony)
        if record.decision != "approved":
            return
        if ceremony.request_hash is not None:
            self.approved.setdefault(ceremony.request_hash, []).append(ceremony)
        for outpoint in _outpoints(record):
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
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, tuple | list) \
        else ()  # fmt: skip


def _outpoints(record: Record) -> list[str]:
    """The outpoints a decision records (text ``txid:vout``); anything else is ignored."""
    value = record.details.get("outpoints", [])
    return [o for o in value if isinstance(o, str)] if isinstance(value, list) else []


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
