"""Approval keys on secp256k1 and P-256: one valid encoding per signature, curves kept apart,
and the policy's officer registry records the curve without changing older policies' hashes."""

from __future__ import annotations

import hashlib
import secrets

import pytest
from coincurve import PrivateKey
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from shared import approval_keys
from shared.approval_keys import P256, P256_ORDER, SECP256K1
from shared.bitcoin import ecdsa
from shared.policy import (
    Officer,
    Policy,
    PolicyError,
    approval_digest,
    count_valid_approvals,
)


def _p256_pair() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    return key, key.public_key().public_bytes(Encoding.X962, PublicFormat.CompressedPoint)


def _off_curve(algorithm: str) -> bytes:
    """A compressed encoding whose x is on no point of the curve (about half of all x)."""
    x = 1
    while approval_keys.is_valid_public_key(algorithm, b"\x02" + x.to_bytes(32, "big")):
        x += 1
    return b"\x02" + x.to_bytes(32, "big")


def _p256_raw(key: ec.EllipticCurvePrivateKey, digest: bytes) -> bytes:
    """What a PKCS#11 token returns for CKM_ECDSA: r||s, 32 bytes each."""
    r, s = decode_dss_signature(key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256()))))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _high_s(der: bytes, order: int) -> bytes:
    """The same signature with S replaced by n - S: valid maths, the other encoding."""
    len_r = der[3]
    r = int.from_bytes(der[4 : 4 + len_r], "big")
    s = int.from_bytes(der[6 + len_r :], "big")
    body = approval_keys._der_int(r) + approval_keys._der_int(order - s)
    return b"\x30" + bytes([len(body)]) + body


def test_p256_token_signature_verifies_once_normalised():
    key, public = _p256_pair()
    for _ in range(20):  # about half of raw signatures come with a high S
        digest = secrets.token_bytes(32)
        der = approval_keys.der_from_raw(P256, _p256_raw(key, digest))
        assert approval_keys.verify(P256, public, der, digest)
        assert not approval_keys.verify(P256, public, der, secrets.token_bytes(32))
        assert not approval_keys.verify(P256, public, _high_s(der, P256_ORDER), digest)


def test_curves_are_never_confused():
    key, p256_public = _p256_pair()
    digest = secrets.token_bytes(32)
    der = approval_keys.der_from_raw(P256, _p256_raw(key, digest))
    # the same bytes read as a secp256k1 key (when they even are a point) never verify
    assert not approval_keys.verify(SECP256K1, p256_public, der, digest)
    secret = secrets.token_bytes(32)
    k1_public = PrivateKey(secret).public_key.format()
    k1_der = ecdsa.sign(secret, digest)
    assert approval_keys.verify(SECP256K1, k1_public, k1_der, digest)
    assert not approval_keys.verify(P256, k1_public, k1_der, digest)
    assert not approval_keys.verify("ed25519", k1_public, k1_der, digest)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda der: der + b"\x00",  # trailing garbage
        lambda der: der[:-1],  # truncated
        lambda der: der[:4] + b"\x00" + der[4:],  # padded R (not strict DER)
        lambda der: b"",
    ],
)
def test_only_strict_der_verifies(mangle):
    key, public = _p256_pair()
    digest = hashlib.sha256(b"approve").digest()
    der = approval_keys.der_from_raw(P256, _p256_raw(key, digest))
    assert not approval_keys.verify(P256, public, mangle(der), digest)
    assert not approval_keys.verify(P256, public, None, digest)


def test_raw_signatures_out_of_range_are_refused():
    with pytest.raises(approval_keys.ApprovalKeyError, match="64 bytes"):
        approval_keys.der_from_raw(P256, b"\x01" * 63)
    with pytest.raises(approval_keys.ApprovalKeyError, match="out of range"):
        approval_keys.der_from_raw(P256, bytes(32) + b"\x01" * 32)
    with pytest.raises(approval_keys.ApprovalKeyError, match="out of range"):
        approval_keys.der_from_raw(P256, P256_ORDER.to_bytes(32, "big") + b"\x01" * 32)
    with pytest.raises(approval_keys.ApprovalKeyError, match="unknown approval-key algorithm"):
        approval_keys.der_from_raw("rsa", b"\x01" * 64)


def test_points_are_checked_on_their_curve():
    _, public = _p256_pair()
    assert approval_keys.is_valid_public_key(P256, public)
    assert not approval_keys.is_valid_public_key(P256, _off_curve(P256))
    assert not approval_keys.is_valid_public_key(P256, b"\x04" + public[1:])
    assert not approval_keys.is_valid_public_key(P256, "02" * 33)
    uncompressed = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public)
    point = uncompressed.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    assert approval_keys.compress(P256, point) == public
    with pytest.raises(approval_keys.ApprovalKeyError):
        approval_keys.compress(P256, point[:-1] + bytes([point[-1] ^ 1]))
    assert approval_keys.algorithm_of_params(approval_keys.EC_PARAMS[P256]) == P256
    with pytest.raises(approval_keys.ApprovalKeyError, match="curve approvals do not use"):
        approval_keys.algorithm_of_params(bytes.fromhex("06052b81040022"))  # P-384


# -- the policy's officer registry ---------------------------------------------------------


def _policy(officers: tuple[Officer, ...], admins: tuple[Officer, ...]) -> Policy:
    return Policy(
        version=1,
        network="regtest",
        appliance_id="cs-test",
        officers=officers,
        approval_quorum=2,
        administrators=admins,
        admin_quorum=1,
        address_book=(),
        require_address_book=False,
        per_tx_limit=10**8,
        per_day_limit=10**9,
        fee_rate_ceiling=200_000,
        max_fee=10**6,
        allowed_script_types=(),
        request_ttl_max=86400,
    )


def _k1_officer(role: str) -> tuple[bytes, Officer]:
    secret = secrets.token_bytes(32)
    return secret, Officer.from_pubkey(PrivateKey(secret).public_key.format(), role)


def test_a_policy_mixing_curves_counts_both_approvals():
    p256_key, p256_public = _p256_pair()
    p256 = Officer.from_pubkey(p256_public, "approver", algorithm=P256)
    k1_secret, k1 = _k1_officer("approver")
    _, admin = _k1_officer("administrator")
    policy = Policy.from_bytes(_policy((p256, k1), (admin,)).to_bytes())
    assert policy.officer(p256.fingerprint) == p256
    request_hash = secrets.token_bytes(32)
    digest = approval_digest(request_hash, policy.hash())
    approvals = {
        p256.fingerprint: approval_keys.der_from_raw(P256, _p256_raw(p256_key, digest)),
        k1.fingerprint: ecdsa.sign(k1_secret, digest),
    }
    tally = count_valid_approvals(policy, request_hash, approvals, None)
    assert tally.met and set(tally.valid) == {p256.fingerprint, k1.fingerprint}


def test_a_p256_approval_never_counts_for_a_secp256k1_entry_of_the_same_bytes():
    """A registry entry that names the wrong curve makes the officer's approvals worthless,
    even when the key's bytes are a point on both curves (about half of P-256 keys)."""
    key, public = _p256_pair()
    while not approval_keys.is_valid_public_key(SECP256K1, public):
        key, public = _p256_pair()
    _, k1 = _k1_officer("approver")
    _, admin = _k1_officer("administrator")
    relabelled = Officer.from_pubkey(public, "approver")  # secp256k1 by default
    policy = _policy((relabelled, k1), (admin,))
    request_hash = secrets.token_bytes(32)
    digest = approval_digest(request_hash, policy.hash())
    signature = approval_keys.der_from_raw(P256, _p256_raw(key, digest))
    tally = count_valid_approvals(policy, request_hash, {relabelled.fingerprint: signature}, None)
    assert tally.valid == ()
    assert tally.rejected == ((relabelled.fingerprint, "bad signature"),)


def test_secp256k1_officers_keep_the_encoding_older_policies_were_signed_with():
    _, k1 = _k1_officer("approver")
    assert "algorithm" not in k1.to_plain()
    _, public = _p256_pair()
    assert Officer.from_pubkey(public, "approver", algorithm=P256).to_plain()["algorithm"] == P256
    spelled = {**k1.to_plain(), "algorithm": SECP256K1}
    with pytest.raises(PolicyError, match="omit it"):
        Officer.from_plain(spelled)
    with pytest.raises(PolicyError, match="unknown approval-key algorithm"):
        Officer.from_plain({**k1.to_plain(), "algorithm": "ed25519"})
    bad = _off_curve(P256)
    with pytest.raises(PolicyError, match="not on the p256 curve"):
        Officer.from_plain({**k1.to_plain(), "algorithm": P256, "pubkey": bad})
