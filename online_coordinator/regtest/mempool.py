"""The mempool: accepted transactions in dependency order, and who spends what.

Entries are kept in insertion order. A transaction is only ever accepted after the
transactions it spends, so that order is also a valid block order, which is what the
miner needs. Acceptance rules live in :mod:`policy`; this module only keeps the books.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shared.bitcoin.block import Block
from shared.bitcoin.tx import OutPoint, Transaction, TxOut

#: BIP-125: an input with a sequence below this signals that its transaction is replaceable.
MAX_BIP125_RBF_SEQUENCE = 0xFFFFFFFD


@dataclass(frozen=True, slots=True)
class MempoolEntry:
    tx: Transaction
    raw: bytes
    txid: bytes
    wtxid: bytes
    fee: int
    vsize: int
    weight: int
    sigop_cost: int

    @property
    def signals_rbf(self) -> bool:
        return any(txin.sequence <= MAX_BIP125_RBF_SEQUENCE for txin in self.tx.inputs)


class Mempool:
    def __init__(self) -> None:
        self._entries: dict[bytes, MempoolEntry] = {}
        self._spenders: dict[OutPoint, bytes] = {}

    def __contains__(self, txid: bytes) -> bool:
        return txid in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, txid: bytes) -> MempoolEntry | None:
        return self._entries.get(txid)

    def entries(self) -> list[MempoolEntry]:
        """All entries, parents before children."""
        return list(self._entries.values())

    def spender(self, outpoint: OutPoint) -> bytes | None:
        return self._spenders.get(outpoint)

    def output(self, outpoint: OutPoint) -> TxOut | None:
        """An output created by a mempool transaction (spent or not)."""
        entry = self._entries.get(outpoint.txid)
        if entry is None or outpoint.vout >= len(entry.tx.outputs):
            return None
        return entry.tx.outputs[outpoint.vout]

    # -- relatives ------------------------------------------------------------------------

    def parents(self, tx: Transaction) -> set[bytes]:
        return {txin.prevout.txid for txin in tx.inputs if txin.prevout.txid in self._entries}

    def children(self, txid: bytes) -> set[bytes]:
        entry = self._entries[txid]
        spenders = (self._spenders.get(OutPoint(txid, i)) for i in range(len(entry.tx.outputs)))
        return {child for child in spenders if child is not None}

    def ancestors(self, tx: Transaction) -> set[bytes]:
        """Every mempool transaction ``tx`` depends on, directly or not."""
        found: set[bytes] = set()
        todo = list(self.parents(tx))
        while todo:
            txid = todo.pop()
            if txid not in found:
                found.add(txid)
                todo.extend(self.parents(self._entries[txid].tx))
        return found

    def with_descendants(self, txids: Iterable[bytes]) -> set[bytes]:
        """``txids`` (those in the mempool) and everything spending them, transitively."""
        found: set[bytes] = set()
        todo = [txid for txid in txids if txid in self._entries]
        while todo:
            txid = todo.pop()
            if txid not in found:
                found.add(txid)
                todo.extend(self.children(txid))
        return found

    # -- updates --------------------------------------------------------------------------

    def add(self, entry: MempoolEntry) -> None:
        self._entries[entry.txid] = entry
        for txin in entry.tx.inputs:
            self._spenders[txin.prevout] = entry.txid

    def remove(self, txids: Iterable[bytes]) -> None:
        """Remove exactly these transactions (callers include descendants when needed)."""
        for txid in txids:
            entry = self._entries.pop(txid, None)
            if entry is None:
                continue
            for txin in entry.tx.inputs:
                if self._spenders.get(txin.prevout) == txid:
                    del self._spenders[txin.prevout]

    def remove_for_block(self, block: Block) -> None:
        """Drop what ``block`` confirmed, and whatever conflicted with it (with descendants).

        Children of confirmed transactions stay: their inputs are now in the UTXO set.
        """
        confirmed = [tx.txid for tx in block.transactions]
        self.remove(confirmed)
        conflicts = {
            spender
            for tx in block.transactions[1:]
            for txin in tx.inputs
            if (spender := self._spenders.get(txin.prevout)) is not None
        }
        self.remove(self.with_descendants(conflicts))

    def clear(self) -> list[MempoolEntry]:
        """Empty the pool, returning what it held in order (to re-validate after a reorg)."""
        entries = self.entries()
        self._entries.clear()
        self._spenders.clear()
        return entries
