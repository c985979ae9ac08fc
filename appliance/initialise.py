"""``init``: the ceremony that creates a station (demo tokens, officers and their shares,
administrators, the audit key, the first policy), journaled with ``init_completed`` last: a
station without it refuses to work, and ``init --start-over`` wipes a half-made demo station.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from appliance import softhsm
from appliance.activation import (
    activation_pin,
    new_activation_secret,
    share_identifier,
    split_activation_secret,
)
from appliance.appliance import ENTROPY_SOURCES, Appliance, so_pin_for
from appliance.hsm import Hsm, HsmError
from appliance.keystore import KEY_ID_BYTES, Keystore
from appliance.officers import enroll_administrator, enroll_officer
from appliance.state import SIGNING_TOKEN, ApplianceConfig, ApplianceState, StateError
from appliance.station import CeremonyError, Presented
from appliance.token_objects import clear_initialising, initialising, mark_initialising
from shared.bitcoin.amount import COIN
from shared.bitcoin.script import OutputType
from shared.policy import Officer, Policy, verify_signed_policy
from shared.station import activation_commitment


class Limits(TypedDict):
    """The first policy's limits, spelled as :class:`Policy`'s keyword arguments (units as
    there), so the type checker sees each one reach the field of its type."""

    per_tx_limit: int
    per_day_limit: int
    fee_rate_ceiling: int
    max_fee: int
    request_ttl_max: int


DEFAULT_LIMITS: Limits = {
    "per_tx_limit": 10 * COIN,
    "per_day_limit": 50 * COIN,
    "fee_rate_ceiling": 200_000,  # millisat per vbyte: 200 sat/vB
    "max_fee": 1_000_000,
    "request_ttl_max": 7 * 24 * 3600,
}
DEFAULT_SCRIPT_TYPES = (
    OutputType.P2WPKH,
    OutputType.P2WSH,
    OutputType.P2TR,
    OutputType.P2SH,
    OutputType.P2PKH,
)
MIN_PIN, MAX_PIN = 4, 255  # SoftHSM2's bounds; most tokens accept at least these


@dataclass(frozen=True)
class InitResult:
    appliance_id: str
    officers: list[str]
    administrators: list[str]
    audit_public_key: bytes
    policy_hash: bytes


def initialise(
    root: Path,
    network: str,
    officers: Presented,
    admins: Presented,
    quorum: int,
    admin_quorum: int,
    demo: bool = True,
    start_over: bool = False,
) -> InitResult:
    """Create the appliance: tokens (demo), officers and their shares, administrators, the
    audit key, and the first policy signed by the administrators; all journaled, and
    ``init_completed`` last (a station without it refuses to work)."""
    if not demo:
        raise CeremonyError(
            "only demo mode provisions tokens; initialise real tokens with the vendor's tools"
        )
    if not 1 <= quorum <= len(officers):
        raise CeremonyError(f"quorum {quorum} needs between 1 and {len(officers)} officers")
    if not 1 <= admin_quorum <= len(admins):
        raise CeremonyError(
            f"admin quorum {admin_quorum} needs between 1 and {len(admins)} administrators"
        )
    for label, pin in [*officers, *admins]:
        if not MIN_PIN <= len(pin) <= MAX_PIN:
            raise CeremonyError(f"the PIN for {label} must be {MIN_PIN} to {MAX_PIN} characters")
    state = ApplianceState(root)
    _clear_half_made(state, start_over)
    config = ApplianceConfig(appliance_id=f"cs-{secrets.token_hex(6)}", network=network, demo=demo)
    state.create(config)
    softhsm.configure(state.root)
    hsm = Hsm()
    hsm.rescan()
    secret, shares = _provision_signing_token(hsm, config, quorum, len(officers))
    try:
        for label, pin in [*officers, *admins]:
            hsm.init_token(label, secrets.token_hex(16), pin)
        cards = [
            enroll_officer(hsm, label, pin, share)
            for (label, pin), share in zip(officers, shares, strict=True)
        ]
        admin_cards = [enroll_administrator(hsm, label, pin) for label, pin in admins]
        config.officer_tokens = {c.fingerprint: c.token_label for c in cards}
        config.admin_tokens = {c.fingerprint: c.token_label for c in admin_cards}
        state.save(config)
        return _first_records(
            root, hsm, config, secret, shares, cards, admin_cards, admins, quorum, admin_quorum
        )
    finally:
        secret[:] = bytes(len(secret))


def _clear_half_made(state: ApplianceState, start_over: bool) -> None:
    """An existing station is never overwritten; a half-made demo one may be wiped, and
    only while its signing token still carries the init-in-progress marker."""
    if not state.exists() and not (state.root.exists() and any(state.root.iterdir())):
        return
    complete, why = _completed(state)
    if complete:
        raise StateError(f"{state.root} already holds an appliance: init never overwrites one")
    if not start_over:
        raise StateError(
            f"{state.root} holds a half-made station ({why}): run init again with "
            "--start-over to wipe it (demo tokens live inside it), or choose "
            "another --state"
        )
    if _signing_token_finished(state):
        raise StateError(
            f"{state.root}: its signing token finished initialising (no "
            "init-in-progress marker), so the journal was emptied or cut after "
            f"the fact ({why}): restore it (`journal restore FILE`) and run "
            "`journal recover`; a finished station is never wiped"
        )
    shutil.rmtree(state.root)


def _signing_token_finished(state: ApplianceState) -> bool:
    """True when the state directory's signing token exists and no longer carries the
    init-in-progress marker: its initialisation completed once."""
    label = SIGNING_TOKEN
    with contextlib.suppress(StateError):
        label = state.load().signing_token
    softhsm.configure(state.root)
    hsm = Hsm()
    hsm.rescan()
    try:
        token = hsm.token(label=label)
        has_audit_key = Keystore(hsm, label).token_audit_key() is not None
    except HsmError:
        return False
    # the marker comes before the audit key, so a token with an audit key and no marker
    # finished; one that holds neither died before it had anything to lose
    return has_audit_key and not initialising(hsm, token)


def _completed(state: ApplianceState) -> tuple[bool, str]:
    try:
        config = state.load()
    except StateError as exc:
        return False, str(exc)
    if not config.demo:
        raise StateError(f"{state.root} holds a station with real tokens: not touched")
    try:
        with Appliance(state.root) as appliance:
            if appliance.journal.init_complete:
                return True, ""
            return False, f"journal has {appliance.journal.length} record(s), no init_completed"
    except (StateError, HsmError, OSError, ValueError) as exc:
        return False, str(exc)


def _provision_signing_token(
    hsm: Hsm, config: ApplianceConfig, quorum: int, count: int
) -> tuple[bytearray, list[str]]:
    """The signing token, with a PIN from a secret that mixes the OS's and the token's RNG:
    initialised with a throw-away SO PIN, then its own PINs set through the API."""
    throwaway = secrets.token_hex(16)
    token = hsm.init_token(config.signing_token, throwaway, None)
    mark_initialising(hsm, token, config.appliance_id)
    secret = bytearray(new_activation_secret(16, hsm.generate_random(token, 32)))
    pin = activation_pin(secret)
    hsm.so_set_pins(token, throwaway, so_pin_for(pin), pin)
    return secret, split_activation_secret(secret, quorum, count)


def _first_policy(
    config: ApplianceConfig, cards: list, admin_cards: list, quorum: int, admin_quorum: int
) -> Policy:
    return Policy(
        version=1,
        network=config.network,
        appliance_id=config.appliance_id,
        officers=tuple(Officer.from_pubkey(c.approval_public_key, "approver") for c in cards),
        approval_quorum=quorum,
        administrators=tuple(
            Officer.from_pubkey(c.approval_public_key, "administrator") for c in admin_cards
        ),
        admin_quorum=admin_quorum,
        address_book=(),
        require_address_book=False,
        allowed_script_types=DEFAULT_SCRIPT_TYPES,
        previous_hash=None,
        **DEFAULT_LIMITS,
    )


def _first_records(
    root: Path,
    hsm: Hsm,
    config: ApplianceConfig,
    secret: bytearray,
    shares: list[str],
    cards: list,
    admin_cards: list,
    admins: Presented,
    quorum: int,
    admin_quorum: int,
) -> InitResult:
    """The first policy, the audit key and the genesis records, ``init_completed`` last."""
    appliance = Appliance(root, hsm)
    try:
        policy = _first_policy(config, cards, admin_cards, quorum, admin_quorum)
        signed = appliance.sign_policy(admins, policy)
        genesis = [Officer.from_pubkey(c.approval_public_key, "administrator") for c in admin_cards]
        verify_signed_policy(signed, None, genesis)
        appliance.state.store_policy(signed)
        appliance.recorder.problems.clear()  # "never initialised": this is the initialisation
        appliance.keystore.unlock(activation_pin(secret))
        audit = appliance.keystore.create_audit_key(secrets.token_bytes(KEY_ID_BYTES))
        actors = tuple(c.fingerprint for c in cards[:quorum])
        record = appliance.record
        # the audit key's own record first: the registry is re-read from the journal after
        # every record, and every record is signed by this key
        record(
            "key_generated",
            actors=actors,
            subjects={"public_key": audit.public_key_bytes},
            details={
                "label": audit.label,
                "backup_model": audit.backup_model.value,
                "key_id": audit.key_id,
            },
        )
        record(
            "token_init", actors=actors, details={"token": config.signing_token, "module": hsm.path}
        )
        for card in cards:
            record(
                "officer_enrolled",
                actors=[card.fingerprint],
                details={"role": "approver", "token": card.token_label},
            )
        for card in admin_cards:
            record(
                "officer_enrolled",
                actors=[card.fingerprint],
                details={"role": "administrator", "token": card.token_label},
            )
        record(
            "policy_installed",
            actors=actors + tuple(signed.signatures),
            subjects={"policy": signed.policy.hash()},
            details={"version": 1},
        )
        record(
            "init_completed",
            actors=actors,
            details={
                "share_identifier": share_identifier(shares),
                "share_commitment": activation_commitment(secret),
                "share_threshold": quorum,
                "holders": [c.fingerprint for c in cards],
                "entropy": ENTROPY_SOURCES,
                "started": int(time.time()),
            },
        )
        appliance.recorder.checkpoint(force=True)
        clear_initialising(hsm, hsm.token(label=config.signing_token))
    finally:
        appliance.close()
    return InitResult(
        config.appliance_id,
        [c.fingerprint for c in cards],
        [c.fingerprint for c in admin_cards],
        audit.public_key_bytes,
        signed.policy.hash(),
    )
