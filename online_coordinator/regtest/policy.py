"""Mempool acceptance: Core's consensus checks plus its main standardness rules.

The checks run in the order of Core's ``MemPoolAccept`` (PreChecks, fee and package
limits, replacement, then scripts) so the first failure has Core's reject reason.
Scripts are judged by libbitcoinkernel itself; everything else is re-stated here because
the kernel has no mempool. Left out: package relay, ephemeral dust, TRUC (v3) rules,
witness-stack standardness and the mempool size limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from online_coordinator.regtest.chainstate import ChainState, Coin
from online_coordinator.regtest.kernel import failing_input
from online_coordinator.regtest.mempool import Mempool, MempoolEntry
from online_coordinator.regtest.results import (
    RPC_DESERIALIZATION_ERROR,
    RPC_VERIFY_ERROR,
    RPC_VERIFY_REJECTED,
    NodeError,
)
from shared.bitcoin.amount import MAX_MONEY, dust_threshold, fee_at_rate
from shared.bitcoin.encoding import DecodeError, hash256
from shared.bitcoin.script import (
    OP_16,
    OutputType,
    ScriptError,
    classify,
    iter_ops,
    small_int,
    witness_program,
)
from shared.bitcoin.size import MAX_STANDARD_TX_WEIGHT, WITNESS_SCALE
from shared.bitcoin.tx import SEQUENCE_FINAL, OutPoint, Transaction, TxOut

COINBASE_MATURITY = 100
MIN_RELAY_FEE = 1_000  # sat/kvB
INCREMENTAL_RELAY_FEE = 1_000  # sat/kvB
MIN_STANDARD_TX_NONWITNESS_SIZE = 65
MAX_STANDARD_SCRIPTSIG_SIZE = 1_650
MAX_STANDARD_TX_SIGOPS_COST = 16_000
MAX_OP_RETURN_RELAY = 83
MAX_BLOCK_WEIGHT = 4_000_000
MAX_PACKAGE_COUNT = 25  # ancestor and descendant limits, each counting the tx itself
MAX_REPLACEMENT_CANDIDATES = 100
BYTES_PER_SIGOP = 20
LOCKTIME_THRESHOLD = 500_000_000
SEQUENCE_LOCKTIME_DISABLE = 1 << 31
SEQUENCE_LOCKTIME_TYPE_FLAG = 1 << 22
SEQUENCE_LOCKTIME_MASK = 0xFFFF
SEQUENCE_LOCKTIME_GRANULARITY = 9
_OP_CHECKSIG, _OP_CHECKSIGVERIFY = 0xAC, 0xAD
_OP_CHECKMULTISIG, _OP_CHECKMULTISIGVERIFY = 0xAE, 0xAF
_STANDARD_OUTPUTS = frozenset(
    {
        OutputType.P2PKH,
        OutputType.P2SH,
        OutputType.P2WPKH,
        OutputType.P2WSH,
        OutputType.P2TR,
        OutputType.WITNESS_UNKNOWN,
        OutputType.NULL_DATA,
    }
)


@dataclass(frozen=True, slots=True)
class Acceptance:
    """A transaction the mempool would take, and the entries it would evict (BIP-125)."""

    entry: MempoolEntry
    replaced: frozenset[bytes]


def reject(reason: str, detail: str | None = None) -> NodeError:
    return NodeError(RPC_VERIFY_REJECTED, reason, detail)


def decode(raw: bytes) -> Transaction:
    """Parse ``raw``; it must be the canonical serialization, as the miner re-serializes."""
    try:
        tx = Transaction.parse(raw)
    except DecodeError as exc:
        raise NodeError(RPC_DESERIALIZATION_ERROR, "TX decode failed", str(exc)) from exc
    if tx.serialize() != bytes(raw):
        raise NodeError(RPC_DESERIALIZATION_ERROR, "TX decode failed", "non-canonical encoding")
    return tx


def check(tx: Transaction, raw: bytes, chain: ChainState, pool: Mempool) -> Acceptance:
    """Judge ``tx`` against the tip and the mempool; raises NodeError with Core's reason."""
    check_transaction(tx)
    check_standard(tx)
    check_final(tx, chain)
    check_not_known(tx, chain, pool)
    coins = fetch_coins(tx, chain, pool)
    fee = check_inputs(tx, coins, chain.height + 1)
    check_sequence_locks(tx, coins, chain)
    entry = _make_entry(tx, raw, fee, sigop_cost(tx, [c.output for c in coins]))
    if entry.sigop_cost > MAX_STANDARD_TX_SIGOPS_COST:
        raise reject("bad-txns-too-many-sigops", str(entry.sigop_cost))
    check_fee(entry)
    conflicts = {s for txin in tx.inputs if (s := pool.spender(txin.prevout)) is not None}
    check_package_limits(tx, pool, conflicts)
    replaced = check_replacement(entry, conflicts, pool) if conflicts else frozenset()
    check_scripts(raw, coins)
    return Acceptance(entry, replaced)


def _make_entry(tx: Transaction, raw: bytes, fee: int, sigops: int) -> MempoolEntry:
    weight = tx.weight()
    vsize = (max(weight, sigops * BYTES_PER_SIGOP) + WITNESS_SCALE - 1) // WITNESS_SCALE
    return MempoolEntry(tx, bytes(raw), tx.txid, hash256(raw), fee, vsize, weight, sigops)


# -- context-free consensus and standardness ----------------------------------------------


def check_transaction(tx: Transaction) -> None:
    """Core's ``CheckTransaction`` and the mempool's coinbase refusal."""
    if not tx.inputs:
        raise reject("bad-txns-vin-empty")
    if not tx.outputs:
        raise reject("bad-txns-vout-empty")
    if len(tx.serialize(include_witness=False)) * WITNESS_SCALE > MAX_BLOCK_WEIGHT:
        raise reject("bad-txns-oversize")
    total = 0
    for out in tx.outputs:
        if out.value < 0:
            raise reject("bad-txns-vout-negative")
        if out.value > MAX_MONEY:
            raise reject("bad-txns-vout-toolarge")
        total += out.value
        if total > MAX_MONEY:
            raise reject("bad-txns-txouttotal-toolarge")
    prevouts = [txin.prevout for txin in tx.inputs]
    if len(set(prevouts)) != len(prevouts):
        raise reject("bad-txns-inputs-duplicate")
    if len(prevouts) == 1 and _is_null(prevouts[0]):
        raise reject("coinbase")
    if any(_is_null(p) for p in prevouts):
        raise reject("bad-txns-prevout-null")


def _is_null(outpoint: OutPoint) -> bool:
    return outpoint.txid == bytes(32) and outpoint.vout == 0xFFFFFFFF


def check_standard(tx: Transaction) -> None:
    """Core's ``IsStandardTx`` (with its default options)."""
    if not 1 <= tx.version <= 3:
        raise reject("version")
    if tx.weight() > MAX_STANDARD_TX_WEIGHT:
        raise reject("tx-size")
    if len(tx.serialize(include_witness=False)) < MIN_STANDARD_TX_NONWITNESS_SIZE:
        raise reject("tx-size-small")
    for txin in tx.inputs:
        if len(txin.script_sig) > MAX_STANDARD_SCRIPTSIG_SIZE:
            raise reject("scriptsig-size")
        if not _is_push_only(txin.script_sig):
            raise reject("scriptsig-not-pushonly")
    data_outputs = 0
    for out in tx.outputs:
        kind = classify(out.script_pubkey)
        if kind is OutputType.MULTISIG:
            raise reject("bare-multisig")
        if kind not in _STANDARD_OUTPUTS:
            raise reject("scriptpubkey")
        if kind is OutputType.NULL_DATA:
            data_outputs += 1
            if len(out.script_pubkey) > MAX_OP_RETURN_RELAY:
                raise reject("scriptpubkey")
        elif out.value < dust_threshold(out.script_pubkey):
            raise reject("dust")
    if data_outputs > 1:
        raise reject("multi-op-return")


def _is_push_only(script: bytes) -> bool:
    try:
        return all(op <= OP_16 for op, _ in iter_ops(script))
    except ScriptError:
        return False


# -- chain context ------------------------------------------------------------------------


def check_final(tx: Transaction, chain: ChainState) -> None:
    """``IsFinalTx`` for the next block: lock time below its height or the tip's MTP."""
    if tx.locktime == 0 or all(txin.sequence == SEQUENCE_FINAL for txin in tx.inputs):
        return
    by_height = tx.locktime < LOCKTIME_THRESHOLD
    cutoff = chain.height + 1 if by_height else chain.median_time_past()
    if tx.locktime >= cutoff:
        raise reject("non-final")


def check_not_known(tx: Transaction, chain: ChainState, pool: Mempool) -> None:
    entry = pool.get(tx.txid)
    if entry is not None:
        same = entry.wtxid == hash256(tx.serialize())
        raise reject("txn-already-in-mempool" if same else "txn-same-nonwitness-data-in-mempool")


def fetch_coins(tx: Transaction, chain: ChainState, pool: Mempool) -> list[Coin]:
    """The coin each input spends: confirmed, or an output of a mempool transaction.

    As Core's PreChecks: when an input is missing, a transaction whose own outputs are in
    the UTXO set is "txn-already-known" (it was mined); otherwise the inputs are missing
    or spent (``testmempoolaccept`` shows that as "missing-inputs").
    """
    coins: list[Coin] = []
    for txin in tx.inputs:
        coin = chain.coin(txin.prevout)
        if coin is None:
            output = pool.output(txin.prevout)
            if output is None:
                if any(chain.coin(OutPoint(tx.txid, i)) for i in range(len(tx.outputs))):
                    raise reject("txn-already-known")
                raise NodeError(RPC_VERIFY_ERROR, "bad-txns-inputs-missingorspent")
            coin = Coin(output, chain.height + 1, False)
        coins.append(coin)
    return coins


def check_inputs(tx: Transaction, coins: Sequence[Coin], spend_height: int) -> int:
    """Core's ``Consensus::CheckTxInputs``: maturity and amounts; returns the fee."""
    total_in = 0
    for coin in coins:
        if coin.coinbase and spend_height - coin.height < COINBASE_MATURITY:
            depth = spend_height - coin.height
            detail = f"tried to spend coinbase at depth {depth}"
            raise reject("bad-txns-premature-spend-of-coinbase", detail)
        total_in += coin.output.value
        if not 0 <= coin.output.value <= MAX_MONEY or total_in > MAX_MONEY:
            raise reject("bad-txns-inputvalues-outofrange")
    total_out = sum(out.value for out in tx.outputs)
    if total_in < total_out:
        raise reject("bad-txns-in-belowout", f"value in ({total_in}) < value out ({total_out})")
    return total_in - total_out


def check_sequence_locks(tx: Transaction, coins: Sequence[Coin], chain: ChainState) -> None:
    """BIP-68 relative lock times, evaluated for inclusion in the next block."""
    if tx.version < 2:
        return
    min_height, min_time = -1, -1
    for txin, coin in zip(tx.inputs, coins, strict=True):
        sequence = txin.sequence
        if sequence & SEQUENCE_LOCKTIME_DISABLE:
            continue
        value = sequence & SEQUENCE_LOCKTIME_MASK
        if sequence & SEQUENCE_LOCKTIME_TYPE_FLAG:
            coin_time = chain.median_time_past(max(coin.height - 1, 0))
            min_time = max(min_time, coin_time + (value << SEQUENCE_LOCKTIME_GRANULARITY) - 1)
        else:
            min_height = max(min_height, coin.height + value - 1)
    if min_height >= chain.height + 1 or min_time >= chain.median_time_past():
        raise reject("non-BIP68-final")


# -- fees, limits and replacement ---------------------------------------------------------


def check_fee(entry: MempoolEntry) -> None:
    required = fee_at_rate(entry.vsize, MIN_RELAY_FEE)
    if entry.fee < required:
        raise reject("min relay fee not met", f"{entry.fee} < {required}")


def check_package_limits(tx: Transaction, pool: Mempool, conflicts: set[bytes]) -> None:
    """Core's (pre-cluster) ancestor and descendant count limits of 25."""
    evicted = pool.with_descendants(conflicts)
    ancestors = pool.ancestors(tx) - evicted
    if len(ancestors) + 1 > MAX_PACKAGE_COUNT:
        detail = f"too many unconfirmed ancestors [limit: {MAX_PACKAGE_COUNT}]"
        raise reject("too-long-mempool-chain", detail)
    for ancestor in ancestors:
        if len(pool.with_descendants([ancestor]) - evicted) + 1 > MAX_PACKAGE_COUNT:
            detail = f"too many descendants for tx {ancestor[::-1].hex()}"
            raise reject("too-long-mempool-chain", detail)


def check_replacement(
    entry: MempoolEntry, conflicts: set[bytes], pool: Mempool
) -> frozenset[bytes]:
    """BIP-125 replacement rules; returns every entry the replacement evicts."""
    for txid in conflicts:
        conflict = pool.get(txid)
        assert conflict is not None
        if not _replaceable(conflict, pool):
            raise reject("txn-mempool-conflict")
    evicted = pool.with_descendants(conflicts)
    if len(evicted) > MAX_REPLACEMENT_CANDIDATES:
        raise reject("too many potential replacements")
    if pool.ancestors(entry.tx) & evicted:
        raise reject("bad-txns-spends-conflicting-tx")
    _check_no_new_unconfirmed(entry, conflicts, pool)
    _check_replacement_fees(entry, conflicts, evicted, pool)
    return frozenset(evicted)


def _replaceable(entry: MempoolEntry, pool: Mempool) -> bool:
    """BIP-125 signalling, explicit or inherited from an unconfirmed ancestor."""
    if entry.signals_rbf:
        return True
    return any(_entry(pool, txid).signals_rbf for txid in pool.ancestors(entry.tx))


def _entry(pool: Mempool, txid: bytes) -> MempoolEntry:
    entry = pool.get(txid)
    if entry is None:
        raise RuntimeError("mempool out of step: a relative is missing")
    return entry


def _check_no_new_unconfirmed(entry: MempoolEntry, conflicts: set[bytes], pool: Mempool) -> None:
    allowed = set().union(*(pool.parents(_entry(pool, txid).tx) for txid in conflicts))
    if pool.parents(entry.tx) - allowed:
        raise reject("replacement-adds-unconfirmed")


def _check_replacement_fees(
    entry: MempoolEntry, conflicts: set[bytes], evicted: set[bytes], pool: Mempool
) -> None:
    for txid in conflicts:
        old = _entry(pool, txid)
        if entry.fee * old.vsize <= old.fee * entry.vsize:
            raise reject("insufficient fee", f"new feerate not above that of {txid[::-1].hex()}")
    evicted_fees = sum(_entry(pool, txid).fee for txid in evicted)
    if entry.fee < evicted_fees:
        detail = f"less fees than conflicting txs; {entry.fee} < {evicted_fees}"
        raise reject("insufficient fee", detail)
    if entry.fee - evicted_fees < fee_at_rate(entry.vsize, INCREMENTAL_RELAY_FEE):
        raise reject("insufficient fee", "not enough additional fees to relay")


# -- scripts ------------------------------------------------------------------------------


def check_scripts(raw: bytes, coins: Sequence[Coin]) -> None:
    """Every input against Core's interpreter, with all consensus flags."""
    try:
        bad = failing_input(raw, [coin.output for coin in coins])
    except RuntimeError as exc:  # the kernel could not even parse it
        raise NodeError(RPC_DESERIALIZATION_ERROR, "TX decode failed", str(exc)) from exc
    if bad is not None:
        detail = f"input {bad}: script verification failed"
        raise reject(f"mandatory-script-verify-flag-failed ({detail})")


def sigop_cost(tx: Transaction, spent: Sequence[TxOut]) -> int:
    """Core's ``GetTransactionSigOpCost``: legacy and P2SH sigops x4, witness sigops x1."""
    cost = WITNESS_SCALE * sum(count_sigops(txin.script_sig) for txin in tx.inputs)
    cost += WITNESS_SCALE * sum(count_sigops(out.script_pubkey) for out in tx.outputs)
    for txin, out in zip(tx.inputs, spent, strict=True):
        script = out.script_pubkey
        if classify(script) is OutputType.P2SH:
            script = _last_push(txin.script_sig)
            cost += WITNESS_SCALE * count_sigops(script, accurate=True)
        cost += _witness_sigops(script, txin.witness)
    return cost


def _witness_sigops(script: bytes, witness: list[bytes]) -> int:
    program = witness_program(script)
    if program is None or program[0] != 0:
        return 0
    if len(program[1]) == 20:
        return 1
    if len(program[1]) == 32 and witness:
        return count_sigops(witness[-1], accurate=True)
    return 0


def _last_push(script_sig: bytes) -> bytes:
    try:
        ops = iter_ops(script_sig)
    except ScriptError:
        return b""
    return (ops[-1][1] or b"") if ops else b""


def count_sigops(script: bytes, accurate: bool = False) -> int:
    """``CScript::GetSigOpCount``; a script that fails to parse counts as none."""
    try:
        ops = iter_ops(script)
    except ScriptError:
        return 0
    count, previous = 0, -1
    for op, _ in ops:
        if op in (_OP_CHECKSIG, _OP_CHECKSIGVERIFY):
            count += 1
        elif op in (_OP_CHECKMULTISIG, _OP_CHECKMULTISIGVERIFY):
            keys = small_int(previous) if accurate else None
            count += keys if keys else 20
        previous = op
    return count
