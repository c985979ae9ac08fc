"""What every command shares: the one-line error type, bounded reads, output files."""

from __future__ import annotations

import sys
from pathlib import Path

from online_coordinator.exit_codes import CommandError, ExitCode
from shared.psbt import MAX_PSBT_SIZE

#: Text encodings (base64, hex) of a payload are at most about twice its binary size.
MAX_INPUT_BYTES = 2 * MAX_PSBT_SIZE + 4096


__all__ = ["MAX_INPUT_BYTES", "CommandError", "ExitCode", "read_limited", "write_output"]


def read_limited(source: str, limit: int = MAX_INPUT_BYTES) -> bytes:
    """Read a file or ``-`` (stdin), refusing anything over ``limit`` before reading it all."""
    try:
        if source == "-":
            data = sys.stdin.buffer.read(limit + 1)
        else:
            path = Path(source)
            if path.stat().st_size > limit:
                raise CommandError(f"{source}: larger than the {limit}-byte input limit")
            data = path.read_bytes()
    except OSError as exc:
        raise CommandError(f"{source}: {exc.strerror or exc}") from exc
    if len(data) > limit:
        raise CommandError(f"{source}: larger than the {limit}-byte input limit")
    return data


def write_output(data: bytes, target: str) -> None:
    """Write bytes to a file, or to stdout for ``-``."""
    if target == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        Path(target).write_bytes(data)
    except OSError as exc:
        raise CommandError(f"{target}: {exc.strerror or exc}") from exc
