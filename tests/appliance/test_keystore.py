"""appliance.keystore on real SoftHSM2 tokens: attributes, signing, lifecycle, registry."""

from __future__ import annotations

import json
import os
import stat
import threading

import pytest
from coincurve import PublicKey
from pkcs11 import Attribute, Mechanism, ObjectClass
from pkcs11.exceptions import AttributeSensitive, PKCS11Error

from appliance.hsm import WrongPinError
from appliance.keystore import (
    AUDIT_KEY_LABEL,
    BackupModel,
    KeyState,
    Keystore,
    KeystoreError,
    compress_ec_point,
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


def test_token_objects_unknown_to_the_registry_block_the_label(
    hsm, signing_token, keystore, tmp_path
):
    keystore.generate_key("orphan", NON_EXTRACTABLE)
    fresh = Keystore(hsm, signing_token.label, tmp_path / "other-registry.json")
    with pytest.raises(KeystoreError, match="registry does not know"):
        fresh.generate_key("orphan", NON_EXTRACTABLE)


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


def test_suspended_and_archived_keys_refuse_to_sign(keystore):
    keystore.generate_key("life", WRAP_WITH_TRUSTED)
    public = keystore.public_key("life")
    digest = os.urandom(32)

    assert keystore.set_state("life", KeyState.SUSPENDED).state is KeyState.SUSPENDED
    with pytest.raises(KeystoreError, match="is suspended: it does not sign"):
        keystore.sign_digest("life", digest)

    keystore.set_state("life", KeyState.ACTIVE)  # reactivation
    assert ecdsa.verify(public, keystore.sign_digest("life", digest), digest)

    keystore.set_state("life", KeyState.ARCHIVED)
    with pytest.raises(KeystoreError, match="is archived: it does not sign"):
        keystore.sign_digest("life", digest)
    for state in (KeyState.ACTIVE, KeyState.SUSPENDED):
        with pytest.raises(KeystoreError, match="cannot go from archived"):
            keystore.set_state("life", state)
    # archived keys are kept: still registered, still in the token
    assert keystore.info("life").state is KeyState.ARCHIVED
    assert keystore.verify_key_attributes("life")["sensitive"]


def test_suspended_key_can_be_archived_directly(keystore):
    keystore.generate_key("s", NON_EXTRACTABLE)
    keystore.set_state("s", KeyState.SUSPENDED)
    assert keystore.set_state("s", KeyState.ARCHIVED).state is KeyState.ARCHIVED


def test_there_is_no_way_to_destroy_a_key():
    names = {name for name in dir(Keystore) if not name.startswith("__")}
    assert not {n for n in names if "destroy" in n or "delete" in n or "remove" in n}


# --- registry ------------------------------------------------------------------------------


def test_registry_persists_across_instances(hsm, signing_token, keystore):
    a = keystore.generate_key("first", NON_EXTRACTABLE)
    b = keystore.generate_key("second", WRAP_WITH_TRUSTED)
    keystore.set_state("first", KeyState.SUSPENDED)

    again = Keystore(hsm, signing_token.label, keystore.registry_path)
    listed = again.key_infos()
    assert [k.label for k in listed] == ["first", "second"]
    assert again.info("first").state is KeyState.SUSPENDED
    assert again.info("second") == b
    assert again.info("first").key_id == a.key_id
    assert again.info("first").public_key == a.public_key

    again.unlock(signing_token.user_pin)  # same Hsm: reuses the login session
    digest = os.urandom(32)
    assert ecdsa.verify(b.public_key_bytes, again.sign_digest("second", digest), digest)


def test_registry_file_is_plain_json_written_atomically(keystore):
    keystore.generate_key("j", NON_EXTRACTABLE)
    path = keystore.registry_path
    data = json.loads(path.read_text())
    assert data["token"] == keystore.token_label and data["version"] == 1
    assert data["keys"][0]["label"] == "j"
    assert data["keys"][0]["backup_model"] == "non-extractable"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_registry_of_another_token_or_damaged_is_refused(hsm, signing_token, keystore, tmp_path):
    keystore.generate_key("r", NON_EXTRACTABLE)
    data = json.loads(keystore.registry_path.read_text())
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**data, "token": "someone-else"}))
    with pytest.raises(KeystoreError, match="belongs to token"):
        Keystore(hsm, signing_token.label, other)
    damaged = tmp_path / "damaged.json"
    damaged.write_text(keystore.registry_path.read_text()[:-20])
    with pytest.raises(KeystoreError, match="damaged"):
        Keystore(hsm, signing_token.label, damaged)


def test_wrong_pin_raises_wrong_pin_error(hsm, signing_token, tmp_path):
    store = Keystore(hsm, signing_token.label, tmp_path / "keys.json")
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
