"""``batch ...``, ``sync`` and ``status``: payouts to signed, broadcast, final transactions."""

from __future__ import annotations

import argparse
import json
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from online_coordinator.batch import (
    BatchError,
    BuiltRequest,
    build_replacement,
    build_request,
    release_coins,
)
from online_coordinator.chain.rpc import ChainUnavailable, RpcError
from online_coordinator.commands.common import CommandError, read_limited
from online_coordinator.commands.wallet import add_state, opened
from online_coordinator.config import MIN_RELAY_FEE_RATE, Config
from online_coordinator.evidence import export_evidence
from online_coordinator.finish import FinishError, broadcast, import_response
from online_coordinator.payouts import MAX_CSV_BYTES, PayoutsError
from online_coordinator.store import Store
from online_coordinator.sync import (
    SyncReport,
    confirmations,
    rebroadcast,
    sync_coins,
    track,
)
from online_coordinator.transport import receive, ur_parts, write_qr_video
from online_coordinator.wallet import load_wallet
from shared.psbt.model import Psbt
from shared.request import hash_words
from shared.ur.registry import encode_psbt


def register(commands: Any) -> None:
    group = commands.add_parser("batch", help="payout batches: create, sign, broadcast")
    sub = group.add_subparsers(dest="batch_command", required=True, metavar="ACTION")

    create = add_state(sub.add_parser("create", help="turn a payout CSV into a signing request"))
    create.add_argument("wallet")
    create.add_argument("csv", help="address,amount,reference (amount in BTC)")
    create.add_argument("--label", required=True, help="the batch's unique label")
    create.add_argument("--purpose", required=True, help="shown to the officers")
    create.add_argument("--fee-rate", help="sat/vB (default: the node's estimate, capped)")
    create.add_argument("--out", type=Path, default=Path("."), help="where request files go")
    create.add_argument("--video", action="store_true", help="also write an animated-QR video")
    create.set_defaults(handler=create_command)

    export = add_state(sub.add_parser("export", help="write a batch's open request again"))
    export.add_argument("label")
    export.add_argument("--out", type=Path, default=Path("."))
    export.add_argument("--video", action="store_true")
    export.set_defaults(handler=export_command)

    show = add_state(sub.add_parser("show", help="show the open request as animated QR (TUI)"))
    show.add_argument("label")
    show.set_defaults(handler=show_command)

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

    cancel = add_state(sub.add_parser("cancel", help="cancel a batch not yet broadcast"))
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
    status.set_defaults(handler=status_command)


# -- helpers ----------------------------------------------------------------------------------


def parse_fee_rate(text: str) -> int:
    """sat/vB as typed by a person -> integer sat/kvB."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise CommandError(f"--fee-rate {text!r} is not a number of sat/vB") from None
    rate = value * 1000
    if not value.is_finite() or rate != rate.to_integral_value() or rate < MIN_RELAY_FEE_RATE:
        raise CommandError("--fee-rate must be at least 1 sat/vB with at most 3 decimals")
    return int(rate)


def node_fee_rate(config: Config) -> int:
    """The node's estimate, never above the configured cap, never below the relay minimum."""
    estimate = config.rpc().estimate_fee_rate(config.target_blocks)
    if estimate is None:
        return config.fallback_fee_rate
    if estimate > config.max_fee_rate:
        print(
            f"warning: the node estimates {estimate / 1000:g} sat/vB; capped at "
            f"{config.max_fee_rate / 1000:g}",
            file=sys.stderr,
        )
    return max(MIN_RELAY_FEE_RATE, min(estimate, config.max_fee_rate))


def _batch(store: Store, label: str) -> Any:
    row = store.one("SELECT * FROM batches WHERE label = ?", label)
    if row is None:
        raise CommandError(f"no batch labelled {label!r}")
    return row


def write_request(psbt: Psbt, label: str, out: Path, video: bool) -> list[Path]:
    """The request as a PSBT file, UR text parts and optionally an animated-QR video."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / f"{label}.psbt", out / f"{label}.ur.txt"]
    written[0].write_bytes(psbt.serialize())
    cbor = encode_psbt(psbt)
    written[1].write_text("\n".join(ur_parts("crypto-psbt", cbor)) + "\n")
    if video:
        written.append(out / f"{label}.avi")
        write_qr_video("crypto-psbt", cbor, written[-1])
    return written


def _report(built: BuiltRequest, files: list[Path]) -> None:
    print(f"batch {built.label}: request {built.meta.request_id.hex()}")
    print(
        f"  fee {built.fee} sat at {built.fee_rate / 1000:g} sat/vB, "
        f"{len(built.psbt.inputs)} input(s), {len(built.psbt.outputs)} output(s)"
    )
    if built.change is not None:
        reuse = " (REUSED: key pool exhausted)" if built.change.reused else ""
        print(f"  change {built.selection.change} sat to {built.change.address}{reuse}")
    print(f"  request hash {built.request_hash.hex()}")
    print(f"  read aloud: {hash_words(built.request_hash)}")
    for path in files:
        print(f"  wrote {path}")


# -- commands ---------------------------------------------------------------------------------


def create_command(args: argparse.Namespace) -> int:
    csv = read_limited(args.csv, MAX_CSV_BYTES)
    with opened(args) as (config, store):
        wallet = load_wallet(store, args.wallet)
        rate = parse_fee_rate(args.fee_rate) if args.fee_rate else node_fee_rate(config)
        if rate > config.max_fee_rate:
            raise CommandError(
                f"--fee-rate is over the configured cap {config.max_fee_rate / 1000:g} sat/vB"
            )
        try:
            built = build_request(
                store,
                wallet,
                csv,
                label=args.label,
                purpose=args.purpose,
                requester=config.requester,
                fee_rate=rate,
                tip=config.rpc().block_count(),
                expiry_seconds=config.expiry_hours * 3600,
            )
        except PayoutsError as exc:
            raise CommandError(f"{args.csv}: nothing was created:\n{exc}") from exc
        except BatchError as exc:
            raise CommandError(f"nothing was created: {exc}") from exc
        _report(built, write_request(built.psbt, built.label, args.out, args.video))
    return 0


def _open_request(store: Store, batch_id: int) -> Any:
    row = store.one(
        "SELECT * FROM requests WHERE batch_id = ? AND state IN ('open', 'signed') "
        "ORDER BY id DESC LIMIT 1",
        batch_id,
    )
    if row is None:
        raise CommandError("the batch has no open request")
    return row


def export_command(args: argparse.Namespace) -> int:
    with opened(args) as (_, store):
        request = _open_request(store, _batch(store, args.label)["id"])
        psbt = Psbt.parse(bytes(request["unsigned_psbt"]))
        for path in write_request(psbt, args.label, args.out, args.video):
            print(f"wrote {path}")
    return 0


def show_command(args: argparse.Namespace) -> int:
    from online_coordinator.tui import show_request

    with opened(args) as (_, store):
        request = _open_request(store, _batch(store, args.label)["id"])
        psbt = bytes(request["unsigned_psbt"])
        digest = bytes(request["request_hash"])
    return show_request(args.label, psbt, digest)


def import_command(args: argparse.Namespace) -> int:
    with opened(args) as (_, store):
        batch = _batch(store, args.label)
        for source in args.sources:
            payload = receive(source)
            try:
                result = import_response(
                    store, batch["id"], payload.data, f"{payload.how}:{source}"
                )
            except FinishError as exc:
                raise CommandError(f"{source}: {exc}") from exc
            receipts = ", ".join(result.receipts) or "no receipt"
            print(f"{source}: {result.signatures} valid signature(s), approved by {receipts}")
        state = (
            "complete: ready to broadcast"
            if result.complete
            else ("more signatures needed: " + "; ".join(result.missing[:3]))
        )
        print(f"batch {args.label}: {state}")
    return 0


def broadcast_command(args: argparse.Namespace) -> int:
    with opened(args) as (config, store):
        batch = _batch(store, args.label)
        try:
            txid = broadcast(store, config.rpc(), batch["id"])
        except FinishError as exc:
            raise CommandError(str(exc)) from exc
        print(f"batch {args.label}: broadcast {txid}")
    return 0


def bump_command(args: argparse.Namespace) -> int:
    with opened(args) as (config, store):
        batch = _batch(store, args.label)
        wallet = load_wallet(
            store, store.one("SELECT name FROM wallets WHERE id = ?", batch["wallet_id"])["name"]
        )
        try:
            built = build_replacement(
                store,
                wallet,
                batch["id"],
                fee_rate=parse_fee_rate(args.fee_rate),
                requester=config.requester,
                expiry_seconds=config.expiry_hours * 3600,
            )
        except BatchError as exc:
            raise CommandError(str(exc)) from exc
        label = f"{args.label}-bump{built.request_row}"
        _report(built, write_request(built.psbt, label, args.out, args.video))
    return 0


def cancel_command(args: argparse.Namespace) -> int:
    with opened(args) as (_, store):
        batch = _batch(store, args.label)
        if batch["state"] not in ("awaiting_signatures", "signed"):
            raise CommandError(
                f"batch {args.label} is {batch['state']}: too late to cancel "
                "(a fee bump or a new batch is the way forward)"
            )
        with store.write() as db:
            released = 0
            for request in store.all(
                "SELECT id FROM requests WHERE batch_id = ? AND state IN ('open', 'signed')",
                batch["id"],
            ):
                db.execute("UPDATE requests SET state = 'cancelled' WHERE id = ?", (request["id"],))
                released += release_coins(store, request["id"])
            db.execute("UPDATE batches SET state = 'cancelled' WHERE id = ?", (batch["id"],))
            store.event(
                "batch_cancelled",
                f"batch {args.label} cancelled; {released} coin(s) released",
                batch_id=batch["id"],
            )
        print(
            f"batch {args.label} cancelled; {released} coin(s) released. If the appliance "
            "already signed it, its journal will refuse a conflicting spend of those coins "
            "until a replacement is approved."
        )
    return 0


def run_sync(config: Config, store: Store) -> SyncReport:
    """Tracking first (so spends are attributed), then coins, re-sends and finality."""
    rpc = config.rpc()
    report = SyncReport()
    wallets = store.all("SELECT name, birth_height FROM wallets")
    start = min((w["birth_height"] for w in wallets), default=rpc.block_count())
    track(store, rpc, report, start)
    for row in wallets:
        sync_coins(store, rpc, load_wallet(store, row["name"]), report)
    rebroadcast(store, rpc, report)
    confirmations(store, report.tip, config.confirmations)
    return report


def sync_command(args: argparse.Namespace) -> int:
    with opened(args) as (config, store):
        report = run_sync(config, store)
        print(
            f"tip {report.tip}: {report.blocks_walked} block(s) walked, "
            f"{report.new_coins} new coin(s), {report.reorged_blocks} block(s) reorged, "
            f"{len(report.rebroadcasts)} re-sent, {len(report.confirmed)} confirmed"
        )
        for alert in report.alerts:
            print(f"ALERT: {alert}")
    return 3 if report.alerts else 0


def batch_status(store: Store, tip: int | None, required: int) -> list[dict[str, Any]]:
    rows = store.all(
        "SELECT b.id, b.label, b.state, b.purpose, (SELECT COUNT(*) FROM payouts p WHERE "
        "p.batch_id = b.id) AS payouts, (SELECT COALESCE(SUM(amount), 0) FROM payouts p WHERE "
        "p.batch_id = b.id) AS total FROM batches b ORDER BY b.id"
    )
    out = []
    for row in rows:
        sent = store.one(
            "SELECT bc.* FROM broadcasts bc JOIN requests r ON r.id = bc.request_id "
            "WHERE r.batch_id = ? AND bc.state != 'replaced' ORDER BY bc.id DESC "
            "LIMIT 1",
            row["id"],
        )
        depth = (tip - sent["height"] + 1) if sent and sent["height"] is not None and tip else 0
        out.append(
            {
                "label": row["label"],
                "state": row["state"],
                "payouts": row["payouts"],
                "sats": row["total"],
                "txid": sent["txid"] if sent else None,
                "confirmations": depth,
                "required": required,
                "sends": sent["sends"] if sent else 0,
            }
        )
    return out


def _tip(config: Config) -> int | None:
    """The node's height when it answers; status still shows stored states without it."""
    try:
        return config.rpc().block_count()
    except (ChainUnavailable, RpcError):
        return None


def status_command(args: argparse.Namespace) -> int:
    with opened(args) as (config, store):
        tip = run_sync(config, store).tip if args.sync else _tip(config)
        batches = batch_status(store, tip, config.confirmations)
        if args.label:
            batches = [b for b in batches if b["label"] == args.label]
            if not batches:
                raise CommandError(f"no batch labelled {args.label!r}")
        alerts = [
            dict(r)
            for r in store.all(
                "SELECT id, time, kind, message FROM events WHERE severity = 'alert' AND "
                "acknowledged IS NULL ORDER BY id"
            )
        ]
        print(json.dumps({"tip": tip, "batches": batches, "alerts": alerts}, indent=2))
    return 3 if alerts else 0


def evidence_command(args: argparse.Namespace) -> int:
    with opened(args) as (_, store):
        document = export_evidence(store)
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(document)
    except OSError as exc:
        raise CommandError(f"{args.out}: {exc.strerror or exc}") from exc
    print(f"coordinator evidence written to {args.out} ({len(document)} bytes)")
    return 0


def acknowledge_command(args: argparse.Namespace) -> int:
    """An alert stays open (status exits 3) until someone records what they did about it."""
    with opened(args) as (_, store):
        row = store.one("SELECT * FROM events WHERE id = ? AND severity = 'alert'", args.alert)
        if row is None:
            raise CommandError(f"no alert with id {args.alert}")
        if row["acknowledged"] is not None:
            raise CommandError(f"alert {args.alert} was acknowledged: {row['acknowledged']}")
        with store.write() as db:
            db.execute("UPDATE events SET acknowledged = ? WHERE id = ?", (args.note, args.alert))
            store.event("alert_acknowledged", f"alert {args.alert} acknowledged: {args.note}")
    print(f"alert {args.alert} acknowledged")
    return 0
