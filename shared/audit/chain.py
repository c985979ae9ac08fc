"""Check 5: every transaction on chain that spends a wallet output maps to one approved
broadcast.

Where the walk starts is the auditor's choice, never the evidence's (:func:`walk_start`):
``--from-height`` when given, else block 0, the whole chain. The coordinator's
``birth_height`` is unsigned evidence; it once switched the walk off (a height above the
tip walked nothing). Walking from 0 costs every block of the node, which is nothing on
regtest and days on mainnet, so an auditor may give a height established independently.

:class:`ChainScanner` is fed whole blocks in height order (the auditor's program fetches
them from its own node); it remembers every output paying a wallet script and collects
every transaction spending one of them (including one created earlier in the same block).
A spend is also recognised from the spending input alone: a segwit input reveals its
script (the P2WPKH public key, the P2WSH witness script, the P2SH redeem script), so a coin
created before the walk started is still seen leaving when that script is a wallet's.
:func:`map_outflows` then maps each spending transaction to the coordinator's broadcasts:
by txid, or, when the txid changed (a malleated legacy signature), by the same inputs,
sequences, outputs, version and locktime. An outflow that maps to no approved broadcast is
the finding this whole system exists to prevent, unless the journals approved exactly that
transaction and only the coordinator's record of sending it is missing (issue 13: the
node's reply to ``sendrawtransaction`` was lost): that is named as what it is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field

from shared.audit.facts import BroadcastEvidence, shape
from shared.audit.model import BroadcastResult, ChainSummary, Finding, OutflowResult
from shared.audit.spool import Records
from shared.bitcoin.block import Block
from shared.bitcoin.script import ScriptError, iter_ops, p2sh_wrap, p2wpkh_script, p2wsh_script
from shared.bitcoin.tx import OutPoint, Transaction, TxIn

DEFAULT_START = 0


class ChainScanError(ValueError):
    """Blocks that do not form one chain (a reorg during the walk, or a lying node), or a
    start height the node does not have."""


def walk_start(from_height: int | None, tip: int) -> tuple[int, str]:
    """(first height to walk, who chose it): the auditor's ``from_height``, else block 0.

    Nothing from the evidence is an argument here, on purpose.
    """
    if from_height is None:
        return DEFAULT_START, "block 0 (default: the whole chain)"
    if not 0 <= from_height <= tip:
        raise ChainScanError(f"--from-height {from_height} is not a height of the node (0..{tip})")
    return from_height, "--from-height (the auditor's choice)"


@dataclass(frozen=True)
class WalletOutput:
    """An output paying a wallet script, and the height of the block holding it."""

    value: int
    script: bytes
    height: int


@dataclass(frozen=True)
class Outflow:
    """A transaction spending wallet outputs; ``scripts`` are the wallet scripts it spends,
    ``unseen`` the spent outpoints created before the walk (known from the input alone)."""

    txid: str
    height: int
    block_hash: str
    tx: Transaction
    spent: tuple[str, ...]
    scripts: tuple[bytes, ...] = ()
    unseen: tuple[str, ...] = ()


def revealed_scripts(txin: TxIn) -> list[bytes]:
    """The output scripts this input may be spending, from what it reveals: the P2WPKH key,
    the P2WSH witness script, the P2SH redeem script (one push). Only a guess until it is
    looked up among the wallet scripts; a hash match is not a coincidence."""
    found = []
    if txin.witness:
        last = txin.witness[-1]
        if len(txin.witness) == 2 and len(last) == 33:
            found.append(p2wpkh_script(last))
        found.append(p2wsh_script(last))
    if txin.script_sig:
        try:
            ops = iter_ops(txin.script_sig)
        except ScriptError:
            ops = []
        pushed = ops[-1][1] if ops else None
        if pushed:
            found.append(p2sh_wrap(pushed))
    return found


@dataclass
class ChainScanner:
    """Wallet outputs and their spenders, block by block; see the module docstring."""

    scripts: Container[bytes]
    start: int
    tip: int = -1
    tip_hash: str = ""
    wallet_outputs: dict[OutPoint, WalletOutput] = field(default_factory=dict)
    outflows: list[Outflow] = field(default_factory=list)
    start_source: str = "given by the caller"
    _previous: bytes | None = None

    def add_block(self, height: int, block: Block, expected_hash: str) -> None:
        """Add the block at ``height``; it must be the one asked for and extend the last."""
        if block.hash_hex != expected_hash:
            raise ChainScanError(
                f"block at height {height} hashes to {block.hash_hex}, "
                f"the node named {expected_hash}"
            )
        if self._previous is not None and block.header.prev_hash != self._previous:
            raise ChainScanError(
                f"block {block.hash_hex} at height {height} does not extend "
                "the previous block (did the chain reorganise?)"
            )
        for position, tx in enumerate(block.transactions):
            self._transaction(height, block.hash_hex, tx, coinbase=position == 0)
        self._previous, self.tip, self.tip_hash = block.hash, height, block.hash_hex

    def _transaction(self, height: int, block_hash: str, tx: Transaction, coinbase: bool) -> None:
        if not coinbase:
            self._spends(height, block_hash, tx)
        txid = tx.txid
        for vout, out in enumerate(tx.outputs):
            if out.script_pubkey in self.scripts:
                self.wallet_outputs[OutPoint(txid, vout)] = WalletOutput(
                    out.value, out.script_pubkey, height
                )

    def _spends(self, height: int, block_hash: str, tx: Transaction) -> None:
        spent, scripts, unseen = [], [], []
        for txin in tx.inputs:
            known = self.wallet_outputs.get(txin.prevout)
            if known is not None:
                spent.append(str(txin.prevout))
                scripts.append(known.script)
                continue
            script = next((s for s in revealed_scripts(txin) if s in self.scripts), None)
            if script is not None:
                spent.append(str(txin.prevout))
                scripts.append(script)
                unseen.append(str(txin.prevout))
        if spent:
            self.outflows.append(
                Outflow(
                    tx.txid_hex, height, block_hash, tx, tuple(spent), tuple(scripts), tuple(unseen)
                )
            )

    @property
    def first_wallet_height(self) -> int | None:
        """The first walked height paying or spending a wallet script."""
        heights = [o.height for o in self.wallet_outputs.values()]
        heights += [o.height for o in self.outflows]
        return min(heights, default=None)


def _shape_digest(tx: Transaction) -> bytes:
    """SHA-256 of :func:`shape`: how broadcasts and requests are kept (equal digests,
    equal shapes)."""
    return hashlib.sha256(shape(tx)).digest()


@dataclass(frozen=True)
class _Broadcasts:
    """The coordinator's broadcasts indexed by txid and by shape (its digest), with their
    verdicts."""

    by_txid: dict[str, list[int]]
    by_shape: dict[bytes, list[int]]
    results: Sequence[BroadcastResult]
    evidence: Records[BroadcastEvidence]


def _index(evidence: Records[BroadcastEvidence], results: Sequence[BroadcastResult]) -> _Broadcasts:
    by_txid: dict[str, list[int]] = {}
    by_shape: dict[bytes, list[int]] = {}
    for i, broadcast in enumerate(evidence):
        by_txid.setdefault(broadcast.tx_txid, []).append(i)
        by_shape.setdefault(broadcast.shape, []).append(i)
    return _Broadcasts(by_txid, by_shape, results, evidence)


@dataclass(frozen=True)
class _Approvals:
    """What the journals approved, for outflows the coordinator never recorded sending:
    txid -> "appliance seq N" approvals, and the requests by transaction shape."""

    by_txid: Mapping[str, Sequence[str]]
    requests: Mapping[bytes, tuple[str, str, str]]  # shape digest -> (id, txid field, state)
    sent: Mapping[str, Sequence[str]]  # request id -> txids of its broadcast records


def map_outflows(
    scanner: ChainScanner,
    evidence: Records[BroadcastEvidence],
    results: Sequence[BroadcastResult],
    requests: Mapping[bytes, tuple[str, str, str]],
    approved: Mapping[str, Sequence[str]] | None = None,
) -> tuple[ChainSummary, list[Finding]]:
    """Map every outflow; findings for each that is not exactly one approved broadcast,
    and for each broadcast the coordinator says confirmed that the chain does not hold.

    ``requests`` gives each transaction shape's first request (by the digest of the shape:
    its id, txid field and state, see
    :attr:`shared.audit.coordinator_replay.CoordinatorReplay.by_shape`); ``approved`` maps a
    txid to the journal approvals of that transaction (``"cold-1 seq 12"``), so an outflow
    the journals approved but the coordinator never recorded as broadcast is named as such
    rather than as an unapproved outflow.
    """
    index = _index(evidence, results)
    sent: dict[str, list[str]] = {}
    for broadcast in evidence:
        if broadcast.request_id is not None:
            sent.setdefault(broadcast.request_id, []).append(broadcast.tx_txid)
    approvals = _Approvals(approved or {}, requests, sent)
    summary = ChainSummary(
        scanner.start,
        scanner.tip,
        scanner.tip_hash,
        len(scanner.wallet_outputs),
        start_source=scanner.start_source,
        first_wallet_height=scanner.first_wallet_height,
    )
    findings: list[Finding] = []
    for outflow in scanner.outflows:
        summary.outflows.append(_map_one(outflow, index, approvals, findings))
    findings += _confirmed_but_absent(scanner, index)
    return summary, findings


def _map_one(
    outflow: Outflow, index: _Broadcasts, approvals: _Approvals, findings: list[Finding]
) -> OutflowResult:
    found = index.by_txid.get(outflow.txid, [])
    malleated = not found
    if malleated:
        found = index.by_shape.get(_shape_digest(outflow.tx), [])
    spends = ", ".join(outflow.spent)
    if outflow.unseen:
        spends += f" (created before the walk started: {', '.join(outflow.unseen)})"
    if not found:
        return _unrecorded(outflow, approvals, spends, findings)
    if len(found) > 1:
        findings.append(
            Finding("chain", f"outflow maps to {len(found)} broadcasts", txid=outflow.txid)
        )
    result = index.results[found[0]]
    if not result.approved:
        findings.append(
            Finding(
                "chain",
                f"outflow at height {outflow.height} is broadcast "
                f"{result.txid}, which no ceremony approved without findings",
                txid=outflow.txid,
            )
        )
    return OutflowResult(outflow.txid, outflow.height, outflow.block_hash, result.txid, malleated)


def _unrecorded(
    outflow: Outflow, approvals: _Approvals, spends: str, findings: list[Finding]
) -> OutflowResult:
    """An outflow no broadcast record explains: approved in a journal (same transaction, the
    txid or, if malleated, the same shape), or not approved at all."""
    request = approvals.requests.get(_shape_digest(outflow.tx))
    txid = request[1] if request is not None else outflow.txid
    approved = tuple(approvals.by_txid.get(txid, ()) or approvals.by_txid.get(outflow.txid, ()))
    result = OutflowResult(outflow.txid, outflow.height, outflow.block_hash, None, False, approved)
    if not approved:
        hint = (
            f" (it is request {request[0]}'s transaction, never recorded as "
            "broadcast, and no journal given approves it)"
            if request
            else ""
        )
        findings.append(
            Finding(
                "chain",
                f"outflow without an approved ceremony at height "
                f"{outflow.height}, spending {spends}{hint}",
                txid=outflow.txid,
            )
        )
        return result
    said = (
        f"outflow at height {outflow.height}, spending {spends}, is the transaction "
        f"approved in the journal ({', '.join(approved)})"
    )
    if request is None:
        findings.append(
            Finding(
                "chain",
                f"{said}, but the coordinator evidence holds neither "
                "its request nor a broadcast record: the station signed a "
                "request the coordinator never recorded; find where it came "
                "from",
                txid=outflow.txid,
            )
        )
        return result
    request_id, _, state = request
    other = approvals.sent.get(request_id)
    if other:
        findings.append(
            Finding(
                "chain",
                f"{said}, but the coordinator's broadcast record of "
                f"request {request_id} holds another transaction "
                f"({', '.join(other)}): its records were altered or it sent "
                "something else; see the broadcast findings",
                txid=outflow.txid,
                request_id=request_id,
            )
        )
        return result
    findings.append(
        Finding(
            "chain",
            f"{said}; only the coordinator's broadcast record is "
            f"missing (its request {request_id} is recorded as "
            f"{state!r}). Lower severity than an unapproved outflow: a "
            "lost record of the broadcast (for example a lost reply to "
            "sendrawtransaction), not a payment without a ceremony. Reconcile "
            "the coordinator (sync) and check that these payees were not paid "
            "a second time; if the batch was cancelled, find out who "
            "broadcast it",
            txid=outflow.txid,
            request_id=request_id,
        )
    )
    return result


def _confirmed_but_absent(scanner: ChainScanner, index: _Broadcasts) -> list[Finding]:
    txids = {o.txid for o in scanner.outflows}
    shapes = {_shape_digest(o.tx) for o in scanner.outflows}
    findings = []
    for broadcast in index.evidence:
        if broadcast.state not in ("confirmed", "final") or broadcast.height is None:
            continue
        if broadcast.height < scanner.start or broadcast.height > scanner.tip:
            continue
        if broadcast.tx_txid not in txids and broadcast.shape not in shapes:
            findings.append(
                Finding(
                    "chain",
                    f"the coordinator says it confirmed at height "
                    f"{broadcast.height}; the chain does not hold it",
                    txid=broadcast.tx_txid,
                )
            )
    return findings
