"""What every Coldstation command line shares at its edge: ``--version``, shell completion,
a reader that goes away, and an operator who presses Ctrl-C.

``--print-completion SHELL`` (bash, zsh, fish, tcsh, powershell) prints the shell's
completion script, generated from the program's own argument parser by shtab (so it never
drifts from the options):
``eval "$(coldstation-coordinator --print-completion bash)"`` in ``~/.bashrc``.

``coldstation-coordinator status | head`` closes the pipe after ten lines; Python then
raises BrokenPipeError on the next write and, again, when it flushes stdout at exit. A
command line tool should stop quietly instead (as ``cat`` does): :func:`quiet_broken_pipe`
points stdout at /dev/null so the exit flush cannot fail, and exits with 141 (128 +
SIGPIPE), the status a shell reports for a process killed by SIGPIPE.

Ctrl-C at a PIN prompt or during a long sync is an operator's decision, not a crash: one
line on stderr and exit 130 (128 + SIGINT), no traceback. Stopping there is safe because
every effect is journaled or stored before it is taken (docs/design.md, "Record before you
act"), so a rerun completes what the interrupted command began.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from typing import Protocol

import shtab

BROKEN_PIPE_EXIT = 141
INTERRUPTED_EXIT = 130


class Main(Protocol):
    """A program's ``main(argv=None) -> exit status``."""

    def __call__(self, argv: Sequence[str] | None = None) -> int: ...


def version() -> str:
    """The installed Coldstation version (the package metadata's)."""
    try:
        return metadata.version("coldstation")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def add_version(parser: argparse.ArgumentParser) -> None:
    """``--version``: the program's name and Coldstation's version, then exit 0; and
    ``--print-completion SHELL``: the completion script for the shell named, then exit 0."""
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    shtab.add_argument_to(
        parser,
        ["--print-completion"],
        help="print the shell completion script (bash, zsh, fish, tcsh or powershell) and exit: "
        f'eval "$({parser.prog} --print-completion bash)"',
    )


def quiet_exits(main: Main) -> Main:
    """``main`` with a reader that closed its end (``| head``), or Ctrl-C, ending it
    quietly."""

    @functools.wraps(main)
    def wrapper(argv: Sequence[str] | None = None) -> int:
        try:
            code = main(argv)
            sys.stdout.flush()  # inside the try: a closed pipe surfaces here, not at exit
            return code
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            return BROKEN_PIPE_EXIT
        except KeyboardInterrupt:
            print("\ninterrupted: nothing more was done", file=sys.stderr)
            return INTERRUPTED_EXIT

    return wrapper


class ProgressLine:
    """Progress of a long step on stderr, ``sync: block 1,200 of 5,000 (24%)``: silent
    for the first ``after_s`` seconds (a short step says nothing), then at most once every
    ``every_s``; rewritten in place on a terminal, one line each when stderr is a file."""

    def __init__(self, what: str, unit: str, after_s: float = 1.0, every_s: float = 1.0) -> None:
        self.what, self.unit = what, unit
        self.after_s, self.every_s = after_s, every_s
        self.started = time.monotonic()
        self.last_s: float | None = None
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.started < self.after_s:
            return
        if self.last_s is not None and now - self.last_s < self.every_s and done < total:
            return
        self.last_s = now
        share = f" ({100 * done // total}%)" if total else ""
        line = f"{self.what}: {self.unit} {done:,} of {total:,}{share}"
        print(f"\r{line}" if self.tty else line, end="" if self.tty else "\n", file=sys.stderr)
        sys.stderr.flush()

    def finish(self) -> None:
        """End the line a terminal was rewriting (nothing when nothing was printed)."""
        if self.tty and self.last_s is not None:
            print(file=sys.stderr)


__all__ = [
    "BROKEN_PIPE_EXIT",
    "INTERRUPTED_EXIT",
    "ProgressLine",
    "add_version",
    "quiet_exits",
    "version",
]
