"""How an input is spent: the script path from scriptPubKey to the keys that sign it.

The signer, the finalizer and (later) the appliance's ownership checks all need the same
answer to "which script does this input's signature commit to, and which keys may sign",
so it is computed once here, with the BIP-174 signer consistency checks applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from shared.bitcoin.encoding import hash160, sha256
from shared.bitcoin.script import (
    OutputType,
    classify,
    p2sh_wrap,
    parse_multisig,
    witness_program,
)
from shared.bitcoin.sighash import SIGHASH_ALL, SighashCache, p2wpkh_script_code
from shared.bitcoin.tx import TxOut
from shared.psbt.errors import PsbtError
from shared.psbt.model import Psbt


class SpendKind(Enum):
    P2PKH = "p2pkh"
    P2WPKH = "p2wpkh"
    MULTISIG = "multisig"  # bare, P2SH, P2WSH or P2SH-P2WSH, told apart by the scripts


class UnsupportedInputError(PsbtError):
    """An input whose script Coldstation does not sign or finalize (e.g. taproot)."""


@dataclass(frozen=True, slots=True)
class SpendInfo:
    """Everything needed to sign, verify and finalize one input."""

    index: int
    utxo: TxOut
    kind: SpendKind
    segwit: bool
    script_code: bytes  # what the signature hash commits to
    keys: tuple[bytes, ...]  # keys that may sign, in script order
    threshold: int
    key_hash: bytes | None  # for P2PKH/P2WPKH: the hash the key must match
    redeem_script: bytes | None
    witness_script: bytes | None

    def digest(self, cache: SighashCache, hash_type: int = SIGHASH_ALL) -> bytes:
        if self.segwit:
            return cache.segwit_v0(self.index, self.script_code, self.utxo.value, hash_type)
        return cache.legacy(self.index, self.script_code, hash_type)

    def may_sign(self, pubkey: bytes) -> bool:
        if self.key_hash is not None:
            return hash160(pubkey) == self.key_hash
        return pubkey in self.keys


def spend_info(psbt: Psbt, index: int) -> SpendInfo:
    """Resolve how input ``index`` is spent, refusing inconsistent PSBT data.

    Raises PsbtError naming the input when the UTXO is missing, when the witness UTXO
    disagrees with the full previous transaction, when scripts do not hash to what the
    output commits to, or when a witness UTXO is offered for a non-witness spend.
    """
    inp = psbt.inputs[index]
    where = inp.where
    utxo = _utxo(psbt, index)
    redeem, witness_script = inp.redeem_script, inp.witness_script
    script = utxo.script_pubkey
    if redeem is not None:
        if classify(script) is not OutputType.P2SH or p2sh_wrap(redeem) != script:
            raise PsbtError(f"{where}: redeemScript does not match the scriptPubKey")
        script = redeem
    program = witness_program(script)
    if program is None:
        if inp.non_witness_utxo is None:
            raise PsbtError(f"{where}: witness UTXO given for a non-witness input")
        return _legacy(index, utxo, script, redeem)
    version, prog = program
    if version == 0 and len(prog) == 20:
        return SpendInfo(
            index, utxo, SpendKind.P2WPKH, True, p2wpkh_script_code(prog), (), 1, prog, redeem, None
        )
    if version == 0 and len(prog) == 32:
        if witness_script is None or sha256(witness_script) != prog:
            raise PsbtError(f"{where}: witnessScript does not match the witness program")
        multisig = parse_multisig(witness_script)
        if multisig is None:
            raise UnsupportedInputError(f"{where}: witnessScript is not a multisig script")
        return SpendInfo(
            index,
            utxo,
            SpendKind.MULTISIG,
            True,
            witness_script,
            multisig.pubkeys,
            multisig.threshold,
            None,
            redeem,
            witness_script,
        )
    raise UnsupportedInputError(f"{where}: witness version {version} inputs are not supported")


def _utxo(psbt: Psbt, index: int) -> TxOut:
    inp = psbt.inputs[index]
    full = psbt.input_utxo(index) if inp.non_witness_utxo is not None else None
    if full is not None and inp.witness_utxo is not None and inp.witness_utxo != full:
        raise PsbtError(
            f"{inp.where}: PSBT_IN_WITNESS_UTXO disagrees with PSBT_IN_NON_WITNESS_UTXO"
        )
    utxo = full or inp.witness_utxo
    if utxo is None:
        raise PsbtError(f"{inp.where}: no UTXO information (neither witness nor non-witness)")
    return utxo


def _legacy(index: int, utxo: TxOut, script: bytes, redeem: bytes | None) -> SpendInfo:
    multisig = parse_multisig(script)
    if multisig is not None:
        return SpendInfo(
            index,
            utxo,
            SpendKind.MULTISIG,
            False,
            script,
            multisig.pubkeys,
            multisig.threshold,
            None,
            redeem,
            None,
        )
    if classify(script) is OutputType.P2PKH and redeem is None:
        return SpendInfo(
            index, utxo, SpendKind.P2PKH, False, script, (), 1, script[3:23], None, None
        )
    kind = classify(script).value
    raise UnsupportedInputError(f"input {index}: script type {kind} is not supported")
