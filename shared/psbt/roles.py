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
from shared.bitcoin.script import ScriptError, iter_ops, push_data
from shared.bitcoin.sighash import SIGHASH_ALL, SighashCache
from shared.bitcoin.tx import Transaction
from shared.psbt import fields as f
from shared.psbt.errors import PsbtCombineError, PsbtError, PsbtFinalizeError
from shared.psbt.fields import Scope, field_name
from shared.psbt.model import Psbt, PsbtMap, split_key
from shared.psbt.scripts import SpendInfo, SpendKind, spend_info

#: Input fields where two honest copies may differ (re-signing); the first copy wins.
_FIRST_WINS = {
    f.PSBT_IN_NON_WITNESS_UTXO,
    f.PSBT_IN_PARTIAL_SIG,
    f.PSBT_IN_TAP_KEY_SIG,
    f.PSBT_IN_TAP_SCRIPT_SIG,
    f.PSBT_IN_MUSIG2_PUB_NONCE,
    f.PSBT_IN_MUSIG2_PARTIAL_SIG,
}
#: What a finalized input keeps (BIP-174: UTXOs and finals; plus v2 and proprietary fields).
_KEEP_AFTER_FINALIZE = {
    f.PSBT_IN_NON_WITNESS_UTXO,
    f.PSBT_IN_WITNESS_UTXO,
    f.PSBT_IN_FINAL_SCRIPTSIG,
    f.PSBT_IN_FINAL_SCRIPTWITNESS,
    f.PSBT_IN_PREVIOUS_TXID,
    f.PSBT_IN_OUTPUT_INDEX,
    f.PSBT_IN_SEQUENCE,
    f.PSBT_IN_REQUIRED_TIME_LOCKTIME,
    f.PSBT_IN_REQUIRED_HEIGHT_LOCKTIME,
    f.PSBT_IN_PROPRIETARY,
}


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
            inp.set(f.PSBT_IN_FINAL_SCRIPTSIG, script_sig)
        if witness:
            inp.set(f.PSBT_IN_FINAL_SCRIPTWITNESS, _encode_witness(witness))
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


def final_signatures(
    psbt: Psbt, info: SpendInfo, cache: SighashCache, script_sig: bytes, witness: list[bytes]
) -> dict[bytes, bytes]:
    """The signatures in a finalized input, each checked as strictly as a partial signature.

    A cosigner may answer with inputs already finalized (Bitcoin Core's ``walletprocesspsbt``
    finalizes by default, and then drops the partial signatures). Such an input is accepted
    only in exactly the form this finalizer writes for the input's script, as ``info``
    resolves it from the *request* (not from the response, which no longer carries the
    scripts): the same scriptSig and witness shape, the request's redeem and witness
    scripts, the threshold's number of signatures, each in strict low-S DER with the sighash
    type the PSBT asks for, verifying under a key that may sign, in script order.
    Raises PsbtFinalizeError naming the input; returns public key -> signature.
    """
    where = psbt.inputs[info.index].where
    required = psbt.inputs[info.index].sighash_type
    required = SIGHASH_ALL if required is None else required
    if info.segwit:
        items = list(witness)
        expected_sig = push_data(info.redeem_script) if info.redeem_script else b""
        if script_sig != expected_sig:
            raise PsbtFinalizeError(f"{where}: final scriptSig is not the input's redeem script")
    else:
        if witness:
            raise PsbtFinalizeError(f"{where}: a final witness on a non-witness input")
        items = _pushes(script_sig, where)
    if info.kind is SpendKind.MULTISIG:
        inner = info.witness_script if info.segwit else info.redeem_script
        if inner is not None:
            if not items or items[-1] != inner:
                raise PsbtFinalizeError(f"{where}: final script is not the request's script")
            items = items[:-1]
        if len(items) != info.threshold + 1 or items[0] != b"":
            raise PsbtFinalizeError(
                f"{where}: final script holds {max(len(items) - 1, 0)} signature(s) or a non-"
                f"empty dummy; {info.threshold} signature(s) after an empty dummy expected"
            )
        return _match_multisig(info, cache, items[1:], required, where)
    if len(items) != 2 or not info.may_sign(items[1]):
        raise PsbtFinalizeError(f"{where}: final script is not a signature and the input's key")
    _check_final_signature(info, cache, items[1], items[0], required, where)
    return {items[1]: items[0]}


def _pushes(script_sig: bytes, where: str) -> list[bytes]:
    """The items of a push-only scriptSig, refusing anything not minimally pushed."""
    try:
        items = [data for _, data in iter_ops(script_sig)]
    except ScriptError as exc:
        raise PsbtFinalizeError(f"{where}: final scriptSig does not parse: {exc}") from exc
    if any(item is None for item in items):
        raise PsbtFinalizeError(f"{where}: final scriptSig is not push-only")
    pushed = [item for item in items if item is not None]
    if b"".join(push_data(item) for item in pushed) != script_sig:
        raise PsbtFinalizeError(f"{where}: final scriptSig is not minimally pushed")
    return pushed


def _match_multisig(
    info: SpendInfo, cache: SighashCache, sigs: list[bytes], required: int, where: str
) -> dict[bytes, bytes]:
    """CHECKMULTISIG's rule: each signature by a later key than the one before."""
    found: dict[bytes, bytes] = {}
    keys = list(info.keys)
    for sig in sigs:
        while keys:
            key = keys.pop(0)
            if _signature_ok(info, cache, key, sig, required):
                found[key] = sig
                break
        else:
            raise PsbtFinalizeError(
                f"{where}: a final signature does not verify under any remaining key of the "
                "script, in order"
            )
    return found


def _check_final_signature(
    info: SpendInfo, cache: SighashCache, pubkey: bytes, sig: bytes, required: int, where: str
) -> None:
    if not _signature_ok(info, cache, pubkey, sig, required):
        raise PsbtFinalizeError(f"{where}: final signature by {pubkey.hex()} does not verify")


def _signature_ok(
    info: SpendInfo, cache: SighashCache, pubkey: bytes, sig: bytes, required: int
) -> bool:
    if not ecdsa.is_valid_signature_encoding(sig) or sig[-1] != required:
        return False
    return ecdsa.verify(pubkey, sig[:-1], info.digest(cache, sig[-1]))


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
