"""Script verification by Bitcoin Core's own interpreter (libbitcoinkernel via py-bitcoinkernel).

Every finalized transaction in the tests goes through here, so "valid" means valid to
Bitcoin Core, not to our own code.
"""

from __future__ import annotations

import pbk

from shared.bitcoin.tx import Transaction, TxOut

FLAGS = pbk.ScriptVerificationFlags.ALL


def verify_all(tx: Transaction, spent: list[TxOut]) -> list[bool]:
    """Each input's verdict; the transaction and its precomputed data are built once, so a
    1,450-input transaction costs 1,450 script checks, not 1,450 parses as well."""
    check = _verifier(tx, spent)
    return [check(i) for i in range(len(tx.inputs))]


def _verifier(tx: Transaction, spent: list[TxOut]):
    kernel_tx = pbk.Transaction(tx.serialize())
    outputs = [pbk.TransactionOutput(pbk.ScriptPubkey(o.script_pubkey), o.value) for o in spent]
    precomputed = pbk.script.PrecomputedTransactionData(kernel_tx, outputs)

    def check(index: int) -> bool:
        spk = pbk.ScriptPubkey(spent[index].script_pubkey)
        try:
            return bool(spk.verify(spent[index].value, kernel_tx, precomputed, index, FLAGS))
        except pbk.ScriptVerifyException:
            return False

    return check
