"""The appliance's ceremonies, headless and scriptable: each one a short, journaled story.

Every ceremony that uses the signing token first activates it with M officers (their
shares rebuild the PIN, which is wiped when the ceremony ends), and writes what it did to
the journal, signed by the audit key, before it reports success.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from appliance import softhsm
from appliance.activation import (
    activate,
    activation_pin,
    new_activation_secret,
    split_activation_secret,
)
from appliance.backup import combined_kek, export_key, install_trusted_kek, restore_key
from appliance.hsm import Hsm, token_serial
from appliance.journal_store import JournalStore
from appliance.keystore import AUDIT_KEY_LABEL, BackupModel, KeyState, Keystore
from appliance.officers import PinGuard, enroll_administrator, enroll_officer, unlock
from appliance.recorder import Recorder
from appliance.state import ApplianceConfig, ApplianceState
from shared import canonical
from shared.bitcoin.descriptor import Descriptor
from shared.bitcoin.script import OutputType
from shared.journal import GENESIS, Entry, Record
from shared.policy import (
    Officer,
    Policy,
    SignedPolicy,
    count_admin_signatures,
    policy_signing_digest,
    verify_signed_policy,
)
from shared.review import OurKey, PinnedWallet

#: Officers or administrators presented for a ceremony: (token label, PIN).
Presented = Sequence[tuple[str, str]]

DEFAULT_LIMITS = {
    "per_tx_limit": 10 * 100_000_000,
    "per_day_limit": 50 * 100_000_000,
    "fee_rate_ceiling": 200_000,  # millisat per vbyte: 200 sat/vB
    "max_fee": 1_000_000,
    "request_ttl_max": 7 * 24 * 3600,
}
DEFAULT_SCRIPT_TYPES = (OutputType.P2WPKH, OutputType.P2WSH, OutputType.P2TR,
                        OutputType.P2SH, OutputType.P2PKH)  # fmt: skip


def so_pin_for(user_pin: str) -> str:
    """The signing token's SO PIN, derived from the activation PIN.

    Installing the backup KEK needs the security officer (only the SO may mark a key
    trusted); deriving the SO PIN from the quorum-rebuilt PIN means the SO role, too,
    exists only while M officers are present, and no second secret has to be kept.
    """
    return hashlib.sha256(f"coldstation-so-pin:{user_pin}".encode()).hexdigest()[:32]


class CeremonyError(RuntimeError):
    """A ceremony that cannot go ahead; the message says why."""


@dataclass(frozen=True)
class InitResult:
    appliance_id: str
    officers: list[str]
    administrators: list[str]
    audit_public_key: bytes
    policy_hash: bytes


class Appliance:
    """A loaded appliance: its state, HSM, keystore, PIN guard and journal."""

    def __init__(self, root: Path, hsm: Hsm | None = None) -> None:
        self.state = ApplianceState(root)
        self.config = self.state.load()
        if self.config.demo and hsm is None:
            softhsm.configure(self.state.root)
        self.hsm = hsm or Hsm()
        self.keystore = Keystore(self.hsm, self.config.signing_token, self.state.keys_path)
        self.guard = PinGuard(self.state.guard_path)
        store, self.recovery = JournalStore.open(self.state.journal_path)
        self.recorder = Recorder(store, self.keystore, self.config.appliance_id)

    def close(self) -> None:
        self.keystore.lock()
        self.recorder.store.close()

    def __enter__(self) -> Appliance:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- policy and activation --------------------------------------------------------------

    def policy(self) -> Policy:
        signed = self.state.installed_policy()
        if signed is None:
            raise CeremonyError("no policy installed")
        return signed.policy

    def pinned_wallet(self) -> PinnedWallet:
        """The pinned descriptors with this HSM's keys (audit key excluded) and their states."""
        descriptors = tuple(Descriptor.parse(text) for text in self.state.pinned_descriptors())
        keys = tuple(OurKey(info.public_key_bytes, info.label, info.state.value)
                     for info in self.keystore.key_infos()
                     if info.label != AUDIT_KEY_LABEL)  # fmt: skip
        return PinnedWallet(descriptors, keys)

    @contextmanager
    def activated(self, officers: Presented) -> Iterator[tuple[str, ...]]:
        """The signing token unlocked by M officers for the length of the block."""
        policy = self.policy()
        registry = {o.fingerprint: o.active for o in policy.officers}
        with activate(self.hsm, self.guard, officers, registry, policy.approval_quorum) as pin:
            self.keystore.unlock(pin.reveal())
            actors = pin.officers
        try:
            if self.keystore.has_audit_key():
                self.recorder.record("activation", actors=actors,
                                     subjects={"policy": policy.hash()})  # fmt: skip
                self._flush_pending(actors)
            yield actors
        finally:
            self.keystore.lock()

    # -- ceremonies -------------------------------------------------------------------------

    def keygen(self, officers: Presented, label: str, model: BackupModel) -> Entry:
        with self.activated(officers) as actors:
            info = self.keystore.generate_key(label, model)
            return self.recorder.record(
                "key_generated", actors=actors,
                subjects={"public_key": info.public_key_bytes},
                details={"label": label, "backup_model": model.value},
            )  # fmt: skip

    def export_wallet(self, officers: Presented, label: str) -> tuple[Descriptor, Entry]:
        """The wallet descriptor of one key and the signed journal receipt for it."""
        info = self.keystore.info(label)
        descriptor = Descriptor.parse(f"wpkh({info.public_key})", require_checksum=False)
        with self.activated(officers) as actors:
            self.state.pin_descriptor(str(descriptor))
            entry = self.recorder.record(
                "wallet_exported", actors=actors,
                subjects={"descriptor": hashlib.sha256(str(descriptor).encode()).digest()},
                details={"label": label, "descriptor": str(descriptor),
                         "audit_key": self.keystore.audit_public_key().hex()},
            )  # fmt: skip
        return descriptor, entry

    def pin_wallet(self, officers: Presented, descriptor: Descriptor) -> Entry:
        """Pin a wallet descriptor (e.g. a multisig with cosigners' keys) this appliance
        signs for; one of its keys must be ours."""
        ours = {info.public_key_bytes for info in self.keystore.key_infos()}
        keys = {pubkey for pubkey, _ in descriptor.derive(0).keys}
        if not keys & ours:
            raise CeremonyError("none of the descriptor's keys is held by this appliance")
        with self.activated(officers) as actors:
            self.state.pin_descriptor(str(descriptor))
            return self.recorder.record(
                "wallet_exported", actors=actors,
                subjects={"descriptor": hashlib.sha256(str(descriptor).encode()).digest()},
                details={"descriptor": str(descriptor),
                         "audit_key": self.keystore.audit_public_key().hex()},
            )  # fmt: skip

    def set_key_state(self, officers: Presented, label: str, state: KeyState) -> Entry:
        if label == AUDIT_KEY_LABEL:
            raise CeremonyError("the audit key signs the journal: it cannot be suspended or "
                                "archived (a new appliance gets a new audit key)")
        event = {KeyState.SUSPENDED: "key_suspended", KeyState.ACTIVE: "key_reactivated",
                 KeyState.ARCHIVED: "key_archived"}[state]  # fmt: skip
        with self.activated(officers) as actors:
            self.keystore.set_state(label, state)
            return self.recorder.record(event, actors=actors, details={"label": label})

    def install_policy(self, officers: Presented, signed: SignedPolicy) -> Entry:
        current = self.policy()
        tally = verify_signed_policy(signed, current)
        was_active = {o.fingerprint for o in current.officers if o.active}
        revoked = [o.fingerprint for o in signed.policy.officers
                   if o.fingerprint in was_active and not o.active]  # fmt: skip
        with self.activated(officers) as actors:
            self.state.store_policy(signed)
            entry = self.recorder.record(
                "policy_installed", actors=actors + tally.valid,
                subjects={"policy": signed.policy.hash()},
                details={"version": signed.policy.version},
            )  # fmt: skip
            for fingerprint in revoked:
                entry = self.recorder.record("officer_revoked", actors=[fingerprint],
                                             details={"policy_version": signed.policy.version})
            return entry

    def sign_policy(self, admins: Presented, policy: Policy) -> SignedPolicy:
        """Administrators sign a policy document with their own tokens."""
        digest = policy_signing_digest(policy)
        signatures = {}
        for label, pin in admins:
            with unlock(self.hsm, self.guard, label, pin) as admin:
                signatures[admin.fingerprint] = admin.approve(digest)
        return SignedPolicy(policy, signatures)

    def export_journal(self, officers: Presented) -> Entry:
        """Record the export itself, so the exported journal ends with its own export."""
        with self.activated(officers) as actors:
            return self.recorder.record("journal_export", actors=actors,
                                        details={"length": len(self.recorder.store) + 1})

    def reset_lockout(self, admins: Presented, officer_label: str) -> Path:
        """Administrators give a locked-out officer token its attempts back.

        A quorum of the installed policy's administrators signs the reset with their own
        tokens. The signing token may be out of reach (the locked-out officer may be needed
        for the quorum), so the signed evidence is kept in the state directory and written
        to the journal as a ``pin_lockout`` record at the next activation.
        """
        policy = self.policy()
        serial = token_serial(self.hsm.token(label=officer_label))
        evidence = {"type": "coldstation-lockout-reset", "token": officer_label,
                    "serial": serial, "time": int(time.time())}  # fmt: skip
        digest = canonical.digest(evidence)
        signatures = {}
        for label, pin in admins:
            with unlock(self.hsm, self.guard, label, pin) as admin:
                signatures[admin.fingerprint] = admin.approve(digest)
        tally = count_admin_signatures(policy, digest, signatures)
        if not tally.met:
            raise CeremonyError(f"lockout reset needs {policy.admin_quorum} administrators; "
                                f"valid: {len(tally.valid)} {list(tally.rejected)}")  # fmt: skip
        self.guard.reset(serial)
        return self.state.store_pending({**evidence, "signatures": signatures})

    def defer_record(self, event: str, *, decision: str | None = None,
                     subjects: dict[str, bytes] | None = None,
                     details: dict | None = None) -> Path:  # fmt: skip
        """Keep a record for the next activation (the audit key is in the locked token).

        Used for refusals decided before any officer is present; the record is written,
        signed and chained, as soon as the signing token is next activated.
        """
        now = int(time.time())
        # Build the record now, so a record the journal would refuse fails here, at the
        # refusal, and never sits in the pending folder blocking every later activation.
        Record(seq=0, prev_hash=GENESIS, time=now, appliance_id=self.config.appliance_id,
               event=event, decision=decision, subjects=dict(subjects or {}),
               details={**(details or {}), "decided_at": now})  # fmt: skip
        return self.state.store_pending({
            "type": "coldstation-deferred-record", "time": now, "event": event,
            "decision": decision, "subjects": subjects or {}, "details": details or {},
        })  # fmt: skip

    def flush_pending(self, officers: Presented) -> int:
        """Activate only to write what is pending; returns how many records were written."""
        waiting = len(self.state.pending())
        if waiting:
            with self.activated(officers):
                pass
        return waiting

    def _flush_pending(self, actors: tuple[str, ...]) -> None:
        for path, evidence in self.state.pending():
            if evidence.get("type") == "coldstation-deferred-record":
                self.recorder.record(
                    evidence["event"], decision=evidence["decision"],
                    subjects=evidence["subjects"],
                    details={**evidence["details"], "decided_at": evidence["time"]},
                )  # fmt: skip
            else:
                self.recorder.record("pin_lockout", actors=tuple(evidence["signatures"]),
                                     details={"reset_token": evidence["token"],
                                              "serial": evidence["serial"],
                                              "reset_time": evidence["time"],
                                              "activated_by": list(actors)})  # fmt: skip
            path.unlink()

    def install_kek(self, officers: Presented, kek_shares: Sequence[str]) -> Entry:
        """Put the trusted backup KEK, rebuilt from its custodians' shares, on the token."""
        policy = self.policy()
        registry = {o.fingerprint: o.active for o in policy.officers}
        with activate(self.hsm, self.guard, officers, registry, policy.approval_quorum) as pin, \
                combined_kek(kek_shares) as kek:  # fmt: skip
            user_pin = pin.reveal()
            self.keystore.lock()
            check = install_trusted_kek(self.hsm, self.config.signing_token,
                                        so_pin_for(user_pin), user_pin, kek)  # fmt: skip
            self.keystore.unlock(user_pin)
            actors = pin.officers
        try:
            return self.recorder.record("backup", actors=actors,
                                        details={"step": "kek_installed", "kek_check": check})
        finally:
            self.keystore.lock()

    def backup_key(self, officers: Presented, label: str) -> tuple[bytes, Entry]:
        """The key wrapped under the trusted KEK, for a token holding the same KEK."""
        with self.activated(officers) as actors:
            blob = export_key(self.keystore, label)
            info = self.keystore.info(label)
            entry = self.recorder.record(
                "backup", actors=actors,
                subjects={"public_key": info.public_key_bytes,
                          "blob": hashlib.sha256(blob).digest()},
                details={"step": "key_exported", "label": label},
            )  # fmt: skip
        return blob, entry

    def restore(self, officers: Presented, blob: bytes, label: str, public_key: bytes) -> Entry:
        """Unwrap a cloned key; it must sign for the original public key, or it is refused."""
        with self.activated(officers) as actors:
            info = restore_key(self.keystore, blob, label, public_key,
                               BackupModel.WRAP_WITH_TRUSTED)  # fmt: skip
            return self.recorder.record(
                "restore", actors=actors,
                subjects={"public_key": info.public_key_bytes,
                          "blob": hashlib.sha256(blob).digest()},
                details={"label": label},
            )  # fmt: skip

    def verify_journal(self) -> list[str]:
        problems = self.recorder.verify()
        if self.recovery.torn is not None:
            problems.insert(0, f"torn last record at start-up: {self.recovery.torn}")
        return problems


def initialise(
    root: Path,
    network: str,
    officers: Presented,
    admins: Presented,
    quorum: int,
    admin_quorum: int,
    demo: bool = True,
) -> InitResult:
    """Create the appliance: tokens (demo), officers and their shares, administrators, the
    audit key, and the first policy signed by the administrators; all journaled."""
    if not 1 <= quorum <= len(officers):
        raise CeremonyError(f"quorum {quorum} needs between 1 and {len(officers)} officers")
    state = ApplianceState(root)
    config = ApplianceConfig(appliance_id=f"cs-{secrets.token_hex(6)}", network=network,
                             demo=demo)  # fmt: skip
    state.create(config)
    if demo:
        softhsm.configure(state.root)
    secret = bytearray(new_activation_secret())
    try:
        hsm = _provision_tokens(config, officers, admins, activation_pin(secret), demo)
        shares = split_activation_secret(secret, quorum, len(officers))
    finally:
        secret[:] = bytes(len(secret))
    cards = [enroll_officer(hsm, label, pin, share)
             for (label, pin), share in zip(officers, shares, strict=True)]  # fmt: skip
    admin_cards = [enroll_administrator(hsm, label, pin) for label, pin in admins]
    config.officer_tokens = {c.fingerprint: c.token_label for c in cards}
    config.admin_tokens = {c.fingerprint: c.token_label for c in admin_cards}
    state.save(config)
    appliance = Appliance(root, hsm)
    try:
        policy = _first_policy(config, cards, admin_cards, quorum, admin_quorum)
        signed = appliance.sign_policy(admins, policy)
        genesis = [Officer.from_pubkey(c.approval_public_key, "administrator")
                   for c in admin_cards]  # fmt: skip
        verify_signed_policy(signed, None, genesis)
        appliance.state.store_policy(signed)
        audit = _first_records(appliance, officers, cards, admin_cards, signed)
    finally:
        appliance.close()
    return InitResult(config.appliance_id, [c.fingerprint for c in cards],
                      [c.fingerprint for c in admin_cards], audit,
                      signed.policy.hash())  # fmt: skip


def _provision_tokens(config: ApplianceConfig, officers: Presented, admins: Presented,
                      signing_pin: str, demo: bool) -> Hsm:  # fmt: skip
    if not demo:
        raise CeremonyError("only demo mode provisions tokens; initialise real tokens "
                            "with the vendor's tools")  # fmt: skip
    softhsm.init_token(config.signing_token, so_pin_for(signing_pin), signing_pin)
    for label, pin in [*officers, *admins]:
        softhsm.init_token(label, secrets.token_hex(16), pin)
    hsm = Hsm()
    hsm.rescan()
    return hsm


def _first_policy(config: ApplianceConfig, cards: list, admin_cards: list, quorum: int,
                  admin_quorum: int) -> Policy:  # fmt: skip
    return Policy(
        version=1, network=config.network, appliance_id=config.appliance_id,
        officers=tuple(Officer.from_pubkey(c.approval_public_key, "approver") for c in cards),
        approval_quorum=quorum,
        administrators=tuple(Officer.from_pubkey(c.approval_public_key, "administrator")
                             for c in admin_cards),
        admin_quorum=admin_quorum, address_book=(), require_address_book=False,
        allowed_script_types=DEFAULT_SCRIPT_TYPES, previous_hash=None, **DEFAULT_LIMITS,
    )  # fmt: skip


def _first_records(appliance: Appliance, officers: Presented, cards: list, admin_cards: list,
                   signed: SignedPolicy) -> bytes:  # fmt: skip
    """Audit key, then the genesis records; the officers are present, so activate."""
    with appliance.activated(officers[: signed.policy.approval_quorum]) as actors:
        audit = appliance.keystore.create_audit_key()
        record = appliance.recorder.record
        record("token_init", actors=actors,
               details={"token": appliance.config.signing_token, "module": appliance.hsm.path})
        record("key_generated", actors=actors, subjects={"public_key": audit.public_key_bytes},
               details={"label": audit.label, "backup_model": audit.backup_model.value})
        for card in cards:
            record("officer_enrolled", actors=[card.fingerprint],
                   details={"role": "approver", "token": card.token_label})
        for card in admin_cards:
            record("officer_enrolled", actors=[card.fingerprint],
                   details={"role": "administrator", "token": card.token_label})
        record("policy_installed", actors=actors + tuple(signed.signatures),
               subjects={"policy": signed.policy.hash()}, details={"version": 1})
    return audit.public_key_bytes

