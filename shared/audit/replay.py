"""Audit replay: re-verify every signing ceremony from signatures and hashes alone.

Pure: it takes parsed evidence (:mod:`shared.audit.evidence`), and optionally a chain scan
(:mod:`shared.audit.chain`), and returns a :class:`~shared.audit.model.Report`. It reads no
file and no network, so the same evidence always gives the same report.

The checks, each naming the record, request or transaction it concerns:

1. journal: hash chain, every record's audit-key signature, the export's own length, the
   audit key pinned by the coordinator and journaled by its own ``key_generated`` record;
2. policies: each installed policy is in the bundle and unchanged, each verifies under the
   previous one's administrator quorum, and no policy file is left unexplained;
3. ceremonies: each decision's transcript is the one journaled, the policy then in force
   reaches the same decision from it, approvals are a valid quorum over the request hash,
   change is re-derived from the journal-pinned descriptors (and the limits with it), and
   every key that signs was active at that seq;
4. coordinator: receipts are journal records that meet the receipt contract, request
   hashes recompute, signatures verify and are the wallet's, each broadcast is exactly one
   approved request, and no wallet claims a birth height above its own broadcasts;
5. chain (when given): each transaction spending a wallet output is such a broadcast, and
   no wallet claims a birth height above the first block that pays or spends it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from shared.audit.birth import birth_height_findings, chain_heights, evidence_heights
from shared.audit.chain import DEFAULT_START, ChainScanner, map_outflows
from shared.audit.change import ChangeDeriver
from shared.audit.coordinator_replay import CoordinatorReplay
from shared.audit.evidence import ApplianceBundle, CoordinatorEvidence, EvidenceError
from shared.audit.journal_replay import ApplianceReplay
from shared.audit.model import CHECKS, Finding, Report
from shared.audit.wallets import MAX_INDEX, WalletIndex, build_index
from shared.audit.workers import Workers


def replay(
    bundles: Sequence[ApplianceBundle],
    coordinator: CoordinatorEvidence,
    chain: ChainScanner | None = None,
    index: WalletIndex | None = None,
    *,
    workers: Workers | None = None,
) -> Report:
    """Replay every bundle against the coordinator's evidence (and the chain, if scanned).

    ``index`` may be passed when the caller already built it to scan the chain;
    ``workers`` are processes that may read a long journal (the replay itself is one pass
    in this process; see :mod:`shared.audit.workers`).
    Raises EvidenceError only for evidence that cannot be replayed at all (two bundles of
    one appliance, an entry or receipt that does not parse); everything else becomes a
    finding.
    """
    _one_bundle_each(bundles)
    index = index or build_index(coordinator)
    change = ChangeDeriver(index.top)
    replays = {
        b.appliance_id: ApplianceReplay(
            b,
            coordinator.appliances.get(b.appliance_id),
            coordinator.verified,
            change,
            workers=workers,
        ).run()
        for b in bundles
    }
    coordinator.resolve_receipts()  # a receipt that is no entry: unusable, now as before
    checked = CoordinatorReplay(coordinator, replays, index, shapes=chain is not None).run()
    findings = [f for r in replays.values() for f in r.findings] + checked.findings
    findings += birth_height_findings(
        coordinator.wallets,
        evidence_heights(checked.input_wallets, checked.broadcasts),
        "broadcast",
    )
    report = Report(
        [r.status for r in replays.values()],
        [c for r in replays.values() for c in r.ceremonies],
        checked.broadcasts,
        findings,
        len(coordinator.requests),
        notes=list(checked.notes),
        alerts=list(coordinator.alerts),  # the coordinator's own alarms, for comparison
    )
    if chain is not None:
        report.chain, chain_findings = map_outflows(
            chain,
            coordinator.broadcasts,
            checked.broadcasts,
            checked.by_shape or {},
            _approved_txids(replays.values()),
        )
        findings += chain_findings
        findings += birth_height_findings(coordinator.wallets, chain_heights(chain, index), "chain")
        report.notes += _walk_notes(chain)
    unrederived = sum(r.unrederived for r in replays.values())
    if unrederived:
        report.notes.append(
            f"{unrederived} approval(s) could not have their change re-derived "
            "(the coordinator evidence holds no request with that hash): "
            "their recorded amounts were counted"
        )
    for r in replays.values():
        r.status.findings = len(r.findings)
    if index.capped:
        report.notes.append(f"wallet scripts derived only up to index {MAX_INDEX}")
    report.findings = sorted(findings, key=_order)
    return report


def _approved_txids(replays: Iterable[ApplianceReplay]) -> dict[str, list[str]]:
    """txid -> the journal approvals of that transaction ("appliance seq N")."""
    approved: dict[str, list[str]] = {}
    for r in replays:
        for ceremonies in r.approved.values():
            for c in ceremonies:
                if c.txid is not None:
                    approved.setdefault(c.txid, []).append(f"{c.appliance} seq {c.seq}")
    return approved


def _walk_notes(chain: ChainScanner) -> list[str]:
    notes = [f"chain walked from block {chain.start} to {chain.tip}: {chain.start_source}"]
    if chain.start != DEFAULT_START:
        notes.append(
            f"blocks before {chain.start} were not walked: a wallet coin created "
            "earlier is seen when a walked transaction spends it (its input reveals "
            "the wallet script), but one never spent is not counted, and broadcasts "
            "said confirmed below that height are not checked against the chain"
        )
    return notes


def _one_bundle_each(bundles: Sequence[ApplianceBundle]) -> None:
    seen: dict[str, str] = {}
    for bundle in bundles:
        if bundle.appliance_id in seen:
            raise EvidenceError(
                f"{bundle.source} and {seen[bundle.appliance_id]} are both bundles of "
                f"appliance {bundle.appliance_id}: give one"
            )
        seen[bundle.appliance_id] = bundle.source


def _order(finding: Finding) -> tuple[int, str, int]:
    return CHECKS.index(finding.check), finding.appliance or "", finding.seq or 0


__all__ = ["replay"]
