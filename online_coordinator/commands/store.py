"""``store import-sqlite``: move the coordinator's SQLite file into PostgreSQL (issue 19)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from online_coordinator.commands.common import CommandError, add_state, opened
from online_coordinator.store_copy import import_sqlite, open_source


def register(commands: Any) -> None:
    group = commands.add_parser("store", help="the coordinator's database")
    sub = group.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    copy = add_state(
        sub.add_parser(
            "import-sqlite",
            help="copy a coordinator's SQLite file into the empty PostgreSQL store that "
            "[database] url names (all or nothing; the file stays as it was)",
        )
    )
    copy.add_argument("sqlite", type=Path, help="the old coordinator.sqlite (a copy of it)")
    copy.set_defaults(handler=import_sqlite_command)


def import_sqlite_command(args: argparse.Namespace) -> int:
    if not args.sqlite.is_file():
        raise CommandError(f"{args.sqlite}: no such file")
    with opened(args) as (_, target), open_source(args.sqlite) as source:
        copied = import_sqlite(source, target)
        where = target.path
    for table in copied:
        print(f"{table.name:16s} {table.rows:9d} rows  sha256 {table.sha256[:16]}…")
    print(f"copied {sum(t.rows for t in copied)} rows into {where}; every table read back equal")
    return 0
