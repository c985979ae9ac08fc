"""A software PSBT signer with coincurve, for tests, the demo and third-party cosigners.

Production keys live in the HSM and are used by the appliance's own signer; this one
holds private keys in memory and must never run on the cold station. Signatures are
RFC 6979 deterministic with low S and low R, byte-identical to Bitcoin Core's.
"""

from __future__ import annotations

from coincurve import PrivateKey

from shared.bitcoin import ecdsa
from shared.bitcoin.sighash import SIGHASH_ALL, VALID_ECDSA_SIGHASH_TYPES, SighashCache
from shared.psbt.errors import PsbtSignerError
from shared.psbt.fields import PSBT_IN_PARTIAL_SIG
from shared.psbt.model import Psbt, PsbtInput
from shared.psbt.scripts import UnsupportedInputError, spend_info


def sign_psbt(psbt: Psbt, secrets: list[bytes], low_r: bool = True) -> tuple[Psbt, int]:
    """Sign every input that one of ``secrets`` can sign; returns (new PSBT, signatures added).

    ``low_r`` grinds for 70-byte signatures as Bitcoin Core does (see ``ecdsa.sign``).

    Applies the BIP-174 signer checks to every input first: any inconsistency raises
    PsbtSignerError naming the input, and nothing is signed.
    """
    result = Psbt.parse(psbt.serialize())
    keys = {PrivateKey(secret).public_key.format(compressed=True): secret for secret in secrets}
    plans = []
    for index, inp in enumerate(result.inputs):
        if inp.is_finalized:
            continue
        try:
            plans.append(spend_info(result, index))
        except UnsupportedInputError:
            continue
        except ValueError as exc:
            raise PsbtSignerError(str(exc)) from exc
        _check_sighash_type(inp)
    cache = SighashCache(result.unsigned_tx)
    added = 0
    for info in plans:
        inp = result.inputs[info.index]
        hash_type = SIGHASH_ALL if inp.sighash_type is None else inp.sighash_type
        for pubkey, secret in keys.items():
            if not info.may_sign(pubkey) or pubkey in inp.partial_sigs:
                continue
            der = ecdsa.sign(secret, info.digest(cache, hash_type), low_r)
            inp.set(PSBT_IN_PARTIAL_SIG, der + bytes([hash_type & 0xFF]), keydata=pubkey)
            added += 1
    return result, added


def _check_sighash_type(inp: PsbtInput) -> None:
    """Refuse a requested type that no ECDSA signature can carry.

    The field is any 32-bit value, but the signature's trailing byte holds only defined
    types: signing under another value would commit to one type and label it another.
    """
    hash_type = inp.sighash_type
    if hash_type is not None and hash_type not in VALID_ECDSA_SIGHASH_TYPES:
        raise PsbtSignerError(
            f"{inp.where}: PSBT_IN_SIGHASH_TYPE {hash_type & 0xFFFFFFFF:#010x} is not a "
            f"defined ECDSA sighash type"
        )
