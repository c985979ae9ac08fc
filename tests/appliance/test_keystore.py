"""appliance.keystore on real SoftHSM2 tokens: attributes, signing, lifecycle, adoption.

The registry (labels, states, backup models) comes from the journal; here tests hand it
over with ``set_registry`` as the station does after each record."""

from __future__ import annotations

import os
import threading
from dataclasses import replace

import pytest
from coincurve import PublicKey
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import AttributeSensitive, PKCS11Error

from appliance.hsm import WrongPinError
from appliance.keystore import (
    AUDIT_KEY_LABEL,
    BackupModel,
    KeyState,
    Keystore,
    KeystoreError,
    compress_ec_point,
    ec_point_der,
)
from shared.bitcoin import ecdsa

NON_EXTRACTABLE = BackupModel.NON_EXTRACTABLE
WRAP_WITH_TRUSTED = BackupModel.WRAP_WITH_TRUSTED


def digests(count: int) -> list[bytes]:
    return [os.urandom(32) for _ in range(count)]


def assert_bitcoin_signature(public_key: bytes, der: bytes, digest: bytes) -> None:
    """Verifies with libsecp256k1 directly, is low S and strict DER (BIP-62/66)."""
    assert PublicKey(public_key).verify(der, digest, hasher=None)
    assert ecdsa.is_low_s(der)
    assert ecdsa.is_strict_der(der + b"\x01")
    assert ecdsa.verify(public_key, der, digest)


# --- attributes ----------------------------------------------------------------------------


def test_non_extractable_key_attributes(keystore):
    info = keystore.generate_key("cold-ne", NON_EXTRACTABLE)
    attrs = keystore.verify_key_attributes("cold-ne")
    assert attrs["sensitive"] and attrs["always_sensitive"]
    assert not attrs["extractable"] and attrs["never_extractable"]
    assert not attrs["wrap_with_trusted"]
    assert attrs["private"] and attrs["token"] and attrs["sign"]
    assert info.backup_model is NON_EXTRACTABLE and info.state is KeyState.ACTIVE


def test_wrap_with_trusted_key_attributes(keystore):
    keystore.generate_key("cold-wt", WRAP_WITH_TRUSTED)
    attrs = keystore.verify_key_attributes("cold-wt")
    assert attrs["sensitive"] and attrs["always_sensitive"]
    assert attrs["extractable"] and not attrs["never_extractable"]
    assert attrs["wrap_with_trusted"]


@pytest.mark.parametrize("model", list(BackupModel))
def test_private_key_value_cannot_be_read(keystore, model):
    keystore.generate_key("secret", model)
    with keystore.hsm.lock:
        key = keystore.private_key_object("secret")
        with pytest.raises(AttributeSensitive):
            key[Attribute.VALUE]
        # nor can the protection be weakened afterwards (CKA_MODIFIABLE false)
        with pytest.raises(PKCS11Error):  # CKR_ACTION_PROHIBITED
            key[Attribute.SENSITIVE] = False
        assert key[Attribute.SENSITIVE]


def test_public_key_is_compressed_and_matches_token(keystore):
    info = keystore.generate_key("pub", NON_EXTRACTABLE)
    public = keystore.public_key("pub")
    assert len(public) == 33 and public[0] in (2, 3)
    assert public.hex() == info.public_key
    with keystore.hsm.lock:
        token_public = keystore.session().get_key(
            object_class=ObjectClass.PUBLIC_KEY, id=info.key_id_bytes
        )
        assert compress_ec_point(token_public[Attribute.EC_POINT]) == public


def test_ec_point_forms():
    point = PublicKey.from_secret(b"\x01" * 32).format(compressed=False)
    compressed = PublicKey.from_secret(b"\x01" * 32).format(compressed=True)
    assert compress_ec_point(bytes([0x04, 65]) + point) == compressed  # DER OCTET STRING
    assert compress_ec_point(point) == compressed  # bare point (some modules)
    assert compress_ec_point(bytes([0x04, 0x81, 65]) + point) == compressed  # long form
    with pytest.raises(KeystoreError):
        compress_ec_point(bytes([0x04, 65]) + point[:-1] + b"\x00")  # off the curve
    assert compress_ec_point(b"\x04\x21" + compressed) == compressed  # compressed, wrapped
    assert compress_ec_point(compressed) == compressed
    with pytest.raises(KeystoreError):
        compress_ec_point(b"\x04\x20" + compressed[1:])  # 32 bytes: no point at all


def test_duplicate_and_bad_labels_are_refused(keystore):
    keystore.generate_key("dup", NON_EXTRACTABLE)
    with pytest.raises(KeystoreError, match="already exists"):
        keystore.generate_key("dup", WRAP_WITH_TRUSTED)
    for bad in ("", " lead", "x" * 65, "new\nline"):
        with pytest.raises(KeystoreError, match="label"):
            keystore.generate_key(bad, NON_EXTRACTABLE)


def test_token_objects_unknown_to_the_journal_block_the_label(hsm, signing_token, keystore):
    keystore.generate_key("orphan", NON_EXTRACTABLE)
    fresh = Keystore(hsm, signing_token.label)
    with pytest.raises(KeystoreError, match="journal does not know"):
        fresh.generate_key("orphan", NON_EXTRACTABLE)


def test_a_crashed_keygen_is_adopted_by_its_key_id(hsm, signing_token, keystore):
    key_id = os.urandom(16)
    made = keystore.generate_key("crashed", WRAP_WITH_TRUSTED, key_id)
    fresh = Keystore(hsm, signing_token.label)  # the registry never heard of it
    assert fresh.adopt("crashed", os.urandom(16), WRAP_WITH_TRUSTED) is None
    adopted = fresh.adopt("crashed", key_id, WRAP_WITH_TRUSTED)
    assert adopted is not None and adopted.public_key == made.public_key
    digest = os.urandom(32)
    assert ecdsa.verify(made.public_key_bytes, fresh.sign_digest("crashed", digest), digest)


def test_a_key_imported_into_the_token_is_not_adopted(hsm, signing_token, keystore):
    """Adoption takes only a pair generated inside the token (CKA_LOCAL)."""
    from coincurve import PrivateKey
    from pkcs11.util.ec import encode_named_curve_parameters

    key_id = os.urandom(16)
    secret = PrivateKey()
    session = keystore.session()
    with hsm.lock:
        session.create_object(
            {
                Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                Attribute.KEY_TYPE: KeyType.EC,
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
                Attribute.SENSITIVE: True,
                Attribute.SIGN: True,
                Attribute.ID: key_id,
                Attribute.LABEL: "planted",
                Attribute.EC_PARAMS: encode_named_curve_parameters("secp256k1"),
                Attribute.VALUE: secret.secret,
            }
        )
        session.create_object(
            {
                Attribute.CLASS: ObjectClass.PUBLIC_KEY,
                Attribute.KEY_TYPE: KeyType.EC,
                Attribute.TOKEN: True,
                Attribute.ID: key_id,
                Attribute.LABEL: "planted",
                Attribute.EC_PARAMS: encode_named_curve_parameters("secp256k1"),
                Attribute.EC_POINT: ec_point_der(secret.public_key.format()),
            }
        )
    with pytest.raises(KeystoreError):
        keystore.adopt("planted", key_id, NON_EXTRACTABLE)
    assert "planted" not in {k.label for k in keystore.key_infos()}


def test_the_audit_key_is_read_from_the_token_without_a_pin(hsm, signing_token, keystore):
    info = keystore.create_audit_key()
    keystore.lock()
    fresh = Keystore(hsm, signing_token.label)
    assert fresh.token_audit_key() == info.public_key_bytes


# --- signing -------------------------------------------------------------------------------


@pytest.mark.parametrize("model", list(BackupModel))
def test_signatures_verify_and_are_low_s_der(keystore, model):
    keystore.generate_key("signer", model)
    public = keystore.public_key("signer")
    for digest in digests(200):
        assert_bitcoin_signature(public, keystore.sign_digest("signer", digest), digest)


def test_token_gives_high_s_that_the_keystore_normalises(keystore):
    """The normalisation is exercised: raw SoftHSM2 output has high S about half the time."""
    keystore.generate_key("raw", NON_EXTRACTABLE)
    high = 0
    with keystore.hsm.lock:
        key = keystore.private_key_object("raw")
        for digest in digests(64):
            raw = key.sign(digest, mechanism=Mechanism.ECDSA)
            high += int.from_bytes(raw[32:], "big") > ecdsa.CURVE_ORDER // 2
    assert 8 <= high <= 56


@pytest.mark.parametrize("size", [0, 1, 20, 31, 33, 48, 64])
def test_digests_that_are_not_32_bytes_are_refused(keystore, size):
    keystore.generate_key("len", NON_EXTRACTABLE)
    with pytest.raises(KeystoreError, match="32 bytes"):
        keystore.sign_digest("len", os.urandom(size))


def test_unknown_key_and_locked_token_refuse_to_sign(keystore):
    with pytest.raises(KeystoreError, match="no key"):
        keystore.sign_digest("nope", bytes(32))
    keystore.generate_key("k", NON_EXTRACTABLE)
    keystore.lock()
    assert not keystore.unlocked
    with pytest.raises(KeystoreError, match="locked"):
        keystore.sign_digest("k", bytes(32))
    assert len(keystore.public_key("k")) == 33  # the registry still answers


def test_handles_survive_relogin_and_rescan(hsm, signing_token, keystore):
    keystore.generate_key("h", NON_EXTRACTABLE)
    public = keystore.public_key("h")
    digest = os.urandom(32)
    keystore.sign_digest("h", digest)
    keystore.lock()
    keystore.unlock(signing_token.user_pin)
    assert ecdsa.verify(public, keystore.sign_digest("h", digest), digest)
    hsm.rescan()  # logs everything out and renumbers slots
    keystore.unlock(signing_token.user_pin)
    assert ecdsa.verify(public, keystore.sign_digest("h", digest), digest)


def test_concurrent_signing_is_serialised(keystore):
    keystore.generate_key("t", NON_EXTRACTABLE)
    public = keystore.public_key("t")
    failures: list[str] = []

    def work() -> None:
        for digest in digests(50):
            if not ecdsa.verify(public, keystore.sign_digest("t", digest), digest):
                failures.append(digest.hex())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


# --- lifecycle -----------------------------------------------------------------------------


def _with_state(keystore, label, state):
    """What the station does after a key_suspended/key_archived record: a new registry."""
    infos = [replace(i, state=state) if i.label == label else i for i in keystore.key_infos()]
    keystore.set_registry(infos)


def test_suspended_and_archived_keys_refuse_to_sign(keystore):
    keystore.generate_key("life", WRAP_WITH_TRUSTED)
    public = keystore.public_key("life")
    digest = os.urandom(32)

    _with_state(keystore, "life", KeyState.SUSPENDED)
    with pytest.raises(KeystoreError, match="is suspended: it does not sign"):
        keystore.sign_digest("life", digest)

    _with_state(keystore, "life", KeyState.ACTIVE)  # reactivation
    assert ecdsa.verify(public, keystore.sign_digest("life", digest), digest)

    _with_state(keystore, "life", KeyState.ARCHIVED)
    with pytest.raises(KeystoreError, match="is archived: it does not sign"):
        keystore.sign_digest("life", digest)
    # archived keys are kept: still registered, still in the token
    assert keystore.info("life").state is KeyState.ARCHIVED
    assert keystore.verify_key_attributes("life")["sensitive"]


def test_a_key_the_registry_does_not_list_does_not_sign(keystore):
    keystore.generate_key("gone", NON_EXTRACTABLE)
    keystore.set_registry([])
    with pytest.raises(KeystoreError, match="no key labelled"):
        keystore.sign_digest("gone", os.urandom(32))


def test_there_is_no_way_to_destroy_a_key():
    names = {name for name in dir(Keystore) if not name.startswith("__")}
    assert not {n for n in names if "destroy" in n or "delete" in n or "remove" in n}


def test_wrong_pin_raises_wrong_pin_error(hsm, signing_token):
    store = Keystore(hsm, signing_token.label)
    with pytest.raises(WrongPinError):
        store.unlock("not-the-pin")
    assert not store.unlocked
    store.unlock(signing_token.user_pin)
    assert store.unlocked
    with pytest.raises(WrongPinError):  # an open login does not let a wrong PIN through
        store.unlock("not-the-pin")
    assert not store.unlocked


# --- audit key -----------------------------------------------------------------------------


def test_audit_key_is_an_ordinary_non_extractable_key(keystore):
    info = keystore.create_audit_key()
    assert info.label == AUDIT_KEY_LABEL and info.backup_model is NON_EXTRACTABLE
    assert not keystore.verify_key_attributes(AUDIT_KEY_LABEL)["extractable"]
    digest = os.urandom(32)
    assert_bitcoin_signature(
        keystore.audit_public_key(), keystore.sign_audit_digest(digest), digest
    )
    with pytest.raises(KeystoreError, match="already exists"):
        keystore.create_audit_key()
