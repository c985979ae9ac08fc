"""``coldstation-coordinator watch``: the always-on monitor (issue 19, REQUIREMENTS 25).

Each round asks the node for its tip, syncs when there is a new block (the same
``sync`` the command line runs: tracking, coins, settling, finality), then checks every
condition ops must hear about without running anything:

==========================  ==============================================================
``unknown_outflow``          coins of ours spent by a transaction no approved request
                             built (raised by the sync itself, as on the command line)
``node_unavailable``         the node does not answer (or refuses to take a re-sent payment)
``wrong_chain``              the node is on another chain than ``network``
``no_fee_estimate``          the node has no fee estimate for ``[fees] target_blocks``
``broadcast_unconfirmed``    a payment sent (or being sent) is still not in a block after
                             ``unconfirmed_blocks`` blocks
``deep_reorg``               a reorg orphaned ``reorg_depth`` blocks or more
``low_fresh_addresses``      a fixed-key wallet is running out of fresh addresses
``deposit_to_inactive_key``  a coin paid to a key its station suspended or archived (raised
                             by the sync; module ``key_states``)
==========================  ==============================================================

The sync's own alerts (``unknown_outflow``, ``deposit_to_inactive_key``, and
``cancelled_request_confirmed``: a batch cancelled here that was signed and mined anyway)
reach the webhook as they are. Every alert is an ``events`` row of severity ``alert`` (so
``status`` shows it and ``acknowledge`` closes it). A condition raises one alert when it
becomes true and none while it stays true, across restarts (``watch:*`` keys in the meta
table); when it clears, an ``info`` event says so and it may alert again later.

Alerts leave by a webhook (:class:`Webhook`): an HTTP POST of one JSON alert, signed with
HMAC-SHA256 over the body under a secret only the receiver and the monitor hold
(``X-Coldstation-Signature: sha256=HEX``), with its event id as the delivery id
(``X-Coldstation-Delivery``). Delivery is in order and at least once: the cursor
(``webhook_cursor``) moves past an alert only when the receiver answered 2xx, after up to
``attempts`` tries with backoff, so a receiver that is down gets everything later, and a
receiver that deduplicates by delivery id sees each alert exactly once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from online_coordinator.chain.identity import ChainMismatch
from online_coordinator.chain.rpc import ChainUnavailable, RpcError
from online_coordinator.config import Config
from online_coordinator.store import Store
from online_coordinator.sync import SyncReport, run_sync
from online_coordinator.wallet import address_warnings

ALERT_KINDS = (
    "unknown_outflow",
    "node_unavailable",
    "wrong_chain",
    "no_fee_estimate",
    "broadcast_unconfirmed",
    "deep_reorg",
    "low_fresh_addresses",
    "deposit_to_inactive_key",
)
SIGNATURE_HEADER = "X-Coldstation-Signature"
DELIVERY_HEADER = "X-Coldstation-Delivery"
CURSOR_KEY = "webhook_cursor"
MIN_SECRET_BYTES = 32


class MonitorError(ValueError):
    """A monitor setting or webhook secret that cannot be used."""


@dataclass(frozen=True)
class WatchSettings:
    unconfirmed_blocks: int = 6
    reorg_depth: int = 2

    def __post_init__(self) -> None:
        if self.unconfirmed_blocks < 1 or self.reorg_depth < 1:
            raise MonitorError("--unconfirmed-blocks and --reorg-depth must be at least 1")


@dataclass
class Round:
    """What one round saw and did."""

    tip: int | None = None
    synced: bool = False
    raised: list[str] = field(default_factory=list)  # alert kinds raised this round
    cleared: list[str] = field(default_factory=list)
    report: SyncReport | None = None


def watch_round(config: Config, store: Store, settings: WatchSettings) -> Round:
    """One round of the monitor (see the module docstring). ``config`` must be freshly
    loaded: its node client, once checked, is cached."""
    result = Round()
    conditions = _Conditions(store, result)
    try:
        rpc = config.rpc()
        tip = rpc.block_count()
    except ChainMismatch as exc:
        conditions.hold("wrong_chain", "node", str(exc))
        return result
    except ChainUnavailable as exc:
        conditions.hold("node_unavailable", "node", f"node unavailable: {exc}")
        return result
    except RpcError as exc:  # it answers, but not as a node should: watch on, and say so
        conditions.hold("node_unavailable", "node", f"the node refused: {exc}")
        return result
    conditions.clear("wrong_chain", "node", "the node is on the configured chain again")
    result.tip = tip
    last = store.meta("watch:tip")
    try:
        if last != str(tip) or _in_flight(store):
            result.report = run_sync(store, rpc, config.confirmations)
            result.synced = True
            store.set_meta("watch:tip", str(tip))
        estimate, reason = rpc.fee_estimate(config.target_blocks)
    except ChainUnavailable as exc:
        conditions.hold("node_unavailable", "node", f"node unavailable: {exc}")
    except RpcError as exc:  # a reply the sync cannot use: the monitor keeps watching
        conditions.hold("node_unavailable", "node", f"the node refused: {exc}")
    else:
        conditions.clear("node_unavailable", "node", "the node answers again")
        if estimate is None:
            conditions.hold(
                "no_fee_estimate",
                "fees",
                f"the node has no fee estimate for {config.target_blocks} blocks "
                f"({reason}): batches on mainnet need --fee-rate",
            )
        else:
            conditions.clear("no_fee_estimate", "fees", "the node has a fee estimate again")
    if result.report is not None:
        result.raised.extend(result.report.alert_kinds)
    _reorgs(store, settings, conditions)
    _unconfirmed(store, tip, settings, conditions)
    _addresses(store, conditions)
    return result


def _reorgs(store: Store, settings: WatchSettings, conditions: _Conditions) -> None:
    """Blocks orphaned since the last round, counted from the store's own blocks table
    (durable: a monitor that stopped between the sync and this check still alerts)."""
    orphaned = store.row("SELECT COUNT(*) AS n FROM blocks WHERE state = 'orphaned'")["n"]
    seen = int(store.meta("watch:orphaned") or 0)
    if orphaned == seen:
        return
    with store.write():
        store.set_meta("watch:orphaned", str(orphaned))
        if orphaned - seen >= settings.reorg_depth:
            conditions.raise_once(
                "deep_reorg",
                f"a reorg orphaned {orphaned - seen} block(s) (alert from "
                f"{settings.reorg_depth}): payments were moved back and re-sent as needed",
            )


def _in_flight(store: Store) -> bool:
    row = store.one("SELECT 1 FROM broadcasts WHERE state IN ('sending', 'mempool') LIMIT 1")
    return row is not None


def _unconfirmed(store: Store, tip: int, settings: WatchSettings, conditions: _Conditions) -> None:
    """Payments in flight, each first seen in flight at some tip: alert once it is
    ``unconfirmed_blocks`` blocks old without a block of its own."""
    pending = store.all("SELECT txid FROM broadcasts WHERE state IN ('sending', 'mempool')")
    waiting = {row["txid"] for row in pending}
    for txid in waiting:
        seen = store.meta(f"watch:since:{txid}")
        if seen is None:
            store.set_meta(f"watch:since:{txid}", str(tip))
            continue
        if tip - int(seen) >= settings.unconfirmed_blocks:
            conditions.hold(
                "broadcast_unconfirmed",
                txid,
                f"payment {txid} is not in a block {tip - int(seen)} block(s) after it was "
                "sent: check its fee (batch bump) and the node's mempool",
            )
    for row in store.all("SELECT key FROM meta WHERE key LIKE 'watch:since:%'"):
        txid = row["key"].removeprefix("watch:since:")
        if txid not in waiting:
            with store.write() as db:
                db.execute("DELETE FROM meta WHERE key = ?", (row["key"],))
            conditions.clear("broadcast_unconfirmed", txid, f"payment {txid} is in a block")


def _addresses(store: Store, conditions: _Conditions) -> None:
    low = {w["wallet"]: w["message"] for w in address_warnings(store)}
    for name, message in low.items():
        conditions.hold("low_fresh_addresses", name, message)
    for row in store.all("SELECT name FROM wallets"):
        if row["name"] not in low:
            conditions.clear(
                "low_fresh_addresses", row["name"], f"wallet {row['name']} has fresh addresses"
            )


class _Conditions:
    """Alerts raised once per condition (``watch:on:KIND:SUBJECT`` in the meta table)."""

    def __init__(self, store: Store, result: Round) -> None:
        self.store, self.result = store, result

    def hold(self, kind: str, subject: str, message: str) -> None:
        key = f"watch:on:{kind}:{subject}"
        if self.store.meta(key) == "1":
            return
        with self.store.write():
            self.store.set_meta(key, "1")
            self.store.event(kind, message, severity="alert")
        self.result.raised.append(kind)

    def clear(self, kind: str, subject: str, message: str) -> None:
        key = f"watch:on:{kind}:{subject}"
        if self.store.meta(key) != "1":
            return
        with self.store.write():
            self.store.set_meta(key, "0")
            self.store.event(f"{kind}_cleared", message)
        self.result.cleared.append(kind)

    def raise_once(self, kind: str, message: str) -> None:
        self.store.event(kind, message, severity="alert")
        self.result.raised.append(kind)


# -- the webhook ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Webhook:
    """Where alerts are POSTed, and the HMAC secret (read from a file: never argv/env)."""

    url: str
    secret: bytes = field(repr=False)
    attempts: int = 4
    backoff_s: float = 0.5
    timeout_s: float = 10.0

    @classmethod
    def from_file(cls, url: str, secret_file: Path) -> Webhook:
        check_webhook_url(url)
        try:
            mode = secret_file.stat().st_mode
            secret = secret_file.read_bytes().strip()
        except OSError as exc:
            raise MonitorError(f"{secret_file}: {exc.strerror or exc}") from None
        if mode & 0o077:
            raise MonitorError(f"{secret_file}: the webhook secret must be mode 600")
        if len(secret) < MIN_SECRET_BYTES:
            raise MonitorError(f"{secret_file}: the webhook secret must be 32 bytes or more")
        return cls(url, secret)

    def sign(self, body: bytes) -> str:
        return "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()


def check_webhook_url(url: str) -> str:
    """https to any host, or plain http to this machine only; no user or password in it."""
    parts = urllib.parse.urlsplit(url)
    local = parts.hostname in ("localhost", "127.0.0.1", "::1")
    secure = parts.scheme == "https" or (parts.scheme == "http" and local)
    if not secure or not parts.hostname or parts.username is not None:
        raise MonitorError(f"webhook {url!r} must be https:// (or http://localhost)")
    return url


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is a failed delivery (a GET to elsewhere is not the alert delivered)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def alert_body(row: Any) -> bytes:
    """One alert as the webhook receives it (JSON, keys sorted)."""
    plain = {
        "id": row["id"],
        "time": row["time"],
        "kind": row["kind"],
        "message": row["message"],
        "batch_id": row["batch_id"],
        "source": "coldstation-coordinator",
    }
    return json.dumps(plain, sort_keys=True).encode()


def deliver(
    store: Store, webhook: Webhook, sleep: Callable[[float], None] = time.sleep
) -> tuple[int, str | None]:
    """POST every alert past the cursor, in order; (delivered, why it stopped or None)."""
    cursor = int(store.meta(CURSOR_KEY) or 0)
    delivered = 0
    rows = store.all("SELECT * FROM events WHERE severity = 'alert' AND id > ? ORDER BY id", cursor)
    for row in rows:
        body = alert_body(row)
        problem = _post(webhook, body, str(row["id"]), sleep)
        if problem is not None:
            return delivered, f"alert {row['id']} not delivered: {problem} (kept for later)"
        store.set_meta(CURSOR_KEY, str(row["id"]))
        delivered += 1
    return delivered, None


def _post(
    webhook: Webhook, body: bytes, delivery: str, sleep: Callable[[float], None]
) -> str | None:
    problem = "not tried"
    for attempt in range(webhook.attempts):
        if attempt:
            sleep(webhook.backoff_s * 2 ** (attempt - 1))
        request = urllib.request.Request(
            webhook.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: webhook.sign(body),
                DELIVERY_HEADER: delivery,
                "User-Agent": "coldstation-watch",
            },
        )
        try:
            with _OPENER.open(request, timeout=webhook.timeout_s) as response:
                if 200 <= response.status < 300:
                    return None
                problem = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            problem = str(getattr(exc, "reason", exc))
    return problem


# -- metrics ----------------------------------------------------------------------------------


class Metrics:
    """The monitor's Prometheus metrics (prometheus_client), on its own registry."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry()
        self.tip = Gauge("coldstation_chain_tip_height", "The node's tip", registry=self.registry)
        self.node_up = Gauge(
            "coldstation_node_up", "1 when the node answered this round", registry=self.registry
        )
        self.last_round = Gauge(
            "coldstation_last_round_timestamp_seconds",
            "When the last round ended",
            registry=self.registry,
        )
        self.open_alerts = Gauge(
            "coldstation_open_alerts", "Alerts nobody acknowledged", registry=self.registry
        )
        self.undelivered = Gauge(
            "coldstation_webhook_undelivered_alerts",
            "Alerts the webhook has not yet taken",
            registry=self.registry,
        )
        self.balance = Gauge(
            "coldstation_wallet_balance_sat",
            "Confirmed and unconfirmed coins of each wallet, in satoshis",
            ["wallet"],
            registry=self.registry,
        )
        self.batches = Gauge(
            "coldstation_batches", "Batches by state", ["state"], registry=self.registry
        )
        self.rounds = Counter("coldstation_watch_rounds", "Monitor rounds", registry=self.registry)
        # Not measured yet: NaN, so a scrape before the first round ends neither reads as
        # "node down" (an alert on node_up == 0 would fire at every start) nor as tip 0.
        self.node_up.set(math.nan)
        self.tip.set(math.nan)
        self.alerts = Counter(
            "coldstation_alerts_raised", "Alerts raised, by kind", ["kind"], registry=self.registry
        )

    def update(self, store: Store, result: Round) -> None:
        self.rounds.inc()
        self.node_up.set(0 if result.tip is None else 1)
        if result.tip is not None:
            self.tip.set(result.tip)
        for kind in result.raised:
            self.alerts.labels(kind).inc()
        self.open_alerts.set(
            store.row(
                "SELECT COUNT(*) AS n FROM events WHERE severity = 'alert' AND acknowledged IS NULL"
            )["n"]
        )
        cursor = int(store.meta(CURSOR_KEY) or 0)
        self.undelivered.set(
            store.row(
                "SELECT COUNT(*) AS n FROM events WHERE severity = 'alert' AND id > ?", cursor
            )["n"]
        )
        for row in store.all(
            "SELECT w.name, COALESCE(SUM(u.value), 0) AS sats FROM wallets w LEFT JOIN utxos u "
            "ON u.wallet_id = w.id AND u.state IN ('available', 'locked') GROUP BY w.id"
        ):
            self.balance.labels(row["name"]).set(row["sats"])
        for row in store.all("SELECT state, COUNT(*) AS n FROM batches GROUP BY state"):
            self.batches.labels(row["state"]).set(row["n"])
        self.last_round.set(time.time())


__all__ = [
    "ALERT_KINDS",
    "Metrics",
    "MonitorError",
    "WatchSettings",
    "Webhook",
    "deliver",
    "watch_round",
]
