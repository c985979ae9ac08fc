"""Where PINs come from: a prompt, or a file descriptor for automation; never argv or env.

A PIN on the command line is visible in the process list and shell history, and one in the
environment leaks into child processes and crash reports, so neither is offered. For
scripted ceremonies the caller opens a pipe or file and passes its descriptor number
(``--pin-fd 3``); PINs are read from it one per line, in the order the ceremony asks.
"""

from __future__ import annotations

import getpass
import os


class PinSourceError(RuntimeError):
    """The PIN source ran dry or could not be read."""


class PinSource:
    """Hands out PINs by purpose ("officer-1", "admin-2", ...), one per request."""

    def __init__(self, fd: int | None = None) -> None:
        self._fd = fd

    def pin(self, purpose: str) -> str:
        """The next PIN, for the prompt text ``purpose``; empty PINs are refused."""
        if self._fd is None:
            value = getpass.getpass(f"PIN for {purpose}: ")
        else:
            line = _read_line(self._fd)
            if line is None:
                raise PinSourceError(f"PIN descriptor ran out before the PIN for {purpose}")
            value = line.rstrip("\r")
        if not value:
            raise PinSourceError(f"empty PIN for {purpose}")
        return value


def _read_line(fd: int) -> str | None:
    """One line from ``fd``, read a byte at a time: no buffer swallows the next PIN, so
    several readers (one per ceremony step) can share the descriptor."""
    data = bytearray()
    try:
        while (byte := os.read(fd, 1)) and byte != b"\n":
            data += byte
    except OSError as exc:
        raise PinSourceError(f"cannot read PINs from descriptor {fd}: {exc}") from exc
    if not data and not byte:
        return None
    return data.decode("utf-8", "replace")
