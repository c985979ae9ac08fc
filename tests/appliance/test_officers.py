"""appliance.officers on real SoftHSM2 tokens: enrolment, approvals, PIN lockout.

The module's SoftHSM2 store and token factory come from tests/appliance/conftest.py.
"""

from __future__ import annotations

import hashlib
import secrets

import pytest
import shamir_mnemonic
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11.exceptions import PKCS11Error
from pkcs11.util.ec import encode_named_curve_parameters

from appliance.hsm import token_serial
from appliance.officers import (
    APPROVAL_KEY_LABEL,
    SHARE_LABEL,
    LockedOutError,
    OfficerError,
    PinGuard,
    approval_fingerprint,
    enroll_officer,
    unlock,
)
from appliance.token_objects import COUNTERS_LABEL as COUNTERS
from appliance.tokens import single_module
from shared.bitcoin import ecdsa


@pytest.fixture(scope="module")
def shares():
    return shamir_mnemonic.generate_mnemonics(1, [(2, 16)], secrets.token_bytes(16))[0]


@pytest.fixture
def new_token(make_tokens):
    """Factory: a fresh, empty token (conftest's make_tokens); returns (label, PIN)."""

    def make() -> tuple[str, str]:
        [spec] = make_tokens("officer")
        return spec.label, spec.user_pin

    return make


@pytest.fixture
def enrolled(hsm, new_token, shares):
    """Factory: an enrolled officer; returns (label, PIN, card, share)."""
    used = iter(range(len(shares)))

    def make():
        label, pin = new_token()
        share = shares[next(used)]
        return label, pin, enroll_officer(single_module(hsm).find(label), pin, share), share

    return make


@pytest.fixture
def signing(make_tokens):
    """A signing token: where the station keeps its PIN counters."""
    return make_tokens("signing")[0]


@pytest.fixture
def guard(hsm, signing):
    return PinGuard(hsm, signing.label, f"cs-{secrets.token_hex(4)}", max_failures=3)


# --- enrolment ------------------------------------------------------------------------


def test_enrolment_card(hsm, enrolled):
    label, _pin, card, _share = enrolled()
    assert card.token_label == label
    assert card.token_serial == token_serial(hsm.token(label=label))
    assert len(card.approval_public_key) == 33 and card.approval_public_key[0] in (2, 3)
    assert ecdsa.is_valid_pubkey(card.approval_public_key)
    expected = hashlib.sha256(card.approval_public_key).digest()[:8].hex()
    assert card.fingerprint == expected == approval_fingerprint(card.approval_public_key)
    assert not hsm.is_logged_in(hsm.token(label=label)), "enrolment must lock the token"


def test_fingerprint_matches_policy_definition(enrolled):
    policy = pytest.importorskip("shared.policy")
    if not hasattr(policy, "fingerprint_of"):
        pytest.skip("shared.policy has no fingerprint_of yet")
    _label, _pin, card, _share = enrolled()
    assert policy.fingerprint_of(card.approval_public_key) == card.fingerprint


def test_approval_key_is_non_extractable_and_share_private(hsm, enrolled):
    label, pin, _card, share = enrolled()
    token = hsm.token(label=label)
    session = hsm.login(token, pin)
    try:
        with hsm.lock:
            key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=APPROVAL_KEY_LABEL)
            assert key.key_type == KeyType.EC
            for attribute in (
                Attribute.SENSITIVE,
                Attribute.ALWAYS_SENSITIVE,
                Attribute.NEVER_EXTRACTABLE,
                Attribute.LOCAL,
                Attribute.TOKEN,
                Attribute.PRIVATE,
                Attribute.SIGN,
            ):
                assert key[attribute] is True, attribute
            assert key[Attribute.EXTRACTABLE] is False
            assert key[Attribute.DERIVE] is False
            assert key[Attribute.MODIFIABLE] is False
            assert key[Attribute.COPYABLE] is False
            with pytest.raises(PKCS11Error):  # AttributeSensitive
                key[Attribute.VALUE]
            # Wrapping under a key the token does not trust fails too (REQUIREMENTS A2).
            kek = session.generate_key(KeyType.AES, 256, store=False)
            with pytest.raises(PKCS11Error):  # KeyUnextractable
                kek.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP_PAD)

            [data] = list(session.get_objects({Attribute.LABEL: SHARE_LABEL}))
            assert data[Attribute.CLASS] == ObjectClass.DATA
            assert data[Attribute.PRIVATE] is True
            assert data[Attribute.TOKEN] is True
            assert data[Attribute.VALUE].decode() == share
    finally:
        hsm.logout(token)

    with hsm.lock:  # without the PIN: the share and the private key are invisible
        public = token.open()
        try:
            assert not list(public.get_objects({Attribute.LABEL: SHARE_LABEL}))
            assert not list(public.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
            [pub] = list(public.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY}))
            assert pub[Attribute.LABEL] == APPROVAL_KEY_LABEL
        finally:
            public.close()


def test_enrolment_refuses_an_enrolled_token(hsm, enrolled, shares):
    label, pin, _card, _share = enrolled()
    with pytest.raises(OfficerError, match=f"{label!r} is already enrolled"):
        enroll_officer(single_module(hsm).find(label), pin, shares[-1])
    assert not hsm.is_logged_in(hsm.token(label=label))


def test_enrolment_refuses_a_bad_share_before_touching_the_token(hsm, new_token, shares):
    label, pin = new_token()
    words = shares[0].split()
    words[3] = "academic" if words[3] != "academic" else "acid"  # checksum now fails
    with pytest.raises(OfficerError, match=f"{label!r} is not a valid SLIP-39"):
        enroll_officer(single_module(hsm).find(label), pin, " ".join(words))
    token = hsm.token(label=label)
    session = hsm.login(token, pin)
    try:
        with hsm.lock:
            assert not list(session.get_objects())
    finally:
        hsm.logout(token)


# --- using an unlocked officer ------------------------------------------------------


def test_approve_signatures_verify_under_the_enrolled_key(hsm, guard, enrolled):
    label, pin, card, _share = enrolled()
    with unlock(single_module(hsm), guard, label, pin) as officer:
        assert officer.public_key == card.approval_public_key
        assert officer.fingerprint == card.fingerprint
        for _ in range(24):  # the token returns high S about half the time
            digest = secrets.token_bytes(32)
            der = officer.approve(digest)
            assert ecdsa.is_strict_der(der + b"\x01") and ecdsa.is_low_s(der)
            assert ecdsa.verify(card.approval_public_key, der, digest)
            assert not ecdsa.verify(card.approval_public_key, der, secrets.token_bytes(32))
        assert officer.approve(bytearray(32))
    assert officer.locked


@pytest.mark.parametrize("digest", [b"", bytes(31), bytes(33), bytes(64), "00" * 16])
def test_approve_refuses_anything_but_32_bytes(hsm, guard, enrolled, digest):
    label, pin, _card, _share = enrolled()
    with (
        unlock(single_module(hsm), guard, label, pin) as officer,
        pytest.raises(OfficerError, match="32 bytes"),
    ):
        officer.approve(digest)


def test_approve_refuses_by_name_an_approval_key_the_token_will_not_sign_with(hsm, guard, enrolled):
    """A token altered by other tools (its approval key replaced by one with CKA_SIGN
    false) is an OfficerError naming the token, not an AttributeError mid-ceremony."""
    label, pin, _card, _share = enrolled()
    token = hsm.token(label=label)
    session = hsm.login(token, pin)
    try:
        with hsm.lock:
            old = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=APPROVAL_KEY_LABEL)
            old.destroy()
            params = session.create_domain_parameters(
                KeyType.EC,
                {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256k1")},
                local=True,
            )
            params.generate_keypair(
                store=True,
                label=f"{APPROVAL_KEY_LABEL}-new",
                capabilities=MechanismFlag.VERIFY,
                private_template={Attribute.LABEL: APPROVAL_KEY_LABEL, Attribute.SIGN: False},
            )
    finally:
        hsm.logout(token)
    with (
        unlock(single_module(hsm), guard, label, pin) as officer,
        pytest.raises(OfficerError, match=f"'{label}'.*: approval key cannot sign"),
    ):
        officer.approve(bytes(32))


def test_read_share_and_lock(hsm, guard, enrolled):
    label, pin, _card, share = enrolled()
    officer = unlock(single_module(hsm), guard, label, pin)
    assert officer.read_share() == share
    officer.lock()
    assert not hsm.is_logged_in(hsm.token(label=label))
    with pytest.raises(OfficerError, match="is locked"):
        officer.read_share()
    with pytest.raises(OfficerError, match="is locked"):
        officer.approve(bytes(32))
    officer.lock()  # idempotent


def test_unlock_checks_the_pin_even_if_the_token_is_logged_in(hsm, guard, enrolled):
    label, pin, _card, _share = enrolled()
    unlock(single_module(hsm), guard, label, pin)  # left unlocked on purpose
    with pytest.raises(OfficerError, match="refused the PIN"):
        unlock(single_module(hsm), guard, label, pin + "x")
    assert guard.failures(token_serial(hsm.token(label=label))) == 1


# --- lockout ------------------------------------------------------------------------------


def test_wrong_pins_lock_the_token_out_until_reset(hsm, guard, enrolled, monkeypatch):
    label, pin, _card, _share = enrolled()
    serial = token_serial(hsm.token(label=label))
    for left in (2, 1, 0):
        with pytest.raises(OfficerError, match=f"{left} attempt") as caught:
            unlock(single_module(hsm), guard, label, "wrong-" + secrets.token_hex(3))
        assert not isinstance(caught.value, LockedOutError)
        assert pin not in str(caught.value)
    assert guard.is_locked_out(serial)

    logins = []
    real_login = hsm.login
    monkeypatch.setattr(hsm, "login", lambda *a: logins.append(a) or real_login(*a))
    with pytest.raises(LockedOutError, match=f"{label!r}.*locked out"):
        unlock(single_module(hsm), guard, label, pin)  # the right PIN is refused as well ...
    assert logins == [], "... without even being tried on the token"
    again = PinGuard(hsm, guard.signing_token, guard.appliance_id)
    assert again.is_locked_out(serial), "lockout survives a restart"

    guard.reset(serial)  # administrator ceremony
    with unlock(single_module(hsm), guard, label, pin) as officer:
        assert officer.read_share()
    assert guard.failures(serial) == 0


def test_success_resets_the_consecutive_count(hsm, guard, enrolled):
    label, pin, _card, _share = enrolled()
    serial = token_serial(hsm.token(label=label))
    for _ in range(2):
        with pytest.raises(OfficerError):
            unlock(single_module(hsm), guard, label, "wrong")
    assert guard.failures(serial) == 2
    unlock(single_module(hsm), guard, label, pin).lock()
    assert guard.failures(serial) == 0
    for _ in range(2):
        with pytest.raises(OfficerError):
            unlock(single_module(hsm), guard, label, "wrong")
    assert not guard.is_locked_out(serial)


def test_lockout_is_per_token(hsm, guard, enrolled):
    a_label, _a_pin, _a, _ = enrolled()
    b_label, b_pin, _b, _ = enrolled()
    for _ in range(3):
        with pytest.raises(OfficerError):
            unlock(single_module(hsm), guard, a_label, "wrong")
    with pytest.raises(LockedOutError):
        unlock(single_module(hsm), guard, a_label, "wrong")
    unlock(single_module(hsm), guard, b_label, b_pin).lock()


# --- PinGuard on its own -------------------------------------------------------------


def test_guard_counts_before_the_attempt_and_keeps_them_in_the_signing_token(
    hsm, signing, tmp_path
):
    app = f"cs-{secrets.token_hex(4)}"
    guard = PinGuard(hsm, signing.label, app, max_failures=2)
    assert guard.failures("S1") == 0
    guard.begin_attempt("S1")  # a power cut now still costs the attempt
    assert PinGuard(hsm, signing.label, app, max_failures=2).failures("S1") == 1
    guard.begin_attempt("S1")
    with pytest.raises(LockedOutError, match="serial S1"):
        guard.begin_attempt("S1")
    assert guard.failures("S1") == 2, "a refused attempt is not counted again"
    assert PinGuard(hsm, signing.label, "another-station").failures("S1") == 0
    guard.reset("S1")
    guard.reset("never-seen")
    assert guard.failures("S1") == 0
    guard.check("S1")


def test_guard_counters_are_one_public_object_readable_without_a_pin(hsm, signing):
    """The counters change while the signing token is locked; the newest copy wins if a
    crash left two (a rewrite creates before it destroys)."""
    app = f"cs-{secrets.token_hex(4)}"
    guard = PinGuard(hsm, signing.label, app)
    for _ in range(2):
        guard.begin_attempt("S9")
    token = hsm.token(label=signing.label)
    with hsm.lock, hsm.public_session(token) as session:
        found = list(session.get_objects({Attribute.LABEL: COUNTERS, Attribute.APPLICATION: app}))
        assert len(found) == 1 and not found[0][Attribute.PRIVATE]
        value = bytes(found[0][Attribute.VALUE])
        session.create_object(
            {
                Attribute.CLASS: ObjectClass.DATA,
                Attribute.TOKEN: True,
                Attribute.PRIVATE: False,
                Attribute.LABEL: COUNTERS,
                Attribute.APPLICATION: app,
                Attribute.VALUE: value,
            }
        )
    assert guard.failures("S9") == 2  # two identical copies: still one answer
    guard.begin_attempt("S9")
    assert guard.failures("S9") == 3


def test_guard_fails_closed_on_corrupt_counters(hsm, signing):
    app = f"cs-{secrets.token_hex(4)}"
    token = hsm.token(label=signing.label)
    with hsm.lock, hsm.public_session(token) as session:
        session.create_object(
            {
                Attribute.CLASS: ObjectClass.DATA,
                Attribute.TOKEN: True,
                Attribute.PRIVATE: False,
                Attribute.LABEL: COUNTERS,
                Attribute.APPLICATION: app,
                Attribute.VALUE: b"not cbor",
            }
        )
    with pytest.raises(OfficerError, match="PIN counters"):
        PinGuard(hsm, signing.label, app).check("S1")


def test_guard_rejects_nonsense_limits(hsm, signing):
    with pytest.raises(ValueError):
        PinGuard(hsm, signing.label, "x", max_failures=0)


def test_share_errors_never_quote_share_words(hsm, new_token, shares):
    label, pin = new_token()
    words = shares[1].split()
    words[5] = "zzsecretword"
    with pytest.raises(OfficerError) as caught:
        enroll_officer(single_module(hsm).find(label), pin, " ".join(words))
    text = str(caught.value)
    assert "zzsecretword" not in text and not any(w in text.split() for w in words[:4])
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
