"""Issue 13: never lose a broadcast, never pay twice, never call a payout final that is not.

The coordinator talks to the real regtest node (kernel-validated blocks, real JSON-RPC)
through a loopback proxy that loses, halves, trickles, garbles or refuses (HTTP 503) the
node's replies, and the node is restarted with and without its mempool. Each time: the
broadcast is recorded before the node is asked, a rerun or ``sync`` finds it and records
success, the payee is paid exactly once, the coordinator's own payment never raises an
alert, and ``cancel`` is refused once a send was attempted.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from online_coordinator.batch import build_request
from online_coordinator.config import load_config
from online_coordinator.wallet import load_wallet
from tests.coordinator.conftest import RPC_DEADLINE_SECONDS, Desk, ProxiedDesk
from tests.coordinator.softappliance import SoftAppliance
from tests.coordinator.test_flow import (
    create,
    csv_for,
    funded_single,
    paid_to,
    payee,
    sign_and_import,
)

AMOUNT = "0.0123"
AMOUNT_SATS = 1_230_000


def signed_batch(desk: Desk, label: str = "b1") -> SoftAppliance:
    appliance = SoftAppliance("cold-1")
    funded_single(desk, appliance)
    request = create(desk, label, [(payee(1), AMOUNT, "INV-1")])
    sign_and_import(desk, label, request, appliance)
    return appliance


def status_of(desk: Desk, label: str = "b1") -> dict:
    return json.loads(desk.run("status", label, "--json").out)["batches"][0]


def broadcast_rows(desk: Desk) -> list[dict]:
    with desk.store() as store:
        return [dict(r) for r in store.all("SELECT txid, state, sends FROM broadcasts")]


def alerts(desk: Desk) -> list[dict]:
    return json.loads(desk.run("status", "--json").out)["alerts"]


def settle_and_check_paid_once(desk: Desk, label: str = "b1") -> None:
    """Mine, sync: confirmed, no alert, one broadcast record, the payee paid exactly once."""
    desk.node.mine(1)
    result = desk.run("sync")
    assert result.code == 0, result.out + result.err
    assert "ALERT" not in result.out and alerts(desk) == []
    assert status_of(desk, label)["state"] == "confirmed"
    assert [u.value for u in paid_to(desk.node, payee(1))] == [AMOUNT_SATS]
    assert len(broadcast_rows(desk)) == 1


# -- a reply lost after the node accepted the transaction ----------------------------------


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("drop", "dropped before a complete reply"),
        ("half", "half way through its reply"),
        ("trickle", f"no complete reply from 127.0.0.1:\\d+ within {RPC_DEADLINE_SECONDS} s"),
        ("garbage", "not a JSON-RPC reply"),
    ],
)
def test_a_lost_reply_is_recorded_and_a_rerun_records_success(
    proxied: ProxiedDesk, fault: str, message: str
) -> None:
    signed_batch(proxied)
    assert proxied.proxy is not None
    # twice: the client retries once on a dropped keep-alive connection (harmless here, as
    # Core answers a second sendrawtransaction of the same transaction with its txid)
    proxied.proxy.fail("sendrawtransaction", fault, times=2, interval=0.5)
    started = time.monotonic()
    lost = proxied.run("batch", "broadcast", "b1")
    assert time.monotonic() - started < RPC_DEADLINE_SECONDS + 3  # the deadline holds
    assert lost.code == 4, lost.err  # node unavailable
    assert "node unavailable" in lost.err and "may or may not have reached the node" in lost.err
    assert re.search(message, lost.err), lost.err
    assert len(lost.err.strip().splitlines()) == 1 and "Traceback" not in lost.err
    (row,) = broadcast_rows(proxied)
    assert row["state"] == "sending" and row["sends"] == 1  # recorded before the node was asked
    assert proxied.node.mempool() == [row["txid"]]  # ... and the node did accept it
    assert status_of(proxied)["state"] == "in_mempool"  # status asks the node
    refused = proxied.run("batch", "cancel", "b1")
    assert refused.code == 2 and "was attempted" in refused.err
    again = proxied.run("batch", "broadcast", "b1")
    assert again.code == 0 and f"broadcast {row['txid']} (found in the node's mempool)" in again.out
    third = proxied.run("batch", "broadcast", "b1")
    assert third.code == 0 and f"already broadcast as {row['txid']}" in third.out
    settle_and_check_paid_once(proxied)


def test_lost_reply_then_mined_sync_records_our_payment_without_alert(
    proxied: ProxiedDesk,
) -> None:
    """Issue 13's first failure, exactly: reply lost, the payment mined, then only sync."""
    signed_batch(proxied)
    assert proxied.proxy is not None
    proxied.proxy.fail("sendrawtransaction", "drop", times=2)
    assert proxied.run("batch", "broadcast", "b1").code == 4
    proxied.node.mine(1)
    result = proxied.run("sync")
    assert result.code == 0 and "ALERT" not in result.out and "1 confirmed" in result.out
    assert status_of(proxied)["state"] == "confirmed" and alerts(proxied) == []
    assert proxied.run("batch", "cancel", "b1").code == 2  # a confirmed payout stays paid
    again = proxied.run("batch", "broadcast", "b1")
    assert again.code == 0 and "already broadcast as" in again.out
    # The same payouts built again cannot take the coins: they are locked or spent.
    rebuilt = proxied.run(
        "batch",
        "create",
        "treasury",
        proxied.write("again.csv", csv_for((payee(1), AMOUNT, "X"))),
        "--label",
        "b2",
        "--purpose",
        "again",
        "--out",
        str(proxied.tmp / "r2"),
    )
    assert rebuilt.code == 0  # other coins may pay a new batch; this one pays nothing twice
    assert [u.value for u in paid_to(proxied.node, payee(1))] == [AMOUNT_SATS]


def test_http_503_while_the_node_shuts_down(proxied: ProxiedDesk) -> None:
    signed_batch(proxied)
    assert proxied.proxy is not None
    proxied.proxy.fail("sendrawtransaction", "503")
    refused = proxied.run("batch", "broadcast", "b1")
    assert refused.code == 4
    assert "HTTP 503" in refused.err and "shutting down" in refused.err
    assert "is not a JSON-RPC reply" not in refused.err
    assert proxied.node.mempool() == []
    again = proxied.run("batch", "broadcast", "b1")
    assert again.code == 0 and "(sent)" in again.out
    assert broadcast_rows(proxied)[0]["sends"] == 2
    settle_and_check_paid_once(proxied)


@pytest.mark.parametrize("forget_mempool", [False, True])
def test_node_restart_after_the_send(proxied: ProxiedDesk, forget_mempool: bool) -> None:
    signed_batch(proxied)
    assert proxied.proxy is not None
    proxied.proxy.fail("sendrawtransaction", "drop", times=2)
    assert proxied.run("batch", "broadcast", "b1").code == 4
    (row,) = broadcast_rows(proxied)
    proxied.stop_node()
    down = proxied.run("batch", "broadcast", "b1")
    assert down.code == 4 and "is the node running?" in down.err
    proxied.start_node(forget_mempool=forget_mempool)
    again = proxied.run("batch", "broadcast", "b1")
    assert again.code == 0
    how = "(sent)" if forget_mempool else "(found in the node's mempool)"
    assert f"broadcast {row['txid']} {how}" in again.out
    assert proxied.node.mempool() == [row["txid"]]
    raw = proxied.node.raw_transaction(row["txid"])
    with proxied.store() as store:  # the very bytes recorded before the first attempt
        assert bytes(store.one("SELECT raw FROM broadcasts")["raw"]) == raw
    settle_and_check_paid_once(proxied)


def test_sync_resolves_a_sending_payment_the_node_restarted_without(
    proxied: ProxiedDesk,
) -> None:
    """The node lost its mempool in a restart: sync sends the recorded bytes again."""
    signed_batch(proxied)
    assert proxied.proxy is not None
    proxied.proxy.fail("sendrawtransaction", "drop", times=2)
    assert proxied.run("batch", "broadcast", "b1").code == 4
    proxied.restart_node(forget_mempool=True)
    assert proxied.node.mempool() == []
    result = proxied.run("sync")
    assert result.code == 0 and "1 re-sent" in result.out
    settle_and_check_paid_once(proxied)


def test_a_trickled_reply_cannot_hold_sync_past_the_deadline(proxied: ProxiedDesk) -> None:
    signed_batch(proxied)
    assert proxied.run("batch", "broadcast", "b1").code == 0
    proxied.node.mine(3)
    assert proxied.proxy is not None
    proxied.proxy.fail("getblock", "trickle", interval=0.25)
    started = time.monotonic()
    result = proxied.run("sync")
    elapsed = time.monotonic() - started
    assert result.code == 4 and "no complete reply" in result.err
    assert elapsed < RPC_DEADLINE_SECONDS + 2, elapsed
    settle_and_check_paid_once(proxied)


def test_status_while_the_node_is_unreachable_says_so(proxied: ProxiedDesk) -> None:
    signed_batch(proxied)
    proxied.ok("batch", "broadcast", "b1")
    proxied.node.mine(1)
    proxied.ok("sync")
    proxied.stop_node()
    result = proxied.run("status", "b1", "--json")
    assert result.code == 4
    shown = json.loads(result.out)
    assert shown["node"].startswith("unavailable: ") and shown["tip"] is None
    batch = shown["batches"][0]
    assert batch["state"] == "confirmed" and batch["confirmations"] is None
    assert "node unavailable" in batch["note"] and shown["last_sync"]["height"] > 0
    proxied.start_node()
    assert status_of(proxied)["confirmations"] == 1


# -- words that say what they mean ----------------------------------------------------------


def test_status_words_through_a_reorg(desk: Desk) -> None:
    signed_batch(desk)
    assert status_of(desk)["state"] == "signed"
    desk.ok("batch", "broadcast", "b1")
    assert status_of(desk)["state"] == "in_mempool"
    desk.node.mine(1)
    desk.ok("sync")
    shown = status_of(desk)
    assert (shown["state"], shown["confirmations"]) == ("confirmed", 1)
    desk.node.mine(5)
    assert status_of(desk)["state"] == "final"  # status reads the node, even before sync
    out = desk.ok("sync")
    assert "1 final" in out
    txid = status_of(desk)["txid"]
    desk.node.reorg(6)  # our block is gone; the node forgot the transaction
    shown = status_of(desk)  # before any sync: no longer final, and says why
    assert shown["state"] == "sending" and "left the chain in a reorg" in shown["note"]
    out = desk.ok("sync")
    assert "no longer final" in out and "1 re-sent" in out
    assert status_of(desk)["state"] == "in_mempool"
    desk.node.reorg(1, keep_transactions=True)  # only the tip is replaced: still in mempool
    desk.node.mine(1)
    desk.ok("sync")
    assert (status_of(desk)["state"], status_of(desk)["confirmations"]) == ("confirmed", 1)
    desk.node.mine(5)
    desk.ok("sync")
    assert status_of(desk)["state"] == "final" and status_of(desk)["txid"] == txid
    assert [u.value for u in paid_to(desk.node, payee(1))] == [AMOUNT_SATS]
    with desk.store() as store:
        assert store.one("SELECT state FROM batches")["state"] == "final"


def test_a_non_final_send_is_explained_and_sync_sends_it_when_valid(desk: Desk) -> None:
    """A transaction locked above the chain (as after a deep reorg) is not a compromise."""
    appliance = SoftAppliance("cold-1")
    funded_single(desk, appliance)
    with desk.store() as store:
        tip = desk.node.height()
        built = build_request(
            store,
            load_wallet(store, "treasury"),
            csv_for((payee(1), AMOUNT, "INV-1")).encode(),
            label="b1",
            purpose="p",
            requester="ops",
            fee_rate=2000,
            tip=tip + 3,
            expiry_seconds=3600,
        )
    request = desk.tmp / "b1.psbt"
    request.write_bytes(built.psbt.serialize())
    sign_and_import(desk, "b1", request, appliance)
    refused = desk.run("batch", "broadcast", "b1")
    assert refused.code == 2 and "non-final" in refused.err
    assert f"once the chain reaches height {tip + 3}" in refused.err
    assert "not a compromise" in refused.err
    desk.node.mine(2)
    out = desk.ok("sync")
    assert "non-final" in out and "not a compromise" in out and "ALERT" not in out
    desk.node.mine(1)
    out = desk.ok("sync")
    assert "1 re-sent" in out
    desk.node.mine(1)
    desk.ok("sync")
    assert status_of(desk)["state"] == "confirmed"


# -- the chain the node is on ---------------------------------------------------------------


def test_a_node_on_another_chain_is_refused_at_init_and_on_every_command(desk: Desk) -> None:
    node = load_config(desk.state).node
    other = desk.tmp / "mainnet-desk"
    refused = desk.run(
        "init",
        "--network",
        "mainnet",
        "--node-url",
        node.url,
        "--cookie",
        str(node.cookie),
        "--state",
        str(other),  # the last --state wins: a fresh state directory
    )
    assert refused.code == 2 and "on chain 'regtest'" in refused.err, refused.err
    assert "configured for mainnet" in refused.err and "wrote nothing" in refused.err
    assert not (other / "coordinator.toml").exists()
    # A configuration edited to mainnet afterwards: every command that talks to the node stops.
    signed_batch(desk)
    config = desk.state / "coordinator.toml"
    config.write_text(config.read_text().replace('network = "regtest"', 'network = "mainnet"'))
    for args in (
        ("sync",),
        ("status",),
        ("batch", "broadcast", "b1"),
        ("wallet", "reconcile", "treasury"),
    ):
        refused = desk.run(*args)
        assert refused.code == 2, (args, refused.err)
        assert "on chain 'regtest'" in refused.err and "configured for mainnet" in refused.err
    assert desk.node.mempool() == []
    with desk.store() as store:
        assert store.one("SELECT COUNT(*) AS n FROM broadcasts")["n"] == 0


# -- fee estimates ----------------------------------------------------------------------------


def test_fallback_fee_rate_is_said_and_garbage_estimates_are_refused(proxied: ProxiedDesk) -> None:
    appliance = SoftAppliance("cold-1")
    funded_single(proxied, appliance)
    csv = proxied.write("p.csv", csv_for((payee(1), AMOUNT, "INV-1")))
    args = ("batch", "create", "treasury", csv, "--purpose", "p", "--out", str(proxied.tmp))
    fallback = proxied.run(*args, "--label", "b1")
    assert fallback.code == 0
    assert "warning: fee rate 2 sat/vB: the fallback rate from coordinator.toml" in fallback.err
    assert "the node has no estimate (Insufficient data or no feerate found)" in fallback.err
    assert proxied.proxy is not None
    for garbage in (
        {"feerate": 50, "blocks": 6},
        {"feerate": -0.0001, "blocks": 6},
        {"feerate": "cheap", "blocks": 6},
        {"feerate": 0.000001, "blocks": 6},
    ):
        proxied.proxy.fail("estimatesmartfee", "result", result=garbage)
        refused = proxied.run(*args, "--label", "b2")
        assert refused.code == 2 and "garbage" in refused.err and "--fee-rate" in refused.err
        assert "nothing was created" in refused.err
    proxied.proxy.fail("estimatesmartfee", "result", result={"feerate": 0.00004, "blocks": 6})
    estimated = proxied.run(*args, "--label", "b2")
    assert estimated.code == 0 and "4 sat/vB: the node's estimate for 6 blocks" in estimated.out


def test_mainnet_needs_an_explicit_fee_rate_when_the_node_has_none(desk: Desk) -> None:
    from online_coordinator.fees import FeeError, choose_fee_rate
    from shared.bitcoin.address import Network

    rpc = load_config(desk.state).rpc()
    options = {"target_blocks": 6, "max_fee_rate": 100_000, "fallback_fee_rate": 2_000}
    with pytest.raises(FeeError, match="on mainnet give --fee-rate"):
        choose_fee_rate(rpc, Network.MAINNET, None, **options)
    assert choose_fee_rate(rpc, Network.MAINNET, 5_000, **options).rate == 5_000
    assert choose_fee_rate(rpc, Network.TESTNET, None, **options).source == "fallback"
    desk.node.set_fee_estimate(3_000)
    assert choose_fee_rate(rpc, Network.MAINNET, None, **options).rate == 3_000
