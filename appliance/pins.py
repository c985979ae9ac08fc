"""Where PINs come from: a prompt, or a file descriptor for automation; never argv or env.

A PIN on the command line is visible in the process list and shell history, and one in the
environment leaks into child processes and crash reports, so neither is offered. For
scripted ceremonies the caller opens a pipe or file and passes its descriptor number
(``--pin-fd 3``); PINs are read from it one per line, in the order the ceremony asks.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable

#: How often a person may mistype a new PIN and its confirmation before the ceremony stops.
NEW_PIN_TRIES = 3


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

    def new_pin(self, purpose: str, min_chars: int, max_chars: int) -> str:
        """A PIN being set. At a prompt the rule is said before asking, and the PIN is
        asked twice (a typo must not lock a token for good), up to NEW_PIN_TRIES times; from
        a descriptor it is one line, held to the same rule."""
        rule = f"{min_chars} to {max_chars} characters"
        if self._fd is not None:
            value = self.pin(purpose)
            if not min_chars <= len(value) <= max_chars:
                raise PinSourceError(f"the new PIN for {purpose} must be {rule}")
            return value
        print(f"Choose the PIN for {purpose}: {rule}, asked twice.", file=sys.stderr)
        for _ in range(NEW_PIN_TRIES):
            value = getpass.getpass(f"new PIN for {purpose}: ")
            if not min_chars <= len(value) <= max_chars:
                print(f"  refused: the PIN must be {rule}", file=sys.stderr)
                continue
            if getpass.getpass(f"the same PIN again for {purpose}: ") != value:
                print("  the two PINs differ: choose it again", file=sys.stderr)
                continue
            return value
        raise PinSourceError(f"no PIN chosen for {purpose} after {NEW_PIN_TRIES} tries")

    def checked(self, purpose: str, problem_of: Callable[[str], str | None]) -> str:
        """A secret checked as soon as it is typed (a KEK share): at a prompt a bad one is
        asked again, saying what is wrong (never its content), up to NEW_PIN_TRIES times;
        from a descriptor it fails at once, naming ``purpose`` and the problem."""
        for _ in range(NEW_PIN_TRIES if self._fd is None else 1):
            value = self.pin(purpose)
            problem = problem_of(value)
            if problem is None:
                return value
            if self._fd is not None:
                break
            print(f"  {purpose}: {problem}; type it again", file=sys.stderr)
        raise PinSourceError(f"{purpose}: {problem}")


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
