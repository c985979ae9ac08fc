"""``init`` and ``wallet ...``: configure the coordinator, import and inspect cold wallets."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from online_coordinator.commands.common import CommandError, add_state, opened
from online_coordinator.config import Config, init_state
from online_coordinator.exit_codes import ExitCode
from online_coordinator.key_states import record_key_state
from online_coordinator.tables import wallet_text
from online_coordinator.transport import receive
from online_coordinator.wallet import (
    ApplianceExport,
    add_keys,
    address_warnings,
    confirm_pin,
    create_multisig,
    import_single,
    load_wallet,
    next_address,
    parse_descriptor_source,
    read_export,
    reconcile_with_node,
    unpinned_members,
    wallet_summary,
)
from shared.wallet_formats import wallet_files


def register(commands: Any) -> None:
    init = add_state(commands.add_parser("init", help="write the configuration, create the store"))
    init.add_argument("--network", choices=["mainnet", "testnet", "signet", "regtest"])
    init.add_argument("--node-url", help="Bitcoin Core JSON-RPC URL")
    init.add_argument("--cookie", type=Path, help="the node's .cookie file")
    init.add_argument(
        "--regtest",
        type=Path,
        metavar="DATADIR",
        help="use the local regtest started by `regtest start` in DATADIR",
    )
    init.add_argument("--requester", default="ops", help="who signs requests as requester")
    init.set_defaults(handler=init_command)

    group = commands.add_parser("wallet", help="import and inspect cold wallets")
    sub = group.add_subparsers(dest="wallet_command", required=True, metavar="ACTION")
    imp = add_state(sub.add_parser("import", help="import an appliance's wallet export"))
    imp.add_argument("name")
    _export_option(imp, "repeat for a key pool")
    imp.add_argument("--birth-height", type=int, help="first block to watch (default: tip)")
    imp.set_defaults(handler=import_command)

    export = add_state(
        sub.add_parser(
            "export", help="the wallet for Bitcoin Core, Sparrow, COLDCARD and Keystone (files)"
        )
    )
    export.add_argument("name")
    export.add_argument("--out", type=Path, required=True, help="folder to write the files to")
    export.set_defaults(handler=export_command)

    more = add_state(sub.add_parser("add-keys", help="more exported keys for a wallet's pool"))
    more.add_argument("name")
    _export_option(more, "one more key; repeat for several")
    more.set_defaults(handler=add_keys_command)

    multi = add_state(sub.add_parser("multisig", help="assemble an M-of-N wallet"))
    multi.add_argument("name")
    multi.add_argument("--threshold", type=int, required=True)
    _export_option(multi, "one appliance's key", required=False)
    multi.add_argument(
        "--cosigner",
        action="append",
        default=[],
        help="a third-party key, e.g. [fp/48h/1h/0h/2h]tpub.../<0;1>/*, or a file its wallet "
        "exported: COLDCARD's xpub JSON, a single-key descriptor (Sparrow), ur:crypto-hdkey "
        "or ur:crypto-account text; Zpub/Vpub keys are read as standard",
    )
    multi.add_argument("--out", type=Path, help="write the descriptor to pin on each appliance")
    multi.add_argument("--birth-height", type=int)
    multi.set_defaults(handler=multisig_command)

    pin = add_state(sub.add_parser("confirm-pin", help="record an appliance's pin receipt"))
    pin.add_argument("name")
    pin.add_argument("receipt", help="receipt source (file, UR text, video or camera:N)")
    pin.set_defaults(handler=confirm_pin_command)

    state = add_state(
        sub.add_parser(
            "key-state",
            help="record a station's receipt that it suspended, reactivated or archived a key",
        )
    )
    state.add_argument("receipt", help="receipt source (file, UR text, video or camera:N)")
    state.set_defaults(handler=key_state_command)

    address = add_state(sub.add_parser("address", help="issue the next receive address"))
    address.add_argument("name")
    address.add_argument("--note", default="receive", help="who or what the address is for")
    address.set_defaults(handler=address_command)

    show = add_state(sub.add_parser("show", help="balance, coins and address inventory"))
    show.add_argument("name")
    show.add_argument("--json", action="store_true", help="the summary document, for machines")
    show.set_defaults(handler=show_command)

    check = add_state(sub.add_parser("reconcile", help="inventory and coins against the node"))
    check.add_argument("name")
    check.set_defaults(handler=reconcile_command)


def init_command(args: argparse.Namespace) -> int:
    node: tuple[str, Path] | Path
    if args.regtest is not None:
        network, node, where = "regtest", args.regtest, f"local regtest in {args.regtest}"
    else:
        if not (args.network and args.node_url and args.cookie):
            raise CommandError("give --network, --node-url and --cookie (or --regtest DATADIR)")
        network, node, where = args.network, (args.node_url, args.cookie), args.node_url
    path = init_state(args.state, network, node, args.requester)
    print(f"coordinator configured in {path} ({network}, node: {where}, chain checked)")
    return 0


#: What a scanned wallet export is: the station's descriptor screen, then its receipt's.
DESCRIPTOR_UR = ("crypto-output",)
RECEIPT_UR = ("bytes",)


def _export(descriptor_source: str, receipt_source: str) -> ApplianceExport:
    descriptor = parse_descriptor_source(receive(descriptor_source, expected=DESCRIPTOR_UR).data)
    return read_export(descriptor, receive(receipt_source, expected=RECEIPT_UR).data)


def _export_option(parser: argparse.ArgumentParser, what: str, required: bool = True) -> None:
    """``--export DESCRIPTOR RECEIPT``: an appliance's wallet export, from any source."""
    parser.add_argument(
        "--export",
        nargs=2,
        action="append",
        required=required,
        default=None if required else [],
        metavar=("DESCRIPTOR", "RECEIPT"),
        help=f"descriptor source and receipt source (file, UR text, video or camera:N): {what}",
    )


def _cosigner_text(value: str) -> str:
    """A ``--cosigner`` given as a key expression, or as a source another wallet wrote: a
    file (COLDCARD's xpub JSON, Sparrow's descriptor, UR text), a video or camera:N."""
    if value.startswith("camera:") or Path(value).is_file():
        try:
            return receive(value).data.decode("utf-8")
        except UnicodeDecodeError:
            raise CommandError(f"{value}: a cosigner export must be text") from None
    return value


def _birth(config: Config, given: int | None) -> int:
    """The first block to watch: given, or the node's tip (node errors go up: exit 4)."""
    if given is not None:
        if given < 0:
            raise CommandError("--birth-height must not be negative")
        return given
    return config.rpc().block_count()


def _announce(exports: list[ApplianceExport]) -> None:
    for export in exports:
        print(
            f"appliance {export.appliance_id}: audit key fingerprint "
            f"{export.audit_fingerprint} (compare with the appliance's status screen)"
        )


def import_command(args: argparse.Namespace) -> int:
    with opened(args) as (config, store):
        exports = [_export(d, r) for d, r in args.export]
        wallet = import_single(
            store, args.name, config.network, exports, _birth(config, args.birth_height)
        )
        _announce(exports)
        print(f"wallet {wallet.name}: {len(wallet.descriptors)} descriptor(s) imported")
    return 0


def add_keys_command(args: argparse.Namespace) -> int:
    with opened(args) as (_, store):
        exports = [_export(d, r) for d, r in args.export]
        wallet = add_keys(store, load_wallet(store, args.name), exports)
        _announce(exports)
        print(f"wallet {wallet.name}: {len(wallet.descriptors)} descriptor(s) in its pool")
    return 0


def multisig_command(args: argparse.Namespace) -> int:
    with opened(args) as (config, store):
        exports = [_export(d, r) for d, r in args.export]
        wallet, descriptor = create_multisig(
            store,
            args.name,
            config.network,
            args.threshold,
            exports,
            [_cosigner_text(c) for c in args.cosigner],
            _birth(config, args.birth_height),
        )
        _announce(exports)
        if args.out is not None:
            args.out.write_text(f"{descriptor}\n")
        print(descriptor)
        waiting = unpinned_members(store, wallet)
        print(f"pin it on appliance(s) {', '.join(waiting)}, then `wallet confirm-pin`")
    return 0


def confirm_pin_command(args: argparse.Namespace) -> int:
    with opened(args) as (_, store):
        wallet = load_wallet(store, args.name)
        appliance = confirm_pin(store, wallet, receive(args.receipt, expected=RECEIPT_UR).data)
        waiting = unpinned_members(store, wallet)
        print(
            f"appliance {appliance} pinned {wallet.name}; "
            + (f"still waiting for {', '.join(waiting)}" if waiting else "wallet ready")
        )
    return 0


def key_state_command(args: argparse.Namespace) -> int:
    with opened(args) as (_, store):
        change = record_key_state(store, receive(args.receipt, expected=RECEIPT_UR).data)
    held = f"wallet(s) {', '.join(change.wallets)}"
    if not change.current:
        print(f"recorded {change.key}, but a newer receipt for the key stays in force ({held})")
    elif change.key.state == "active":
        print(f"{change.key}: {held} receive to it again")
    else:
        print(f"{change.key}: {held} issue no address on it, and a deposit to it alerts")
    for alert in change.alerts:
        print(f"ALERT: {alert}")
    return ExitCode.ALERT if change.alerts else 0


def address_command(args: argparse.Namespace) -> int:
    with opened(args) as (_, store):
        wallet = load_wallet(store, args.name)
        slot = next_address(store, wallet, change=False, note=args.note)
        print(slot.address)
        for warning in address_warnings(store):
            if warning["wallet"] == wallet.name:
                print(f"warning: {warning['message']}", file=sys.stderr)
    return 0


def export_command(args: argparse.Namespace) -> int:
    with opened(args) as (_, store):
        wallet = load_wallet(store, args.name)
        files = wallet_files([d for _, d in wallet.descriptors], wallet.name)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (args.out / name).write_text(text)
    except OSError as exc:
        raise CommandError(f"{args.out}: {exc.strerror or exc}") from exc
    for name in files:
        print(f"wrote {args.out / name}")
    if wallet.kind == "multisig" and "coldcard-multisig.txt" not in files:
        print(
            "no COLDCARD setup file: COLDCARD registers a multisig only when every key is an "
            "xpub with its origin (hsm-keys are plain keys; bip32-seed keys are xpubs)",
            file=sys.stderr,
        )
    return 0


def show_command(args: argparse.Namespace) -> int:
    with opened(args) as (_, store):
        summary = wallet_summary(store, load_wallet(store, args.name).id)
    print(json.dumps(summary, indent=2) if args.json else wallet_text(summary))
    return 0


def reconcile_command(args: argparse.Namespace) -> int:
    """Exit 0 when every address re-derives and the coin table matches the node, else 1."""
    with opened(args) as (config, store):
        wallet = load_wallet(store, args.name)
        result = reconcile_with_node(store, wallet, config.rpc())
        print(
            json.dumps(
                {
                    "wallet": wallet.name,
                    "addresses": result.addresses,
                    "orphan_addresses": result.orphan_addresses,
                    "unknown_outputs": result.unknown_outputs,
                    "missing_outputs": result.missing_outputs,
                },
                indent=2,
            )
        )
    return 0 if result.clean else 1
