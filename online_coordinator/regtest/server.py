"""A loopback JSON-RPC server that makes a :class:`RegtestNode` look like Bitcoin Core.

The coordinator only ever talks to a node through :class:`BitcoinCoreRPC`; serving our
regtest node behind the same wire protocol (Basic auth from a ``.cookie`` file, JSON-RPC
1.0 single and batch requests, amounts as numbers with exactly 8 decimals, Core's error
codes and HTTP statuses) means tests and the demo exercise the very code path that talks
to a real node. Only the methods the client uses are served; anything else is refused
clearly rather than half-emulated.

Requests are handled on threads (an idle keep-alive client must not block others). The
node locks itself; the server's own lock additionally makes a ``stop`` (or shutdown) wait
for the call in progress and refuse later ones, so the node is never used after closing,
and keeps sendrawtransaction's fee check and its send one step.

``python -m online_coordinator.regtest.server --datadir D --port P`` runs it standalone
until the ``stop`` RPC or SIGTERM, with ``regtest.pid`` and ``regtest.json`` in ``D``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import json
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

from online_coordinator.chain.rpc import (
    AmountError,
    btc_to_sats,
    decode_json,
    encode_json,
    sats_to_btc,
)
from online_coordinator.regtest.node import NodeError, RegtestNode
from shared.bitcoin.address import (
    AddressError,
    Network,
    address_to_script,
    script_to_address,
    wif_to_private_key,
)
from shared.bitcoin.descriptor import DescriptorError, add_checksum, split_checksum
from shared.bitcoin.tx import Transaction
from shared.psbt import PsbtError, extract
from shared.psbt.model import Psbt

DEFAULT_PORT = 18443  # Core's regtest RPC port
MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_BATCH = 10_000
MAX_GENERATE = 10_000
#: Core's default ``maxfeerate`` for sendrawtransaction/testmempoolaccept: 0.10 BTC/kvB.
DEFAULT_MAX_FEE_RATE = Decimal("0.10")
MAX_CONF_TARGET = 1008
STOP_MESSAGE = "Coldstation regtest stopping"
HTTP_SERVICE_UNAVAILABLE = 503
#: What Core's libevent server sends while shutting down (evhttp_send_error, 503).
SERVICE_UNAVAILABLE_BODY = (
    b"<HTML><HEAD>\n<TITLE>503 Service Unavailable</TITLE>\n</HEAD><BODY>\n"
    b"<H1>Service Unavailable</H1>\n</BODY></HTML>\n"
)
#: Core's reject reason for TX_MISSING_INPUTS, which testmempoolaccept shows as
#: "missing-inputs" and sendrawtransaction as this text (RPC -25).
MISSING_INPUTS_REASON = "bad-txns-inputs-missingorspent"
COOKIE_USER = "__cookie__"
PID_FILE = "regtest.pid"
INFO_FILE = "regtest.json"
COOKIE_FILE = ".cookie"

# Bitcoin Core's RPC error codes (src/rpc/protocol.h).
RPC_MISC_ERROR = -1
RPC_TYPE_ERROR = -3
RPC_INVALID_ADDRESS_OR_KEY = -5
RPC_INVALID_PARAMETER = -8
RPC_DESERIALIZATION_ERROR = -22
RPC_TRANSACTION_ERROR = -25
RPC_IN_WARMUP = -28
RPC_INVALID_REQUEST = -32600
RPC_METHOD_NOT_FOUND = -32601
RPC_INTERNAL_ERROR = -32603
RPC_PARSE_ERROR = -32700

_CHAIN_NAMES = {
    Network.MAINNET: "main",
    Network.TESTNET: "test",
    Network.SIGNET: "signet",
    Network.REGTEST: "regtest",
}
_ESTIMATE_MODES = ("unset", "economical", "conservative")
_MISSING: Any = object()


class JsonRpcError(Exception):
    """A JSON-RPC error object to send back: Core's code and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- parameters ---------------------------------------------------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _type_fault(name: str, value: Any, expected: str) -> JsonRpcError:
    return JsonRpcError(
        RPC_TYPE_ERROR,
        f"JSON value of type {_json_type(value)} for {name} is not of expected type {expected}",
    )


def _shown(text: str) -> str:
    """Echo user input in messages without echoing megabytes of it."""
    return text if len(text) <= 80 else text[:77] + "..."


class Params:
    """Positional parameters with Core's errors; JSON null counts as omitted, as in Core."""

    def __init__(self, values: list[Any]) -> None:
        self._values = values

    def get(self, index: int, default: Any = _MISSING) -> Any:
        value = self._values[index] if index < len(self._values) else None
        if value is None and default is not _MISSING:
            return default
        return value

    def whole(self, index: int, name: str, default: Any = _MISSING) -> int:
        value = self.get(index, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_fault(name, value, "number")
        return value

    def integer(self, index: int, name: str, low: int, high: int, default: Any = _MISSING) -> int:
        value = self.whole(index, name, default)
        if not low <= value <= high:
            raise JsonRpcError(RPC_INVALID_PARAMETER, f"{name} must be between {low} and {high}")
        return value

    def boolean(self, index: int, name: str, default: Any = _MISSING) -> bool:
        value = self.get(index, default)
        if not isinstance(value, bool):
            raise _type_fault(name, value, "bool")
        return value

    def flag(self, index: int, name: str) -> int:
        """Core's verbosity arguments: a bool or a number, false/0 by default here."""
        value = self.get(index, 0)
        if isinstance(value, bool):
            return int(value)
        if not isinstance(value, int):
            raise _type_fault(name, value, "number")
        return value

    def string(self, index: int, name: str, default: Any = _MISSING) -> str:
        value = self.get(index, default)
        if not isinstance(value, str):
            raise _type_fault(name, value, "string")
        return value

    def hash(self, index: int, name: str) -> str:
        return _parse_hash(self.string(index, name), name)

    def optional_hash(self, index: int, name: str) -> str | None:
        return None if self.get(index) is None else self.hash(index, name)

    def transaction(self, index: int, name: str) -> bytes:
        """A serialized transaction that at least parses; Core's -22 otherwise."""
        text = self.string(index, name)
        try:
            raw = bytes.fromhex(text)
            Transaction.parse(raw)
        except ValueError as exc:
            raise JsonRpcError(RPC_DESERIALIZATION_ERROR, f"TX decode failed: {exc}") from None
        return raw

    def amount(self, index: int, name: str, default: Any = _MISSING) -> int:
        return parse_amount(self.get(index, default), name)

    def array(self, index: int, name: str, default: Any = _MISSING) -> list[Any]:
        value = self.get(index, default)
        if not isinstance(value, list):
            raise _type_fault(name, value, "array")
        return value

    def object(self, index: int, name: str) -> dict[str, Any]:
        value = self.get(index)
        if not isinstance(value, dict):
            raise _type_fault(name, value, "object")
        return value


def _parse_hash(value: str, name: str) -> str:
    """Core's ParseHashV, with its messages."""
    if len(value) != 64:
        message = f"{name} must be of length 64 (not {len(value)}, for '{_shown(value)}')"
        raise JsonRpcError(RPC_INVALID_PARAMETER, message)
    try:
        bytes.fromhex(value)
    except ValueError:
        message = f"{name} must be hexadecimal string (not '{_shown(value)}')"
        raise JsonRpcError(RPC_INVALID_PARAMETER, message) from None
    return value.lower()


def parse_amount(value: Any, name: str) -> int:
    """Core's AmountFromValue: a JSON number or numeric string in BTC, to exact satoshis."""
    if isinstance(value, str):
        try:
            value = Decimal(value)
        except InvalidOperation:
            raise JsonRpcError(RPC_TYPE_ERROR, f"Invalid amount for {name}") from None
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise _type_fault(name, value, "number")
    if isinstance(value, Decimal) and not value.is_finite():
        raise JsonRpcError(RPC_TYPE_ERROR, f"Invalid amount for {name}")
    if value < 0:
        raise JsonRpcError(RPC_TYPE_ERROR, f"Amount out of range for {name}")
    try:
        return btc_to_sats(value)
    except AmountError as exc:
        raise JsonRpcError(RPC_TYPE_ERROR, f"Invalid amount for {name}: {exc}") from None


# -- the RPC methods ----------------------------------------------------------------------

Handler = Callable[[Params], Any]


@dataclass(frozen=True)
class Method:
    """One served RPC: its handler, how many positional params it takes, and its usage."""

    handler: Handler
    least: int
    most: int
    usage: str


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, JSON body, and whether the server should now stop."""

    status: int
    body: bytes
    stop: bool = False


class RegtestRpc:
    """Bitcoin Core's RPC methods, the subset Coldstation uses, over a :class:`RegtestNode`."""

    def __init__(self, node: RegtestNode) -> None:
        self._node = node
        self._lock = threading.Lock()
        self._closed = False
        self._methods = self._table()

    def close(self) -> None:
        """Refuse all further calls; waits for a call in progress so the node can be closed."""
        with self._lock:
            self._closed = True

    def _table(self) -> dict[str, Method]:
        return {
            "getblockchaininfo": Method(self._getblockchaininfo, 0, 0, ""),
            "getblockcount": Method(self._getblockcount, 0, 0, ""),
            "getblockhash": Method(self._getblockhash, 1, 1, "height"),
            "getblock": Method(self._getblock, 1, 2, '"blockhash" 0'),
            "getrawtransaction": Method(
                self._getrawtransaction, 1, 3, '"txid" false ( "blockhash" )'
            ),
            "scantxoutset": Method(self._scantxoutset, 1, 2, '"action" ( [scanobjects,...] )'),
            "estimatesmartfee": Method(
                self._estimatesmartfee, 1, 2, 'conf_target ( "estimate_mode" )'
            ),
            "testmempoolaccept": Method(self._testmempoolaccept, 1, 2, '["rawtx"] ( maxfeerate )'),
            "sendrawtransaction": Method(
                self._sendrawtransaction, 1, 3, '"hexstring" ( maxfeerate maxburnamount )'
            ),
            "getrawmempool": Method(self._getrawmempool, 0, 2, "( false )"),
            "getmempoolentry": Method(self._getmempoolentry, 1, 1, '"txid"'),
            "gettxout": Method(self._gettxout, 2, 3, '"txid" n ( include_mempool )'),
            "walletprocesspsbt": Method(
                self._walletprocesspsbt, 1, 5, '"psbt" ( sign "sighashtype" bip32derivs finalize )'
            ),
            "importdescriptors": Method(self._importdescriptors, 1, 1, "requests"),
            "generatetoaddress": Method(
                self._generatetoaddress, 2, 3, 'nblocks "address" ( maxtries )'
            ),
            "sendtoaddress": Method(self._sendtoaddress, 2, 2, '"address" amount'),
            "sendmany": Method(self._sendmany, 2, 2, '"" {"address":amount,...}'),
            "coldstation_reorg": Method(
                self._reorg, 1, 3, "depth ( keep_transactions extra_blocks )"
            ),
            "coldstation_setfeeestimate": Method(self._setfeeestimate, 1, 1, "sat_per_kvb|null"),
            "stop": Method(self._stop, 0, 0, ""),
        }

    # -- dispatch -------------------------------------------------------------------------

    def handle(self, body: bytes) -> Reply:
        """Answer one HTTP body: a request object or a batch; never raises."""
        try:
            return self._handle(body)
        except Exception:  # a last resort: a reply we cannot even encode, say
            traceback.print_exc()
            return _single(_error(None, RPC_INTERNAL_ERROR, "Internal error"))

    def _handle(self, body: bytes) -> Reply:
        try:
            request = decode_json(body, unique_keys=True)
        except (ValueError, RecursionError):
            return _single(_error(None, RPC_PARSE_ERROR, "Parse error"))
        if isinstance(request, dict):
            reply, stop = self._one(request)
            return _single(reply, stop)
        if not isinstance(request, list):
            return _single(_error(None, RPC_PARSE_ERROR, "Top-level object parse error"))
        if not request or len(request) > MAX_BATCH:
            message = f"a batch must hold 1 to {MAX_BATCH} requests"
            return _single(_error(None, RPC_INVALID_REQUEST, message))
        replies, stops = zip(*(self._one(entry) for entry in request), strict=True)
        return Reply(200, encode_json(list(replies)).encode() + b"\n", any(stops))

    def _one(self, request: Any) -> tuple[dict[str, Any], bool]:
        """One request object to one reply object, and whether it was a successful stop."""
        if not isinstance(request, dict):
            return _error(None, RPC_INVALID_REQUEST, "Invalid Request object"), False
        ident = request.get("id")
        method = request.get("method")
        params = request.get("params")
        if not isinstance(method, str):
            return _error(ident, RPC_INVALID_REQUEST, "Method must be a string"), False
        if isinstance(params, dict):
            message = "named parameters are not supported; pass params as an array"
            return _error(ident, RPC_INVALID_PARAMETER, message), False
        if params is not None and not isinstance(params, list):
            return _error(ident, RPC_INVALID_REQUEST, "Params must be an array"), False
        try:
            result = self.call(method, params or [])
        except JsonRpcError as fault:
            return _error(ident, fault.code, fault.message), False
        return {"result": result, "error": None, "id": ident}, method == "stop"

    def call(self, method: str, params: list[Any]) -> Any:
        """Run one method under the node lock, mapping every failure to a JsonRpcError."""
        entry = self._methods.get(method)
        if entry is None:
            raise JsonRpcError(RPC_METHOD_NOT_FOUND, "Method not found")
        if not entry.least <= len(params) <= entry.most:
            raise JsonRpcError(RPC_MISC_ERROR, f"usage: {method} {entry.usage}".rstrip())
        with self._lock:
            if self._closed:
                raise JsonRpcError(RPC_IN_WARMUP, "Coldstation regtest is stopping")
            return self._guarded(entry.handler, Params(params))

    @staticmethod
    def _guarded(handler: Handler, params: Params) -> Any:
        try:
            return handler(params)
        except JsonRpcError:
            raise
        except NodeError as exc:
            raise JsonRpcError(exc.code, str(exc)) from None
        except ValueError as exc:
            traceback.print_exc()
            raise JsonRpcError(RPC_INVALID_PARAMETER, str(exc)) from None
        except Exception as exc:
            traceback.print_exc()
            message = f"internal error: {type(exc).__name__}: {exc}"
            raise JsonRpcError(RPC_MISC_ERROR, message) from None

    # -- helpers --------------------------------------------------------------------------

    def _script(self, address: str) -> bytes:
        try:
            return address_to_script(address, self._node.network)
        except AddressError as exc:
            raise JsonRpcError(RPC_INVALID_ADDRESS_OR_KEY, f"Invalid address: {exc}") from None

    def _descriptor_script(self, item: Any) -> bytes:
        """``raw(HEX)`` or ``addr(ADDRESS)``, checksum optional as in Core; nothing else."""
        if isinstance(item, dict):
            if "range" in item:
                raise JsonRpcError(RPC_INVALID_PARAMETER, "ranged descriptors are not supported")
            item = item.get("desc")
        if not isinstance(item, str):
            raise JsonRpcError(RPC_INVALID_PARAMETER, "scan objects must be descriptor strings")
        try:
            body = split_checksum(item, require_checksum=False)
        except DescriptorError as exc:
            raise JsonRpcError(RPC_INVALID_ADDRESS_OR_KEY, f"Invalid descriptor: {exc}") from None
        if body.startswith("raw(") and body.endswith(")"):
            try:
                return bytes.fromhex(body[4:-1])
            except ValueError:
                raise JsonRpcError(RPC_INVALID_ADDRESS_OR_KEY, "raw() needs a hex script") from None
        if body.startswith("addr(") and body.endswith(")"):
            return self._script(body[5:-1])
        message = (
            "Coldstation regtest scans raw(HEX) and addr(ADDRESS) descriptors only, "
            f"not '{_shown(body)}'"
        )
        raise JsonRpcError(RPC_INVALID_PARAMETER, message)

    def _descriptor_of(self, script: bytes) -> str:
        address = script_to_address(script, self._node.network)
        return add_checksum(f"addr({address})" if address else f"raw({script.hex()})")

    def _max_fee_rate(self, params: Params, index: int) -> int:
        """sat/kvB; 0 means no limit, as in Core."""
        return params.amount(index, "maxfeerate", DEFAULT_MAX_FEE_RATE)

    # -- chain ----------------------------------------------------------------------------

    def _getblockchaininfo(self, params: Params) -> dict[str, Any]:
        height = self._node.height()
        return {
            "chain": _CHAIN_NAMES[self._node.network],
            "blocks": height,
            "headers": height,
            "bestblockhash": self._node.best_hash(),
            "initialblockdownload": False,
            "pruned": False,
            "warnings": [],
        }

    def _getblockcount(self, params: Params) -> int:
        return self._node.height()

    def _getblockhash(self, params: Params) -> str:
        height = params.whole(0, "height")
        if not 0 <= height <= self._node.height():
            raise JsonRpcError(RPC_INVALID_PARAMETER, "Block height out of range")
        return self._node.block_hash(height)

    def _getblock(self, params: Params) -> str:
        block_hash = params.hash(0, "blockhash")
        if params.get(1) is None or params.flag(1, "verbosity") != 0:  # Core's default is 1
            raise JsonRpcError(RPC_INVALID_PARAMETER, "verbosity 0 only (Coldstation regtest)")
        return self._node.block(block_hash).hex()  # stale blocks too, as in Core

    def _getrawtransaction(self, params: Params) -> str:
        txid = params.hash(0, "txid")
        if params.flag(1, "verbose"):
            raise JsonRpcError(RPC_INVALID_PARAMETER, "verbose false only (Coldstation regtest)")
        block_hash = params.optional_hash(2, "blockhash")
        return self._node.raw_transaction(txid, block_hash).hex()

    def _scantxoutset(self, params: Params) -> Any:
        action = params.string(0, "action")
        if action == "abort":
            return False  # scans run to completion under the node lock: none to abort
        if action == "status":
            return None
        if action != "start":
            raise JsonRpcError(RPC_INVALID_PARAMETER, f"Invalid action '{_shown(action)}'")
        if params.get(1) is None:
            message = "scanobjects argument is required for the start action"
            raise JsonRpcError(RPC_INVALID_PARAMETER, message)
        scripts = {self._descriptor_script(item) for item in params.array(1, "scanobjects")}
        found = self._node.scan(scripts)
        descs = {script: self._descriptor_of(script) for script in {u.script_pubkey for u in found}}
        return {
            "success": True,
            "height": self._node.height(),
            "bestblock": self._node.best_hash(),
            "unspents": [self._unspent(u, descs[u.script_pubkey]) for u in found],
            "total_amount": sats_to_btc(sum(u.value for u in found)),
        }

    def _unspent(self, output: Any, desc: str) -> dict[str, Any]:
        return {
            "txid": output.txid,
            "vout": output.vout,
            "scriptPubKey": output.script_pubkey.hex(),
            "desc": desc,
            "amount": sats_to_btc(output.value),
            "coinbase": output.coinbase,
            "height": output.height,
            "blockhash": self._node.block_hash(output.height),
        }

    def _estimatesmartfee(self, params: Params) -> dict[str, Any]:
        target = params.whole(0, "conf_target")
        if not 1 <= target <= MAX_CONF_TARGET:
            message = f"Invalid conf_target, must be between 1 and {MAX_CONF_TARGET}"
            raise JsonRpcError(RPC_INVALID_PARAMETER, message)
        mode = params.string(1, "estimate_mode", "economical")
        if mode.lower() not in _ESTIMATE_MODES:
            choices = ", ".join(f'"{m}"' for m in _ESTIMATE_MODES)
            message = f"Invalid estimate_mode parameter, must be one of: {choices}"
            raise JsonRpcError(RPC_INVALID_PARAMETER, message)
        rate = self._node.estimate_fee(target)
        if rate is None:
            return {"errors": ["Insufficient data or no feerate found"], "blocks": 0}
        return {"feerate": sats_to_btc(rate), "blocks": target}

    # -- mempool --------------------------------------------------------------------------

    def _testmempoolaccept(self, params: Params) -> list[dict[str, Any]]:
        rawtxs = params.array(0, "rawtxs")
        if len(rawtxs) != 1:
            message = "Coldstation regtest tests exactly one transaction at a time"
            raise JsonRpcError(RPC_INVALID_PARAMETER, message)
        raw = Params(rawtxs).transaction(0, "rawtxs[0]")
        max_rate = self._max_fee_rate(params, 1)
        result = self._node.test_accept(raw)
        if not result.txid:  # the node could not decode it (a non-canonical encoding)
            raise JsonRpcError(RPC_DESERIALIZATION_ERROR, result.reason or "TX decode failed")
        entry: dict[str, Any] = {"txid": result.txid, "wtxid": result.wtxid}
        if result.allowed and _fee_too_high(result.fee, result.vsize, max_rate):
            return [{**entry, "allowed": False, "reject-reason": "max-fee-exceeded"}]
        if not result.allowed:
            reason = result.reason or "rejected"
            if reason == MISSING_INPUTS_REASON:  # Core names TX_MISSING_INPUTS so here
                reason = "missing-inputs"
            return [{**entry, "allowed": False, "reject-reason": reason}]
        entry["allowed"] = True
        if result.vsize is not None:
            entry["vsize"] = result.vsize
        if result.fee is not None:
            entry["fees"] = {"base": sats_to_btc(result.fee)}
        return [entry]

    def _sendrawtransaction(self, params: Params) -> str:
        raw = params.transaction(0, "hexstring")
        max_rate = self._max_fee_rate(params, 1)
        if params.amount(2, "maxburnamount", 0):
            message = "maxburnamount is not supported (Coldstation regtest)"
            raise JsonRpcError(RPC_INVALID_PARAMETER, message)
        if max_rate:
            check = self._node.test_accept(raw)
            if check.allowed and _fee_too_high(check.fee, check.vsize, max_rate):
                message = "Fee exceeds maximum configured by user (maxtxfee or maxfeerate)"
                raise JsonRpcError(RPC_TRANSACTION_ERROR, message)
        return self._node.send(raw)

    def _getrawmempool(self, params: Params) -> list[str]:
        if params.flag(0, "verbose") or params.flag(1, "mempool_sequence"):
            raise JsonRpcError(RPC_INVALID_PARAMETER, "verbose=false only (Coldstation regtest)")
        return list(self._node.mempool())

    def _getmempoolentry(self, params: Params) -> dict[str, Any]:
        entry = self._node.mempool_entry(params.hash(0, "txid"))
        if entry is None:
            raise JsonRpcError(RPC_INVALID_ADDRESS_OR_KEY, "Transaction not in mempool")
        fee = sats_to_btc(entry.fee)
        return {
            "vsize": entry.vsize,
            "weight": entry.weight,
            "height": self._node.height(),
            "wtxid": entry.wtxid[::-1].hex(),
            "fees": {"base": fee, "modified": fee, "ancestor": fee, "descendant": fee},
            "bip125-replaceable": entry.signals_rbf,
        }

    def _gettxout(self, params: Params) -> dict[str, Any] | None:
        txid = params.hash(0, "txid")
        vout = params.integer(1, "n", 0, 2**32 - 1)
        found = self._node.tx_out(txid, vout, params.boolean(2, "include_mempool", True))
        if found is None:
            return None  # Core answers null for a spent or unknown output
        confirmations, value, script, coinbase = found
        return {
            "bestblock": self._node.best_hash(),
            "confirmations": confirmations,
            "value": sats_to_btc(value),
            "scriptPubKey": {"hex": script.hex(), "desc": self._descriptor_of(script)},
            "coinbase": coinbase,
        }

    # -- the node's wallet (tests: a third-party cosigner as Bitcoin Core) --------------------

    def _walletprocesspsbt(self, params: Params) -> dict[str, Any]:
        """Core's ``walletprocesspsbt``: sign with the wallet's keys and, by default,
        finalize; a complete result also carries the network transaction as ``hex``."""
        try:
            psbt = Psbt.from_text(params.string(0, "psbt"))
        except PsbtError as exc:
            raise JsonRpcError(RPC_DESERIALIZATION_ERROR, f"TX decode failed {exc}") from None
        sign = params.boolean(1, "sign", True)
        if params.string(2, "sighashtype", "DEFAULT").upper() not in ("DEFAULT", "ALL"):
            message = "sighashtype DEFAULT or ALL only (Coldstation regtest)"
            raise JsonRpcError(RPC_INVALID_PARAMETER, message)
        params.boolean(3, "bip32derivs", True)
        finalize = params.boolean(4, "finalize", True)
        result, complete = self._node.process_psbt(psbt, sign=sign, finalize=finalize)
        reply: dict[str, Any] = {"psbt": result.to_base64(), "complete": complete}
        if complete and finalize:
            reply["hex"] = extract(result).serialize().hex()
        return reply

    def _importdescriptors(self, params: Params) -> list[dict[str, Any]]:
        """Only the private keys (WIF) in each descriptor matter here: the node's wallet
        signs whatever PSBT input they can sign."""
        replies = []
        for item in params.array(0, "requests"):
            desc = item.get("desc") if isinstance(item, dict) else None
            if not isinstance(desc, str):
                raise JsonRpcError(RPC_TYPE_ERROR, "Descriptor not found.")
            secrets = _wif_secrets(desc, self._node.network)
            if not secrets:
                error = {
                    "code": RPC_INVALID_PARAMETER,
                    "message": "Cannot import descriptor "
                    "without private keys to a wallet with private keys enabled",
                }
                replies.append({"success": False, "error": error})
                continue
            self._node.import_keys(secrets)
            replies.append({"success": True})
        return replies

    # -- regtest helpers ------------------------------------------------------------------

    def _generatetoaddress(self, params: Params) -> list[str]:
        count = params.integer(0, "nblocks", 0, MAX_GENERATE)
        script = self._script(params.string(1, "address"))
        params.integer(2, "maxtries", 1, 2**63 - 1, 1_000_000)
        return self._node.mine(count, script)

    def _sendtoaddress(self, params: Params) -> str:
        script = self._script(params.string(0, "address"))
        sats = params.amount(1, "amount")
        if sats <= 0:
            raise JsonRpcError(RPC_TYPE_ERROR, "Invalid amount for send")
        return self._node.fund([(script, sats)])

    def _sendmany(self, params: Params) -> str:
        if params.get(0) != "":
            raise JsonRpcError(RPC_INVALID_PARAMETER, 'Dummy value must be set to ""')
        amounts = params.object(1, "amounts")
        if not amounts:
            message = "Transaction must have at least one recipient"
            raise JsonRpcError(RPC_INVALID_PARAMETER, message)
        outputs: list[tuple[bytes, int]] = []
        for address, value in amounts.items():
            script = self._script(address)
            if any(script == seen for seen, _ in outputs):
                message = f"Invalid parameter, duplicated address: {_shown(address)}"
                raise JsonRpcError(RPC_INVALID_PARAMETER, message)
            sats = parse_amount(value, address)
            if sats <= 0:
                raise JsonRpcError(RPC_TYPE_ERROR, "Invalid amount for send")
            outputs.append((script, sats))
        return self._node.fund(outputs)

    def _reorg(self, params: Params) -> list[str]:
        depth = params.integer(0, "depth", 1, self._node.height())
        keep = params.boolean(1, "keep_transactions", False)
        extra = params.integer(2, "extra_blocks", 1, MAX_GENERATE, 1)
        return self._node.reorg(depth, keep_transactions=keep, extra_blocks=extra)

    def _setfeeestimate(self, params: Params) -> None:
        if params.get(0) is None:
            self._node.set_fee_estimate(None)
            return None
        self._node.set_fee_estimate(params.integer(0, "sat_per_kvb", 0, 21_000_000 * 10**8))
        return None

    def _stop(self, params: Params) -> str:
        self._closed = True  # the lock is held: later calls see it before touching the node
        return STOP_MESSAGE


_BASE58_TOKEN = re.compile(r"[1-9A-HJ-NP-Za-km-z]{51,52}")


def _wif_secrets(desc: str, network: Network) -> list[bytes]:
    """Every WIF private key written in a descriptor, for this network."""
    secrets = []
    for token in _BASE58_TOKEN.findall(desc):
        try:
            key = wif_to_private_key(token)
        except (AddressError, ValueError):
            continue
        if key.network is network.kind:
            secrets.append(key.secret)
    return secrets


def _fee_too_high(fee: int | None, vsize: int | None, max_rate: int) -> bool:
    """Core's maxfeerate check: fee above rate × vsize / 1000 (0 disables it)."""
    if not max_rate or fee is None or vsize is None:
        return False
    return fee > -(-max_rate * vsize // 1000)  # Core rounds the limit up


def _error(ident: Any, code: int, message: str) -> dict[str, Any]:
    return {"result": None, "error": {"code": code, "message": message}, "id": ident}


def _single(reply: dict[str, Any], stop: bool = False) -> Reply:
    """HTTP status as Core sets it for a lone request: 200, or 400/404/500 on error."""
    error = reply["error"]
    if error is None:
        status = 200
    else:
        status = {RPC_INVALID_REQUEST: 400, RPC_METHOD_NOT_FOUND: 404}.get(error["code"], 500)
    return Reply(status, encode_json(reply).encode() + b"\n", stop)


# -- HTTP ---------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """Core's HTTP front: Basic auth on every request, POST only, bounded bodies."""

    server: RegtestServer
    protocol_version = "HTTP/1.1"
    server_version = "ColdstationRegtest/0.1"
    #: Idle keep-alive connections and slow senders are dropped after this many seconds.
    timeout = 60
    #: Headers and body go out as separate writes: without TCP_NODELAY, Nagle's algorithm
    #: and the client's delayed ACK add ~40 ms to every call on loopback.
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        if self.server.stopping:  # Core's http_reject_request_cb, before any auth
            self._answer(
                HTTP_SERVICE_UNAVAILABLE,
                SERVICE_UNAVAILABLE_BODY,
                close=True,
                content_type="text/html",
            )
            return
        if not self.server.authorized(self.headers.get("Authorization", "")):
            self._answer(401, b"", close=True, extra={"WWW-Authenticate": 'Basic realm="jsonrpc"'})
            return
        if self.path != "/":
            self._answer(404, b"", close=True)
            return
        body = self._body()
        if body is None:
            return
        reply = self.server.rpc.handle(body)
        self._answer(reply.status, reply.body, close=reply.stop)
        if reply.stop:
            self.server.stop_soon()

    def _refuse_method(self) -> None:
        self._answer(405, b"JSONRPC server handles only POST requests", close=True)

    do_GET = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse_method  # noqa: N815

    def do_HEAD(self) -> None:
        self._answer(405, b"", close=True)

    def _body(self) -> bytes | None:
        """The request body, or None after answering 411/413/400 and closing."""
        length_text = self.headers.get("Content-Length")
        if length_text is None or "Transfer-Encoding" in self.headers:
            self._answer(411, b"Content-Length required", close=True)
            return None
        if not length_text.strip().isdigit():
            self._answer(400, b"bad Content-Length", close=True)
            return None
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            self._answer(413, b"request body too large", close=True)
            return None
        try:
            body = self.rfile.read(length)
        except OSError:
            self.close_connection = True
            return None
        if len(body) != length:
            self.close_connection = True
            return None
        return body

    def _answer(
        self,
        status: int,
        body: bytes,
        close: bool = False,
        extra: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        if content_type is None:
            json_body = body.startswith((b"{", b"["))
            content_type = "application/json" if json_body else "text/plain"
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            if close:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            pass  # the client went away; nothing to tell it
        if close:
            self.close_connection = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Successful requests are not logged: the demo log should show problems only."""


class RegtestServer(ThreadingHTTPServer):
    """The JSON-RPC server; the cookie file exists exactly while it accepts connections."""

    daemon_threads = True
    #: Do not wait for idle keep-alive connections on close; RegtestRpc.close guards the node.
    block_on_close = False

    def __init__(
        self,
        node: RegtestNode,
        host: str = "127.0.0.1",
        port: int = 0,
        cookie_path: Path | None = None,
        stop_delay_seconds: float = 0.0,
    ) -> None:
        super().__init__((host, port), _Handler)
        self.rpc = RegtestRpc(node)
        #: Set from ``stop`` until the socket closes: every request is answered HTTP 503,
        #: as Core answers while it shuts down. ``stop_delay_seconds`` keeps that window
        #: open (Core's lasts while it flushes its state), so tests can meet it.
        self.stopping = False
        self.stop_delay_seconds = stop_delay_seconds
        self._password = secrets.token_hex(32)
        self._own_dir: Path | None = None
        if cookie_path is None:
            self._own_dir = Path(tempfile.mkdtemp(prefix="coldstation-regtest-"))
            cookie_path = self._own_dir / COOKIE_FILE
        self.cookie_path = cookie_path
        self._stop_lock = threading.Lock()
        self._serving = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        try:
            _write_private(cookie_path, f"{COOKIE_USER}:{self._password}")
        except OSError:
            self.server_close()
            raise

    @property
    def url(self) -> str:
        host = self.server_address[0]
        if not isinstance(host, str):  # an AF_INET socket's name is text, never bytes
            raise TypeError(f"regtest server bound to a non-text host {host!r}")
        return f"http://{host}:{self.server_port}/"

    def authorized(self, header: str) -> bool:
        """Constant-time check of ``Basic base64(__cookie__:password)``."""
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, f"{COOKIE_USER}:{self._password}".encode())

    def serve_forever(self, poll_interval: float = 0.2) -> None:
        with self._stop_lock:
            if self._closed:
                return
            self._serving.set()
        super().serve_forever(poll_interval)

    def shutdown(self) -> None:
        """Stop serving, close the socket, refuse node calls, delete the cookie. Idempotent.

        Must not be called from the thread running ``serve_forever`` (it waits for it).
        """
        with self._stop_lock:
            if self._closed:
                return
            self._closed = True
            self.stopping = True
            if self._serving.is_set():
                super().shutdown()
            self.server_close()
            self.rpc.close()
            self.cookie_path.unlink(missing_ok=True)
            if self._own_dir is not None:
                shutil.rmtree(self._own_dir, ignore_errors=True)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def stop_soon(self) -> None:
        """Shut down from a request handler (or signal handler) without waiting on ourselves.

        From now on every new request gets HTTP 503, until the socket closes.
        """
        self.stopping = True
        threading.Thread(target=self._stop_after_delay, name="regtest-stop").start()

    def _stop_after_delay(self) -> None:
        if self.stop_delay_seconds:
            time.sleep(self.stop_delay_seconds)
        self.shutdown()

    def start(self) -> None:
        """Serve on a background thread; returns once connections are being accepted."""
        self._thread = threading.Thread(
            target=self.serve_forever, args=(0.05,), name="regtest-rpc", daemon=True
        )
        self._thread.start()
        self._serving.wait()

    def __enter__(self) -> RegtestServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, atomically, as Core writes ``.cookie``."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)


def start_in_thread(
    node: RegtestNode,
    port: int = 0,
    cookie_path: Path | None = None,
    stop_delay_seconds: float = 0.0,
) -> RegtestServer:
    """A running server on loopback for tests; call ``.shutdown()`` when done."""
    server = RegtestServer(
        node, port=port, cookie_path=cookie_path, stop_delay_seconds=stop_delay_seconds
    )
    server.start()
    return server


# -- standalone process -------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m online_coordinator.regtest.server",
        description="Serve a Coldstation regtest node over Bitcoin Core's JSON-RPC.",
    )
    parser.add_argument("--datadir", type=Path, required=True, help="node data directory")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (loopback)")
    return parser.parse_args(argv)


def _publish(datadir: Path, server: RegtestServer, node: RegtestNode) -> None:
    """Tell the CLI where we are: pid first, then regtest.json, whose presence means ready.

    The faucet address is there so ``regtest mine`` can refill the faucet by default.
    """
    _write_private(datadir / PID_FILE, f"{os.getpid()}\n")
    info = {
        "url": server.url,
        "cookie": str(server.cookie_path.resolve()),
        "pid": os.getpid(),
        "faucet_address": script_to_address(node.faucet_script, node.network),
    }
    _write_private(datadir / INFO_FILE, json.dumps(info, indent=2) + "\n")


def _unpublish(datadir: Path) -> None:
    for name in (INFO_FILE, PID_FILE):
        (datadir / name).unlink(missing_ok=True)


def _serve(datadir: Path, host: str, port: int) -> int:
    """Serve until stopped; regtest.json goes only after the node is closed, so its absence
    tells ``regtest stop`` (and a new ``start``) that the datadir is free again."""
    published = False
    try:
        with RegtestNode(datadir) as node:
            try:
                server = RegtestServer(node, host, port, cookie_path=datadir / COOKIE_FILE)
            except OSError as exc:
                reason = exc.strerror or exc
                print(f"error: cannot listen on {host}:{port}: {reason}", file=sys.stderr)
                return 1
            _stop_on_signals(server)
            try:
                _publish(datadir, server, node)
                published = True
                print(f"Coldstation regtest serving {server.url} (pid {os.getpid()})", flush=True)
                server.serve_forever()
            finally:
                server.shutdown()
    finally:
        if published:
            _unpublish(datadir)
    print("Coldstation regtest stopped", flush=True)
    return 0


def _stop_on_signals(server: RegtestServer) -> None:
    """SIGTERM/SIGINT stop like the ``stop`` RPC (from a thread: the loop runs on this one)."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        server.stop_soon()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def main(argv: Sequence[str] | None = None) -> int:
    """Open the node, serve until ``stop`` or SIGTERM, then close the node cleanly."""
    args = _parse_args(argv)
    datadir: Path = args.datadir
    datadir.mkdir(parents=True, exist_ok=True)
    return _serve(datadir, args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
