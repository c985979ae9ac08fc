"""Chain sync and tracking: the wallet's coins, our broadcasts, reorgs and unknown outflows.

Two views of the chain, each used for what it is good at:

* **Blocks** are walked from the wallets' earliest birth height: each new block is read
  raw and parsed by our own code. Outputs paying an inventory script are our coins (the
  gap window grows as soon as an address is first used); a transaction that spends one of
  our coins is matched to one of our broadcasts by wtxid, txid, or the exact set of
  outpoints it spends (REQUIREMENTS 38: a malleated txid is still matched), or else to an
  approved request by its txid (a signed transaction someone else broadcast). A spend that
  matches neither raises an *alert* (REQUIREMENTS 25). Each transaction's txid is computed
  once, whatever its number of inputs and outputs, so a walk is linear in the chain.
* **The UTXO set** (``scantxoutset``, no node-side wallet needed) is scanned once per
  inventory script, for the coins the walk could not see: paid before the wallet's birth
  height, or to an address derived after those blocks were walked. Full previous
  transactions are fetched with ``getrawtransaction txid false blockhash`` (no txindex
  needed), because every PSBT input carries one.

**Progress and reorgs.** Walked blocks are kept per height, recorded in the same
transaction as what was learnt from them (a group of blocks per commit), so the stored
chain never claims more than the coins it implies. A sync first asks the node for its tip
and the hash at our stored top: unchanged, there is nothing to walk. When the node's hash
at a stored height differs, the blocks above the fork are marked orphaned, the
confirmations and spends they carried are undone, the coins they paid are set aside
(``orphaned``) until the walk sees them mined again, and a broadcast that fell out of the
chain is re-sent as the *same bytes*, never re-paid.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from online_coordinator import faults
from online_coordinator.chain.rpc import BitcoinCoreRPC, MalformedReply, RpcError, ScannedOutput
from online_coordinator.config import Config
from online_coordinator.key_states import ALERT_KIND, deposit_alerts
from online_coordinator.store import Store, now, outcome
from online_coordinator.wallet import Wallet, extend_inventory, load_wallet
from shared.bitcoin.block import Block
from shared.bitcoin.tx import Transaction

MAX_BLOCKS_PER_SYNC = 10_000
#: Blocks recorded per database transaction: one durable commit (fsync) per group, not per
#: block. A crash loses at most the group being recorded, which the next sync walks again.
BLOCKS_PER_COMMIT = 100
#: ...fewer when their blocks reach this many bytes (bounds memory and the write lock).
BYTES_PER_COMMIT = 8_000_000
#: Core's "Transaction outputs already in utxo set" (sendrawtransaction of a mined tx).
RPC_VERIFY_ALREADY_IN_UTXO_SET = -27
#: Broadcast row state -> the word for the payout (and its batch).
WORDS = {"sending": "sending", "mempool": "in_mempool", "confirmed": "confirmed", "final": "final"}
#: Meta key set when a reorg went below the first walked block: every script is scanned
#: again and the coins below the walked height reconciled (see :func:`sync_coins`).
RESCAN = "rescan_after_reorg"
#: Rows that are not (or no longer) the batch's payment.
DEAD_ROWS = ("replaced", "abandoned")


@dataclass
class SyncReport:
    new_coins: int = 0
    tip: int = 0
    behind: int = 0
    blocks_walked: int = 0
    reorged_blocks: int = 0
    rebroadcasts: list[str] = field(default_factory=list)
    found: list[str] = field(default_factory=list)  # 'sending' rows found in the mempool
    alerts: list[str] = field(default_factory=list)
    alert_kinds: list[str] = field(default_factory=list)  # the event kind of each alert
    warnings: list[str] = field(default_factory=list)
    confirmed: list[str] = field(default_factory=list)
    final: list[str] = field(default_factory=list)

    def alert(self, kind: str, message: str) -> None:
        """An alert the sync raised (its event is already written)."""
        self.alerts.append(message)
        self.alert_kinds.append(kind)


#: Told (walked height, node tip) after each group of blocks is recorded: a first walk
#: from an old birth height reads thousands of blocks, and the operator should see it move.
WalkProgress = Callable[[int, int], None]


def run_sync(
    store: Store, rpc: BitcoinCoreRPC, required: int, progress: WalkProgress | None = None
) -> SyncReport:
    """Tracking first (so spends are attributed), then coins, settling and finality.

    Each step commits as it goes, so a crash or a full disk leaves what was learnt so far
    and the next sync carries on from there. With no new block, no new address and no
    payment in flight, this is two questions to the node and a few indexed reads.
    """
    with outcome("sync stopped part way: what it recorded so far is kept; run sync again"):
        report = walk_chain(store, rpc, progress=progress)
        scan_coins(store, rpc, report)
        for message in deposit_alerts(store):
            report.alert(ALERT_KIND, message)
        faults.point("sync.coins")
        settle_broadcasts(store, rpc, report)
        faults.point("sync.settled")
        update_finality(store, report.tip, required, report)
        store.set_meta("last_sync", json.dumps({"height": report.tip, "time": now()}))
    return report


def sync_with(config: Config, store: Store, progress: WalkProgress | None = None) -> SyncReport:
    """``sync``: :func:`run_sync` with the configured node, to the configured depth."""
    return run_sync(store, config.rpc(), config.confirmations, progress)


def walk_chain(
    store: Store,
    rpc: BitcoinCoreRPC,
    report: SyncReport | None = None,
    progress: WalkProgress | None = None,
) -> SyncReport:
    """Walk every block not yet seen (from the wallets' earliest birth height)."""
    report = report or SyncReport()
    births = [r["birth_height"] for r in store.all("SELECT birth_height FROM wallets")]
    start = min(births) if births else rpc.block_count()
    track(store, rpc, report, start, progress)
    return report


# -- coins ----------------------------------------------------------------------------------


def scan_coins(store: Store, rpc: BitcoinCoreRPC, report: SyncReport) -> None:
    """Scan for the scripts that need it (:func:`sync_coins`); once every wallet is done,
    a rescan a deep reorg asked for is over."""
    for name in _wallets_to_scan(store):
        sync_coins(store, rpc, load_wallet(store, name), report)
    if store.meta(RESCAN) is not None and not _wallets_to_scan(store):
        with store.write() as db:
            db.execute("DELETE FROM meta WHERE key = ?", (RESCAN,))


def _wallets_to_scan(store: Store) -> list[str]:
    """Wallets with an inventory script no scan has covered yet (an indexed read)."""
    rows = store.all(
        "SELECT name FROM wallets WHERE id IN (SELECT wallet_id FROM addresses WHERE "
        "scanned IS NULL) ORDER BY id"
    )
    return [r["name"] for r in rows]


def sync_coins(store: Store, rpc: BitcoinCoreRPC, wallet: Wallet, report: SyncReport) -> None:
    """Scan the UTXO set once for each script the walk did not watch from its first block.

    The walk sees every coin paid to a known script in the blocks it walks; a scan is
    needed only for coins older than that: paid before the wallet's birth height, or to an
    address derived after those blocks were walked. It records coins up to the walked
    height only (the walk records the later ones, whose blocks it has yet to store), so
    every recorded coin lies in a block the reorg check covers, or below the first one.

    After a reorg below the first walked block (``RESCAN``), every script is scanned again
    and the coins below the walked height are reconciled with the scan: that needs the
    scan to have read exactly the chain we walked, so a scan of another tip is retried by
    the next sync.
    """
    rescan = store.meta(RESCAN) is not None
    for _ in range(100):  # each round can mark addresses used and extend the gap window
        scripts = _unscanned(store, wallet)
        if not scripts:
            return
        scan = rpc.scan_utxos(list(scripts))
        top = _top_block(store)
        if rescan and top is not None and (scan.height, scan.best_block) != tuple(top):
            report.warnings.append(
                f"wallet {wallet.name}: the rescan after a deep reorg read tip {scan.height}, "
                f"not the walked {top['height']}; the next sync scans again"
            )
            return
        limit = walked_height(store)
        report.new_coins += _record_coins(store, rpc, wallet, scripts, scan.outputs, limit)
        if rescan:
            _reconcile(store, wallet, scripts, scan.outputs, limit, report)


def _unscanned(store: Store, wallet: Wallet) -> dict[bytes, int]:
    """The wallet's inventory scripts no scan covered yet -> address row id."""
    rows = store.all(
        "SELECT id, script FROM addresses WHERE wallet_id = ? AND scanned IS NULL", wallet.id
    )
    return {bytes(r["script"]): r["id"] for r in rows}


def walked_height(store: Store) -> int:
    """The last height whose block is stored (before any: the walk's first height - 1)."""
    top = _top_block(store)
    if top is not None:
        return int(top["height"])
    births = store.row("SELECT MIN(birth_height) AS h FROM wallets")["h"]
    return -1 if births is None else int(births) - 1


def _record_coins(
    store: Store,
    rpc: BitcoinCoreRPC,
    wallet: Wallet,
    scripts: dict[bytes, int],
    found: list[ScannedOutput],
    limit: int,
) -> int:
    """Record the scan's new coins up to ``limit`` (the walked height), and the scripts
    as scanned, in one transaction (with the gap window the coins move)."""
    new = [c for c in found if c.height <= limit and not _is_coin(store.db, c.txid, c.vout)]
    raws = _previous_transactions(rpc, new)
    seen = now()
    rows = [
        (c.txid, c.vout, wallet.id, scripts[c.script_pubkey], c.value, c.height, c.coinbase, seen)
        for c in new
    ]
    with store.write() as db:
        db.executemany("INSERT OR IGNORE INTO transactions (txid, raw) VALUES (?, ?)", raws.items())
        db.executemany(
            "INSERT OR IGNORE INTO utxos (txid, vout, wallet_id, address_id, value, height, "
            "coinbase, state, first_seen) VALUES (?, ?, ?, ?, ?, ?, ?, 'available', ?)",
            rows,
        )
        db.executemany(
            "UPDATE addresses SET state = 'used' WHERE id = ?", [(i,) for i in {r[3] for r in rows}]
        )
        db.executemany(
            "UPDATE addresses SET scanned = ? WHERE id = ?", [(limit, i) for i in scripts.values()]
        )
        if new:
            store.event("coins_found", f"wallet {wallet.name}: {len(new)} new coin(s)")
        extend_inventory(store, wallet)
    return len(new)


def _reconcile(
    store: Store,
    wallet: Wallet,
    scripts: dict[bytes, int],
    found: list[ScannedOutput],
    limit: int,
    report: SyncReport,
) -> None:
    """A rescan's verdict on the coins up to ``limit`` of the scanned scripts: missing
    without a spend we saw, its funding transaction left the chain (orphaned); an orphaned
    coin that is back is revived."""
    present = {(c.txid, c.vout) for c in found}
    ids = set(scripts.values())
    rows = store.all(
        "SELECT txid, vout, state, request_id, address_id FROM utxos WHERE wallet_id = ? AND "
        "height <= ? AND state IN ('available', 'locked', 'orphaned')",
        wallet.id,
        limit,
    )
    with store.write() as db:
        for row in rows:
            key = (row["txid"], row["vout"])
            if row["address_id"] not in ids:
                continue
            if row["state"] == "orphaned" and key in present:
                revived = "locked" if row["request_id"] is not None else "available"
                db.execute(
                    "UPDATE utxos SET state = ? WHERE txid = ? AND vout = ?", (revived, *key)
                )
            elif row["state"] != "orphaned" and key not in present:
                db.execute("UPDATE utxos SET state = 'orphaned' WHERE txid = ? AND vout = ?", key)
                _gone(store, key, report)


def _gone(store: Store, key: tuple[str, int], report: SyncReport) -> None:
    store.event(
        "coin_orphaned",
        f"coin {key[0]}:{key[1]} is no longer in the node's UTXO set and no block we saw spent it",
        severity="warning",
    )


def _previous_transactions(rpc: BitcoinCoreRPC, coins: list[ScannedOutput]) -> dict[str, bytes]:
    """Each new coin's full previous transaction (one per txid), checked against the scan."""
    if not coins:
        return {}
    heights = sorted({c.height for c in coins})
    hashes = dict(zip(heights, rpc.block_hashes(heights), strict=True))
    pairs = sorted({(c.txid, hashes[c.height]) for c in coins})
    raws = dict(zip((t for t, _ in pairs), rpc.raw_transactions(pairs), strict=True))
    parsed = {txid: _parse_tx(raw, txid) for txid, raw in raws.items()}
    for coin in coins:
        _check_prev(parsed[coin.txid], coin)
    return raws


def _parse_tx(raw: bytes, txid: str) -> Transaction:
    """A transaction from the node, or one line saying it is not one."""
    try:
        tx = Transaction.parse(raw)
    except ValueError as exc:  # DecodeError, or any other refusal of the bytes
        raise MalformedReply(f"the node's transaction {txid} does not parse: {exc}") from None
    if tx.txid_hex != txid:
        raise MalformedReply(f"the node returned another transaction when asked for {txid}")
    return tx


def _check_prev(tx: Transaction, coin: ScannedOutput) -> None:
    """The node's previous transaction must really hold the coin it reported."""
    if coin.vout >= len(tx.outputs):
        raise RpcError(
            -1, f"node returned a transaction that does not hold {coin.txid}:{coin.vout}"
        )
    out = tx.outputs[coin.vout]
    if out.value != coin.value or out.script_pubkey != coin.script_pubkey:
        raise RpcError(-1, f"node's scan and transaction disagree about {coin.txid}:{coin.vout}")


def _is_coin(db: sqlite3.Connection, txid: str, vout: int) -> bool:
    """Is this outpoint one of our coins, in any state (a primary-key lookup)?"""
    row = db.execute("SELECT 1 FROM utxos WHERE txid = ? AND vout = ?", (txid, vout)).fetchone()
    return row is not None


# -- blocks -----------------------------------------------------------------------------------


def track(
    store: Store,
    rpc: BitcoinCoreRPC,
    report: SyncReport,
    start_height: int,
    progress: WalkProgress | None = None,
) -> None:
    """Walk new blocks (after undoing any reorg), a group of blocks per transaction.

    A group's blocks are recorded in the same transaction as the coins, spends and
    confirmations found in them, so the stored chain (the walk's progress) never runs
    ahead of what was learnt from it: a crash loses at most the group in progress, which
    the next sync walks again. With the node's tip unchanged this asks two questions.
    """
    tip = rpc.block_count()
    report.tip = tip
    fork = _find_fork(store, rpc, tip)
    aside = _undo_above(store, *fork, report) if fork is not None else []
    top = _top_block(store)
    first = start_height if top is None else top["height"] + 1
    heights = list(range(first, min(tip, first + MAX_BLOCKS_PER_SYNC - 1) + 1))
    report.behind = tip - heights[-1] if heights else 0  # the next sync goes on from there
    if heights:
        walk = _Walk(store, report, now())
        walk.watch_new_addresses()
        if top is None and first == 0:
            walk.from_genesis = walk.last_address
        hashes = rpc.block_hashes(heights)
        _walk_groups(walk, rpc, list(zip(heights, hashes, strict=True)), top, tip, progress)
    if aside and not report.behind:  # walked to the tip: what is still aside is gone
        _still_aside(store, aside, report)


@dataclass
class _Walk:
    """What walking blocks needs: our scripts (reloaded when the gap window grows), the
    wallets a block just moved the window of, and the time recorded as first seen."""

    store: Store
    report: SyncReport
    seen: int
    ours: dict[bytes, tuple[int, int]] = field(default_factory=dict)
    last_address: int = 0
    grown: set[int] = field(default_factory=set)
    wallets: dict[int, Wallet] = field(default_factory=dict)
    #: Walking from the genesis block, these addresses (ids up to it) need no scan.
    from_genesis: int | None = None

    def watch_new_addresses(self) -> None:
        """Add the inventory rows derived since the last look (ids only grow)."""
        for row in self.store.all(
            "SELECT id, wallet_id, script FROM addresses WHERE id > ? ORDER BY id",
            self.last_address,
        ):
            self.ours[bytes(row["script"])] = (row["wallet_id"], row["id"])
            self.last_address = row["id"]


def _walk_groups(
    walk: _Walk,
    rpc: BitcoinCoreRPC,
    wanted: list[tuple[int, str]],
    top: sqlite3.Row | None,
    tip: int,
    progress: WalkProgress | None = None,
) -> None:
    """Fetch blocks a group at a time (outside any transaction), record each group in one.

    Each block must link to the one before (the stored top for the first): if the node's
    chain moved during the walk, what links is recorded and the next sync goes on.
    """
    previous = None if top is None else top["hash"]
    for group in _fetched(rpc, wanted):
        linked = _linked(group, previous)
        if linked:
            with walk.store.write() as db:
                _watched_from_genesis(walk, db)
                for height, block_hash, block in linked:
                    _walk_block(walk, db, height, block_hash, block)
            walk.report.blocks_walked += len(linked)
            previous = linked[-1][1]
            faults.point("sync.block")
            if progress is not None:
                progress(linked[-1][0], tip)
        if len(linked) < len(group):
            height = group[len(linked)][0]
            walk.report.behind = tip - height + 1
            walk.report.warnings.append(
                f"the node's chain changed during sync at height {height}; the next sync "
                "walks on from there"
            )
            return


def _watched_from_genesis(walk: _Walk, db: sqlite3.Connection) -> None:
    """A walk from the genesis block sees every coin of the scripts it watches from the
    start: they need no scan (marked in the transaction recording that first block)."""
    if walk.from_genesis is not None:
        db.execute(
            "UPDATE addresses SET scanned = -1 WHERE scanned IS NULL AND id <= ?",
            (walk.from_genesis,),
        )
        walk.from_genesis = None


def _fetched(
    rpc: BitcoinCoreRPC, wanted: list[tuple[int, str]]
) -> Iterator[list[tuple[int, str, Block]]]:
    """Blocks in groups of at most BLOCKS_PER_COMMIT blocks or about BYTES_PER_COMMIT."""
    group: list[tuple[int, str, Block]] = []
    size = 0
    for height, block_hash in wanted:
        raw = rpc.raw_block(block_hash)
        group.append((height, block_hash, _parse_block(raw, block_hash)))
        size += len(raw)
        if len(group) >= BLOCKS_PER_COMMIT or size >= BYTES_PER_COMMIT:
            yield group
            group, size = [], 0
    if group:
        yield group


def _parse_block(raw: bytes, block_hash: str) -> Block:
    """The node's block, or one line saying it is not the block we asked for."""
    try:
        block = Block.parse(raw)
    except ValueError as exc:  # DecodeError, or any other refusal of the bytes
        raise MalformedReply(f"the node's block {block_hash} does not parse: {exc}") from None
    if block.hash_hex != block_hash:
        raise MalformedReply(f"the node returned block {block.hash_hex} for {block_hash}")
    return block


def _linked(
    group: list[tuple[int, str, Block]], previous: str | None
) -> list[tuple[int, str, Block]]:
    """The group's blocks up to the first that does not build on the one before it."""
    for position, (_, block_hash, block) in enumerate(group):
        if previous is not None and block.header.prev_hash[::-1].hex() != previous:
            return group[:position]
        previous = block_hash
    return group


def _top_block(store: Store) -> sqlite3.Row | None:
    return store.one(
        "SELECT height, hash FROM blocks WHERE state = 'active' ORDER BY height DESC LIMIT 1"
    )


def _find_fork(store: Store, rpc: BitcoinCoreRPC, tip: int) -> tuple[int, bool] | None:
    """(Highest stored height still on the node's chain, deep), if a stored block was
    replaced; ``deep`` when none is, so the fork lies below the first walked block.

    The stored top still on the node's chain means nothing below it was replaced either
    (a block hash commits to all its ancestors): one question in the usual case. Else the
    stored blocks are compared 200 heights per round trip, downwards.
    """
    top = _top_block(store)
    if top is None or (top["height"] <= tip and rpc.block_hash(top["height"]) == top["hash"]):
        return None
    below = top["height"] + 1
    while True:
        rows = store.all(
            "SELECT height, hash FROM blocks WHERE state = 'active' AND height < ? "
            "ORDER BY height DESC LIMIT 200",
            below,
        )
        if not rows:
            return below - 1, True
        live = [r for r in rows if r["height"] <= tip]
        hashes = rpc.block_hashes([r["height"] for r in live]) if live else []
        node = dict(zip((r["height"] for r in live), hashes, strict=True))
        for row in rows:
            if node.get(row["height"]) == row["hash"]:
                return row["height"], False
        below = rows[-1]["height"]


def _undo_above(store: Store, fork: int, deep: bool, report: SyncReport) -> list[tuple[str, int]]:
    """Blocks above ``fork`` left the chain: undo what we learnt from them.

    A payout confirmed (or final) in one of them is no longer either: it goes back to
    ``sending`` until the node shows it in its mempool or a block again. Coins received
    above the fork are set aside (``orphaned``) until the walk sees them mined again;
    those it does not are returned, and reported once the walk is done. A ``deep`` fork
    (below the first walked block) may also have taken coins only a scan found: every
    script is scanned again (``RESCAN``, recorded in the same transaction).
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
        aside = _set_aside(store, fork)
        if deep:
            db.execute("UPDATE addresses SET scanned = NULL")
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (RESCAN, fork))
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
    return aside


def _set_aside(store: Store, fork: int) -> list[tuple[str, int]]:
    """Coins received above ``fork`` are orphaned until mined again (inside the undo)."""
    rows = store.db.execute(
        "UPDATE utxos SET state = 'orphaned' WHERE height > ? AND state IN "
        "('available', 'locked') RETURNING txid, vout",
        (fork,),
    ).fetchall()
    if rows:
        store.event(
            "coins_set_aside",
            f"reorg above height {fork}: {len(rows)} coin(s) received in the blocks that "
            "left the chain are set aside until their transactions are mined again",
            severity="warning",
        )
    return [(r["txid"], r["vout"]) for r in rows]


def _still_aside(store: Store, aside: list[tuple[str, int]], report: SyncReport) -> None:
    """The coins a reorg set aside that the walk did not see mined again: gone."""
    with store.write() as db:
        for key in aside:
            row = db.execute("SELECT state FROM utxos WHERE txid = ? AND vout = ?", key).fetchone()
            if row is not None and row["state"] == "orphaned":
                _gone(store, key, report)


def _walk_block(
    walk: _Walk, db: sqlite3.Connection, height: int, block_hash: str, block: Block
) -> None:
    """Receipts first, then spends: a coin received and stolen between two syncs is still
    seen leaving (REQUIREMENTS 25). Inside the group's transaction."""
    db.execute(
        "INSERT OR REPLACE INTO blocks (height, hash, state, seen) VALUES (?, ?, 'active', ?)",
        (height, block_hash, walk.seen),
    )
    for position, tx in enumerate(block.transactions):
        txid = _spends(walk, db, tx, height, block_hash) if position else None
        _receives(walk, db, tx, txid, height, coinbase=position == 0)
    if walk.grown:
        _grow(walk)


def _receives(
    walk: _Walk,
    db: sqlite3.Connection,
    tx: Transaction,
    txid: str | None,
    height: int,
    *,
    coinbase: bool,
) -> None:
    """Record the outputs paying our scripts; the txid and bytes are computed once per
    transaction, whatever the number of outputs. A coin a reorg set aside is revived."""
    ours = walk.ours
    paid = [(vout, out) for vout, out in enumerate(tx.outputs) if out.script_pubkey in ours]
    if not paid:
        return
    txid = txid or tx.txid_hex
    db.execute(
        "INSERT OR IGNORE INTO transactions (txid, raw) VALUES (?, ?)", (txid, tx.serialize())
    )
    rows = [
        (txid, vout, *ours[out.script_pubkey], out.value, height, coinbase, walk.seen)
        for vout, out in paid
    ]
    new = db.executemany(
        "INSERT OR IGNORE INTO utxos (txid, vout, wallet_id, address_id, value, height, "
        "coinbase, state, first_seen) VALUES (?, ?, ?, ?, ?, ?, ?, 'available', ?)",
        rows,
    ).rowcount
    walk.report.new_coins += new
    if new < len(rows):  # seen before: revive what a reorg set aside, at its new height
        db.executemany(
            "UPDATE utxos SET state = CASE WHEN request_id IS NULL THEN 'available' ELSE "
            "'locked' END, height = ?, coinbase = ? WHERE txid = ? AND vout = ? AND "
            "state = 'orphaned'",
            [(height, coinbase, txid, vout) for vout, _ in paid],
        )
    for wallet_id, address_id in {ours[out.script_pubkey] for _, out in paid}:
        if db.execute(
            "UPDATE addresses SET state = 'used' WHERE id = ? AND state != 'used'", (address_id,)
        ).rowcount:
            walk.grown.add(wallet_id)


def _grow(walk: _Walk) -> None:
    """An address was used for the first time: extend its wallet's gap window now, so the
    rest of the walk watches the new addresses too (inside the group's transaction)."""
    added = 0
    for wallet_id in sorted(walk.grown):
        if wallet_id not in walk.wallets:
            name = walk.store.row("SELECT name FROM wallets WHERE id = ?", wallet_id)["name"]
            walk.wallets[wallet_id] = load_wallet(walk.store, name)
        added += extend_inventory(walk.store, walk.wallets[wallet_id])
    walk.grown.clear()
    if added:
        walk.watch_new_addresses()


def _spends(
    walk: _Walk, db: sqlite3.Connection, tx: Transaction, height: int, block_hash: str
) -> str | None:
    """Mark our coins this transaction spends and attribute the spend; its txid (computed
    once, only when it spends ours) for the receipts."""
    outpoints = [(txin.prevout.txid_hex, txin.prevout.vout) for txin in tx.inputs]
    ours = [o for o in outpoints if _is_coin(db, *o)]
    if not ours:
        return None
    store, report = walk.store, walk.report
    txid = tx.txid_hex
    broadcast = matching_broadcast(store, tx, outpoints)
    if broadcast is not None:
        _confirm(store, broadcast, txid, height, block_hash, report)
    else:
        request = store.one("SELECT * FROM requests WHERE txid = ?", txid)
        if request is not None:
            _adopt(store, request, tx, txid, height, block_hash, report)
        else:
            message = (
                f"outflow without a signed request: transaction {txid} in block "
                f"{height} spends {', '.join(f'{t}:{v}' for t, v in ours)}"
            )
            store.event("unknown_outflow", message, severity="alert")
            report.alert("unknown_outflow", message)
    db.executemany(
        "UPDATE utxos SET state = 'spent', spent_by = ?, spent_block = ? "
        "WHERE txid = ? AND vout = ?",
        [(txid, block_hash, t, v) for t, v in ours],
    )
    return txid


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
    txid: str,
    height: int,
    block_hash: str,
    report: SyncReport,
) -> None:
    db = store.db
    db.execute(
        "UPDATE broadcasts SET block_hash = ?, height = ?, state = 'confirmed' WHERE id = ?",
        (block_hash, height, broadcast["id"]),
    )
    if txid != broadcast["txid"]:
        store.event(
            "malleated",
            f"broadcast {broadcast['txid']} confirmed as {txid} (same inputs and outputs)",
            severity="warning",
        )
    request = store.row("SELECT batch_id FROM requests WHERE id = ?", broadcast["request_id"])
    # A confirmed replacement (or original) makes every other request of the batch moot.
    db.execute(
        "UPDATE broadcasts SET state = 'replaced' WHERE id != ? AND request_id IN "
        "(SELECT id FROM requests WHERE batch_id = ?)",
        (broadcast["id"], request["batch_id"]),
    )
    refresh_batch(store, request["batch_id"])
    report.confirmed.append(txid)


def _adopt(
    store: Store,
    request: sqlite3.Row,
    tx: Transaction,
    txid: str,
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
    batch = store.row("SELECT label FROM batches WHERE id = ?", request["batch_id"])
    values = (txid, tx.wtxid_hex, tx.serialize(), block_hash, height)
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
        f"confirmed as {txid} in block {height}, but this coordinator never sent it"
    )
    if cancelled:
        message += (
            "; the batch had been CANCELLED here, so its payouts were paid on chain: make "
            "sure no other batch pays them again"
        )
        store.event(
            "cancelled_request_confirmed", message, severity="alert", batch_id=request["batch_id"]
        )
        report.alert("cancelled_request_confirmed", message)
    else:
        store.event("adopted_broadcast", message, severity="warning", batch_id=request["batch_id"])
        report.warnings.append(message)
    refresh_batch(store, request["batch_id"])
    report.confirmed.append(txid)


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
    batch = store.row("SELECT state FROM batches WHERE id = ?", batch_id)
    if row is not None:
        state = WORDS[row["state"]]
    elif batch["state"] == "cancelled":
        state = "cancelled"
    elif store.one("SELECT 1 FROM requests WHERE batch_id = ? AND state = 'signed'", batch_id):
        state = "signed"
    else:
        state = "awaiting_signatures"
    if state != batch["state"]:
        with store.write() as db:
            db.execute("UPDATE batches SET state = ? WHERE id = ?", (state, batch_id))
    return state


def update_finality(store: Store, tip: int, required: int, report: SyncReport) -> None:
    """``final`` at ``required`` confirmations; back to ``confirmed`` if the tip went down."""
    deepest = tip - required + 1  # the highest block at ``required`` confirmations
    rows = store.all(
        "SELECT b.id, b.txid, b.height, b.state, r.batch_id, bt.label FROM broadcasts b JOIN "
        "requests r ON r.id = b.request_id JOIN batches bt ON bt.id = r.batch_id "
        "WHERE (b.state = 'confirmed' AND b.height <= ?) OR (b.state = 'final' AND "
        "b.height > ?)",
        deepest,
        deepest,
    )  # only the rows whose word changes
    if not rows:
        return
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
    request = store.row("SELECT * FROM requests WHERE id = ?", row["request_id"])
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
