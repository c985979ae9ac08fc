"""A Python mirror of the kernel's active chain: block hashes and times, the UTXO set
(by outpoint and by script), undo data and a transaction index.

libbitcoinkernel validates and stores blocks but offers no UTXO lookups by script and no
txindex, which the node's RPCs (``scantxoutset``, ``getrawtransaction``) need. The mirror
is rebuilt from the kernel's own blocks on start and follows it block by block, so the
kernel stays the single judge of which chain is active.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.bitcoin.block import Block
from shared.bitcoin.script import OP_RETURN
from shared.bitcoin.tx import OutPoint, Transaction, TxOut

#: Core never adds outputs it can prove unspendable to the UTXO set.
MAX_SCRIPT_SIZE = 10_000
#: Blocks in the median-time-past window (BIP-113).
MEDIAN_TIME_SPAN = 11


@dataclass(frozen=True, slots=True)
class Coin:
    output: TxOut
    height: int
    coinbase: bool


@dataclass(slots=True)
class _BlockRecord:
    hash: bytes
    time: int
    txids: list[bytes]
    output_counts: list[int]
    #: Per transaction, the coins its inputs spent: what disconnecting puts back.
    undo: list[list[tuple[OutPoint, Coin]]]


def is_unspendable(script_pubkey: bytes) -> bool:
    """Core's ``CScript::IsUnspendable``: OP_RETURN outputs and oversized scripts."""
    return script_pubkey[:1] == bytes([OP_RETURN]) or len(script_pubkey) > MAX_SCRIPT_SIZE


class ChainState:
    """Active-chain indexes; callers connect and disconnect blocks in chain order."""

    def __init__(self) -> None:
        self._blocks: list[_BlockRecord] = []
        self._heights: dict[bytes, int] = {}
        self._utxos: dict[OutPoint, Coin] = {}
        self._by_script: dict[bytes, set[OutPoint]] = {}
        self._txindex: dict[bytes, tuple[bytes, bytes]] = {}  # txid -> (block hash, raw tx)

    # -- queries --------------------------------------------------------------------------

    @property
    def height(self) -> int:
        """Tip height; -1 before the genesis block is connected."""
        return len(self._blocks) - 1

    @property
    def tip_hash(self) -> bytes:
        return self._blocks[-1].hash

    def hash_at(self, height: int) -> bytes:
        return self._blocks[height].hash

    def height_of(self, block_hash: bytes) -> int | None:
        return self._heights.get(block_hash)

    def times_up_to(self, height: int) -> list[int]:
        """Header times of the median-time-past window ending at ``height``."""
        start = max(0, height - MEDIAN_TIME_SPAN + 1)
        return [record.time for record in self._blocks[start : height + 1]]

    def median_time_past(self, height: int | None = None) -> int:
        """BIP-113 median time past of the block at ``height`` (default: the tip)."""
        return median_time(self.times_up_to(self.height if height is None else height))

    def coin(self, outpoint: OutPoint) -> Coin | None:
        return self._utxos.get(outpoint)

    def outpoints_paying(self, script_pubkey: bytes) -> set[OutPoint]:
        return self._by_script.get(script_pubkey, set())

    def transaction(self, txid: bytes) -> tuple[bytes, bytes] | None:
        """(block hash, raw transaction) of an active-chain transaction."""
        return self._txindex.get(txid)

    # -- updates --------------------------------------------------------------------------

    def connect(self, block: Block) -> None:
        """Apply ``block`` on top of the tip (the kernel has already validated it)."""
        height = self.height + 1
        record = _BlockRecord(block.hash, block.header.time, [], [], [])
        # Core never adds the genesis coinbase to the UTXO set or any index.
        transactions = block.transactions if height > 0 else []
        for position, tx in enumerate(transactions):
            self._connect_tx(tx, height, position == 0, record)
        self._blocks.append(record)
        self._heights[record.hash] = height

    def _connect_tx(
        self, tx: Transaction, height: int, coinbase: bool, record: _BlockRecord
    ) -> None:
        txid = tx.txid
        spent: list[tuple[OutPoint, Coin]] = []
        if not coinbase:
            for txin in tx.inputs:
                spent.append((txin.prevout, self._spend(txin.prevout)))
        for vout, txout in enumerate(tx.outputs):
            if not is_unspendable(txout.script_pubkey):
                self._add_coin(OutPoint(txid, vout), Coin(txout, height, coinbase))
        self._txindex[txid] = (record.hash, tx.serialize())
        record.txids.append(txid)
        record.output_counts.append(len(tx.outputs))
        record.undo.append(spent)

    def disconnect_tip(self) -> list[Transaction]:
        """Undo the tip block; returns its non-coinbase transactions in block order."""
        record = self._blocks.pop()
        del self._heights[record.hash]
        entries = list(zip(record.txids, record.output_counts, record.undo, strict=True))
        removed: list[Transaction] = []
        for txid, n_outputs, spent in reversed(entries):
            for vout in range(n_outputs):
                self._remove_coin(OutPoint(txid, vout))
            for outpoint, coin in reversed(spent):
                self._add_coin(outpoint, coin)
            _, raw = self._txindex.pop(txid)
            if spent:  # the coinbase spends nothing
                removed.append(Transaction.parse(raw))
        removed.reverse()
        return removed

    def _add_coin(self, outpoint: OutPoint, coin: Coin) -> None:
        self._utxos[outpoint] = coin
        self._by_script.setdefault(coin.output.script_pubkey, set()).add(outpoint)

    def _spend(self, outpoint: OutPoint) -> Coin:
        coin = self._remove_coin(outpoint)
        if coin is None:
            raise RuntimeError(f"chain mirror out of step with the kernel: {outpoint} is spent")
        return coin

    def _remove_coin(self, outpoint: OutPoint) -> Coin | None:
        """Drop ``outpoint`` if unspent (a block's own outputs may be spent in the block)."""
        coin = self._utxos.pop(outpoint, None)
        if coin is None:
            return None
        holders = self._by_script[coin.output.script_pubkey]
        holders.discard(outpoint)
        if not holders:
            del self._by_script[coin.output.script_pubkey]
        return coin


def median_time(times: list[int]) -> int:
    """Core's median: the upper middle of the sorted window."""
    ordered = sorted(times)
    return ordered[len(ordered) // 2]
