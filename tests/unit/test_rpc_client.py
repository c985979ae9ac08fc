"""BitcoinCoreRPC without a node: exact amounts, cookies, and every way a reply can go wrong.

A tiny local HTTP server plays Bitcoin Core with canned replies, so the transport and
error mapping are exercised over real sockets.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given
from hypothesis import strategies as st

from online_coordinator.chain.rpc import (
    AUTH_FAILED,
    MAX_MONEY,
    AmountError,
    BitcoinCoreRPC,
    ChainUnavailable,
    RpcAuth,
    RpcError,
    btc_to_sats,
    decode_json,
    encode_json,
    sats_to_btc,
)

TXID = "ab" * 32
BLOCK = "00" * 4 + "cd" * 28


# -- amounts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "sats"),
    [
        ("0", 0),
        ("0.00000001", 1),
        ("1", 100_000_000),
        ("50.00000000", 5_000_000_000),
        ("1E+2", 10_000_000_000),
        ("21000000", MAX_MONEY),
        ("20999999.99999999", MAX_MONEY - 1),
    ],
)
def test_btc_to_sats_exact(text, sats):
    assert btc_to_sats(Decimal(text)) == sats


@pytest.mark.parametrize(
    "text",
    [
        "0.000000001",
        "1.000000000000000000000000000001",  # beyond Decimal's 28-digit context
        "-0.00000001",
        "21000000.00000001",
        "1E+30",
        "NaN",
        "Infinity",
    ],
)
def test_btc_to_sats_refuses(text):
    with pytest.raises(AmountError):
        btc_to_sats(Decimal(text))


@pytest.mark.parametrize("value", [0.1, "1", True, None])
def test_btc_to_sats_refuses_non_decimals(value):
    with pytest.raises(AmountError):
        btc_to_sats(value)


def test_sats_to_btc_has_eight_decimals():
    assert sats_to_btc(1) == Decimal("0.00000001")
    assert sats_to_btc(1).as_tuple().exponent == -8
    assert encode_json(sats_to_btc(1)) == "0.00000001"
    assert encode_json(sats_to_btc(5_000_000_000)) == "50.00000000"
    assert encode_json([sats_to_btc(0), sats_to_btc(MAX_MONEY)]) == "[0.00000000,21000000.00000000]"
    for bad in (-1, MAX_MONEY + 1, True, 1.0):
        with pytest.raises(AmountError):
            sats_to_btc(bad)


@given(st.integers(min_value=0, max_value=MAX_MONEY))
def test_amount_round_trip_through_json(sats):
    text = encode_json({"amount": sats_to_btc(sats)})
    assert btc_to_sats(decode_json(text)["amount"]) == sats


def test_decode_json_refuses_nan_and_optionally_duplicate_keys():
    with pytest.raises(ValueError):
        decode_json('{"a": NaN}')
    assert decode_json('{"a": 1, "a": 2}') == {"a": 2}
    with pytest.raises(ValueError, match="duplicate key 'a'"):
        decode_json('{"a": 1, "a": 2}', unique_keys=True)


# -- credentials and URLs -----------------------------------------------------------------


def test_cookie_file(tmp_path):
    path = tmp_path / ".cookie"
    path.write_text("__cookie__:" + "ab" * 32)
    auth = RpcAuth.from_cookie(path)
    assert (auth.user, auth.password) == ("__cookie__", "ab" * 32)
    assert "ab" * 32 not in repr(auth)
    path.write_text("__cookie__:secret\n")  # a trailing newline is tolerated
    assert RpcAuth.from_cookie(path).password == "secret"


@pytest.mark.parametrize("content", ["", "nocolon", ":password", "user:", "a:b\nc:d"])
def test_bad_cookie_file(tmp_path, content):
    path = tmp_path / ".cookie"
    path.write_text(content)
    with pytest.raises(ChainUnavailable, match="not a Bitcoin Core cookie file"):
        RpcAuth.from_cookie(path)


def test_missing_cookie_file(tmp_path):
    with pytest.raises(ChainUnavailable, match=r"cannot read cookie file .*is the node running"):
        RpcAuth.from_cookie(tmp_path / "absent")


@pytest.mark.parametrize(
    "url", ["https://127.0.0.1:8332/", "http://user:pw@127.0.0.1:8332/", "127.0.0.1:8332"]
)
def test_url_refused(url):
    with pytest.raises(ValueError):
        BitcoinCoreRPC(url, RpcAuth("u", "p"))


# -- a canned Core ------------------------------------------------------------------------

Responder = Callable[[BaseHTTPRequestHandler, object], None]


class _CannedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Canned

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append((dict(self.headers), body))
        self.server.connections.add(self.client_address)
        self.server.respond(self, json.loads(body))

    def log_message(self, *args):
        pass


class _Canned(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CannedHandler)
        self.requests: list[tuple[dict, bytes]] = []
        self.connections: set = set()
        self.respond: Responder = lambda handler, request: None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes, close: bool = False) -> None:
    handler.send_response(status)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
    handler.close_connection = close  # without telling the client: a silently dropped keep-alive


def result(value_text: str) -> Responder:
    """Reply with a JSON result given as raw text (so amounts keep their digits)."""

    def respond(handler, request):
        body = f'{{"result": {value_text}, "error": null, "id": {json.dumps(request["id"])}}}'
        send(handler, 200, body.encode())

    return respond


@pytest.fixture
def canned() -> Iterator[_Canned]:
    server = _Canned()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def rpc(canned) -> Iterator[BitcoinCoreRPC]:
    client = BitcoinCoreRPC(canned.url, RpcAuth("__cookie__", "pw"), timeout=2.0)
    yield client
    client.close()


def test_request_shape_and_auth(canned, rpc):
    canned.respond = result("7")
    assert rpc.block_count() == 7
    headers, body = canned.requests[0]
    assert headers["Authorization"] == "Basic X19jb29raWVfXzpwdw=="
    assert json.loads(body) == {"jsonrpc": "1.0", "id": 1, "method": "getblockcount", "params": []}


def test_amounts_are_sent_with_exact_digits(canned, rpc):
    canned.respond = result(json.dumps(TXID))
    assert rpc.send_to_address("bcrt1qaddress", 150_000_001) == TXID
    assert b'"params":["bcrt1qaddress",1.50000001]' in canned.requests[0][1]
    rpc.send_many({"a": 1, "b": 2})
    assert b'"params":["",{"a":0.00000001,"b":0.00000002}]' in canned.requests[1][1]


def test_rpc_error_object(canned, rpc):
    def respond(handler, request):
        error = {"code": -8, "message": "Block height out of range"}
        reply = {"result": None, "error": error, "id": request["id"]}
        send(handler, 500, json.dumps(reply).encode())

    canned.respond = respond
    with pytest.raises(RpcError) as caught:
        rpc.block_hash(99)
    assert (caught.value.code, caught.value.message) == (-8, "Block height out of range")
    assert caught.value.method == "getblockhash"


def test_warmup_is_unavailable(canned, rpc):
    def respond(handler, request):
        error = {"code": -28, "message": "Loading block index…"}
        send(handler, 500, json.dumps({"result": None, "error": error, "id": 1}).encode())

    canned.respond = respond
    with pytest.raises(ChainUnavailable, match="not ready: Loading block index"):
        rpc.block_count()


def test_401_is_an_authentication_failure(canned, rpc):
    canned.respond = lambda handler, request: send(handler, 401, b"")
    with pytest.raises(ChainUnavailable) as caught:
        rpc.block_count()
    assert str(caught.value) == AUTH_FAILED


@pytest.mark.parametrize("body", [b"<html>busy</html>", b"", b'{"result": NaN}', b"[1, 2"])
def test_non_json_reply(canned, rpc, body):
    canned.respond = lambda handler, request: send(handler, 200, body)
    with pytest.raises(ChainUnavailable, match="not a JSON-RPC reply"):
        rpc.block_count()


@pytest.mark.parametrize("value", ['"seven"', "7.5", "true", "null"])
def test_wrong_result_type(canned, rpc, value):
    canned.respond = result(value)
    with pytest.raises(ChainUnavailable, match="unexpected reply to getblockcount"):
        rpc.block_count()


def test_closed_socket_without_reply(canned, rpc):
    def respond(handler, request):
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)

    canned.respond = respond
    with pytest.raises(ChainUnavailable, match="dropped"):
        rpc.block_count()


def test_dropped_keep_alive_reconnects_once(canned, rpc):
    def respond(handler, request):
        body = json.dumps({"result": 5, "error": None, "id": request["id"]}).encode()
        send(handler, 200, body, close=True)

    canned.respond = respond
    assert rpc.block_count() == 5
    time.sleep(0.05)  # let the server close its end
    assert rpc.block_count() == 5
    assert len(canned.connections) == 2


def test_timeout(canned):
    canned.respond = lambda handler, request: time.sleep(1.0)
    client = BitcoinCoreRPC(canned.url, RpcAuth("u", "p"), timeout=0.2)
    with client, pytest.raises(ChainUnavailable, match=r"no complete reply from .* within 0.2 s"):
        client.block_count()


def test_connection_refused():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ChainUnavailable, match="connection refused"):
        BitcoinCoreRPC(f"http://127.0.0.1:{port}/", RpcAuth("u", "p")).block_count()


# -- batches ------------------------------------------------------------------------------


def test_batch_results_in_request_order(canned, rpc):
    def respond(handler, request):
        replies = [
            {"result": f"{entry['params'][0]:064x}", "error": None, "id": entry["id"]}
            for entry in reversed(request)
        ]
        send(handler, 200, json.dumps(replies).encode())

    canned.respond = respond
    assert rpc.block_hashes([1, 2, 3]) == [f"{h:064x}" for h in (1, 2, 3)]
    assert rpc.batch([]) == []
    assert len(canned.requests) == 1


def test_batch_error_and_missing_reply(canned, rpc):
    def with_error(handler, request):
        replies = [
            {"result": "00" * 32, "error": None, "id": request[0]["id"]},
            {"result": None, "error": {"code": -5, "message": "No such"}, "id": request[1]["id"]},
        ]
        send(handler, 200, json.dumps(replies).encode())

    canned.respond = with_error
    with pytest.raises(RpcError, match="No such"):
        rpc.raw_transactions([(TXID, None), (TXID, BLOCK)])
    assert json.loads(canned.requests[0][1])[1]["params"] == [TXID, False, BLOCK]

    canned.respond = lambda handler, request: send(handler, 200, b"[]")
    with pytest.raises(ChainUnavailable, match="no reply for request"):
        rpc.block_hashes([1])


# -- typed results from Core-shaped replies -----------------------------------------------


def test_scan_scripts(canned, rpc):
    script = bytes.fromhex("0014" + "11" * 20)
    canned.respond = result(
        '{"success": true, "txouts": 9, "height": 120, "bestblock": "' + "ee" * 32 + '",'
        ' "unspents": [{"txid": "'
        + TXID
        + '", "vout": 1, "scriptPubKey": "'
        + script.hex()
        + '", "desc": "addr(x)#y", "amount": 0.00012345, "coinbase": false, "height": 110,'
        ' "blockhash": "' + "dd" * 32 + '"}], "total_amount": 0.00012345}'
    )
    [found] = rpc.scan_scripts([script, script])
    assert (found.txid, found.vout, found.value, found.height) == (TXID, 1, 12345, 110)
    assert found.script_pubkey == script and found.coinbase is False
    params = json.loads(canned.requests[0][1])["params"]
    assert params == ["start", [{"desc": f"raw({script.hex()})"}]]
    assert rpc.scan_scripts([]) == []


def test_scan_refuses_scripts_not_asked_for(canned, rpc):
    canned.respond = result(
        '{"success": true, "height": 1, "unspents": [{"txid": "' + TXID + '", "vout": 0,'
        ' "scriptPubKey": "51", "amount": 1.0, "coinbase": true, "height": 1}]}'
    )
    with pytest.raises(ChainUnavailable, match="did not ask about"):
        rpc.scan_scripts([b"\x52"])


def test_estimate_fee_rate(canned, rpc):
    canned.respond = result('{"feerate": 0.00012345, "blocks": 6}')
    assert rpc.estimate_fee_rate(6) == 12345
    canned.respond = result('{"errors": ["Insufficient data or no feerate found"], "blocks": 0}')
    assert rpc.estimate_fee_rate(6) is None
    canned.respond = result('{"feerate": 0.000123456, "blocks": 6}')
    with pytest.raises(ChainUnavailable, match="not a whole number of satoshis"):
        rpc.estimate_fee_rate(6)


def test_test_mempool_accept(canned, rpc):
    canned.respond = result(
        '[{"txid": "' + TXID + '", "wtxid": "' + "cc" * 32 + '", "allowed": true,'
        ' "vsize": 141, "fees": {"base": 0.00000282, "effective-feerate": 0.00002}}]'
    )
    accepted = rpc.test_mempool_accept(b"\x01\x02")
    assert accepted.allowed and accepted.reason is None
    assert (accepted.vsize, accepted.fee) == (141, 282)
    assert json.loads(canned.requests[0][1])["params"] == [["0102"]]
    canned.respond = result(
        '[{"txid": "' + TXID + '", "wtxid": "' + "cc" * 32 + '", "allowed": false,'
        ' "reject-reason": "missing-inputs"}]'
    )
    refused = rpc.test_mempool_accept(b"\x01")
    assert not refused.allowed and refused.reason == "missing-inputs" and refused.fee is None


def test_chain_name_mempool_and_raw_data(canned, rpc):
    canned.respond = result('{"chain": "testnet4", "blocks": 5}')
    assert rpc.chain_name() == "testnet4"
    canned.respond = result(json.dumps([TXID, "CD" * 32]))
    assert rpc.mempool_txids() == {TXID, "cd" * 32}
    canned.respond = result('"00ff"')
    assert rpc.raw_block(BLOCK) == b"\x00\xff"
    assert json.loads(canned.requests[-1][1])["params"] == [BLOCK, 0]
    canned.respond = result('"zz"')
    with pytest.raises(ChainUnavailable, match="not hex"):
        rpc.raw_transaction(TXID)


# -- one deadline per call, and one clear line per failure (issue 13) -----------------------


def test_a_trickled_reply_cannot_outlast_the_deadline(canned):
    """A byte every 0.1 s never trips a per-read timeout; the whole-call deadline does."""

    def respond(handler, request):
        body = json.dumps({"result": 7, "error": None, "id": request["id"]}).encode()
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        try:
            for byte in head + body:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass
        handler.close_connection = True

    canned.respond = respond
    client = BitcoinCoreRPC(canned.url, RpcAuth("u", "p"), timeout=1.0)
    started = time.monotonic()
    with client, pytest.raises(ChainUnavailable, match=r"no complete reply from .* within 1 s"):
        client.block_count()
    assert time.monotonic() - started < 2.0


def test_http_503_reads_as_a_node_shutting_down(canned, rpc):
    page = b"<HTML><HEAD>\n<TITLE>503 Service Unavailable</TITLE>\n</HEAD></HTML>\n"
    canned.respond = lambda handler, request: send(handler, 503, page)
    with pytest.raises(ChainUnavailable) as caught:
        rpc.block_count()
    assert "HTTP 503" in str(caught.value) and "shutting down or overloaded" in str(caught.value)
    assert "not a JSON-RPC reply" not in str(caught.value)


def test_garbage_and_half_replies_are_one_clear_line(canned, rpc):
    canned.respond = lambda handler, request: send(handler, 200, b'{"result": 7, <<\x00garbage')
    with pytest.raises(ChainUnavailable) as caught:
        rpc.block_count()
    text = str(caught.value)
    assert "not a JSON-RPC reply" in text and "garbage" in text and "\x00" not in text

    def half(handler, request):
        body = json.dumps({"result": 7, "error": None, "id": request["id"]}).encode()
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body[: len(body) // 2])
        handler.close_connection = True

    canned.respond = half
    with pytest.raises(ChainUnavailable, match="half way through its reply"):
        rpc.block_count()


def test_chain_identity_is_the_name_and_the_genesis_block(canned, rpc):
    from online_coordinator.chain.identity import GENESIS, ChainMismatch, check_chain
    from shared.bitcoin.address import Network

    def identity(chain: str, genesis: str):
        def respond(handler, request):
            replies = [
                {"result": {"chain": chain}, "error": None, "id": request[0]["id"]},
                {"result": genesis, "error": None, "id": request[1]["id"]},
            ]
            send(handler, 200, json.dumps(replies).encode())

        return respond

    canned.respond = identity("regtest", GENESIS["regtest"])
    assert check_chain(rpc, Network.REGTEST) == "regtest"
    with pytest.raises(ChainMismatch, match=r"on chain 'regtest'.*configured for mainnet"):
        check_chain(rpc, Network.MAINNET)
    canned.respond = identity("main", GENESIS["regtest"])  # a node that lies about its name
    with pytest.raises(ChainMismatch, match="genesis block is 0f9188f1"):
        check_chain(rpc, Network.MAINNET)
    canned.respond = identity("testnet4", GENESIS["testnet4"])
    assert check_chain(rpc, Network.TESTNET) == "testnet4"
