"""Chain sync and tracking: the wallet's coins, our broadcasts, reorgs and unknown outflows.

Two views of the chain, each used for what it is good at:

* **Coins** come from ``scantxoutset`` over every inventory script (works on any Bitcoin
  Core node, pruned or not, without a node-side wallet). Full previous transactions are
  fetched once per coin with ``getrawtransaction txid false blockhash`` (no txindex
  needed), because every PSBT input carries one.
* **Events** come from walking blocks: each new block is read raw and parsed by our own
  code; a transaction that spends one of our coins is matched to an approved broadcast by
  wtxid, txid, or the exact set of outpoints it spends (REQUIREMENTS 38: a malleated txid is
  still matched). A spend that matches no approved request raises an *alert* (REQUIREMENTS
  25). Block hashes are kept per height; when the node's hash at a stored height differs,
  the blocks above the fork are marked orphaned, the confirmations they carried are undone,
  and a broadcast that fell out of the chain is re-sent as the *same bytes*, never re-paid.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from online_coordinator.chain.rpc import BitcoinCoreRPC, RpcError, ScannedOutput
from online_coordinator.store import Store, now
from online_coordinator.wallet import Wallet, extend_inventory, scripts_of
from shared.bitcoin.block import Block
from shared.bitcoin.tx import Transaction

MAX_BLOCKS_PER_SYNC = 10_000


@dataclass
class SyncReport:
    new_coins: int = 0
    gone_coins: int = 0
    tip: int = 0
    behind: int = 0
    blocks_walked: int = 0
    reorged_blocks: int = 0
    rebroadcasts: list[str] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    confirmed: list[str] = field(default_factory=list)


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
    """Walk new blocks (after undoing any reorg), then re-send what fell out of the chain."""
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
    """Blocks above ``fork`` left the chain: undo what we learnt from them."""
    orphaned = [
        r["hash"]
        for r in store.all("SELECT hash FROM blocks WHERE state = 'active' AND height > ?", fork)
    ]
    marks = ",".join("?" * len(orphaned))
    with store.write() as db:
        db.execute(f"UPDATE blocks SET state = 'orphaned' WHERE hash IN ({marks})", orphaned)
        undone = db.execute(
            f"SELECT txid FROM broadcasts WHERE block_hash IN ({marks})", orphaned
        ).fetchall()
        db.execute(
            f"UPDATE broadcasts SET block_hash = NULL, height = NULL, state = 'sent' "
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
            store.event(
                "reorg",
                f"transaction {row['txid']} left the chain in a reorg above "
                f"height {fork}; it will be re-sent unchanged",
                severity="warning",
            )
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
    if broadcast is None:
        message = (
            f"outflow without a signed request: transaction {tx.txid_hex} in block "
            f"{height} spends {', '.join(f'{t}:{v}' for t, v in ours)}"
        )
        store.event("unknown_outflow", message, severity="alert")
        report.alerts.append(message)
    else:
        _confirm(store, broadcast, tx, height, block_hash, report)
    for txid, vout in ours:
        store.db.execute(
            "UPDATE utxos SET state = 'spent', spent_by = ?, spent_block = ? "
            "WHERE txid = ? AND vout = ?",
            (tx.txid_hex, block_hash, txid, vout),
        )


def matching_broadcast(
    store: Store, tx: Transaction, outpoints: list[tuple[str, int]]
) -> sqlite3.Row | None:
    """Our broadcast this is: same wtxid, same txid, or same outpoints spent (malleated)."""
    row = store.one(
        "SELECT * FROM broadcasts WHERE wtxid = ? OR txid = ?", tx.wtxid_hex, tx.txid_hex
    )
    if row is not None:
        return row
    for candidate in store.all("SELECT * FROM broadcasts WHERE state != 'replaced'"):
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
    report.confirmed.append(tx.txid_hex)


def confirmations(store: Store, tip: int, required: int) -> None:
    """Mark batches final once their transaction has ``required`` confirmations."""
    with store.write() as db:
        for row in db.execute(
            "SELECT b.id, b.height, r.batch_id FROM broadcasts b JOIN "
            "requests r ON r.id = b.request_id WHERE b.state = 'confirmed'"
        ):
            depth = tip - row["height"] + 1
            if depth >= required:
                db.execute("UPDATE broadcasts SET state = 'final' WHERE id = ?", (row["id"],))
                db.execute(
                    "UPDATE batches SET state = 'confirmed' WHERE id = ?", (row["batch_id"],)
                )
                store.event(
                    "final",
                    f"batch {row['batch_id']} final at {depth} confirmations",
                    batch_id=row["batch_id"],
                )


def rebroadcast(store: Store, rpc: BitcoinCoreRPC, report: SyncReport) -> None:
    """Re-send, byte for byte, every broadcast that is neither confirmed nor in the mempool."""
    pending = store.all("SELECT * FROM broadcasts WHERE state = 'sent'")
    if not pending:
        return
    mempool = rpc.mempool_txids()
    for row in pending:
        if row["txid"] in mempool:
            continue
        try:
            rpc.send_raw_transaction(bytes(row["raw"]))
        except RpcError as exc:
            store.event(
                "rebroadcast_failed", f"re-sending {row['txid']} failed: {exc}", severity="warning"
            )
            continue
        with store.write() as db:
            db.execute(
                "UPDATE broadcasts SET sends = sends + 1, last_sent = ? WHERE id = ?",
                (now(), row["id"]),
            )
            store.event("rebroadcast", f"re-sent {row['txid']} unchanged", severity="warning")
        report.rebroadcasts.append(row["txid"])
