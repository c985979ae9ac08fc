"""Check 5: every transaction on chain that spends a wallet output maps to one approved
broadcast.

:class:`ChainScanner` is fed whole blocks in height order (the auditor's program fetches
them from its own node); it remembers every output paying a wallet script and collects
every transaction spending one of them (including one created earlier in the same block).
:func:`map_outflows` then maps each spending transaction to the coordinator's broadcasts:
by txid, or, when the txid changed (a malleated legacy signature), by the same inputs,
sequences, outputs, version and locktime. An outflow that maps to no approved broadcast is
the finding this whole system exists to prevent.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass, field

from shared.audit.evidence import BroadcastEvidence, RequestEvidence
from shared.audit.model import BroadcastResult, ChainSummary, Finding, OutflowResult
from shared.bitcoin.block import Block
from shared.bitcoin.encoding import compact_size
from shared.bitcoin.tx import OutPoint, Transaction


class ChainScanError(ValueError):
    """Blocks that do not form one chain (a reorg during the walk, or a lying node)."""


@dataclass(frozen=True)
class Outflow:
    txid: str
    height: int
    block_hash: str
    tx: Transaction
    spent: tuple[str, ...]


@dataclass
class ChainScanner:
    """Wallet outputs and their spenders, block by block; see the module docstring."""

    scripts: Container[bytes]
    start: int
    tip: int = -1
    tip_hash: str = ""
    wallet_outputs: dict[OutPoint, int] = field(default_factory=dict)
    outflows: list[Outflow] = field(default_factory=list)
    _previous: bytes | None = None

    def add_block(self, height: int, block: Block, expected_hash: str) -> None:
        """Add the block at ``height``; it must be the one asked for and extend the last."""
        if block.hash_hex != expected_hash:
            raise ChainScanError(f"block at height {height} hashes to {block.hash_hex}, "
                                 f"the node named {expected_hash}")  # fmt: skip
        if self._previous is not None and block.header.prev_hash != self._previous:
            raise ChainScanError(f"block {block.hash_hex} at height {height} does not extend "
                                 "the previous block (did the chain reorganise?)")  # fmt: skip
        for position, tx in enumerate(block.transactions):
            self._transaction(height, block.hash_hex, tx, coinbase=position == 0)
        self._previous, self.tip, self.tip_hash = block.hash, height, block.hash_hex

    def _transaction(self, height: int, block_hash: str, tx: Transaction, coinbase: bool) -> None:
        if not coinbase:
            spent = tuple(str(i.prevout) for i in tx.inputs if i.prevout in self.wallet_outputs)
            if spent:
                self.outflows.append(Outflow(tx.txid_hex, height, block_hash, tx, spent))
        txid = tx.txid
        for vout, out in enumerate(tx.outputs):
            if out.script_pubkey in self.scripts:
                self.wallet_outputs[OutPoint(txid, vout)] = out.value


def shape(tx: Transaction) -> bytes:
    """Everything a signature commits to except the signatures: what stays when a txid is
    malleated (scriptSig changes) yet the payment is the same."""
    parts = [tx.version.to_bytes(4, "little"), compact_size(len(tx.inputs))]
    for txin in tx.inputs:
        parts += [txin.prevout.serialize(), txin.sequence.to_bytes(4, "little")]
    parts.append(compact_size(len(tx.outputs)))
    parts += [out.serialize() for out in tx.outputs]
    parts.append(tx.locktime.to_bytes(4, "little"))
    return b"".join(parts)


@dataclass(frozen=True)
class _Broadcasts:
    """The coordinator's broadcasts indexed by txid and by shape, with their verdicts."""

    by_txid: dict[str, list[int]]
    by_shape: dict[bytes, list[int]]
    results: Sequence[BroadcastResult]
    evidence: Sequence[BroadcastEvidence]


def _index(evidence: Sequence[BroadcastEvidence], results: Sequence[BroadcastResult]
           ) -> _Broadcasts:  # fmt: skip
    by_txid: dict[str, list[int]] = {}
    by_shape: dict[bytes, list[int]] = {}
    for i, broadcast in enumerate(evidence):
        by_txid.setdefault(broadcast.tx.txid_hex, []).append(i)
        by_shape.setdefault(shape(broadcast.tx), []).append(i)
    return _Broadcasts(by_txid, by_shape, results, evidence)


def map_outflows(
    scanner: ChainScanner,
    evidence: Sequence[BroadcastEvidence],
    results: Sequence[BroadcastResult],
    requests: Sequence[RequestEvidence],
) -> tuple[ChainSummary, list[Finding]]:
    """Map every outflow; findings for each that is not exactly one approved broadcast,
    and for each broadcast the coordinator says confirmed that the chain does not hold."""
    index = _index(evidence, results)
    unsigned = {shape(r.psbt.unsigned_tx): r.request_id for r in requests}
    summary = ChainSummary(scanner.start, scanner.tip, scanner.tip_hash,
                           len(scanner.wallet_outputs))  # fmt: skip
    findings: list[Finding] = []
    for outflow in scanner.outflows:
        summary.outflows.append(_map_one(outflow, index, unsigned, findings))
    findings += _confirmed_but_absent(scanner, index)
    return summary, findings


def _map_one(outflow: Outflow, index: _Broadcasts, unsigned: dict[bytes, str],
             findings: list[Finding]) -> OutflowResult:  # fmt: skip
    found = index.by_txid.get(outflow.txid, [])
    malleated = not found
    if malleated:
        found = index.by_shape.get(shape(outflow.tx), [])
    where = {"txid": outflow.txid}
    spends = ", ".join(outflow.spent)
    if not found:
        request = unsigned.get(shape(outflow.tx))
        hint = f" (it is request {request}'s transaction, never recorded as broadcast)" \
            if request else ""  # fmt: skip
        findings.append(Finding("chain", f"outflow without an approved ceremony at height "
                                f"{outflow.height}, spending {spends}{hint}", **where))
        return OutflowResult(outflow.txid, outflow.height, outflow.block_hash, None, False)
    if len(found) > 1:
        findings.append(Finding("chain", f"outflow maps to {len(found)} broadcasts", **where))
    result = index.results[found[0]]
    if not result.approved:
        findings.append(Finding("chain", f"outflow at height {outflow.height} is broadcast "
                                f"{result.txid}, which no ceremony approved without findings",
                                **where))  # fmt: skip
    return OutflowResult(outflow.txid, outflow.height, outflow.block_hash, result.txid, malleated)


def _confirmed_but_absent(scanner: ChainScanner, index: _Broadcasts) -> list[Finding]:
    seen = {o.txid for o in scanner.outflows} | {shape(o.tx).hex() for o in scanner.outflows}
    findings = []
    for broadcast in index.evidence:
        if broadcast.state not in ("confirmed", "final") or broadcast.height is None:
            continue
        if broadcast.height < scanner.start or broadcast.height > scanner.tip:
            continue
        if broadcast.tx.txid_hex not in seen and shape(broadcast.tx).hex() not in seen:
            findings.append(Finding("chain", f"the coordinator says it confirmed at height "
                                    f"{broadcast.height}; the chain does not hold it",
                                    txid=broadcast.tx.txid_hex))  # fmt: skip
    return findings
