"""Officers' approval keys: secp256k1 or NIST P-256, one encoding of each signature.

Most officer tokens (YubiKey PIV, TPMs, many smartcards) do P-256 only; secp256k1 is needed
only in the signing HSM. So an officer's or administrator's approval key is either curve,
and the signed policy records which (``shared.policy.Officer.algorithm``); the station,
the activation challenge and the auditor's replay verify both through this one module.

Rules, the same on both curves, so an approval or a policy signature has exactly one
valid encoding (the journal and the auditors compare bytes):

* public keys are 33-byte compressed points on their curve;
* signatures are strict DER (BIP-66 rules) with a low S (``s <= n/2``); a token's raw
  ``r||s`` is normalised by :func:`der_from_raw`;
* the signed message is always a 32-byte digest (CKM_ECDSA signs what it is given).

secp256k1 goes through libsecp256k1 (``shared.bitcoin.ecdsa``); P-256 through the
``cryptography`` package (OpenSSL). Nothing here is hand-written curve arithmetic.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from shared.bitcoin import ecdsa

SECP256K1 = "secp256k1"
P256 = "p256"
ALGORITHMS = (SECP256K1, P256)

#: the group order of NIST P-256 (SEC 2, secp256r1)
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_ORDERS = {SECP256K1: ecdsa.CURVE_ORDER, P256: P256_ORDER}
#: the curve's named-curve OID as PKCS#11 ``CKA_EC_PARAMS`` carries it (DER OBJECT IDENTIFIER)
EC_PARAMS = {
    SECP256K1: bytes.fromhex("06052b8104000a"),
    P256: bytes.fromhex("06082a8648ce3d030107"),
}
#: what people and tokens call the curves, for messages and enrolment options
CURVE_NAMES = {SECP256K1: "secp256k1", P256: "secp256r1"}


class ApprovalKeyError(ValueError):
    """A public key, algorithm or raw signature that is not acceptable; the message says why."""


def check_algorithm(algorithm: object) -> str:
    """The algorithm name, or ApprovalKeyError naming the ones there are."""
    if algorithm not in ALGORITHMS:
        raise ApprovalKeyError(
            f"unknown approval-key algorithm {algorithm!r} (one of {ALGORITHMS})"
        )
    return str(algorithm)


def algorithm_of_params(ec_params: bytes) -> str:
    """The algorithm a token key's ``CKA_EC_PARAMS`` names; ApprovalKeyError for another curve."""
    for algorithm, params in EC_PARAMS.items():
        if bytes(ec_params) == params:
            return algorithm
    raise ApprovalKeyError(f"the key is on a curve approvals do not use (EC_PARAMS {ec_params!r})")


def is_valid_public_key(algorithm: str, public_key: object) -> bool:
    """True for a 33-byte compressed point on the algorithm's curve."""
    if not isinstance(public_key, bytes) or len(public_key) != 33 or public_key[0] not in (2, 3):
        return False
    if algorithm == SECP256K1:
        return ecdsa.is_valid_pubkey(public_key)
    if algorithm == P256:
        return _p256_key(public_key) is not None
    return False


def compress(algorithm: str, point: bytes) -> bytes:
    """The 33-byte compressed form of a point (65-byte uncompressed or already compressed),
    checked to lie on the curve (the whole point: an uncompressed y is checked too)."""
    point = bytes(point)
    name = CURVE_NAMES.get(algorithm, algorithm)
    if len(point) == 65 and point[0] == 0x04:
        if not _uncompressed_on_curve(algorithm, point):
            raise ApprovalKeyError(f"not a point on {name}")
        return bytes([2 + (point[64] & 1)]) + point[1:33]
    if is_valid_public_key(algorithm, point):
        return point
    raise ApprovalKeyError(f"not a {name} point")


def _uncompressed_on_curve(algorithm: str, point: bytes) -> bool:
    if algorithm == SECP256K1:
        return ecdsa.is_valid_pubkey(point)
    if algorithm == P256:
        return _p256_key(point) is not None
    return False


def der_from_raw(algorithm: str, raw: bytes) -> bytes:
    """Low-S strict DER from the 64-byte ``r||s`` a PKCS#11 token returns for CKM_ECDSA."""
    order = _ORDERS[check_algorithm(algorithm)]
    if len(raw) != 64:
        raise ApprovalKeyError(f"raw ECDSA signature must be 64 bytes, got {len(raw)}")
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    if not (0 < r < order and 0 < s < order):
        raise ApprovalKeyError("raw ECDSA signature has r or s out of range")
    s = min(s, order - s)
    body = _der_int(r) + _der_int(s)
    return b"\x30" + bytes([len(body)]) + body


def verify(algorithm: str, public_key: bytes, der: object, digest: bytes) -> bool:
    """True when ``der`` is the one valid encoding (strict DER, low S) of a signature by
    ``public_key`` over the 32-byte ``digest``."""
    if len(digest) != 32:
        raise ValueError("digest must be 32 bytes")
    if not isinstance(der, bytes) or not ecdsa.is_strict_der(der + b"\x01"):
        return False
    if algorithm == SECP256K1:
        return ecdsa.verify(public_key, der, digest)
    if algorithm != P256 or not _low_s(der, P256_ORDER):
        return False
    key = _p256_key(public_key)
    if key is None:
        return False
    try:
        key.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    except InvalidSignature:
        return False
    return True


def _p256_key(public_key: bytes) -> ec.EllipticCurvePublicKey | None:
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_key)
    except ValueError:
        return None


def _low_s(der: bytes, order: int) -> bool:
    len_r = der[3]
    len_s = der[5 + len_r]
    s = int.from_bytes(der[6 + len_r : 6 + len_r + len_s], "big")
    return s <= order // 2


def _der_int(value: int) -> bytes:
    body = value.to_bytes((value.bit_length() + 8) // 8, "big")  # room for a sign bit
    return b"\x02" + bytes([len(body)]) + body
