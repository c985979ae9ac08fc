"""What a replay produces: findings, ceremonies, per-appliance and per-broadcast results.

Every finding names where the problem is (appliance and journal seq, request id, txid or
file), because an auditor's next step is to pull that record; "something is wrong" is not
a finding. ``to_plain`` gives JSON-ready maps (bytes as hex) for the report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.audit.keys import KeyState
from shared.audit.transcript import Paid

#: The checks, in the order the report lists them.
CHECKS = ("journal", "policy", "ceremony", "receipt", "request", "response", "broadcast", "chain")

#: Severities, most urgent first, and each check's: what a finding of it means for the
#: funds, and the auditor's next step. ``critical``: money may have moved without the
#: controls, or the record of it is not trustworthy; ``high``: a control or a record
#: disagrees and must be explained before sign-off.
SEVERITIES = ("critical", "high")
TRIAGE: dict[str, tuple[str, str]] = {
    "journal": (
        "critical",
        "treat the journal as tampered or damaged: secure the station and its medium, "
        "compare this bundle with a fresh `journal export` and the signing token's anchor, "
        "and escalate to the security officer",
    ),
    "policy": (
        "critical",
        "a decision was taken outside a validly signed policy: pull the named policy file "
        "and its signatures, and ask the administrators who installed it",
    ),
    "ceremony": (
        "high",
        "pull the named journal record and its transcript, and ask the officers named on it "
        "what they were shown and approved",
    ),
    "receipt": (
        "high",
        "compare the coordinator's receipt with the station's journal at that seq; a "
        "receipt the journal does not vouch for was not issued by the station",
    ),
    "request": (
        "high",
        "compare the coordinator's request with the transcript the station signed, and ask "
        "ops who built and changed it",
    ),
    "response": (
        "high",
        "compare the signed response with the station's journal record and its signatures "
        "digest; ask ops where the file came from",
    ),
    "broadcast": (
        "critical",
        "a transaction went out that no approved ceremony covers as broadcast: trace it, "
        "and ask ops who sent it and from which file",
    ),
    "chain": (
        "critical",
        "funds moved on chain without an approved ceremony, or a sent payment is not "
        "recorded: trace the transaction on a block explorer you trust and escalate",
    ),
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem; ``check`` is one of :data:`CHECKS`."""

    check: str
    message: str
    appliance: str | None = None
    seq: int | None = None
    request_id: str | None = None
    txid: str | None = None
    file: str | None = None

    def where(self) -> str:
        parts = []
        if self.appliance is not None:
            parts.append(f"appliance {self.appliance}")
        if self.seq is not None:
            parts.append(f"seq {self.seq}")
        if self.request_id is not None:
            parts.append(f"request {self.request_id}")
        if self.txid is not None:
            parts.append(f"tx {self.txid}")
        if self.file is not None:
            parts.append(self.file)
        return ", ".join(parts) or "evidence"

    @property
    def severity(self) -> str:
        return TRIAGE.get(self.check, ("high", ""))[0]

    @property
    def next_step(self) -> str:
        return TRIAGE.get(self.check, ("high", "ask the team that produced this evidence"))[1]

    def __str__(self) -> str:
        return f"[{self.check}] {self.where()}: {self.message}"

    def to_plain(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity,
            "next_step": self.next_step,
            "where": self.where(),
            "message": self.message,
            "appliance": self.appliance,
            "seq": self.seq,
            "request_id": self.request_id,
            "txid": self.txid,
            "file": self.file,
        }


@dataclass(slots=True)
class Ceremony:
    """One ``signing_decision`` record as replayed; linked later to its request/broadcast."""

    appliance: str
    seq: int
    time: int
    decision: str
    request_id: str | None
    request_hash: bytes | None
    txid: str | None
    policy_version: int | None
    paid_out: int | None = None
    fee: int | None = None
    approvals: tuple[str, ...] = ()
    quorum: int | None = None
    refusals: tuple[str, ...] = ()
    policy_verdict: str | None = None
    coordinator_request: str | None = None
    broadcast: str | None = None
    height: int | None = None
    #: what the coordinator check compares of the transcript (its inputs, outputs and fee:
    #: :class:`shared.audit.transcript.Shown`), once the journal check is done with it
    transcript: Any = field(default=None, repr=False)
    psbt_hash: bytes | None = field(default=None, repr=False)
    #: paid to others with change re-derived from the journal-pinned descriptors (None when
    #: the request's PSBT is not in the evidence, so it could not be re-derived)
    paid_out_rederived: int | None = None
    #: what the journal said at this seq: pinned descriptors, the policy's internal wallets
    #: and this appliance's keys (public key -> state), for checks that need the request
    pinned: tuple[str, ...] = field(default=(), repr=False)
    internal: tuple[str, ...] = field(default=(), repr=False)
    keys: Mapping[bytes, KeyState] = field(default_factory=dict, repr=False)
    findings: list[Finding] = field(default_factory=list)
    #: the batch, purpose and payees its transcript shows (None: no transcript judged)
    paid: Paid | None = None

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_plain(self) -> dict[str, Any]:
        return {
            "appliance": self.appliance,
            "seq": self.seq,
            "time": self.time,
            "decision": self.decision,
            "policy_verdict": self.policy_verdict,
            "request_id": self.request_id,
            "request_hash": self.request_hash.hex() if self.request_hash else None,
            "txid": self.txid,
            "policy_version": self.policy_version,
            "approvals": list(self.approvals),
            "quorum": self.quorum,
            "refusals": list(self.refusals),
            "paid_out": self.paid_out,
            "paid_out_rederived": self.paid_out_rederived,
            "fee": self.fee,
            "in_coordinator_evidence": self.coordinator_request is not None,
            "broadcast": self.broadcast,
            "height": self.height,
            "batch": self.paid.batch if self.paid else None,
            "purpose": self.paid.purpose if self.paid else None,
            "payees": [list(p) for p in self.paid.payees] if self.paid else [],
            "payee_count": self.paid.payee_count if self.paid else 0,
            "ok": self.ok,
            "findings": [f.to_plain() for f in self.findings],
        }


@dataclass
class ApplianceStatus:
    """The journal of one appliance: how long, where it ends, whether it holds."""

    appliance_id: str
    source: str
    audit_key: str
    records: int
    head: str
    anchored: str
    policy_versions: list[int] = field(default_factory=list)
    #: officer and administrator fingerprints -> the label of the token they enrolled
    officers: dict[str, str] = field(default_factory=dict)
    approved: int = 0
    refused: int = 0
    journal_findings: int = 0
    findings: int = 0

    @property
    def journal_ok(self) -> bool:
        return self.journal_findings == 0

    def to_plain(self) -> dict[str, Any]:
        return {
            "appliance_id": self.appliance_id,
            "source": self.source,
            "audit_key": self.audit_key,
            "anchored": self.anchored,
            "records": self.records,
            "head": self.head,
            "journal_ok": self.journal_ok,
            "policy_versions": self.policy_versions,
            "officers": dict(sorted(self.officers.items())),
            "approved": self.approved,
            "refused": self.refused,
            "findings": self.findings,
        }


@dataclass(slots=True)
class BroadcastResult:
    """A transaction the coordinator broadcast, and the ceremonies that approved it."""

    txid: str
    state: str
    height: int | None
    request_id: str | None
    approved_by: list[str] = field(default_factory=list)
    signers: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def approved(self) -> bool:
        return self.request_id is not None and not self.findings

    def to_plain(self) -> dict[str, Any]:
        return {
            "txid": self.txid,
            "state": self.state,
            "height": self.height,
            "request_id": self.request_id,
            "approved_by": self.approved_by,
            "signers": self.signers,
            "ok": self.approved,
        }


@dataclass(frozen=True)
class OutflowResult:
    """A transaction seen on chain spending a wallet output, and what it maps to.

    ``approved_by`` names the journal approvals of its transaction when the coordinator has
    no broadcast record of it (a lost record, not an unapproved payment).
    """

    txid: str
    height: int
    block_hash: str
    broadcast: str | None
    malleated: bool
    approved_by: tuple[str, ...] = ()

    def to_plain(self) -> dict[str, Any]:
        return {
            "txid": self.txid,
            "height": self.height,
            "block_hash": self.block_hash,
            "broadcast": self.broadcast,
            "malleated": self.malleated,
            "approved_by": list(self.approved_by),
        }


@dataclass
class ChainSummary:
    """Which blocks were walked; ``None`` in the report when no chain was given.

    ``start_source`` says who chose ``start`` (the auditor, or the default of block 0; never
    the evidence). ``first_wallet_height`` is the first walked block paying or spending a
    wallet script: the wallets' birth as the chain shows it.
    """

    start: int
    tip: int
    tip_hash: str
    wallet_outputs: int
    outflows: list[OutflowResult] = field(default_factory=list)
    start_source: str = ""
    first_wallet_height: int | None = None

    def to_plain(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "start_source": self.start_source,
            "tip": self.tip,
            "tip_hash": self.tip_hash,
            "wallet_outputs": self.wallet_outputs,
            "first_wallet_height": self.first_wallet_height,
            "outflows": [o.to_plain() for o in self.outflows],
        }


@dataclass
class Report:
    """Everything a replay found; ``ok`` only when there is no finding at all."""

    appliances: list[ApplianceStatus]
    ceremonies: list[Ceremony]
    broadcasts: list[BroadcastResult]
    findings: list[Finding]
    requests: int
    chain: ChainSummary | None = None
    notes: list[str] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def counts(self) -> dict[str, int]:
        return {
            "appliances": len(self.appliances),
            "records": sum(a.records for a in self.appliances),
            "ceremonies": len(self.ceremonies),
            "approved": sum(1 for c in self.ceremonies if c.decision == "approved"),
            "refused": sum(1 for c in self.ceremonies if c.decision == "refused"),
            "requests": self.requests,
            "broadcasts": len(self.broadcasts),
            "outflows": len(self.chain.outflows) if self.chain else 0,
            "findings": len(self.findings),
            "critical_findings": sum(1 for f in self.findings if f.severity == "critical"),
        }
