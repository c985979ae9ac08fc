"""``coldstation-audit``: the auditor's command line (the I/O around :mod:`shared.audit`).

    coldstation-audit replay --journal BUNDLE [--journal BUNDLE ...] --coordinator-export C
                             [--chain URL --cookie FILE [--from-height N]]
                             [--json OUT.json] [--html OUT.html] [--workers N]
    coldstation-audit verify-receipt FILE [--audit-key HEX]

``verify-receipt`` checks a receipt's signature and the record contract (not deferred,
its recorded quorum met); either failing exits 1.

This program only reads the evidence files, asks the auditor's own node for blocks (with
``--chain``), and writes the reports; every judgement is made by the pure replay in
:mod:`shared.audit`, so it can be read and re-run without trusting this adapter. Where the
chain walk starts is the auditor's choice (``--from-height``, else block 0), never the
evidence's. Every line it prints goes through :func:`shared.audit.text.printable`, since
evidence text (labels, names, descriptors, file names) must never reach the terminal raw.

A bundle's journal is read as a stream and each transcript when its record is replayed
(:mod:`shared.audit.journal_stream`): a year of records needs neither the whole export nor
every transcript in memory. ``--workers`` processes (default: as many as the CPUs this
process may use) decode and check the evidence while this one replays it.

Exit status: 0 when every check holds, 1 when there are findings (or a receipt does not
verify), 2 when the input cannot be used at all (one line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from online_coordinator.audit_files import read_bundle, read_coordinator
from online_coordinator.chain.rpc import BitcoinCoreRPC, ChainError, RpcAuth
from online_coordinator.commands.common import CommandError
from online_coordinator.transport import receive
from shared.adapters.console import add_version, quiet_exits
from shared.audit.chain import ChainScanError, ChainScanner, walk_start
from shared.audit.evidence import CoordinatorEvidence, EvidenceError
from shared.audit.receipts import standalone_receipt_problem
from shared.audit.replay import replay
from shared.audit.report import summary, write_html, write_json
from shared.audit.text import printable
from shared.audit.wallets import WalletIndex, build_index
from shared.audit.workers import Workers
from shared.bitcoin import ecdsa
from shared.bitcoin.block import Block
from shared.bitcoin.encoding import DecodeError
from shared.journal import Entry, JournalError
from shared.psbt import Psbt, PsbtError
from shared.request import RequestError, read_receipts

BLOCKS_PER_CALL = 16
HASHES_PER_CALL = 1000
#: Core's chain names -> the network names wallets and policies use.
CHAINS = {
    "main": "mainnet",
    "test": "testnet",
    "testnet4": "testnet",
    "signet": "signet",
    "regtest": "regtest",
}
UNUSABLE = (CommandError, EvidenceError, ChainError, ChainScanError, ValueError, OSError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coldstation-audit",
        description="Replay Coldstation signing ceremonies from the evidence alone.",
    )
    add_version(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("replay", help="replay every ceremony; write JSON and HTML reports")
    run.add_argument(
        "--journal",
        action="append",
        required=True,
        type=Path,
        metavar="BUNDLE",
        help="an appliance's audit bundle folder (journal export --evidence); once per appliance",
    )
    run.add_argument(
        "--coordinator-export",
        required=True,
        type=Path,
        metavar="FILE",
        help="the coordinator's evidence (coldstation-coordinator export)",
    )
    run.add_argument("--chain", metavar="URL", help="your own node's RPC URL: walk the chain")
    run.add_argument(
        "--cookie", type=Path, metavar="FILE", help="the node's .cookie file (with --chain)"
    )
    run.add_argument(
        "--from-height",
        type=_height,
        metavar="N",
        help="with --chain: the first block to walk. Default 0, every block of "
        "your node: seconds on regtest, but on mainnet that is each of some "
        "900,000 blocks (hundreds of GB over RPC, parsed here in Python: "
        "expect days). Give a height you established yourself, at or below "
        "the wallets' first deposit, to walk less; coins created earlier are "
        "still seen when they are spent. The coordinator's birth_height is "
        "never used: it is checked, not trusted.",
    )
    run.add_argument("--json", type=Path, metavar="OUT", help="write the JSON report here")
    run.add_argument("--html", type=Path, metavar="OUT", help="write the HTML report here")
    run.add_argument(
        "--workers",
        type=_workers,
        default=_cpus(),
        metavar="N",
        help="worker processes reading the evidence while this one replays it "
        "(default: the CPUs available, here %(default)s; 0: all in this "
        "process)",
    )
    run.set_defaults(handler=replay_command)
    receipt = sub.add_parser("verify-receipt", help="check one receipt's signature")
    receipt.add_argument("file", help="a receipt (file or ur:bytes text) or a signed PSBT")
    receipt.add_argument("--audit-key", metavar="HEX", help="the appliance's audit key")
    receipt.set_defaults(handler=verify_receipt_command)
    return parser


def _cpus() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return cpus if cpus > 1 else 0


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes") from None
    if value < 0:
        raise argparse.ArgumentTypeError("0 or more processes")
    return value


def _height(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a block height") from None
    if value < 0:
        raise argparse.ArgumentTypeError("a block height is 0 or more")
    return value


def say(line: object = "", *, err: bool = False) -> None:
    """Print one line with every control character escaped (see shared.audit.text)."""
    print(printable(line), file=sys.stderr if err else sys.stdout)


# -- reading the evidence -----------------------------------------------------------------


def _rpc(args: argparse.Namespace) -> BitcoinCoreRPC | None:
    if args.chain is None and args.cookie is None:
        if getattr(args, "from_height", None) is not None:
            raise CommandError("--from-height needs --chain and --cookie")
        return None
    if args.chain is None or args.cookie is None:
        raise CommandError("--chain and --cookie go together")
    return BitcoinCoreRPC(args.chain, RpcAuth.from_cookie(args.cookie))


def _check_network(rpc: BitcoinCoreRPC, evidence: CoordinatorEvidence) -> None:
    chain = CHAINS.get(rpc.chain_name(), "unknown")
    networks = {w.network for w in evidence.wallets}
    if networks and networks != {chain}:
        raise CommandError(
            f"the node is on {chain}; the wallets are on {', '.join(sorted(networks))}"
        )


def scan_chain(
    rpc: BitcoinCoreRPC,
    evidence: CoordinatorEvidence,
    index: WalletIndex,
    from_height: int | None = None,
) -> ChainScanner:
    """Every block from the auditor's start (``from_height``, else 0) to the node's tip;
    nothing in the evidence moves the start."""
    _check_network(rpc, evidence)
    tip = rpc.block_count()
    start, source = walk_start(from_height, tip)
    scanner = ChainScanner(index.scripts, start, start_source=source)
    for low in range(start, tip + 1, HASHES_PER_CALL):
        hashes = rpc.block_hashes(list(range(low, min(low + HASHES_PER_CALL, tip + 1))))
        for offset in range(0, len(hashes), BLOCKS_PER_CALL):
            chunk = hashes[offset : offset + BLOCKS_PER_CALL]
            raws = rpc.batch([("getblock", [h, 0]) for h in chunk])
            for position, (block_hash, raw) in enumerate(zip(chunk, raws, strict=True)):
                scanner.add_block(low + offset + position, _block(raw, block_hash), block_hash)
    return scanner


def _block(raw: object, block_hash: str) -> Block:
    try:
        return Block.parse(bytes.fromhex(raw if isinstance(raw, str) else ""))
    except (ValueError, DecodeError) as exc:
        raise ChainScanError(f"block {block_hash} from the node does not parse: {exc}") from exc


# -- commands -----------------------------------------------------------------------------


@contextlib.contextmanager
def _long_lived() -> Iterator[None]:
    """The replay builds a large heap that lives until it ends (the coordinator evidence, a
    ceremony per decision) and leaves no reference cycles behind. Python's cycle collector
    would walk all of it again and again as it grows: a fifth of the time of a 10,000-record
    replay, more the longer the journal. So it is off while the replay runs."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def replay_command(args: argparse.Namespace) -> int:
    with _long_lived(), Workers(args.workers) as workers:
        return _replay(args, workers)


def _replay(args: argparse.Namespace, workers: Workers) -> int:
    bundles = [read_bundle(path) for path in args.journal]
    evidence = read_coordinator(args.coordinator_export, workers)
    index = build_index(evidence)
    rpc = _rpc(args)
    scanner = None
    if rpc is not None:
        with rpc:
            scanner = scan_chain(rpc, evidence, index, args.from_height)
    report = replay(bundles, evidence, scanner, index, workers=workers)
    inputs = _inputs(args)
    if args.json is not None:
        with args.json.open("w", encoding="utf-8") as file:  # written as it is made
            write_json(report, file, inputs)
    if args.html is not None:
        with args.html.open("w", encoding="utf-8") as file:
            write_html(report, file, inputs)
    print(summary(report))  # escaped line by line by summary()
    for kind, path in (("JSON", args.json), ("HTML", args.html)):
        if path is not None:
            say(f"{kind} report: {path}")
    return 0 if report.ok else 1


def _inputs(args: argparse.Namespace) -> dict[str, str]:
    inputs = {f"bundle {n}": str(p) for n, p in enumerate(args.journal, start=1)}
    inputs["coordinator evidence"] = str(args.coordinator_export)
    inputs["chain"] = args.chain or "not checked"
    if args.chain and args.from_height is not None:
        inputs["chain walk from"] = f"block {args.from_height} (--from-height)"
    inputs["generated"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return inputs


def _receipts(data: bytes, source: str) -> list[Entry]:
    """A receipt is an entry (binary or hex), or the receipts a signed PSBT carries."""
    candidates = [data]
    with contextlib.suppress(UnicodeDecodeError, ValueError):
        candidates.append(bytes.fromhex(data.decode("ascii").strip()))
    for candidate in candidates:
        try:
            return [Entry.from_bytes(candidate)]
        except JournalError:
            continue
    try:
        return [Entry.from_bytes(raw) for raw in read_receipts(Psbt.from_text(data))]
    except (PsbtError, RequestError, JournalError) as exc:
        raise CommandError(
            f"{source}: neither a receipt nor a PSBT carrying receipts ({exc})"
        ) from exc


def _audit_key(given: str | None, entry: Entry) -> tuple[bytes, str]:
    """The key to verify under, and where it came from (the receipt's own claim is only a
    claim: compare it with the key pinned at import)."""
    text = given if given is not None else entry.record.details.get("audit_key")
    how = (
        "given"
        if given is not None
        else "named in the receipt itself (compare it with the fingerprint pinned at import)"
    )
    if not isinstance(text, str):
        raise CommandError(
            f"receipt seq {entry.record.seq} does not name its audit key: give --audit-key"
        )
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 33 or not ecdsa.is_valid_pubkey(key):
        raise CommandError(f"audit key {text!r} is not a compressed public key")
    return key, how


def verify_receipt_command(args: argparse.Namespace) -> int:
    entries = _receipts(receive(args.file).data, args.file)
    if not entries:
        raise CommandError(f"{args.file}: the PSBT carries no receipt")
    failed = 0
    for entry in entries:
        key, how = _audit_key(args.audit_key, entry)
        record = entry.record
        ok = entry.verify(key)
        problem = standalone_receipt_problem(record)
        failed += not ok or problem is not None
        decision = f" {record.decision}" if record.decision else ""
        say(
            f"appliance {record.appliance_id} seq {record.seq} {record.event}{decision}, "
            f"record {record.hash().hex()}"
        )
        for name, value in sorted(record.subjects.items()):
            say(f"  {name}: {value.hex()}")
        verdict = "verifies" if ok else "DOES NOT VERIFY"
        say(f"  signature {verdict} under audit key {key.hex()} ({how})")
        say(
            "  receipt contract: "
            + ("met" if problem is None else f"NOT A VALID RECEIPT: {problem}")
        )
    return 1 if failed else 0


@quiet_exits
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UNUSABLE as exc:
        say(f"error: {_one_line(exc)}", err=True)
        return 2


def _one_line(exc: BaseException) -> str:
    """The message on one line: every control character (a newline or ESC quoted from a
    file name or from the evidence) is escaped, so it cannot start a line of its own."""
    return printable((str(exc) or type(exc).__name__).strip())


if __name__ == "__main__":
    sys.exit(main())
