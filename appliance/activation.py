"""The signing token's activation PIN: never stored, rebuilt from a quorum of officer shares.

ISO/TR 23576 9.3.7.2 (1)(2): a key is activated only by secret input from a quorum. The
PIN of the signing token is a random secret split with SLIP-39 into one share per officer,
and each share lives only on that officer's token (appliance.officers). Activation unlocks
each presented officer token with its own PIN, checks that the officer is registered and
active in the installed policy and that the token holds the registered approval key (it
must sign a fresh challenge), reads the shares and combines them. Fewer than the quorum,
a revoked or unknown officer, or shares of different secrets never produce a PIN.

The secret mixes the OS's random bytes with the signing HSM's (:func:`new_activation_secret`),
so neither source alone decides it; the journal records both sources (REQUIREMENTS 7).
After a re-key an officer token may hold shares of two secrets; the station asks for the
share set by its SLIP-39 identifier, which the journal records.

The PIN is kept in a bytearray that is zeroed when the :class:`ActivatedPin` context exits.
The ``str`` handed to the PKCS#11 login (python-pkcs11 wants text) and the ``bytes`` that
shamir_mnemonic returns are immutable and cannot be wiped in CPython; their lifetime is
kept to the call that needs them.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import shamir_mnemonic
from shamir_mnemonic import MnemonicError, Share

from appliance.officers import OfficerError, PinGuard, UnlockedOfficer, share_error_text, unlock
from appliance.tokens import TokenDirectory
from shared import approval_keys
from shared.closing import Closing

SECRET_SIZES = (16, 32)
_HEX = b"0123456789abcdef"


class QuorumError(RuntimeError):
    """The presented officers or shares do not make a quorum; the message says why."""


def new_activation_secret(size: int = 16, hsm_random: bytes = b"") -> bytes:
    """A fresh activation secret (16 bytes: 20-word shares; or 32 bytes).

    SHA-256 of the OS's random bytes followed by ``hsm_random`` (the signing token's
    C_GenerateRandom), cut to ``size``: as strong as the better of the two sources.
    """
    if size not in SECRET_SIZES:
        raise ValueError(f"activation secret must be one of {SECRET_SIZES} bytes, not {size}")
    return hashlib.sha256(os.urandom(32) + bytes(hsm_random)).digest()[:size]


def share_identifier(mnemonics: Sequence[str]) -> int:
    """The SLIP-39 identifier the shares of one secret share (what the journal records)."""
    return int(Share.from_mnemonic(mnemonics[0]).identifier)


def activation_pin(secret: bytes | bytearray) -> str:
    """The PIN for a secret: lowercase hex, as the signing token was initialised with."""
    _check_secret(secret)
    return bytes(secret).hex()


def split_activation_secret(secret: bytes | bytearray, threshold: int, count: int) -> list[str]:
    """One SLIP-39 share per officer; any ``threshold`` of the ``count`` rebuild the secret."""
    _check_secret(secret)
    if not 1 <= threshold <= count <= 16:
        raise ValueError(f"need 1 <= threshold <= count <= 16, got {threshold} of {count}")
    try:
        groups = shamir_mnemonic.generate_mnemonics(
            group_threshold=1, groups=[(threshold, count)], master_secret=bytes(secret)
        )
    except (MnemonicError, ValueError) as exc:
        raise ValueError(
            f"cannot split the activation secret {threshold} of {count}: {exc}"
        ) from exc
    return groups[0]


def combine_shares(mnemonics: Sequence[str]) -> bytearray:
    """The secret from shares; QuorumError if too few, mismatched or damaged."""
    try:
        return bytearray(shamir_mnemonic.combine_mnemonics(list(mnemonics)))
    except (MnemonicError, ValueError) as exc:
        raise QuorumError(
            f"shares do not rebuild the activation secret: {share_error_text(exc)}"
        ) from None


def _check_secret(secret: bytes | bytearray) -> None:
    if not isinstance(secret, bytes | bytearray) or len(secret) not in SECRET_SIZES:
        raise ValueError(f"activation secret must be {SECRET_SIZES} bytes")


class ActivatedPin(Closing):
    """The signing token's PIN in a wipeable buffer; use it as a context manager.

    ``officers`` are the fingerprints of the officers whose shares built it, in the order
    they were presented, for the journal record of the activation.
    """

    def __init__(self, secret: bytearray, officers: Sequence[str]) -> None:
        self._buffer = bytearray(2 * len(secret))
        for i, byte in enumerate(secret):
            self._buffer[2 * i] = _HEX[byte >> 4]
            self._buffer[2 * i + 1] = _HEX[byte & 0x0F]
        self.officers = tuple(officers)
        self._wiped = False

    def close(self) -> None:
        """Ends the use (``with`` calls it): :meth:`wipe`."""
        self.wipe()

    def reveal(self) -> str:
        """The PIN as text for the PKCS#11 login; do not keep the result."""
        if self._wiped:
            raise QuorumError("activation PIN was already wiped; activate again")
        return self._buffer.decode("ascii")

    def wipe(self) -> None:
        """Overwrite the PIN bytes with zeros."""
        for i in range(len(self._buffer)):
            self._buffer[i] = 0
        self._wiped = True

    @property
    def wiped(self) -> bool:
        """True when every byte of the buffer is zero (checked, not just a flag)."""
        return self._wiped and not any(self._buffer)

    def __repr__(self) -> str:
        state = "wiped" if self._wiped else "live"
        return f"ActivatedPin({state}, officers={list(self.officers)})"


@dataclass(frozen=True)
class Contribution:
    """One officer's share of the secret with a given identifier (see :func:`contribute`)."""

    fingerprint: str
    token_label: str
    share: Share
    mnemonic: str


@dataclass(frozen=True)
class Offer:
    """Every share an unlocked officer token holds, checked against the policy."""

    fingerprint: str
    token_label: str
    shares: tuple[tuple[Share, str], ...]

    def contribution(self, identifier: int | None) -> Contribution | None:
        """This officer's share of the secret ``identifier`` (None: its only share)."""
        if identifier is None:
            if len(self.shares) != 1:
                return None
            share, mnemonic = self.shares[0]
            return Contribution(self.fingerprint, self.token_label, share, mnemonic)
        for share, mnemonic in self.shares:
            if share.identifier == identifier:
                return Contribution(self.fingerprint, self.token_label, share, mnemonic)
        return None


def contributions(offers: Sequence[Offer], identifier: int | None) -> list[Contribution]:
    """The presented officers' shares of secret ``identifier``; an officer without one (a
    share set replaced while their token was away) is named, not silently skipped."""
    found = []
    for offer in offers:
        contribution = offer.contribution(identifier)
        if contribution is None:
            raise QuorumError(
                f"officer {offer.fingerprint} ({offer.token_label!r}) holds no share of the "
                f"activation secret in use (share set {identifier}): their share was replaced "
                "by a re-key, or the token belongs to another station"
            )
        found.append(contribution)
    return found


def activate(
    tokens: TokenDirectory,
    guard: PinGuard,
    officers: Sequence[tuple[str, str]],
    registry: Mapping[str, bool],
    threshold: int,
    identifier: int | None = None,
) -> ActivatedPin:
    """Rebuild the activation PIN from ``officers`` ((token label, PIN) pairs).

    ``registry`` maps approval-key fingerprints to "active" from the installed policy;
    ``threshold`` is the policy's quorum; ``identifier`` the share set the journal names.
    Every presented officer must unlock (failures count towards their lockout), be
    registered and active, prove the approval key, and hold a share of that secret; any
    failure stops the activation and names the officer. Officer tokens are locked again
    before this returns or raises.
    """
    offers = collect_offers(tokens, guard, officers, registry)
    return activated_pin(contributions(offers, identifier), threshold)


def collect_offers(
    tokens: TokenDirectory,
    guard: PinGuard,
    officers: Sequence[tuple[str, str]],
    registry: Mapping[str, bool],
    on_unlock: Callable[[UnlockedOfficer], None] | None = None,
) -> list[Offer]:
    """Unlock each officer token in turn, check it and read its shares, lock it again.

    ``on_unlock(officer)``, when given, runs while the token is unlocked (the station checks
    and refreshes the journal anchor the token keeps).
    """
    if not officers:
        raise QuorumError("no officers presented")
    _refuse_duplicate_labels(officers)
    offers: list[Offer] = []
    for token_label, pin in officers:
        with unlock(tokens, guard, token_label, pin) as officer:
            offer = make_offer(officer, registry)
            if on_unlock is not None:
                on_unlock(officer)
        offers.append(offer)
    _check_distinct_officers(offers)
    return offers


def activated_pin(found: Sequence[Contribution], threshold: int) -> ActivatedPin:
    """Combine the contributions into the PIN (see :func:`combine_contributions`)."""
    if threshold < 1:
        raise QuorumError(f"quorum threshold must be at least 1, got {threshold}")
    secret = combine_contributions(found, threshold)
    try:
        return ActivatedPin(secret, [c.fingerprint for c in found])
    finally:
        _zero(secret)


def _check_distinct_officers(offers: Sequence[Offer]) -> None:
    seen: set[str] = set()
    for offer in offers:
        if offer.fingerprint in seen:
            raise QuorumError(f"officer {offer.fingerprint} presented twice (two tokens, one key)")
        seen.add(offer.fingerprint)


def _refuse_duplicate_labels(officers: Iterable[tuple[str, str]]) -> None:
    seen: set[str] = set()
    for token_label, _pin in officers:
        if token_label in seen:
            raise QuorumError(f"officer token {token_label!r} presented twice")
        seen.add(token_label)


def make_offer(officer: UnlockedOfficer, registry: Mapping[str, bool]) -> Offer:
    """Check the officer against the policy, prove the key, read and parse every share."""
    fingerprint = officer.fingerprint
    who = f"officer {fingerprint} ({officer.name})"
    if fingerprint not in registry:
        raise QuorumError(f"{who} is not in the installed policy's officer registry")
    if registry[fingerprint] is not True:
        raise QuorumError(f"{who} is revoked and cannot contribute to activation")
    _prove_key(officer, who)
    shares = []
    for mnemonic in officer.read_shares():
        try:
            shares.append((Share.from_mnemonic(mnemonic), mnemonic))
        except (MnemonicError, ValueError, KeyError) as exc:
            raise QuorumError(f"{who} holds a damaged share: {share_error_text(exc)}") from None
    return Offer(fingerprint, officer.token_label, tuple(shares))


def _prove_key(officer: UnlockedOfficer, who: str) -> None:
    """The token must sign a fresh challenge with the registered key, not just hold a copy."""
    challenge = secrets.token_bytes(32)
    try:
        signature = officer.approve(challenge)
    except OfficerError as exc:
        raise QuorumError(f"{who} cannot sign with its approval key") from exc
    if not approval_keys.verify(officer.algorithm, officer.public_key, signature, challenge):
        raise QuorumError(f"{who} failed the approval-key challenge")


def combine_contributions(contributions: Sequence[Contribution], threshold: int) -> bytearray:
    """Check the shares belong together and are enough, then combine them.

    shamir_mnemonic wants exactly the member threshold of shares, so with more officers
    present the first ``t`` rebuild the secret and every extra share is checked by
    rebuilding again with it in place of one of those, so no presented share goes unchecked.
    """
    if not contributions:
        raise QuorumError("no officers presented")
    first = contributions[0]
    for other in contributions[1:]:
        _check_same_secret(first, other)
    _check_distinct(contributions)
    needed = max(threshold, first.share.member_threshold)
    if len(contributions) < needed:
        raise QuorumError(
            f"{len(contributions)} officer(s) presented, {needed} needed "
            f"(policy quorum {threshold}, share threshold {first.share.member_threshold})"
        )
    t = first.share.member_threshold
    secret = combine_shares([c.mnemonic for c in contributions[:t]])
    for extra in contributions[t:]:
        again = combine_shares([c.mnemonic for c in contributions[: t - 1]] + [extra.mnemonic])
        same = secrets.compare_digest(bytes(again), bytes(secret))
        _zero(again)
        if not same:
            _zero(secret)
            raise QuorumError(f"officer {extra.fingerprint} holds a share that does not agree")
    return secret


def _check_same_secret(first: Contribution, other: Contribution) -> None:
    if first.share.group_parameters() != other.share.group_parameters():
        raise QuorumError(
            f"officers {first.fingerprint} and {other.fingerprint} hold shares of "
            "different activation secrets"
        )


def _check_distinct(contributions: Sequence[Contribution]) -> None:
    by_index: dict[int, str] = {}
    fingerprints: set[str] = set()
    for c in contributions:
        if c.fingerprint in fingerprints:
            raise QuorumError(f"officer {c.fingerprint} presented twice (two tokens, one key)")
        fingerprints.add(c.fingerprint)
        if c.share.index in by_index:
            raise QuorumError(
                f"officers {by_index[c.share.index]} and {c.fingerprint} hold the same share"
            )
        by_index[c.share.index] = c.fingerprint


def _zero(buffer: bytearray) -> None:
    for i in range(len(buffer)):
        buffer[i] = 0
