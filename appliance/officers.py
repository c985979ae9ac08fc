"""Treasury officers: each holds a token with an approval key and a share of the activation PIN.

ISO/TR 23576 9.3.7 wants a key used only when a quorum of officers is present, and 9.3.6
wants each approval tied to an individual. So every officer has a token of their own (a
smartcard in production, a SoftHSM2 token in demo and tests) holding:

- an approval key pair (secp256k1) generated inside the token, sensitive and
  non-extractable, with which the officer signs request hashes;
- their SLIP-39 share of the signing token's activation PIN, as a private token data
  object that only a logged-in session can read.

Officers are named by the fingerprint of their approval public key (DESIGN 8), never by
name. SoftHSM2 has no PIN retry limit (and smartcards differ), so the appliance keeps its
own per-token failure counters (:class:`PinGuard`), in the signing token rather than on the
state medium (appliance.token_objects), and refuses to even try a PIN on a token that has
used up its attempts.

A token may hold shares of two activation secrets for a while: a re-key (an officer was
revoked) writes the new share before the signing token's PIN changes, and the old one is
removed once the journal records the change. Shares are told apart by their SLIP-39
identifier, which the journal records for the share set in use.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11.types import SignMixin
from pkcs11.util.ec import encode_named_curve_parameters
from shamir_mnemonic import MnemonicError, Share

from appliance.hsm import Hsm, HsmError, WrongPinError, token_serial
from appliance.keystore import compress_ec_point
from appliance.token_objects import Anchor, read_anchor, read_counters, write_anchor, write_counters
from shared.bitcoin import ecdsa
from shared.closing import Closing
from shared.policy import fingerprint_of

APPROVAL_KEY_LABEL = "coldstation-approval"
SHARE_LABEL = "coldstation-pin-share"
APPLICATION = "coldstation"
DEFAULT_MAX_FAILURES = 3


class OfficerError(RuntimeError):
    """An officer token that cannot be enrolled, unlocked or used; the message names it."""


class LockedOutError(OfficerError):
    """The token used up its PIN attempts; only an administrator reset lets it try again."""


def approval_fingerprint(public_key: bytes) -> str:
    """Officer id, as the policy's officer registry defines it (shared.policy.fingerprint_of),
    so a journal record's actors and the policy's officers compare as plain strings."""
    if len(public_key) != 33 or public_key[0] not in (2, 3):
        raise OfficerError("approval public key must be 33-byte compressed secp256k1")
    return fingerprint_of(public_key)


@dataclass(frozen=True)
class OfficerCard:
    """What the appliance records about an enrolled officer token (no secrets)."""

    token_label: str
    token_serial: str
    approval_public_key: bytes
    fingerprint: str


# --- enrolment --------------------------------------------------------------------------


def enroll_officer(hsm: Hsm, token_label: str, pin: str, share_mnemonic: str) -> OfficerCard:
    """Generate the approval key inside the officer token and store the officer's share.

    Refuses a token that already holds an approval key or a share, so re-running a
    ceremony step never silently replaces an officer's identity. The share is checked to be
    a well-formed SLIP-39 mnemonic first, so a typo is caught while the officer is present.
    """
    _check_share_text(share_mnemonic, token_label)
    return _enroll(hsm, token_label, pin, share_mnemonic)


def enroll_administrator(hsm: Hsm, token_label: str, pin: str) -> OfficerCard:
    """An administrator's token: an approval key for signing policies, and no PIN share.

    Administrators sign policy documents; they hold no share of the activation PIN, so an
    administrator alone can neither activate the signing token nor approve a request.
    """
    return _enroll(hsm, token_label, pin, None)


def _enroll(hsm: Hsm, token_label: str, pin: str, share_mnemonic: str | None) -> OfficerCard:
    token = hsm.token(label=token_label)
    if hsm.is_logged_in(token):
        hsm.logout(token)
    session = hsm.login(token, pin)
    try:
        hsm.call(_refuse_if_enrolled, session, token_label)
        public_key = hsm.call(_generate_approval_key, session)
        if share_mnemonic is not None:
            hsm.call(_store_share, session, share_mnemonic)
    finally:
        hsm.logout(token)
    return OfficerCard(
        token_label=token_label,
        token_serial=token_serial(token),
        approval_public_key=public_key,
        fingerprint=approval_fingerprint(public_key),
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


def _generate_approval_key(session: pkcs11.Session) -> bytes:
    """secp256k1 pair generated on the token; the private half never leaves it."""
    params = session.create_domain_parameters(
        KeyType.EC,
        {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256k1")},
        local=True,
    )
    public, _private = params.generate_keypair(
        store=True,
        label=APPROVAL_KEY_LABEL,
        capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
        public_template={Attribute.TOKEN: True, Attribute.PRIVATE: False},
        private_template={
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
        },
    )
    return compress_ec_point(public[Attribute.EC_POINT])


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
        """Every token with failures, by serial."""
        with self._lock:
            return self._load()

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
            self._save(counts)

    def success(self, serial: str) -> None:
        """The PIN was right: the consecutive-failure count starts again."""
        self._clear(serial)

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


def unlock(hsm: Hsm, guard: PinGuard, token_label: str, pin: str) -> UnlockedOfficer:
    """Log in to an officer token with its PIN, counting the attempt in ``guard``.

    A token that is already logged in is logged out first, so the PIN is always checked
    by the token (Hsm.login would otherwise hand back the open session unchecked).
    """
    token = hsm.token(label=token_label)
    serial = token_serial(token)
    guard.begin_attempt(serial, token_label)
    if hsm.is_logged_in(token):
        hsm.logout(token)
    try:
        hsm.login(token, pin)
    except WrongPinError as exc:
        left = guard.remaining(serial)
        raise OfficerError(
            f"officer token {token_label!r} (serial {serial}) refused the PIN; "
            f"{left} attempt(s) left before lockout"
        ) from exc
    try:
        guard.success(serial)
    except BaseException:
        hsm.logout(token)
        raise
    return UnlockedOfficer(hsm, token, token_label, serial)


class UnlockedOfficer(Closing):
    """A logged-in officer token: read the share, sign approvals, lock it again."""

    def __init__(self, hsm: Hsm, token: pkcs11.Token, token_label: str, serial: str) -> None:
        self._hsm = hsm
        self._token = token
        self.token_label = token_label
        self.token_serial = serial
        self._locked = False
        self._public_key: bytes | None = None

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
            session = self._session()
            point = self._hsm.call(
                _one_object, session, ObjectClass.PUBLIC_KEY, APPROVAL_KEY_LABEL, self.name
            )[Attribute.EC_POINT]
            self._public_key = compress_ec_point(point)
        return self._public_key

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

        der = ecdsa.der_from_raw(self._hsm.call(sign))
        if not ecdsa.verify(self.public_key, der, bytes(digest)):
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
