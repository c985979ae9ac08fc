"""Which token is which: module, label and pinned identity of every token the station uses.

A ceremony can mix modules: the signing HSM through its vendor's module, each officer's
token through its own (a YubiKey through ykcs11, a TPM through tpm2-pkcs11, a SoftHSM2
token in demo). :class:`Modules` loads each module once (every call into it serialised by
its :class:`~appliance.hsm.Hsm`), and :class:`TokenDirectory` answers "the token labelled
L": the module it was enrolled from, the token itself, the module's profile, and the
identity journaled when it was enrolled.

Identity (REQUIREMENTS 30): manufacturer, model, serial, firmware and hardware version,
read from C_GetTokenInfo at enrolment and journaled in the ``officer_enrolled`` record.
A token that presents anything else later is refused before its PIN is tried
(:meth:`TokenIdentity.mismatch`): a look-alike token with the same label, or the same
token after a firmware change, must be enrolled again by the administrators. The label
is how officers name their token; it is not part of the identity (the serial is).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pkcs11

from appliance.hsm import Hsm, HsmError, token_serial, token_text
from appliance.profiles import ModuleProfile, profile_for
from shared.checks import FieldChecks

MAX_IDENTITY_TEXT = 64
_IDENTITY_FIELDS = ("manufacturer", "model", "serial", "firmware", "hardware")


class TokenIdentityError(HsmError):
    """A token that is not the one enrolled, or an identity record that is malformed."""


_check = FieldChecks(TokenIdentityError)


@dataclass(frozen=True)
class TokenIdentity:
    """What a token says it is (C_GetTokenInfo), as journaled at enrolment."""

    module: str
    label: str
    serial: str
    manufacturer: str
    model: str
    firmware: str
    hardware: str

    @classmethod
    def read(cls, token: pkcs11.Token, module: str) -> TokenIdentity:
        """The identity ``token`` presents now (python-pkcs11 reads it from the slot list)."""
        return cls(
            module=module,
            label=_text(token.label),
            serial=token_serial(token),
            manufacturer=_text(token.manufacturer_id),
            model=_text(token.model),
            firmware=_version(token.firmware_version),
            hardware=_version(token.hardware_version),
        )

    def mismatch(self, presented: TokenIdentity) -> str | None:
        """What differs between this (enrolled) identity and ``presented``; None if nothing."""
        changed = [
            f"{name} {getattr(presented, name)!r} (enrolled {getattr(self, name)!r})"
            for name in _IDENTITY_FIELDS
            if getattr(presented, name) != getattr(self, name)
        ]
        return "; ".join(changed) or None

    def to_plain(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "label": self.label,
            "serial": self.serial,
            "manufacturer": self.manufacturer,
            "model": self.model,
            "firmware": self.firmware,
            "hardware": self.hardware,
        }

    @classmethod
    def from_plain(cls, plain: object) -> TokenIdentity:
        keys = {"module", "label", *_IDENTITY_FIELDS}
        data = _check.exact_keys(plain, "token identity", keys)
        return cls(**{k: _check.text(data[k], f"identity {k}", 4096) for k in keys})

    def describe(self) -> str:
        """One line for screens and messages."""
        return f"{self.manufacturer} {self.model}, serial {self.serial}, firmware {self.firmware}"


def _text(value: object) -> str:
    return token_text(value, MAX_IDENTITY_TEXT)


def _version(value: object) -> str:
    if isinstance(value, tuple) and len(value) == 2:
        return f"{value[0]}.{value[1]}"
    return _text(value)


class Modules:
    """Every PKCS#11 module this process uses, each loaded once (with its own lock)."""

    def __init__(self, *loaded: Hsm) -> None:
        self._lock = threading.Lock()
        self._by_path: dict[str, Hsm] = {hsm.path: hsm for hsm in loaded}

    def hsm(self, path: str) -> Hsm:
        """The module at ``path``, loaded on first use."""
        with self._lock:
            found = self._by_path.get(path)
            if found is None:
                found = self._by_path[path] = Hsm(path)
            return found

    def loaded(self) -> list[Hsm]:
        with self._lock:
            return list(self._by_path.values())

    def logout_all(self) -> None:
        for hsm in self.loaded():
            hsm.logout_all()


@dataclass(frozen=True)
class FoundToken:
    """A token located for a ceremony, with what the station knows of it."""

    hsm: Hsm
    token: pkcs11.Token
    profile: ModuleProfile
    #: the identity journaled at enrolment; None while the token is being enrolled
    enrolled: TokenIdentity | None

    @property
    def label(self) -> str:
        return _text(self.token.label)

    def check_identity(self) -> TokenIdentity:
        """The identity the token presents, refused when it is not the one enrolled."""
        presented = TokenIdentity.read(self.token, self.hsm.path)
        if self.enrolled is not None:
            differs = self.enrolled.mismatch(presented)
            if differs is not None:
                raise TokenIdentityError(
                    f"token {self.label!r} in {self.hsm.path} is not the token enrolled "
                    f"under that label: {differs}. No PIN was tried; it stays refused "
                    "(officers are enrolled only at init): call the auditors"
                )
        return presented

    @property
    def counter_key(self) -> str:
        """The token's key for the station's PIN counters: its serial, or serial and label
        where the module gives several tokens one serial (a TPM's tokens)."""
        serial = token_serial(self.token)
        return serial if self.profile.unique_serials else f"{serial}/{self.label}"

    def fresh_flags(self) -> pkcs11.TokenFlag:
        """The token's flags now (python-pkcs11's Token.flags is a snapshot of the slot
        list, so the token is looked up again, by label: some modules share serials)."""
        token = self.hsm.token(label=self.label)
        return pkcs11.TokenFlag(token.flags)


class TokenDirectory:
    """Finds officer and administrator tokens by label, in the module each was enrolled
    from; a label enrolled nowhere is looked up in ``default_module`` (enrolment, demo)."""

    def __init__(
        self,
        modules: Modules,
        enrolled: dict[str, TokenIdentity],
        default_module: str,
        known_labels: frozenset[str] | None = None,
    ) -> None:
        self.modules = modules
        self.enrolled = enrolled  # token label -> identity journaled at enrolment
        self.default_module = default_module
        #: every label the journal enrolled (with or without an identity); None while a
        #: station is being made, when no label is known yet
        self.known_labels = known_labels

    def find(self, label: str) -> FoundToken:
        """The token labelled ``label``, in its enrolled module; HsmError if absent, and
        TokenIdentityError for a label this station never enrolled (no PIN goes to it)."""
        identity = self.enrolled.get(label)
        if identity is None:
            if self.known_labels is not None and label not in self.known_labels:
                raise TokenIdentityError(f"token {label!r} is not enrolled at this station")
            # enrolled before identities were journaled: its label in the signing module
            return locate(self.modules, self.default_module, label=label)
        # by label, in the enrolled module; the serial is checked with the rest of the
        # identity (some modules give every token of a device the same serial)
        found = locate(self.modules, identity.module, label=label, missing=label)
        return FoundToken(found.hsm, found.token, found.profile, identity)


def locate(
    modules: Modules,
    module: str,
    *,
    label: str | None = None,
    serial: str | None = None,
    missing: str | None = None,
) -> FoundToken:
    """The token with this label or serial in ``module`` (loaded once through ``modules``),
    not yet checked against any enrolment. ``missing`` names the token in the message when
    it is not there."""
    hsm = modules.hsm(module)
    try:
        token = hsm.token(label=label, serial=serial)
    except HsmError as exc:
        if missing is None:
            raise
        raise HsmError(f"token {missing!r} is not present ({exc})") from exc
    return FoundToken(hsm, token, profile_for(module), None)


def single_module(hsm: Hsm) -> TokenDirectory:
    """Every token of one loaded module, none enrolled yet (the demo's enrolment, tests)."""
    return TokenDirectory(Modules(hsm), {}, hsm.path)
