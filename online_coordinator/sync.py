"""Chain sync and tracking: the wallet's coins, our broadcasts, reorgs and unknown outflows.

Two views of the chain, each used for what it is good at:

* **Coins** come from ``scantxoutset`` over every inventory script (works on any Bitcoin
  Core node, pruned or not, without a node-side wallet). Full previous transactions are
  fetched once per coin with ``getrawtransaction txid false blockhash`` (no txindex
  needed), because every PSBT input carries one.
* **Events** come from walking blocks: each new block is read raw and parsed by our own
  code; a transaction that spends one of our coins is matched to one of our broadcasts by
  wtxid, txid, or the exact set of outpoints it spends (REQUIREMENTS 38: a malleated txid is
  still matched), or else to an approved request by its txid (a signed transaction someone
  else broadcast). A spend that matches neither raises an *alert* (REQUIREMENTS 25). Block
  hashes are kept per height; when the node's hash at a stored height differs, the blocks
  above the fork are marked orphaned, the confirmations they carried are undone, and a
  broadcast that fell out of the chain is re-sent as the *same bytes*, never re-paid.

**The words.** A payout goes ``signed`` -> ``sending`` (its exact bytes are recorded before
the node is asked) -> ``in_mempool`` -> ``confirmed`` (n confirmations) -> ``final`` (at the
configured depth). A reorg moves it back: out of ``final`` and ``confirmed`` to
``in_mempool`` or ``sending`` until it is mined again. Broadcast rows store ``sending``,
``mempool``, ``confirmed``, ``final`` (and ``replaced`` by a fee bump, ``abandoned`` when a
never-attempted send is cancelled); the batch carries the matching word, and ``status``
re-checks it against the node (:func:`batch_status`).

**Settling.** A broadcast row still ``sending`` (the reply was lost, the process died, the
node restarted) is looked up in the node's mempool: found, it is recorded as sent; not
found, the same bytes are sent again. The coordinator never builds a new transaction for a
payout that has a broadcast row, and never alerts on a transaction it recorded itself.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from online_coordinator import faults
from online_coordinator.chain.rpc import BitcoinCoreRPC, RpcError, ScannedOutput
from online_coordinator.store import Store, now, outcome
from online_coordinator.wallet import Wallet, extend_inventory, load_wallet, scripts_of
from shared.bitcoin.block import Block
from shared.bitcoin.tx import Transaction

MAX_BLOCKS_PER_SYNC = 10_000
#: Core's "Transaction outputs already in utxo set" (sendrawtransaction of a mined tx).
RPC_VERIFY_ALREADY_IN_UTXO_SET = -27
#: Broadcast row state -> the word for the payout (and its batch).
WORDS = {"sending": "sending", "mempool": "in_mempool", "confirmed": "confirmed",
         "final": "final"}  # fmt: skip
#: Rows that are not (or no longer) the batch's payment.
DEAD_ROWS = ("replaced", "abandoned")


@dataclass
class SyncReport:
    new_coins: int = 0
    gone_coins: int = 0
    tip: int = 0
    behind: int = 0
    blocks_walked: int = 0
    reorged_blocks: int = 0
    rebroadcasts: list[str] = field(default_factory=list)
    found: list[str] = field(default_factory=list)  # 'sending' rows found in the mempool
    alerts: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    confirmed: list[str] = field(default_factory=list)
    final: list[str] = field(default_factory=list)


def run_sync(store: Store, rpc: BitcoinCoreRPC, required: int) -> SyncReport:
    """Tracking first (so spends are attributed), then coins, settling and finality.

    Each step commits as it goes, so a crash or a full disk leaves what was learnt so far
    and the next sync carries on from there.
    """
    with outcome("sync stopped part way: what it recorded so far is kept; run sync again"):
        report = walk_chain(store, rpc)
        for row in store.all("SELECT name FROM wallets ORDER BY id"):
            sync_coins(store, rpc, load_wallet(store, row["name"]), report)
        faults.point("sync.coins")
        settle_broadcasts(store, rpc, report)
        faults.point("sync.settled")
        update_finality(store, report.tip, required, report)
        store.set_meta("last_sync", json.dumps({"height": report.tip, "time": now()}))
    return report


def walk_chain(store: Store, rpc: BitcoinCoreRPC, report: SyncReport | None = None) -> SyncReport:
    """Walk every block not yet seen (from the wallets' earliest birth height)."""
    report = report or SyncReport()
    births = [r["birth_height"] for r in store.all("SELECT birth_height FROM wallets")]
    start = min(births) if births else rpc.block_count()
    track(store, rpc, report, start)
    return report


# -- coins ----------------------------------------------------------------------------------


def sync_coins(store: Store, rpc: BitcoinCoreRPC, wallet: Wallet, report: SyncReport) -> None:
    """Bring the wallet's coin table in line with the node's UTXO set."""
    for _ in range(100):  # each round can mark addresses used and extend the gap window
        scripts = scripts_of(store, wallet)
        found = rpc.scan_scripts(list(scripts))
        fresh = _record_coins(store, rpc, wallet, scripts, found)
        report.new_coins += fresh
        if not extend_inventory(store, wallet):
            break
    _mark_gone(store, wallet, {(c.txid, c.vout) for c in found}, report)


def _record_coins(
    store: Store,
    rpc: BitcoinCoreRPC,
    wallet: Wallet,
    scripts: dict[bytes, int],
    found: list[ScannedOutput],
) -> int:
    known = {
        (r["txid"], r["vout"])
        for r in store.all("SELECT txid, vout FROM utxos WHERE wallet_id = ?", wallet.id)
    }
    new = [c for c in found if (c.txid, c.vout) not in known]
    if not new:
        return 0
    heights = sorted({c.height for c in new})
    hashes = dict(zip(heights, rpc.block_hashes(heights), strict=True))
    txids = sorted({(c.txid, hashes[c.height]) for c in new})
    raws = dict(zip((t for t, _ in txids), rpc.raw_transactions(txids), strict=True))
    parsed = {txid: Transaction.parse(raw) for txid, raw in raws.items()}
    seen = now()
    with store.write() as db:
        db.executemany("INSERT OR IGNORE INTO transactions (txid, raw) VALUES (?, ?)", raws.items())
        for coin in new:
            _check_prev(parsed[coin.txid], coin)
            address_id = scripts[coin.script_pubkey]
            db.execute(
                "INSERT INTO utxos (txid, vout, wallet_id, address_id, value, height, coinbase, "
                "state, first_seen) VALUES (?, ?, ?, ?, ?, ?, ?, 'available', ?)",
                (coin.txid, coin.vout, wallet.id, address_id, coin.value, coin.height,
                 coin.coinbase, seen),
            )  # fmt: skip
            db.execute("UPDATE addresses SET state = 'used' WHERE id = ?", (address_id,))
        store.event("coins_found", f"wallet {wallet.name}: {len(new)} new coin(s)")
    return len(new)


def _check_prev(tx: Transaction, coin: ScannedOutput) -> None:
    """The node's previous transaction must really hold the coin it reported."""
    if tx.txid_hex != coin.txid or coin.vout >= len(tx.outputs):
        raise RpcError(
            -1, f"node returned a transaction that does not hold {coin.txid}:{coin.vout}"
        )
    out = tx.outputs[coin.vout]
    if out.value != coin.value or out.script_pubkey != coin.script_pubkey:
        raise RpcError(-1, f"node's scan and transaction disagree about {coin.txid}:{coin.vout}")


def _mark_gone(
    store: Store, wallet: Wallet, present: set[tuple[str, int]], report: SyncReport
) -> None:
    """Reconcile with the scan: a coin missing without a spend we saw in a block had its
    funding transaction reorged away (orphaned); an orphaned coin that is back is revived."""
    rows = store.all(
        "SELECT txid, vout, state, request_id FROM utxos WHERE wallet_id = ? AND "
        "state IN ('available', 'locked', 'orphaned')",
        wallet.id,
    )
    with store.write() as db:
        for row in rows:
            key = (row["txid"], row["vout"])
            if row["state"] == "orphaned" and key in present:
                revived = "locked" if row["request_id"] is not None else "available"
                db.execute(
                    "UPDATE utxos SET state = ? WHERE txid = ? AND vout = ?", (revived, *key)
                )
            elif row["state"] != "orphaned" and key not in present:
                db.execute("UPDATE utxos SET state = 'orphaned' WHERE txid = ? AND vout = ?", key)
                store.event(
                    "coin_orphaned",
                    f"coin {key[0]}:{key[1]} is no longer in the "
                    "node's UTXO set and no block we saw spent it",
                    severity="warning",
                )
                report.gone_coins += 1


# -- blocks -----------------------------------------------------------------------------------


def track(store: Store, rpc: BitcoinCoreRPC, report: SyncReport, start_height: int) -> None:
    """Walk new blocks (after undoing any reorg); each block commits on its own."""
    tip = rpc.block_count()
    report.tip = tip
    fork = _find_fork(store, rpc)
    if fork is not None:
        _undo_above(store, fork, report)
    top = store.one("SELECT MAX(height) AS h FROM blocks WHERE state = 'active'")["h"]
    first = start_height if top is None else top + 1
    heights = list(range(first, min(tip, first + MAX_BLOCKS_PER_SYNC - 1) + 1))
    report.behind = tip - heights[-1] if heights else 0  # the next sync goes on from there
    ours = _wallet_scripts(store)
    for height, block_hash in zip(
        heights, rpc.block_hashes(heights) if heights else [], strict=True
    ):
        block = Block.parse(rpc.raw_block(block_hash))
        _walk_block(store, height, block_hash, block, ours, report)
        report.blocks_walked += 1
        faults.point("sync.block")


def _wallet_scripts(store: Store) -> dict[bytes, tuple[int, int]]:
    """Every inventory script -> (wallet id, address id), across wallets."""
    rows = store.all("SELECT id, wallet_id, script FROM addresses")
    return {bytes(r["script"]): (r["wallet_id"], r["id"]) for r in rows}


def _find_fork(store: Store, rpc: BitcoinCoreRPC) -> int | None:
    """Highest stored height still on the node's chain, if any stored block was replaced."""
    rows = store.all(
        "SELECT height, hash FROM blocks WHERE state = 'active' ORDER BY height DESC LIMIT 200"
    )
    if not rows:
        return None
    tip = rpc.block_count()
    live = [r for r in rows if r["height"] <= tip]
    hashes = rpc.block_hashes([r["height"] for r in live]) if live else []
    node = dict(zip((r["height"] for r in live), hashes, strict=True))
    for row in rows:
        if node.get(row["height"]) == row["hash"]:
            return row["height"] if row is not rows[0] else None
    return rows[-1]["height"] - 1


def _undo_above(store: Store, fork: int, report: SyncReport) -> None:
    """Blocks above ``fork`` left the chain: undo what we learnt from them.

    A payout confirmed (or final) in one of them is no longer either: it goes back to
    ``sending`` until the node shows it in its mempool or a block again.
    """
    orphaned = [
        r["hash"]
        for r in store.all("SELECT hash FROM blocks WHERE state = 'active' AND height > ?", fork)
    ]
    marks = ",".join("?" * len(orphaned))
    with store.write() as db:
        db.execute(f"UPDATE blocks SET state = 'orphaned' WHERE hash IN ({marks})", orphaned)
        undone = db.execute(
            f"SELECT b.id, b.txid, b.state, r.batch_id FROM broadcasts b JOIN requests r ON "
            f"r.id = b.request_id WHERE b.block_hash IN ({marks})",
            orphaned,
        ).fetchall()
        db.execute(
            f"UPDATE broadcasts SET block_hash = NULL, height = NULL, state = 'sending' "
            f"WHERE block_hash IN ({marks})",
            orphaned,
        )
        db.execute(
            f"UPDATE utxos SET state = CASE WHEN request_id IS NULL THEN 'available' "
            f"ELSE 'locked' END, spent_by = NULL, spent_block = NULL "
            f"WHERE spent_block IN ({marks})",
            orphaned,
        )
        for row in undone:
            was = "final" if row["state"] == "final" else "confirmed"
            message = (
                f"transaction {row['txid']} left the chain in a reorg above height {fork}: "
                f"it is no longer {was}; sync re-sends the same bytes"
            )
            store.event("reorg", message, severity="warning", batch_id=row["batch_id"])
            report.warnings.append(message)
            refresh_batch(store, row["batch_id"])
    report.reorged_blocks += len(orphaned)


def _walk_block(
    store: Store,
    height: int,
    block_hash: str,
    block: Block,
    ours: dict[bytes, tuple[int, int]],
    report: SyncReport,
) -> None:
    """Receipts first, then spends: a coin received and stolen between two syncs is still
    seen leaving (REQUIREMENTS 25)."""
    with store.write() as db:
        db.execute(
            "INSERT OR REPLACE INTO blocks (height, hash, state, seen) VALUES (?, ?, 'active', ?)",
            (height, block_hash, now()),
        )
        for position, tx in enumerate(block.transactions):
            if position:
                _spends(store, tx, height, block_hash, report)
            _receives(store, tx, height, ours, report, coinbase=position == 0)


def _receives(
    store: Store,
    tx: Transaction,
    height: int,
    ours: dict[bytes, tuple[int, int]],
    report: SyncReport,
    *,
    coinbase: bool,
) -> None:
    paid = [(vout, out) for vout, out in enumerate(tx.outputs) if out.script_pubkey in ours]
    if not paid:
        return
    store.db.execute(
        "INSERT OR IGNORE INTO transactions (txid, raw) VALUES (?, ?)",
        (tx.txid_hex, tx.serialize()),
    )
    for vout, out in paid:
        wallet_id, address_id = ours[out.script_pubkey]
        report.new_coins += store.db.execute(
            "INSERT OR IGNORE INTO utxos (txid, vout, wallet_id, address_id, value, height, "
            "coinbase, state, first_seen) VALUES (?, ?, ?, ?, ?, ?, ?, 'available', ?)",
            (tx.txid_hex, vout, wallet_id, address_id, out.value, height, coinbase, now()),
        ).rowcount
        store.db.execute("UPDATE addresses SET state = 'used' WHERE id = ?", (address_id,))


def _spends(
    store: Store, tx: Transaction, height: int, block_hash: str, report: SyncReport
) -> None:
    outpoints = [(txin.prevout.txid_hex, txin.prevout.vout) for txin in tx.inputs]
    ours = [
        o for o in outpoints if store.one("SELECT 1 FROM utxos WHERE txid = ? AND vout = ?", *o)
    ]
    if not ours:
        return
    broadcast = matching_broadcast(store, tx, outpoints)
    if broadcast is not None:
        _confirm(store, broadcast, tx, height, block_hash, report)
    else:
        request = store.one("SELECT * FROM requests WHERE txid = ?", tx.txid_hex)
        if request is not None:
            _adopt(store, request, tx, height, block_hash, report)
        else:
            message = (
                f"outflow without a signed request: transaction {tx.txid_hex} in block "
                f"{height} spends {', '.join(f'{t}:{v}' for t, v in ours)}"
            )
            store.event("unknown_outflow", message, severity="alert")
            report.alerts.append(message)
    for txid, vout in ours:
        store.db.execute(
            "UPDATE utxos SET state = 'spent', spent_by = ?, spent_block = ? "
            "WHERE txid = ? AND vout = ?",
            (tx.txid_hex, block_hash, txid, vout),
        )


def matching_broadcast(
    store: Store, tx: Transaction, outpoints: list[tuple[str, int]]
) -> sqlite3.Row | None:
    """Our broadcast this is: same wtxid, same txid, or same outpoints spent (malleated).

    Rows in every state count, ``sending`` included: the bytes were recorded before the node
    was asked, so a payment whose reply was lost is still ours. Only ``abandoned`` rows (a
    cancelled batch that never reached a node) do not: see :func:`_adopt`.
    """
    row = store.one(
        "SELECT * FROM broadcasts WHERE (wtxid = ? OR txid = ?) AND state != 'abandoned'",
        tx.wtxid_hex,
        tx.txid_hex,
    )
    if row is not None:
        return row
    for candidate in store.all("SELECT * FROM broadcasts WHERE state NOT IN " + str(DEAD_ROWS)):
        if _same_payment(Transaction.parse(bytes(candidate["raw"])), tx, outpoints):
            return candidate
    return None


def _same_payment(ours: Transaction, seen: Transaction, outpoints: list[tuple[str, int]]) -> bool:
    """Same coins spent, same outputs, same locktime: only the witness (txid) differs."""
    spent = sorted((i.prevout.txid_hex, i.prevout.vout) for i in ours.inputs)
    return (
        spent == sorted(outpoints)
        and ours.locktime == seen.locktime
        and [o.serialize() for o in ours.outputs] == [o.serialize() for o in seen.outputs]
    )


def _confirm(
    store: Store,
    broadcast: sqlite3.Row,
    tx: Transaction,
    height: int,
    block_hash: str,
    report: SyncReport,
) -> None:
    db = store.db
    db.execute(
        "UPDATE broadcasts SET block_hash = ?, height = ?, state = 'confirmed' WHERE id = ?",
        (block_hash, height, broadcast["id"]),
    )
    if tx.txid_hex != broadcast["txid"]:
        store.event(
            "malleated",
            f"broadcast {broadcast['txid']} confirmed as {tx.txid_hex} (same inputs and outputs)",
            severity="warning",
        )
    request = store.one("SELECT batch_id FROM requests WHERE id = ?", broadcast["request_id"])
    # A confirmed replacement (or original) makes every other request of the batch moot.
    db.execute(
        "UPDATE broadcasts SET state = 'replaced' WHERE id != ? AND request_id IN "
        "(SELECT id FROM requests WHERE batch_id = ?)",
        (broadcast["id"], request["batch_id"]),
    )
    refresh_batch(store, request["batch_id"])
    report.confirmed.append(tx.txid_hex)


def _adopt(
    store: Store,
    request: sqlite3.Row,
    tx: Transaction,
    height: int,
    block_hash: str,
    report: SyncReport,
) -> None:
    """An approved request's transaction in a block that this coordinator never sent.

    Someone else broadcast the signed transaction (a station's output that went astray, or
    a restored database that lost its broadcast record). It pays exactly what was approved,
    so it is recorded as this request's broadcast, with a warning; an alert only when the
    request had been cancelled here, since its payouts may then have been paid again.
    """
    batch = store.one("SELECT label FROM batches WHERE id = ?", request["batch_id"])
    values = (tx.txid_hex, tx.wtxid_hex, tx.serialize(), block_hash, height)
    updated = store.db.execute(
        "UPDATE broadcasts SET txid = ?, wtxid = ?, raw = ?, block_hash = ?, height = ?, "
        "state = 'confirmed' WHERE request_id = ?",
        (*values, request["id"]),
    ).rowcount
    if not updated:
        store.db.execute(
            "INSERT INTO broadcasts (request_id, txid, wtxid, raw, first_sent, last_sent, sends,"
            " block_hash, height, state) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, 'confirmed')",
            (request["id"], *values[:3], now(), now(), *values[3:]),
        )
    cancelled = request["state"] == "cancelled"
    store.db.execute("UPDATE requests SET state = 'broadcast' WHERE id = ?", (request["id"],))
    message = (
        f"batch {batch['label']}: approved request {bytes(request['request_id']).hex()} "
        f"confirmed as {tx.txid_hex} in block {height}, but this coordinator never sent it"
    )
    if cancelled:
        message += (
            "; the batch had been CANCELLED here, so its payouts were paid on chain: make "
            "sure no other batch pays them again"
        )
        store.event("cancelled_request_confirmed", message, severity="alert",
                    batch_id=request["batch_id"])  # fmt: skip
        report.alerts.append(message)
    else:
        store.event("adopted_broadcast", message, severity="warning",
                    batch_id=request["batch_id"])  # fmt: skip
        report.warnings.append(message)
    refresh_batch(store, request["batch_id"])
    report.confirmed.append(tx.txid_hex)


# -- the state of a payout ----------------------------------------------------------------------


def live_broadcast(store: Store, batch_id: int) -> sqlite3.Row | None:
    """The batch's current payment: its newest broadcast row that is neither replaced nor
    abandoned."""
    return store.one(
        "SELECT b.* FROM broadcasts b JOIN requests r ON r.id = b.request_id WHERE "
        f"r.batch_id = ? AND b.state NOT IN {DEAD_ROWS} ORDER BY b.id DESC LIMIT 1",
        batch_id,
    )


def refresh_batch(store: Store, batch_id: int) -> str:
    """Set the batch's word from its payment (inside the caller's transaction)."""
    row = live_broadcast(store, batch_id)
    batch = store.one("SELECT state FROM batches WHERE id = ?", batch_id)
    if row is not None:
        state = WORDS[row["state"]]
    elif batch["state"] == "cancelled":
        state = "cancelled"
    elif store.one(
        "SELECT 1 FROM requests WHERE batch_id = ? AND state = 'signed'", batch_id
    ):
        state = "signed"
    else:
        state = "awaiting_signatures"
    if state != batch["state"]:
        with store.write() as db:
            db.execute("UPDATE batches SET state = ? WHERE id = ?", (state, batch_id))
    return state


def update_finality(store: Store, tip: int, required: int, report: SyncReport) -> None:
    """``final`` at ``required`` confirmations; back to ``confirmed`` if the tip went down."""
    rows = store.all(
        "SELECT b.id, b.txid, b.height, b.state, r.batch_id, bt.label FROM broadcasts b JOIN "
        "requests r ON r.id = b.request_id JOIN batches bt ON bt.id = r.batch_id "
        "WHERE b.state IN ('confirmed', 'final')"
    )
    with store.write() as db:
        for row in rows:
            depth = tip - row["height"] + 1
            state = "final" if depth >= required else "confirmed"
            if state == row["state"]:
                continue
            db.execute("UPDATE broadcasts SET state = ? WHERE id = ?", (state, row["id"]))
            refresh_batch(store, row["batch_id"])
            if state == "final":
                store.event(
                    "final",
                    f"batch {row['label']}: {row['txid']} final at {depth} confirmations",
                    batch_id=row["batch_id"],
                )
                report.final.append(row["txid"])


# -- settling broadcasts --------------------------------------------------------------------


def settle_broadcasts(store: Store, rpc: BitcoinCoreRPC, report: SyncReport) -> None:
    """Every payment not in a block: found in the mempool, or re-sent byte for byte.

    Newest first, so a fee bump found in the mempool retires the transaction it replaced
    before that one would be (pointlessly) re-sent.
    """
    for candidate in store.all(
        "SELECT id FROM broadcasts WHERE state IN ('sending', 'mempool') ORDER BY id DESC"
    ):
        row = store.one("SELECT * FROM broadcasts WHERE id = ?", candidate["id"])
        if row is None or row["state"] not in ("sending", "mempool"):
            continue
        wtxid = rpc.mempool_wtxid(row["txid"])
        if wtxid is not None:
            if row["state"] == "sending":
                record_in_mempool(store, row, found_in_mempool(row, wtxid))
                report.found.append(row["txid"])
            continue
        _resend(store, rpc, row, report)


def found_in_mempool(row: sqlite3.Row, wtxid: str) -> str:
    """How the node holds our transaction: our bytes, or the same payment (same txid) with
    another witness, which pays exactly the same and is still ours."""
    if wtxid == row["wtxid"]:
        return "found in the node's mempool"
    return f"found in the node's mempool with another witness (wtxid {wtxid}): malleated"


def _resend(store: Store, rpc: BitcoinCoreRPC, row: sqlite3.Row, report: SyncReport) -> None:
    """Send the recorded bytes again; the attempt is counted before the node is asked."""
    with store.write() as db:
        db.execute(
            "UPDATE broadcasts SET sends = sends + 1, last_sent = ? WHERE id = ?",
            (now(), row["id"]),
        )
    faults.point("sync.resend")
    try:
        rpc.send_raw_transaction(bytes(row["raw"]))
    except RpcError as exc:
        message = resend_failure(row, exc, report.tip)
        severity = "info" if exc.code == RPC_VERIFY_ALREADY_IN_UTXO_SET else "warning"
        store.event("rebroadcast_failed", message, severity=severity)
        report.warnings.append(message)
        return
    faults.point("sync.resent")
    with outcome(
        f"{row['txid']} WAS re-sent and accepted by the node, but that is not recorded yet; "
        "the next sync records it"
    ):
        record_in_mempool(store, row, "re-sent unchanged")
    report.rebroadcasts.append(row["txid"])


def resend_failure(row: sqlite3.Row, exc: RpcError, tip: int) -> str:
    """What a failed re-send means, in words ops can act on (never the compromise alarm)."""
    txid, reason = row["txid"], exc.message
    head = f"re-sending {txid} failed ({reason})"
    if exc.code == RPC_VERIFY_ALREADY_IN_UTXO_SET:
        return f"{head}: it is in a block newer than this sync's walk; the next sync records it"
    if "non-final" in reason:
        locktime = Transaction.parse(bytes(row["raw"])).locktime
        return (
            f"{head}: its nLockTime {locktime} is above the chain's height {tip} after a "
            f"deep reorg; the node accepts it once the chain reaches height {locktime}, and "
            "sync keeps re-sending it. This is not a compromise: see the runbook on reorgs"
        )
    if "missing" in reason or "inputs-missingorspent" in reason:
        return (
            f"{head}: its coins are spent by another transaction the node has; if that one "
            "is mined and is not ours, sync raises an ALERT"
        )
    if "conflict" in reason or "insufficient fee" in reason:
        return (
            f"{head}: another transaction spending the same coins is in the node's mempool "
            "(our own fee bump, or a conflicting spend that sync will alert on if mined)"
        )
    return f"{head}; sync tries again next time"


def record_in_mempool(store: Store, row: sqlite3.Row, how: str) -> None:
    """The node has the transaction: ``mempool``, and what it replaces is retired."""
    request = store.one("SELECT * FROM requests WHERE id = ?", row["request_id"])
    with store.write() as db:
        db.execute(
            "UPDATE broadcasts SET state = 'mempool' WHERE id = ? AND state = 'sending'",
            (row["id"],),
        )
        if request["replaces"] is not None:  # the node evicted it: never re-send it
            db.execute(
                "UPDATE broadcasts SET state = 'replaced' WHERE request_id = ? AND state IN "
                "('sending', 'mempool')",
                (request["replaces"],),
            )
        refresh_batch(store, request["batch_id"])
        store.event(
            "broadcast",
            f"{row['txid']} {how} ({len(bytes(row['raw']))} bytes)",
            severity="info" if how in ("sent", "found in the node's mempool") else "warning",
            batch_id=request["batch_id"],
        )


# -- status -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeView:
    """What the node says now, for ``status``: its tip, mempool, and the block hash at each
    height where a payout of ours was recorded."""

    tip: int
    mempool: frozenset[str]
    hashes: dict[int, str]


def observe(store: Store, rpc: BitcoinCoreRPC) -> NodeView:
    """One look at the node (three round trips), read-only."""
    tip = rpc.block_count()
    heights = sorted(
        {
            r["height"]
            for r in store.all(
                "SELECT height FROM broadcasts WHERE height IS NOT NULL AND height <= ?", tip
            )
        }
    )
    hashes = dict(zip(heights, rpc.block_hashes(heights), strict=True)) if heights else {}
    return NodeView(tip, frozenset(rpc.mempool_txids()), hashes)


def batch_status(store: Store, view: NodeView | None, required: int) -> list[dict[str, Any]]:
    """Every batch with the word that is true now (``view``), or as last recorded (None)."""
    rows = store.all(
        "SELECT b.id, b.label, b.state, (SELECT COUNT(*) FROM payouts p WHERE "
        "p.batch_id = b.id) AS payouts, (SELECT COALESCE(SUM(amount), 0) FROM payouts p WHERE "
        "p.batch_id = b.id) AS total FROM batches b ORDER BY b.id"
    )
    out = []
    for row in rows:
        sent = live_broadcast(store, row["id"])
        entry: dict[str, Any] = {
            "label": row["label"],
            "state": row["state"],
            "confirmations": None,
            "required": required,
            "payouts": row["payouts"],
            "sats": row["total"],
            "txid": sent["txid"] if sent else None,
            "sends": sent["sends"] if sent else 0,
        }
        if view is None:
            if sent is not None:
                entry["note"] = "node unavailable: state as of the last sync"
        elif sent is None:
            entry["confirmations"] = None if row["state"] == "cancelled" else 0
        else:
            entry.update(_live(sent, view, required))
        out.append(entry)
    return out


def _live(sent: sqlite3.Row, view: NodeView, required: int) -> dict[str, Any]:
    """The payout's word from the node's view, whatever the last sync recorded."""
    height, block_hash = sent["height"], sent["block_hash"]
    if block_hash is not None and view.hashes.get(height) == block_hash:
        depth = view.tip - height + 1
        return {"state": "final" if depth >= required else "confirmed", "confirmations": depth}
    note = None
    if block_hash is not None:
        note = "left the chain in a reorg: no longer confirmed; sync re-sends it"
    if sent["txid"] in view.mempool:
        return {"state": "in_mempool", "confirmations": 0, **({"note": note} if note else {})}
    if note is None and sent["state"] == "mempool":
        note = "not in the node's mempool: run sync (it finds it in a block or re-sends it)"
    elif note is None:
        note = "not seen by the node yet: `batch broadcast` again or sync sends the same bytes"
    return {"state": "sending", "confirmations": 0, "note": note}
