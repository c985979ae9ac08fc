"""The PSBT field registry: every BIP-174/370/371/373 key type, its key and value rules.

Each known key type maps to a :class:`FieldSpec` whose decoder checks the key data and the
value exactly as Bitcoin Core does (the reference the BIP vectors are tested against)
and returns a Python value. Types not in the registry are kept as unknown records;
``0xFC`` records are proprietary and kept byte for byte.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from shared.bitcoin.bip32 import KeyOrigin
from shared.bitcoin.ecdsa import is_valid_pubkey, is_valid_signature_encoding
from shared.bitcoin.encoding import ByteReader, DecodeError
from shared.bitcoin.tx import LOCKTIME_THRESHOLD, Transaction, TxOut

TAPROOT_CONTROL_MAX_NODE_COUNT = 128
TAPROOT_LEAF_MASK = 0xFE

# -- key types, by their BIP-174/370/371/373 names ----------------------------------------

#: The one type every map shares: a vendor's records, kept byte for byte.
PROPRIETARY = 0xFC

PSBT_GLOBAL_UNSIGNED_TX = 0x00
PSBT_GLOBAL_XPUB = 0x01
PSBT_GLOBAL_TX_VERSION = 0x02
PSBT_GLOBAL_FALLBACK_LOCKTIME = 0x03
PSBT_GLOBAL_INPUT_COUNT = 0x04
PSBT_GLOBAL_OUTPUT_COUNT = 0x05
PSBT_GLOBAL_TX_MODIFIABLE = 0x06
PSBT_GLOBAL_VERSION = 0xFB
PSBT_GLOBAL_PROPRIETARY = PROPRIETARY

PSBT_IN_NON_WITNESS_UTXO = 0x00
PSBT_IN_WITNESS_UTXO = 0x01
PSBT_IN_PARTIAL_SIG = 0x02
PSBT_IN_SIGHASH_TYPE = 0x03
PSBT_IN_REDEEM_SCRIPT = 0x04
PSBT_IN_WITNESS_SCRIPT = 0x05
PSBT_IN_BIP32_DERIVATION = 0x06
PSBT_IN_FINAL_SCRIPTSIG = 0x07
PSBT_IN_FINAL_SCRIPTWITNESS = 0x08
PSBT_IN_RIPEMD160 = 0x0A
PSBT_IN_SHA256 = 0x0B
PSBT_IN_HASH160 = 0x0C
PSBT_IN_HASH256 = 0x0D
PSBT_IN_PREVIOUS_TXID = 0x0E
PSBT_IN_OUTPUT_INDEX = 0x0F
PSBT_IN_SEQUENCE = 0x10
PSBT_IN_REQUIRED_TIME_LOCKTIME = 0x11
PSBT_IN_REQUIRED_HEIGHT_LOCKTIME = 0x12
PSBT_IN_TAP_KEY_SIG = 0x13
PSBT_IN_TAP_SCRIPT_SIG = 0x14
PSBT_IN_TAP_LEAF_SCRIPT = 0x15
PSBT_IN_TAP_BIP32_DERIVATION = 0x16
PSBT_IN_TAP_INTERNAL_KEY = 0x17
PSBT_IN_TAP_MERKLE_ROOT = 0x18
PSBT_IN_MUSIG2_PARTICIPANT_PUBKEYS = 0x1A
PSBT_IN_MUSIG2_PUB_NONCE = 0x1B
PSBT_IN_MUSIG2_PARTIAL_SIG = 0x1C
PSBT_IN_PROPRIETARY = PROPRIETARY

PSBT_OUT_REDEEM_SCRIPT = 0x00
PSBT_OUT_WITNESS_SCRIPT = 0x01
PSBT_OUT_BIP32_DERIVATION = 0x02
PSBT_OUT_AMOUNT = 0x03
PSBT_OUT_SCRIPT = 0x04
PSBT_OUT_TAP_INTERNAL_KEY = 0x05
PSBT_OUT_TAP_TREE = 0x06
PSBT_OUT_TAP_BIP32_DERIVATION = 0x07
PSBT_OUT_MUSIG2_PARTICIPANT_PUBKEYS = 0x08
PSBT_OUT_PROPRIETARY = PROPRIETARY


class Scope(Enum):
    GLOBAL = "global"
    INPUT = "input"
    OUTPUT = "output"


class FieldValueError(ValueError):
    """Raised by decoders; the map wraps it into a PsbtFieldError with location."""


Decoder = Callable[[bytes, bytes], Any]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    decode: Decoder
    key_len: int | None = 0  # length of key data after the type; None: decoder checks it
    only_version: int | None = None  # 0 or 2 when the field exists in one version only


# -- small decoders --------------------------------------------------------------------


def _exact(value: bytes, size: int, what: str = "value") -> bytes:
    if len(value) != size:
        raise FieldValueError(f"{what} must be {size} bytes, got {len(value)}")
    return value


def _u32(_: bytes, value: bytes) -> int:
    return int.from_bytes(_exact(value, 4), "little")


def _i32(_: bytes, value: bytes) -> int:
    return int.from_bytes(_exact(value, 4), "little", signed=True)


def _raw(_: bytes, value: bytes) -> bytes:
    return value


def _hash32(_: bytes, value: bytes) -> bytes:
    return _exact(value, 32)


def _compact_exact(_: bytes, value: bytes) -> int:
    reader = ByteReader(value)
    try:
        n = reader.read_compact_size("count")
    except DecodeError as exc:
        raise FieldValueError(str(exc)) from exc
    if not reader.at_end():
        raise FieldValueError("value has bytes after the count")
    return n


def _pubkey(data: bytes, what: str = "public key") -> bytes:
    if not is_valid_pubkey(data):
        raise FieldValueError(f"invalid {what} {data.hex()}")
    return data


def _keyed_pubkey(keydata: bytes) -> bytes:
    if len(keydata) not in (33, 65):
        raise FieldValueError(f"key must hold a 33 or 65 byte public key, got {len(keydata)}")
    return _pubkey(keydata)


def _key_origin(value: bytes) -> KeyOrigin:
    if len(value) == 0 or len(value) % 4:
        raise FieldValueError(f"invalid length {len(value)} for a BIP-32 key origin")
    try:
        return KeyOrigin.from_psbt_bytes(value)
    except ValueError as exc:
        raise FieldValueError(str(exc)) from exc


# -- globals ---------------------------------------------------------------------------


def _unsigned_tx(_: bytes, value: bytes) -> Transaction:
    try:
        tx = Transaction.parse(value, allow_witness=False)
    except DecodeError as exc:
        raise FieldValueError(f"not a transaction without witness: {exc}") from exc
    for index, txin in enumerate(tx.inputs):
        if txin.script_sig or txin.witness:
            raise FieldValueError(f"unsigned transaction input {index} has a non-empty scriptSig")
    return tx


def _global_xpub(keydata: bytes, value: bytes) -> KeyOrigin:
    if len(keydata) != 78:
        raise FieldValueError(f"key must hold a 78-byte extended public key, got {len(keydata)}")
    _pubkey(keydata[45:78], "extended public key")
    return _key_origin(value)


def _psbt_version(_: bytes, value: bytes) -> int:
    version = _u32(_, value)
    if version > 2:
        raise FieldValueError(f"unsupported PSBT version {version}")
    return version


def _tx_modifiable(_: bytes, value: bytes) -> int:
    return _exact(value, 1)[0]


# -- inputs ----------------------------------------------------------------------------


def _non_witness_utxo(_: bytes, value: bytes) -> Transaction:
    try:
        return _parsed_transaction(value)
    except DecodeError as exc:
        raise FieldValueError(f"not a transaction: {exc}") from exc


@functools.lru_cache(maxsize=64)
def _parsed_transaction(value: bytes) -> Transaction:
    """A previous transaction, parsed once however many inputs carry it: a batch paying
    out of one 1,000-output funding transaction carries the same 32 kB in each of its
    inputs. The parsed value is shared, as :meth:`PsbtMap.copy` shares it: decoded values
    are read-only views of their record bytes (a change goes through ``set_record``)."""
    return Transaction.parse(value)


def _txout(_: bytes, value: bytes) -> TxOut:
    try:
        return TxOut.parse(value)
    except DecodeError as exc:
        raise FieldValueError(f"not a transaction output: {exc}") from exc


def _partial_sig(keydata: bytes, value: bytes) -> bytes:
    _keyed_pubkey(keydata)
    if not value or not is_valid_signature_encoding(value):
        raise FieldValueError("signature is not strict DER with a defined sighash type")
    return value


def _bip32_derivation(keydata: bytes, value: bytes) -> KeyOrigin:
    _keyed_pubkey(keydata)
    return _key_origin(value)


def _witness_stack(_: bytes, value: bytes) -> list[bytes]:
    reader = ByteReader(value)
    try:
        count = reader.read_compact_size("witness item count")
        if count > reader.remaining():
            raise FieldValueError(f"witness item count {count} exceeds the bytes present")
        items = [reader.read_var_bytes("witness item") for _ in range(count)]
    except DecodeError as exc:
        raise FieldValueError(str(exc)) from exc
    if not reader.at_end():
        raise FieldValueError("bytes after the witness stack")
    return items


def _preimage(size: int) -> Callable[[bytes, bytes], bytes]:
    def decode(keydata: bytes, value: bytes) -> bytes:
        _exact(keydata, size, "hash in key")
        return value

    return decode


def _time_locktime(_: bytes, value: bytes) -> int:
    locktime = _u32(_, value)
    if locktime < LOCKTIME_THRESHOLD:
        raise FieldValueError(f"time-based locktime {locktime} is below 500000000")
    return locktime


def _height_locktime(_: bytes, value: bytes) -> int:
    locktime = _u32(_, value)
    if locktime == 0 or locktime >= LOCKTIME_THRESHOLD:
        raise FieldValueError(f"height-based locktime {locktime} is not in 1..499999999")
    return locktime


def _schnorr_sig(value: bytes) -> bytes:
    if not 64 <= len(value) <= 65:
        raise FieldValueError(f"Schnorr signature must be 64 or 65 bytes, got {len(value)}")
    return value


def _tap_key_sig(_: bytes, value: bytes) -> bytes:
    return _schnorr_sig(value)


def _tap_script_sig(keydata: bytes, value: bytes) -> bytes:
    _exact(keydata, 64, "x-only key and leaf hash in key")
    return _schnorr_sig(value)


def _tap_leaf_script(keydata: bytes, value: bytes) -> tuple[bytes, int]:
    if len(keydata) < 33 or (len(keydata) - 1) % 32:
        raise FieldValueError(f"control block of {len(keydata)} bytes is not 33 + 32k")
    if not value:
        raise FieldValueError("leaf script value must hold at least the leaf version")
    return value[:-1], value[-1]


def _tap_bip32(keydata: bytes, value: bytes) -> tuple[list[bytes], KeyOrigin]:
    _exact(keydata, 32, "x-only key")
    reader = ByteReader(value)
    try:
        count = reader.read_compact_size("leaf hash count")
        if count * 32 > reader.remaining():
            raise FieldValueError("leaf hashes run past the value")
        hashes = [reader.read(32, "leaf hash") for _ in range(count)]
    except DecodeError as exc:
        raise FieldValueError(str(exc)) from exc
    return hashes, _key_origin(reader.read(reader.remaining()))


def _musig_participants(keydata: bytes, value: bytes) -> list[bytes]:
    _exact(keydata, 33, "aggregate public key")
    _pubkey(keydata, "MuSig2 aggregate public key")
    keys = [value[i : i + 33] for i in range(0, len(value) - 32, 33)]
    for key in keys:
        _pubkey(key, "MuSig2 participant public key")
    if len(value) % 33:
        raise FieldValueError("participant keys value is not a multiple of 33 bytes")
    return keys


def _musig_ids(keydata: bytes) -> None:
    if len(keydata) not in (66, 98):
        raise FieldValueError(f"key data must be 66 or 98 bytes, got {len(keydata)}")
    _pubkey(keydata[:33], "MuSig2 participant public key")
    _pubkey(keydata[33:66], "MuSig2 aggregate public key")


def _musig_pubnonce(keydata: bytes, value: bytes) -> bytes:
    _musig_ids(keydata)
    return _exact(value, 66, "public nonce")


def _musig_partial_sig(keydata: bytes, value: bytes) -> bytes:
    _musig_ids(keydata)
    return _exact(value, 32, "partial signature")


# -- outputs ---------------------------------------------------------------------------


def _amount(_: bytes, value: bytes) -> int:
    return int.from_bytes(_exact(value, 8), "little", signed=True)


def _tap_tree(_: bytes, value: bytes) -> list[tuple[int, int, bytes]]:
    if not value:
        raise FieldValueError("taproot tree must not be empty")
    reader = ByteReader(value)
    leaves: list[tuple[int, int, bytes]] = []
    try:
        while not reader.at_end():
            depth = reader.read(1, "leaf depth")[0]
            leaf_version = reader.read(1, "leaf version")[0]
            script = reader.read_var_bytes("leaf script")
            if depth > TAPROOT_CONTROL_MAX_NODE_COUNT:
                raise FieldValueError(f"leaf depth {depth} exceeds 128")
            if leaf_version & ~TAPROOT_LEAF_MASK:
                raise FieldValueError(f"invalid leaf version {leaf_version:#04x}")
            leaves.append((depth, leaf_version, script))
    except DecodeError as exc:
        raise FieldValueError(str(exc)) from exc
    if not _tree_is_complete([depth for depth, _, _ in leaves]):
        raise FieldValueError("leaf depths do not form a complete binary tree")
    return leaves


def _tree_is_complete(depths: list[int]) -> bool:
    """Replay Bitcoin Core's TaprootBuilder on depths alone (depth-first, left to right)."""
    branch: list[bool] = []  # branch[d]: a finished subtree waits at depth d
    for depth in depths:
        if depth + 1 < len(branch):
            return False
        while len(branch) > depth and branch[depth]:
            branch.pop()
            if depth == 0:
                return False
            depth -= 1
        if len(branch) <= depth:
            branch.extend([False] * (depth + 1 - len(branch)))
        branch[depth] = True
    return len(branch) == 1 and branch[0]


def _proprietary(keydata: bytes, value: bytes) -> bytes:
    reader = ByteReader(keydata)
    try:
        reader.read_var_bytes("proprietary identifier")
        reader.read_compact_size("proprietary subtype")
    except DecodeError as exc:
        raise FieldValueError(str(exc)) from exc
    return value


# -- the registry ----------------------------------------------------------------------


def _by_type(*specs: FieldSpec) -> dict[int, FieldSpec]:
    """Each spec under the key type its BIP name stands for (the constants above), so a
    name and its number are written once and cannot drift apart."""
    return {globals()[spec.name]: spec for spec in specs}


GLOBAL_FIELDS = _by_type(
    FieldSpec("PSBT_GLOBAL_UNSIGNED_TX", _unsigned_tx, only_version=0),
    FieldSpec("PSBT_GLOBAL_XPUB", _global_xpub, key_len=None),
    FieldSpec("PSBT_GLOBAL_TX_VERSION", _u32, only_version=2),
    FieldSpec("PSBT_GLOBAL_FALLBACK_LOCKTIME", _u32, only_version=2),
    FieldSpec("PSBT_GLOBAL_INPUT_COUNT", _compact_exact, only_version=2),
    FieldSpec("PSBT_GLOBAL_OUTPUT_COUNT", _compact_exact, only_version=2),
    FieldSpec("PSBT_GLOBAL_TX_MODIFIABLE", _tx_modifiable, only_version=2),
    FieldSpec("PSBT_GLOBAL_VERSION", _psbt_version),
    FieldSpec("PSBT_GLOBAL_PROPRIETARY", _proprietary, key_len=None),
)

INPUT_FIELDS = _by_type(
    FieldSpec("PSBT_IN_NON_WITNESS_UTXO", _non_witness_utxo),
    FieldSpec("PSBT_IN_WITNESS_UTXO", _txout),
    FieldSpec("PSBT_IN_PARTIAL_SIG", _partial_sig, key_len=None),
    FieldSpec("PSBT_IN_SIGHASH_TYPE", _i32),
    FieldSpec("PSBT_IN_REDEEM_SCRIPT", _raw),
    FieldSpec("PSBT_IN_WITNESS_SCRIPT", _raw),
    FieldSpec("PSBT_IN_BIP32_DERIVATION", _bip32_derivation, key_len=None),
    FieldSpec("PSBT_IN_FINAL_SCRIPTSIG", _raw),
    FieldSpec("PSBT_IN_FINAL_SCRIPTWITNESS", _witness_stack),
    FieldSpec("PSBT_IN_RIPEMD160", _preimage(20), key_len=None),
    FieldSpec("PSBT_IN_SHA256", _preimage(32), key_len=None),
    FieldSpec("PSBT_IN_HASH160", _preimage(20), key_len=None),
    FieldSpec("PSBT_IN_HASH256", _preimage(32), key_len=None),
    FieldSpec("PSBT_IN_PREVIOUS_TXID", _hash32, only_version=2),
    FieldSpec("PSBT_IN_OUTPUT_INDEX", _u32, only_version=2),
    FieldSpec("PSBT_IN_SEQUENCE", _u32, only_version=2),
    FieldSpec("PSBT_IN_REQUIRED_TIME_LOCKTIME", _time_locktime, only_version=2),
    FieldSpec("PSBT_IN_REQUIRED_HEIGHT_LOCKTIME", _height_locktime, only_version=2),
    FieldSpec("PSBT_IN_TAP_KEY_SIG", _tap_key_sig),
    FieldSpec("PSBT_IN_TAP_SCRIPT_SIG", _tap_script_sig, key_len=None),
    FieldSpec("PSBT_IN_TAP_LEAF_SCRIPT", _tap_leaf_script, key_len=None),
    FieldSpec("PSBT_IN_TAP_BIP32_DERIVATION", _tap_bip32, key_len=None),
    FieldSpec("PSBT_IN_TAP_INTERNAL_KEY", _hash32),
    FieldSpec("PSBT_IN_TAP_MERKLE_ROOT", _hash32),
    FieldSpec("PSBT_IN_MUSIG2_PARTICIPANT_PUBKEYS", _musig_participants, key_len=None),
    FieldSpec("PSBT_IN_MUSIG2_PUB_NONCE", _musig_pubnonce, key_len=None),
    FieldSpec("PSBT_IN_MUSIG2_PARTIAL_SIG", _musig_partial_sig, key_len=None),
    FieldSpec("PSBT_IN_PROPRIETARY", _proprietary, key_len=None),
)

OUTPUT_FIELDS = _by_type(
    FieldSpec("PSBT_OUT_REDEEM_SCRIPT", _raw),
    FieldSpec("PSBT_OUT_WITNESS_SCRIPT", _raw),
    FieldSpec("PSBT_OUT_BIP32_DERIVATION", _bip32_derivation, key_len=None),
    FieldSpec("PSBT_OUT_AMOUNT", _amount, only_version=2),
    FieldSpec("PSBT_OUT_SCRIPT", _raw, only_version=2),
    FieldSpec("PSBT_OUT_TAP_INTERNAL_KEY", _hash32),
    FieldSpec("PSBT_OUT_TAP_TREE", _tap_tree),
    FieldSpec("PSBT_OUT_TAP_BIP32_DERIVATION", _tap_bip32, key_len=None),
    FieldSpec("PSBT_OUT_MUSIG2_PARTICIPANT_PUBKEYS", _musig_participants, key_len=None),
    FieldSpec("PSBT_OUT_PROPRIETARY", _proprietary, key_len=None),
)

REGISTRY: dict[Scope, dict[int, FieldSpec]] = {
    Scope.GLOBAL: GLOBAL_FIELDS,
    Scope.INPUT: INPUT_FIELDS,
    Scope.OUTPUT: OUTPUT_FIELDS,
}


def field_name(scope: Scope, key_type: int) -> str:
    spec = REGISTRY[scope].get(key_type)
    return spec.name if spec else f"unknown type {key_type:#04x}"
