"""``init``: the ceremony that creates a station (officers and their shares, administrators,
the audit key, the first policy), journaled with ``init_completed`` last: a station without
it refuses to work, and ``init --start-over`` wipes a half-made demo station.

Two ways in:

* :func:`initialise` (``init --demo``) provisions SoftHSM2 tokens itself, in the state
  directory, through the PKCS#11 API;
* :func:`enrol` (``init --plan FILE``) takes the custodian's own tokens: the signing HSM
  and every officer's and administrator's token, each by its PKCS#11 module plus label or
  serial (:class:`EnrolmentPlan`), initialised beforehand with the vendor's tools. The
  signing token's SO PIN and each officer's PIN are asked for (a prompt or ``--pin-fd``),
  never read from the plan, the command line or the environment. The signing token's PINs
  are then replaced by ones derived from the activation secret, so no person knows them.

Both journal each token's identity (manufacturer, model, serial, firmware: REQUIREMENTS
30) and each approval key's curve, and the first policy records the curve per officer.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from appliance import softhsm
from appliance.activation import (
    activation_pin,
    new_activation_secret,
    share_identifier,
    split_activation_secret,
)
from appliance.appliance import ENTROPY_SOURCES, Appliance, so_pin_for
from appliance.hsm import Hsm, HsmError
from appliance.journal_store import read_payloads
from appliance.keystore import KEY_ID_BYTES, Keystore
from appliance.officers import OfficerCard, enroll_administrator, enroll_officer
from appliance.profiles import ProfileError, profile_for
from appliance.state import SIGNING_TOKEN, ApplianceConfig, ApplianceState, StateError
from appliance.station import CeremonyError, Presented
from appliance.token_objects import clear_initialising, initialising, mark_initialising
from appliance.tokens import FoundToken, Modules, TokenIdentity, locate, single_module
from shared.approval_keys import ALGORITHMS
from shared.bitcoin.amount import COIN
from shared.bitcoin.script import OutputType
from shared.journal import MAX_ACTORS, Entry
from shared.policy import NETWORKS, Officer, Policy, verify_signed_policy
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
MIN_PIN, MAX_PIN = 4, 255
MAX_SHARES = 16  # SLIP-39's member count  # SoftHSM2's bounds; most tokens accept at least these


@dataclass(frozen=True)
class InitResult:
    appliance_id: str
    officers: list[str]  # approval-key fingerprints, in enrolment order
    administrators: list[str]
    audit_public_key: bytes
    policy_hash: bytes
    officer_labels: list[str]  # their tokens' labels, in the same order
    administrator_labels: list[str]


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
    """A demo station: SoftHSM2 tokens made in the state directory (the signing token, one
    per officer and administrator), then the same enrolment as :func:`enrol`."""
    if not demo:
        raise CeremonyError(
            "without --demo, enrol the custodian's own tokens with `init --plan FILE` "
            "(docs/hardware.md)"
        )
    _check_ceremony(quorum, admin_quorum, officers, admins)
    _check_new_pins([*officers, *admins])
    state = ApplianceState(root)
    _clear_half_made(state, start_over)
    config = ApplianceConfig(appliance_id=f"cs-{secrets.token_hex(6)}", network=network, demo=demo)
    existed = state.root.exists()
    try:
        state.create(config)
        return _demo_tokens(state, config, officers, admins, quorum, admin_quorum)
    except BaseException as exc:
        # every demo token lives in the state directory this call made: a failed init
        # leaves nothing half-made (a crash, which runs no handler, leaves it for
        # ``--start-over``); a station whose init_completed is journaled is whole and kept
        whole = _journaled_complete(state) is not False  # unknown: never wiped
        if not whole:
            _remove_made(state.root, existed)
        if not isinstance(exc, Exception):
            raise
        if whole:
            raise CeremonyError(
                f"{exc} (after station {config.appliance_id} in {state.root} was complete: "
                "it is kept; `status` says whether it is usable)"
            ) from exc
        raise CeremonyError(
            f"{exc} (init stopped: station {config.appliance_id} and its demo tokens "
            f"were removed from {state.root}; run init again)"
        ) from exc


def _journaled_complete(state: ApplianceState) -> bool | None:
    """Whether the journal file holds ``init_completed``, read straight from the file (no
    token is opened: the failure being handled may be the token's); None when the file
    cannot be read or a record cannot be decoded, so the caller cannot tell."""
    if not state.journal_path.exists():
        return False
    try:
        records = [Entry.from_bytes(raw).record for raw in read_payloads(state.journal_path)]
    except (OSError, ValueError, RuntimeError):
        return None
    return any(record.event == "init_completed" for record in records)


def _remove_made(root: Path, existed: bool) -> None:
    """Remove what init made in ``root`` (the directory too, unless it was there before)."""
    if not existed:
        shutil.rmtree(root, ignore_errors=True)
        return
    for child in root.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _demo_tokens(
    state: ApplianceState,
    config: ApplianceConfig,
    officers: Presented,
    admins: Presented,
    quorum: int,
    admin_quorum: int,
) -> InitResult:
    """SoftHSM2 tokens made in the state directory, then enrolled."""
    softhsm.configure(state.root)
    hsm = Hsm()
    hsm.rescan()
    try:
        profile_for(hsm.path).require("init_token", hsm.path, "init --demo")
    except ProfileError as exc:
        raise CeremonyError(str(exc)) from None
    throwaway = secrets.token_hex(16)
    hsm.init_token(config.signing_token, throwaway, None)
    for label, pin in [*officers, *admins]:
        hsm.init_token(label, secrets.token_hex(16), pin)
    tokens = single_module(hsm)  # found after every token exists: creating one moves slots
    return _enrol_tokens(
        state,
        config,
        tokens.modules,
        tokens.find(config.signing_token),
        throwaway,
        [(tokens.find(label), pin, None) for label, pin in officers],
        [(tokens.find(label), pin, None) for label, pin in admins],
        quorum,
        admin_quorum,
    )


@dataclass(frozen=True)
class TokenChoice:
    """A token as the custodian names it in an enrolment plan: module plus label or serial,
    and for officers and administrators the approval key's curve (None: the module's
    preferred one, appliance.profiles)."""

    module: str
    label: str | None = None
    serial: str | None = None
    algorithm: str | None = None

    def describe(self) -> str:
        which = f"label {self.label!r}" if self.label is not None else f"serial {self.serial!r}"
        return f"token with {which} in {self.module}"


@dataclass(frozen=True)
class EnrolmentPlan:
    """Which tokens make up a station (``init --plan FILE``, TOML; docs/hardware.md).

    No PIN is ever in a plan: they are asked for during the ceremony.
    """

    network: str
    signing: TokenChoice
    officers: tuple[TokenChoice, ...]
    administrators: tuple[TokenChoice, ...]
    quorum: int
    admin_quorum: int

    @classmethod
    def from_file(cls, path: Path) -> EnrolmentPlan:
        try:
            text = path.read_bytes().decode("utf-8")
        except OSError as exc:
            raise PlanError(f"{path}: cannot read the plan ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise PlanError(f"{path}: not UTF-8 text") from None
        return cls.from_toml(text, str(path))

    @classmethod
    def from_toml(cls, text: str, source: str = "plan") -> EnrolmentPlan:
        """The plan in ``text``; PlanError naming the file and the field that is wrong."""
        try:
            plain = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PlanError(f"{source}: not TOML ({exc})") from None
        return cls.from_plain(plain, source)

    @classmethod
    def from_plain(cls, plain: dict[str, Any], source: str = "plan") -> EnrolmentPlan:
        known = {"network", "signing", "officers", "administrators", "quorum", "admin_quorum"}
        unknown = sorted(set(plain) - known)
        if unknown:
            raise PlanError(f"{source}: unknown field {unknown[0]!r}")
        network = plain.get("network")
        if network not in NETWORKS:
            raise PlanError(f"{source}: network must be one of {', '.join(NETWORKS)}")
        officers = _choices(plain.get("officers"), f"{source}: officers")
        admins = _choices(plain.get("administrators"), f"{source}: administrators")
        quorum, admin_quorum = plain.get("quorum"), plain.get("admin_quorum")
        for name, value in (("quorum", quorum), ("admin_quorum", admin_quorum)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise PlanError(f"{source}: {name} must be a whole number")
        assert isinstance(quorum, int) and isinstance(admin_quorum, int)
        signing = _choice(plain.get("signing"), f"{source}: signing", approval=False)
        plan = cls(str(network), signing, officers, admins, quorum, admin_quorum)
        try:
            _check_ceremony(quorum, admin_quorum, officers, admins)
        except CeremonyError as exc:
            raise PlanError(f"{source}: {exc}") from None
        return plan


class PlanError(CeremonyError):
    """An enrolment plan that cannot be used; the message names the file and field."""


def _choices(value: object, where: str) -> tuple[TokenChoice, ...]:
    if not isinstance(value, list) or not value:
        raise PlanError(f"{where}: expected a list of tokens ([[...]] tables)")
    return tuple(_choice(item, f"{where}[{i}]", approval=True) for i, item in enumerate(value))


def _choice(value: object, where: str, approval: bool) -> TokenChoice:
    if not isinstance(value, dict):
        raise PlanError(f"{where}: expected a table with module and label or serial")
    allowed = {"module", "label", "serial"} | ({"algorithm"} if approval else set())
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise PlanError(f"{where}: unknown field {unknown[0]!r}")
    for name in value:
        if not isinstance(value[name], str) or not value[name].strip():
            raise PlanError(f"{where}: {name} must be non-empty text")
    if "module" not in value:
        raise PlanError(f"{where}: module (the PKCS#11 library's path) is missing")
    if ("label" in value) == ("serial" in value):
        raise PlanError(f"{where}: give exactly one of label or serial")
    algorithm = value.get("algorithm")
    if algorithm is not None and algorithm not in ALGORITHMS:
        raise PlanError(f"{where}: algorithm must be one of {', '.join(ALGORITHMS)}")
    return TokenChoice(value["module"], value.get("label"), value.get("serial"), algorithm)


def enrol(
    root: Path,
    plan: EnrolmentPlan,
    pin_for: Callable[[str], str],
    notes: list[str] | None = None,
) -> InitResult:
    """A station on the custodian's own tokens (module docstring). ``pin_for(prompt)``
    asks for one PIN (appliance.pins.PinSource.pin); ``notes`` receives what the operators
    should hear (a module whose profile was not tested here)."""
    notes = [] if notes is None else notes
    state = ApplianceState(root)
    if state.exists() or (state.root.exists() and any(state.root.iterdir())):
        raise StateError(f"{state.root} is not empty: init never overwrites a station")
    signing_hsm = Hsm(plan.signing.module)
    modules = Modules(signing_hsm)
    signing = _locate(modules, plan.signing)
    try:
        signing.profile.require("signing_keys", signing_hsm.path, "the signing token")
    except ProfileError as exc:
        raise CeremonyError(str(exc)) from None
    if Keystore(signing_hsm, signing.label).token_audit_key() is not None:
        raise CeremonyError(
            f"{plan.signing.describe()} already holds a Coldstation audit key: it belongs to "
            "a station; initialise it afresh with the vendor's tools first"
        )
    officers = [(_locate(modules, c), c.algorithm) for c in plan.officers]
    admins = [(_locate(modules, c), c.algorithm) for c in plan.administrators]
    _refuse_duplicate_tokens([signing] + [f for f, _ in officers + admins])
    for found, algorithm in officers + admins:  # before any token changes
        try:
            found.profile.approval_curve(found.hsm.path, algorithm)
        except ProfileError as exc:
            raise CeremonyError(f"token {found.label!r}: {exc}") from None
    for found in [signing] + [f for f, _ in officers + admins]:
        if not found.profile.tested_here:
            notes.append(
                f"token {found.label!r}: {found.hsm.path} ({found.profile.name} profile) is "
                "not tested by Coldstation's CI; follow docs/hardware.md's checks for it"
            )
    so_pin = pin_for(f"the signing token {signing.label!r} (its security officer PIN)")
    officer_pins = [(f, pin_for(f"officer token {f.label!r}"), a) for f, a in officers]
    admin_pins = [(f, pin_for(f"administrator token {f.label!r}"), a) for f, a in admins]
    config = ApplianceConfig(
        appliance_id=f"cs-{secrets.token_hex(6)}",
        network=plan.network,
        signing_token=signing.label,
        demo=False,
        signing_module=signing_hsm.path,
    )
    state.create(config)
    return _enrol_tokens(
        state,
        config,
        modules,
        signing,
        so_pin,
        officer_pins,
        admin_pins,
        plan.quorum,
        plan.admin_quorum,
    )


def _locate(modules: Modules, choice: TokenChoice) -> FoundToken:
    try:
        return locate(modules, choice.module, label=choice.label, serial=choice.serial)
    except HsmError as exc:
        raise CeremonyError(f"{choice.describe()}: {exc}") from None


def _refuse_duplicate_tokens(found: Sequence[FoundToken]) -> None:
    """Every role on its own token, and every label unique (ceremonies name tokens by it)."""
    seen_tokens: set[tuple[str, str]] = set()
    seen_labels: set[str] = set()
    for token in found:
        key = (token.hsm.path, token.counter_key)
        if key in seen_tokens:
            raise CeremonyError(f"token {token.label!r} is named twice in the plan")
        if token.label in seen_labels:
            raise CeremonyError(
                f"two tokens are labelled {token.label!r}: ceremonies name tokens by label, "
                "so relabel one with the vendor's tools"
            )
        seen_tokens.add(key)
        seen_labels.add(token.label)


Enrolling = Sequence[tuple[FoundToken, str, str | None]]  # token, its PIN, the curve wanted


def _check_ceremony(
    quorum: int, admin_quorum: int, officers: Sequence[object], admins: Sequence[object]
) -> None:
    """The quorums and counts a station can have: SLIP-39 makes at most 16 shares, and one
    journal record names every administrator beside the activating officers."""
    if not 1 <= len(officers) <= MAX_SHARES:
        raise CeremonyError(f"name 1 to {MAX_SHARES} officers (SLIP-39 makes at most 16 shares)")
    if len(admins) + len(officers) > MAX_ACTORS:
        # every administrator signs the first policy, beside the activating officers, and
        # one journal record names them all
        raise CeremonyError(f"officers and administrators together may be at most {MAX_ACTORS}")
    if not 1 <= quorum <= len(officers):
        raise CeremonyError(f"quorum {quorum} needs between 1 and {len(officers)} officers")
    if not 1 <= admin_quorum <= len(admins):
        raise CeremonyError(
            f"admin quorum {admin_quorum} needs between 1 and {len(admins)} administrators"
        )


def _check_new_pins(presented: Presented) -> None:
    """New demo-token PINs within the bounds SoftHSM2 (and most tokens) accept."""
    for label, pin in presented:
        if not MIN_PIN <= len(pin) <= MAX_PIN:
            raise CeremonyError(f"the PIN for {label} must be {MIN_PIN} to {MAX_PIN} characters")


def _enrol_tokens(
    state: ApplianceState,
    config: ApplianceConfig,
    modules: Modules,
    signing: FoundToken,
    so_pin: str,
    officers: Enrolling,
    admins: Enrolling,
    quorum: int,
    admin_quorum: int,
) -> InitResult:
    """Take the signing token, enrol the officers (key and share) and administrators (key),
    then the first records; shared by the demo and by real tokens."""
    hsm = signing.hsm
    signing_identity = signing.check_identity()
    secret, shares = _provision_signing_token(signing, config, so_pin, quorum, len(officers))
    try:
        cards = [
            enroll_officer(found, pin, share, algorithm)
            for (found, pin, algorithm), share in zip(officers, shares, strict=True)
        ]
        admin_cards = [enroll_administrator(found, pin, alg) for found, pin, alg in admins]
        config.officer_tokens = {c.fingerprint: c.token_label for c in cards}
        config.admin_tokens = {c.fingerprint: c.token_label for c in admin_cards}
        state.save(config)
        admin_presented = [(found.label, pin) for found, pin, _ in admins]
        return _first_records(
            state.root,
            hsm,
            modules,
            config,
            secret,
            shares,
            cards,
            admin_cards,
            admin_presented,
            quorum,
            admin_quorum,
            signing_identity,
        )
    finally:
        secret[:] = bytes(len(secret))


def _clear_half_made(state: ApplianceState, start_over: bool) -> None:
    """An existing station is never overwritten; a half-made demo one may be wiped, and
    only while its signing token still carries the init-in-progress marker. A directory
    that holds files but no station config is never wiped: it is not ours."""
    if not state.exists() and not (state.root.exists() and any(state.root.iterdir())):
        return
    if not state.exists():
        raise StateError(
            f"{state.root} is not empty and holds no station (no {state.config_path.name}): "
            "init never touches it; choose an empty or new --state"
        )
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
    signing: FoundToken, config: ApplianceConfig, so_pin: str, quorum: int, count: int
) -> tuple[bytearray, list[str]]:
    """Mark the signing token as initialising, then give it a user PIN from a secret that
    mixes the OS's and the token's RNG, and an SO PIN derived from that (as its SO, with
    the SO PIN it came with): from here on no person knows either."""
    hsm, token = signing.hsm, signing.token
    mark_initialising(hsm, token, config.appliance_id)
    secret = bytearray(new_activation_secret(16, hsm.generate_random(token, 32)))
    shares = split_activation_secret(secret, quorum, count)  # before any PIN changes
    pin = activation_pin(secret)
    hsm.so_set_pins(token, so_pin, so_pin_for(pin), pin)
    return secret, shares


def _first_policy(
    config: ApplianceConfig,
    cards: Sequence[OfficerCard],
    admin_cards: Sequence[OfficerCard],
    quorum: int,
    admin_quorum: int,
) -> Policy:
    return Policy(
        version=1,
        network=config.network,
        appliance_id=config.appliance_id,
        officers=tuple(_listed(c, "approver") for c in cards),
        approval_quorum=quorum,
        administrators=tuple(_listed(c, "administrator") for c in admin_cards),
        admin_quorum=admin_quorum,
        address_book=(),
        require_address_book=False,
        allowed_script_types=DEFAULT_SCRIPT_TYPES,
        previous_hash=None,
        **DEFAULT_LIMITS,
    )


def _listed(card: OfficerCard, role: str) -> Officer:
    return Officer.from_pubkey(card.approval_public_key, role, algorithm=card.algorithm)


def _enrolment_details(card: OfficerCard, role: str) -> dict[str, Any]:
    details: dict[str, Any] = {"role": role, "token": card.token_label}
    if card.identity is not None:
        details["identity"] = card.identity.to_plain()
    details["algorithm"] = card.algorithm
    return details


def _first_records(
    root: Path,
    hsm: Hsm,
    modules: Modules,
    config: ApplianceConfig,
    secret: bytearray,
    shares: list[str],
    cards: Sequence[OfficerCard],
    admin_cards: Sequence[OfficerCard],
    admins: Presented,
    quorum: int,
    admin_quorum: int,
    signing_identity: TokenIdentity,
) -> InitResult:
    """The audit key, the genesis records (each token's identity with its enrolment), the
    first policy signed by the administrators, and ``init_completed`` last.

    The enrolment records come before the administrators sign: the station finds each
    administrator's token in the module its enrolment record names."""
    appliance = Appliance(root, hsm, modules)
    try:
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
            "token_init",
            actors=actors,
            details={
                "token": config.signing_token,
                "module": hsm.path,
                "identity": signing_identity.to_plain(),
            },
        )
        for card in cards:
            record(
                "officer_enrolled",
                actors=[card.fingerprint],
                details=_enrolment_details(card, "approver"),
            )
        for card in admin_cards:
            record(
                "officer_enrolled",
                actors=[card.fingerprint],
                details=_enrolment_details(card, "administrator"),
            )
        policy = _first_policy(config, cards, admin_cards, quorum, admin_quorum)
        signed = appliance.sign_policy(admins, policy)
        verify_signed_policy(signed, None, [_listed(c, "administrator") for c in admin_cards])
        appliance.state.store_policy(signed)
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
        [c.token_label for c in cards],
        [c.token_label for c in admin_cards],
    )
