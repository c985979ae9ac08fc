"""``coldstation-coordinator``: the online coordinator's command line.

Exit status: 0 on success, 1 when a PSBT is valid but not complete (finalize), 2 with a
one-line error on bad input. Commands are scriptable so tests and auditors can use them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from online_coordinator.commands import batch as batch_commands
from online_coordinator.commands import psbt as psbt_commands
from online_coordinator.commands import qr as qr_commands
from online_coordinator.commands import regtest as regtest_commands
from online_coordinator.commands import ur as ur_commands
from online_coordinator.commands import wallet as wallet_commands
from online_coordinator.commands.common import CommandError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coldstation-coordinator",
        description="Coldstation online coordinator: prepare, combine, finalize and track PSBTs.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    psbt_commands.register(commands)
    ur_commands.register(commands)
    qr_commands.register(commands)
    wallet_commands.register(commands)
    batch_commands.register(commands)
    regtest_commands.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
