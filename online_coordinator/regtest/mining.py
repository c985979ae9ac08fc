"""Block assembly for regtest: coinbase, witness commitment, header, nonce grinding.

Everything a block needs to pass the kernel's consensus checks is built here from the
pure helpers in :mod:`shared.bitcoin.block`; the node decides what goes in and where.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace

from online_coordinator.regtest.chainstate import median_time
from online_coordinator.regtest.mempool import MempoolEntry
from online_coordinator.regtest.policy import MAX_BLOCK_WEIGHT
from shared.bitcoin.amount import COIN
from shared.bitcoin.block import (
    REGTEST_BITS,
    VERSIONBITS_TOP,
    Block,
    BlockHeader,
    check_proof_of_work,
    merkle_root,
    witness_commitment_script,
)
from shared.bitcoin.script import push_data, push_number
from shared.bitcoin.tx import SEQUENCE_FINAL, OutPoint, Transaction, TxIn, TxOut

INITIAL_SUBSIDY = 50 * COIN
#: Regtest halves the subsidy every 150 blocks (mainnet: 210,000).
HALVING_INTERVAL = 150
MAX_BLOCK_SIGOPS_COST = 80_000
#: Room kept for the coinbase, as Core's block assembler does.
COINBASE_RESERVED_WEIGHT = 8_000
COINBASE_RESERVED_SIGOPS = 400
_NULL_PREVOUT = OutPoint(bytes(32), 0xFFFFFFFF)


def block_subsidy(height: int) -> int:
    halvings = height // HALVING_INTERVAL
    return 0 if halvings >= 64 else INITIAL_SUBSIDY >> halvings


def coinbase_script_sig(height: int, extra_nonce: bytes) -> bytes:
    """BIP-34 height exactly as Core's ``CScript() << nHeight``, then an extra nonce.

    The nonce keeps coinbases (and so blocks) unique when a reorg rebuilds a height on
    the same parent, and makes the scriptSig at least the 2 bytes consensus requires.
    """
    return push_number(height) + push_data(extra_nonce)


def coinbase_transaction(
    height: int, script_pubkey: bytes, value: int, others: Sequence[Transaction]
) -> Transaction:
    """The coinbase paying ``value``, with the BIP-141 commitment to ``others``' witnesses."""
    coinbase = Transaction(
        version=2,
        inputs=[
            TxIn(
                _NULL_PREVOUT,
                coinbase_script_sig(height, os.urandom(4)),
                SEQUENCE_FINAL,
                witness=[bytes(32)],  # the witness reserved value the commitment hashes
            )
        ],
        outputs=[TxOut(value, script_pubkey)],
    )
    # The commitment hashes the coinbase as 32 zero bytes, so adding it changes nothing.
    coinbase.outputs.append(TxOut(0, witness_commitment_script([coinbase, *others])))
    return coinbase


def next_block_time(parent_times: Sequence[int], now: int | None = None) -> int:
    """Now, unless that is not after the median time past (fast mining outruns the clock)."""
    current = int(time.time()) if now is None else now
    return max(median_time(list(parent_times)) + 1, current)


def grind(header: BlockHeader) -> BlockHeader:
    """Try nonces until the header meets its target (about two tries at regtest bits)."""
    for nonce in range(2**32):
        candidate = replace(header, nonce=nonce)
        if check_proof_of_work(candidate):
            return candidate
    raise RuntimeError("no nonce satisfies the target; change the time or extra nonce")


def build_block(
    prev_hash: bytes,
    height: int,
    block_time: int,
    transactions: Sequence[Transaction],
    script_pubkey: bytes,
    fees: int,
) -> Block:
    """A mined block at ``height`` on ``prev_hash`` holding ``transactions`` in order."""
    coinbase = coinbase_transaction(
        height, script_pubkey, block_subsidy(height) + fees, transactions
    )
    txs = [coinbase, *transactions]
    header = BlockHeader(
        VERSIONBITS_TOP,
        prev_hash,
        merkle_root([tx.txid for tx in txs]),
        block_time,
        REGTEST_BITS,
        0,
    )
    return Block(grind(header), txs)


def select_transactions(entries: Iterable[MempoolEntry]) -> list[MempoolEntry]:
    """Entries that fit one block's weight and sigop limits, parents before children.

    ``entries`` must already be in dependency order; a transaction whose parent did not
    fit is left out too, so the block never spends an output it does not contain.
    """
    chosen: list[MempoolEntry] = []
    skipped: set[bytes] = set()
    weight, sigops = COINBASE_RESERVED_WEIGHT, COINBASE_RESERVED_SIGOPS
    for entry in entries:
        orphaned = any(txin.prevout.txid in skipped for txin in entry.tx.inputs)
        too_big = weight + entry.weight > MAX_BLOCK_WEIGHT
        if orphaned or too_big or sigops + entry.sigop_cost > MAX_BLOCK_SIGOPS_COST:
            skipped.add(entry.txid)
            continue
        chosen.append(entry)
        weight += entry.weight
        sigops += entry.sigop_cost
    return chosen
