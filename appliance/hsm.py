"""One PKCS#11 module, loaded once, every call serialised behind one lock.

python-pkcs11 disables SoftHSM2's own locking, so two threads in the module at once can
corrupt it: every call into the module goes through :meth:`Hsm.call` (or runs while holding
:attr:`Hsm.lock`). Tokens are found by label or serial, never by slot index, because slot
numbers change when tokens are created. Closing the session that logged in logs out every
session of that token, so the appliance keeps exactly one login session per token
(:meth:`Hsm.login`) and closes it only through :meth:`Hsm.logout`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pkcs11
from pkcs11.exceptions import PinIncorrect, PinLenRange, PinLocked, PKCS11Error

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
MODULE_ENV = "COLDSTATION_PKCS11_MODULE"

T = TypeVar("T")


class HsmError(RuntimeError):
    """A token that cannot be found or used; the message names it."""


class WrongPinError(HsmError):
    """The token refused the PIN (the appliance counts these; SoftHSM2 does not)."""


class PinLockedError(HsmError):
    """The token itself locked the PIN (CKR_PIN_LOCKED): only its SO can unblock it."""


def module_path() -> str:
    """The PKCS#11 module: ``$COLDSTATION_PKCS11_MODULE`` or SoftHSM2."""
    return os.environ.get(MODULE_ENV, DEFAULT_MODULE)


class Hsm:
    """A loaded PKCS#11 module and the sessions the appliance holds on its tokens."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or module_path()
        self.lock = threading.RLock()
        try:
            self._lib = pkcs11.lib(self.path)
        except (RuntimeError, OSError) as exc:
            raise HsmError(f"cannot load PKCS#11 module {self.path}: {exc}") from exc
        self._sessions: dict[str, pkcs11.Session] = {}

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` holding the module lock; PKCS#11 failures become HsmError."""
        with self.lock:
            try:
                return fn(*args, **kwargs)
            except PKCS11Error as exc:
                raise HsmError(f"PKCS#11 error: {type(exc).__name__} {exc}".strip()) from exc

    def rescan(self) -> None:
        """Re-read slots after tokens were created outside this process."""
        with self.lock:
            self.logout_all()
            self._lib.reinitialize()

    def token(self, label: str | None = None, serial: str | None = None) -> pkcs11.Token:
        """The token with this label or serial; HsmError if there is none or several."""
        if (label is None) == (serial is None):
            raise ValueError("give exactly one of label or serial")
        with self.lock:
            tokens = [
                t
                for t in self._lib.get_tokens()
                if (label is not None and t.label == label)
                or (serial is not None and token_serial(t) == serial)
            ]
        what = f"label {label!r}" if label is not None else f"serial {serial!r}"
        if not tokens:
            raise HsmError(f"no token with {what} in {self.path}")
        if len(tokens) > 1:
            raise HsmError(f"{len(tokens)} tokens with {what}: refusing to guess")
        return tokens[0]

    def login(self, token: pkcs11.Token, pin: str) -> pkcs11.Session:
        """The token's one read-write user session, logging in if needed."""
        key = token_serial(token)
        with self.lock:
            session = self._sessions.get(key)
            if session is not None:
                return session
            try:
                session = token.open(user_pin=pin, rw=True)
            except (PinIncorrect, PinLenRange) as exc:
                raise WrongPinError(f"token {token.label!r} refused the PIN") from exc
            except PinLocked as exc:
                raise PinLockedError(f"token {token.label!r} has locked its user PIN") from exc
            except PKCS11Error as exc:
                raise HsmError(f"cannot log in to token {token.label!r}: {exc!r}") from exc
            self._sessions[key] = session
            return session

    def session_for(self, token: pkcs11.Token) -> pkcs11.Session:
        """The existing login session; HsmError when the token is not unlocked."""
        with self.lock:
            session = self._sessions.get(token_serial(token))
        if session is None:
            raise HsmError(f"token {token.label!r} is locked: log in first")
        return session

    def is_logged_in(self, token: pkcs11.Token) -> bool:
        with self.lock:
            return token_serial(token) in self._sessions

    def logout(self, token: pkcs11.Token) -> None:
        with self.lock:
            session = self._sessions.pop(token_serial(token), None)
            if session is not None:
                session.close()

    @contextlib.contextmanager
    def public_session(self, token: pkcs11.Token) -> Iterator[pkcs11.Session]:
        """A read-write session on ``token`` without a PIN, for its public objects (the PIN
        counters, the audit key's public half). Reuses the login session when there is one
        (closing that would log the token out); the caller holds :attr:`lock`."""
        existing = self._sessions.get(token_serial(token))
        if existing is not None:
            yield existing
            return
        session = token.open(rw=True)
        try:
            yield session
        finally:
            session.close()

    def generate_random(self, token: pkcs11.Token, size: int) -> bytes:
        """``size`` bytes from the token's RNG (C_GenerateRandom; no login needed)."""
        with self.lock, self.public_session(token) as session:
            try:
                data = bytes(session.generate_random(size * 8))
            except PKCS11Error as exc:
                raise HsmError(f"token {token.label!r} gave no random bytes: {exc!r}") from exc
        if len(data) != size:
            raise HsmError(f"token {token.label!r} gave {len(data)} random bytes, not {size}")
        return data

    def init_token(self, label: str, so_pin: str, user_pin: str | None) -> pkcs11.Token:
        """Initialise a token in the first free slot through the PKCS#11 API (C_InitToken,
        then C_InitPIN as the SO): no PIN on any command line, unlike ``softhsm2-util``.

        python-pkcs11 has no C_InitToken, so that one call goes through ctypes on the same
        loaded module (dlopen returns the library python-pkcs11 initialised). Returns the
        new token, found by label after the slot list is re-read. With ``user_pin`` None the
        user PIN is left unset (the caller sets it with :meth:`so_set_pins`).
        """
        with self.lock:
            self.logout_all()
            slot = self._free_slot()
            _c_init_token(self.path, slot, so_pin, label)
            self._lib.reinitialize()
            token = self.token(label=label)
            if user_pin is not None:
                self.so_set_pins(token, so_pin, so_pin, user_pin)
            return token

    def so_set_pins(
        self, token: pkcs11.Token, so_pin: str, new_so_pin: str, user_pin: str | None
    ) -> None:
        """As the SO: set the user PIN (C_InitPIN, when given), then change the SO PIN.

        The token must not be logged in as the user in this process (PKCS#11 allows one
        login type per token at a time).
        """
        with self.lock:
            if token_serial(token) in self._sessions:
                raise HsmError(f"token {token.label!r} is logged in: lock it first")
            try:
                with token.open(rw=True, so_pin=so_pin) as session:
                    if user_pin is not None:
                        session.init_pin(user_pin)
                    if new_so_pin != so_pin:
                        session.set_pin(so_pin, new_so_pin)
            except (PinIncorrect, PinLenRange) as exc:
                raise WrongPinError(f"token {token.label!r} refused the SO PIN") from exc
            except PKCS11Error as exc:
                raise HsmError(f"cannot change the PINs of token {token.label!r}: {exc!r}") from exc

    def set_user_pin(self, token: pkcs11.Token, old_pin: str, new_pin: str) -> None:
        """C_SetPIN on the token's login session: the user PIN becomes ``new_pin``."""
        with self.lock:
            session = self._sessions.get(token_serial(token))
            if session is None:
                raise HsmError(f"token {token.label!r} is locked: log in first")
            try:
                session.set_pin(old_pin, new_pin)
            except PKCS11Error as exc:
                raise HsmError(f"cannot change the PIN of token {token.label!r}: {exc!r}") from exc

    def _free_slot(self) -> int:
        for slot in self._lib.get_slots(token_present=True):
            flags = slot.get_token().flags
            if not flags & pkcs11.TokenFlag.TOKEN_INITIALIZED:
                return int(slot.slot_id)
        raise HsmError(f"no free slot for a new token in {self.path}")

    def logout_all(self) -> None:
        with self.lock:
            for session in self._sessions.values():
                session.close()
            self._sessions.clear()


def token_serial(token: pkcs11.Token) -> str:
    """The token's serial as text (python-pkcs11 returns padded bytes)."""
    return token_text(token.serial)


def token_text(value: object, max_len: int = 64) -> str:
    """A C_GetTokenInfo field as printable text: undecodable bytes and control characters
    (a NUL among them) become "?", padding is stripped, and an empty field reads "-". A
    token chooses these bytes, so nothing it says can break a message, a journal record or
    the PIN counters' keys."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    text = "".join(c if c.isprintable() else "?" for c in text.strip(" \0"))
    return text[:max_len] or "-"


_CKR_OK = 0
_CKR_CRYPTOKI_ALREADY_INITIALIZED = 0x191


def _c_init_token(module: str, slot: int, so_pin: str, label: str) -> None:
    """C_InitToken(slot, SO PIN, label padded to 32 bytes) on the loaded module."""
    lib = ctypes.CDLL(module)
    init = lib.C_Initialize
    init.argtypes = [ctypes.c_void_p]
    rv = init(None)
    if rv not in (_CKR_OK, _CKR_CRYPTOKI_ALREADY_INITIALIZED):
        raise HsmError(f"C_Initialize failed on {module}: 0x{rv:x}")
    encoded = label.encode("utf-8")
    if len(encoded) > 32:
        raise HsmError(f"token label {label!r} is longer than 32 bytes")
    pin = so_pin.encode("utf-8")
    call = lib.C_InitToken
    call.argtypes = [ctypes.c_ulong, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    rv = call(slot, pin, len(pin), encoded.ljust(32, b" "))
    if rv != _CKR_OK:
        raise HsmError(f"C_InitToken of {label!r} in slot {slot} failed: 0x{rv:x}")
