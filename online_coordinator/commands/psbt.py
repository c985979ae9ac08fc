"""``psbt decode | combine | finalize | extract``: PSBT tools for ops staff and auditors.

Input may be a binary, base64 or hex PSBT, from a file or ``-`` for stdin. Output files
are binary PSBTs; ``-o -`` writes base64 to stdout instead.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from typing import Any

from online_coordinator.commands.common import CommandError, read_limited, write_output
from shared.bitcoin.address import network_by_name
from shared.psbt import Psbt, PsbtError, combine, extract, finalize
from shared.psbt.describe import describe


def register(commands: Any) -> None:
    group = commands.add_parser("psbt", help="decode, combine, finalize and extract PSBTs")
    sub = group.add_subparsers(dest="psbt_command", required=True, metavar="ACTION")

    decode_cmd = sub.add_parser("decode", help="print a PSBT as JSON")
    decode_cmd.add_argument("file", help="PSBT file (binary, base64 or hex), or - for stdin")
    decode_cmd.add_argument("--network", default="mainnet", help="for addresses (default mainnet)")
    decode_cmd.set_defaults(handler=decode_command)

    combine_cmd = sub.add_parser("combine", help="merge PSBTs of the same transaction")
    combine_cmd.add_argument("files", nargs="+", help="two or more PSBT files")
    combine_cmd.add_argument("-o", "--out", required=True, help="output file, or - for base64")
    combine_cmd.set_defaults(handler=combine_command)

    finalize_cmd = sub.add_parser("finalize", help="finalize inputs that have enough signatures")
    finalize_cmd.add_argument("file")
    finalize_cmd.add_argument("-o", "--out", required=True, help="output file, or - for base64")
    finalize_cmd.set_defaults(handler=finalize_command)

    extract_cmd = sub.add_parser("extract", help="print the final transaction as hex")
    extract_cmd.add_argument("file")
    extract_cmd.set_defaults(handler=extract_command)


def read_psbt(source: str) -> Psbt:
    """Load a PSBT (binary, base64 or hex) from a path or ``-``."""
    try:
        return Psbt.from_text(read_limited(source))
    except PsbtError as exc:
        raise CommandError(f"{source}: {exc}") from exc


def write_psbt(psbt: Psbt, target: str) -> None:
    if target == "-":
        print(base64.b64encode(psbt.serialize()).decode())
        return
    write_output(psbt.serialize(), target)


def decode_command(args: argparse.Namespace) -> int:
    try:
        network = network_by_name(args.network)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    print(json.dumps(describe(read_psbt(args.file), network), indent=2))
    return 0


def combine_command(args: argparse.Namespace) -> int:
    write_psbt(combine([read_psbt(source) for source in args.files]), args.out)
    return 0


def finalize_command(args: argparse.Namespace) -> int:
    result = finalize(read_psbt(args.file))
    write_psbt(result.psbt, args.out)
    if result.complete:
        return 0
    problems = "; ".join(result.problems.values())
    print(f"incomplete: {problems}", file=sys.stderr)
    return 1


def extract_command(args: argparse.Namespace) -> int:
    psbt = read_psbt(args.file)
    try:
        tx = extract(psbt)
    except PsbtError as exc:
        raise CommandError(f"{args.file}: {exc}") from exc
    print(tx.serialize().hex())
    return 0
