"""One PKCS#11 module, loaded once, every call serialised behind one lock.

python-pkcs11 disables SoftHSM2's own locking, so two threads in the module at once can
corrupt it: every call into the module goes through :meth:`Hsm.call` (or runs while holding
:attr:`Hsm.lock`). Tokens are found by label or serial, never by slot index, because slot
numbers change when tokens are created. Closing the session that logged in logs out every
session of that token, so the appliance keeps exactly one login session per token
(:meth:`Hsm.login`) and closes it only through :meth:`Hsm.logout`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pkcs11
from pkcs11.exceptions import PinIncorrect, PinLenRange, PKCS11Error

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
MODULE_ENV = "COLDSTATION_PKCS11_MODULE"

T = TypeVar("T")


class HsmError(RuntimeError):
    """A token that cannot be found or used; the message names it."""


class WrongPinError(HsmError):
    """The token refused the PIN (the appliance counts these; SoftHSM2 does not)."""


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
                t for t in self._lib.get_tokens()
                if (label is not None and t.label == label)
                or (serial is not None and token_serial(t) == serial)
            ]  # fmt: skip
        what = f"label {label!r}" if label is not None else f"serial {serial!r}"
        if not tokens:
            raise HsmError(f"no token with {what} in {self.path}")
        if len(tokens) > 1:
            raise HsmError(f"{len(tokens)} tokens with {what}: refusing to guess")
        return tokens[0]

    def token_labels(self) -> list[str]:
        with self.lock:
            return sorted(t.label for t in self._lib.get_tokens())

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

    def logout_all(self) -> None:
        with self.lock:
            for session in self._sessions.values():
                session.close()
            self._sessions.clear()


def token_serial(token: pkcs11.Token) -> str:
    """The token's serial as text (python-pkcs11 returns padded bytes)."""
    serial = token.serial
    return serial.decode().strip() if isinstance(serial, bytes) else str(serial).strip()
