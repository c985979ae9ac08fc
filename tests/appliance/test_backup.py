"""appliance.backup on real SoftHSM2 tokens: HSM-to-HSM cloning under a trusted KEK."""

from __future__ import annotations

import itertools
import os
from dataclasses import replace

import pytest
import shamir_mnemonic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.constants import DEFAULT
from pkcs11.exceptions import (
    AttributeReadOnly,
    KeyNotWrappable,
    KeyUnextractable,
    PKCS11Error,
    TemplateInconsistent,
)

from appliance.backup import (
    KEK_LABEL,
    BackupError,
    combine_kek_shares,
    combined_kek,
    destroy_kek,
    export_key,
    finish_restore,
    install_trusted_kek,
    kek_check_value,
    kek_present,
    new_kek_shares,
    restore_key,
    wipe,
)
from appliance.hsm import WrongPinError
from appliance.keystore import BackupModel, KeyState, Keystore, secp256k1_params
from shared.bitcoin import ecdsa

WRAP_WITH_TRUSTED = BackupModel.WRAP_WITH_TRUSTED
NON_EXTRACTABLE = BackupModel.NON_EXTRACTABLE


@pytest.fixture(scope="module")
def shares():
    """One KEK ceremony: a 2-of-3 split."""
    return new_kek_shares(2, 3)


def install(hsm, spec, mnemonics) -> str:
    with combined_kek(mnemonics) as kek:
        return install_trusted_kek(hsm, spec.label, spec.so_pin, spec.user_pin, kek)


def open_keystore(hsm, spec, tmp_path) -> Keystore:
    store = Keystore(hsm, spec.label)
    store.unlock(spec.user_pin)
    return store


@pytest.fixture
def pair(hsm, make_tokens, shares, tmp_path):
    """Tokens A and B, each given the KEK from a *different* pair of the same shares."""
    a, b = make_tokens("a", "b")
    check_a = install(hsm, a, shares[:2])
    check_b = install(hsm, b, shares[1:])
    assert check_a == check_b and len(check_a) == 6
    return open_keystore(hsm, a, tmp_path), open_keystore(hsm, b, tmp_path), a, b


# --- cloning -------------------------------------------------------------------------------


def test_key_cloned_from_a_to_b_signs_for_the_original_public_key(pair):
    ks_a, ks_b, _, _ = pair
    original = ks_a.generate_key("cold-1", WRAP_WITH_TRUSTED)
    assert kek_check_value(ks_a) == kek_check_value(ks_b)

    blob = export_key(ks_a, "cold-1")
    restored = restore_key(ks_b, blob, "cold-1", original.public_key, WRAP_WITH_TRUSTED)

    assert restored.public_key == original.public_key
    assert restored.backup_model is WRAP_WITH_TRUSTED and restored.origin == "restored"
    for _ in range(20):
        digest = os.urandom(32)
        der = ks_b.sign_digest("cold-1", digest)
        assert ecdsa.verify(original.public_key_bytes, der, digest)
        assert ecdsa.is_low_s(der)
    attrs = ks_b.verify_key_attributes("cold-1")
    assert attrs["sensitive"] and attrs["wrap_with_trusted"] and attrs["extractable"]
    assert not attrs["never_extractable"]  # honest: the key did leave a token, wrapped


def test_clone_is_registered_and_the_token_holds_the_pair(hsm, pair):
    ks_a, ks_b, _, _ = pair
    original = ks_a.generate_key("cold-2", WRAP_WITH_TRUSTED)
    restore_key(
        ks_b, export_key(ks_a, "cold-2"), "cold-2", original.public_key_bytes, WRAP_WITH_TRUSTED
    )
    assert ks_b.info("cold-2").public_key == original.public_key
    with hsm.lock:
        public = ks_b.session().get_key(
            object_class=ObjectClass.PUBLIC_KEY, id=ks_b.info("cold-2").key_id_bytes
        )
        assert public[Attribute.LABEL] == "cold-2"


def test_an_interrupted_restore_is_finished_by_key_id(hsm, pair):
    """A crash after the unwrap: the next activation proves the key and completes it."""
    ks_a, ks_b, _, b = pair
    original = ks_a.generate_key("cold-9", WRAP_WITH_TRUSTED)
    key_id = os.urandom(16)
    restore_key(
        ks_b,
        export_key(ks_a, "cold-9"),
        "cold-9",
        original.public_key_bytes,
        WRAP_WITH_TRUSTED,
        key_id=key_id,
    )
    fresh = Keystore(hsm, b.label)  # the process died: nothing was journaled
    info = finish_restore(fresh, "cold-9", key_id, original.public_key_bytes, WRAP_WITH_TRUSTED)
    assert info is not None and info.public_key == original.public_key
    assert (
        finish_restore(fresh, "other", os.urandom(16), original.public_key_bytes, WRAP_WITH_TRUSTED)
        is None
    )


def test_a_kek_outside_a_ceremony_is_destroyed_without_a_pin(hsm, pair):
    _, _, a, _ = pair
    assert kek_present(hsm, a.label)
    hsm.logout_all()
    assert destroy_kek(hsm, a.label) == 1
    assert not kek_present(hsm, a.label)


def test_a_clone_can_be_cloned_again_but_never_twice_into_one_token(pair):
    ks_a, ks_b, _, _ = pair
    original = ks_a.generate_key("cold-3", WRAP_WITH_TRUSTED)
    blob = export_key(ks_a, "cold-3")
    restore_key(ks_b, blob, "cold-3", original.public_key, WRAP_WITH_TRUSTED)
    assert export_key(ks_b, "cold-3")  # B can pass it on under the same trusted KEK
    with pytest.raises(BackupError, match="already registered"):
        restore_key(ks_b, blob, "cold-3-again", original.public_key, WRAP_WITH_TRUSTED)
    with pytest.raises(BackupError, match="already exists"):
        restore_key(
            ks_b,
            blob,
            "cold-3",
            ks_a.generate_key("x", NON_EXTRACTABLE).public_key,
            WRAP_WITH_TRUSTED,
        )


def test_suspended_and_archived_keys_can_still_be_backed_up(pair):
    ks_a, _, _, _ = pair
    info = ks_a.generate_key("old", WRAP_WITH_TRUSTED)
    ks_a.set_registry([replace(info, state=KeyState.ARCHIVED)])
    assert export_key(ks_a, "old")


# --- refusals ------------------------------------------------------------------------------


def test_non_extractable_key_cannot_be_exported(pair):
    ks_a, _, _, _ = pair
    ks_a.generate_key("vault", NON_EXTRACTABLE)
    with pytest.raises(BackupError, match="backup model non-extractable: cannot be cloned"):
        export_key(ks_a, "vault")
    # and the token itself refuses, whatever the registry says
    with ks_a.hsm.lock:
        session = ks_a.session()
        kek = session.get_key(object_class=ObjectClass.SECRET_KEY, label=KEK_LABEL)
        with pytest.raises(KeyUnextractable):
            kek.wrap_key(ks_a.private_key_object("vault"), mechanism=Mechanism.AES_KEY_WRAP_PAD)


def test_untrusted_aes_key_cannot_wrap_a_wrap_with_trusted_key(pair):
    ks_a, _, _, _ = pair
    ks_a.generate_key("cold-u", WRAP_WITH_TRUSTED)
    with ks_a.hsm.lock:
        session = ks_a.session()
        rogue = session.generate_key(
            KeyType.AES,
            256,
            label="rogue-kek",
            store=True,
            template={Attribute.WRAP: True, Attribute.UNWRAP: True, Attribute.SENSITIVE: True},
        )
        assert not rogue[Attribute.TRUSTED]
        with pytest.raises(KeyNotWrappable):  # PKCS#11 refuses: CKR_KEY_NOT_WRAPPABLE
            rogue.wrap_key(ks_a.private_key_object("cold-u"), mechanism=Mechanism.AES_KEY_WRAP_PAD)
        # the same untrusted key wraps an extractable key without WRAP_WITH_TRUSTED:
        # it is the trusted flag, nothing else, that stops it
        params = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: secp256k1_params()}, local=True
        )
        _, plain = params.generate_keypair(
            store=False, private_template={Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: True}
        )
        assert rogue.wrap_key(plain, mechanism=Mechanism.AES_KEY_WRAP_PAD)
    with pytest.raises(BackupError, match="not trusted"):
        export_key(ks_a, "cold-u", kek_label="rogue-kek")


def test_user_cannot_create_or_mark_a_trusted_key(pair):
    ks_a, _, _, _ = pair
    with ks_a.hsm.lock:
        session = ks_a.session()
        with pytest.raises(AttributeReadOnly):
            session.generate_key(KeyType.AES, 256, template={Attribute.TRUSTED: True})
        key = session.generate_key(KeyType.AES, 256, template={Attribute.WRAP: True})
        with pytest.raises(AttributeReadOnly):
            key[Attribute.TRUSTED] = True


def test_kek_is_public_trusted_sensitive_and_locked_down(hsm, pair):
    ks_a = pair[0]
    with hsm.lock:
        kek = ks_a.session().get_key(object_class=ObjectClass.SECRET_KEY, label=KEK_LABEL)
        values = kek.get_attributes(
            [
                Attribute.TRUSTED,
                Attribute.PRIVATE,
                Attribute.SENSITIVE,
                Attribute.EXTRACTABLE,
                Attribute.MODIFIABLE,
                Attribute.COPYABLE,
                Attribute.ENCRYPT,
                Attribute.DECRYPT,
            ]
        )
    assert values[Attribute.TRUSTED] and values[Attribute.SENSITIVE]
    assert not values[Attribute.PRIVATE]  # SoftHSM2: the SO can only create public objects
    assert not values[Attribute.EXTRACTABLE] and not values[Attribute.MODIFIABLE]
    assert not values[Attribute.COPYABLE]
    assert not values[Attribute.ENCRYPT] and not values[Attribute.DECRYPT]


def test_unwrap_template_keeps_blobs_useless_without_the_user_pin(hsm, pair):
    """Without CKA_UNWRAP_TEMPLATE a PIN-less session could unwrap a blob into a readable key."""
    ks_a, _, a, _ = pair
    ks_a.generate_key("cold-t", WRAP_WITH_TRUSTED)
    blob = export_key(ks_a, "cold-t")
    readable = {Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True}
    with hsm.lock:
        kek = ks_a.session().get_key(object_class=ObjectClass.SECRET_KEY, label=KEK_LABEL)
        with pytest.raises(TemplateInconsistent):  # even a logged-in user gets no plain key
            kek.unwrap_key(
                ObjectClass.PRIVATE_KEY,
                KeyType.EC,
                blob,
                capabilities=0,
                mechanism=Mechanism.AES_KEY_WRAP_PAD,
                template=_private(readable),
            )
    ks_a.lock()
    with hsm.lock:
        public_session = hsm.token(label=a.label).open(rw=True)  # no PIN at all
        try:
            kek = public_session.get_key(object_class=ObjectClass.SECRET_KEY, label=KEK_LABEL)
            for private in (False, True):
                with pytest.raises(PKCS11Error):
                    kek.unwrap_key(
                        ObjectClass.PRIVATE_KEY,
                        KeyType.EC,
                        blob,
                        capabilities=0,
                        mechanism=Mechanism.AES_KEY_WRAP_PAD,
                        template=_private({**readable, Attribute.PRIVATE: private}),
                    )
            with pytest.raises(PKCS11Error):  # CKR_ACTION_PROHIBITED: not modifiable
                kek[Attribute.UNWRAP] = False
        finally:
            public_session.close()


def test_restore_refuses_a_different_public_key_and_leaves_nothing(hsm, pair):
    ks_a, ks_b, _, _ = pair
    ks_a.generate_key("cold-p", WRAP_WITH_TRUSTED)
    other = ks_a.generate_key("cold-q", WRAP_WITH_TRUSTED)
    with pytest.raises(BackupError, match="does not match the original public key"):
        restore_key(ks_b, export_key(ks_a, "cold-p"), "cold-p", other.public_key, WRAP_WITH_TRUSTED)
    assert ks_b.key_infos() == []
    assert _objects_labelled(hsm, ks_b, "cold-p") == []


def test_restore_refuses_non_extractable_model_and_bad_public_keys(pair):
    ks_a, ks_b, _, _ = pair
    original = ks_a.generate_key("cold-m", WRAP_WITH_TRUSTED)
    blob = export_key(ks_a, "cold-m")
    with pytest.raises(BackupError, match="backup model never changes"):
        restore_key(ks_b, blob, "cold-m", original.public_key, NON_EXTRACTABLE)
    with pytest.raises(BackupError, match="not a secp256k1 key"):
        restore_key(ks_b, blob, "cold-m", b"\x02" + bytes(32), WRAP_WITH_TRUSTED)
    with pytest.raises(BackupError, match="wrong KEK or damaged blob"):
        restore_key(ks_b, blob[:-8] + bytes(8), "cold-m", original.public_key, WRAP_WITH_TRUSTED)
    assert ks_b.key_infos() == []


# --- KEK ceremony ----------------------------------------------------------------------------


def test_restore_under_another_ceremonys_kek_fails(hsm, make_tokens, shares, tmp_path):
    a, c = make_tokens("a", "c")
    install(hsm, a, shares[:2])
    check_c = install(hsm, c, new_kek_shares(2, 3)[:2])
    ks_a, ks_c = open_keystore(hsm, a, tmp_path), open_keystore(hsm, c, tmp_path)
    assert kek_check_value(ks_a) != check_c
    original = ks_a.generate_key("cold-k", WRAP_WITH_TRUSTED)
    with pytest.raises(BackupError, match="wrong KEK or damaged blob"):
        restore_key(
            ks_c, export_key(ks_a, "cold-k"), "cold-k", original.public_key, WRAP_WITH_TRUSTED
        )
    assert ks_c.key_infos() == [] and _objects_labelled(hsm, ks_c, "cold-k") == []


def test_k_minus_1_shares_do_not_give_the_kek(shares):
    for share in shares:
        with pytest.raises(BackupError, match="fewer shares than the threshold") as caught:
            combine_kek_shares([share])
        assert not set(share.split()[:4]) & set(str(caught.value).split())  # no share words
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
    # k-1 genuine shares plus one from another ceremony do not combine either
    stranger = new_kek_shares(2, 3)[0]
    with pytest.raises(BackupError, match="do not combine"):
        combine_kek_shares([shares[0], stranger])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(2, 4).flatmap(lambda k: st.tuples(st.just(k), st.integers(k, 5))))
def test_any_k_shares_give_the_same_kek_and_no_k_minus_1_do(split):
    threshold, count = split
    mnemonics = new_kek_shares(threshold, count)
    keks = {bytes(combine_kek_shares(c)) for c in itertools.combinations(mnemonics, threshold)}
    assert len(keks) == 1 and len(next(iter(keks))) == 32
    for subset in itertools.combinations(mnemonics, threshold - 1):
        with pytest.raises(BackupError):
            combine_kek_shares(subset)


def test_kek_shares_are_slip39_and_splits_are_checked():
    mnemonics = new_kek_shares(3, 5)
    assert len(mnemonics) == 5
    assert len(shamir_mnemonic.combine_mnemonics(mnemonics[1:4])) == 32
    for threshold, count in ((0, 3), (4, 3), (1, 3), (2, 17)):
        with pytest.raises(BackupError, match="not allowed"):
            new_kek_shares(threshold, count)


def test_combined_kek_is_wiped_after_use(shares):
    with combined_kek(shares[:2]) as kek:
        held = kek
        assert any(held)
    assert held == bytearray(32)
    buffer = bytearray(b"secret")
    wipe(buffer)
    assert buffer == bytearray(6)


def test_install_checks_pins_state_and_duplicates(hsm, make_tokens, shares, tmp_path):
    (t,) = make_tokens("kek")
    with combined_kek(shares[:2]) as kek:
        with pytest.raises(WrongPinError):
            install_trusted_kek(hsm, t.label, "wrong-so-pin", t.user_pin, kek)
        with pytest.raises(BackupError, match="32 bytes"):
            install_trusted_kek(hsm, t.label, t.so_pin, t.user_pin, kek[:16])
        install_trusted_kek(hsm, t.label, t.so_pin, t.user_pin, kek)
        with pytest.raises(BackupError, match="already holds a KEK"):
            install_trusted_kek(hsm, t.label, t.so_pin, t.user_pin, kek)
        open_keystore(hsm, t, tmp_path)
        with pytest.raises(BackupError, match="is unlocked"):
            install_trusted_kek(hsm, t.label, t.so_pin, t.user_pin, kek, label="second")


# --- helpers -------------------------------------------------------------------------------


def _private(extra: dict) -> dict:
    """An unwrap template for a private EC key (python-pkcs11 adds public-key flags)."""
    return {
        Attribute.ENCRYPT: DEFAULT,
        Attribute.VERIFY: DEFAULT,
        Attribute.WRAP: DEFAULT,
        Attribute.PRIVATE: True,
        Attribute.SIGN: True,
        Attribute.WRAP_WITH_TRUSTED: True,
        **extra,
    }


def _objects_labelled(hsm, keystore, label) -> list:
    with hsm.lock:
        return list(keystore.session().get_objects({Attribute.LABEL: label}))
