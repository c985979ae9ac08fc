"""Backup by HSM-to-HSM cloning under a trusted key-encryption key (DESIGN 5; REQUIREMENTS 22-23).

ISO/TR 23576 9.3.7.3 wants backups at least as well protected as the key itself. Keys with
the wrap-with-trusted backup model can leave a token only wrapped (``CKM_AES_KEY_WRAP_PAD``)
under a key marked ``CKA_TRUSTED``, and only a token holding the same trusted KEK can
unwrap the blob. The KEK is 32 random bytes that no single person ever holds: at the KEK
ceremony it is split k-of-n with SLIP-39 (:func:`new_kek_shares`), and installing it on a
token (:func:`install_trusted_kek`) needs k share holders plus the token's SO PIN; restoring
needs the target token's user login as well. Non-extractable keys cannot be cloned at all.

How CKA_TRUSTED is set on SoftHSM2 (2.6.1, checked here and in its source):

- Only the SO may set ``CKA_TRUSTED`` to true, in ``C_CreateObject`` or
  ``C_SetAttributeValue`` (P11AttrTrusted::updateAttr returns CKR_ATTRIBUTE_READ_ONLY when
  no SO is logged in). A user session cannot create a trusted key or mark one trusted.
- An SO session can only create or modify *public* objects (access.cpp: private objects
  need a user login), and the SO never sees the user's private objects. So "the user
  imports the KEK, the SO marks it trusted" is impossible; the KEK is created in an SO
  session as a public token object with CKA_TRUSTED true. That is what we do.

Being public has consequences, handled as follows:

- A public key is usable without the user PIN. Its ``CKA_UNWRAP_TEMPLATE`` therefore forces
  every key unwrapped with it to be a private, sensitive, wrap-with-trusted EC key: unwrap
  needs a user login and never yields readable key bytes (without the template a PIN-less
  session could unwrap a blob into a readable key; the tests show the template stops it).
  The KEK may not encrypt, decrypt, sign, verify or derive, and is neither modifiable nor
  copyable, so a PIN-less session cannot relax any of this (CKR_ACTION_PROHIBITED).
- SoftHSM2 encrypts only private objects with the token's PIN-derived key, so the KEK's
  value sits unencrypted in the token directory: on SoftHSM2 its secrecy rests on the state
  directory's permissions (0700) and the disk. A production HSM keeps trusted keys inside.
  A PIN-less session can also destroy the public KEK (a denial of backup, not a leak).
- python-pkcs11 has no packer for array attributes, so the unwrap template is packed here
  as a ``CK_ATTRIBUTE[]`` with ctypes (:func:`_attribute_array`).

Portability: SoftHSM2 implements RFC 5649 under ``CKM_AES_KEY_WRAP_PAD`` (0x210A), which
PKCS#11 3.0 calls ``CKM_AES_KEY_WRAP_KWP`` (softhsm/SoftHSMv2#726); another vendor's HSM may
read 0x210A as PKCS#7 padding plus RFC 3394. Blobs are for cloning between SoftHSM2 tokens,
or between HSMs of one vendor, which is what HSM-to-HSM cloning means in practice.

Secrets in Python: the combined KEK is returned as a bytearray so the caller can wipe it
(:func:`combined_kek` does so); the ``bytes`` that shamir_mnemonic and python-pkcs11 need
are immutable copies that CPython cannot wipe, kept only for the call that needs them.
Share words are never put into error messages (shamir_mnemonic's own messages quote them).
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, cast

import pkcs11
import shamir_mnemonic
from coincurve import PublicKey as CurvePublicKey
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.attributes import AttributeMapper
from pkcs11.constants import DEFAULT, MechanismFlag
from pkcs11.exceptions import PinIncorrect, PinLenRange, PKCS11Error
from pkcs11.types import SignMixin, UnwrapMixin, WrapMixin
from shamir_mnemonic import MnemonicError
from shamir_mnemonic.share import Share
from shamir_mnemonic.wordlist import WORD_INDEX_MAP

from appliance.hsm import Hsm, HsmError, WrongPinError
from appliance.keystore import (
    KEY_ID_BYTES,
    BackupModel,
    KeyInfo,
    Keystore,
    KeystoreError,
    ec_point_der,
    private_key_template,
    secp256k1_params,
    wipe,
)
from shared.bitcoin.ecdsa import der_from_raw, verify

#: Words in one SLIP-39 share: 20 for a 128-bit secret, 33 for the 256-bit KEK.
SHARE_WORDS = (20, 33)
KEK_LABEL = "coldstation-kek"
KEK_BYTES = 32
MAX_SHARES = 16
WRAP_MECHANISM = Mechanism.AES_KEY_WRAP_PAD


class BackupError(HsmError):
    """A KEK, export or restore step that failed; the message names the key and token."""


# --- KEK ceremony: shares ----------------------------------------------------------------


def new_kek_shares(threshold: int, count: int) -> list[str]:
    """A fresh 32-byte KEK split ``threshold``-of-``count`` into SLIP-39 mnemonics.

    The KEK comes from the OS CSPRNG rather than one token because it must be installed on
    several tokens; it exists only for this call and is then wiped.
    """
    if not 1 <= threshold <= count <= MAX_SHARES or (threshold == 1 and count > 1):
        raise BackupError(
            f"KEK split {threshold}-of-{count} is not allowed: need 1 <= k <= n <= "
            f"{MAX_SHARES}, and k >= 2 when n > 1 (SLIP-39)"
        )
    secret = bytearray(os.urandom(KEK_BYTES))
    try:
        groups = shamir_mnemonic.generate_mnemonics(
            group_threshold=1, groups=[(threshold, count)], master_secret=bytes(secret)
        )
    except (ValueError, MnemonicError) as exc:
        raise BackupError(f"cannot split the KEK {threshold}-of-{count}: {exc}") from None
    finally:
        wipe(secret)
    return list(groups[0])


def share_problem(mnemonic: str) -> str | None:
    """What is wrong with one typed KEK share, without repeating any of its words (they are
    a secret): the word count, which word (by position) is not a SLIP-39 word, or a failed
    checksum (a word mistyped into another list word); None when the share is sound."""
    words = mnemonic.lower().split()
    if len(words) not in SHARE_WORDS:
        return f"it has {len(words)} words; a KEK share has 20 or 33"
    for position, word in enumerate(words, start=1):
        if word not in WORD_INDEX_MAP:
            return f"word {position} is not a SLIP-39 word (mistyped?)"
    try:
        Share.from_mnemonic(" ".join(words))
    except (MnemonicError, ValueError):
        return "its checksum fails: a word is mistyped into another list word"
    return None


def combine_kek_shares(mnemonics: Iterable[str]) -> bytearray:
    """The KEK from k shares, as a bytearray the caller wipes (see :func:`combined_kek`)."""
    try:
        secret = shamir_mnemonic.combine_mnemonics(list(mnemonics))
    except (MnemonicError, ValueError) as exc:
        # from None: shamir_mnemonic's message quotes share words
        raise BackupError(f"KEK shares do not combine: {_share_problem(exc)}") from None
    if len(secret) != KEK_BYTES:
        raise BackupError(f"KEK shares hold {len(secret)} bytes, not a {KEK_BYTES}-byte KEK")
    return bytearray(secret)


@contextmanager
def combined_kek(mnemonics: Iterable[str]) -> Iterator[bytearray]:
    """``with combined_kek(shares) as kek:`` ... the KEK is zeroed when the block exits."""
    secret = combine_kek_shares(mnemonics)
    try:
        yield secret
    finally:
        wipe(secret)


def _share_problem(exc: Exception) -> str:
    """A reason for a failed combination that does not repeat any share words."""
    text = str(exc).lower()
    if "number of mnemonics" in text or "insufficient" in text or "threshold" in text:
        return "fewer shares than the threshold"
    if "checksum" in text:
        return "a share has a bad checksum (mistyped word?)"
    if "identifier" in text or "group" in text:
        return "shares come from different KEK ceremonies"
    return "a share is malformed or the shares do not belong together"


# --- KEK ceremony: installing on a token -------------------------------------------------


def install_trusted_kek(
    hsm: Hsm,
    token_label: str,
    so_pin: str,
    user_pin: str,
    kek_secret: bytes | bytearray,
    label: str = KEK_LABEL,
) -> str:
    """Import the KEK as a trusted wrap/unwrap key; return its check value (hex).

    The SO creates it (only the SO may set CKA_TRUSTED); the user then logs in to confirm
    the key is visible and trusted. The token must be locked in this process, because an
    SO and a user cannot be logged in to one token at once. The check value (CKA_CHECK_VALUE,
    the first 3 bytes of AES-ECB of a zero block) is the same on every token holding the
    same KEK; the ceremony records it and compares it before any restore.
    """
    if len(kek_secret) != KEK_BYTES:
        raise BackupError(f"KEK must be {KEK_BYTES} bytes, got {len(kek_secret)}")
    token = hsm.token(label=token_label)
    if hsm.is_logged_in(token):
        raise BackupError(
            f"token {token_label!r} is unlocked: lock it first, the SO installs the KEK"
        )
    with hsm.lock:
        _create_kek_as_so(token, so_pin, bytes(kek_secret), label)
    return _confirm_kek_as_user(hsm, token, user_pin, label)


def kek_check_value(keystore: Keystore, kek_label: str = KEK_LABEL) -> str:
    """Check value of the KEK on the keystore's (unlocked) token, to compare across tokens."""
    with keystore.hsm.lock:
        kek = _find_kek(keystore.session(), kek_label, keystore.token_label)
        return _read(kek, Attribute.CHECK_VALUE, kek_label, keystore.token_label).hex()


def _ck_ulong(value: int) -> bytes:
    return value.to_bytes(ctypes.sizeof(ctypes.c_ulong), sys.byteorder)


# Every key unwrapped with the KEK must be a private, sensitive, wrap-with-trusted EC key.
_UNWRAP_TEMPLATE: list[tuple[Attribute, bytes]] = [
    (Attribute.CLASS, _ck_ulong(ObjectClass.PRIVATE_KEY)),
    (Attribute.KEY_TYPE, _ck_ulong(KeyType.EC)),
    (Attribute.PRIVATE, b"\x01"),
    (Attribute.SENSITIVE, b"\x01"),
    (Attribute.WRAP_WITH_TRUSTED, b"\x01"),
]


def _kek_template(secret: bytes, label: str, unwrap_template: bytes) -> dict[Attribute, Any]:
    """The trusted KEK: public (see module docstring), wrap/unwrap only, fixed for good."""
    return {
        Attribute.CLASS: ObjectClass.SECRET_KEY,
        Attribute.KEY_TYPE: KeyType.AES,
        Attribute.TOKEN: True,
        Attribute.PRIVATE: False,
        Attribute.LABEL: label,
        Attribute.VALUE: secret,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.WRAP: True,
        Attribute.UNWRAP: True,
        Attribute.ENCRYPT: False,
        Attribute.DECRYPT: False,
        Attribute.SIGN: False,
        Attribute.VERIFY: False,
        Attribute.DERIVE: False,
        Attribute.TRUSTED: True,
        Attribute.UNWRAP_TEMPLATE: unwrap_template,
        Attribute.COPYABLE: False,
        Attribute.MODIFIABLE: False,  # last: SoftHSM2 applies templates in order
    }


def _create_kek_as_so(token: pkcs11.Token, so_pin: str, secret: bytes, label: str) -> None:
    """Create the KEK in an SO session (caller holds hsm.lock); closing it logs the SO out."""
    mapper = AttributeMapper()
    mapper.register_handler(Attribute.UNWRAP_TEMPLATE, bytes, bytes)
    try:
        session = token.open(rw=True, so_pin=so_pin, attribute_mapper=mapper)
    except (PinIncorrect, PinLenRange) as exc:
        raise WrongPinError(f"token {token.label!r} refused the SO PIN") from exc
    except PKCS11Error as exc:
        raise BackupError(
            f"cannot open an SO session on token {token.label!r}: {type(exc).__name__}"
        ) from exc
    try:
        existing = session.get_objects(
            {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label}
        )
        if list(existing):
            raise BackupError(f"token {token.label!r} already holds a KEK labelled {label!r}")
        keep_alive: list[Any] = []
        template = _kek_template(secret, label, _attribute_array(_UNWRAP_TEMPLATE, keep_alive))
        session.create_object(template)
    except PKCS11Error as exc:
        raise BackupError(
            f"token {token.label!r} refused the trusted KEK {label!r}: {type(exc).__name__}"
        ) from exc
    finally:
        session.close()


def _confirm_kek_as_user(hsm: Hsm, token: pkcs11.Token, user_pin: str, label: str) -> str:
    """Log in as the user, check the KEK is trusted and locked down, return its check value."""
    session = hsm.login(token, user_pin)
    try:
        with hsm.lock:
            kek = _find_kek(session, label, token.label)
            try:
                values = kek.get_attributes(
                    [
                        Attribute.TRUSTED,
                        Attribute.SENSITIVE,
                        Attribute.EXTRACTABLE,
                        Attribute.CHECK_VALUE,
                    ]
                )
            except PKCS11Error as exc:
                raise BackupError(
                    f"cannot read KEK {label!r} on token {token.label!r}: {type(exc).__name__}"
                ) from exc
    finally:
        hsm.logout(token)
    if not values[Attribute.TRUSTED] or not values[Attribute.SENSITIVE]:
        raise BackupError(f"KEK {label!r} on token {token.label!r} is not trusted and sensitive")
    if values[Attribute.EXTRACTABLE]:
        raise BackupError(f"KEK {label!r} on token {token.label!r} is extractable")
    return bytes(values[Attribute.CHECK_VALUE]).hex()


class _CkAttribute(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_ulong),
        ("value", ctypes.c_void_p),
        ("value_len", ctypes.c_ulong),
    ]


def _attribute_array(items: list[tuple[Attribute, bytes]], keep_alive: list[Any]) -> bytes:
    """A CK_ATTRIBUTE[] as bytes, for an array attribute such as CKA_UNWRAP_TEMPLATE.

    The structs point into ctypes buffers appended to ``keep_alive``; the caller keeps that
    list alive until the PKCS#11 call that uses the bytes has returned.
    """
    array = (_CkAttribute * len(items))()
    for slot, (attr, value) in zip(array, items, strict=True):
        buffer = ctypes.create_string_buffer(value, len(value))
        keep_alive.append(buffer)
        slot.type = int(attr)
        slot.value = ctypes.cast(buffer, ctypes.c_void_p)
        slot.value_len = len(value)
    keep_alive.append(array)
    return bytes(array)


class _Kek(pkcs11.SecretKey, WrapMixin, UnwrapMixin):
    """For the type checker only: a secret key the token lets wrap and unwrap. python-pkcs11
    builds each object's class from its attributes, so :func:`_find_kek` checks the two
    capabilities at run time and names the KEK when one is missing."""


def _find_kek(session: pkcs11.Session, label: str, token_label: str) -> _Kek:
    try:
        found = list(
            session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label})
        )
    except PKCS11Error as exc:
        raise BackupError(
            f"cannot search token {token_label!r} for KEK {label!r}: {type(exc).__name__}"
        ) from exc
    if not found:
        raise BackupError(f"token {token_label!r} has no KEK labelled {label!r}")
    if len(found) > 1:
        raise BackupError(f"token {token_label!r} has {len(found)} keys labelled {label!r}")
    kek = found[0]
    if not (isinstance(kek, WrapMixin) and isinstance(kek, UnwrapMixin)):
        raise BackupError(
            f"KEK {label!r} on token {token_label!r} cannot wrap and unwrap "
            "(CKA_WRAP or CKA_UNWRAP is false)"
        )
    return cast(_Kek, kek)


def _read(obj: pkcs11.Object, attr: Attribute, what: str, token_label: str) -> Any:
    try:
        return obj[attr]
    except PKCS11Error as exc:
        raise BackupError(
            f"cannot read {attr.name} of {what!r} on token {token_label!r}: {type(exc).__name__}"
        ) from exc


# --- export ------------------------------------------------------------------------------


def export_key(keystore: Keystore, label: str, kek_label: str = KEK_LABEL) -> bytes:
    """The private key wrapped under the token's trusted KEK (AES key wrap with padding).

    A non-extractable key is refused before the token is asked: its backup model says no
    copy may ever exist. The blob is useless without a token holding the same KEK.
    """
    info = keystore.info(label)
    if info.backup_model is BackupModel.NON_EXTRACTABLE:
        raise BackupError(
            f"key {label!r} on token {keystore.token_label!r}: backup model non-extractable: "
            "cannot be cloned"
        )
    with keystore.hsm.lock:
        kek = _find_kek(keystore.session(), kek_label, keystore.token_label)
        if not _read(kek, Attribute.TRUSTED, kek_label, keystore.token_label):
            raise BackupError(
                f"KEK {kek_label!r} on token {keystore.token_label!r} is not trusted "
                "(CKA_TRUSTED false): it cannot wrap wrap-with-trusted keys"
            )
        private = keystore.private_key_object(label)
        try:
            return kek.wrap_key(private, mechanism=WRAP_MECHANISM)
        except PKCS11Error as exc:
            raise BackupError(
                f"token {keystore.token_label!r} refused to wrap key {label!r} under "
                f"{kek_label!r}: {type(exc).__name__}"
            ) from exc


# --- restore -----------------------------------------------------------------------------


def restore_key(
    keystore: Keystore,
    blob: bytes,
    label: str,
    public_key: bytes | str,
    backup_model: BackupModel,
    kek_label: str = KEK_LABEL,
    key_id: bytes | None = None,
) -> KeyInfo:
    """Unwrap a cloned key into the keystore's token, prove it, and register it.

    The proof signs a random digest with the unwrapped key and verifies it under the
    *original* public key (which comes from the journal / wallet, not from the blob): a
    wrong KEK, a damaged blob or a substituted key never gets registered, and whatever was
    unwrapped is destroyed again.
    """
    model = BackupModel(backup_model)
    if model is not BackupModel.WRAP_WITH_TRUSTED:
        raise BackupError(
            f"key {label!r}: only wrap-with-trusted keys have backups; a backup model never "
            f"changes, so a clone cannot be {model}"
        )
    original = _compressed(public_key, label)
    with keystore.hsm.lock, _as_backup_error():
        keystore.refuse_label_taken(label)
        keystore.refuse_public_key_twice(original)
        session = keystore.session()
        kek = _find_kek(session, kek_label, keystore.token_label)
        key_id = os.urandom(KEY_ID_BYTES) if key_id is None else key_id
        private = _unwrap(kek, bytes(blob), label, key_id, model, keystore.token_label)
        _prove_or_destroy(private, original, label, keystore.token_label)
        _create_public(session, private, original, label, key_id, keystore.token_label)
        return keystore.restored_key(label, key_id, original, model)


TEST_RESTORE_LABEL = "coldstation-test-restore"


def prove_backup(
    keystore: Keystore, blob: bytes, public_key: bytes, kek_label: str = KEK_LABEL
) -> None:
    """A test restore (REQUIREMENTS 24): unwrap ``blob`` on the keystore's token (a spare
    one, never the signing token), prove the key signs for the original ``public_key``,
    and destroy it. Nothing is registered and no public object is made, so the key is never
    usable for signing; BackupError when it does not prove.

    The key lives under one fixed label only while it is proven; one a crash left behind
    is destroyed before the next test on that token, and the destruction is checked.
    """
    original = _compressed(public_key, TEST_RESTORE_LABEL)
    token = keystore.token_label
    with keystore.hsm.lock, _as_backup_error():
        session = keystore.session()
        _destroy_test_keys(session, token)
        kek = _find_kek(session, kek_label, token)
        private = _unwrap(
            kek,
            bytes(blob),
            TEST_RESTORE_LABEL,
            os.urandom(KEY_ID_BYTES),
            BackupModel.WRAP_WITH_TRUSTED,
            token,
        )
        _prove_or_destroy(private, original, TEST_RESTORE_LABEL, token)
        _destroy_test_keys(session, token)


def _destroy_test_keys(session: pkcs11.Session, token_label: str) -> None:
    try:
        for obj in list(session.get_objects({Attribute.LABEL: TEST_RESTORE_LABEL})):
            obj.destroy()
        left = list(session.get_objects({Attribute.LABEL: TEST_RESTORE_LABEL}))
    except PKCS11Error as exc:
        raise BackupError(f"cannot clear test-restore keys on {token_label!r}: {exc!r}") from exc
    if left:
        raise BackupError(f"a test-restore key on {token_label!r} could not be destroyed")


def finish_restore(
    keystore: Keystore, label: str, key_id: bytes, public_key: bytes, backup_model: BackupModel
) -> KeyInfo | None:
    """After a crash: the key a restore unwrapped under ``key_id``, proven against the
    original public key and completed with its public object; None (and nothing left in
    the token) when the unwrap never happened or its key does not prove."""
    public, private = keystore.key_objects(key_id)
    if private is None:
        if public is not None:
            _destroy_quietly(public)
        return None
    with keystore.hsm.lock:
        try:
            _prove_or_destroy(private, public_key, label, keystore.token_label)
        except BackupError:
            if public is not None:
                _destroy_quietly(public)
            return None
        if public is None:
            _create_public(
                keystore.session(), private, public_key, label, key_id, keystore.token_label
            )
    return keystore.restored_key(label, key_id, public_key, backup_model)


def kek_present(hsm: Hsm, token_label: str, label: str = KEK_LABEL) -> bool:
    """True when the token holds a KEK (a public object: no PIN needed to see it)."""
    with hsm.lock:
        token = hsm.token(label=token_label)
        with hsm.public_session(token) as session:
            try:
                return bool(
                    list(
                        session.get_objects(
                            {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label}
                        )
                    )
                )
            except PKCS11Error as exc:
                raise BackupError(f"cannot search token {token_label!r}: {exc!r}") from exc


def destroy_kek(hsm: Hsm, token_label: str, label: str = KEK_LABEL) -> int:
    """Destroy every KEK in the token; returns how many there were.

    The KEK is a public object (only the SO can mark a key trusted, and the SO can only
    create public objects), so it can be destroyed without a PIN: the station does so the
    moment it finds one outside a backup or restore ceremony, crash or not.
    """
    with hsm.lock:
        token = hsm.token(label=token_label)
        with hsm.public_session(token) as session:
            try:
                found = list(
                    session.get_objects(
                        {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label}
                    )
                )
                for kek in found:
                    kek.destroy()
            except PKCS11Error as exc:
                raise BackupError(
                    f"cannot destroy the KEK on token {token_label!r}: {exc!r}"
                ) from exc
    return len(found)


@contextmanager
def _as_backup_error() -> Iterator[None]:
    """Keystore refusals during a restore surface as BackupError, message unchanged."""
    try:
        yield
    except KeystoreError as exc:
        raise BackupError(str(exc)) from exc


def _compressed(public_key: bytes | str, label: str) -> bytes:
    data = bytes.fromhex(public_key) if isinstance(public_key, str) else bytes(public_key)
    try:
        return CurvePublicKey(data).format(compressed=True)
    except (ValueError, TypeError) as exc:
        raise BackupError(f"key {label!r}: original public key is not a secp256k1 key") from exc


def _unwrap(
    kek: _Kek,
    blob: bytes,
    label: str,
    key_id: bytes,
    model: BackupModel,
    token_label: str,
) -> pkcs11.Key:
    """Unwrap as a private, sensitive token key with the original backup model."""
    template: dict[Attribute, Any] = {
        # python-pkcs11 adds these for every key type; a private key has none of them
        Attribute.ENCRYPT: DEFAULT,
        Attribute.VERIFY: DEFAULT,
        Attribute.WRAP: DEFAULT,
        **private_key_template(model),
    }
    try:
        return kek.unwrap_key(
            ObjectClass.PRIVATE_KEY,
            KeyType.EC,
            blob,
            id=key_id,
            label=label,
            mechanism=WRAP_MECHANISM,
            store=True,
            capabilities=MechanismFlag(0),
            template=template,
        )
    except PKCS11Error as exc:
        raise BackupError(
            f"cannot unwrap key {label!r} on token {token_label!r}: wrong KEK or damaged "
            f"blob ({type(exc).__name__})"
        ) from exc


def _prove_or_destroy(
    private: pkcs11.Object, original: bytes, label: str, token_label: str
) -> None:
    """Sign a fresh random digest and verify it under the original public key."""
    digest = os.urandom(32)
    try:
        if isinstance(private, SignMixin):  # a restored key that cannot sign is no match
            der = der_from_raw(private.sign(digest, mechanism=Mechanism.ECDSA))
            matches = verify(original, der, digest)
        else:
            matches = False
    except (PKCS11Error, ValueError):
        matches = False
    if not matches:
        _destroy_quietly(private)
        raise BackupError(
            f"restored key {label!r} on token {token_label!r} does not match the original "
            "public key: destroyed, nothing registered"
        )


def _create_public(
    session: pkcs11.Session,
    private: pkcs11.Object,
    original: bytes,
    label: str,
    key_id: bytes,
    token_label: str,
) -> pkcs11.Object:
    """The matching public key object, so the target token holds the same pair as the source."""
    try:
        return session.create_object(
            {
                Attribute.CLASS: ObjectClass.PUBLIC_KEY,
                Attribute.KEY_TYPE: KeyType.EC,
                Attribute.TOKEN: True,
                Attribute.PRIVATE: False,
                Attribute.ID: key_id,
                Attribute.LABEL: label,
                Attribute.EC_PARAMS: secp256k1_params(),
                Attribute.EC_POINT: ec_point_der(original),
                Attribute.VERIFY: True,
                Attribute.MODIFIABLE: False,
            }
        )
    except PKCS11Error as exc:
        _destroy_quietly(private)
        raise BackupError(
            f"cannot store public key {label!r} on token {token_label!r}: {type(exc).__name__}"
        ) from exc


def _destroy_quietly(obj: pkcs11.Object) -> None:
    with suppress(PKCS11Error):
        obj.destroy()
