"""The coordinator's exit statuses, and the one place errors are mapped to them.

The three programs share one table (``docs/exit-codes.md``): 0 done, 1 refused (or audit
findings), 2 bad usage or input, or something unusable. The coordinator adds 3 for an
ALERT (an outflow without a request: page someone), 4 when the node is unavailable (retry
later; nothing that needed the node was done) and 5 when its own disk or database failed
(the message says what was and was not done). A scheduler can then page on 3 at once, on
2 and 5 at once, and on 4 only when it persists.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from enum import IntEnum

from online_coordinator.batch import BatchError
from online_coordinator.chain.identity import ChainMismatch
from online_coordinator.chain.rpc import ChainUnavailable, RpcError
from online_coordinator.config import ConfigError
from online_coordinator.fees import FeeError
from online_coordinator.finish import FinishError
from online_coordinator.key_states import KeyStateError
from online_coordinator.monitor import MonitorError
from online_coordinator.payouts import PayoutsError
from online_coordinator.status import AlertError
from online_coordinator.store import StorageError, StoreError, storage_error
from online_coordinator.users import UserError
from online_coordinator.wallet import WalletError
from shared.psbt import PsbtError
from shared.ur.payload import PayloadError
from shared.ur.ur import URError


class ExitCode(IntEnum):
    OK = 0
    REFUSED = 1  # valid input, but not done: incomplete PSBT, reconcile discrepancies
    USAGE = 2  # bad usage or input, refused import, wrong chain, unusable file
    ALERT = 3  # an outflow without a signed request (sync, status)
    NODE_UNAVAILABLE = 4  # unreachable, timed out, shutting down, warming up, garbage reply
    STORAGE = 5  # the coordinator's own disk or database failed (full, I/O, locked)


class CommandError(Exception):
    """A one-line, user-facing error and the status to exit with (2 unless said): for what
    a command's arguments get wrong. The domain's own refusals are in :data:`FAILURES`."""

    def __init__(self, message: str, code: ExitCode = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.code = code


def _os_failure(exc: BaseException) -> str:
    where = getattr(exc, "filename", None) or "a file"
    return str(storage_error(where, exc))


#: Every expected failure: its type, exit status and one-line message, the most specific
#: type first. The domain modules raise these and say what was and was not done; no command
#: converts them. Anything else is a bug, and keeps its traceback.
FAILURES: tuple[tuple[type[BaseException], ExitCode, Callable[[BaseException], str]], ...] = (
    (ChainMismatch, ExitCode.USAGE, str),
    (ChainUnavailable, ExitCode.NODE_UNAVAILABLE, lambda exc: f"node unavailable: {exc}"),
    (RpcError, ExitCode.USAGE, lambda exc: f"the node refused: {exc}"),
    (StorageError, ExitCode.STORAGE, str),
    (StoreError, ExitCode.USAGE, str),
    (ConfigError, ExitCode.USAGE, str),
    (WalletError, ExitCode.USAGE, str),
    (KeyStateError, ExitCode.USAGE, str),
    (PayoutsError, ExitCode.USAGE, str),
    (FeeError, ExitCode.USAGE, str),
    (BatchError, ExitCode.USAGE, str),
    (FinishError, ExitCode.USAGE, str),
    (AlertError, ExitCode.USAGE, str),
    (UserError, ExitCode.USAGE, str),
    (MonitorError, ExitCode.USAGE, str),
    (PsbtError, ExitCode.USAGE, str),
    (PayloadError, ExitCode.USAGE, str),
    (URError, ExitCode.USAGE, str),
    (  # outside Store's own mapping
        sqlite3.OperationalError,
        ExitCode.STORAGE,
        lambda exc: str(storage_error("the coordinator database", exc)),
    ),
    (OSError, ExitCode.STORAGE, _os_failure),
)


def failure(exc: BaseException) -> tuple[ExitCode, str] | None:
    """(exit status, one-line message) for an expected failure; None for a bug, and for a
    reader that went away (``| head``), which shared.adapters.console ends quietly."""
    if isinstance(exc, BrokenPipeError):
        return None
    if isinstance(exc, CommandError):
        return exc.code, str(exc)
    for kind, code, message in FAILURES:
        if isinstance(exc, kind):
            return code, message(exc)
    return None
