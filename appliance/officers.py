"""Treasury officers: each holds a token with an approval key and a share of the activation PIN.

ISO/TR 23576 9.3.7 wants a key used only when a quorum of officers is present, and 9.3.6
wants each approval tied to an individual. So every officer has a token of their own (a
smartcard in production, a SoftHSM2 token in demo and tests) holding:

- an approval key pair generated inside the token, sensitive and non-extractable, with
  which the officer signs request hashes: secp256k1, or P-256 on the tokens that do only
  NIST curves (YubiKey PIV, TPMs, most smartcards); the curve is read back from the key
  (``CKA_EC_PARAMS``) and recorded in the signed policy (shared.approval_keys);
- their SLIP-39 share of the signing token's activation PIN, as a private token data
  object that only a logged-in session can read.

Officers are named by the fingerprint of their approval public key (DESIGN 8), never by
name. Each token is found in the module it was enrolled from and must present the
identity journaled then (appliance.tokens). SoftHSM2 has no PIN retry limit (and tokens
differ), so the appliance keeps its own per-token failure counters (:class:`PinGuard`), in
the signing token rather than on the state medium (appliance.token_objects), and refuses to
even try a PIN on a token that has used up its attempts; a token that reports its own
lockout (``CKF_USER_PIN_LOCKED``, read fresh before every attempt) is refused as well.

A token may hold shares of two activation secrets for a while: a re-key (an officer was
revoked) writes the new share before the signing token's PIN changes, and the old one is
removed once the journal records the change. Shares are told apart by their SLIP-39
identifier, which the journal records for the share set in use.
"""

from __future__ import annotations

import re
import secrets
import threading
from dataclasses import dataclass
from typing import Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass, TokenFlag
from pkcs11.constants import DEFAULT
from pkcs11.exceptions import PKCS11Error
from pkcs11.types import SignMixin
from shamir_mnemonic import MnemonicError, Share

from appliance.hsm import Hsm, HsmError, PinLockedError, WrongPinError
from appliance.keystore import ec_point_bytes
from appliance.profiles import LOGIN_ERROR, ModuleProfile
from appliance.token_objects import Anchor, read_anchor, read_counters, write_anchor, write_counters
from appliance.tokens import FoundToken, TokenDirectory, TokenIdentity
from shared import approval_keys
from shared.closing import Closing
from shared.policy import fingerprint_of

APPROVAL_KEY_LABEL = "coldstation-approval"
SHARE_LABEL = "coldstation-pin-share"
APPLICATION = "coldstation"
DEFAULT_MAX_FAILURES = 3
#: the PIN counters' key prefix for a token's lifetime failures (a NUL: no serial has one)
_TOTAL = "total\x00"


class OfficerError(RuntimeError):
    """An officer token that cannot be enrolled, unlocked or used; the message names it."""


class LockedOutError(OfficerError):
    """The token used up its PIN attempts; only an administrator reset lets it try again."""


def approval_fingerprint(public_key: bytes) -> str:
    """Officer id, as the policy's officer registry defines it (shared.policy.fingerprint_of),
    so a journal record's actors and the policy's officers compare as plain strings."""
    if len(public_key) != 33 or public_key[0] not in (2, 3):
        raise OfficerError("approval public key must be a 33-byte compressed point")
    return fingerprint_of(public_key)


@dataclass(frozen=True)
class OfficerCard:
    """What the appliance records about an enrolled officer token (no secrets)."""

    token_label: str
    token_serial: str
    approval_public_key: bytes
    fingerprint: str
    algorithm: str = approval_keys.SECP256K1
    identity: TokenIdentity | None = None


# --- enrolment --------------------------------------------------------------------------


def enroll_officer(
    found: FoundToken, pin: str, share_mnemonic: str, algorithm: str | None = None
) -> OfficerCard:
    """Generate the approval key inside the officer token and store the officer's share.

    Refuses a token that already holds an approval key or a share, so re-running a
    ceremony step never silently replaces an officer's identity. The share is checked to be
    a well-formed SLIP-39 mnemonic first, so a typo is caught while the officer is present.
    ``algorithm`` is the approval key's curve (None: the module's preferred one).
    """
    _check_share_text(share_mnemonic, found.label)
    return _enroll(found, pin, share_mnemonic, algorithm)


def enroll_administrator(found: FoundToken, pin: str, algorithm: str | None = None) -> OfficerCard:
    """An administrator's token: an approval key for signing policies, and no PIN share.

    Administrators sign policy documents; they hold no share of the activation PIN, so an
    administrator alone can neither activate the signing token nor approve a request.
    """
    return _enroll(found, pin, None, algorithm)


def _enroll(
    found: FoundToken, pin: str, share_mnemonic: str | None, algorithm: str | None
) -> OfficerCard:
    hsm, token, label = found.hsm, found.token, found.label
    curve = found.profile.approval_curve(hsm.path, algorithm)
    identity = found.check_identity()
    if hsm.is_logged_in(token):
        hsm.logout(token)
    session = hsm.login(token, pin)
    try:
        hsm.call(_refuse_if_enrolled, session, label)
        public_key = hsm.call(_generate_approval_key, session, curve, found.profile)
        if share_mnemonic is not None:
            hsm.call(_store_share, session, share_mnemonic)
    finally:
        hsm.logout(token)
    return OfficerCard(
        token_label=label,
        token_serial=found.counter_key,
        approval_public_key=public_key,
        fingerprint=approval_fingerprint(public_key),
        algorithm=curve,
        identity=identity,
    )


def share_error_text(exc: BaseException) -> str:
    """shamir_mnemonic's reason with quoted share words removed (they are secret).

    Its messages quote offending words or share prefixes; the reason is useful in a
    ceremony log, the words are not allowed in it. Callers raise ``from None`` so the
    original exception (and its text) is not chained into tracebacks either.
    """
    return re.sub(r"\"[^\"]*\"|'[^']*'", "<redacted>", str(exc)) or type(exc).__name__


def _check_share_text(share_mnemonic: str, token_label: str) -> None:
    try:
        Share.from_mnemonic(share_mnemonic)
    except (MnemonicError, ValueError, KeyError) as exc:
        raise OfficerError(
            f"share for officer token {token_label!r} is not a valid SLIP-39 mnemonic: "
            f"{share_error_text(exc)}"
        ) from None


def _refuse_if_enrolled(session: pkcs11.Session, token_label: str) -> None:
    keys = list(session.get_objects({Attribute.LABEL: APPROVAL_KEY_LABEL}))
    shares = list(session.get_objects({Attribute.LABEL: SHARE_LABEL}))
    if keys or shares:
        raise OfficerError(f"officer token {token_label!r} is already enrolled")


def _generate_approval_key(
    session: pkcs11.Session, algorithm: str, profile: ModuleProfile
) -> bytes:
    """A pair on ``algorithm``'s curve generated on the token; the private half never
    leaves it. Attributes the module refuses (its profile) are left to its defaults; the
    ones that keep the key in the token (SENSITIVE, EXTRACTABLE false) are never dropped,
    and are read back: a module that ignored them is refused."""
    params = session.create_domain_parameters(
        KeyType.EC, {Attribute.EC_PARAMS: approval_keys.EC_PARAMS[algorithm]}, local=True
    )
    private_template: dict[Attribute, Any] = {
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.MODIFIABLE: False,
        Attribute.COPYABLE: False,
        Attribute.SIGN: True,
        Attribute.DERIVE: False,
        Attribute.DECRYPT: False,
        Attribute.UNWRAP: False,
    }
    public_template: dict[Attribute, Any] = {Attribute.TOKEN: True, Attribute.PRIVATE: False}
    for refused in profile.refused_attributes - _KEEPS_KEY_INSIDE:
        # python-pkcs11 leaves DEFAULT out, also where its own capability template set it
        private_template[refused] = public_template[refused] = DEFAULT
    public, private = params.generate_keypair(
        store=True,
        label=APPROVAL_KEY_LABEL,
        capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
        public_template=public_template,
        private_template=private_template,
    )
    try:
        if not private[Attribute.SENSITIVE] or private[Attribute.EXTRACTABLE]:
            raise OfficerError("the token made an approval key that is extractable: refused")
        public_key = approval_keys.compress(algorithm, ec_point_bytes(public[Attribute.EC_POINT]))
        _prove_new_key(private, algorithm, public_key)
    except (OfficerError, approval_keys.ApprovalKeyError, HsmError, PKCS11Error) as exc:
        private.destroy()
        public.destroy()  # nothing half-made stays: the token can be enrolled again
        raise OfficerError(f"the token's new {algorithm} approval key is unusable: {exc}") from exc
    return public_key


def _prove_new_key(private: pkcs11.Object, algorithm: str, public_key: bytes) -> None:
    """The new key must sign a fresh challenge that verifies under the public key it came
    with: a module that only pretends to support the curve fails here, at enrolment."""
    challenge = secrets.token_bytes(32)
    if not isinstance(private, SignMixin):
        raise OfficerError("the new private key cannot sign")
    raw = private.sign(challenge, mechanism=Mechanism.ECDSA)
    der = approval_keys.der_from_raw(algorithm, raw)
    if not approval_keys.verify(algorithm, public_key, der, challenge):
        raise OfficerError("its signature does not verify under its public key")


_KEEPS_KEY_INSIDE = frozenset({Attribute.SENSITIVE, Attribute.EXTRACTABLE, Attribute.TOKEN})


def _store_share(session: pkcs11.Session, share_mnemonic: str) -> None:
    session.create_object(
        {
            Attribute.CLASS: ObjectClass.DATA,
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.MODIFIABLE: False,
            Attribute.LABEL: SHARE_LABEL,
            Attribute.APPLICATION: APPLICATION,
            Attribute.VALUE: share_mnemonic.encode("utf-8"),
        }
    )


# --- the appliance's own PIN retry counters ------------------------------------------


class PinGuard:
    """Per-token consecutive PIN failures, kept in the signing token (a public object).

    An attempt is counted *before* the PIN goes to the token and cleared only after a
    successful login, so pulling the power right after a wrong guess cannot win a free
    retry. Tokens are keyed by serial, since labels can be duplicated or changed. The
    counters live in the signing token, not in a file: restoring an older copy of the state
    medium gives no attempts back (with SoftHSM2 the token files are on the medium too).
    """

    def __init__(
        self,
        hsm: Hsm,
        signing_token: str,
        appliance_id: str,
        max_failures: int = DEFAULT_MAX_FAILURES,
    ) -> None:
        if max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        self.hsm = hsm
        self.signing_token = signing_token
        self.appliance_id = appliance_id
        self.max_failures = max_failures
        self._lock = threading.Lock()

    def counts(self) -> dict[str, int]:
        """Every token with consecutive failures, by serial."""
        with self._lock:
            return {k: v for k, v in self._load().items() if not k.startswith(_TOTAL)}

    def totals(self) -> dict[str, int]:
        """Every failed attempt ever counted, by serial: never reset, so failures that an
        administrators' reset cleared before the next activation still reach the journal."""
        with self._lock:
            loaded = self._load()
        return {k[len(_TOTAL) :]: v for k, v in loaded.items() if k.startswith(_TOTAL)}

    def failures(self, serial: str) -> int:
        with self._lock:
            return self._load().get(serial, 0)

    def remaining(self, serial: str) -> int:
        return max(0, self.max_failures - self.failures(serial))

    def is_locked_out(self, serial: str) -> bool:
        return self.failures(serial) >= self.max_failures

    def check(self, serial: str, token_label: str = "") -> None:
        """LockedOutError when the token has no attempts left."""
        with self._lock:
            self._check(self._load(), serial, token_label)

    def begin_attempt(self, serial: str, token_label: str = "") -> None:
        """Count one attempt now (refusing a locked-out token); success() clears it."""
        with self._lock:
            counts = self._load()
            self._check(counts, serial, token_label)
            counts[serial] = counts.get(serial, 0) + 1
            counts[_TOTAL + serial] = counts.get(_TOTAL + serial, 0) + 1
            self._save(counts)

    def success(self, serial: str) -> None:
        """The PIN was right: the attempt was no failure, and the consecutive count starts
        again."""
        with self._lock:
            counts = self._load()
            total = counts.get(_TOTAL + serial, 0)
            changed = counts.pop(serial, None) is not None
            if total > 1 and changed:
                counts[_TOTAL + serial] = total - 1  # begin_attempt counted this one
            elif changed:
                counts.pop(_TOTAL + serial, None)
            if changed:
                self._save(counts)

    def lock_out(self, serial: str) -> None:
        """The token itself locked its PIN (CKR_PIN_LOCKED): the station counts it locked out
        too, so the lockout is journaled at the next activation and no further attempt is
        made until administrators reset it (the token's SO unblocks the token itself)."""
        with self._lock:
            counts = self._load()
            if counts.get(serial, 0) < self.max_failures:
                counts[serial] = self.max_failures
                self._save(counts)

    def reset(self, serial: str) -> None:
        """Administrator ceremony: give a locked-out token its attempts back."""
        self._clear(serial)

    def _clear(self, serial: str) -> None:
        with self._lock:
            counts = self._load()
            if counts.pop(serial, None) is not None:
                self._save(counts)

    def _check(self, counts: dict[str, int], serial: str, token_label: str) -> None:
        if counts.get(serial, 0) >= self.max_failures:
            name = f"{token_label!r} (serial {serial})" if token_label else f"serial {serial}"
            raise LockedOutError(
                f"officer token {name} is locked out after {counts[serial]} failed PIN "
                "attempts: an administrator must reset it"
            )

    def _token(self) -> pkcs11.Token:
        return self.hsm.token(label=self.signing_token)

    def _load(self) -> dict[str, int]:
        """Counters in the signing token; unreadable ones fail closed, never forgotten."""
        try:
            return read_counters(self.hsm, self._token(), self.appliance_id)
        except HsmError as exc:
            raise OfficerError(f"cannot read the PIN counters: {exc}") from exc

    def _save(self, counts: dict[str, int]) -> None:
        try:
            write_counters(self.hsm, self._token(), self.appliance_id, counts)
        except HsmError as exc:
            raise OfficerError(f"cannot write the PIN counters: {exc}") from exc


def _count(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"bad failure count {value!r}")
    return value


# --- unlocking and using an officer token ---------------------------------------------


def unlock(tokens: TokenDirectory, guard: PinGuard, token_label: str, pin: str) -> UnlockedOfficer:
    """Log in to an officer token with its PIN, counting the attempt in ``guard``.

    The token is found in the module it was enrolled from and must present the identity
    journaled then; a token that reports its own lockout is refused before its PIN is
    tried. A token that is already logged in is logged out first, so the PIN is always
    checked by the token (Hsm.login would otherwise hand back the open session unchecked).
    """
    try:
        found = tokens.find(token_label)
        found.check_identity()
    except HsmError as exc:
        raise OfficerError(str(exc)) from exc
    hsm, token = found.hsm, found.token
    serial = found.counter_key
    _refuse_if_token_locked(found, token_label, serial)
    guard.begin_attempt(serial, token_label)
    if hsm.is_logged_in(token):
        hsm.logout(token)
    try:
        hsm.login(token, pin)
    except PinLockedError as exc:
        guard.lock_out(serial)
        raise LockedOutError(
            f"officer token {token_label!r} (serial {serial}) has locked its user PIN: only "
            "its security officer can unblock it, with the vendor's tools"
        ) from exc
    except WrongPinError as exc:
        left = guard.remaining(serial)
        raise OfficerError(
            f"officer token {token_label!r} (serial {serial}) refused the PIN; "
            f"{left} attempt(s) left before lockout{_token_says(found)}"
        ) from exc
    try:
        guard.success(serial)
    except BaseException:
        hsm.logout(token)
        raise
    return UnlockedOfficer(hsm, token, token_label, serial)


def token_lockout(found: FoundToken) -> str | None:
    """What the token itself reports about its user PIN now: "locked", "final try",
    "count low", or None (nothing, or a module that reports nothing)."""
    try:
        flags = found.fresh_flags()
    except HsmError:
        return None
    if flags & TokenFlag.USER_PIN_LOCKED:
        return "locked"
    if flags & TokenFlag.USER_PIN_FINAL_TRY:
        return "final try"
    if flags & TokenFlag.USER_PIN_COUNT_LOW:
        return "count low"
    return None


def _refuse_if_token_locked(found: FoundToken, token_label: str, serial: str) -> None:
    if token_lockout(found) == "locked":
        raise LockedOutError(
            f"officer token {token_label!r} (serial {serial}) reports its user PIN locked "
            "(CKF_USER_PIN_LOCKED): only its security officer can unblock it, with the "
            "vendor's tools; then an administrator resets the station's counter"
        )


def _token_says(found: FoundToken) -> str:
    said = token_lockout(found)
    if said is None:
        if found.profile.lockout == LOGIN_ERROR:
            return (
                f"; {found.profile.name} also locks the PIN itself after a few failures, "
                "for every token of the device"
            )
        return ""
    if said == "locked":
        return "; the token now reports its PIN locked"
    return f"; the token reports its PIN retry {said}"


class UnlockedOfficer(Closing):
    """A logged-in officer token: read the share, sign approvals, lock it again."""

    def __init__(self, hsm: Hsm, token: pkcs11.Token, token_label: str, serial: str) -> None:
        self._hsm = hsm
        self._token = token
        self.token_label = token_label
        self.token_serial = serial
        self._locked = False
        self._public_key: bytes | None = None
        self._algorithm: str | None = None

    def close(self) -> None:
        """Ends the use (``with`` calls it): :meth:`lock`."""
        self.lock()

    @property
    def name(self) -> str:
        return f"officer token {self.token_label!r} (serial {self.token_serial})"

    @property
    def public_key(self) -> bytes:
        """The compressed approval public key stored on the token."""
        if self._public_key is None:
            self._read_public_key()
        assert self._public_key is not None
        return self._public_key

    @property
    def algorithm(self) -> str:
        """The approval key's curve, read from the key itself (``CKA_EC_PARAMS``)."""
        if self._algorithm is None:
            self._read_public_key()
        assert self._algorithm is not None
        return self._algorithm

    def _read_public_key(self) -> None:
        session = self._session()

        def read() -> tuple[bytes, bytes]:
            key = _one_object(session, ObjectClass.PUBLIC_KEY, APPROVAL_KEY_LABEL, self.name)
            return bytes(key[Attribute.EC_PARAMS]), bytes(key[Attribute.EC_POINT])

        params, point = self._hsm.call(read)
        try:
            algorithm = approval_keys.algorithm_of_params(params)
            public_key = approval_keys.compress(algorithm, ec_point_bytes(point))
        except (approval_keys.ApprovalKeyError, HsmError) as exc:
            raise OfficerError(f"{self.name}: approval key is unusable: {exc}") from exc
        self._algorithm, self._public_key = algorithm, public_key

    @property
    def fingerprint(self) -> str:
        return approval_fingerprint(self.public_key)

    def read_shares(self) -> list[str]:
        """The officer's SLIP-39 shares (one, or two during a re-key); each must be private."""
        session = self._session()

        def read() -> list[tuple[bool, bytes]]:
            found = session.get_objects(
                {Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: SHARE_LABEL}
            )
            return [(bool(o[Attribute.PRIVATE]), bytes(o[Attribute.VALUE])) for o in found]

        shares = []
        for private, value in self._hsm.call(read):
            if not private:
                raise OfficerError(f"{self.name}: share object is not private; refusing to use it")
            try:
                shares.append(value.decode("utf-8"))
            except UnicodeDecodeError:
                raise OfficerError(f"{self.name}: share object is not text") from None
        if not shares:
            raise OfficerError(f"{self.name}: expected a share {SHARE_LABEL!r}, found none")
        return shares

    def read_share(self) -> str:
        """The officer's one share; OfficerError while a re-key left two."""
        shares = self.read_shares()
        if len(shares) != 1:
            raise OfficerError(f"{self.name}: holds {len(shares)} shares")
        return shares[0]

    def add_share(self, share_mnemonic: str) -> None:
        """Store a share of a new activation secret beside the current one (re-key)."""
        _check_share_text(share_mnemonic, self.token_label)
        if share_mnemonic in self.read_shares():
            return
        session = self._session()
        self._hsm.call(_store_share, session, share_mnemonic)

    def keep_only_shares(self, identifier: int) -> int:
        """Destroy shares of other activation secrets; returns how many were destroyed."""
        session = self._session()

        def prune() -> int:
            removed = 0
            for obj in session.get_objects(
                {Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: SHARE_LABEL}
            ):
                try:
                    share = Share.from_mnemonic(bytes(obj[Attribute.VALUE]).decode("utf-8"))
                except (MnemonicError, ValueError, KeyError, UnicodeDecodeError):
                    continue
                if share.identifier != identifier:
                    obj.destroy()
                    removed += 1
            return removed

        return self._hsm.call(prune)

    def read_anchor(self, appliance_id: str) -> Anchor | None:
        """The journal head this token saw when it was last unlocked for the station."""
        return read_anchor(self._hsm, self._session(), appliance_id, self.name)

    def write_anchor(self, appliance_id: str, anchor: Anchor) -> None:
        write_anchor(self._hsm, self._session(), appliance_id, anchor, self.name)

    def approve(self, digest: bytes) -> bytes:
        """Low-S DER signature by the approval key over a 32-byte digest.

        The token signs whatever it is given (CKM_ECDSA), so the length is checked here;
        the result is verified against the token's public key before it is returned, so a
        faulty signature never leaves the appliance.
        """
        if not isinstance(digest, bytes | bytearray) or len(digest) != 32:
            size = len(digest) if isinstance(digest, bytes | bytearray) else type(digest)
            raise OfficerError(f"{self.name}: approval digest must be 32 bytes, got {size}")
        session = self._session()

        def sign() -> bytes:
            key = _one_object(session, ObjectClass.PRIVATE_KEY, APPROVAL_KEY_LABEL, self.name)
            # python-pkcs11 gives an object a sign() only if the token says it may sign
            if not isinstance(key, SignMixin):
                raise OfficerError(f"{self.name}: approval key cannot sign (CKA_SIGN is false)")
            return key.sign(bytes(digest), mechanism=Mechanism.ECDSA)

        try:
            der = approval_keys.der_from_raw(self.algorithm, self._hsm.call(sign))
        except approval_keys.ApprovalKeyError as exc:
            raise OfficerError(f"{self.name}: the token's signature is malformed: {exc}") from exc
        if not approval_keys.verify(self.algorithm, self.public_key, der, bytes(digest)):
            raise OfficerError(f"{self.name}: approval signature does not verify")
        return der

    def lock(self) -> None:
        """Log the token out; further use raises OfficerError."""
        if not self._locked:
            self._locked = True
            self._hsm.logout(self._token)

    @property
    def locked(self) -> bool:
        return self._locked

    def _session(self) -> pkcs11.Session:
        if self._locked:
            raise OfficerError(f"{self.name} is locked")
        try:
            return self._hsm.session_for(self._token)
        except HsmError as exc:
            raise OfficerError(f"{self.name} is no longer logged in") from exc


def _one_object(
    session: pkcs11.Session, object_class: ObjectClass, label: str, name: str
) -> pkcs11.Object:
    found = list(session.get_objects({Attribute.CLASS: object_class, Attribute.LABEL: label}))
    if len(found) != 1:
        what = object_class.name.lower().replace("_", " ")
        raise OfficerError(f"{name}: expected one {what} {label!r}, found {len(found)}")
    return found[0]
