"""``watch``: the always-on monitor (:mod:`online_coordinator.monitor`), run by systemd
(``contrib/systemd/coldstation-watch.service``) or by hand."""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

from online_coordinator.commands.common import CommandError, add_state
from online_coordinator.config import load_config
from online_coordinator.monitor import (
    Metrics,
    MonitorError,
    WatchSettings,
    Webhook,
    deliver,
    watch_round,
)
from online_coordinator.store import Store


def register(commands: argparse._SubParsersAction) -> None:
    watch = add_state(
        commands.add_parser("watch", help="sync on every block and raise alerts (a daemon)")
    )
    watch.add_argument("--interval", type=float, default=30.0, help="seconds between rounds")
    watch.add_argument("--rounds", type=int, default=0, help="stop after N rounds (0: never)")
    watch.add_argument("--webhook", help="POST each alert here (https://, or http://localhost)")
    watch.add_argument(
        "--webhook-secret-file", type=Path, help="the HMAC key (32+ bytes, mode 600)"
    )
    watch.add_argument(
        "--metrics-port", type=int, default=0, help="serve Prometheus metrics on this port"
    )
    watch.add_argument("--metrics-host", default="127.0.0.1")
    watch.add_argument(
        "--unconfirmed-blocks",
        type=int,
        default=6,
        help="alert when a payment is not in a block after this many (default 6)",
    )
    watch.add_argument(
        "--reorg-depth", type=int, default=2, help="alert on reorgs this deep (default 2)"
    )
    watch.set_defaults(handler=watch_command)


def watch_command(args: argparse.Namespace) -> int:
    try:
        settings = WatchSettings(args.unconfirmed_blocks, args.reorg_depth)
        webhook = _webhook(args)
    except MonitorError as exc:
        raise CommandError(str(exc)) from None
    metrics = _metrics(args)
    done = 0
    with Store.open(load_config(args.state).database) as store:
        while True:
            try:
                result = watch_round(load_config(args.state), store, settings)
            except Exception as exc:  # the monitor must outlive any one bad round
                print(f"round failed: {str(exc).splitlines()[0][:300]}", file=sys.stderr)
                done += 1
                if args.rounds and done >= args.rounds:
                    return 1
                time.sleep(args.interval)
                continue
            line = f"tip {result.tip if result.tip is not None else '?'}"
            if result.raised:
                line += f"; ALERT {', '.join(result.raised)}"
            if result.cleared:
                line += f"; cleared {', '.join(result.cleared)}"
            if webhook is not None:
                sent, problem = deliver(store, webhook)
                line += f"; {sent} alert(s) delivered" + (f"; {problem}" if problem else "")
            if metrics is not None:
                metrics.update(store, result)
            print(line, flush=True)
            done += 1
            if args.rounds and done >= args.rounds:
                return 0
            time.sleep(args.interval)


def _webhook(args: argparse.Namespace) -> Webhook | None:
    if args.webhook is None:
        if args.webhook_secret_file is not None:
            raise MonitorError("--webhook-secret-file without --webhook")
        return None
    if args.webhook_secret_file is None:
        raise MonitorError("--webhook needs --webhook-secret-file (the HMAC key)")
    return Webhook.from_file(args.webhook, args.webhook_secret_file)


def _metrics(args: argparse.Namespace) -> Metrics | None:
    if not args.metrics_port:
        return None
    if importlib.util.find_spec("prometheus_client") is None:
        raise CommandError(
            "metrics need the 'watch' extra (prometheus_client): pip install 'coldstation[watch]'"
        )
    from prometheus_client import start_http_server

    metrics = Metrics()
    start_http_server(args.metrics_port, addr=args.metrics_host, registry=metrics.registry)
    return metrics
