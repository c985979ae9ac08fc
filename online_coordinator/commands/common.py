"""What every command shares: the one-line error type, bounded reads, output files, and
the state directory (``--state``) with its config and store."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from online_coordinator.config import Config, load_config
from online_coordinator.exit_codes import CommandError, ExitCode
from online_coordinator.store import Store, outcome
from online_coordinator.transport import MAX_INPUT_BYTES, read_limited

DEFAULT_STATE = Path("coldstation-coordinator")

# The error type and bounded reads live below the commands (the transport reads payloads
# too, and nothing under ``commands`` may be imported from below); re-exported here.
__all__ = [
    "DEFAULT_STATE",
    "MAX_INPUT_BYTES",
    "CommandError",
    "ExitCode",
    "add_state",
    "opened",
    "read_limited",
    "write_output",
]


def add_state(
    parser: argparse.ArgumentParser, default: object = argparse.SUPPRESS
) -> argparse.ArgumentParser:
    """``--state DIR``, on the program (with the default) and on each command that keeps
    state (without one, so it does not overwrite the program's): it may be given before
    the command or after it, and the last one given wins."""
    parser.add_argument(
        "--state",
        type=Path,
        default=default,
        help=f"state directory (default ./{DEFAULT_STATE})",
    )
    return parser


@contextmanager
def opened(args: argparse.Namespace) -> Iterator[tuple[Config, Store]]:
    """Config and store for a command; a failure goes up as it is, to be mapped to its
    line and exit status in one place (:mod:`online_coordinator.exit_codes`)."""
    config = load_config(args.state)
    with outcome("nothing was changed"):  # unless a step says how far it got
        store = Store.open(config.database)
        try:
            yield config, store
        finally:
            store.close()


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
