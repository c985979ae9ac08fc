"""The regtest faucet: a fixed P2WPKH key that receives every default coinbase.

Deterministic so that tests and demos can reason about it (and anyone can re-derive it);
it only ever holds regtest coins. Payments are signed with the same shared BIP-143 and
ECDSA code the rest of Coldstation uses, then go through the node's normal mempool
checks like any other transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from coincurve import PrivateKey

from shared.bitcoin import ecdsa
from shared.bitcoin.amount import dust_threshold
from shared.bitcoin.encoding import hash160, sha256
from shared.bitcoin.script import p2wpkh_script
from shared.bitcoin.sighash import SIGHASH_ALL, SighashCache, p2wpkh_script_code
from shared.bitcoin.tx import SEQUENCE_RBF, OutPoint, Transaction, TxIn, TxOut

FAUCET_SECRET = sha256(b"coldstation regtest faucet")
FAUCET_PUBKEY = PrivateKey(FAUCET_SECRET).public_key.format()
FAUCET_SCRIPT = p2wpkh_script(FAUCET_PUBKEY)
#: What the faucet pays, in sat/vB: above the 1 sat/vB floor so its payments always relay.
FAUCET_FEE_RATE = 2
#: Longest signature (72 bytes with sighash type) for sizing before signing.
_DUMMY_WITNESS = [bytes(72), FAUCET_PUBKEY]


class InsufficientFundsError(Exception):
    """The faucet's spendable coins do not cover the payment and its fee."""


def pay(coins: Sequence[tuple[OutPoint, int]], outputs: Sequence[tuple[bytes, int]]) -> Transaction:
    """A signed transaction paying ``outputs`` from the fewest leading ``coins``, with change.

    ``coins`` are (outpoint, value) in the order the faucet prefers to spend them.
    """
    amount = sum(value for _, value in outputs)
    targets = [TxOut(value, script) for script, value in outputs]
    for count in range(1, len(coins) + 1):
        chosen = list(coins[:count])
        total = sum(value for _, value in chosen)
        fee = _fee(_unsigned(chosen, [*targets, TxOut(total, FAUCET_SCRIPT)]))
        if total >= amount + fee:
            return _finish(chosen, targets, total - amount - fee)
    raise InsufficientFundsError(f"faucet cannot pay {amount} sats plus fee")


def _finish(coins: list[tuple[OutPoint, int]], targets: list[TxOut], change: int) -> Transaction:
    """Add change unless it would be dust (then it goes to the fee), and sign."""
    change_out = TxOut(change, FAUCET_SCRIPT)
    dust = dust_threshold(FAUCET_SCRIPT)
    outputs = [*targets, change_out] if change >= dust else targets
    tx = _unsigned(coins, outputs)
    sign(tx, [value for _, value in coins])
    return tx


def _unsigned(coins: Sequence[tuple[OutPoint, int]], outputs: list[TxOut]) -> Transaction:
    inputs = [TxIn(outpoint, sequence=SEQUENCE_RBF) for outpoint, _ in coins]
    return Transaction(version=2, inputs=inputs, outputs=outputs)


def _fee(tx: Transaction) -> int:
    """Fee at the faucet's rate for ``tx`` once signed (sized with worst-case signatures)."""
    for txin in tx.inputs:
        txin.witness = list(_DUMMY_WITNESS)
    vsize = tx.vsize()
    for txin in tx.inputs:
        txin.witness = []
    return vsize * FAUCET_FEE_RATE


def sign(tx: Transaction, amounts: Sequence[int]) -> None:
    """Sign every input as a faucet P2WPKH spend (BIP-143, SIGHASH_ALL, low R and S)."""
    cache = SighashCache(tx)
    script_code = p2wpkh_script_code(hash160(FAUCET_PUBKEY))
    for index, amount in enumerate(amounts):
        digest = cache.segwit_v0(index, script_code, amount, SIGHASH_ALL)
        signature = ecdsa.sign(FAUCET_SECRET, digest) + bytes([SIGHASH_ALL])
        tx.inputs[index].witness = [signature, FAUCET_PUBKEY]
