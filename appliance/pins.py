"""Where PINs come from: a prompt, or a file descriptor for automation; never argv or env.

A PIN on the command line is visible in the process list and shell history, and one in the
environment leaks into child processes and crash reports, so neither is offered. For
scripted ceremonies the caller opens a pipe or file and passes its descriptor number
(``--pin-fd 3``); PINs are read from it one per line, in the order the ceremony asks.
"""

from __future__ import annotations

import getpass
import os
from typing import IO


class PinSourceError(RuntimeError):
    """The PIN source ran dry or could not be read."""


class PinSource:
    """Hands out PINs by purpose ("officer-1", "admin-2", ...), one per request."""

    def __init__(self, fd: int | None = None) -> None:
        self._stream: IO[str] | None = None
        if fd is not None:
            try:
                self._stream = os.fdopen(fd, "r", closefd=False)
            except OSError as exc:
                raise PinSourceError(f"cannot read PINs from descriptor {fd}: {exc}") from exc

    def pin(self, purpose: str) -> str:
        """The next PIN, for the prompt text ``purpose``; empty PINs are refused."""
        if self._stream is None:
            value = getpass.getpass(f"PIN for {purpose}: ")
        else:
            line = self._stream.readline()
            if not line:
                raise PinSourceError(f"PIN descriptor ran out before the PIN for {purpose}")
            value = line.rstrip("\r\n")
        if not value:
            raise PinSourceError(f"empty PIN for {purpose}")
        return value
