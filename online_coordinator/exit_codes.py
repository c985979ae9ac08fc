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
from enum import IntEnum

from online_coordinator.chain.identity import ChainMismatch
from online_coordinator.chain.rpc import ChainUnavailable, RpcError
from online_coordinator.store import StorageError, StoreError, storage_error


class ExitCode(IntEnum):
    OK = 0
    REFUSED = 1  # valid input, but not done: incomplete PSBT, reconcile discrepancies
    USAGE = 2  # bad usage or input, refused import, wrong chain, unusable file
    ALERT = 3  # an outflow without a signed request (sync, status)
    NODE_UNAVAILABLE = 4  # unreachable, timed out, shutting down, warming up, garbage reply
    STORAGE = 5  # the coordinator's own disk or database failed (full, I/O, locked)


class CommandError(Exception):
    """A one-line, user-facing error and the status to exit with (2 unless said)."""

    def __init__(self, message: str, code: ExitCode = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.code = code


def failure(exc: BaseException) -> tuple[ExitCode, str] | None:
    """(exit status, one-line message) for an expected failure; None for a bug."""
    if isinstance(exc, CommandError):
        return exc.code, str(exc)
    if isinstance(exc, ChainMismatch):
        return ExitCode.USAGE, str(exc)
    if isinstance(exc, ChainUnavailable):
        return ExitCode.NODE_UNAVAILABLE, f"node unavailable: {exc}"
    if isinstance(exc, RpcError):
        return ExitCode.USAGE, f"the node refused: {exc}"
    if isinstance(exc, StorageError):
        return ExitCode.STORAGE, str(exc)
    if isinstance(exc, StoreError):
        return ExitCode.USAGE, str(exc)
    if isinstance(exc, sqlite3.OperationalError):  # outside Store's own mapping
        return ExitCode.STORAGE, str(storage_error("the coordinator database", exc))
    if isinstance(exc, OSError):
        where = exc.filename or "a file"
        return ExitCode.STORAGE, str(storage_error(where, exc))
    return None
