"""The appliance: the station (:class:`appliance.station.Station`, opened and activated)
with its ceremonies, each a short, journaled story. CLI and TUI open this class.

Every ceremony that uses the signing token is activated by M officers
(:meth:`appliance.station.Station.activated`). The journal is the station's only truth
(DESIGN 9), so a ceremony either *is* its record (suspending a key, pinning a wallet,
installing a policy: the state is folded from the record) or journals its intent before an
effect that cannot be taken back and its completion after it:

- keygen: intent (label, key id, backup model) -> key pair in the HSM -> ``key_generated``;
  after a crash the next activation adopts the pair by its key id, or generates it.
- backup and restore: intent -> the trusted KEK, rebuilt from its custodians' shares, is put
  in the token, used and destroyed -> record. A KEK a crash leaves is destroyed the moment
  the station next opens; an interrupted restore is finished (or abandoned) by key id.
- re-key (a policy that revokes officers or changes the quorum): intent -> new shares on
  every remaining officer's token -> SO PIN, then user PIN changed -> ``pin_rekeyed`` and
  ``policy_installed``; the next activation finishes whichever step a crash interrupted.
- lockout reset: the administrators' signed evidence is written before the counter is reset.

Creating a station is :func:`appliance.initialise.initialise`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from appliance.activation import (
    QuorumError,
    activated_pin,
    activation_pin,
    contributions,
    new_activation_secret,
    share_identifier,
    split_activation_secret,
)
from appliance.backup import (
    BackupError,
    combined_kek,
    destroy_kek,
    export_key,
    finish_restore,
    install_trusted_kek,
    prove_backup,
    restore_key,
)
from appliance.hsm import HsmError, WrongPinError
from appliance.journal_store import JournalStore
from appliance.keystore import AUDIT_KEY_LABEL, KEY_ID_BYTES, BackupModel, KeyState, Keystore
from appliance.officers import unlock
from appliance.pending import deferred_refusal, lockout_reset, reset_digest
from appliance.profiles import ProfileError, profile_for
from appliance.recorder import Recorder
from appliance.state import ApplianceState
from appliance.station import Activation, CeremonyError, Presented, Station
from shared import canonical
from shared.bitcoin.address import network_by_name
from shared.bitcoin.descriptor import Descriptor
from shared.journal import Entry, JournalError, parse_export, verify_journal
from shared.key_models import BIP32_SEED, HSM_KEY, KeyModelError, check_key_model
from shared.policy import (
    Policy,
    SignedPolicy,
    count_admin_signatures,
    policy_signing_digest,
    recovery_statement,
    verify_signed_policy,
    wallet_pin_statement,
)
from shared.review import OurKey
from shared.station import (
    MAX_CUSTODIANS,
    MAX_REGISTER_TEXT,
    BackupEntry,
    activation_commitment,
)

ENTROPY_SOURCES = ["os.urandom", "signing token C_GenerateRandom"]


def so_pin_for(user_pin: str) -> str:
    """The signing token's SO PIN, derived from the activation PIN.

    Installing the backup KEK needs the security officer (only the SO may mark a key
    trusted); deriving the SO PIN from the quorum-rebuilt PIN means the SO role, too,
    exists only while M officers are present, and no second secret has to be kept. A
    re-key changes both (the SO could otherwise set a new user PIN with old shares).
    """
    return hashlib.sha256(f"coldstation-so-pin:{user_pin}".encode()).hexdigest()[:32]


class Appliance(Station):
    """The appliance its callers open (CLI, TUI, signing engine): a loaded, activatable
    :class:`Station` and the ceremonies that change it."""

    # -- keys -------------------------------------------------------------------------------

    def keygen(
        self,
        officers: Presented,
        label: str,
        model: BackupModel,
        key_model: str = HSM_KEY,
    ) -> Entry:
        """A new signing key (shared.key_models): an hsm-key pair, or a bip32 seed whose
        account the journal records. A bip32 seed has no HSM-to-HSM backup (its object
        cannot be unwrapped under the backup KEK's template), so only the non-extractable
        backup model is accepted for it."""
        key_model = _key_model(key_model)
        if key_model == BIP32_SEED and BackupModel(model) is not BackupModel.NON_EXTRACTABLE:
            raise CeremonyError(
                "a bip32-seed key cannot be backed up by HSM cloning: use "
                "--model non-extractable (docs/design.md, key models)"
            )
        with self.activated(officers) as act:
            finished = act.completed.get(("keygen", label))
            if finished is not None:
                return finished  # a rerun: this activation finished the crashed keygen
            if label in self.journal.keys:
                raise CeremonyError(f"key {label!r} already exists")
            intent = self.record(
                "intent",
                actors=act.actors,
                details={
                    "ceremony": "keygen",
                    "label": label,
                    "key_id": secrets.token_hex(KEY_ID_BYTES),
                    "backup_model": BackupModel(model).value,
                    **({"key_model": key_model} if key_model != HSM_KEY else {}),
                },
            )
            return self._finish_keygen(intent.record.seq, intent.record.details, act)

    def _finish_keygen(self, seq: int, intent: dict, act: Activation) -> Entry:
        """Adopt the key a crash left under the intent's key id, or generate it now."""
        label, model = intent["label"], BackupModel(intent["backup_model"])
        key_model = _key_model(intent.get("key_model", HSM_KEY))
        key_id = bytes.fromhex(intent["key_id"])
        if key_model == BIP32_SEED:
            network = self.network
            info = self.keystore.adopt_seed(label, key_id, network)
            if info is None:
                info = self.keystore.generate_seed(label, key_id, network)
            account = {"key_model": key_model, "xpub": info.xpub, "key_origin": info.key_origin}
        else:
            info = self.keystore.adopt(label, key_id, model)
            if info is None:
                info = self.keystore.generate_key(label, model, key_id)
            account = {}
        entry = self.record(
            "key_generated",
            actors=act.actors,
            subjects={"public_key": info.public_key_bytes},
            details={
                "label": label,
                "backup_model": model.value,
                "key_id": key_id.hex(),
                "intent": seq,
                **account,
            },
        )
        act.completed[("keygen", label)] = entry
        return entry

    def set_key_state(self, officers: Presented, label: str, state: KeyState) -> Entry:
        if label == AUDIT_KEY_LABEL:
            raise CeremonyError(
                "the audit key signs the journal: it cannot be suspended or "
                "archived (a new appliance gets a new audit key)"
            )
        event = {
            KeyState.SUSPENDED: "key_suspended",
            KeyState.ACTIVE: "key_reactivated",
            KeyState.ARCHIVED: "key_archived",
        }[state]
        entry = self.journal.keys.get(label)
        if entry is None:
            raise CeremonyError(f"no key labelled {label!r}")
        if entry.state == state.value:
            raise CeremonyError(f"key {label!r} is already {state.value}")
        if entry.state == "archived" or (event == "key_reactivated" and entry.state != "suspended"):
            raise CeremonyError(f"key {label!r} cannot go from {entry.state} to {state.value}")
        with self.activated(officers) as act:  # the quorum makes the record a receipt
            return self.record(
                event,
                actors=act.actors,
                details={"label": label, "quorum": self.policy().approval_quorum},
            )

    # -- wallets ----------------------------------------------------------------------------

    def export_wallet(self, officers: Presented, label: str) -> tuple[Descriptor, Entry]:
        """The wallet descriptor of one key and the signed journal receipt for it (pinned:
        a station's own single key needs no administrators)."""
        entry = self.journal.keys.get(label)
        if entry is None or label == AUDIT_KEY_LABEL:
            raise CeremonyError(f"no signing key labelled {label!r}")
        if entry.state != "active":
            raise CeremonyError(f"key {label!r} is {entry.state}: it does not receive funds")
        account = entry.account()
        descriptor = (
            account.descriptor()
            if account is not None
            else Descriptor.parse(f"wpkh({entry.public_key.hex()})", require_checksum=False)
        )
        with self.activated(officers) as act:
            receipt = self.record(
                "wallet_exported",
                actors=act.actors,
                subjects={"descriptor": _digest_text(str(descriptor))},
                details={
                    "label": label,
                    "descriptor": str(descriptor),
                    "audit_key": self._audit_hex(),
                    "quorum": self.policy().approval_quorum,
                },
            )
        return descriptor, receipt

    def pin_wallet(
        self, officers: Presented, descriptor: Descriptor, admins: Presented = ()
    ) -> Entry:
        """Pin a wallet (a multisig with cosigners' keys) this station signs for.

        Authorised by the policy in force (it names the descriptor as internal) or by the
        administrators' quorum signing the pin here. Refused: no station key, two station
        keys, the audit key, a key that is not active, another network, or a wallet others
        can spend without this station (threshold <= other keys) unless the policy names it.
        """
        self.require_usable()
        policy = self.policy()
        text = str(descriptor)
        if text in self.journal.wallets:
            raise CeremonyError(f"{text} is already pinned")
        internal = self._check_pinnable(descriptor, policy)
        signatures: dict[str, bytes] = {}
        if not internal:
            signatures = self._admin_quorum(
                admins, policy, wallet_pin_statement(self.config.appliance_id, "pin", text)
            )
        with self.activated(officers) as act:
            return self.record(
                "wallet_pinned",
                actors=act.actors,
                subjects={"descriptor": _digest_text(text)},
                details={
                    "descriptor": text,
                    "audit_key": self._audit_hex(),
                    "quorum": policy.approval_quorum,
                    "authorised_by": "policy" if internal else "administrators",
                    **({"admin_signatures": signatures} if signatures else {}),
                },
            )

    def unpin_wallet(self, officers: Presented, descriptor: Descriptor, admins: Presented) -> Entry:
        """The administrators' quorum takes a wallet off the station (it no longer signs for
        it, and outputs to it are payments)."""
        self.require_usable()
        text = str(descriptor)
        if text not in self.journal.wallets:
            raise CeremonyError(f"{text} is not pinned")
        policy = self.policy()
        signatures = self._admin_quorum(
            admins, policy, wallet_pin_statement(self.config.appliance_id, "unpin", text)
        )
        with self.activated(officers) as act:
            return self.record(
                "wallet_unpinned",
                actors=act.actors,
                details={"descriptor": text, "admin_signatures": signatures},
            )

    def _check_pinnable(self, descriptor: Descriptor, policy: Policy) -> bool:
        """The structural rules; returns True when the policy names it as internal."""
        keys = descriptor.keys
        audit = self.journal.audit_key
        if audit is not None and any(k.pubkey == audit for k in keys):
            raise CeremonyError("the descriptor holds the station's audit key: refused")
        ours = [
            entry
            for entry in self.journal.keys.values()
            for described in keys
            if OurKey(entry.public_key, entry.label, entry.state, entry.account()).holds(described)
        ]
        if not ours:
            raise CeremonyError("none of the descriptor's keys is held by this station")
        if len(ours) > 1:
            raise CeremonyError(
                "the descriptor holds two of this station's keys: one station "
                "may hold only one key of a wallet"
            )
        if ours[0].state != "active":
            raise CeremonyError(f"the station's key {ours[0].label!r} is {ours[0].state}")
        kind = network_by_name(policy.network).kind
        if descriptor.network is not None and descriptor.network is not kind:
            raise CeremonyError(f"the descriptor's keys are not {policy.network} keys")
        internal = str(descriptor) in policy.internal_wallets
        threshold = descriptor.threshold or 1
        others = len(keys) - 1
        if threshold <= others and not internal:
            raise CeremonyError(
                f"{threshold}-of-{len(keys)}: the other {others} keys can spend without this "
                "station; only a wallet the administrators' policy names as internal may be "
                "pinned like that (policy draft --internal-wallet)"
            )
        return internal

    def _audit_hex(self) -> str:
        return self.keystore.audit_public_key().hex()

    # -- administrators ---------------------------------------------------------------------

    def admin_signatures(self, admins: Presented, digest: bytes) -> dict[str, bytes]:
        """Each administrator unlocks their own token and signs ``digest``."""
        signatures = {}
        for label, pin in admins:
            with unlock(self.tokens(), self.guard, label, pin) as admin:
                signatures[admin.fingerprint] = admin.approve(digest)
        return signatures

    def _admin_quorum(self, admins: Presented, policy: Policy, statement: dict) -> dict[str, bytes]:
        if not admins:
            raise CeremonyError(f"this needs {policy.admin_quorum} administrators (--admins)")
        signatures = self.admin_signatures(admins, canonical.digest(statement))
        tally = count_admin_signatures(policy, canonical.digest(statement), signatures)
        if not tally.met:
            refused = "; ".join(f"{fp}: {why}" for fp, why in tally.rejected) or "none"
            raise CeremonyError(
                f"needs {policy.admin_quorum} administrators; valid: {len(tally.valid)} ({refused})"
            )
        return {fp: signatures[fp] for fp in tally.valid}

    def sign_policy(self, admins: Presented, policy: Policy) -> SignedPolicy:
        """Administrators sign a policy document with their own tokens."""
        return SignedPolicy(policy, self.admin_signatures(admins, policy_signing_digest(policy)))

    def reset_lockout(self, admins: Presented, officer_label: str) -> Path:
        """Administrators give a locked-out officer token its attempts back.

        A quorum of the installed policy's administrators signs the reset with their own
        tokens. The signing token may be out of reach (the locked-out officer may be needed
        for the quorum), so the signed evidence waits in ``pending/`` and is journaled (its
        signatures checked again) at the next activation. The evidence is stored before the
        counter is reset: a crash between the two leaves a record for nothing, never a reset
        without a record.
        """
        self.require_usable()
        policy = self.policy()
        serial = self.tokens().find(officer_label).counter_key
        statement = lockout_reset(
            self.config.appliance_id, officer_label, serial, self.now(), secrets.token_hex(8)
        )
        signatures = self.admin_signatures(admins, reset_digest(statement))
        tally = count_admin_signatures(policy, reset_digest(statement), signatures)
        if not tally.met:
            raise CeremonyError(
                f"lockout reset needs {policy.admin_quorum} administrators; "
                f"valid: {len(tally.valid)} {list(tally.rejected)}"
            )
        path = self.state.store_pending({**statement, "signatures": signatures})
        self.guard.reset(serial)
        return path

    # -- policy -----------------------------------------------------------------------------

    def install_policy(self, officers: Presented, signed: SignedPolicy) -> Entry:
        """Install the next policy; one that revokes officers or changes the quorum re-keys
        the activation PIN, so a revoked officer's share no longer opens the token."""
        self.require_usable()
        current = self.policy()
        ref = self.journal.policy
        if ref is not None and ref.hash == signed.policy.hash():
            raise CeremonyError(
                f"policy version {signed.policy.version} is already installed "
                f"(journal seq {ref.seq})"
            )
        tally = verify_signed_policy(signed, current)
        self.state.store_policy(signed)  # a cache the record below names by hash
        if _needs_rekey(current, signed.policy):
            self._refuse_missing_holders(officers, signed.policy)
        with self.activated(officers) as act:
            done = self._installed(signed)
            if done is not None:
                return done  # finished by this activation (an interrupted re-key)
            if not _needs_rekey(current, signed.policy):
                return self._record_install(act, signed, tally.valid, None)
            return self._rekey(act, officers, signed, tally.valid)

    def _installed(self, signed: SignedPolicy) -> Entry | None:
        ref = self.journal.policy
        if ref is not None and ref.hash == signed.policy.hash():
            raw = self.recorder.store.entry(ref.seq)
            return Entry.from_bytes(raw)
        return None

    def _record_install(
        self, act: Activation, signed: SignedPolicy, admins: Sequence[str], intent: int | None
    ) -> Entry:
        current = self.policy()
        active = {o.fingerprint for o in current.officers if o.active}
        actors = tuple(dict.fromkeys(act.actors + tuple(admins)))
        entry = self.record(
            "policy_installed",
            actors=actors,
            subjects={"policy": signed.policy.hash()},
            details={
                "version": signed.policy.version,
                **({"intent": intent} if intent is not None else {}),
            },
        )
        for officer in signed.policy.officers:
            if officer.fingerprint in active and not officer.active:
                entry = self.record(
                    "officer_revoked",
                    actors=[officer.fingerprint],
                    details={"policy_version": signed.policy.version},
                )
        return entry

    def _refuse_missing_holders(self, officers: Presented, policy: Policy) -> None:
        """Before any activation: a re-key needs every remaining officer (labels as the
        journal enrolled them; the tokens themselves are checked when unlocked)."""
        by_label = {e.token: fp for fp, e in self.journal.enrolled.items()}
        presented = {by_label.get(label) for label, _ in officers}
        missing = [
            o.fingerprint for o in policy.officers if o.active and o.fingerprint not in presented
        ]
        if missing:
            names = {fp: e.token for fp, e in self.journal.enrolled.items()}
            shown = ", ".join(f"{names.get(fp, '?')} ({fp})" for fp in missing)
            raise CeremonyError(
                "a re-key gives every remaining officer a new share: present "
                f"them all (missing {shown})"
            )

    def _rekey(
        self, act: Activation, officers: Presented, signed: SignedPolicy, admins: Sequence[str]
    ) -> Entry:
        """A fresh activation secret, shared among every remaining officer (see module)."""
        policy = signed.policy
        holders = [o.fingerprint for o in policy.officers if o.active]
        present = {offer.fingerprint: offer.token_label for offer in act.offers}
        missing = [fp for fp in holders if fp not in present]
        if missing:
            raise CeremonyError(
                "a re-key gives every remaining officer a new share: present "
                f"them all (missing {', '.join(missing)})"
            )
        token = self.hsm.token(label=self.config.signing_token)
        secret = bytearray(new_activation_secret(16, self.hsm.generate_random(token, 32)))
        try:
            shares = split_activation_secret(secret, policy.approval_quorum, len(holders))
            intent = self.record(
                "intent",
                actors=act.actors,
                details={
                    "ceremony": "rekey",
                    "policy": policy.hash(),
                    "version": policy.version,
                    "share_identifier": share_identifier(shares),
                    "share_commitment": activation_commitment(secret),
                    "share_threshold": policy.approval_quorum,
                    "holders": holders,
                    "admins": list(admins),
                },
            )
            pins = dict(officers)
            for fingerprint, share in zip(holders, shares, strict=True):
                label = present[fingerprint]
                with unlock(self.tokens(), self.guard, label, pins[label]) as officer:
                    officer.add_share(share)
            self._switch_pins(act, activation_pin(secret))
        finally:
            secret[:] = bytes(len(secret))
        return self._finish_rekey(intent.record.seq, intent.record.details, act)

    def _switch_pins(self, act: Activation, new_pin: str) -> None:
        """SO PIN first, then the user PIN; each step is skipped when already done, so a
        rerun after a crash between them completes the switch."""
        old_pin = act.pin.reveal()
        token = self.hsm.token(label=self.config.signing_token)
        self.keystore.lock()
        try:
            self.hsm.so_set_pins(token, so_pin_for(old_pin), so_pin_for(new_pin), None)
        except WrongPinError:
            self.hsm.so_set_pins(token, so_pin_for(new_pin), so_pin_for(new_pin), None)
        try:
            self.keystore.unlock(old_pin)
            self.hsm.set_user_pin(self.hsm.token(label=self.config.signing_token), old_pin, new_pin)
        except WrongPinError:
            self.keystore.unlock(new_pin)

    def _finish_rekey(self, seq: int, intent: dict, act: Activation) -> Entry:
        """Journal the switch (once), then the policy install that closes the intent."""
        shares = self.journal.shares
        if shares is None or shares.commitment != intent["share_commitment"]:
            self.record(
                "pin_rekeyed",
                actors=act.actors,
                details={
                    "rekey_intent": seq,
                    "share_identifier": intent["share_identifier"],
                    "share_commitment": intent["share_commitment"],
                    "share_threshold": intent["share_threshold"],
                    "holders": intent["holders"],
                    "entropy": ENTROPY_SOURCES,
                },
            )
        ref = self.journal.policy
        version = int(intent["version"])
        if ref is not None and ref.version >= version:
            raise CeremonyError("a newer policy was installed while the re-key was pending")
        signed = self.state.read_policy(version, intent["policy"], seq)
        return self._record_install(act, signed, intent.get("admins", []), seq)

    def _resume_rekey(self, seq: int, intent: dict, act: Activation) -> None:
        """Finish an interrupted re-key if the PIN already changed or the new shares are
        here; abandon it if nothing changed yet; otherwise leave it open and say so."""
        shares = self.journal.shares
        switched = shares is not None and shares.commitment == intent["share_commitment"]
        if switched or act.share_set == intent["share_identifier"]:
            self._finish_rekey(seq, intent, act)
            return
        try:
            new = activated_pin(
                contributions(act.offers, int(intent["share_identifier"])),
                int(intent["share_threshold"]),
            )
        except QuorumError:
            new = None  # not enough new shares among the officers here: decide below
        if new is not None:
            try:
                self._switch_pins(act, new.reveal())
                act.pin, act.share_set = new, int(intent["share_identifier"])
            finally:
                if act.pin is not new:
                    new.wipe()
            self._finish_rekey(seq, intent, act)
            return
        if self._so_unchanged(act):
            self.record(
                "intent_abandoned",
                actors=act.actors,
                details={
                    "intent": seq,
                    "reason": "re-key interrupted before any PIN changed; install the policy again",
                },
            )
        else:
            self.notes.append(
                f"a re-key (journal seq {seq}) changed the SO PIN but not yet "
                "the user PIN: present officers holding the new shares"
            )

    def _so_unchanged(self, act: Activation) -> bool:
        old_pin = act.pin.reveal()
        token = self.hsm.token(label=self.config.signing_token)
        self.keystore.lock()
        try:
            self.hsm.so_set_pins(token, so_pin_for(old_pin), so_pin_for(old_pin), None)
            return True
        except WrongPinError:
            return False
        finally:
            self.keystore.unlock(old_pin)

    # -- journal ----------------------------------------------------------------------------

    def export_journal(self, officers: Presented) -> Entry:
        """Record the export itself, so the exported journal ends with its own export.

        Every record is verified first, including those before the checkpoint that opening
        does not read: a journal edited after the fact is never handed to the auditors as
        if it were whole (restore it from a copy instead)."""
        problems = self.recorder.verify()
        if problems:
            raise CeremonyError(
                f"the journal does not verify ({problems[0]}): restore it "
                "from the last export (`journal restore FILE`), then run "
                "`journal recover`"
            )
        with self.activated(officers) as act:
            return self.record(
                "journal_export", actors=act.actors, details={"length": self.journal.length + 1}
            )

    def defer_refusal(self, subjects: dict[str, bytes], details: dict) -> Path:
        """Keep a refusal for the next activation (the audit key is in the locked token).

        Only the fixed refusal schema may wait (appliance.pending); it is checked now, so a
        record the journal would refuse never sits in the pending folder.
        """
        return self.state.store_pending(deferred_refusal(self.now(), subjects, details))

    def flush_pending(self, officers: Presented) -> int:
        """Activate only to write what is pending; returns how many files were waiting."""
        waiting = len(self.state.pending())
        if waiting:
            with self.activated(officers):
                pass
        return waiting

    def verify_journal(self) -> list[str]:
        return self.recorder.verify()

    def recover_journal(self, officers: Presented, admins: Presented) -> Entry:
        """The administrators' recovery ceremony: journal what was lost, then go on.

        For a damaged tail (a torn or bad last record, a record that does not verify) and
        for a journal behind an anchor (an older copy restored, records cut off). The
        damaged bytes are kept in a quarantine file; a journal damaged in the middle, with
        good records after the damage, is not cut: restore it from a copy.
        """
        report, recorder = self.recorder.report, self.recorder
        last = len(recorder.store) - 1
        torn_inside = report.damage is not None and report.damage.followed_by_valid_frames
        bad_inside = recorder.first_bad is not None and recorder.first_bad < last
        damaged_inside = torn_inside or bad_inside
        if damaged_inside:
            raise CeremonyError(
                "the journal is damaged before its end (good records follow "
                "the damage): restore journal.log from a copy (an export "
                "holds every record up to it: `journal restore FILE`), then "
                "run `journal recover` for whatever the copy lacks"
            )
        if recorder.transcript_missing is not None:
            raise CeremonyError(
                "a transcript the journal needs is missing (see the problem "
                "above): restore it from the export bundle; nothing to cut"
            )
        if self.journal.policy is None:
            raise CeremonyError(
                "the journal names no policy (no officers to activate): "
                "restore it from an export first (`journal restore FILE`)"
            )
        cut = recorder.first_bad if recorder.first_bad is not None else len(recorder.store)
        policy = self.policy()
        with self.activated(officers, recovering=True) as act:
            claims = [a.seq for _, a in act.anchors_ahead]
            if recorder.checkpoint_claims is not None:
                claims.append(recorder.checkpoint_claims)
            lost_through = max(claims, default=None)
            if cut >= len(recorder.store) and report.damage is None and lost_through is None:
                raise CeremonyError(
                    "nothing to recover: the journal verifies and contains every anchor presented"
                )
            statement = recovery_statement(
                self.config.appliance_id,
                self.journal.seq,
                self.journal.head,
                cut,
                lost_through,
                [p[:300] for p in self.problems][:8],
            )
            signatures = self._admin_quorum(admins, policy, statement)
            quarantine = recorder.store.cut_tail(cut)
            recorder.problems.clear()
            details = {
                "kept_through": self.journal.seq,
                "cut_from": cut,
                "quarantine": quarantine.name if quarantine else "",
                "quarantine_sha256": _file_digest(quarantine),
                "problems": statement["problems"],
                "admin_signatures": signatures,
                **({"lost_through": lost_through} if lost_through is not None else {}),
            }
            entry = self.record(
                "journal_recovered",
                actors=tuple(dict.fromkeys(act.actors + tuple(signatures))),
                details=details,
            )
            self.recorder.checkpoint(force=True)  # the old checkpoint may lie past the cut
            self._identity_problems(self.keystore.token_audit_key())
            return entry

    def restore_journal(self, export: bytes) -> tuple[int, list[Path]]:
        """Replace a lost or damaged ``journal.log`` with an export's records.

        Only records that verify under the signing token's own audit key, as one unbroken
        chain of this appliance that contains every record the current journal still
        verifies, are written; nothing in them can be forged, so this needs no PIN. The
        replaced file and the checkpoint are kept aside. The anchors then show what the
        export lacks, and ``journal recover`` journals it. Returns the new length and the
        files kept aside (none when the journal was lost).
        """
        self.require_writable()
        try:
            appliance_id, audit_key, entries = parse_export(export)
        except JournalError as exc:
            raise CeremonyError(f"not a journal export: {exc}") from exc
        token_key = self.keystore.token_audit_key()
        if token_key is None or audit_key != token_key:
            raise CeremonyError(
                "the export was signed by another audit key than this station's signing token holds"
            )
        if appliance_id != self.config.appliance_id:
            raise CeremonyError(f"the export is of appliance {appliance_id!r}")
        report = verify_journal(entries, token_key, appliance_id=appliance_id)
        if not report.ok:
            raise CeremonyError(f"the export does not verify: {report.findings[0]}")
        kept = self.journal.length
        if kept > len(entries) or (kept and entries[kept - 1].record.hash() != self.journal.head):
            raise CeremonyError(
                f"the export does not contain the {kept} record(s) the journal "
                "still verifies: it is not this journal's copy"
            )
        self.recorder.store.close()
        kept_aside = _replace_journal(self.state, [e.to_bytes() for e in entries])
        self.recorder = Recorder.open(
            self.state.journal_path,
            self.state.checkpoint_path,
            self.keystore,
            self.config.appliance_id,
            token_key,
        )
        self._identity_problems(token_key)
        self._refresh()
        return self.journal.length, kept_aside

    # -- backup -----------------------------------------------------------------------------

    def backup_key(
        self, officers: Presented, label: str, kek_shares: Sequence[str]
    ) -> tuple[bytes, Entry]:
        """The key wrapped under the trusted KEK, which exists in the token only meanwhile."""
        info = self.keystore.info(label)
        if info.backup_model is BackupModel.NON_EXTRACTABLE:
            raise CeremonyError(f"key {label!r} is non-extractable: it has no backup")
        self._require_signing("wrap_unwrap", "a backup")
        with self.activated(officers) as act:
            intent = self.record(
                "intent", actors=act.actors, details={"ceremony": "backup", "label": label}
            )
            with self._kek(act, kek_shares) as check:
                blob = export_key(self.keystore, label)
            entry = self.record(
                "backup",
                actors=act.actors,
                subjects={
                    "public_key": info.public_key_bytes,
                    "blob": hashlib.sha256(blob).digest(),
                },
                details={
                    "step": "key_exported",
                    "label": label,
                    "kek_check": check,
                    "intent": intent.record.seq,
                },
            )
        return blob, entry

    def restore(
        self,
        officers: Presented,
        blob: bytes,
        label: str,
        public_key: bytes,
        kek_shares: Sequence[str],
    ) -> Entry:
        """Unwrap a cloned key; it must sign for the original public key, or it is refused."""
        if label in self.journal.keys or self.journal.key_by_public(public_key) is not None:
            raise CeremonyError(f"key {label!r} or its public key is already registered")
        self._require_signing("wrap_unwrap", "a restore")
        with self.activated(officers) as act:
            finished = act.completed.get(("restore", label))
            if finished is not None:
                return finished  # a rerun: this activation finished the crashed restore
            intent = self.record(
                "intent",
                actors=act.actors,
                details={
                    "ceremony": "restore",
                    "label": label,
                    "key_id": secrets.token_hex(KEY_ID_BYTES),
                    "public_key": public_key.hex(),
                    "blob": hashlib.sha256(blob).hexdigest(),
                    "backup_model": BackupModel.WRAP_WITH_TRUSTED.value,
                },
            )
            key_id = bytes.fromhex(intent.record.details["key_id"])
            with self._kek(act, kek_shares):
                info = restore_key(
                    self.keystore,
                    blob,
                    label,
                    public_key,
                    BackupModel.WRAP_WITH_TRUSTED,
                    key_id=key_id,
                )
            return self.record(
                "restore",
                actors=act.actors,
                subjects={
                    "public_key": info.public_key_bytes,
                    "blob": hashlib.sha256(blob).digest(),
                },
                details={
                    "label": label,
                    "key_id": key_id.hex(),
                    "backup_model": info.backup_model.value,
                    "intent": intent.record.seq,
                },
            )

    def _require_signing(self, capability: str, needed_for: str) -> None:
        """CeremonyError naming the module when the signing HSM's profile lacks ``capability``."""
        try:
            profile_for(self.hsm.path).require(capability, self.hsm.path, needed_for)
        except ProfileError as exc:
            raise CeremonyError(str(exc)) from None

    # -- the backup register (REQUIREMENTS 24) --------------------------------------------

    def store_backup(
        self,
        officers: Presented,
        blob_digest: bytes,
        bag: str,
        location: str,
        custodians: list[str],
    ) -> Entry:
        """Record where a blob is kept: its tamper-evident bag's serial, the location, its
        custodians. Recording it again (a new bag, a move) supersedes the entry; the
        journal keeps every version."""
        self._registered_backup(blob_digest)
        texts = [("bag serial", bag), ("location", location)] + [
            ("custodian", c) for c in custodians
        ]
        for name, text in texts:
            if not text.strip() or len(text) > MAX_REGISTER_TEXT or not text.isprintable():
                raise CeremonyError(f"{name} must be 1 to {MAX_REGISTER_TEXT} printable characters")
        if not 1 <= len(custodians) <= MAX_CUSTODIANS:
            raise CeremonyError(f"name 1 to {MAX_CUSTODIANS} custodians")
        with self.activated(officers) as act:
            return self.record(
                "backup_stored",
                actors=act.actors,
                details={
                    "blob": blob_digest.hex(),
                    "bag": bag,
                    "location": location,
                    "custodians": list(custodians),
                },
            )

    def test_restore(
        self,
        officers: Presented,
        blob: bytes,
        token_label: str,
        token_pins: tuple[str, str],
        kek_shares: Sequence[str],
    ) -> Entry:
        """Prove a blob restores under its original public key on a spare token, then
        destroy it there (appliance.backup.prove_backup): never registered, never usable
        for signing. The intent is journaled before the spare token is touched, the result
        (ok, or failed and why) after; the KEK leaves the spare token however it ends."""
        entry = self.check_test_restore(blob, token_label)
        digest = entry.blob
        so_pin, user_pin = token_pins
        # the custodians' shares are checked first: a typo is no failed test restore
        with combined_kek(kek_shares) as kek, self.activated(officers) as act:
            intent = self.record(
                "intent",
                actors=act.actors,
                details={"ceremony": "backup_test", "blob": digest.hex(), "token": token_label},
            )
            result: dict[str, str] = {"result": "ok"}
            try:
                install_trusted_kek(self.hsm, token_label, so_pin, user_pin, kek)
                spare = Keystore(self.hsm, token_label)
                spare.unlock(user_pin)
                try:
                    prove_backup(spare, blob, entry.public_key)
                finally:
                    spare.lock()
            except BackupError as exc:
                result = {"result": "failed", "reason": str(exc)[:MAX_REGISTER_TEXT]}
            finally:
                destroy_kek(self.hsm, token_label)
            return self.record(
                "backup_tested",
                actors=act.actors,
                details={
                    "blob": digest.hex(),
                    "token": token_label,
                    **result,
                    "intent": intent.record.seq,
                },
            )

    def check_test_restore(self, blob: bytes, token_label: str) -> BackupEntry:
        """What refuses a test restore before anyone types a PIN: a blob not in the
        register, the signing token as the spare, a module that cannot unwrap."""
        entry = self._registered_backup(hashlib.sha256(blob).digest())
        if token_label == self.config.signing_token:
            raise CeremonyError("a test restore runs on a spare token, never the signing token")
        if token_label in {e.token for e in self.journal.enrolled.values()}:
            raise CeremonyError(
                f"{token_label!r} is an officer's or administrator's token: a test restore "
                "runs on a spare token made for it"
            )
        self._require_signing("wrap_unwrap", "a test restore")
        return entry

    def _registered_backup(self, digest: bytes) -> BackupEntry:
        entry = self.journal.backups.get(digest)
        if entry is None:
            raise CeremonyError(
                f"blob {digest.hex()[:16]}... is not in the backup register: no backup "
                "record exported it"
            )
        return entry

    def _resume_backup_test(self, seq: int, intent: dict, act: Activation) -> None:
        token = str(intent.get("token", ""))
        with contextlib.suppress(HsmError):
            destroy_kek(self.hsm, token)  # a public object: no PIN needed
        self.record(
            "intent_abandoned",
            actors=act.actors,
            details={
                "intent": seq,
                "reason": f"test restore interrupted; its KEK was destroyed on {token!r}; "
                "run it again (the next test clears any key it left)",
            },
        )

    def _kek(self, act: Activation, kek_shares: Sequence[str]) -> _KekInstalled:
        return _KekInstalled(self, act, kek_shares)

    def _resume_restore(self, seq: int, intent: dict, act: Activation) -> None:
        label, key_id = intent["label"], bytes.fromhex(intent["key_id"])
        public_key = bytes.fromhex(intent["public_key"])
        info = finish_restore(
            self.keystore, label, key_id, public_key, BackupModel(intent["backup_model"])
        )
        if info is None:
            self.record(
                "intent_abandoned",
                actors=act.actors,
                details={
                    "intent": seq,
                    "reason": "restore interrupted before the key was unwrapped; run it again",
                },
            )
            return
        act.completed[("restore", label)] = self.record(
            "restore",
            actors=act.actors,
            subjects={"public_key": public_key},
            details={
                "label": label,
                "key_id": key_id.hex(),
                "backup_model": intent["backup_model"],
                "intent": seq,
            },
        )

    def _resume_backup(self, seq: int, intent: dict, act: Activation) -> None:
        self.record(
            "intent_abandoned",
            actors=act.actors,
            details={
                "intent": seq,
                "reason": "backup interrupted; its KEK was destroyed; run it again",
            },
        )

    def _resumers(self) -> dict:
        return {
            "keygen": self._finish_keygen,
            "restore": self._resume_restore,
            "backup": self._resume_backup,
            "backup_test": self._resume_backup_test,
            "rekey": self._resume_rekey,
        }


class _KekInstalled:
    """``with``: the KEK from its custodians' shares is trusted in the token, and destroyed
    when the block ends (however it ends); yields its check value."""

    def __init__(self, appliance: Appliance, act: Activation, shares: Sequence[str]) -> None:
        self.appliance, self.act, self.shares = appliance, act, shares

    def __enter__(self) -> str:
        app = self.appliance
        user_pin = self.act.pin.reveal()
        with combined_kek(self.shares) as kek:
            app.keystore.lock()
            try:
                check = install_trusted_kek(
                    app.hsm, app.config.signing_token, so_pin_for(user_pin), user_pin, kek
                )
            except BaseException:
                destroy_kek(app.hsm, app.config.signing_token)
                raise
            finally:
                app.keystore.unlock(user_pin)
        return check

    def __exit__(self, *exc_info: object) -> None:
        destroy_kek(self.appliance.hsm, self.appliance.config.signing_token)


def _replace_journal(state: ApplianceState, payloads: list[bytes]) -> list[Path]:
    """Write ``payloads`` as the journal, keeping the old file and checkpoint aside;
    returns where they went."""
    path = state.journal_path
    n = 1
    while path.with_name(f"{path.name}.replaced-{n}").exists():
        n += 1
    fresh = path.with_name(f"{path.name}.restoring")
    fresh.unlink(missing_ok=True)
    with JournalStore.open(fresh)[0] as store:
        store.append_many(payloads)
    kept_aside = []
    for old in (path, state.checkpoint_path):
        if old.exists():
            kept_aside.append(old.with_name(f"{old.name}.replaced-{n}"))
            os.replace(old, kept_aside[-1])
    os.replace(fresh, path)
    return kept_aside


def _needs_rekey(current: Policy, new: Policy) -> bool:
    """The activation shares must change with the officers who hold them or the quorum."""
    active = {o.fingerprint for o in current.officers if o.active}
    remaining = {o.fingerprint for o in new.officers if o.active}
    return remaining != active or new.approval_quorum != current.approval_quorum


def _key_model(name: object) -> str:
    try:
        return check_key_model(name)
    except KeyModelError as exc:
        raise CeremonyError(str(exc)) from None


def _digest_text(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def _file_digest(path: Path | None) -> str:
    return "" if path is None else hashlib.sha256(path.read_bytes()).hexdigest()
