"""The cold station's front door: open it, know what it may decide from, activate it.

Opening (:class:`Station`) reads nothing it has not verified (DESIGN 9): the audit key comes
from the signing token, the journal is verified from a signed checkpoint and folded into
:class:`shared.station.StationState`, and every fact a decision needs (keys and their
states, pinned wallets, the policy in force and its officers, the signing history) is
taken from that state or from a file checked against it. A journal that does not verify, a
half-made station or a file that contradicts the journal is a *problem*: the station then
refuses every ceremony but ``status``, ``journal verify`` and ``journal recover``, and says
which file or record is wrong.

Activation (:meth:`Station.activated`) is the only way to the signing token: M officers
unlock their own tokens, each token's journal anchor must be contained in the journal, the
shares of the share set the journal names rebuild the PIN, the signing token's anchor must
be contained too, and only then is anything recorded: the activation, the pending files
that verify, and the completion of any ceremony whose intent was journaled before a crash.
At the end the state is checkpointed and the token locked.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance import softhsm
from appliance.activation import (
    ActivatedPin,
    Offer,
    QuorumError,
    activated_pin,
    collect_offers,
    contributions,
)
from appliance.backup import destroy_kek
from appliance.hsm import Hsm, HsmError, WrongPinError
from appliance.keystore import AUDIT_KEY_LABEL, KeyInfo, Keystore
from appliance.officers import PinGuard, UnlockedOfficer, token_lockout
from appliance.pending import PendingError, read_pending
from appliance.recorder import Recorder
from appliance.state import ApplianceState, StateError
from appliance.token_objects import (
    Anchor,
    AnchorError,
    check_anchor,
    initialising,
    read_anchor,
)
from appliance.tokens import Modules, TokenDirectory, TokenIdentity
from shared.bitcoin.address import AddressError, Network, address_to_script, network_by_name
from shared.bitcoin.descriptor import Descriptor
from shared.closing import Closing
from shared.journal import Entry
from shared.policy import Policy, SignedPolicy
from shared.review import OurKey, PinnedWallet, WalletMatch
from shared.station import StationState

#: Officers or administrators presented for a ceremony: (token label, PIN).
Presented = Sequence[tuple[str, str]]
#: Pending files journaled per activation: a flood of planted ones is worked off slowly,
#: never all at once (each still verified, and counted toward nothing).
MAX_PENDING_PER_ACTIVATION = 64
#: How deep the address check looks on each branch of a ranged wallet (issue 18).
ADDRESS_CHECK_DEPTH = 1000


class CeremonyError(RuntimeError):
    """A ceremony that cannot go ahead; the message says why."""


@dataclass
class Activation:
    """An activated signing token for the length of a ``with`` block.

    ``pin`` stays readable inside the block (ceremonies that need the SO, such as the
    backup KEK, log out and in again) and is wiped when the block ends.
    """

    actors: tuple[str, ...]
    pin: ActivatedPin
    offers: list[Offer]
    share_set: int | None = None  # SLIP-39 identifier of the shares that opened the token
    anchors_ahead: list[tuple[str, Anchor]] = field(default_factory=list)
    #: ceremonies this activation finished after a crash, by (ceremony, subject)
    completed: dict[tuple[str, str], Entry] = field(default_factory=dict)


class Station(Closing):
    """A loaded station: state directory, HSM, keystore, PIN counters, verified journal."""

    def __init__(
        self,
        root: Path,
        hsm: Hsm | None = None,
        modules: Modules | None = None,
        *,
        read_only: bool = False,
    ) -> None:
        """``read_only``: opened beside the process that holds the journal (``status`` while
        the TUI runs): nothing on the medium or in a token is changed, and no ceremony can
        run (the journal refuses appends)."""
        self.state = ApplianceState(root)
        self.config = self.state.load()
        self.notes: list[str] = []
        self.on_note: Callable[[str], None] | None = None
        if self.config.demo and hsm is None:
            softhsm.configure(self.state.root, read_only=read_only)
        self.hsm = hsm or Hsm(self.config.signing_module or None)
        self.modules = modules or Modules(self.hsm)
        try:
            self.keystore = Keystore(self.hsm, self.config.signing_token)
        except HsmError as exc:
            hint = (
                " If `init` was interrupted, run `coldstation-appliance init --demo "
                "--start-over` to wipe this half-made station."
                if self.config.demo
                else ""
            )
            raise StateError(
                f"{self.state.config_path} names signing token "
                f"{self.config.signing_token!r}, which is not there ({exc})." + hint
            ) from exc
        self.read_only = read_only
        audit_key = self.keystore.token_audit_key()
        self.recorder = Recorder.open(
            self.state.journal_path,
            self.state.checkpoint_path,
            self.keystore,
            self.config.appliance_id,
            audit_key,
            read_only,
        )
        # after the journal's lock is ours: a KEK beside another process's running backup
        # ceremony is that ceremony's, and a read-only open never touches it
        if not read_only:
            self._sweep_kek()
        for note in self.recorder.notes:
            self.note(note)
        # the counters are kept per appliance id: the journal's, never the editable file's
        self.guard = PinGuard(
            self.hsm,
            self.config.signing_token,
            self.journal.appliance_id or self.config.appliance_id,
        )
        self._identity_problems(audit_key)
        self._refresh()

    def note(self, text: str) -> None:
        """Something the operators must hear of (a rejected pending file, a KEK destroyed)."""
        self.notes.append(text)
        if self.on_note is not None:
            self.on_note(text)

    # -- opening ----------------------------------------------------------------------------

    def _sweep_kek(self) -> None:
        """A backup KEK outside a ceremony (a crash left it) is destroyed at once: it is a
        public object, readable in SoftHSM2's files and usable without a PIN for unwrap."""
        try:
            found = destroy_kek(self.hsm, self.config.signing_token)
        except HsmError as exc:
            self.note(f"could not check the signing token for a KEK: {exc}")
            return
        if found:
            self.note(
                f"destroyed {found} backup KEK(s) left in the signing token by an "
                "interrupted backup or restore"
            )

    def _identity_problems(self, audit_key: bytes | None) -> None:
        """Everything at open that contradicts the journal, or that the journal lacks."""
        state, problems = self.journal, self.recorder.problems
        problems.extend(self.state.symlink_problems())
        if state.seq < 0 and not problems:
            if audit_key is not None and not self._init_interrupted():
                problems.append(
                    f"{self.state.journal_path} is empty, but the signing token "
                    "holds this station's audit key: the journal was removed; "
                    "restore it from an export (`journal restore FILE`), then "
                    "`journal recover`"
                )
            else:
                problems.append(
                    f"the station in {self.state.root} was never initialised (its "
                    f"journal is empty): {self._start_again()}"
                )
            return
        if state.audit_key is not None and audit_key != state.audit_key:
            problems.append(
                "the signing token's audit key is not the one the journal records "
                "(another token, or the token was replaced)"
            )
        if state.appliance_id not in (None, self.config.appliance_id):
            problems.append(
                f"{self.state.config_path} names appliance "
                f"{self.config.appliance_id!r}; the journal is appliance "
                f"{state.appliance_id!r}"
            )
        wrong_module = self._wrong_module()
        if wrong_module is not None:
            problems.append(wrong_module)
        if state.signing_token not in (None, self.config.signing_token):
            problems.append(
                f"{self.state.config_path} names signing token "
                f"{self.config.signing_token!r}; the journal initialised "
                f"{state.signing_token!r}"
            )
        if state.policy is not None:
            try:
                self.signed_policy()
            except (StateError, CeremonyError) as exc:
                problems.append(str(exc))
        if not self.recorder.problems and not state.init_complete:
            problems.append(
                f"the station in {self.state.root} was never completely "
                f"initialised (the journal has no init_completed record): {self._start_again()}"
            )

    def _start_again(self) -> str:
        """How a half-made station is started again: a demo one is wiped by init; real
        tokens are never wiped by the station."""
        if self.config.demo:
            return "run `coldstation-appliance init --demo --start-over` to wipe it and start again"
        return (
            "re-initialise its signing token with the vendor's tools, then run "
            "`init --plan` into an empty state directory (docs/hardware.md)"
        )

    def _wrong_module(self) -> str | None:
        """Why the loaded module is not the one the journal initialised the signing token
        through, or None: the activation PIN goes only to that library."""
        journaled = self.journal.signing_module
        if journaled is None or journaled == self.hsm.path:
            return None
        return (
            f"the station would load PKCS#11 module {self.hsm.path} for its signing token; "
            f"the journal initialised it through {journaled} ({self.state.config_path} or "
            "the environment changed): no PIN is sent to another library"
        )

    def _init_interrupted(self) -> bool:
        """True while the signing token still carries init's in-progress marker: an empty
        journal beside an audit key is then an init that died between the two, not a
        journal someone removed."""
        try:
            return initialising(self.hsm, self.hsm.token(label=self.config.signing_token))
        except HsmError:
            return False

    def _refresh(self) -> None:
        """Hand the keystore the key registry the journal records."""
        self.keystore.set_registry(KeyInfo.from_entry(e) for e in self.journal.keys.values())

    def close(self) -> None:
        self.keystore.lock()
        for hsm in self.modules.loaded():
            if hsm is not self.hsm:
                hsm.logout_all()
        self.recorder.store.close()

    # -- what the station decides from ------------------------------------------------------

    @property
    def journal(self) -> StationState:
        return self.recorder.state

    @property
    def problems(self) -> list[str]:
        return self.recorder.problems

    def require_writable(self) -> None:
        """StateError when opened read-only beside another process: no ceremony here."""
        if self.read_only:
            raise StateError(
                "the station is open read-only beside another process (the TUI): "
                "no ceremony runs here"
            )

    def require_usable(self) -> None:
        """StateError unless the journal verified and the station finished initialising."""
        if self.problems:
            raise StateError("the station is stopped: " + "; ".join(self.problems))

    def signed_policy(self) -> SignedPolicy:
        """The policy in force: the file the journal's last policy_installed record names."""
        ref = self.journal.policy
        if ref is None:
            raise CeremonyError("no policy installed")
        return self.state.read_policy(ref.version, ref.hash, ref.seq)

    def policy(self) -> Policy:
        return self.signed_policy().policy

    @property
    def network(self) -> Network:
        """The chain the policy in force (signed by the administrators) names; never the
        network in appliance.json, which nobody signed."""
        return network_by_name(self.policy().network)

    def pinned_descriptors(self) -> list[str]:
        return list(self.journal.wallets)

    def pinned_wallet(self) -> PinnedWallet:
        """The pinned descriptors with this HSM's keys (audit key excluded) and their states."""
        descriptors = tuple(Descriptor.parse(text) for text in self.journal.wallets)
        keys = tuple(
            OurKey(e.public_key, e.label, e.state, e.account())
            for e in self.journal.keys.values()
            if e.label != AUDIT_KEY_LABEL
        )
        return PinnedWallet(descriptors, keys)

    def address_owner(
        self, address: str, max_index: int = ADDRESS_CHECK_DEPTH
    ) -> WalletMatch | None:
        """Which pinned wallet, branch and index ``address`` is, or None: the check an
        officer makes before a customer is given an address (on the policy's network)."""
        try:
            script = address_to_script(address.strip(), self.network)
        except AddressError as exc:
            raise CeremonyError(
                f"{address.strip()[:90]!r} is not a {self.network.label} address: {exc}"
            ) from None
        if not self.journal.wallets:
            return None
        return self.pinned_wallet().search(script, max_index)

    def tokens(self) -> TokenDirectory:
        """Officer and administrator tokens, each in the module it was enrolled from and
        pinned to the identity journaled then (appliance.tokens)."""
        enrolled = {
            label: TokenIdentity.from_plain(identity)
            for label, identity in self.journal.enrolled_identities().items()
        }
        known = (
            frozenset(e.token for e in self.journal.enrolled.values())
            if self.journal.init_complete
            else None
        )
        return TokenDirectory(self.modules, enrolled, self.hsm.path, known)

    def registry(self) -> dict[str, bool]:
        return {o.fingerprint: o.active for o in self.policy().officers}

    # -- activation -------------------------------------------------------------------------

    @contextlib.contextmanager
    def activated(self, officers: Presented, *, recovering: bool = False) -> Iterator[Activation]:
        """M officers open the signing token for the length of the block (module docstring)."""
        self.require_writable()
        if not recovering:
            self.require_usable()
        wrong_module = self._wrong_module()
        if wrong_module is not None:  # not even to recover
            raise StateError(wrong_module)
        self.recorder.require_clock()
        policy = self.policy()
        registry = {o.fingerprint: o.active for o in policy.officers}
        ahead: list[tuple[str, Anchor]] = []
        offers = collect_offers(
            self.tokens(),
            self.guard,
            officers,
            registry,
            on_unlock=lambda o: self._officer_anchor(o, ahead, recovering),
        )
        with self.activated_by(offers, policy, recovering=recovering) as activation:
            activation.anchors_ahead[:0] = ahead
            yield activation

    @contextlib.contextmanager
    def activated_by(
        self,
        offers: list[Offer],
        policy: Policy,
        *,
        recovering: bool = False,
        actors: Sequence[str] | None = None,
    ) -> Iterator[Activation]:
        """Open the signing token with shares already collected (the signing ceremony
        collects them officer by officer, with each approval)."""
        self.require_writable()
        pin, share_set = self._login(offers, policy.approval_quorum)
        activation = Activation(tuple(actors or pin.officers), pin, offers, share_set)
        try:
            self._signing_anchor(activation, recovering)
            if not recovering:
                self.recorder.record(
                    "activation",
                    actors=activation.actors,
                    subjects={"policy": policy.hash()},
                    details={"share_set": self._share_set_id()},
                )
                self._journal_pin_status(activation.actors)
                self._flush_pending(activation.actors)
                self._resume_intents(activation)
            yield activation
            if self.keystore.unlocked:
                self.recorder.checkpoint()
        finally:
            activation.pin.wipe()
            pin.wipe()
            self.keystore.lock()
            self._refresh()

    def _share_set_id(self) -> int:
        shares = self.journal.shares
        return shares.identifier if shares is not None else 0

    def candidate_share_sets(self) -> list[int | None]:
        """The share set in use, then one an interrupted re-key may have switched to."""
        current = self.journal.shares
        found: list[int | None] = [current.identifier if current is not None else None]
        for intent in self.journal.open_intents("rekey").values():
            found.append(int(intent["share_identifier"]))
        return found

    def _login(self, offers: list[Offer], quorum: int) -> tuple[ActivatedPin, int | None]:
        """Rebuild the PIN of the share set the token accepts and log in with it."""
        last: Exception | None = None
        for identifier in self.candidate_share_sets():
            try:
                pin = activated_pin(contributions(offers, identifier), quorum)
            except QuorumError as exc:
                last = exc
                continue
            try:
                self.keystore.unlock(pin.reveal())
                return pin, identifier
            except WrongPinError as exc:
                pin.wipe()
                last = exc
        if isinstance(last, WrongPinError):
            raise QuorumError(
                "the signing token refused the PIN the officers' shares rebuild: "
                "a re-key changed it; present officers holding the new shares"
            )
        raise last if last is not None else QuorumError("no share set to activate with")

    def _officer_anchor(
        self, officer: UnlockedOfficer, ahead: list[tuple[str, Anchor]], recovering: bool
    ) -> None:
        """The officer's token must not have seen a journal longer than this one; then it
        keeps this journal's head (and drops shares of a share set no longer in use)."""
        app = self.config.appliance_id
        anchor = officer.read_anchor(app)
        if anchor is not None:
            try:
                check_anchor(
                    anchor,
                    self.journal.length,
                    self.recorder.hash_at,
                    officer.name,
                    self.journal.lost_range_holds,
                )
            except AnchorError as exc:
                if not recovering:
                    raise
                ahead.append((officer.name, anchor))
                self.note(str(exc))
                return
        if self.journal.seq >= 0 and not self.problems:
            officer.write_anchor(app, Anchor(self.journal.seq, self.journal.head))
            if self.journal.shares is not None and not self.journal.open_intents("rekey"):
                officer.keep_only_shares(self.journal.shares.identifier)

    def check_officer_anchor(self, officer: UnlockedOfficer) -> None:
        """An officer unlocked outside an activation (an approval): same anchor rule."""
        self._officer_anchor(officer, [], recovering=False)

    def _signing_anchor(self, activation: Activation, recovering: bool) -> None:
        """After login: the signing token's anchor must lie within the journal."""
        where = f"signing token {self.config.signing_token!r}"
        anchor = read_anchor(self.hsm, self.keystore.session(), self.config.appliance_id, where)
        if anchor is None:
            if self.journal.seq >= 0 and self.journal.init_complete:
                raise AnchorError(
                    f"the {where} holds no journal anchor: it is not the token "
                    "this journal was written with, or it was reset"
                )
            return
        try:
            check_anchor(
                anchor,
                self.journal.length,
                self.recorder.hash_at,
                where,
                self.journal.lost_range_holds,
            )
        except AnchorError:
            if not recovering:
                raise
            activation.anchors_ahead.append((where, anchor))
            return
        if anchor.seq != self.journal.seq and not self.problems:
            self.recorder.anchor()  # a crash between an append and its anchor: catch up

    # -- pending files and interrupted ceremonies -------------------------------------------

    def _flush_pending(self, actors: tuple[str, ...]) -> int:
        """Journal each pending file that verifies; reject the others, naming them."""
        written = 0
        policy = self.policy()
        for path in self.state.pending()[:MAX_PENDING_PER_ACTIVATION]:
            try:
                data = self.state.read_pending(path)
                if hashlib.sha256(data).digest() in self.journal.consumed_pending:
                    path.unlink()
                    continue
                pending = read_pending(data, policy, self.config.appliance_id)
            except PendingError as exc:
                moved = self.state.reject_pending(path)
                self.note(f"pending file {path.name} rejected ({exc}); kept as {moved}")
                continue
            details = dict(pending.details)
            if pending.event == "pin_lockout":
                details["activated_by"] = list(actors)
            self.recorder.record(
                pending.event,
                decision=pending.decision,
                actors=pending.actors,
                subjects=pending.subjects,
                details=details,
            )
            path.unlink()
            written += 1
        return written

    def pin_status(self) -> dict[str, list[Any]]:
        """Token key -> [failed PIN attempts the station ever counted, what the token
        itself reports], for every token with something to report. The counts come from
        the signing token (never reset, so a lockout that administrators reset before the
        next activation is still journaled); the reports from each enrolled token that is
        present, read fresh. A token not read now (absent, its module not installed) keeps
        the report last journaled: absence is not recovery."""
        journaled = self.journal.pin_status
        reports = {key: status[1] for key, status in journaled.items()}
        tokens = self.tokens()
        for label in sorted(tokens.enrolled):
            try:
                found = tokens.find(label)
            except HsmError:
                continue
            reports[found.counter_key] = token_lockout(found) or "none"
        totals = self.guard.totals()
        current = {
            key: [totals.get(key, 0), reports.get(key, "none")] for key in {*totals, *reports}
        }
        return {key: status for key, status in current.items() if status != [0, "none"]}

    def _journal_pin_status(self, actors: tuple[str, ...]) -> None:
        """PIN failures and token lockouts since the last activation reach the journal: the
        station's own counts and what each token reports, for the tokens where either
        changed since the last ``pin_status`` record (a cleared one as 0 and "none")."""
        journaled, current = self.journal.pin_status, self.pin_status()
        changed = [
            {"serial": key, "failures": status[0], "token": status[1]}
            for key, status in sorted(current.items())
            if journaled.get(key) != status
        ]
        changed += [
            {"serial": key, "failures": 0, "token": "none"}
            for key in sorted(journaled)
            if key not in current
        ]
        if changed:
            self.recorder.record("pin_status", actors=actors, details={"tokens": changed[:256]})

    def _resume_intents(self, activation: Activation) -> None:
        """Complete (or close) every ceremony a crash interrupted after its intent."""
        for seq, intent in sorted(self.journal.intents.items()):
            resume = self._resumers().get(str(intent.get("ceremony")))
            if resume is None:
                self.recorder.record(
                    "intent_abandoned",
                    actors=activation.actors,
                    details={"intent": seq, "reason": "unknown ceremony"},
                )
                continue
            resume(seq, intent, activation)

    def _resumers(self) -> dict[str, Callable[[int, dict, Activation], object]]:
        """Ceremony name -> how to finish it after a crash (filled in by the ceremonies)."""
        return {}

    # -- helpers for ceremonies -------------------------------------------------------------

    def record(self, event: str, **fields: object) -> Entry:
        entry = self.recorder.record(event, **fields)  # type: ignore[arg-type]
        self._refresh()
        return entry

    def now(self) -> int:
        return self.recorder.require_clock(int(time.time()))
