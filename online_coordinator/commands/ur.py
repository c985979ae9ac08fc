"""``ur encode | decode``: Blockchain Commons UR text, one part per line.

``encode`` prints the parts a screen would show; ``decode`` reads parts from stdin in any
order, with duplicates and junk lines (each ignored with a warning on stderr), and writes
the payload once the message is complete.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from online_coordinator.commands.common import CommandError, read_limited, write_output
from shared.ur.payload import cbor_to_file, file_to_cbor
from shared.ur.registry import REGISTRY
from shared.ur.ur import UR, URDecoder, UREncoder

#: what ``--fountain`` means, for every command that offers it
FOUNTAIN_HELP = (
    "standard (default): the reference part sequence, which every wallet decodes; "
    "coldstation: after the first cycle only high-degree parts, for Coldstation's own "
    "scanner only (with small fragments the reference decoders, bc-ur, the Keystone SDK "
    "and SeedSigner, stalled on it in 38 of 140 measured cases)"
)


def register(commands: Any) -> None:
    group = commands.add_parser("ur", help="encode and decode Blockchain Commons UR parts")
    sub = group.add_subparsers(dest="ur_command", required=True, metavar="ACTION")

    enc = sub.add_parser("encode", help="print the UR parts of a file, one per line")
    enc.add_argument("file", help="payload file, or - for stdin")
    enc.add_argument(
        "--type",
        default="crypto-psbt",
        choices=sorted(REGISTRY),
        help="UR type (default crypto-psbt)",
    )
    enc.add_argument(
        "--max-fragment",
        type=int,
        default=200,
        metavar="N",
        help="payload bytes per part (default 200)",
    )
    enc.add_argument(
        "--parts", type=int, metavar="K", help="how many parts to print (default: one full cycle)"
    )
    enc.add_argument("--upper", action="store_true", help="uppercase, as shown in QR codes")
    enc.add_argument(
        "--fountain",
        choices=["standard", "coldstation"],
        default="standard",
        help=FOUNTAIN_HELP,
    )
    enc.set_defaults(handler=encode_command)

    dec = sub.add_parser("decode", help="read UR parts from stdin and write the payload")
    dec.add_argument("-o", "--out", default="-", help="output file (default stdout)")
    dec.set_defaults(handler=decode_command)


def make_encoder(ur_type: str, data: bytes, max_fragment: int, fountain: str) -> UREncoder:
    """The UR encoder for a payload file, shared by ``ur encode`` and ``qr video``."""
    if max_fragment < 10:
        raise CommandError("--max-fragment must be at least 10 bytes")
    return UREncoder(
        UR(ur_type, file_to_cbor(ur_type, data)),
        max_fragment,
        degree_floor=fountain == "coldstation",
    )


def encode_command(args: argparse.Namespace) -> int:
    encoder = make_encoder(args.type, read_limited(args.file), args.max_fragment, args.fountain)
    count = args.parts if args.parts is not None else encoder.seq_len
    if count < 1:
        raise CommandError("--parts must be at least 1")
    for _ in range(count):
        part = encoder.next_part()
        print(part.upper() if args.upper else part)
    return 0


def decode_command(args: argparse.Namespace) -> int:
    decoder = URDecoder()
    for number, line in enumerate(sys.stdin, start=1):
        text = line.strip()
        if not text:
            continue
        status = decoder.receive(text)
        if status.rejected:
            print(f"warning: line {number} ignored: {status.reason}", file=sys.stderr)
        if decoder.is_complete:
            break
    result = decoder.result
    if result is None:
        raise CommandError(f"incomplete: {decoder.progress}")
    write_output(cbor_to_file(result.type, result.cbor), args.out)
    return 0
