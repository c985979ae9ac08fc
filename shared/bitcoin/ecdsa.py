"""ECDSA over secp256k1 as Bitcoin uses it: strict DER, low S, public-key checks.

One home for signature encoding rules so the PSBT parser, the finalizer, the software
signer and the appliance's HSM signer (which receives raw ``r||s`` from PKCS#11) agree.
The curve arithmetic itself is libsecp256k1 through coincurve.
"""

from __future__ import annotations

from coincurve import PrivateKey, PublicKey
from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT

from shared.bitcoin.sighash import VALID_ECDSA_SIGHASH_TYPES

CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_ORDER = CURVE_ORDER // 2


def is_valid_pubkey(data: bytes) -> bool:
    """True for a 33-byte compressed or 65-byte uncompressed/hybrid point on the curve."""
    if len(data) not in (33, 65):
        return False
    if (len(data) == 33) != (data[0] in (2, 3)):
        return False
    # libsecp256k1's own parse, as coincurve's PublicKey(data) calls it, without building
    # the object: a large PSBT checks thousands of keys and keeps none of them.
    parsed = ffi.new("secp256k1_pubkey *")
    status: int = lib.secp256k1_ec_pubkey_parse(GLOBAL_CONTEXT.ctx, parsed, bytes(data), len(data))
    return status == 1  # the C function's int result: 1 parsed, 0 not a point


def is_strict_der(sig: bytes) -> bool:
    """BIP-66 strict DER for ``sig`` *including* its trailing sighash byte."""
    n = len(sig)
    if n < 9 or n > 73 or sig[0] != 0x30 or sig[1] != n - 3:
        return False
    len_r = sig[3]
    if 5 + len_r >= n:
        return False
    len_s = sig[5 + len_r]
    if len_r + len_s + 7 != n:
        return False
    return _strict_der_int(sig, 2, len_r) and _strict_der_int(sig, 4 + len_r, len_s)


def _strict_der_int(sig: bytes, tag_at: int, length: int) -> bool:
    if sig[tag_at] != 0x02 or length == 0:
        return False
    first = sig[tag_at + 2]
    if first & 0x80:
        return False  # negative
    return not (length > 1 and first == 0 and not sig[tag_at + 3] & 0x80)  # padding


def is_valid_signature_encoding(sig_with_hashtype: bytes) -> bool:
    """Bitcoin Core's DERSIG|STRICTENC check: strict DER plus a defined sighash type."""
    return is_strict_der(sig_with_hashtype) and sig_with_hashtype[-1] in VALID_ECDSA_SIGHASH_TYPES


def der_from_raw(raw: bytes) -> bytes:
    """Low-S DER from the 64-byte ``r||s`` a PKCS#11 token returns for CKM_ECDSA."""
    if len(raw) != 64:
        raise ValueError(f"raw ECDSA signature must be 64 bytes, got {len(raw)}")
    r = int.from_bytes(raw[:32], "big")
    s = int.from_bytes(raw[32:], "big")
    if not (0 < r < CURVE_ORDER and 0 < s < CURVE_ORDER):
        raise ValueError("raw ECDSA signature has r or s out of range")
    if s > _HALF_ORDER:
        s = CURVE_ORDER - s
    return b"\x30" + _der_length_body(_der_int(r) + _der_int(s))


def _der_int(value: int) -> bytes:
    body = value.to_bytes((value.bit_length() + 8) // 8, "big")  # room for a sign bit
    return b"\x02" + bytes([len(body)]) + body


def _der_length_body(body: bytes) -> bytes:
    return bytes([len(body)]) + body


def is_low_s(der: bytes) -> bool:
    """True when the DER signature (without sighash byte) has S <= n/2."""
    len_r = der[3]
    len_s = der[5 + len_r]
    s = int.from_bytes(der[6 + len_r : 6 + len_r + len_s], "big")
    return s <= _HALF_ORDER


def verify(pubkey: bytes, der: bytes, digest: bytes) -> bool:
    """Verify a DER signature (without sighash byte) over a 32-byte digest; low S required."""
    if len(digest) != 32:
        raise ValueError("digest must be 32 bytes")
    try:
        return PublicKey(bytes(pubkey)).verify(bytes(der), digest, hasher=None)
    except (ValueError, TypeError):
        return False


def sign(secret: bytes, digest: bytes, low_r: bool = True) -> bytes:
    """RFC 6979 deterministic, low-S DER signature, byte-identical to Bitcoin Core.

    With ``low_r`` (Core's default since 0.17) the nonce is ground for a low R, giving a
    70-byte signature, by passing an incrementing counter as extra entropy. Without it
    the result is plain RFC 6979, as in the BIP-174 test vectors.
    """
    if len(digest) != 32:
        raise ValueError("digest must be 32 bytes")
    key = PrivateKey(bytes(secret))
    der = key.sign(digest, hasher=None)
    counter = 0
    while low_r and der[3] > 32:  # R needed a 0x00 pad: high R
        counter += 1
        entropy = ffi.new("unsigned char[32]", counter.to_bytes(32, "little"))
        der = key.sign(
            digest, hasher=None, custom_nonce=(lib.secp256k1_nonce_function_rfc6979, entropy)
        )
    return der
