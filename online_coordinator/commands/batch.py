"""``batch ...``, ``sync`` and ``status``: payouts to signed, broadcast, final transactions.

Each handler parses its arguments, calls one domain function (:mod:`online_coordinator.batch`,
``sync``, ``status``, ``evidence``) and prints; the rules (the fee cap, what may be
cancelled, when an alert closes) live there. Failures go up as they are and become one line
and an exit status in :mod:`online_coordinator.exit_codes`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from online_coordinator.batch import (
    BuiltRequest,
    attest_request,
    broadcast_batch,
    bump_batch,
    cancel_batch,
    create_batch,
    import_signed,
    open_request,
    output_path,
    reshow_request,
)
from online_coordinator.commands.common import (
    CommandError,
    ExitCode,
    add_state,
    opened,
    read_limited,
)
from online_coordinator.evidence import write_evidence
from online_coordinator.fees import MIN_RELAY_FEE_RATE, FeeChoice
from online_coordinator.payouts import MAX_CSV_BYTES
from online_coordinator.status import acknowledge_alert, coordinator_status
from online_coordinator.store import outcome, storage_error
from online_coordinator.sync import SyncReport, sync_with
from online_coordinator.tables import status_text
from online_coordinator.transport import receive, ur_parts, write_bbqr, write_qr_video
from shared.adapters.console import ProgressLine
from shared.bitcoin.amount import AmountError, parse_sat_per_vb
from shared.psbt.model import Psbt
from shared.request import hash_words
from shared.requester import MAX_ASSERTION_BYTES
from shared.ur.registry import encode_psbt

BBQR_HELP = (
    "also write the request as BBQr parts (.bbqr.txt; with --video, .bbqr.avi): a COLDCARD Q "
    "reads QR and BBQr, not UR"
)


def register(commands: Any) -> None:
    group = commands.add_parser("batch", help="payout batches: create, sign, broadcast")
    sub = group.add_subparsers(dest="batch_command", required=True, metavar="ACTION")

    create = add_state(sub.add_parser("create", help="turn a payout CSV into a signing request"))
    create.add_argument("wallet")
    create.add_argument("csv", help="address,amount,reference (amount in BTC)")
    create.add_argument(
        "--label", required=True, help="the batch's unique label (letters, digits, . _ -)"
    )
    create.add_argument("--purpose", required=True, help="shown to the officers")
    create.add_argument(
        "--fee-rate",
        help="sat/vB (default: the node's estimate, capped; required on mainnet "
        "when the node has none)",
    )
    create.add_argument("--out", type=Path, default=Path("."), help="where request files go")
    create.add_argument("--video", action="store_true", help="also write an animated-QR video")
    create.add_argument("--bbqr", action="store_true", help=BBQR_HELP)
    create.set_defaults(handler=create_command)

    export = add_state(sub.add_parser("export", help="write a batch's open request again"))
    export.add_argument("label")
    export.add_argument("--out", type=Path, default=Path("."))
    export.add_argument("--video", action="store_true")
    export.add_argument("--bbqr", action="store_true", help=BBQR_HELP)
    export.set_defaults(handler=export_command)

    show = add_state(sub.add_parser("show", help="show the open request as animated QR (TUI)"))
    show.add_argument("label")
    show.set_defaults(handler=show_command)

    reshow = add_state(
        sub.add_parser(
            "reshow-request",
            help="ask the station again for a signed output that never arrived",
        )
    )
    reshow.add_argument("label")
    reshow.add_argument("--out", type=Path, default=Path("."))
    reshow.add_argument("--video", action="store_true")
    reshow.add_argument("--bbqr", action="store_true", help=BBQR_HELP)
    reshow.set_defaults(handler=reshow_command)

    attest = add_state(
        sub.add_parser("attest", help="attach the requester's passkey assertion to the request")
    )
    attest.add_argument("label")
    attest.add_argument(
        "assertion",
        help="the JSON navigator.credentials.get() returned over the request hash (a file)",
    )
    attest.set_defaults(handler=attest_command)

    imp = add_state(sub.add_parser("import", help="import signed responses"))
    imp.add_argument("label")
    imp.add_argument("sources", nargs="+", help="file, UR text, video or camera:N")
    imp.set_defaults(handler=import_command)

    send = add_state(sub.add_parser("broadcast", help="check and broadcast the signed batch"))
    send.add_argument("label")
    send.set_defaults(handler=broadcast_command)

    bump = add_state(sub.add_parser("bump", help="fee bump: a new replacement request"))
    bump.add_argument("label")
    bump.add_argument("--fee-rate", required=True, help="sat/vB")
    bump.add_argument("--out", type=Path, default=Path("."))
    bump.add_argument("--video", action="store_true")
    bump.set_defaults(handler=bump_command)

    cancel = add_state(sub.add_parser("cancel", help="cancel a batch never sent to a node"))
    cancel.add_argument("label")
    cancel.set_defaults(handler=cancel_command)

    sync = add_state(commands.add_parser("sync", help="sync coins, track broadcasts and reorgs"))
    sync.set_defaults(handler=sync_command)

    export_all = add_state(commands.add_parser("export", help="write the audit evidence"))
    export_all.add_argument("--out", type=Path, required=True, help="evidence file (JSON)")
    export_all.set_defaults(handler=evidence_command)

    ack = add_state(commands.add_parser("acknowledge", help="acknowledge an alert, with a note"))
    ack.add_argument("alert", type=int, help="the alert id shown by status")
    ack.add_argument("--note", required=True, help="who checked it and what was done")
    ack.set_defaults(handler=acknowledge_command)

    status = add_state(commands.add_parser("status", help="every batch's state and alerts"))
    status.add_argument("label", nargs="?")
    status.add_argument("--sync", action="store_true", help="sync with the node first")
    status.add_argument("--json", action="store_true", help="the status document, for machines")
    status.set_defaults(handler=status_command)


# -- helpers ----------------------------------------------------------------------------------


def parse_fee_rate(text: str) -> int:
    """sat/vB as typed by a person -> integer sat/kvB."""
    try:
        return parse_sat_per_vb(text, MIN_RELAY_FEE_RATE)
    except AmountError as exc:
        raise CommandError(f"--fee-rate {exc}") from None


def write_request(
    psbt: Psbt,
    label: str,
    out: Path,
    video: bool,
    *,
    bbqr: bool = False,
    done: str = "nothing else changed",
) -> list[Path]:
    """The request as a PSBT file, UR text parts and optionally an animated-QR video (and,
    with ``bbqr``, BBQr parts and video for a COLDCARD Q), in ``out`` and nowhere else
    (:func:`online_coordinator.batch.output_path`)."""
    written = [output_path(out, label, ".psbt"), output_path(out, label, ".ur.txt")]
    if video:
        written.append(output_path(out, label, ".avi"))
    cbor = encode_psbt(psbt)
    with outcome(done):
        try:
            out.mkdir(parents=True, exist_ok=True)
            written[0].write_bytes(psbt.serialize())
            written[1].write_text("\n".join(ur_parts("crypto-psbt", cbor)) + "\n")
            if bbqr:
                written += write_bbqr(
                    "crypto-psbt",
                    psbt.serialize(),
                    output_path(out, label, ".bbqr.txt"),
                    output_path(out, label, ".bbqr.avi") if video else None,
                )
        except CommandError as exc:  # BBQr cannot carry it: say what did happen
            raise CommandError(f"{exc}; {done}") from exc
        except OSError as exc:
            raise storage_error(exc.filename or out, exc) from exc
        if video:
            write_qr_video("crypto-psbt", cbor, written[2])
    return written


def _report(built: BuiltRequest, fee: FeeChoice | None, files: list[Path]) -> None:
    print(f"batch {built.label}: request {built.meta.request_id.hex()}")
    print(
        f"  fee {built.fee} sat at {built.fee_rate / 1000:g} sat/vB, "
        f"{len(built.psbt.inputs)} input(s), {len(built.psbt.outputs)} output(s)"
    )
    if fee is not None:
        print(f"  fee rate: {fee.note}")
    if built.change is not None:
        print(f"  change {built.selection.change} sat to {built.change.address}")
    print(f"  request hash {built.request_hash.hex()}")
    print(f"  read aloud: {hash_words(built.request_hash)}")
    for path in files:
        print(f"  wrote {path}")


# -- commands ---------------------------------------------------------------------------------


def create_command(args: argparse.Namespace) -> int:
    csv = read_limited(args.csv, MAX_CSV_BYTES)
    given = parse_fee_rate(args.fee_rate) if args.fee_rate else None
    with opened(args) as (config, store):
        created = create_batch(
            config,
            store,
            args.wallet,
            csv,
            csv_name=args.csv,
            label=args.label,
            purpose=args.purpose,
            fee_rate=given,
        )
        built, fee = created.built, created.fee
        if fee.warn:
            print(f"warning: fee rate {fee.note}", file=sys.stderr)
        files = write_request(
            built.psbt,
            built.label,
            args.out,
            args.video,
            bbqr=args.bbqr,
            done=f"batch {built.label} IS created and recorded, but its request files were not "
            f"all written: free space and run `batch export {built.label} --out {args.out}`",
        )
        _report(built, fee, files)
    return 0


def export_command(args: argparse.Namespace) -> int:
    with opened(args) as (_, store):
        request = open_request(store, args.label)
        for path in write_request(request.psbt, args.label, args.out, args.video, bbqr=args.bbqr):
            print(f"wrote {path}")
    return 0


def show_command(args: argparse.Namespace) -> int:
    from online_coordinator.tui import show_request

    with opened(args) as (_, store):
        request = open_request(store, args.label)
    return show_request(args.label, request.unsigned_psbt, request.request_hash)


def reshow_command(args: argparse.Namespace) -> int:
    """The same request again, and what the officers look for in the station's journal."""
    with opened(args) as (_, store):
        asked = reshow_request(store, args.label)
        files = write_request(asked.psbt, args.label, args.out, args.video, bbqr=args.bbqr)
    print(f"batch {asked.label}: ask the station again for request {asked.request_id}")
    print(f"  txid {asked.txid}")
    print(f"  request hash {asked.request_hash.hex()}")
    print(f"  read aloud: {hash_words(asked.request_hash)}")
    for path in files:
        print(f"  wrote {path} (the request, unchanged)")
    print(
        "  On the station, present this same request: it is refused as replayed and must not "
        "be signed again; the station shows the signed PSBT it journaled for it instead. "
        f"Then: batch import {asked.label} <signed>"
    )
    return 0


def attest_command(args: argparse.Namespace) -> int:
    text = read_limited(args.assertion, 2 * MAX_ASSERTION_BYTES)
    with opened(args) as (_, store):
        request = attest_request(store, args.label, text)
    print(
        f"batch {args.label}: the requester's passkey assertion over request hash "
        f"{request.request_hash.hex()[:16]}... is attached; the station verifies it. "
        f"Export or show the request again: batch export {args.label}"
    )
    return 0


def import_command(args: argparse.Namespace) -> int:
    with opened(args) as (_, store):
        for source in args.sources:
            payload = receive(source)
            result = import_signed(store, args.label, payload.data, source, payload.how)
            receipts = ", ".join(result.receipts) or "no receipt"
            again = " (already imported: counted once)" if result.duplicate else ""
            print(
                f"{source}: {result.signatures} valid signature(s), approved by {receipts}{again}"
            )
        state = (
            "complete: ready to broadcast"
            if result.complete
            else ("more signatures needed: " + "; ".join(result.missing[:3]))
        )
        print(f"batch {args.label}: {state}")
    return 0


def broadcast_command(args: argparse.Namespace) -> int:
    with opened(args) as (config, store):
        result = broadcast_batch(store, config.rpc(), args.label)
        if result.already:
            print(f"batch {args.label}: already broadcast as {result.txid} ({result.how})")
        else:
            print(f"batch {args.label}: broadcast {result.txid} ({result.how})")
    return 0


def bump_command(args: argparse.Namespace) -> int:
    rate = parse_fee_rate(args.fee_rate)
    with opened(args) as (config, store):
        built = bump_batch(config, store, args.label, rate)
        label = f"{args.label}-bump{built.request_row}"
        _report(built, None, write_request(built.psbt, label, args.out, args.video))
    return 0


def cancel_command(args: argparse.Namespace) -> int:
    with opened(args) as (config, store):
        released = cancel_batch(store, config.rpc(), args.label)
        print(
            f"batch {args.label} cancelled; {released} coin(s) released. If the appliance "
            "already signed it, its journal will refuse a conflicting spend of those coins "
            "until a replacement is approved."
        )
    return 0


def _print_sync(report: SyncReport, file: TextIO | None = None) -> None:
    print(
        f"tip {report.tip}: {report.blocks_walked} block(s) walked, "
        f"{report.new_coins} new coin(s), {report.reorged_blocks} block(s) reorged, "
        f"{len(report.rebroadcasts)} re-sent, {len(report.found)} found in the mempool, "
        f"{len(report.confirmed)} confirmed, {len(report.final)} final",
        file=file,
    )
    for warning in report.warnings:
        print(f"warning: {warning}", file=file)
    for alert in report.alerts:
        print(f"ALERT: {alert}", file=file)


def sync_command(args: argparse.Namespace) -> int:
    with opened(args) as (config, store):
        progress = ProgressLine("sync", "block")
        report = sync_with(config, store, progress)
        progress.finish()
        _print_sync(report)
    return ExitCode.ALERT if report.alerts else 0


def status_command(args: argparse.Namespace) -> int:
    """A table (JSON with --json); 3 with open alerts, else 4 when the node is unavailable
    (states as last recorded, confirmations null), else 0."""
    with opened(args) as (config, store):
        status = coordinator_status(config, store, label=args.label, sync_first=args.sync)
    if status.synced is not None:  # stdout stays pure JSON: the sync summary goes to stderr
        _print_sync(status.synced, sys.stderr)
    print(json.dumps(status.document, indent=2) if args.json else status_text(status.document))
    if status.open_alerts:
        return ExitCode.ALERT
    return ExitCode.NODE_UNAVAILABLE if not status.node_available else 0


def evidence_command(args: argparse.Namespace) -> int:
    with opened(args) as (_, store):
        size = write_evidence(store, args.out)
    print(f"coordinator evidence written to {args.out} ({size} bytes)")
    return 0


def acknowledge_command(args: argparse.Namespace) -> int:
    """An alert stays open (status exits 3) until someone records what they did about it."""
    with opened(args) as (_, store):
        acknowledge_alert(store, args.alert, args.note)
    print(f"alert {args.alert} acknowledged")
    return 0
