"""Signature hashes: BIP-143 (segwit v0) and the legacy algorithm.

BIP-143's three shared hashes (prevouts, sequences, outputs) are computed once per
transaction and reused for every input, so signing n inputs costs O(n) hashing rather
than the O(n^2) of the legacy scheme. The legacy digest exists for P2PKH/P2SH inputs
that third-party PSBTs may carry; Coldstation's own wallets are segwit.

The appliance only ever signs with SIGHASH_ALL; other types are implemented so that
foreign signatures can be verified and refused for the right reason.
"""

from __future__ import annotations

from functools import cached_property

from shared.bitcoin.encoding import compact_size, hash256, with_length
from shared.bitcoin.script import OP_CHECKSIG, OP_DUP, OP_EQUALVERIFY, OP_HASH160
from shared.bitcoin.tx import Transaction, TxOut

SIGHASH_ALL = 0x01
SIGHASH_NONE = 0x02
SIGHASH_SINGLE = 0x03
SIGHASH_ANYONECANPAY = 0x80
VALID_ECDSA_SIGHASH_TYPES = frozenset(
    base | acp for base in (SIGHASH_ALL, SIGHASH_NONE, SIGHASH_SINGLE) for acp in (0, 0x80)
)
_ONE = (1).to_bytes(32, "little")


def p2wpkh_script_code(pubkey_hash: bytes) -> bytes:
    """BIP-143 scriptCode for P2WPKH: the P2PKH script of the key hash."""
    return bytes([OP_DUP, OP_HASH160, 20]) + pubkey_hash + bytes([OP_EQUALVERIFY, OP_CHECKSIG])


class SighashCache:
    """Digests for one unsigned transaction, with BIP-143's shared parts computed once."""

    def __init__(self, tx: Transaction) -> None:
        self.tx = tx

    @cached_property
    def _hash_prevouts(self) -> bytes:
        return hash256(b"".join(txin.prevout.serialize() for txin in self.tx.inputs))

    @cached_property
    def _hash_sequence(self) -> bytes:
        return hash256(b"".join(txin.sequence.to_bytes(4, "little") for txin in self.tx.inputs))

    @cached_property
    def _hash_outputs(self) -> bytes:
        return hash256(b"".join(txout.serialize() for txout in self.tx.outputs))

    def segwit_v0(self, index: int, script_code: bytes, amount: int, hash_type: int) -> bytes:
        """BIP-143 digest of input ``index`` spending ``amount`` under ``script_code``."""
        tx = self.tx
        txin = tx.inputs[index]
        base = hash_type & 0x1F
        anyone_can_pay = bool(hash_type & SIGHASH_ANYONECANPAY)
        zero = bytes(32)
        hash_prevouts = zero if anyone_can_pay else self._hash_prevouts
        all_sequences = not anyone_can_pay and base not in (SIGHASH_SINGLE, SIGHASH_NONE)
        hash_sequence = self._hash_sequence if all_sequences else zero
        if base not in (SIGHASH_SINGLE, SIGHASH_NONE):
            hash_outputs = self._hash_outputs
        elif base == SIGHASH_SINGLE and index < len(tx.outputs):
            hash_outputs = hash256(tx.outputs[index].serialize())
        else:
            hash_outputs = zero
        preimage = b"".join(
            (
                tx.version.to_bytes(4, "little"),
                hash_prevouts,
                hash_sequence,
                txin.prevout.serialize(),
                with_length(script_code),
                amount.to_bytes(8, "little", signed=True),
                txin.sequence.to_bytes(4, "little"),
                hash_outputs,
                tx.locktime.to_bytes(4, "little"),
                _hash_type_bytes(hash_type),
            )
        )
        return hash256(preimage)

    def legacy(self, index: int, script_code: bytes, hash_type: int) -> bytes:
        """Pre-segwit digest (including the SIGHASH_SINGLE 'one' quirk).

        OP_CODESEPARATOR is not stripped: Coldstation never signs scripts that use it.
        """
        tx = self.tx
        base = hash_type & 0x1F
        if base == SIGHASH_SINGLE and index >= len(tx.outputs):
            return _ONE
        anyone_can_pay = bool(hash_type & SIGHASH_ANYONECANPAY)
        chosen = [index] if anyone_can_pay else range(len(tx.inputs))
        parts = [tx.version.to_bytes(4, "little"), compact_size(len(chosen))]
        for i in chosen:
            txin = tx.inputs[i]
            script = script_code if i == index else b""
            sequence = txin.sequence
            if i != index and base in (SIGHASH_NONE, SIGHASH_SINGLE):
                sequence = 0
            parts += [txin.prevout.serialize(), with_length(script), sequence.to_bytes(4, "little")]
        if base == SIGHASH_NONE:
            outputs: list[TxOut] = []
        elif base == SIGHASH_SINGLE:
            outputs = [TxOut(-1, b"")] * index + [tx.outputs[index]]
        else:
            outputs = tx.outputs
        parts.append(compact_size(len(outputs)))
        parts += [out.serialize() for out in outputs]
        parts += [tx.locktime.to_bytes(4, "little"), _hash_type_bytes(hash_type)]
        return hash256(b"".join(parts))


def _hash_type_bytes(hash_type: int) -> bytes:
    """The 4-byte sighash type as Core serializes its int32 (two's complement)."""
    if not -(2**31) <= hash_type < 2**32:
        raise ValueError(f"sighash type {hash_type} does not fit 32 bits")
    return (hash_type & 0xFFFFFFFF).to_bytes(4, "little")
