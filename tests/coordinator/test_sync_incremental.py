"""Issue 14: sync is linear in the chain and an idle sync does nothing it need not do, and
neither costs correctness.

Each transaction's txid is computed once, however many of its outputs pay us or inputs
spend our coins; the UTXO set is scanned once per script; an idle sync asks the node for
its tip and the hash at our stored top and walks nothing; blocks are recorded a group per
commit, each group with the coins it implies. The tests pay and spend many coins in one
transaction, reorg under an idle coordinator (above and below its first walked block),
kill sync between and inside its group commits, and feed it blocks that are not blocks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from online_coordinator.faults import CRASH_VARIABLE
from online_coordinator.sync import BLOCKS_PER_COMMIT
from shared.bitcoin.address import Network, address_to_script
from shared.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from shared.psbt.model import Psbt
from shared.psbt.roles import extract, finalize
from shared.psbt.signer import sign_psbt
from tests.coordinator.conftest import Desk, ProxiedDesk
from tests.coordinator.softappliance import SoftAppliance
from tests.coordinator.test_flow import create, funded_single, paid_to, payee, sign_and_import

REPO = Path(__file__).resolve().parents[2]
COIN = 100_000
#: Methods an idle sync may use: the chain check, the tip, the hash at our stored top.
IDLE_METHODS = {"getblockchaininfo", "getblockhash", "getblockcount"}


def coins(desk: Desk, state: str | None = None) -> list[dict]:
    with desk.store() as store:
        where = "" if state is None else f" WHERE state = '{state}'"
        return [dict(r) for r in store.all(f"SELECT * FROM utxos{where} ORDER BY txid, vout")]


def stored_top(desk: Desk) -> int:
    with desk.store() as store:
        return store.one("SELECT MAX(height) AS h FROM blocks WHERE state = 'active'")["h"]


def sync(desk: Desk) -> str:
    result = desk.run("sync")
    assert result.code == 0, result.out + result.err
    return result.out


def crash(desk: Desk, point: str) -> None:
    """``sync`` in a child process that SIGKILLs itself at ``point`` (power cut)."""
    command = [sys.executable, "-m", "online_coordinator.cli", "sync", "--state", str(desk.state)]
    env = {**os.environ, CRASH_VARIABLE: point}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, (point, done.returncode, done.stderr)


# -- many outputs, many inputs ------------------------------------------------------------------


def test_every_output_of_a_many_output_payment_is_recorded(desk: Desk) -> None:
    address = funded_single(desk, SoftAppliance("cold-1"), coins=1)
    script = address_to_script(address, Network.REGTEST)
    txid = desk.node.fund([(script, COIN + n) for n in range(300)])
    desk.node.mine(1)
    assert "300 new coin(s)" in sync(desk)
    paid = [c for c in coins(desk, "available") if c["txid"] == txid]
    assert [(c["vout"], c["value"]) for c in paid] == sorted(
        (u.vout, u.value) for u in desk.node.scan({script}) if u.txid == txid
    )
    assert len(paid) == 300
    with desk.store() as store:
        raw = bytes(store.one("SELECT raw FROM transactions WHERE txid = ?", txid)["raw"])
    assert Transaction.parse(raw).txid_hex == txid  # stored once, under its own txid


def test_a_spend_of_many_of_our_coins_marks_every_one(desk: Desk) -> None:
    appliance = SoftAppliance("cold-1")
    funded_single(desk, appliance, coins=120, sats=COIN)
    request = create(desk, "b1", [(payee(1), "0.1", "INV-1")])  # 10M sats: 100+ coins
    sign_and_import(desk, "b1", request, appliance)
    desk.ok("batch", "broadcast", "b1")
    desk.node.mine(1)
    out = sync(desk)
    assert "1 confirmed" in out and "ALERT" not in out
    with desk.store() as store:
        txid = store.one("SELECT txid FROM broadcasts")["txid"]
        spent = store.all("SELECT spent_by FROM utxos WHERE state = 'spent'")
        left = store.one("SELECT COUNT(*) AS n FROM utxos WHERE state = 'locked'")["n"]
    tx = Transaction.parse(desk.node.raw_transaction(txid))
    assert len(tx.inputs) > 100 and len(spent) == len(tx.inputs) and left == 0
    assert {r["spent_by"] for r in spent} == {txid}


def steal_all(desk: Desk, appliance: SoftAppliance, address: str) -> list[tuple[str, int]]:
    """Spend every coin of the address in one transaction with its key, as a thief would."""
    paid = paid_to(desk.node, address)
    spend = Transaction(
        2,
        [TxIn(OutPoint.from_hex(c.txid, c.vout)) for c in paid],
        [TxOut(sum(c.value for c in paid) - 20_000, address_to_script(payee(9), Network.REGTEST))],
    )
    psbt = Psbt.from_unsigned_tx(spend)
    for inp, coin in zip(psbt.inputs, paid, strict=True):
        inp.set(0x00, desk.node.raw_transaction(coin.txid))
    signed, count = sign_psbt(psbt, [appliance.key])
    assert count == len(paid)
    desk.node.send(extract(finalize(signed).psbt).serialize())
    desk.node.mine(1)
    return [(c.txid, c.vout) for c in paid]


def test_many_coins_stolen_in_one_transaction_are_all_named(desk: Desk) -> None:
    """The unknown outflow names every coin it spends, and each is marked spent."""
    appliance = SoftAppliance("cold-1")
    address = funded_single(desk, appliance, coins=40, sats=COIN)
    stolen = steal_all(desk, appliance, address)
    result = desk.run("sync")
    assert result.code == 3 and "outflow without a signed request" in result.out
    assert all(f"{t}:{v}" in result.out for t, v in stolen)
    assert len(coins(desk, "spent")) == 40 and coins(desk, "available") == []


# -- idle, and reorgs under an idle coordinator -------------------------------------------------


def test_an_idle_sync_asks_for_the_tip_and_walks_nothing(proxied: ProxiedDesk) -> None:
    funded_single(proxied, SoftAppliance("cold-1"), coins=5)
    assert proxied.proxy is not None
    proxied.proxy.methods.clear()
    out = sync(proxied)
    assert "0 block(s) walked, 0 new coin(s)" in out
    assert set(proxied.proxy.methods) <= IDLE_METHODS, proxied.proxy.methods
    assert proxied.proxy.methods.count("getblockhash") <= 2  # the genesis check, our top


def test_the_second_sync_scans_no_script_again(proxied: ProxiedDesk) -> None:
    """Coins paid before the birth height come from one UTXO scan; later syncs walk."""
    appliance = SoftAppliance("cold-1")
    proxied.node.fund([(appliance.descriptor.derive(0).script_pubkey, COIN)] * 3)
    proxied.node.mine(1)
    proxied.import_soft("treasury", appliance)  # birth height: the tip, above those coins
    assert "3 new coin(s)" in sync(proxied)
    assert proxied.proxy is not None
    proxied.proxy.methods.clear()
    proxied.node.fund([(appliance.descriptor.derive(0).script_pubkey, COIN)] * 2)
    proxied.node.mine(1)
    assert "1 block(s) walked, 2 new coin(s)" in sync(proxied)
    assert "scantxoutset" not in proxied.proxy.methods
    assert len(coins(proxied, "available")) == 5


def test_an_idle_coordinator_sees_a_reorg_and_the_coins_it_took(desk: Desk) -> None:
    address = funded_single(desk, SoftAppliance("cold-1"), coins=2)
    desk.fund(address, COIN, 3)  # these three coins are in the block the reorg replaces
    sync(desk)
    assert len(coins(desk, "available")) == 5
    desk.node.reorg(1)  # the funding transaction is lost with its block
    out = sync(desk)
    assert "1 block(s) reorged" in out
    assert len(coins(desk, "orphaned")) == 3 and len(coins(desk, "available")) == 2
    with desk.store() as store:
        kinds = [r["kind"] for r in store.all("SELECT kind FROM events")]
    assert kinds.count("coin_orphaned") == 3 and "coins_set_aside" in kinds
    assert "0 block(s) walked" in sync(desk)  # and the next sync is idle again


def test_coins_of_a_reorged_block_mined_again_are_revived_at_their_new_height(
    desk: Desk,
) -> None:
    address = funded_single(desk, SoftAppliance("cold-1"), coins=1)
    desk.fund(address, COIN, 4)
    sync(desk)
    old_height = desk.node.height()
    desk.node.reorg(1, keep_transactions=True)  # back to the mempool, not in the new blocks
    sync(desk)
    assert len(coins(desk, "orphaned")) == 4
    desk.node.mine(1)
    sync(desk)
    revived = [c for c in coins(desk, "available") if c["value"] == COIN]
    assert len(revived) == 4 and {c["height"] for c in revived} == {old_height + 2}
    with desk.store() as store:
        gone = store.one("SELECT COUNT(*) AS n FROM events WHERE kind = 'coin_orphaned'")["n"]
    assert gone == 4  # reported once, when the walk reached the tip without them


def test_a_reorg_below_the_first_walked_block_rescans_and_finds_what_left(
    desk: Desk,
) -> None:
    """Coins older than the birth height are known from a scan only: a reorg that deep
    scans every script again and reconciles them."""
    appliance = SoftAppliance("cold-1")
    script = appliance.descriptor.derive(0).script_pubkey
    desk.node.fund([(script, COIN)] * 2)
    desk.node.mine(2)
    desk.import_soft("treasury", appliance)  # birth height: the tip, above the coins
    sync(desk)
    assert len(coins(desk, "available")) == 2
    desk.node.reorg(3)  # below the birth height and the coins; their transaction is lost
    out = sync(desk)
    assert "block(s) reorged" in out
    assert len(coins(desk, "orphaned")) == 2 and coins(desk, "available") == []
    with desk.store() as store:
        assert store.meta("rescan_after_reorg") is None  # the rescan is done
        assert store.one("SELECT COUNT(*) AS n FROM addresses WHERE scanned IS NULL")["n"] == 0


# -- crash safety of the grouped commits --------------------------------------------------------


def grouped_chain(desk: Desk) -> tuple[str, int]:
    """A wallet at the tip, then more than two commit groups of blocks, paying us in many."""
    address = funded_single(desk, SoftAppliance("cold-1"), coins=1)
    first = desk.node.height() + 1
    for n in range(2 * BLOCKS_PER_COMMIT + 30):
        if n % 20 == 0:
            desk.fund(address, COIN + n, 2)
        else:
            desk.node.mine(1)
    return address, first


@pytest.mark.parametrize("point", ["store.commit:3", "sync.block:1", "store.commit:4"])
def test_a_crash_inside_the_walk_never_claims_blocks_without_their_coins(
    desk: Desk, point: str
) -> None:
    """Commit 1 is the store's migration check; 2, 3, 4 record the walk's groups. Killed
    before a group's commit is durable, after it, or in the next: the stored chain ends
    exactly where the coins end, and a rerun completes the walk."""
    address, first = grouped_chain(desk)
    crash(desk, point)
    with desk.store() as store:
        assert store.check_integrity() == []
    top = stored_top(desk)
    groups = {"store.commit:3": 1, "sync.block:1": 1, "store.commit:4": 2}[point]
    assert top == first - 1 + groups * BLOCKS_PER_COMMIT
    script = address_to_script(address, Network.REGTEST)
    on_chain = {(u.txid, u.vout) for u in desk.node.scan({script}) if u.height <= top}
    assert {(c["txid"], c["vout"]) for c in coins(desk)} == on_chain
    out = sync(desk)
    assert "ALERT" not in out and stored_top(desk) == desk.node.height()
    every = {(u.txid, u.vout) for u in desk.node.scan({script})}
    assert {(c["txid"], c["vout"]) for c in coins(desk, "available")} == every


# -- what the node sends -------------------------------------------------------------------------


@pytest.mark.parametrize("reply", ["00", "deadbeef" * 30])
def test_a_block_that_is_not_one_is_one_line_and_changes_nothing(
    proxied: ProxiedDesk, reply: str
) -> None:
    funded_single(proxied, SoftAppliance("cold-1"), coins=1)
    top = stored_top(proxied)
    proxied.node.mine(2)
    assert proxied.proxy is not None
    proxied.proxy.fail("getblock", "result", result=reply)
    result = proxied.run("sync")
    assert result.code == 4 and "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1 and "does not parse" in result.err
    assert stored_top(proxied) == top
    assert "2 block(s) walked" in sync(proxied)


def test_another_block_than_the_one_asked_for_is_refused(proxied: ProxiedDesk) -> None:
    funded_single(proxied, SoftAppliance("cold-1"), coins=1)
    proxied.node.mine(2)
    other = proxied.node.block(proxied.node.block_hash(1)).hex()
    assert proxied.proxy is not None
    proxied.proxy.fail("getblock", "result", result=other)
    result = proxied.run("sync")
    assert result.code == 4 and "returned block" in result.err
    assert "Traceback" not in result.err and len(result.err.strip().splitlines()) == 1
    sync(proxied)


def test_an_upgraded_store_scans_every_script_once(proxied: ProxiedDesk) -> None:
    """A database from before migration 4 has no scan marks: its first sync scans, once."""
    funded_single(proxied, SoftAppliance("cold-1"), coins=2)
    with proxied.store() as store:
        store.db.execute("UPDATE addresses SET scanned = NULL")
    assert proxied.proxy is not None
    proxied.proxy.methods.clear()
    sync(proxied)
    sync(proxied)
    assert proxied.proxy.methods.count("scantxoutset") == 1
    with proxied.store() as store:
        assert store.one("SELECT COUNT(*) AS n FROM addresses WHERE scanned IS NULL")["n"] == 0
    assert len(coins(proxied, "available")) == 2


def test_a_long_walk_reports_its_progress_group_by_group(desk: Desk, capsys) -> None:
    """The operator sees a first walk move (issue 18: sync was silent for minutes): the
    callback hears each recorded group's last height, rising to the node's tip, and the
    CLI's line is quiet for a short step and names block, total and share for a long one."""
    from online_coordinator.config import load_config
    from online_coordinator.sync import run_sync
    from shared.adapters.console import ProgressLine

    funded_single(desk, SoftAppliance("cold-1"), coins=1)
    sync(desk)
    desk.node.mine(2 * BLOCKS_PER_COMMIT + 50)
    heard: list[tuple[int, int]] = []
    config = load_config(desk.state)
    with desk.store() as store:
        report = run_sync(store, config.rpc(), config.confirmations, lambda *a: heard.append(a))
    assert report.blocks_walked == 2 * BLOCKS_PER_COMMIT + 50
    tips = {tip for _, tip in heard}
    assert tips == {report.tip} and len(heard) >= 3
    heights = [height for height, _ in heard]
    assert heights == sorted(heights) and heights[-1] == report.tip

    quiet = ProgressLine("sync", "block", after_s=60)
    quiet(10, 100)
    loud = ProgressLine("sync", "block", after_s=0, every_s=0)
    loud(1_200, 5_000)
    loud(5_000, 5_000)
    loud.finish()
    assert capsys.readouterr().err.splitlines() == [
        "sync: block 1,200 of 5,000 (24%)",
        "sync: block 5,000 of 5,000 (100%)",
    ]
