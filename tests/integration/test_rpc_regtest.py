"""BitcoinCoreRPC against the Coldstation regtest node behind its loopback JSON-RPC server.

Everything is real: the node validates with libbitcoinkernel, the server speaks Core's
wire protocol on a loopback port, and the client is the one the coordinator uses. The
CLI test runs ``regtest start`` as a user would, in separate processes.
"""

from __future__ import annotations

import base64
import http.client
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from online_coordinator.chain.rpc import (
    AUTH_FAILED,
    BitcoinCoreRPC,
    ChainUnavailable,
    RpcAuth,
    RpcError,
)
from online_coordinator.commands import regtest as regtest_commands
from online_coordinator.regtest import server as regtest_server
from online_coordinator.regtest.node import RegtestNode
from online_coordinator.regtest.server import STOP_MESSAGE, RegtestServer, start_in_thread
from shared.bitcoin.address import Network, script_to_address
from shared.bitcoin.block import Block
from shared.bitcoin.script import p2wsh_script
from shared.bitcoin.tx import SEQUENCE_RBF, OutPoint, Transaction, TxIn, TxOut

#: Anyone can spend a P2WSH of OP_TRUE by revealing it: tests need no keys to spend.
OP_TRUE = b"\x51"
ANYONE = p2wsh_script(OP_TRUE)
ANYONE_ADDRESS = script_to_address(ANYONE, Network.REGTEST)
OTHER = p2wsh_script(b"\x52")  # OP_2: unspendable by policy, just a destination
OTHER_ADDRESS = script_to_address(OTHER, Network.REGTEST)
MAINNET_ADDRESS = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"


@pytest.fixture
def served(tmp_path) -> Iterator[tuple[RegtestNode, RegtestServer]]:
    node = RegtestNode(tmp_path / "node")
    server = start_in_thread(node)
    yield node, server
    server.shutdown()
    node.close()


@pytest.fixture
def rpc(served) -> Iterator[BitcoinCoreRPC]:
    _, server = served
    client = BitcoinCoreRPC(server.url, RpcAuth.from_cookie(server.cookie_path), timeout=30)
    yield client
    client.close()


def _spend(txid: str, vout: int, value: int, fee: int = 1_000) -> Transaction:
    tx_in = TxIn(OutPoint.from_hex(txid, vout), sequence=SEQUENCE_RBF, witness=[OP_TRUE])
    return Transaction(inputs=[tx_in], outputs=[TxOut(value - fee, OTHER)])


def test_every_typed_method(served, rpc):
    node, _ = served
    assert rpc.chain_name() == "regtest"
    start = rpc.block_count()
    assert start == node.height() > 100  # the node pre-mines mature faucet coins

    mined = rpc.generate_to_address(2, ANYONE_ADDRESS)
    assert rpc.block_count() == start + 2
    assert rpc.block_hash(start + 2) == mined[-1]
    assert rpc.block_hashes([start + 1, start + 2]) == mined
    block = Block.parse(rpc.raw_block(mined[0]))
    assert block.hash_hex == mined[0]
    coinbase = block.transactions[0]
    assert rpc.raw_transaction(coinbase.txid_hex) == coinbase.serialize()
    assert rpc.raw_transactions([(coinbase.txid_hex, mined[0])]) == [coinbase.serialize()]

    funded = rpc.send_to_address(ANYONE_ADDRESS, 150_000_000)
    assert rpc.mempool_txids() == {funded}
    batch_txid = rpc.send_many({ANYONE_ADDRESS: 20_000, OTHER_ADDRESS: 30_000})
    assert rpc.mempool_txids() == {funded, batch_txid}
    rpc.generate_to_address(1, OTHER_ADDRESS)
    assert rpc.mempool_txids() == set()

    coinbases = [Block.parse(rpc.raw_block(h)).transactions[0].txid_hex for h in mined]
    found = {(o.txid, o.value): o for o in rpc.scan_scripts([ANYONE])}
    assert {(o.txid, o.coinbase) for o in found.values()} == {
        (coinbases[0], True),
        (coinbases[1], True),
        (funded, False),
        (batch_txid, False),
    }
    paid = found[(funded, 150_000_000)]
    assert paid.script_pubkey == ANYONE and paid.height == start + 3

    spend = _spend(paid.txid, paid.vout, paid.value)
    verdict = rpc.test_mempool_accept(spend.serialize())
    assert verdict.allowed and verdict.reason is None
    assert (verdict.txid, verdict.wtxid) == (spend.txid_hex, spend.wtxid_hex)
    assert verdict.fee == 1_000 and verdict.vsize == spend.vsize()
    assert rpc.send_raw_transaction(spend.serialize()) == spend.txid_hex
    assert rpc.mempool_txids() == {spend.txid_hex}
    again = rpc.test_mempool_accept(spend.serialize())
    assert not again.allowed and again.reason

    rpc.coldstation_setfeeestimate(2_500)
    assert rpc.estimate_fee_rate(6) == 2_500
    rpc.coldstation_setfeeestimate(None)
    assert rpc.estimate_fee_rate(6) is None


def test_reorg_and_rejections(rpc):
    tip = rpc.block_count()
    old = rpc.block_hash(tip)
    new = rpc.coldstation_reorg(2, extra_blocks=1)
    assert len(new) == 3 and rpc.block_count() == tip + 1
    assert rpc.block_hash(tip) != old
    assert len(rpc.raw_block(old)) > 80  # a stale block is still served, as by Core

    with pytest.raises(RpcError) as caught:
        rpc.send_raw_transaction(_spend("11" * 32, 0, 10_000).serialize())
    assert caught.value.code in (-25, -26)
    with pytest.raises(RpcError) as caught:
        rpc.send_raw_transaction(b"\x00\x01")
    assert caught.value.code == -22


def test_fee_cap_like_core(rpc):
    paid = rpc.send_to_address(ANYONE_ADDRESS, 1_000_000)
    rpc.generate_to_address(1, OTHER_ADDRESS)
    [coin] = [o for o in rpc.scan_scripts([ANYONE]) if o.txid == paid]
    greedy = _spend(coin.txid, coin.vout, coin.value, fee=990_000)  # > 0.10 BTC/kvB
    assert rpc.test_mempool_accept(greedy.serialize()).reason == "max-fee-exceeded"
    with pytest.raises(RpcError, match="Fee exceeds maximum") as caught:
        rpc.send_raw_transaction(greedy.serialize())
    assert caught.value.code == -25
    assert rpc.call("sendrawtransaction", greedy.serialize().hex(), 0) == greedy.txid_hex


@pytest.mark.parametrize(
    ("method", "params", "code"),
    [
        ("getblockhash", [10_000], -8),
        ("getblockhash", ["1"], -3),
        ("getblockhash", [], -1),
        ("getblock", ["00" * 32], -8),  # verbosity 1 by default: not served
        ("getblock", ["00" * 32, 0], -5),
        ("getblock", ["zz", 0], -8),
        ("getrawtransaction", ["00" * 32], -5),
        ("getrawtransaction", ["00" * 32, True], -8),
        ("scantxoutset", ["start", ["pkh(02" + "11" * 32 + ")"]], -8),
        ("scantxoutset", ["start", ["raw(51)#aaaaaaaa"]], -5),
        ("estimatesmartfee", [0], -8),
        ("generatetoaddress", [1, MAINNET_ADDRESS], -5),
        ("sendtoaddress", [OTHER_ADDRESS, "0.000000001"], -3),
        ("sendtoaddress", [OTHER_ADDRESS, -1], -3),
        ("sendtoaddress", [OTHER_ADDRESS, "sNaN"], -3),
        ("sendmany", ["", {OTHER_ADDRESS: 1, OTHER_ADDRESS.upper(): 1}], -8),
        ("testmempoolaccept", [["00", "00"]], -8),
        ("getmininginfo", [], -32601),
        ("coldstation_reorg", [0], -8),
    ],
)
def test_bad_requests_get_core_errors(rpc, method, params, code):
    with pytest.raises(RpcError) as caught:
        rpc.call(method, *params)
    assert caught.value.code == code
    assert rpc.block_count() > 0  # and the server carries on


def test_scan_by_address_descriptor(rpc):
    paid = rpc.send_to_address(OTHER_ADDRESS, 40_000)
    rpc.generate_to_address(1, ANYONE_ADDRESS)
    reply = rpc.call("scantxoutset", "start", [f"addr({OTHER_ADDRESS})"])
    [unspent] = [u for u in reply["unspents"] if u["txid"] == paid]
    assert str(unspent["amount"]) == "0.00040000"
    assert unspent["desc"].startswith(f"addr({OTHER_ADDRESS})#")
    assert unspent["blockhash"] == rpc.block_hash(unspent["height"])


def test_batch_mixes_results_and_errors(rpc):
    hashes = rpc.block_hashes(list(range(5)))
    assert len(set(hashes)) == 5
    assert rpc.batch([("getblockcount", []), ("getblockhash", [0])]) == [
        rpc.block_count(),
        hashes[0],
    ]
    with pytest.raises(RpcError, match="out of range"):
        rpc.batch([("getblockcount", []), ("getblockhash", [99_999])])


def _post(server: RegtestServer, body: bytes, auth: str | None = None, method: str = "POST"):
    parts = urlsplit(server.url)
    if auth is None:
        auth = "Basic " + base64.b64encode(server.cookie_path.read_bytes()).decode()
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, "/", body, {"Authorization": auth})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_bad_auth(served):
    _, server = served
    wrong = BitcoinCoreRPC(server.url, RpcAuth("__cookie__", "0" * 64), timeout=5)
    with pytest.raises(ChainUnavailable) as caught:
        wrong.block_count()
    assert str(caught.value) == AUTH_FAILED
    assert _post(server, b"{}", auth="Basic !!!")[0] == 401
    assert _post(server, b"{}", auth="Bearer x")[0] == 401


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"",
        b"\xff\xfe\x00",
        b'{"method": NaN}',
        b"[" * 5000,
        b'"just a string"',
        b'{"id": 1, "method": "getblockcount", "method": "stop"}',
    ],
)
def test_malformed_json_gets_parse_error(served, rpc, body):
    _, server = served
    status, reply = _post(server, body)
    assert status == 500
    error = json.loads(reply)["error"]
    assert error["code"] == -32700
    assert rpc.block_count() > 0


def test_odd_requests_do_not_hurt(served, rpc):
    _, server = served
    status, reply = _post(server, b"[]")
    assert status == 400 and json.loads(reply)["error"]["code"] == -32600
    status, reply = _post(server, b'[1, {"method": 5}, {"id": [1], "method": "getblockcount"}]')
    assert status == 200
    first, second, third = json.loads(reply)
    assert first["error"]["code"] == second["error"]["code"] == -32600
    assert third["result"] == rpc.block_count() and third["id"] == [1]
    status, reply = _post(server, b'{"id": 1, "method": "getblockcount", "params": {"a": 1}}')
    assert status == 500 and json.loads(reply)["error"]["code"] == -8
    assert _post(server, b"", method="GET")[0] == 405
    assert rpc.block_count() > 0


def test_stop_rpc_shuts_the_server_down(tmp_path):
    with RegtestNode(tmp_path / "node") as node:
        server = start_in_thread(node)
        client = BitcoinCoreRPC(server.url, RpcAuth.from_cookie(server.cookie_path), timeout=5)
        assert client.stop() == STOP_MESSAGE
        server._thread.join(timeout=10)
        assert not server._thread.is_alive()
        server.shutdown()
        assert not server.cookie_path.exists()
        with pytest.raises(ChainUnavailable):
            client.block_count()


# -- the CLI, as a user runs it -----------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "online_coordinator.cli", "regtest", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)


def test_start_without_the_regtest_extra_says_which_extra(tmp_path, monkeypatch, capsys):
    """Issue 18: a plain `pip install` (no py-bitcoinkernel) failed with a traceback."""
    from online_coordinator.cli import main

    monkeypatch.setitem(sys.modules, "pbk", None)  # as if not installed
    assert main(["regtest", "start", "--datadir", str(tmp_path / "rt")]) == 2
    err = capsys.readouterr().err
    assert "needs the 'regtest' extra" in err and "Traceback" not in err
    assert not (tmp_path / "rt").exists()


def test_cli_constants_match_the_server():
    assert regtest_commands.INFO_FILE == regtest_server.INFO_FILE
    assert regtest_commands.PID_FILE == regtest_server.PID_FILE
    assert regtest_commands.DEFAULT_PORT == regtest_server.DEFAULT_PORT


def test_cli_start_mine_fund_reorg_stop(tmp_path: Path):
    datadir = str(tmp_path / "regtest")
    usage = subprocess.run(
        [sys.executable, "-m", "online_coordinator.cli", "--help"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    assert "regtest" in usage, "register commands.regtest.register in online_coordinator/cli.py"
    started = _cli("start", "--datadir", datadir, "--port", "0")
    assert started.returncode == 0, started.stderr
    try:
        info = json.loads(started.stdout)
        assert info["url"].startswith("http://127.0.0.1:") and not info["already_running"]
        again = _cli("start", "--datadir", datadir, "--port", "0")
        assert again.returncode == 0 and json.loads(again.stdout)["already_running"]

        status = _cli("status", "--datadir", datadir)
        assert status.returncode == 0, status.stderr
        height = json.loads(status.stdout)["height"]
        # the coordinator's config names the node: no --datadir again (issue 18)
        state = tmp_path / "coordinator"
        init = subprocess.run(
            [sys.executable, "-m", "online_coordinator.cli", "init", "--state", str(state),
             "--regtest", datadir],
            capture_output=True, text=True, timeout=90, check=False,
        )  # fmt: skip
        assert init.returncode == 0, init.stderr
        known = _cli("status", "--state", str(state))
        assert known.returncode == 0 and json.loads(known.stdout)["height"] == height

        mined = _cli("mine", "3", "--datadir", datadir)
        assert mined.returncode == 0, mined.stderr
        assert len(mined.stdout.split()) == 3
        assert _cli("mine", "1", "--address", ANYONE_ADDRESS, "--datadir", datadir).returncode == 0

        funded = _cli("fund", ANYONE_ADDRESS, "1.5", "--datadir", datadir)
        assert funded.returncode == 0, funded.stderr
        txid = funded.stdout.strip()
        bad = _cli("fund", ANYONE_ADDRESS, "0.000000001", "--datadir", datadir)
        assert bad.returncode == 2 and "whole number of satoshis" in bad.stderr

        reorg = _cli("reorg", "2", "--keep-transactions", "--datadir", datadir)
        assert reorg.returncode == 0, reorg.stderr
        assert len(reorg.stdout.split()) == 3

        with BitcoinCoreRPC(info["url"], RpcAuth.from_cookie(info["cookie"])) as rpc:
            assert rpc.block_count() == height + 4 + 1
            assert txid in rpc.mempool_txids()
    finally:
        stopped = _cli("stop", "--datadir", datadir)
    assert stopped.returncode == 0, stopped.stderr
    assert STOP_MESSAGE in stopped.stdout
    assert not (tmp_path / "regtest" / "regtest.json").exists()
    assert not Path(info["cookie"]).exists()
    assert _cli("status", "--datadir", datadir).returncode == 1
    assert _cli("stop", "--datadir", datadir).returncode == 0
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    info_file = tmp_path / "regtest" / "regtest.json"
    info_file.write_text(json.dumps({**info, "pid": exited.pid}))  # as after a SIGKILL
    stale = _cli("stop", "--datadir", datadir)
    assert stale.returncode == 0 and "removed" in stale.stdout and not info_file.exists()
    missing = _cli("mine", "1", "--datadir", datadir)
    # exit 4, node unavailable (docs/exit-codes.md)
    assert missing.returncode == 4 and "no regtest node running" in missing.stderr


# -- Core's answers on the broadcast paths (issue 13) ------------------------------------------


def test_resending_answers_as_core_does(served, rpc):
    """In the mempool: txid again (sendrawtransaction), "txn-already-in-mempool"
    (testmempoolaccept). Mined with unspent outputs: -27 "Transaction outputs already in utxo
    set" and "txn-already-known". Mined and its outputs spent: -25
    "bad-txns-inputs-missingorspent" and "missing-inputs"."""
    paid = rpc.send_to_address(ANYONE_ADDRESS, 1_000_000)
    rpc.generate_to_address(1, OTHER_ADDRESS)
    [coin] = [o for o in rpc.scan_scripts([ANYONE]) if o.txid == paid]
    spend = _spend(coin.txid, coin.vout, coin.value)
    raw = spend.serialize()
    txid = rpc.send_raw_transaction(raw)
    assert rpc.send_raw_transaction(raw) == txid
    assert rpc.test_mempool_accept(raw).reason == "txn-already-in-mempool"
    assert rpc.mempool_wtxid(txid) == spend.wtxid_hex
    assert rpc.unspent_confirmations(coin.txid, coin.vout) is None  # spent in the mempool
    assert rpc.unspent_confirmations(coin.txid, coin.vout, include_mempool=False) == 1
    assert rpc.unspent_confirmations(txid, 0) == 0  # a mempool output
    rpc.generate_to_address(1, OTHER_ADDRESS)
    assert rpc.mempool_wtxid(txid) is None
    with pytest.raises(RpcError) as caught:
        rpc.send_raw_transaction(raw)
    assert (caught.value.code, caught.value.message) == (
        -27,
        "Transaction outputs already in utxo set",
    )
    assert rpc.test_mempool_accept(raw).reason == "txn-already-known"
    node, _ = served
    assert node.tx_out(txid, 0) is not None
    never = _spend(coin.txid, coin.vout, coin.value, fee=2_000)  # its coin is spent
    assert rpc.test_mempool_accept(never.serialize()).reason == "missing-inputs"
    with pytest.raises(RpcError) as caught:
        rpc.send_raw_transaction(never.serialize())
    assert (caught.value.code, caught.value.message) == (-25, "bad-txns-inputs-missingorspent")
    with pytest.raises(RpcError) as caught:
        rpc.call("getmempoolentry", "11" * 32)
    assert (caught.value.code, caught.value.message) == (-5, "Transaction not in mempool")


def test_non_final_is_refused_with_cores_code_and_string(rpc):
    paid = rpc.send_to_address(ANYONE_ADDRESS, 1_000_000)
    rpc.generate_to_address(1, OTHER_ADDRESS)
    [coin] = [o for o in rpc.scan_scripts([ANYONE]) if o.txid == paid]
    spend = _spend(coin.txid, coin.vout, coin.value)
    spend.locktime = rpc.block_count() + 1  # valid only from the block after the next
    assert rpc.test_mempool_accept(spend.serialize()).reason == "non-final"
    with pytest.raises(RpcError) as caught:
        rpc.send_raw_transaction(spend.serialize())
    assert (caught.value.code, caught.value.message) == (-26, "non-final")


def test_a_stopping_node_answers_http_503_as_core_does(tmp_path):
    with RegtestNode(tmp_path / "node") as node:
        server = start_in_thread(node, stop_delay_seconds=1.0)
        auth = RpcAuth.from_cookie(server.cookie_path)
        first = BitcoinCoreRPC(server.url, auth, timeout=5)
        assert first.stop() == STOP_MESSAGE
        status, body = _post(server, b'{"method": "getblockcount"}', auth="Basic eDp5")
        assert status == 503 and body == regtest_server.SERVICE_UNAVAILABLE_BODY
        with pytest.raises(ChainUnavailable, match=r"HTTP 503 .*shutting down or overloaded"):
            BitcoinCoreRPC(server.url, auth, timeout=5).block_count()
        server._thread.join(timeout=10)
        server.shutdown()


def test_walletprocesspsbt_signs_and_finalizes_like_core(served, rpc):
    """A PSBT spending the faucet's coin: the node's wallet holds the faucet key."""
    from online_coordinator.regtest.faucet import FAUCET_SCRIPT
    from shared.psbt.model import Psbt

    [coin, *_] = rpc.scan_scripts([FAUCET_SCRIPT])
    prev = Transaction.parse(rpc.raw_transaction(coin.txid, rpc.block_hash(coin.height)))
    tx = Transaction(
        2,
        [TxIn(OutPoint.from_hex(coin.txid, coin.vout), b"", SEQUENCE_RBF)],
        [TxOut(coin.value - 2_000, OTHER)],
    )
    psbt = Psbt.from_unsigned_tx(tx)
    psbt.inputs[0].set(0x00, prev.serialize())
    unsigned = base64.b64encode(psbt.serialize()).decode()
    kept = rpc.call("walletprocesspsbt", unsigned, True, "ALL", True, False)
    assert kept["complete"] is True and "hex" not in kept
    assert Psbt.from_text(kept["psbt"]).inputs[0].partial_sigs
    final = rpc.call("walletprocesspsbt", unsigned)
    finalized = Psbt.from_text(final["psbt"]).inputs[0]
    assert final["complete"] is True and finalized.is_finalized and not finalized.partial_sigs
    assert rpc.send_raw_transaction(bytes.fromhex(final["hex"])) == tx.txid_hex
    assert rpc.call("importdescriptors", [{"desc": "wpkh(02" + "11" * 32 + ")"}]) == [
        {
            "success": False,
            "error": {
                "code": -8,
                "message": "Cannot import descriptor without "
                "private keys to a wallet with private keys enabled",
            },
        }
    ]
