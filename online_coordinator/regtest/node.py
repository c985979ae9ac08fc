"""A local regtest Bitcoin node: Python-built blocks judged by Bitcoin Core's consensus code.

libbitcoinkernel (through py-bitcoinkernel) stores and validates every block and decides
which chain is active; this module adds what a node's RPCs need around it: a mirror of the
active chain with a UTXO-by-script index and a txindex (:mod:`chainstate`), a mempool with
Core's main policy rules (:mod:`policy`), a miner (:mod:`mining`) and a faucet
(:mod:`faucet`). The coordinator's tests and demo talk to it through the JSON-RPC server.

Every public method holds one re-entrant lock: the server calls from several threads, and
the kernel, the mirror and the mempool must always change together.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from online_coordinator.regtest import faucet, policy
from online_coordinator.regtest.chainstate import ChainState
from online_coordinator.regtest.faucet import (
    FAUCET_SCRIPT,
    FAUCET_SECRET,
    InsufficientFundsError,
)
from online_coordinator.regtest.kernel import Kernel
from online_coordinator.regtest.mempool import Mempool, MempoolEntry
from online_coordinator.regtest.mining import build_block, next_block_time, select_transactions
from online_coordinator.regtest.results import (
    RPC_DESERIALIZATION_ERROR,
    RPC_INVALID_ADDRESS_OR_KEY,
    RPC_INVALID_PARAMETER,
    RPC_MISC_ERROR,
    RPC_TYPE_ERROR,
    RPC_VERIFY_ALREADY_IN_CHAIN,
    RPC_VERIFY_ERROR,
    RPC_WALLET_INSUFFICIENT_FUNDS,
    AcceptResult,
    NodeError,
    UnspentOutput,
)
from shared.bitcoin.address import Network
from shared.bitcoin.amount import MAX_MONEY
from shared.bitcoin.block import Block
from shared.bitcoin.tx import OutPoint, Transaction
from shared.closing import Closing
from shared.psbt import PsbtError
from shared.psbt import finalize as finalize_psbt
from shared.psbt.model import Psbt
from shared.psbt.signer import sign_psbt

__all__ = ["AcceptResult", "NodeError", "RegtestNode", "UnspentOutput"]

#: Blocks mined to the faucet on creation: 101 makes the first coinbase spendable.
INITIAL_BLOCKS = 101
MEMPOOL_FILE = "mempool.txt"
MAX_CONF_TARGET = 1008

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _locked(
    method: Callable[Concatenate[RegtestNode, _P], _R],
) -> Callable[Concatenate[RegtestNode, _P], _R]:
    """Run ``method`` under the node's lock, refusing calls after :meth:`close`."""

    @functools.wraps(method)
    def wrapper(self: RegtestNode, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._lock:
            if self._kernel is None:
                raise NodeError(RPC_MISC_ERROR, "node is closed")
            return method(self, *args, **kwargs)

    return wrapper


def _display(internal: bytes) -> str:
    return internal[::-1].hex()


def _parse_hash(text: str, name: str) -> bytes:
    """A display-order hex hash to internal bytes, with Core's ``ParseHashV`` messages."""
    if len(text) != 64:
        message = f"{name} must be of length 64 (not {len(text)}, for '{text}')"
        raise NodeError(RPC_INVALID_PARAMETER, message)
    try:
        return bytes.fromhex(text)[::-1]
    except ValueError:
        message = f"{name} must be hexadecimal string (not '{text}')"
        raise NodeError(RPC_INVALID_PARAMETER, message) from None


class RegtestNode(Closing):
    """A regtest node in ``datadir`` (kernel data under ``datadir/"kernel"``)."""

    network: Network = Network.REGTEST

    def __init__(self, datadir: Path) -> None:
        """Create the node, or reopen it and rebuild the indexes from the kernel's blocks."""
        self.datadir = Path(datadir)
        self._lock = threading.RLock()
        self._chain = ChainState()
        self._pool = Mempool()
        self._fee_estimate: int | None = None
        self._wallet_keys: list[bytes] = [FAUCET_SECRET]
        self.datadir.mkdir(parents=True, exist_ok=True)
        self._kernel: Kernel | None = Kernel(self.datadir / "kernel")
        try:
            self._start()
        except BaseException:
            self._kernel.close()
            self._kernel = None
            raise

    def _start(self) -> None:
        """Mirror the kernel's chain; mine the faucet's first coins on a new chain."""
        with self._lock:
            self._follow_kernel({})
            if self._chain.height == 0:
                self._mine(INITIAL_BLOCKS, FAUCET_SCRIPT)
            self._load_mempool()

    def close(self) -> None:
        """Save the mempool and close the kernel cleanly; later calls raise NodeError."""
        with self._lock:
            if self._kernel is None:
                return
            self._save_mempool()
            self._kernel.close()
            self._kernel = None

    @property
    def _k(self) -> Kernel:
        if self._kernel is None:
            raise NodeError(RPC_MISC_ERROR, "node is closed")
        return self._kernel

    @property
    def faucet_script(self) -> bytes:
        """The faucet's P2WPKH output script (default coinbase destination)."""
        return FAUCET_SCRIPT

    # -- chain ----------------------------------------------------------------------------

    @_locked
    def height(self) -> int:
        return self._chain.height

    @_locked
    def best_hash(self) -> str:
        return _display(self._chain.tip_hash)

    @_locked
    def block_hash(self, height: int) -> str:
        if not 0 <= height <= self._chain.height:
            raise NodeError(RPC_INVALID_PARAMETER, "Block height out of range")
        return _display(self._chain.hash_at(height))

    @_locked
    def block(self, block_hash: str) -> bytes:
        """Raw serialized block as the kernel stored it (active or stale branch)."""
        raw = self._k.read_block(_parse_hash(block_hash, "blockhash"))
        if raw is None:
            raise NodeError(RPC_INVALID_ADDRESS_OR_KEY, "Block not found")
        return raw

    @_locked
    def block_height(self, block_hash: str) -> int | None:
        """Height of ``block_hash`` if it is in the active chain, else None."""
        return self._chain.height_of(_parse_hash(block_hash, "blockhash"))

    @_locked
    def raw_transaction(self, txid: str, block_hash: str | None = None) -> bytes:
        key = _parse_hash(txid, "parameter 1")
        if block_hash is not None:
            return self._transaction_in_block(key, _parse_hash(block_hash, "parameter 3"))
        entry = self._pool.get(key)
        if entry is not None:
            return entry.raw
        found = self._chain.transaction(key)
        if found is None:
            raise NodeError(RPC_INVALID_ADDRESS_OR_KEY, "No such mempool or blockchain transaction")
        return found[1]

    def _transaction_in_block(self, txid: bytes, block_hash: bytes) -> bytes:
        found = self._chain.transaction(txid)
        if found is not None and found[0] == block_hash:
            return found[1]
        raw = self._k.read_block(block_hash)
        if raw is None:
            raise NodeError(RPC_INVALID_ADDRESS_OR_KEY, "Block hash not found")
        for tx in Block.parse(raw).transactions:
            if tx.txid == txid:
                return tx.serialize()
        raise NodeError(
            RPC_INVALID_ADDRESS_OR_KEY, "No such transaction found in the provided block"
        )

    @_locked
    def transaction_block(self, txid: str) -> str | None:
        """Hash of the active-chain block holding ``txid``, else None."""
        found = self._chain.transaction(_parse_hash(txid, "txid"))
        return None if found is None else _display(found[0])

    @_locked
    def scan(self, scripts: Iterable[bytes]) -> list[UnspentOutput]:
        """Confirmed UTXOs paying any of ``scripts`` (like ``scantxoutset``), oldest first."""
        found: list[UnspentOutput] = []
        for script in set(scripts):
            for outpoint in self._chain.outpoints_paying(script):
                coin = self._chain.coin(outpoint)
                assert coin is not None
                found.append(
                    UnspentOutput(
                        outpoint.txid_hex,
                        outpoint.vout,
                        script,
                        coin.output.value,
                        coin.height,
                        coin.coinbase,
                    )
                )
        found.sort(key=lambda u: (u.height, u.txid, u.vout))
        return found

    # -- mempool --------------------------------------------------------------------------

    @_locked
    def mempool(self) -> list[str]:
        """Mempool txids, parents before children."""
        return [_display(entry.txid) for entry in self._pool.entries()]

    @_locked
    def test_accept(self, raw: bytes) -> AcceptResult:
        """Would ``send`` accept ``raw``? Never raises for a bad transaction."""
        try:
            tx = policy.decode(raw)
        except NodeError as exc:
            return AcceptResult("", "", False, exc.reason, None, None)
        try:
            entry = policy.check(tx, raw, self._chain, self._pool).entry
        except NodeError as exc:
            return AcceptResult(tx.txid_hex, tx.wtxid_hex, False, exc.reason, None, None)
        return AcceptResult(tx.txid_hex, tx.wtxid_hex, True, None, entry.vsize, entry.fee)

    @_locked
    def send(self, raw: bytes) -> str:
        """Accept ``raw`` into the mempool (or raise NodeError) and return its txid.

        As Core's ``BroadcastTransaction``: a transaction whose outputs are in the UTXO set
        is refused with -27 "Transaction outputs already in utxo set"; one already in the
        mempool (any witness) returns its txid without error; anything else goes through
        the mempool checks (a mined transaction whose outputs are all spent fails there as
        missing inputs, -25).
        """
        tx = policy.decode(raw)
        if any(self._chain.coin(OutPoint(tx.txid, i)) for i in range(len(tx.outputs))):
            raise NodeError(RPC_VERIFY_ALREADY_IN_CHAIN, "Transaction outputs already in utxo set")
        if tx.txid in self._pool:
            return tx.txid_hex  # Core returns the txid of a transaction it already has
        return _display(self._accept(tx, raw).txid)

    @_locked
    def mempool_entry(self, txid: str) -> MempoolEntry | None:
        """The mempool's entry for ``txid`` (``getmempoolentry``), or None."""
        return self._pool.get(_parse_hash(txid, "txid"))

    @_locked
    def tx_out(
        self, txid: str, vout: int, include_mempool: bool = True
    ) -> tuple[int, int, bytes, bool] | None:
        """``gettxout``: (confirmations, value, script, coinbase) of an unspent output, or
        None when it is spent (in a block, or in the mempool with ``include_mempool``)."""
        outpoint = OutPoint(_parse_hash(txid, "txid"), vout)
        if include_mempool and self._pool.spender(outpoint) is not None:
            return None
        coin = self._chain.coin(outpoint)
        if coin is not None:
            confirmations = self._chain.height - coin.height + 1
            return confirmations, coin.output.value, coin.output.script_pubkey, coin.coinbase
        output = self._pool.output(outpoint) if include_mempool else None
        if output is None:
            return None
        return 0, output.value, output.script_pubkey, False

    def _accept(self, tx: Transaction, raw: bytes) -> MempoolEntry:
        verdict = policy.check(tx, raw, self._chain, self._pool)
        self._pool.remove(verdict.replaced)
        self._pool.add(verdict.entry)
        return verdict.entry

    # -- the node's wallet ------------------------------------------------------------------

    @_locked
    def import_keys(self, secrets: list[bytes]) -> int:
        """Add private keys to the node's wallet (``importdescriptors``); how many are new."""
        new = [secret for secret in secrets if secret not in self._wallet_keys]
        self._wallet_keys.extend(new)
        return len(new)

    @_locked
    def process_psbt(self, psbt: Psbt, *, sign: bool, finalize: bool) -> tuple[Psbt, bool]:
        """``walletprocesspsbt``: sign what the wallet's keys can, and (Core's default)
        finalize every input that then has enough signatures. Returns (PSBT, complete)."""
        if sign:
            try:
                psbt, _ = sign_psbt(psbt, list(self._wallet_keys))
            except PsbtError as exc:
                raise NodeError(RPC_DESERIALIZATION_ERROR, f"PSBT: {exc}") from exc
        result = finalize_psbt(psbt)
        if finalize:
            return result.psbt, result.complete
        return psbt, result.complete

    # -- fees -----------------------------------------------------------------------------

    @_locked
    def set_fee_estimate(self, sat_per_kvb: int | None) -> None:
        """What :meth:`estimate_fee` answers from now on (None: "insufficient data")."""
        if sat_per_kvb is not None and sat_per_kvb < 0:
            raise NodeError(RPC_INVALID_PARAMETER, "fee estimate must not be negative")
        self._fee_estimate = sat_per_kvb

    @_locked
    def estimate_fee(self, target: int) -> int | None:
        """The fixed estimate in sat/kvB for any confirmation target, or None."""
        if not 1 <= target <= MAX_CONF_TARGET:
            message = f"Invalid conf_target, must be between 1 and {MAX_CONF_TARGET}"
            raise NodeError(RPC_INVALID_PARAMETER, message)
        return self._fee_estimate

    # -- mining, faucet, reorgs -----------------------------------------------------------

    @_locked
    def mine(self, count: int, script_pubkey: bytes | None = None) -> list[str]:
        """Mine ``count`` blocks of mempool transactions; coinbases pay ``script_pubkey``."""
        if count < 0:
            raise NodeError(RPC_INVALID_PARAMETER, "count must not be negative")
        return self._mine(count, FAUCET_SCRIPT if script_pubkey is None else script_pubkey)

    def _mine(self, count: int, script_pubkey: bytes) -> list[str]:
        hashes: list[str] = []
        for _ in range(count):
            entries = select_transactions(self._pool.entries())
            fees = sum(entry.fee for entry in entries)
            block = self._next_block([entry.tx for entry in entries], script_pubkey, fees)
            self._submit([block])
            hashes.append(block.hash_hex)
        return hashes

    def _mine_block(
        self, transactions: list[Transaction], script_pubkey: bytes | None = None
    ) -> str:
        """Mine exactly ``transactions``, bypassing the mempool (tests forge blocks with it).

        Fees are taken as zero, so the coinbase is never what makes the block invalid.
        """
        with self._lock:
            block = self._next_block(transactions, script_pubkey or FAUCET_SCRIPT, 0)
            self._submit([block])
            return block.hash_hex

    def _next_block(
        self, transactions: list[Transaction], script_pubkey: bytes, fees: int
    ) -> Block:
        height = self._chain.height + 1
        block_time = next_block_time(self._chain.times_up_to(height - 1))
        prev_hash = self._chain.tip_hash
        return build_block(prev_hash, height, block_time, transactions, script_pubkey, fees)

    @_locked
    def fund(self, outputs: list[tuple[bytes, int]]) -> str:
        """The faucet pays ``outputs`` (script, sats) in one mempool transaction; its txid."""
        if not outputs:
            raise NodeError(RPC_INVALID_PARAMETER, "Invalid parameter, no outputs")
        if any(not isinstance(value, int) or not 0 <= value <= MAX_MONEY for _, value in outputs):
            raise NodeError(RPC_TYPE_ERROR, "Amount out of range")
        try:
            tx = faucet.pay(self._faucet_coins(), outputs)
        except InsufficientFundsError as exc:
            raise NodeError(RPC_WALLET_INSUFFICIENT_FUNDS, "Insufficient funds", str(exc)) from exc
        return _display(self._accept(tx, tx.serialize()).txid)

    def _faucet_coins(self) -> list[tuple[OutPoint, int]]:
        """Spendable faucet coins: mature confirmed ones (largest first), then mempool change."""
        next_height = self._chain.height + 1
        confirmed: list[tuple[OutPoint, int, int]] = []
        for outpoint in self._chain.outpoints_paying(FAUCET_SCRIPT):
            coin = self._chain.coin(outpoint)
            assert coin is not None
            mature = not coin.coinbase or next_height - coin.height >= policy.COINBASE_MATURITY
            if mature and self._pool.spender(outpoint) is None:
                confirmed.append((outpoint, coin.output.value, coin.height))
        confirmed.sort(key=lambda c: (-c[1], c[2]))
        pending = [
            (OutPoint(entry.txid, vout), out.value)
            for entry in self._pool.entries()
            for vout, out in enumerate(entry.tx.outputs)
            if out.script_pubkey == FAUCET_SCRIPT
            and self._pool.spender(OutPoint(entry.txid, vout)) is None
        ]
        return [(outpoint, value) for outpoint, value, _ in confirmed] + pending

    @_locked
    def reorg(
        self, depth: int, *, keep_transactions: bool = False, extra_blocks: int = 1
    ) -> list[str]:
        """Replace the top ``depth`` blocks with ``depth + extra_blocks`` empty ones.

        Transactions of the dropped blocks go back to the mempool only with
        ``keep_transactions`` (re-validated); otherwise they are lost, as on a node that
        never saw them, so callers must re-broadcast. Returns the new block hashes.
        """
        if not 1 <= depth <= self._chain.height:
            raise NodeError(RPC_INVALID_PARAMETER, f"reorg depth must be 1..{self._chain.height}")
        if extra_blocks < 1:
            raise NodeError(RPC_INVALID_PARAMETER, "extra_blocks must be at least 1 (more work)")
        fork = self._chain.height - depth
        times = self._chain.times_up_to(fork)
        prev_hash = self._chain.hash_at(fork)
        blocks: list[Block] = []
        for height in range(fork + 1, fork + depth + extra_blocks + 1):
            block_time = next_block_time(times[-11:])
            blocks.append(build_block(prev_hash, height, block_time, [], FAUCET_SCRIPT, 0))
            times.append(block_time)
            prev_hash = blocks[-1].hash
        self._submit(blocks, keep_transactions)
        return [block.hash_hex for block in blocks]

    # -- following the kernel -------------------------------------------------------------

    def _submit(self, blocks: list[Block], keep_transactions: bool = False) -> None:
        """Give ``blocks`` to the kernel and follow it; the last must become the tip.

        ``process_block`` succeeds even for blocks it then rejects, so the kernel's
        verdict is read back: a reject reason, or a tip that is not our last block.
        """
        rejection = None
        for block in blocks:
            rejection = self._k.submit(block.serialize())
            if rejection is not None:
                break
        self._follow_kernel({block.hash: block for block in blocks}, keep_transactions)
        if rejection is not None:
            raise NodeError(RPC_VERIFY_ERROR, rejection.reason, rejection.detail)
        if self._chain.tip_hash != blocks[-1].hash:
            raise NodeError(RPC_VERIFY_ERROR, "block not connected", "the kernel kept its tip")

    def _follow_kernel(self, known: dict[bytes, Block], keep_transactions: bool = False) -> None:
        """Make the mirror and the mempool match the kernel's active chain.

        ``known`` holds blocks just built, to skip reading them back from disk.
        """
        fork = self._fork_height()
        reorged = self._chain.height > fork
        disconnected: list[Transaction] = []
        while self._chain.height > fork:
            disconnected[:0] = self._chain.disconnect_tip()
        connected: list[Block] = []
        for height in range(fork + 1, self._k.height() + 1):
            block_hash = self._k.hash_at(height)
            block = known.get(block_hash) or self._read_block(block_hash)
            self._chain.connect(block)
            connected.append(block)
        if reorged:
            self._refill_mempool(disconnected if keep_transactions else [])
        else:
            for block in connected:
                self._pool.remove_for_block(block)

    def _fork_height(self) -> int:
        """Height of the last block the mirror shares with the kernel's active chain."""
        height = min(self._chain.height, self._k.height())
        while height >= 0 and self._chain.hash_at(height) != self._k.hash_at(height):
            height -= 1
        return height

    def _read_block(self, block_hash: bytes) -> Block:
        raw = self._k.read_block(block_hash)
        if raw is None:
            raise RuntimeError(f"the kernel cannot read active block {_display(block_hash)}")
        return Block.parse(raw)

    def _refill_mempool(self, restored: list[Transaction]) -> None:
        """After a reorg: re-validate ``restored`` then the old mempool, dropping failures."""
        candidates = [(tx, tx.serialize()) for tx in restored]
        candidates += [(entry.tx, entry.raw) for entry in self._pool.clear()]
        for tx, raw in candidates:
            with contextlib.suppress(NodeError):
                self._accept(tx, raw)

    # -- mempool persistence --------------------------------------------------------------

    def _save_mempool(self) -> None:
        """Like Core's mempool.dat: what was pending survives a restart (then re-validated)."""
        path = self.datadir / MEMPOOL_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(entry.raw.hex() + "\n" for entry in self._pool.entries()))
        tmp.replace(path)

    def _load_mempool(self) -> None:
        path = self.datadir / MEMPOOL_FILE
        if not path.exists():
            return
        for line in path.read_text().split():
            with contextlib.suppress(ValueError, NodeError):
                raw = bytes.fromhex(line)
                self._accept(policy.decode(raw), raw)
