"""``coldstation-coordinator``: the online coordinator's command line.

Exit status (``docs/exit-codes.md``, mapped in :mod:`online_coordinator.exit_codes`): 0
done; 1 valid but not done (an incomplete PSBT, a reconcile discrepancy); 2 bad usage or
input, or a node on the wrong chain; 3 ALERT; 4 node unavailable; 5 the coordinator's own
disk or database failed. Every failure is one line on stderr, never a traceback.
Commands are scriptable so tests and auditors can use them. ``--state DIR`` may be given
before the command or after it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from online_coordinator.commands import batch as batch_commands
from online_coordinator.commands import psbt as psbt_commands
from online_coordinator.commands import qr as qr_commands
from online_coordinator.commands import regtest as regtest_commands
from online_coordinator.commands import store as store_commands
from online_coordinator.commands import ur as ur_commands
from online_coordinator.commands import wallet as wallet_commands
from online_coordinator.commands import watch as watch_commands
from online_coordinator.commands import web as web_commands
from online_coordinator.commands.common import DEFAULT_STATE, add_state
from online_coordinator.exit_codes import failure
from shared.adapters.console import add_version, quiet_exits


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coldstation-coordinator",
        description="Coldstation online coordinator: prepare, combine, finalize and track PSBTs.",
    )
    add_version(parser)
    add_state(parser, DEFAULT_STATE)  # before the command, or after it (as each command takes it)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    psbt_commands.register(commands)
    ur_commands.register(commands)
    qr_commands.register(commands)
    wallet_commands.register(commands)
    batch_commands.register(commands)
    regtest_commands.register(commands)
    web_commands.register(commands)
    watch_commands.register(commands)
    store_commands.register(commands)
    return parser


@quiet_exits
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except Exception as exc:
        mapped = failure(exc)
        if mapped is None:
            raise
        code, message = mapped
        print(f"error: {message}", file=sys.stderr)
        return int(code)


if __name__ == "__main__":
    sys.exit(main())
