"""Birth heights: what the coordinator's evidence claims, against what it shows itself.

A wallet's ``birth_height`` in the coordinator evidence is unsigned: the coordinator, or
whoever edited its file, writes it. The replay never walks the chain from it
(:func:`shared.audit.chain.walk_start`); it checks it instead. A wallet cannot be born after
a block that pays or spends it, so a birth height above

* the height of any broadcast of the wallet's coins that the evidence itself records
  (evidence alone; filed under the *broadcast* check), or
* the first walked block paying or spending one of the wallet's scripts (with ``--chain``;
  filed under the *chain* check)

is a finding: evidence that misstates where its own history begins, which is exactly how a
walk that trusted it would have been made to miss the earlier outflows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shared.audit.chain import ChainScanner
from shared.audit.evidence import WalletEvidence
from shared.audit.model import BroadcastResult, Finding
from shared.audit.wallets import WalletIndex


@dataclass(frozen=True)
class Earliest:
    """The lowest height at which some evidence shows a wallet in use, and what shows it."""

    height: int
    what: str
    txid: str | None = None


def _keep(earliest: dict[str, Earliest], wallet: str | None, seen: Earliest) -> None:
    if wallet is None:
        return
    known = earliest.get(wallet)
    if known is None or seen.height < known.height:
        earliest[wallet] = seen


def evidence_heights(
    input_wallets: Mapping[str, Sequence[str]], broadcasts: Sequence[BroadcastResult]
) -> dict[str, Earliest]:
    """Per wallet, its lowest broadcast height in the evidence (the wallet being one whose
    scripts the broadcast request's inputs spend, as the descriptors derive them:
    ``input_wallets``, request id -> those wallets, from the coordinator check)."""
    earliest: dict[str, Earliest] = {}
    for result in broadcasts:
        wallets = input_wallets.get(result.request_id or "")
        if wallets is None or result.height is None:
            continue
        for wallet in wallets:
            _keep(
                earliest, wallet, Earliest(result.height, f"broadcast {result.txid}", result.txid)
            )
    return earliest


def chain_heights(scanner: ChainScanner, index: WalletIndex) -> dict[str, Earliest]:
    """Per wallet, the first walked block paying or spending one of its scripts."""
    earliest: dict[str, Earliest] = {}
    for outpoint, output in scanner.wallet_outputs.items():
        _keep(
            earliest,
            index.wallet_of(output.script),
            Earliest(output.height, f"output {outpoint} on chain"),
        )
    for outflow in scanner.outflows:
        for script in outflow.scripts:
            _keep(
                earliest,
                index.wallet_of(script),
                Earliest(outflow.height, f"outflow {outflow.txid} on chain", outflow.txid),
            )
    return earliest


def birth_height_findings(
    wallets: Sequence[WalletEvidence], earliest: Mapping[str, Earliest], check: str
) -> list[Finding]:
    """A finding for each wallet whose claimed birth height is above what ``earliest``
    shows (see the module docstring)."""
    findings = []
    for wallet in wallets:
        seen = earliest.get(wallet.name)
        if seen is None or wallet.birth_height <= seen.height:
            continue
        findings.append(
            Finding(
                check,
                f"wallet {wallet.name} claims birth height {wallet.birth_height}, but its "
                f"{seen.what} is at height {seen.height}: the coordinator evidence misstates where "
                "the wallet's history begins (the walk never starts from it)",
                txid=seen.txid,
            )
        )
    return findings


__all__ = ["Earliest", "birth_height_findings", "chain_heights", "evidence_heights"]
