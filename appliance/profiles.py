"""What each PKCS#11 module can do, and its quirks, in one place (HWI's pattern).

The station speaks one interface (:mod:`appliance.hsm`) to every module; where modules
differ, the difference is a field of a :class:`ModuleProfile` here, never an ``if`` on a
vendor name elsewhere. A profile is chosen by the module's file name (:func:`profile_for`);
a module we do not know gets :data:`UNKNOWN`, which assumes the least, and a ceremony that
needs a capability the profile lacks stops with a message naming the module and the
capability (:meth:`ModuleProfile.require`).

Tested on this project's CI: SoftHSM2 (signing token, officers, administrators, backups)
and tpm2-pkcs11 over the swtpm emulator (officer and administrator tokens). The others are
written from their vendors' documentation; docs/hardware.md says how to enrol each, and
what to check before trusting a profile that was not tested here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pkcs11 import Attribute

from shared.approval_keys import P256, SECP256K1

#: how a module reports PIN lockout: by the token's flags (COUNT_LOW, FINAL_TRY, LOCKED),
#: only by refusing a login with CKR_PIN_LOCKED, or not at all (the station's own counter
#: is then the only bound). The station's counter always runs as well.
TOKEN_FLAGS = "token-flags"
LOGIN_ERROR = "login-error"
STATION_COUNTER = "station-counter"


class ProfileError(RuntimeError):
    """A ceremony needs a capability the module's profile does not have."""


@dataclass(frozen=True)
class ModuleProfile:
    """Capabilities and quirks of one PKCS#11 module (see the module docstring)."""

    name: str
    #: file names of the module this profile is for (``os.path.basename`` of its path)
    files: tuple[str, ...]
    #: curves it can generate officer and administrator approval keys on, preferred first
    approval_curves: tuple[str, ...]
    #: True when it can hold the station's secp256k1 signing keys
    signing_keys: bool
    #: key-template attributes the module refuses (CKR_ATTRIBUTE_TYPE_INVALID or _VALUE_
    #: INVALID); left out of the templates, the module's defaults then apply to them
    refused_attributes: frozenset[Attribute]
    #: CKM_ECDSA returns the raw ``r||s`` PKCS#11 specifies (every module known here does)
    raw_signatures: bool
    #: session (non-token) objects work: the signer can unwrap keys for one ceremony
    session_objects: bool
    #: C_WrapKey/C_UnwrapKey under a trusted KEK: HSM-to-HSM backup and restore
    wrap_unwrap: bool
    #: C_InitToken works through the API (so ``init --demo`` can provision the token)
    init_token: bool
    #: how the token reports PIN lockout (:data:`TOKEN_FLAGS` or :data:`STATION_COUNTER`)
    lockout: str
    #: True when this project's CI runs the module; False: written from vendor documents
    tested_here: bool
    #: each token reports a serial of its own; False: tokens of one device share it, and
    #: the station tells them apart by serial and label together (:func:`counter_key`)
    unique_serials: bool = True

    def require(self, capability: str, module: str, needed_for: str) -> None:
        """ProfileError unless the profile has ``capability`` (a field name of this class)."""
        if not getattr(self, capability):
            raise ProfileError(
                f"PKCS#11 module {module} ({self.name} profile) does not offer "
                f"{capability.replace('_', ' ')}, which {needed_for} needs"
            )

    def approval_curve(self, module: str, wanted: str | None = None) -> str:
        """The curve for a new approval key: ``wanted`` when the module offers it, else the
        module's preferred one; ProfileError when it offers none or not the one wanted."""
        if not self.approval_curves:
            raise ProfileError(
                f"PKCS#11 module {module} ({self.name} profile) generates no approval keys"
            )
        if wanted is None:
            return self.approval_curves[0]
        if wanted not in self.approval_curves:
            raise ProfileError(
                f"PKCS#11 module {module} ({self.name} profile) cannot generate {wanted} "
                f"keys (it offers {', '.join(self.approval_curves)})"
            )
        return wanted


SOFTHSM2 = ModuleProfile(
    name="SoftHSM2",
    files=("libsofthsm2.so",),
    approval_curves=(SECP256K1, P256),
    signing_keys=True,
    refused_attributes=frozenset(),
    raw_signatures=True,
    session_objects=True,
    wrap_unwrap=True,
    init_token=True,
    lockout=STATION_COUNTER,  # SoftHSM2 counts no failures at all
    tested_here=True,
)

#: tpm2-pkcs11 (tpm2-software): a TPM 2.0 as an officer token. No secp256k1 (TPMs do NIST
#: curves only), no wrap/unwrap. Its dictionary-attack lockout is TPM-wide (every token of
#: the TPM, after TPM2_PT_MAX_AUTH_FAIL failures on any) and shows only as CKR_PIN_LOCKED
#: at login, never in the token flags. Its EC
#: keys always carry the usages the TPM gives them: a template that sets ENCRYPT, DECRYPT,
#: WRAP, UNWRAP or DERIVE (even to false) fails with CKR_GENERAL_ERROR ("attr mismatch"),
#: so those are left out, and the key's CKA_DECRYPT reads true (unused by approvals). Every
#: token of one TPM reports the TPM's serial (all zeros under swtpm).
TPM2 = ModuleProfile(
    name="tpm2-pkcs11",
    files=("libtpm2_pkcs11.so", "libtpm2_pkcs11.so.1", "libtpm2_pkcs11.so.0"),
    approval_curves=(P256,),
    signing_keys=False,
    refused_attributes=frozenset(
        {Attribute.ENCRYPT, Attribute.DECRYPT, Attribute.WRAP, Attribute.UNWRAP, Attribute.DERIVE}
    ),
    unique_serials=False,
    raw_signatures=True,
    session_objects=False,
    wrap_unwrap=False,
    init_token=True,
    lockout=LOGIN_ERROR,
    tested_here=True,
)

#: Yubico's YubiHSM 2 module (yubihsm_pkcs11.so): secp256k1 signing keys, wrap keys of its
#: own (not CKA_TRUSTED KEKs), so backups use the vendor's wrap ceremony.
YUBIHSM2 = ModuleProfile(
    name="YubiHSM 2",
    files=("yubihsm_pkcs11.so",),
    approval_curves=(P256, SECP256K1),
    signing_keys=True,
    refused_attributes=frozenset(),
    raw_signatures=True,
    session_objects=True,
    wrap_unwrap=False,
    init_token=False,
    lockout=STATION_COUNTER,
    tested_here=False,
)

#: OpenSC's module: SmartCard-HSM / Nitrokey HSM 2 (secp256k1 in the card), PIV cards, and
#: many others. Cards report PIN retries through the token flags.
OPENSC = ModuleProfile(
    name="OpenSC",
    files=("opensc-pkcs11.so", "onepin-opensc-pkcs11.so"),
    approval_curves=(P256, SECP256K1),
    signing_keys=True,
    refused_attributes=frozenset({Attribute.DERIVE, Attribute.DECRYPT, Attribute.UNWRAP}),
    raw_signatures=True,
    session_objects=False,
    wrap_unwrap=False,
    init_token=False,
    lockout=TOKEN_FLAGS,
    tested_here=False,
)

#: Yubico's ykcs11 (YubiKey PIV) for officers: P-256 keys in PIV slots, PIN retries counted
#: by the key (three by default) and reported in the token flags.
YKCS11 = ModuleProfile(
    name="YubiKey PIV (ykcs11)",
    files=("libykcs11.so", "libykcs11.so.2"),
    approval_curves=(P256,),
    signing_keys=False,
    refused_attributes=frozenset(
        {Attribute.DERIVE, Attribute.DECRYPT, Attribute.UNWRAP, Attribute.COPYABLE}
    ),
    raw_signatures=True,
    session_objects=False,
    wrap_unwrap=False,
    init_token=False,
    lockout=TOKEN_FLAGS,
    tested_here=False,
)

#: Any module not listed: assume the least that cannot be checked. Key generation is
#: checked anyway (every new key must sign a challenge that verifies before it is kept), so
#: both curves are tried; backups, session objects and token initialisation are refused,
#: and PIN failures are bounded by the station's own counter.
UNKNOWN = ModuleProfile(
    name="unknown module",
    files=(),
    approval_curves=(P256, SECP256K1),
    signing_keys=True,
    refused_attributes=frozenset(),
    raw_signatures=True,
    session_objects=False,
    wrap_unwrap=False,
    init_token=False,
    lockout=STATION_COUNTER,
    tested_here=False,
)

PROFILES = (SOFTHSM2, TPM2, YUBIHSM2, OPENSC, YKCS11)


def profile_for(module_path: str) -> ModuleProfile:
    """The profile of the module at ``module_path`` (by file name; symlinks resolved)."""
    names = {os.path.basename(module_path), os.path.basename(os.path.realpath(module_path))}
    for profile in PROFILES:
        if names & set(profile.files):
            return profile
    return UNKNOWN
