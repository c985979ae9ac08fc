"""The signing token's keys: generated inside the HSM, signed with there, never read out.

ISO/TR 23576 9.3.7.2 asks for keys generated and used inside a protected device, with a
defined lifecycle; DESIGN 5 fixes how that is done over PKCS#11:

- secp256k1 pairs are generated in the signing token. The private half is a token object,
  private, sensitive and sign-only. Its *backup model* is chosen at generation and never
  changes (:class:`BackupModel`): non-extractable (no copy can ever exist), or extractable
  only under a trusted key-encryption key (``CKA_WRAP_WITH_TRUSTED``), which is what
  HSM-to-HSM cloning needs (appliance.backup). The private key is also not modifiable and
  not copyable, so neither choice can be weakened later through the PKCS#11 API.
- Signing is raw ``CKM_ECDSA`` over a 32-byte digest (the token does not hash: we check the
  length), normalised to low-S DER because SoftHSM2 returns high S about half the time.
- What the token cannot tell us (backup model, lifecycle state, creation time) comes from
  the journal: the station folds it into :class:`shared.station.StationState` and hands
  the keystore its registry (:meth:`Keystore.set_registry`). Nothing about keys is read
  from a file on the state medium, which anyone may edit (DESIGN 9).

Lifecycle (ISO/TR 23576 5.4 and 9.3.6): ACTIVE <-> SUSPENDED, and ACTIVE/SUSPENDED ->
ARCHIVED, which is terminal. Only ACTIVE keys sign. There is deliberately no way to destroy
a key here: coins can still arrive at a retired address and must be returnable, so an
archived key stays in the token for as long as its addresses may hold funds. Destroying
one is a decommissioning ceremony outside this module (re-initialising the token).

Every PKCS#11 call runs while holding :attr:`Hsm.lock`. The private-key object of each
label is looked up once per login session and cached, so signing costs one ``C_Sign``
(the keystore must stay within 15% of raw python-pkcs11; see tests/bench/hsm_bench.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, cast

import pkcs11
from coincurve import PrivateKey as CurvePrivateKey
from coincurve import PublicKey as CurvePublicKey
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap_with_padding
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import PKCS11Error
from pkcs11.types import SignMixin, WrapMixin
from pkcs11.util.ec import encode_named_curve_parameters

from appliance.hsm import Hsm, HsmError
from shared.bitcoin.address import Network
from shared.bitcoin.bip32 import ExtendedKey, format_path
from shared.bitcoin.ecdsa import der_from_raw
from shared.key_models import (
    BIP32_SEED,
    HSM_KEY,
    SEED_BYTES,
    Account,
    account_from_seed,
    child_private_key,
)
from shared.station import KeyEntry

AUDIT_KEY_LABEL = "coldstation-audit"
CURVE = "secp256k1"
KEY_ID_BYTES = 16
MAX_LABEL = 64
_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")


class SigningKey(pkcs11.PrivateKey, SignMixin):
    """For the type checker only: a private key the token signs with. python-pkcs11 builds
    each object's class from its attributes, so the capability is checked at run time
    (:meth:`Keystore._signer`)."""


class KeystoreError(HsmError):
    """A key that cannot be created, found or used; the message names the key and token."""


class BackupModel(StrEnum):
    """How a key may ever be copied; fixed at generation (DESIGN 5, ISO/TR 23576 9.3.7.3)."""

    NON_EXTRACTABLE = "non-extractable"
    WRAP_WITH_TRUSTED = "wrap-with-trusted"


class KeyState(StrEnum):
    """Lifecycle state recorded by the appliance (the token has no such notion)."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    ARCHIVED = "archived"


@dataclass(frozen=True)
class KeyInfo:
    """What the registry knows about one key: no secrets, safe to show and journal."""

    label: str
    key_id: str
    public_key: str
    backup_model: BackupModel
    state: KeyState
    created: str
    origin: str = "generated"
    key_model: str = HSM_KEY
    #: A bip32-seed key's account (``public_key`` is the account's key); "" otherwise.
    xpub: str = ""
    key_origin: str = ""

    @property
    def public_key_bytes(self) -> bytes:
        """The 33-byte compressed public key."""
        return bytes.fromhex(self.public_key)

    @property
    def key_id_bytes(self) -> bytes:
        """The CKA_ID shared by the private and public key objects in the token."""
        return bytes.fromhex(self.key_id)

    def to_json(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_entry(cls, entry: KeyEntry) -> KeyInfo:
        """The journal's record of a key, as the keystore and the screens use it."""
        return cls(
            label=entry.label,
            key_id=entry.key_id.hex(),
            public_key=entry.public_key.hex(),
            backup_model=BackupModel(entry.backup_model),
            state=KeyState(entry.state),
            created=datetime.fromtimestamp(entry.time, UTC).isoformat(timespec="seconds"),
            origin=entry.origin,
            key_model=entry.key_model,
            xpub=entry.xpub,
            key_origin=entry.key_origin,
        )


class Keystore:
    """The keys of one signing token, their registry (from the journal), signing with them."""

    def __init__(self, hsm: Hsm, token_label: str) -> None:
        self.hsm = hsm
        self.token_label = token_label
        self._token = hsm.token(label=token_label)
        self._keys: dict[str, KeyInfo] = {}
        # label -> (login session the handle belongs to, private key object)
        self._handles: dict[str, tuple[pkcs11.Session, SigningKey]] = {}
        # label -> a bip32-seed key's account private key, read once per login (see
        # shared.key_models: this is the model's exposure), dropped at lock and unlock
        self._accounts: dict[str, ExtendedKey] = {}

    def set_registry(self, infos: Iterable[KeyInfo]) -> None:
        """The keys as the journal records them (the station calls this after each record)."""
        with self.hsm.lock:
            self._keys = {info.label: info for info in infos}

    # --- login ---------------------------------------------------------------------------

    def unlock(self, pin: str) -> None:
        """Log in to the signing token (WrongPinError if it refuses the PIN).

        An existing login is closed first, so the PIN is checked on every unlock: Hsm.login
        would otherwise hand back the open session whatever PIN it was given.
        """
        with self.hsm.lock:
            self._handles.clear()
            self._accounts.clear()
            if self.hsm.is_logged_in(self._token):
                self.hsm.logout(self._token)
            self._token = self.hsm.token(label=self.token_label)  # slots move on rescan
            self.hsm.login(self._token, pin)

    def lock(self) -> None:
        """Log out; cached key handles die with the session."""
        with self.hsm.lock:
            self._handles.clear()
            self._accounts.clear()
            self.hsm.logout(self._token)

    @property
    def unlocked(self) -> bool:
        return self.hsm.is_logged_in(self._token)

    def session(self) -> pkcs11.Session:
        """The token's login session (for appliance.backup); hold ``hsm.lock`` while using it."""
        try:
            return self.hsm.session_for(self._token)
        except HsmError as exc:
            raise KeystoreError(f"signing token {self.token_label!r} is locked") from exc

    # --- registry queries ----------------------------------------------------------------

    def key_infos(self) -> list[KeyInfo]:
        """Every registered key, oldest first (archived ones included: they are kept)."""
        with self.hsm.lock:
            return sorted(self._keys.values(), key=lambda k: (k.created, k.label))

    def info(self, label: str) -> KeyInfo:
        with self.hsm.lock:
            try:
                return self._keys[label]
            except KeyError:
                raise KeystoreError(
                    f"no key labelled {label!r} on token {self.token_label!r}"
                ) from None

    def public_key(self, label: str) -> bytes:
        """Compressed public key from the registry; works while the token is locked."""
        return self.info(label).public_key_bytes

    # --- generation ----------------------------------------------------------------------

    def generate_key(
        self, label: str, backup_model: BackupModel, key_id: bytes | None = None
    ) -> KeyInfo:
        """Generate a secp256k1 pair inside the token; the caller journals it.

        ``key_id`` (CKA_ID) is chosen before, and journaled as the ceremony's intent, so a
        rerun after a crash finds the pair by it (:meth:`adopt`). Until the journal record
        is folded the key is registered here provisionally, so the same ceremony can use it.
        """
        _check_label(label)
        backup_model = BackupModel(backup_model)
        key_id = os.urandom(KEY_ID_BYTES) if key_id is None else key_id
        with self.hsm.lock:
            self.refuse_label_taken(label)
            session = self.session()
            self._refuse_orphan(session, label, key_id)
            try:
                public, private = _generate_pair(session, label, key_id, backup_model)
                point = public[Attribute.EC_POINT]
            except PKCS11Error as exc:
                raise KeystoreError(
                    f"token {self.token_label!r} could not generate key {label!r}: "
                    f"{type(exc).__name__}"
                ) from exc
            info = KeyInfo(
                label=label,
                key_id=key_id.hex(),
                public_key=compress_ec_point(point).hex(),
                backup_model=backup_model,
                state=KeyState.ACTIVE,
                created=_now(),
            )
            self._keys[label] = info
            self._handles[label] = (session, self._signer(private, label))
            return info

    def generate_seed(self, label: str, key_id: bytes, network: Network) -> KeyInfo:
        """Generate a bip32 seed inside the token (``shared.key_models``); the caller
        journals it. Like :meth:`generate_key`, ``key_id`` is the journaled intent's, so a
        rerun after a crash adopts the seed (:meth:`adopt`)."""
        _check_label(label)
        with self.hsm.lock:
            self.refuse_label_taken(label)
            session = self.session()
            self._refuse_orphan(session, label, key_id)
            try:
                seed = _generate_seed(session, label, key_id)
            except PKCS11Error as exc:
                raise KeystoreError(
                    f"token {self.token_label!r} could not generate seed {label!r}: "
                    f"{type(exc).__name__}"
                ) from exc
            return self._register_seed(label, key_id, seed, network)

    def _register_seed(
        self, label: str, key_id: bytes, seed: pkcs11.Object, network: Network
    ) -> KeyInfo:
        """Read the seed out once, keep its account (private half for this login)."""
        private, account = self._account_of(seed, label, network)
        info = KeyInfo(
            label=label,
            key_id=key_id.hex(),
            public_key=account.public_key.hex(),
            backup_model=BackupModel.NON_EXTRACTABLE,
            state=KeyState.ACTIVE,
            created=_now(),
            key_model=BIP32_SEED,
            xpub=str(account.xpub),
            key_origin=account.origin.format("h"),
        )
        self._keys[label] = info
        self._accounts[label] = private
        return info

    def _account_of(
        self, seed: pkcs11.Object, label: str, network: Network
    ) -> tuple[ExtendedKey, Account]:
        """The account of a seed object, after checking it is one the token generated and
        keeps sensitive; caller holds ``hsm.lock``."""
        problem = _seed_problem(seed)
        if problem is not None:
            raise KeystoreError(f"seed {label!r} on token {self.token_label!r}: {problem}")
        value = _read_secret(self.session(), seed, label, self.token_label)
        try:
            return account_from_seed(value, network)
        finally:
            wipe(value)

    def _objects_with_id(self, key_id: bytes) -> list[pkcs11.Object]:
        """Every token object with CKA_ID ``key_id`` (what a crashed keygen may have left)."""
        with self.hsm.lock:
            try:
                return list(self.session().get_objects({Attribute.ID: key_id}))
            except PKCS11Error as exc:
                raise KeystoreError(f"cannot search token {self.token_label!r}: {exc!r}") from exc

    def key_objects(self, key_id: bytes) -> tuple[pkcs11.Object | None, pkcs11.Object | None]:
        """(public, private) objects with CKA_ID ``key_id``; None where absent."""
        found = self._objects_with_id(key_id)
        public = [o for o in found if o.object_class == ObjectClass.PUBLIC_KEY]
        private = [o for o in found if o.object_class == ObjectClass.PRIVATE_KEY]
        if len(public) > 1 or len(private) > 1 or len(found) != len(public) + len(private):
            raise KeystoreError(
                f"token {self.token_label!r} holds unexpected objects with key id {key_id.hex()}"
            )
        return (public[0] if public else None), (private[0] if private else None)

    def adopt_seed(self, label: str, key_id: bytes, network: Network) -> KeyInfo | None:
        """The seed a crashed bip32 keygen left under ``key_id``, checked like a new one;
        None when the token holds none."""
        with self.hsm.lock:
            found = self._objects_with_id(key_id)
            if not found:
                return None
            if len(found) != 1 or found[0].object_class != ObjectClass.SECRET_KEY:
                raise KeystoreError(
                    f"token {self.token_label!r} holds unexpected objects with key id "
                    f"{key_id.hex()}: decommission them by hand"
                )
            self.refuse_label_taken(label)
            return self._register_seed(label, key_id, found[0], network)

    def adopt(self, label: str, key_id: bytes, backup_model: BackupModel) -> KeyInfo | None:
        """The pair a crashed keygen left in the token under ``key_id``, checked like a new
        key (generated inside the token, sensitive, extractable only as its model allows);
        None when the token holds no such pair. A half pair is an error."""
        public, private = self.key_objects(key_id)
        if public is None and private is None:
            return None
        if public is None or private is None:
            raise KeystoreError(
                f"token {self.token_label!r} holds half a key pair with key id "
                f"{key_id.hex()}: decommission it by hand"
            )
        with self.hsm.lock:
            point = public[Attribute.EC_POINT]
        info = KeyInfo(
            label=label,
            key_id=key_id.hex(),
            public_key=compress_ec_point(point).hex(),
            backup_model=BackupModel(backup_model),
            state=KeyState.ACTIVE,
            created=_now(),
        )
        self._keys[label] = info
        try:
            self.verify_key_attributes(label)
            with self.hsm.lock:
                local = bool(private[Attribute.LOCAL])
            if not local:
                raise KeystoreError(
                    f"key id {key_id.hex()} on token {self.token_label!r} was "
                    "not generated inside the token: not adopted"
                )
        except BaseException:
            del self._keys[label]
            raise
        return info

    def restored_key(
        self, label: str, key_id: bytes, public_key: bytes, backup_model: BackupModel
    ) -> KeyInfo:
        """The registry entry for a key appliance.backup unwrapped and proved (provisional,
        like :meth:`generate_key`, until its journal record is folded)."""
        _check_label(label)
        with self.hsm.lock:
            self.refuse_label_taken(label)
            info = KeyInfo(
                label=label,
                key_id=key_id.hex(),
                public_key=public_key.hex(),
                backup_model=BackupModel(backup_model),
                state=KeyState.ACTIVE,
                created=_now(),
                origin="restored",
            )
            self._keys[label] = info
            return info

    def refuse_label_taken(self, label: str) -> None:
        """Labels are unique per token: refuse one the registry already has."""
        if label in self._keys:
            raise KeystoreError(f"key {label!r} already exists on token {self.token_label!r}")

    def _refuse_orphan(self, session: pkcs11.Session, label: str, key_id: bytes) -> None:
        """Objects with this label under another key id are not ours to overwrite."""
        try:
            found = [
                o
                for o in session.get_objects({Attribute.LABEL: label})
                if bytes(o[Attribute.ID]) != key_id
            ]
        except PKCS11Error as exc:
            raise KeystoreError(
                f"cannot search token {self.token_label!r}: {type(exc).__name__}"
            ) from exc
        if found:
            raise KeystoreError(
                f"token {self.token_label!r} already holds objects labelled {label!r} that the "
                "journal does not know: resolve that before generating"
            )

    def refuse_public_key_twice(self, public_key: bytes) -> None:
        """One key, one label: a second registration of the same public key is an error."""
        with self.hsm.lock:
            for info in self._keys.values():
                if info.public_key_bytes == public_key:
                    raise KeystoreError(
                        f"public key already registered as {info.label!r} "
                        f"on token {self.token_label!r}"
                    )

    # --- signing -------------------------------------------------------------------------

    def sign_digest(
        self,
        label: str,
        digest: bytes,
        path: Sequence[int] = (),
        network: Network | None = None,
        expected_key: bytes | None = None,
    ) -> bytes:
        """Low-S DER ECDSA signature over a 32-byte digest.

        An hsm-key signs inside the token (CKM_ECDSA does not hash, so anything but exactly
        32 bytes is refused here). A bip32-seed key signs with the child at ``path`` under
        its account, derived in the station from the seed the token holds; ``network`` and
        the child's ``expected_key`` are then required and checked. Any key that is not
        ACTIVE is refused.
        """
        if len(digest) != 32:
            raise KeystoreError(f"key {label!r}: digest must be 32 bytes, got {len(digest)}")
        with self.hsm.lock:
            info = self._keys.get(label)
            if info is None or info.state is not KeyState.ACTIVE:
                self._refuse_signing(label, info)
            assert info is not None
            if info.key_model == BIP32_SEED:
                return self._sign_child(info, digest, path, network, expected_key)
            if path:
                raise KeystoreError(f"key {label!r} is a single HSM key: it has no child {path}")
            key = self.private_key_object(label)
            try:
                raw = key.sign(bytes(digest), mechanism=Mechanism.ECDSA)
            except PKCS11Error as exc:
                raise KeystoreError(
                    f"token {self.token_label!r} refused to sign with key {label!r}: "
                    f"{type(exc).__name__}"
                ) from exc
        return der_from_raw(raw)

    def _sign_child(
        self,
        info: KeyInfo,
        digest: bytes,
        path: Sequence[int],
        network: Network | None,
        expected_key: bytes | None,
    ) -> bytes:
        """A bip32-seed key's child signs; caller holds ``hsm.lock``."""
        if network is None or expected_key is None:
            raise KeystoreError(f"key {info.label!r} is a bip32 seed: name the child to sign")
        child = child_private_key(self._account_private(info, network), path)
        if child.public_key != expected_key:
            raise KeystoreError(
                f"key {info.label!r}: the child at {format_path(path)} is not the key "
                "the request names"
            )
        return CurvePrivateKey(child.key).sign(bytes(digest), hasher=None)

    def _account_private(self, info: KeyInfo, network: Network) -> ExtendedKey:
        """The account private key of a seed, read once per login and checked against the
        journal's account."""
        cached = self._accounts.get(info.label)
        if cached is not None:
            return cached
        session = self.session()
        try:
            seed = session.get_key(object_class=ObjectClass.SECRET_KEY, id=info.key_id_bytes)
        except PKCS11Error as exc:
            raise KeystoreError(
                f"seed {info.label!r} (id {info.key_id}) is missing from token "
                f"{self.token_label!r}: {type(exc).__name__}"
            ) from exc
        private, account = self._account_of(seed, info.label, network)
        if str(account.xpub) != info.xpub or account.origin.format("h") != info.key_origin:
            raise KeystoreError(
                f"seed {info.label!r} on token {self.token_label!r} does not give the "
                "account the journal registers"
            )
        self._accounts[info.label] = private
        return private

    def _refuse_signing(self, label: str, info: KeyInfo | None) -> None:
        if info is None:
            raise KeystoreError(f"no key labelled {label!r} on token {self.token_label!r}")
        raise KeystoreError(
            f"key {label!r} on token {self.token_label!r} is {info.state}: it does not sign"
        )

    def private_key_object(self, label: str) -> SigningKey:
        """The private key object, found once per login session; caller holds ``hsm.lock``."""
        session = self.session()
        cached = self._handles.get(label)
        if cached is not None and cached[0] is session:
            return cached[1]
        info = self.info(label)
        try:
            key = session.get_key(
                object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, id=info.key_id_bytes
            )
        except PKCS11Error as exc:
            raise KeystoreError(
                f"key {label!r} (id {info.key_id}) is missing from token "
                f"{self.token_label!r}: {type(exc).__name__}"
            ) from exc
        signer = self._signer(key, label)
        self._handles[label] = (session, signer)
        return signer

    def _signer(self, key: pkcs11.Object, label: str) -> SigningKey:
        """``key`` as a signing key; a private key the token will not sign with (CKA_SIGN
        false: made by other tools, or altered) is refused by name, not met as an
        AttributeError halfway through a ceremony."""
        if not isinstance(key, SignMixin):
            raise KeystoreError(
                f"key {label!r} on token {self.token_label!r} cannot sign (CKA_SIGN is false)"
            )
        return cast(SigningKey, key)

    # --- checks --------------------------------------------------------------------------

    def verify_key_attributes(self, label: str) -> dict[str, bool]:
        """Read the private key's protection attributes and check them against its model.

        For the boot self-check and the tests: a key that is not sensitive, or whose
        extractability contradicts the recorded backup model, is a KeystoreError.
        """
        with self.hsm.lock:
            info = self.info(label)
            if info.key_model == BIP32_SEED:
                return self._verify_seed_attributes(info)
            key = self.private_key_object(label)
            try:
                values = key.get_attributes(list(_CHECKED_ATTRIBUTES))
            except PKCS11Error as exc:
                raise KeystoreError(
                    f"cannot read attributes of key {label!r} on token {self.token_label!r}: "
                    f"{type(exc).__name__}"
                ) from exc
        found = {name: bool(values[attr]) for attr, name in _CHECKED_ATTRIBUTES.items()}
        problem = _attribute_problem(info, found)
        if problem:
            raise KeystoreError(f"key {label!r} on token {self.token_label!r}: {problem}")
        return found

    def _verify_seed_attributes(self, info: KeyInfo) -> dict[str, bool]:
        """A seed's object: generated in the token, always sensitive, private, kept."""
        try:
            seed = self.session().get_key(object_class=ObjectClass.SECRET_KEY, id=info.key_id_bytes)
        except PKCS11Error as exc:
            raise KeystoreError(
                f"seed {info.label!r} is missing from token {self.token_label!r}: "
                f"{type(exc).__name__}"
            ) from exc
        problem = _seed_problem(seed)
        if problem is not None:
            raise KeystoreError(f"seed {info.label!r} on token {self.token_label!r}: {problem}")
        return {attr.name.lower(): True for attr in _SEED_ATTRIBUTES[:-1]}

    # --- audit key -----------------------------------------------------------------------

    def create_audit_key(self, key_id: bytes | None = None) -> KeyInfo:
        """The appliance's audit key: an ordinary non-extractable key in the signing token.

        It signs journal records and receipts; it is never cloned, so a restored appliance
        gets a new audit key and the journal records the hand-over.
        """
        return self.generate_key(AUDIT_KEY_LABEL, BackupModel.NON_EXTRACTABLE, key_id)

    def token_audit_key(self) -> bytes | None:
        """The audit key's public half as the signing token holds it, read without a PIN:
        the key the journal and its checkpoints are verified with (never from a file)."""
        with self.hsm.lock:
            token = self.hsm.token(label=self.token_label)
            with self.hsm.public_session(token) as session:
                try:
                    found = list(
                        session.get_objects(
                            {
                                Attribute.CLASS: ObjectClass.PUBLIC_KEY,
                                Attribute.LABEL: AUDIT_KEY_LABEL,
                            }
                        )
                    )
                    points = [bytes(o[Attribute.EC_POINT]) for o in found]
                except PKCS11Error as exc:
                    raise KeystoreError(
                        f"cannot read the audit key of token {self.token_label!r}: {exc!r}"
                    ) from exc
        if not points:
            return None
        if len(points) > 1:
            raise KeystoreError(f"token {self.token_label!r} holds {len(points)} audit keys")
        return compress_ec_point(points[0])

    def audit_public_key(self) -> bytes:
        return self.public_key(AUDIT_KEY_LABEL)

    def has_audit_key(self) -> bool:
        """False only during initialisation, before the audit key exists."""
        return any(info.label == AUDIT_KEY_LABEL for info in self.key_infos())

    def sign_audit_digest(self, digest: bytes) -> bytes:
        """Low-S DER signature by the audit key over a 32-byte record or receipt hash."""
        return self.sign_digest(AUDIT_KEY_LABEL, digest)


_CHECKED_ATTRIBUTES: dict[Attribute, str] = {
    Attribute.SENSITIVE: "sensitive",
    Attribute.EXTRACTABLE: "extractable",
    Attribute.ALWAYS_SENSITIVE: "always_sensitive",
    Attribute.NEVER_EXTRACTABLE: "never_extractable",
    Attribute.WRAP_WITH_TRUSTED: "wrap_with_trusted",
    Attribute.PRIVATE: "private",
    Attribute.TOKEN: "token",
    Attribute.SIGN: "sign",
}


def _attribute_problem(info: KeyInfo, found: dict[str, bool]) -> str | None:
    """Why the attributes contradict the registry, or None when they agree."""
    for name in ("sensitive", "private", "token", "sign"):
        if not found[name]:
            return f"CKA_{name.upper()} is false"
    if info.backup_model is BackupModel.NON_EXTRACTABLE and found["extractable"]:
        return "backup model non-extractable but CKA_EXTRACTABLE is true"
    if info.backup_model is BackupModel.WRAP_WITH_TRUSTED and not found["wrap_with_trusted"]:
        return "backup model wrap-with-trusted but CKA_WRAP_WITH_TRUSTED is false"
    if info.origin == "generated" and not found["always_sensitive"]:
        return "generated key was not always sensitive"
    return None


# --- token helpers ---------------------------------------------------------------------


def private_key_template(backup_model: BackupModel) -> dict[Attribute, Any]:
    """Private-key attributes for a backup model; shared with appliance.backup's unwrap.

    CKA_MODIFIABLE comes last on purpose: SoftHSM2 applies a template in order, and once
    an object is not modifiable it rejects the attributes that follow (seen on unwrap).
    """
    extractable = backup_model is BackupModel.WRAP_WITH_TRUSTED
    template: dict[Attribute, Any] = {
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.SIGN: True,
        Attribute.DERIVE: False,
        Attribute.EXTRACTABLE: extractable,
        Attribute.COPYABLE: False,
    }
    if extractable:
        template[Attribute.WRAP_WITH_TRUSTED] = True
    template[Attribute.MODIFIABLE] = False
    return template


def public_key_template() -> dict[Attribute, Any]:
    return {
        Attribute.TOKEN: True,
        Attribute.PRIVATE: False,
        Attribute.VERIFY: True,
        Attribute.DERIVE: False,
        Attribute.MODIFIABLE: False,
    }


def secp256k1_params() -> bytes:
    """DER of the secp256k1 named-curve OID, as CKA_EC_PARAMS wants it."""
    return encode_named_curve_parameters(CURVE)


def _generate_pair(
    session: pkcs11.Session, label: str, key_id: bytes, backup_model: BackupModel
) -> tuple[pkcs11.PublicKey, pkcs11.PrivateKey]:
    params = session.create_domain_parameters(
        KeyType.EC, {Attribute.EC_PARAMS: secp256k1_params()}, local=True
    )
    return params.generate_keypair(
        store=True,
        id=key_id,
        label=label,
        mechanism=Mechanism.EC_KEY_PAIR_GEN,
        public_template=public_key_template(),
        private_template=private_key_template(backup_model),
    )


def compress_ec_point(ec_point: bytes) -> bytes:
    """33-byte compressed key from CKA_EC_POINT (a DER OCTET STRING, or the bare point).

    PKCS#11 says DER-wrapped; a few modules return the raw point, compressed or not, so
    all of these are read.
    coincurve checks the point is on the curve.
    """
    point = ec_point_bytes(ec_point)
    uncompressed = len(point) == 65 and point[0] == 0x04
    compressed = len(point) == 33 and point[0] in (2, 3)
    if not (uncompressed or compressed):
        raise KeystoreError("CKA_EC_POINT is not a secp256k1 point")
    try:
        return CurvePublicKey(point).format(compressed=True)
    except ValueError as exc:
        raise KeystoreError("CKA_EC_POINT is not on secp256k1") from exc


def ec_point_bytes(ec_point: bytes) -> bytes:
    """The bare point of a CKA_EC_POINT: PKCS#11 says DER OCTET STRING, a few modules give
    the point itself (compressed or not); both are read, on any curve."""
    point = bytes(ec_point)
    if len(point) not in (33, 65) and point[:1] == b"\x04":
        point = _der_octet_string(point)
    return point


def ec_point_der(public_key: bytes) -> bytes:
    """CKA_EC_POINT for a public key: DER OCTET STRING of the 65-byte uncompressed point."""
    point = CurvePublicKey(bytes(public_key)).format(compressed=False)
    return bytes([0x04, len(point)]) + point


def _der_octet_string(data: bytes) -> bytes:
    if len(data) < 2:
        raise KeystoreError("CKA_EC_POINT is truncated")
    length, start = data[1], 2
    if length & 0x80:  # long form
        count = length & 0x7F
        length, start = int.from_bytes(data[2 : 2 + count], "big"), 2 + count
    if start + length != len(data):
        raise KeystoreError("CKA_EC_POINT has a bad DER length")
    return data[start:]


def _generate_seed(session: pkcs11.Session, label: str, key_id: bytes) -> pkcs11.SecretKey:
    """The token generates a bip32 seed as a token object (one irreversible effect)."""
    return session.generate_key(
        KeyType.GENERIC_SECRET,
        SEED_BYTES * 8,
        id=key_id,
        label=label,
        store=True,
        mechanism=Mechanism.GENERIC_SECRET_KEY_GEN,
        template=seed_template(),
    )


def seed_template() -> dict[Attribute, Any]:
    """A bip32 seed: a private, sensitive generic secret the token keeps; extractable only
    so the station can read it out wrapped (:func:`_read_secret`), usable for nothing else.
    CKA_MODIFIABLE last, as in :func:`private_key_template`."""
    template: dict[Attribute, Any] = {
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: True,
        Attribute.SIGN: False,
        Attribute.VERIFY: False,
        Attribute.ENCRYPT: False,
        Attribute.DECRYPT: False,
        Attribute.WRAP: False,
        Attribute.UNWRAP: False,
        Attribute.DERIVE: False,
        Attribute.COPYABLE: False,
    }
    template[Attribute.MODIFIABLE] = False
    return template


_SEED_ATTRIBUTES = (
    Attribute.TOKEN,
    Attribute.PRIVATE,
    Attribute.SENSITIVE,
    Attribute.LOCAL,
    Attribute.ALWAYS_SENSITIVE,
    Attribute.VALUE_LEN,
)


def _seed_problem(seed: pkcs11.Object) -> str | None:
    """Why a secret object is not a seed this station generated, or None."""
    try:
        values = seed.get_attributes(list(_SEED_ATTRIBUTES))
    except PKCS11Error as exc:
        return f"its attributes cannot be read ({type(exc).__name__})"
    for attr in _SEED_ATTRIBUTES[:-1]:
        if not values[attr]:
            return f"CKA_{attr.name} is false"
    if values[Attribute.VALUE_LEN] != SEED_BYTES:
        return f"it is {values[Attribute.VALUE_LEN]} bytes, not {SEED_BYTES}"
    return None


def _read_secret(
    session: pkcs11.Session, secret: pkcs11.Object, label: str, token_label: str
) -> bytearray:
    """A sensitive secret's value, wrapped by the token under a one-time AES session key
    (``CKM_AES_KEY_WRAP_PAD``, RFC 5649) and unwrapped here; the caller wipes it."""
    one_time = bytearray(os.urandom(32))
    wrapping = None
    try:
        wrapping = session.create_object(
            {
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.KEY_TYPE: KeyType.AES,
                Attribute.VALUE: bytes(one_time),
                Attribute.TOKEN: False,
                Attribute.WRAP: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
            }
        )
        blob = cast(WrapMixin, wrapping).wrap_key(
            cast(pkcs11.Key, secret), mechanism=Mechanism.AES_KEY_WRAP_PAD
        )
        return bytearray(aes_key_unwrap_with_padding(bytes(one_time), bytes(blob)))
    except (PKCS11Error, InvalidUnwrap, AttributeError) as exc:
        raise KeystoreError(
            f"seed {label!r} on token {token_label!r} cannot be read: {type(exc).__name__}"
        ) from exc
    finally:
        wipe(one_time)
        if wrapping is not None:
            with suppress(PKCS11Error):
                wrapping.destroy()


def wipe(buffer: bytearray) -> None:
    """Overwrite a secret we hold in a mutable buffer, in place (best effort in CPython:
    copies made elsewhere, such as the ``bytes`` a library needed, remain)."""
    buffer[:] = bytes(len(buffer))


def _check_label(label: str) -> None:
    if not isinstance(label, str) or not 0 < len(label) <= MAX_LABEL or not _LABEL_RE.match(label):
        raise KeystoreError(
            f"key label {label!r} must be 1-{MAX_LABEL} characters of A-Z a-z 0-9 . _ : / -"
        )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
