"""The appliance's exit statuses, and the one place its errors are mapped to them.

``docs/exit-codes.md``: 0 done, 1 refused (the reason follows; the journal says so where it
can), 2 bad usage or input. The ceremonies raise their own errors and never convert them;
``main`` asks :func:`failure` for the status and the line, and the TUI asks
:func:`is_expected` whether a failure speaks to officers or is a fault in the appliance.
"""

from __future__ import annotations

from enum import IntEnum

from appliance.activation import QuorumError
from appliance.backup import BackupError
from appliance.hsm import HsmError
from appliance.journal_store import JournalStoreError
from appliance.keystore import KeystoreError
from appliance.officers import OfficerError
from appliance.pins import PinSourceError
from appliance.profiles import ProfileError
from appliance.recorder import ClockError
from appliance.signing import SigningError
from appliance.state import StateError
from appliance.station import CeremonyError
from appliance.token_objects import AnchorError
from shared.bitcoin.descriptor import DescriptorError
from shared.journal import JournalError
from shared.policy import PolicyError
from shared.ur.payload import PayloadError


class ExitCode(IntEnum):
    OK = 0
    REFUSED = 1  # the ceremony said no: a rule, a quorum, a token, a journal that is wrong
    USAGE = 2  # bad usage or input: a file that cannot be read, a value that does not parse


#: What a ceremony refuses with. Checked before :data:`BAD_INPUT`: a policy, descriptor,
#: payload or journal error is a ValueError too, and still a refusal.
REFUSALS: tuple[type[Exception], ...] = (
    CeremonyError,
    QuorumError,
    OfficerError,
    KeystoreError,
    BackupError,
    PolicyError,
    JournalError,
    JournalStoreError,
    HsmError,
    StateError,
    PinSourceError,
    SigningError,
    DescriptorError,
    PayloadError,
    AnchorError,
    ClockError,
    ProfileError,
)
#: Input the command could not use (a missing file, a number that is not one).
BAD_INPUT: tuple[type[Exception], ...] = (OSError, ValueError)


def failure(exc: BaseException) -> tuple[ExitCode, str] | None:
    """(exit status, the line for stderr) for an expected failure; None for a bug, which
    keeps its traceback, and for a reader that went away (``| head``), which
    shared.adapters.console ends quietly."""
    if isinstance(exc, BrokenPipeError):
        return None
    if isinstance(exc, REFUSALS):
        return ExitCode.REFUSED, f"refused: {exc}"
    if isinstance(exc, BAD_INPUT):
        return ExitCode.USAGE, f"error: {exc}"
    return None


def is_expected(exc: BaseException) -> bool:
    """True for a failure that speaks to officers in its own words (not an internal fault)."""
    return failure(exc) is not None
