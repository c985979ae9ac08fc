"""BIP-174 roles after signing: combiner, finalizer, extractor.

The combiner merges records and tolerates partial signatures from keys it does not know
(other cosigners' tools sign what they like); it never creates a signature. The finalizer
uses only signatures that verify against the input's own script and sighash, so a bad
signature is reported rather than put into a transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.bitcoin import ecdsa
from shared.bitcoin.encoding import compact_size, with_length
from shared.bitcoin.script import push_data
from shared.bitcoin.sighash import SIGHASH_ALL, SighashCache
from shared.bitcoin.tx import Transaction
from shared.psbt.errors import PsbtCombineError, PsbtError, PsbtFinalizeError
from shared.psbt.fields import Scope, field_name
from shared.psbt.model import Psbt, PsbtMap, split_key
from shared.psbt.scripts import SpendInfo, SpendKind, spend_info

#: Input fields where two honest copies may differ (re-signing); the first copy wins.
_FIRST_WINS = {0x00, 0x02, 0x13, 0x14, 0x1B, 0x1C}
#: What a finalized input keeps (BIP-174: UTXOs and finals; plus v2 and proprietary fields).
_KEEP_AFTER_FINALIZE = {0x00, 0x01, 0x07, 0x08, 0x0E, 0x0F, 0x10, 0x11, 0x12, 0xFC}


# -- combiner --------------------------------------------------------------------------


def combine(psbts: list[Psbt]) -> Psbt:
    """Merge PSBTs of the same unsigned transaction into one."""
    if not psbts:
        raise PsbtCombineError("nothing to combine")
    result = Psbt.parse(psbts[0].serialize())
    reference = _identity(result)
    for number, other in enumerate(psbts[1:], start=2):
        if other.version != result.version or _identity(other) != reference:
            raise PsbtCombineError(f"PSBT {number} is for a different transaction than PSBT 1")
        for mine, theirs in zip(
            [result.globals, *result.inputs, *result.outputs],
            [other.globals, *other.inputs, *other.outputs],
            strict=True,
        ):
            _merge_map(mine, theirs, number)
    return result


def _identity(psbt: Psbt) -> bytes:
    return psbt.unsigned_tx.serialize(include_witness=False)


def _merge_map(mine: PsbtMap, theirs: PsbtMap, number: int) -> None:
    records = mine.raw_records()
    for key, value in theirs.raw_records().items():
        if key not in records:
            mine.set_record(key, value)
            continue
        key_type, _ = split_key(key)
        if records[key] == value or (mine.scope is Scope.INPUT and key_type in _FIRST_WINS):
            continue
        raise PsbtCombineError(
            f"{mine.where}: {field_name(mine.scope, key_type)} differs between PSBT 1 "
            f"and PSBT {number}"
        )


# -- finalizer -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FinalizeResult:
    psbt: Psbt
    problems: dict[int, str]  # input index -> why it is not final

    @property
    def complete(self) -> bool:
        return not self.problems


def finalize(psbt: Psbt) -> FinalizeResult:
    """Finalize every input that has enough valid signatures; report the others."""
    result = Psbt.parse(psbt.serialize())
    cache = SighashCache(result.unsigned_tx)
    problems: dict[int, str] = {}
    for index, inp in enumerate(result.inputs):
        if inp.is_finalized:
            continue
        try:
            info = spend_info(result, index)
            script_sig, witness = _final_scripts(result, info, cache)
        except PsbtError as exc:
            problems[index] = str(exc)
            continue
        if script_sig:
            inp.set(0x07, script_sig)
        if witness:
            inp.set(0x08, _encode_witness(witness))
        inp.keep_only(_KEEP_AFTER_FINALIZE)
    return FinalizeResult(result, problems)


def valid_signatures(psbt: Psbt, info: SpendInfo, cache: SighashCache) -> dict[bytes, bytes]:
    """Partial signatures by keys that may sign this input, each checked; a bad one raises.

    Signatures by keys foreign to the script are ignored, not errors: a cosigner's tool
    may add them.
    """
    inp = psbt.inputs[info.index]
    required_type = inp.sighash_type
    valid: dict[bytes, bytes] = {}
    for pubkey, sig in inp.partial_sigs.items():
        if not info.may_sign(pubkey):
            continue
        hash_type = sig[-1]
        if hash_type != (SIGHASH_ALL if required_type is None else required_type):
            raise PsbtFinalizeError(
                f"{inp.where}: signature by {pubkey.hex()} uses sighash type {hash_type:#04x}, "
                f"not the type the PSBT asks for"
            )
        if not ecdsa.verify(pubkey, sig[:-1], info.digest(cache, hash_type)):
            raise PsbtFinalizeError(f"{inp.where}: signature by {pubkey.hex()} does not verify")
        valid[pubkey] = sig
    return valid


def _final_scripts(psbt: Psbt, info: SpendInfo, cache: SighashCache) -> tuple[bytes, list[bytes]]:
    sigs = valid_signatures(psbt, info, cache)
    where = psbt.inputs[info.index].where
    if info.kind is SpendKind.MULTISIG:
        ordered = [sigs[key] for key in info.keys if key in sigs][: info.threshold]
        if len(ordered) < info.threshold:
            raise PsbtFinalizeError(
                f"{where}: has {len(ordered)} of the {info.threshold} signatures required"
            )
        stack = [b"", *ordered]
        inner = info.witness_script if info.segwit else info.redeem_script
    else:
        if not sigs:
            raise PsbtFinalizeError(f"{where}: no valid signature for the key")
        pubkey, sig = next(iter(sigs.items()))
        stack, inner = [sig, pubkey], None
    if info.segwit:
        witness = stack + ([inner] if inner is not None else [])
        script_sig = push_data(info.redeem_script) if info.redeem_script else b""
        return script_sig, witness
    items = stack + ([inner] if inner is not None else [])
    script_sig = b"".join(push_data(item) for item in items)
    return script_sig, []


def _encode_witness(items: list[bytes]) -> bytes:
    return compact_size(len(items)) + b"".join(with_length(item) for item in items)


# -- extractor -------------------------------------------------------------------------


def extract(psbt: Psbt) -> Transaction:
    """The network transaction of a fully finalized PSBT."""
    tx = psbt.unsigned_tx
    for txin, inp in zip(tx.inputs, psbt.inputs, strict=True):
        if not inp.is_finalized:
            raise PsbtFinalizeError(f"{inp.where}: not finalized; cannot extract")
        txin.script_sig = inp.final_script_sig or b""
        txin.witness = list(inp.final_script_witness or [])
    return tx
