"""Signed-transaction size estimates, shared by the coordinator's coin selection (what fee
to pay) and the appliance's review (what fee rate officers are shown).

Both sides must agree on one model, so it lives here. Assumptions: 72-byte signatures
(71-byte DER with a 33-byte R, the longest low-S signature, plus the sighash byte) and
compressed keys:

* P2WPKH input: 41 non-witness bytes, witness 1 + (1+72) + (1+33) = 108 bytes;
* P2WSH k-of-n multisig: 41 bytes, witness 1 + 1 (dummy) + k*(1+72) + len-prefixed script;
* P2SH-wrapped forms add the pushed redeem script (23 or 35 bytes) to the scriptSig;
* P2PKH 41 + 107 bytes;
* plus version, locktime, counts, outputs, and the 2-byte segwit marker in the witness.

A signature that comes out one byte shorter makes the real transaction at most 0.25 vB
smaller per signature, so an estimate is never below the real size.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.bitcoin.encoding import compact_size
from shared.bitcoin.script import push_data
from shared.bitcoin.tx import Transaction, TxOut

#: Bitcoin Core's MAX_STANDARD_TX_WEIGHT: heavier transactions are not relayed, so the
#: coordinator never builds one and the station refuses one (the one home of this bound).
MAX_STANDARD_TX_WEIGHT = 400_000
SIGNATURE_SIZE = 72  # DER (at most 71 with low S) + sighash byte
PUBKEY_SIZE = 33
WITNESS_SCALE = 4
_OUTPOINT_SEQUENCE = 32 + 4 + 4


@dataclass(frozen=True)
class InputShape:
    """How an input will be satisfied: enough to size its scriptSig and witness."""

    redeem_script: bytes | None
    witness_script: bytes | None
    threshold: int
    segwit: bool
    p2pkh: bool = False


P2WPKH_SHAPE = InputShape(None, None, 1, True)


def script_sig_size(shape: InputShape) -> int:
    if shape.segwit:
        return len(push_data(shape.redeem_script)) if shape.redeem_script else 0
    if shape.p2pkh or shape.redeem_script is None:
        return 1 + SIGNATURE_SIZE + 1 + PUBKEY_SIZE
    return 1 + shape.threshold * (1 + SIGNATURE_SIZE) + len(push_data(shape.redeem_script))


def witness_size(shape: InputShape) -> int:
    if not shape.segwit:
        return 0
    if shape.witness_script is None:
        return 1 + (1 + SIGNATURE_SIZE) + (1 + PUBKEY_SIZE)
    script = shape.witness_script
    items = 1 + shape.threshold + 1
    return (
        len(compact_size(items))
        + 1
        + shape.threshold * (1 + SIGNATURE_SIZE)
        + len(compact_size(len(script)))
        + len(script)
    )


def input_weight(shape: InputShape) -> int:
    """Weight units one signed input adds (without the transaction's segwit marker)."""
    script_sig = script_sig_size(shape)
    base = _OUTPOINT_SEQUENCE + len(compact_size(script_sig)) + script_sig
    return base * WITNESS_SCALE + witness_size(shape)


def output_weight(out: TxOut) -> int:
    return len(out.serialize()) * WITNESS_SCALE


def base_weight(outputs: list[TxOut], n_inputs: int, segwit: bool) -> int:
    """Weight of version, locktime, counts, outputs and (for segwit) the marker and flag."""
    base = 4 + 4 + len(compact_size(n_inputs)) + len(compact_size(len(outputs)))
    weight = base * WITNESS_SCALE + sum(output_weight(out) for out in outputs)
    return weight + (2 if segwit else 0)


def vsize_of(weight: int) -> int:
    return max(1, -(-weight // WITNESS_SCALE))


def estimate_weight(tx: Transaction, shapes: list[InputShape]) -> int:
    """Weight of ``tx`` once signed, with inputs satisfied as ``shapes`` says (signatures
    counted at their largest, so the real weight is at most this)."""
    segwit = any(shape.segwit for shape in shapes)
    weight = base_weight(list(tx.outputs), len(tx.inputs), segwit)
    weight += sum(input_weight(shape) for shape in shapes)
    if segwit:
        weight += sum(1 for shape in shapes if not shape.segwit)  # their empty stacks
    return weight


def estimate_vsize(tx: Transaction, shapes: list[InputShape]) -> int:
    """Virtual size of ``tx`` once signed, with inputs satisfied as ``shapes`` says."""
    return vsize_of(estimate_weight(tx, shapes))
