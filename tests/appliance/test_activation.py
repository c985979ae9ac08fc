"""appliance.activation: the signing token's PIN rebuilt only from a quorum of officers."""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass

import pytest
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from appliance.activation import (
    ActivatedPin,
    QuorumError,
    activate,
    activation_pin,
    combine_shares,
    new_activation_secret,
    split_activation_secret,
)
from appliance.hsm import Hsm, WrongPinError
from appliance.officers import (
    APPROVAL_KEY_LABEL,
    LockedOutError,
    OfficerCard,
    OfficerError,
    PinGuard,
    enroll_officer,
)
from appliance.tokens import single_module

SO_PIN = "so-pin-test-1234"
THRESHOLD, COUNT = 3, 5


# --- pure functions -----------------------------------------------------------------------


@pytest.mark.parametrize("size", [16, 32])
def test_secret_pin_and_shares_round_trip(size):
    secret = new_activation_secret(size)
    assert len(secret) == size and secret != new_activation_secret(size)
    pin = activation_pin(secret)
    assert pin == secret.hex() and len(pin) == 2 * size
    shares = split_activation_secret(secret, THRESHOLD, COUNT)
    assert len(shares) == COUNT and len(set(shares)) == COUNT
    for subset in itertools.combinations(shares, THRESHOLD):
        assert combine_shares(list(subset)) == bytearray(secret)
    for subset in itertools.combinations(shares, THRESHOLD - 1):
        with pytest.raises(QuorumError):
            combine_shares(list(subset))


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError):
        new_activation_secret(8)
    with pytest.raises(ValueError):
        activation_pin(b"short")
    with pytest.raises(ValueError):
        split_activation_secret(bytes(16), 4, 3)
    with pytest.raises(ValueError):
        split_activation_secret(bytes(16), 1, 3)  # SLIP-39: 1-of-n is not secret sharing
    with pytest.raises(QuorumError):
        combine_shares([])
    with pytest.raises(QuorumError):
        combine_shares(["not a share at all"])


def test_shares_of_two_secrets_do_not_combine():
    a = split_activation_secret(new_activation_secret(), 2, 3)
    b = split_activation_secret(new_activation_secret(), 2, 3)
    with pytest.raises(QuorumError):
        combine_shares([a[0], b[1]])


def test_activated_pin_is_wiped_in_place():
    pin = ActivatedPin(bytearray(b"\x01\xab" * 8), ["f" * 16])
    buffer = pin._buffer
    with pin:
        assert pin.reveal() == "01ab" * 8
        assert any(buffer) and not pin.wiped
    assert pin.wiped and buffer == bytearray(32)
    with pytest.raises(QuorumError, match="wiped"):
        pin.reveal()
    assert "01ab" not in repr(pin)


# --- on SoftHSM2 tokens -----------------------------------------------------------------------


@dataclass
class Officer:
    label: str
    pin: str
    card: OfficerCard


@dataclass
class Ceremony:
    hsm: Hsm
    secret: bytes
    officers: list[Officer]  # COUNT officers holding shares of ``secret``
    strangers: list[Officer]  # two officers holding shares of another secret
    impostor: Officer  # a token showing officers[0]'s public key, with its own private key
    signing_label: str

    def registry(self, **overrides: bool) -> dict[str, bool]:
        people = [*self.officers, *self.strangers]
        registry = {o.card.fingerprint: True for o in people}
        for index, active in overrides.items():
            registry[self.officers[int(index.lstrip("o"))].card.fingerprint] = active
        return registry

    def present(self, *indices: int) -> list[tuple[str, str]]:
        return [(self.officers[i].label, self.officers[i].pin) for i in indices]


def _make_token(hsm: Hsm, prefix: str) -> tuple[str, str]:
    label = f"{prefix}-{secrets.token_hex(5)}"
    pin = f"pin-{secrets.token_hex(4)}"
    hsm.init_token(label, SO_PIN, pin)
    return label, pin


def _enrolled(hsm: Hsm, share: str) -> Officer:
    label, pin = _make_token(hsm, "officer")
    return Officer(label, pin, enroll_officer(single_module(hsm).find(label), pin, share))


def _swap_public_key(hsm: Hsm, victim: Officer, impostor: Officer) -> None:
    """Give the impostor token the victim's public key object (its private key stays)."""
    token = hsm.token(label=impostor.label)
    session = hsm.login(token, impostor.pin)
    try:
        with hsm.lock:
            [public] = list(session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY}))
            public.destroy()
            session.create_object(
                {
                    Attribute.CLASS: ObjectClass.PUBLIC_KEY,
                    Attribute.KEY_TYPE: KeyType.EC,
                    Attribute.TOKEN: True,
                    Attribute.LABEL: APPROVAL_KEY_LABEL,
                    Attribute.EC_PARAMS: encode_named_curve_parameters("secp256k1"),
                    Attribute.EC_POINT: b"\x04\x21" + victim.card.approval_public_key,
                }
            )
    finally:
        hsm.logout(token)


@pytest.fixture(scope="module")
def ceremony(hsm):
    """Key ceremony: COUNT officers with 3-of-5 shares, a signing token with the PIN.

    Module-scoped on conftest's module ``hsm``; tokens are made here directly because the
    conftest token factory is per test.
    """
    secret = new_activation_secret()
    shares = split_activation_secret(secret, THRESHOLD, COUNT)
    officers = [_enrolled(hsm, share) for share in shares]
    other = split_activation_secret(new_activation_secret(), THRESHOLD, COUNT)
    strangers = [_enrolled(hsm, share) for share in other[:2]]
    impostor = _enrolled(hsm, shares[0])
    _swap_public_key(hsm, officers[0], impostor)
    signing_label = f"signing-{secrets.token_hex(4)}"
    hsm.init_token(signing_label, SO_PIN, activation_pin(secret))
    yield Ceremony(hsm, secret, officers, strangers, impostor, signing_label)
    hsm.logout_all()


@pytest.fixture
def guard(ceremony):
    """Fresh counters for each test: the signing token keeps them per appliance id."""
    return PinGuard(
        ceremony.hsm, ceremony.signing_label, f"test-{secrets.token_hex(4)}", max_failures=3
    )


def _all_locked(ceremony: Ceremony) -> bool:
    hsm = ceremony.hsm
    people = [*ceremony.officers, *ceremony.strangers, ceremony.impostor]
    return not any(hsm.is_logged_in(hsm.token(label=o.label)) for o in people)


def test_quorum_rebuilds_the_pin_that_opens_the_signing_token(ceremony, guard):
    hsm = ceremony.hsm
    with activate(
        single_module(hsm), guard, ceremony.present(0, 2, 4), ceremony.registry(), THRESHOLD
    ) as pin:
        assert pin.reveal() == activation_pin(ceremony.secret)
        assert pin.officers == tuple(ceremony.officers[i].card.fingerprint for i in (0, 2, 4))
        signing = hsm.token(label=ceremony.signing_label)
        session = hsm.login(signing, pin.reveal())
        with hsm.lock:
            params = session.create_domain_parameters(
                KeyType.EC,
                {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256k1")},
                local=True,
            )
            params.generate_keypair(store=False)  # the token is really usable
        hsm.logout(signing)
    assert pin.wiped
    assert _all_locked(ceremony)


def test_every_quorum_and_larger_sets_activate(ceremony, guard):
    expected = activation_pin(ceremony.secret)
    sets = [*itertools.combinations(range(COUNT), THRESHOLD), (0, 1, 2, 3), tuple(range(COUNT))]
    for subset in sets:
        with activate(
            single_module(ceremony.hsm),
            guard,
            ceremony.present(*subset),
            ceremony.registry(),
            THRESHOLD,
        ) as pin:
            assert pin.reveal() == expected, subset
    assert _all_locked(ceremony)


def test_the_wrong_pin_does_not_open_the_signing_token(ceremony):
    signing = ceremony.hsm.token(label=ceremony.signing_label)
    with pytest.raises(WrongPinError):
        ceremony.hsm.login(signing, activation_pin(new_activation_secret()))


def test_m_minus_one_officers_never_activate(ceremony, guard):
    for subset in itertools.combinations(range(COUNT), THRESHOLD - 1):
        with pytest.raises(QuorumError, match=f"{THRESHOLD - 1} officer\\(s\\) presented"):
            activate(
                single_module(ceremony.hsm),
                guard,
                ceremony.present(*subset),
                ceremony.registry(),
                THRESHOLD,
            )
    assert _all_locked(ceremony)


def test_policy_quorum_above_the_share_threshold_is_enforced(ceremony, guard):
    with pytest.raises(QuorumError, match="3 officer\\(s\\) presented, 4 needed"):
        activate(
            single_module(ceremony.hsm), guard, ceremony.present(0, 1, 2), ceremony.registry(), 4
        )


@pytest.mark.parametrize("others", [(1, 2), (1, 2, 3), (1, 2, 3, 4)])
def test_a_revoked_officer_never_activates(ceremony, guard, others):
    """M-1 others plus the revoked one fail; so does a full quorum that includes them."""
    registry = ceremony.registry(o0=False)
    revoked = ceremony.officers[0].card.fingerprint
    with pytest.raises(QuorumError, match=f"officer {revoked} .* is revoked"):
        activate(
            single_module(ceremony.hsm), guard, ceremony.present(*others, 0), registry, THRESHOLD
        )
    assert _all_locked(ceremony)
    # Without the revoked officer, a full quorum of the others still works.
    if len(others) >= THRESHOLD:
        with activate(
            single_module(ceremony.hsm), guard, ceremony.present(*others), registry, THRESHOLD
        ):
            pass


def test_an_unregistered_officer_never_activates(ceremony, guard):
    registry = ceremony.registry()
    del registry[ceremony.officers[3].card.fingerprint]
    with pytest.raises(QuorumError, match="not in the installed policy"):
        activate(single_module(ceremony.hsm), guard, ceremony.present(0, 1, 3), registry, THRESHOLD)
    assert _all_locked(ceremony)


def test_shares_of_different_secrets_fail_clearly(ceremony, guard):
    stranger = ceremony.strangers[0]
    presented = [*ceremony.present(0, 1), (stranger.label, stranger.pin)]
    with pytest.raises(QuorumError, match="different activation secrets"):
        activate(single_module(ceremony.hsm), guard, presented, ceremony.registry(), THRESHOLD)
    assert _all_locked(ceremony)


def test_the_same_officer_twice_is_one_officer(ceremony, guard):
    presented = ceremony.present(0, 1, 1)
    with pytest.raises(QuorumError, match="presented twice"):
        activate(single_module(ceremony.hsm), guard, presented, ceremony.registry(), THRESHOLD)


def test_a_token_showing_someone_elses_public_key_is_refused(ceremony, guard):
    """The impostor shows officer 0's fingerprint but cannot sign with officer 0's key."""
    impostor = ceremony.impostor
    presented = [(impostor.label, impostor.pin), *ceremony.present(1, 2)]
    with pytest.raises(QuorumError, match="cannot sign with its approval key"):
        activate(single_module(ceremony.hsm), guard, presented, ceremony.registry(), THRESHOLD)
    assert _all_locked(ceremony)


def test_a_wrong_officer_pin_is_counted_and_aborts(ceremony, guard):
    officer = ceremony.officers[1]
    presented = [*ceremony.present(0), (officer.label, "wrong-pin"), *ceremony.present(2)]
    for _ in range(3):
        with pytest.raises(OfficerError, match=f"{officer.label!r}.*refused the PIN"):
            activate(single_module(ceremony.hsm), guard, presented, ceremony.registry(), THRESHOLD)
        assert _all_locked(ceremony)
    assert guard.failures(officer.card.token_serial) == 3
    with pytest.raises(LockedOutError):
        activate(
            single_module(ceremony.hsm),
            guard,
            ceremony.present(0, 1, 2),
            ceremony.registry(),
            THRESHOLD,
        )
    guard.reset(officer.card.token_serial)
    with activate(
        single_module(ceremony.hsm),
        guard,
        ceremony.present(0, 1, 2),
        ceremony.registry(),
        THRESHOLD,
    ) as pin:
        assert pin.reveal() == activation_pin(ceremony.secret)


def test_the_pin_object_is_zeroed_after_the_context(ceremony, guard):
    pin = activate(
        single_module(ceremony.hsm),
        guard,
        ceremony.present(2, 3, 4),
        ceremony.registry(),
        THRESHOLD,
    )
    buffer = pin._buffer
    with pin:
        assert bytes(buffer).decode() == activation_pin(ceremony.secret)
    assert buffer == bytearray(len(buffer)) and len(buffer) == 2 * len(ceremony.secret)
    assert pin.wiped
    with pytest.raises(QuorumError):
        pin.reveal()


def test_no_officers_or_bad_threshold(ceremony, guard):
    with pytest.raises(QuorumError, match="no officers"):
        activate(single_module(ceremony.hsm), guard, [], ceremony.registry(), THRESHOLD)
    with pytest.raises(QuorumError, match="at least 1"):
        activate(
            single_module(ceremony.hsm), guard, ceremony.present(0, 1, 2), ceremony.registry(), 0
        )


def test_combine_errors_never_quote_share_words():
    shares = split_activation_secret(new_activation_secret(), 3, 5)
    with pytest.raises(QuorumError, match="Wrong number of mnemonics") as caught:
        combine_shares(shares[:2])
    prefix = " ".join(shares[0].split()[:3])
    assert prefix not in str(caught.value) and "<redacted>" in str(caught.value)
    assert caught.value.__cause__ is None
