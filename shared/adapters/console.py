"""What every Coldstation command line shares at its edge: ``--version``, and a reader that
goes away.

``coldstation-coordinator status | head`` closes the pipe after ten lines; Python then
raises BrokenPipeError on the next write and, again, when it flushes stdout at exit. A
command line tool should stop quietly instead (as ``cat`` does): :func:`quiet_broken_pipe`
points stdout at /dev/null so the exit flush cannot fail, and exits with 141 (128 +
SIGPIPE), the status a shell reports for a process killed by SIGPIPE.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Protocol

BROKEN_PIPE_EXIT = 141


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
    """``--version``: the program's name and Coldstation's version, then exit 0."""
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")


def quiet_broken_pipe(main: Main) -> Main:
    """``main`` with a reader that closed its end (``| head``) ending it quietly."""

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

    return wrapper


__all__ = ["BROKEN_PIPE_EXIT", "add_version", "quiet_broken_pipe", "version"]
