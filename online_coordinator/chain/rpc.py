"""A JSON-RPC client for the subset of Bitcoin Core the coordinator uses.

The coordinator never trusts a node's amounts to floats: replies are parsed with
:class:`decimal.Decimal` and every amount is converted to integer satoshis exactly, refusing
anything that is not a whole number of satoshis. Failures come in two kinds so callers can
react sensibly: :class:`RpcError` means the node answered and said no (bad parameter, tx
rejected); :class:`ChainUnavailable` means there is no usable node (refused, timed out,
wrong credentials, shutting down, a reply that is not Core-shaped JSON-RPC).

Every call has one deadline for the whole exchange (connect, send, status line, headers and
body), not a timeout per socket read: a node that trickles its reply a byte at a time, or
stalls half way, cannot hold a command past ``timeout`` seconds.

Credentials come from Core's ``.cookie`` file (or explicit arguments), never from the URL,
so that they do not end up in shell history or ``ps`` output.
"""

from __future__ import annotations

import base64
import functools
import http.client
import io
import itertools
import json
import re
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shared.bitcoin.amount import COIN, MAX_MONEY
from shared.closing import Closing

DEFAULT_TIMEOUT = 30.0
#: A hostile or broken node must not make us buffer without bound; a 4 MB block is 8 MB hex.
MAX_REPLY_BYTES = 256 * 1024 * 1024
#: Core's default RPC port on mainnet, used when the URL has none.
DEFAULT_PORT = 8332
#: Core's "still loading the block index" error: the node exists but cannot answer yet.
RPC_IN_WARMUP = -28
#: Core's "not in the mempool" / "no such transaction" error.
RPC_INVALID_ADDRESS_OR_KEY = -5
#: HTTP status Core's server answers while it shuts down (or when its work queue is full).
HTTP_SERVICE_UNAVAILABLE = 503
AUTH_FAILED = "authentication failed: check the cookie file / credentials"

_HASH_RE = re.compile(r"[0-9a-fA-F]{64}")
_SATOSHI = Decimal("0.00000001")


class ChainError(Exception):
    """Base of every error this client raises, for callers that treat them alike."""


class RpcError(ChainError):
    """The node answered with a JSON-RPC error object: it is up, and it said no."""

    def __init__(self, code: int, message: str, *, method: str = "") -> None:
        self.code = code
        self.message = message
        self.method = method
        prefix = f"{method}: " if method else ""
        super().__init__(f"{prefix}{message} (RPC error {code})")


class ChainUnavailable(ChainError):  # noqa: N818 - the name the coordinator codes against
    """No usable node: unreachable, timed out, refused our credentials or spoke nonsense."""


class MalformedReply(ChainUnavailable):
    """The node answered, but not with what Core answers to this call (garbage)."""


class AmountError(ValueError):
    """An amount that is not a whole number of satoshis between 0 and 21 million BTC."""


# -- amounts ------------------------------------------------------------------------------


def btc_to_sats(amount: Decimal | int) -> int:
    """Exact satoshis for a BTC amount; floats are refused because they are already rounded."""
    if isinstance(amount, bool) or not isinstance(amount, Decimal | int):
        raise AmountError(f"amount must be a Decimal, not {type(amount).__name__}")
    value = Decimal(amount)
    if not value.is_finite():
        raise AmountError(f"amount {value} is not a number")
    if not 0 <= value <= MAX_MONEY // COIN:
        raise AmountError(f"amount {value} BTC is outside 0 .. 21000000 BTC")
    # Comparing before quantize avoids context rounding hiding a 9th decimal.
    whole = value.quantize(_SATOSHI)
    if whole != value:
        raise AmountError(f"amount {value} BTC is not a whole number of satoshis")
    return int(whole.scaleb(8))


def sats_to_btc(sats: int) -> Decimal:
    """BTC with exactly 8 decimals, as Core prints amounts."""
    if isinstance(sats, bool) or not isinstance(sats, int):
        raise AmountError(f"satoshis must be an int, not {type(sats).__name__}")
    if not 0 <= sats <= MAX_MONEY:
        raise AmountError(f"{sats} satoshis is outside 0 .. {MAX_MONEY}")
    return Decimal(sats).scaleb(-8)


# -- JSON ---------------------------------------------------------------------------------


def encode_json(value: Any) -> str:
    """JSON text in which Decimals keep their exact digits (``json.dumps`` refuses them)."""
    parts: list[str] = []
    _encode(value, parts)
    return "".join(parts)


def _encode(value: Any, out: list[str]) -> None:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot encode {value} as JSON")
        out.append(format(value, "f"))
    elif isinstance(value, dict):
        out.append("{")
        for index, (key, item) in enumerate(value.items()):
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be str, not {type(key).__name__}")
            out.append(("," if index else "") + json.dumps(key) + ":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        out.append(json.dumps(value, allow_nan=False))


def _refuse_constant(name: str) -> Any:
    """``json`` accepts NaN and Infinity by default; neither is JSON nor an amount."""
    raise ValueError(f"{name} is not valid JSON")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r} in a JSON object")
            seen.add(key)
    return value


def decode_json(data: bytes | str, *, unique_keys: bool = False) -> Any:
    """Parse JSON with exact decimals and without the NaN/Infinity extensions.

    ``unique_keys`` refuses objects that repeat a key, which ``json`` would silently collapse
    to the last value: for a request paying several addresses that is not a detail.
    """
    hook = _unique_object if unique_keys else None
    return json.loads(
        data, parse_float=Decimal, parse_constant=_refuse_constant, object_pairs_hook=hook
    )


# -- credentials --------------------------------------------------------------------------


@dataclass(frozen=True)
class RpcAuth:
    """HTTP Basic credentials; the password is kept out of ``repr`` so logs do not leak it."""

    user: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        if ":" in self.user or any(c in self.user + self.password for c in "\r\n"):
            raise ValueError("RPC user must not contain ':' and credentials no line breaks")

    @classmethod
    def from_cookie(cls, path: Path | str) -> RpcAuth:
        """Read Core's ``.cookie`` (``__cookie__:<hex>``), which changes on every node start."""
        try:
            text = Path(path).read_text(encoding="utf-8")[:4096].strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ChainUnavailable(
                f"cannot read cookie file {path}: {reason} (is the node running?)"
            ) from exc
        user, sep, password = text.partition(":")
        if not sep or not user or not password or "\n" in text:
            raise ChainUnavailable(f"{path} is not a Bitcoin Core cookie file (user:password)")
        return cls(user, password)

    def header(self) -> str:
        """The ``Authorization`` header value."""
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode("ascii")
        return f"Basic {token}"


# -- typed results ------------------------------------------------------------------------


@dataclass(frozen=True)
class ScannedOutput:
    """One unspent output found by ``scantxoutset``; ``value`` in satoshis."""

    txid: str
    vout: int
    script_pubkey: bytes
    value: int
    height: int
    coinbase: bool


@dataclass(frozen=True)
class UtxoScan:
    """A ``scantxoutset`` and the chain state it read: the tip's height and hash."""

    height: int
    best_block: str
    outputs: list[ScannedOutput]


@dataclass(frozen=True)
class MempoolAccept:
    """``testmempoolaccept`` for one transaction; vsize and fee (sats) only when allowed."""

    txid: str
    wtxid: str
    allowed: bool
    reason: str | None
    vsize: int | None = None
    fee: int | None = None


# -- reply shape checks -------------------------------------------------------------------


def _malformed(method: str, detail: str) -> MalformedReply:
    return MalformedReply(f"unexpected reply to {method}: {detail}")


def _int(value: Any, method: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _malformed(method, f"{what} is not an integer")
    return value


def _str(value: Any, method: str, what: str) -> str:
    if not isinstance(value, str):
        raise _malformed(method, f"{what} is not a string")
    return value


def _bool(value: Any, method: str, what: str) -> bool:
    if not isinstance(value, bool):
        raise _malformed(method, f"{what} is not a boolean")
    return value


def _dict(value: Any, method: str, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _malformed(method, f"{what} is not an object")
    return value


def _list(value: Any, method: str, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise _malformed(method, f"{what} is not an array")
    return value


def _hash(value: Any, method: str, what: str) -> str:
    if not isinstance(value, str) or not _HASH_RE.fullmatch(value):
        raise _malformed(method, f"{what} is not a 64-digit hex hash")
    return value.lower()


def _hex(value: Any, method: str, what: str) -> bytes:
    try:
        return bytes.fromhex(_str(value, method, what))
    except ValueError as exc:
        raise _malformed(method, f"{what} is not hex") from exc


def _amount(value: Any, method: str, what: str) -> int:
    try:
        return btc_to_sats(value)
    except AmountError as exc:
        raise _malformed(method, f"{what}: {exc}") from exc


# -- a deadline for the whole reply ---------------------------------------------------------


def _remaining(deadline: float) -> float:
    """Seconds left before ``deadline``; a spent deadline raises TimeoutError at once."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    return left


class _DeadlineReader(io.RawIOBase):
    """The socket as a raw stream whose every read waits at most until the deadline.

    It holds its own reference on the socket (as ``makefile`` does), so a reply marked
    ``Connection: close`` can still be read after http.client closes the connection.
    """

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock = sock
        self._raw = sock.makefile("rb", buffering=0)  # counts as a reference
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        self._sock.settimeout(_remaining(self._deadline))
        return self._raw.readinto(buffer)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _BoundedResponse(http.client.HTTPResponse):
    """An HTTP response read through :class:`_DeadlineReader` (status, headers and body)."""

    def __init__(
        self,
        sock: socket.socket,
        debuglevel: int = 0,
        method: str | None = None,
        url: str | None = None,
        *,
        deadline: float,
    ) -> None:
        super().__init__(sock, debuglevel, method, url)
        bounded: io.BufferedReader = io.BufferedReader(_DeadlineReader(sock, deadline))
        self.fp.close()
        self.fp = bounded


def _preview(data: bytes) -> str:
    """The start of a reply that is not JSON, printable and short, for the error line."""
    text = data[:40].decode("ascii", "replace")
    shown = "".join(c if c.isprintable() else "?" for c in text)
    return repr(shown + ("..." if len(data) > 40 else "")) if data else "an empty body"


# -- the client ---------------------------------------------------------------------------


class BitcoinCoreRPC(Closing):
    """Bitcoin Core JSON-RPC over one persistent HTTP connection; safe to share across threads.

    Requests are serialized on the one connection: the coordinator's calls are few and
    a lock is simpler to reason about than a pool.
    """

    def __init__(self, url: str, auth: RpcAuth, timeout: float = DEFAULT_TIMEOUT) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise ValueError(f"RPC URL must be http:// (Core does not serve TLS): {url!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError("put RPC credentials in a cookie file, not in the URL")
        if not parts.hostname or parts.query or parts.fragment:
            raise ValueError(f"RPC URL must be http://host[:port][/path]: {url!r}")
        self.url = url
        self._host = parts.hostname
        self._port = parts.port or DEFAULT_PORT
        self._path = parts.path or "/"
        self._headers = {
            "Authorization": auth.header(),
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Drop the keep-alive connection; the next call opens a new one."""
        with self._lock:
            self._drop()

    def __repr__(self) -> str:
        return f"BitcoinCoreRPC({self.url!r})"

    # -- transport ------------------------------------------------------------------------

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self, deadline: float) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(
                self._host, self._port, timeout=_remaining(deadline)
            )
        self._conn.response_class = functools.partial(  # type: ignore[assignment]
            _BoundedResponse, deadline=deadline
        )
        if self._conn.sock is not None:
            self._conn.sock.settimeout(_remaining(deadline))
        return self._conn

    def _exchange(self, body: bytes) -> tuple[int, str, bytes]:
        """POST once; retry once only when a kept-alive socket turned out to be closed.

        One deadline covers both attempts and every byte of the reply.
        """
        deadline = time.monotonic() + self._timeout
        for attempt in range(2):
            reused = self._conn is not None and self._conn.sock is not None
            try:
                conn = self._connection(deadline)
                return self._post_once(conn, body)
            except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as exc:
                self._drop()
                if reused and attempt == 0:
                    continue
                raise ChainUnavailable(
                    f"connection to {self._where} dropped before a complete reply ({exc}); "
                    "the node may or may not have acted on the request"
                ) from exc
            except TimeoutError as exc:  # the deadline passed before the retry could start
                self._drop()
                raise ChainUnavailable(
                    f"no complete reply from {self._where} within {self._timeout:g} s"
                ) from exc
            except BaseException:
                self._drop()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def _where(self) -> str:
        return f"{self._host}:{self._port}"

    def _post_once(self, conn: http.client.HTTPConnection, body: bytes) -> tuple[int, str, bytes]:
        """One HTTP round trip, mapping every transport failure to ChainUnavailable."""
        where = self._where
        try:
            conn.request("POST", self._path, body, self._headers)
            response = conn.getresponse()
            if response.length is not None and response.length > MAX_REPLY_BYTES:
                raise ChainUnavailable(f"reply from {where} is larger than {MAX_REPLY_BYTES} bytes")
            # With a Content-Length, read() raises IncompleteRead on a short body.
            data = (
                response.read()
                if response.length is not None
                else response.read(MAX_REPLY_BYTES + 1)
            )
        except TimeoutError as exc:
            raise ChainUnavailable(
                f"no complete reply from {where} within {self._timeout:g} s"
            ) from exc
        except ConnectionRefusedError as exc:
            raise ChainUnavailable(
                f"cannot connect to {where}: connection refused (is the node running?)"
            ) from exc
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            raise
        except http.client.IncompleteRead as exc:
            raise ChainUnavailable(
                f"{where} closed the connection half way through its reply "
                f"({len(exc.partial)} bytes); the node may or may not have acted on the request"
            ) from exc
        except OSError as exc:
            raise ChainUnavailable(f"cannot reach {where}: {exc.strerror or exc}") from exc
        except http.client.HTTPException as exc:
            raise ChainUnavailable(f"{where} did not answer with valid HTTP: {exc!r}") from exc
        if len(data) > MAX_REPLY_BYTES:
            raise ChainUnavailable(f"reply from {where} is larger than {MAX_REPLY_BYTES} bytes")
        if response.will_close:
            self._drop()
        return response.status, response.reason, data

    def _request(self, payload: Any) -> tuple[int, Any]:
        """Send a request object or batch; the HTTP status and the parsed JSON reply."""
        body = encode_json(payload).encode("utf-8")
        with self._lock:
            status, reason, data = self._exchange(body)
        if status == 401:
            raise ChainUnavailable(AUTH_FAILED)
        if status == 403:
            raise ChainUnavailable(f"{self.url} refused us (HTTP 403): check rpcallowip")
        if status == HTTP_SERVICE_UNAVAILABLE:
            raise ChainUnavailable(
                f"the node at {self._where} is not taking RPC calls (HTTP 503 {reason}): it is "
                "shutting down or overloaded; try again when it is back"
            )
        try:
            return status, decode_json(data)
        except (ValueError, RecursionError) as exc:
            raise ChainUnavailable(
                f"the node at {self._where} answered HTTP {status} {reason} with "
                f"{len(data)} bytes that are not a JSON-RPC reply ({_preview(data)})"
            ) from exc

    @staticmethod
    def _result(reply: Any, method: str, status: int) -> Any:
        """The result of one reply object, or the RpcError it carries."""
        if not isinstance(reply, dict) or ("result" not in reply and "error" not in reply):
            raise _malformed(method, f"HTTP {status} without a JSON-RPC reply object")
        error = reply.get("error")
        if error is not None:
            error = _dict(error, method, "error")
            code = error.get("code")
            message = error.get("message")
            if isinstance(code, bool) or not isinstance(code, int) or not isinstance(message, str):
                raise _malformed(method, "error object without integer code and message")
            if code == RPC_IN_WARMUP:
                raise ChainUnavailable(f"node not ready: {message}")
            raise RpcError(code, message, method=method)
        if status != 200:
            raise _malformed(method, f"HTTP {status} without an error object")
        return reply.get("result")

    def call(self, method: str, *params: Any) -> Any:
        """One JSON-RPC 1.0 call; the result, or RpcError / ChainUnavailable."""
        request = {"jsonrpc": "1.0", "id": next(self._ids), "method": method, "params": params}
        status, reply = self._request(request)
        return self._result(reply, method, status)

    def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Several calls in one round trip; results in request order, first error raised."""
        if not calls:
            return []
        ids = [next(self._ids) for _ in calls]
        requests = [
            {"jsonrpc": "1.0", "id": ident, "method": method, "params": list(params)}
            for ident, (method, params) in zip(ids, calls, strict=True)
        ]
        status, reply = self._request(requests)
        if not isinstance(reply, list):
            # Core answers a batch it cannot read with one error object.
            self._result(reply, "batch", status)
            raise _malformed("batch", "a single result instead of an array")
        by_id = {entry.get("id"): entry for entry in reply if isinstance(entry, dict)}
        results = []
        for ident, (method, _) in zip(ids, calls, strict=True):
            if ident not in by_id:
                raise _malformed("batch", f"no reply for request {ident} ({method})")
            results.append(self._result(by_id[ident], method, 200))
        return results

    # -- chain ----------------------------------------------------------------------------

    def chain_name(self) -> str:
        """Core's chain name: "main", "test", "testnet4", "signet" or "regtest"."""
        info = _dict(self.call("getblockchaininfo"), "getblockchaininfo", "result")
        return _str(info.get("chain"), "getblockchaininfo", "chain")

    def chain_identity(self) -> tuple[str, str]:
        """(Core's chain name, genesis block hash), in one round trip."""
        info, genesis = self.batch([("getblockchaininfo", []), ("getblockhash", [0])])
        chain = _str(
            _dict(info, "getblockchaininfo", "result").get("chain"), "getblockchaininfo", "chain"
        )
        return chain, _hash(genesis, "getblockhash", "result")

    def block_count(self) -> int:
        """Height of the node's best block."""
        return _int(self.call("getblockcount"), "getblockcount", "result")

    def block_hash(self, height: int) -> str:
        return _hash(self.call("getblockhash", height), "getblockhash", "result")

    def block_hashes(self, heights: list[int]) -> list[str]:
        """Hashes of many heights in one round trip (reorg detection walks back this way)."""
        results = self.batch([("getblockhash", [height]) for height in heights])
        return [_hash(result, "getblockhash", "result") for result in results]

    def raw_block(self, block_hash: str) -> bytes:
        """The serialized block, which the coordinator parses itself."""
        return _hex(self.call("getblock", block_hash, 0), "getblock", "result")

    def raw_transaction(self, txid: str, block_hash: str | None = None) -> bytes:
        """The serialized transaction; without txindex Core needs the block hash."""
        return _hex(
            self.call("getrawtransaction", *self._raw_tx_params(txid, block_hash)),
            "getrawtransaction",
            "result",
        )

    def raw_transactions(self, pairs: Sequence[tuple[str, str | None]]) -> list[bytes]:
        """Many ``raw_transaction`` calls in one round trip."""
        calls = [("getrawtransaction", self._raw_tx_params(txid, bh)) for txid, bh in pairs]
        return [_hex(r, "getrawtransaction", "result") for r in self.batch(calls)]

    @staticmethod
    def _raw_tx_params(txid: str, block_hash: str | None) -> list[Any]:
        return [txid, False] if block_hash is None else [txid, False, block_hash]

    def scan_scripts(self, scripts: list[bytes]) -> list[ScannedOutput]:
        """Unspent outputs paying to ``scripts``, straight from the UTXO set (no wallet)."""
        return self._scan(scripts)[1] if scripts else []

    def scan_utxos(self, scripts: list[bytes]) -> UtxoScan:
        """As :meth:`scan_scripts`, with the tip (height and hash) the scan read, so the
        caller can tell whether it saw the same chain as its own records."""
        reply, found = self._scan(scripts)
        method = "scantxoutset"
        height = _int(reply.get("height"), method, "height")
        return UtxoScan(height, _hash(reply.get("bestblock"), method, "bestblock"), found)

    def _scan(self, scripts: list[bytes]) -> tuple[dict[str, Any], list[ScannedOutput]]:
        wanted = list(dict.fromkeys(scripts))
        objects = [{"desc": f"raw({script.hex()})"} for script in wanted]
        reply = _dict(self.call("scantxoutset", "start", objects), "scantxoutset", "result")
        if reply.get("success") is not True:
            raise RpcError(-1, "the UTXO scan did not complete", method="scantxoutset")
        unspents = _list(reply.get("unspents"), "scantxoutset", "unspents")
        found = [self._scanned(_dict(u, "scantxoutset", "unspent")) for u in unspents]
        asked = set(wanted)
        if any(output.script_pubkey not in asked for output in found):
            raise _malformed("scantxoutset", "an output for a script we did not ask about")
        return reply, found

    @staticmethod
    def _scanned(unspent: dict[str, Any]) -> ScannedOutput:
        method = "scantxoutset"
        return ScannedOutput(
            txid=_hash(unspent.get("txid"), method, "txid"),
            vout=_int(unspent.get("vout"), method, "vout"),
            script_pubkey=_hex(unspent.get("scriptPubKey"), method, "scriptPubKey"),
            value=_amount(unspent.get("amount"), method, "amount"),
            height=_int(unspent.get("height"), method, "height"),
            coinbase=_bool(unspent.get("coinbase"), method, "coinbase"),
        )

    def estimate_fee_rate(self, target: int) -> int | None:
        """sat/kvB for confirmation within ``target`` blocks; None when Core has no estimate."""
        return self.fee_estimate(target)[0]

    def fee_estimate(self, target: int) -> tuple[int | None, str]:
        """(sat/kvB or None, Core's reason when it has no estimate)."""
        reply = _dict(self.call("estimatesmartfee", target), "estimatesmartfee", "result")
        if "feerate" not in reply:
            errors = reply.get("errors")
            texts = [e for e in errors if isinstance(e, str)] if isinstance(errors, list) else []
            return None, "; ".join(texts)[:200] or "no estimate and no reason given"
        return _amount(reply["feerate"], "estimatesmartfee", "feerate"), ""

    # -- mempool --------------------------------------------------------------------------

    def test_mempool_accept(self, raw: bytes) -> MempoolAccept:
        """Would the node accept ``raw`` now? Checked before every broadcast."""
        method = "testmempoolaccept"
        reply = _list(self.call(method, [raw.hex()]), method, "result")
        if len(reply) != 1:
            raise _malformed(method, f"{len(reply)} results for one transaction")
        entry = _dict(reply[0], method, "result[0]")
        allowed = _bool(entry.get("allowed"), method, "allowed")
        fees = entry.get("fees")
        base = _dict(fees, method, "fees").get("base") if fees is not None else None
        vsize = entry.get("vsize")
        return MempoolAccept(
            txid=_hash(entry.get("txid"), method, "txid"),
            wtxid=_hash(entry.get("wtxid"), method, "wtxid"),
            allowed=allowed,
            reason=None if allowed else str(entry.get("reject-reason") or "rejected"),
            vsize=None if vsize is None else _int(vsize, method, "vsize"),
            fee=None if base is None else _amount(base, method, "fees.base"),
        )

    def send_raw_transaction(self, raw: bytes) -> str:
        """Broadcast; returns the txid. Core's default maxfeerate (0.10 BTC/kvB) applies."""
        return _hash(self.call("sendrawtransaction", raw.hex()), "sendrawtransaction", "result")

    def mempool_txids(self) -> set[str]:
        reply = _list(self.call("getrawmempool"), "getrawmempool", "result")
        return {_hash(txid, "getrawmempool", "txid") for txid in reply}

    def mempool_wtxid(self, txid: str) -> str | None:
        """The wtxid of ``txid`` in the node's mempool, or None when it is not there."""
        method = "getmempoolentry"
        try:
            entry = self.call(method, txid)
        except RpcError as exc:
            if exc.code == RPC_INVALID_ADDRESS_OR_KEY:
                return None
            raise
        return _hash(_dict(entry, method, "result").get("wtxid"), method, "wtxid")

    def unspent_confirmations(
        self, txid: str, vout: int, include_mempool: bool = True
    ) -> int | None:
        """``gettxout``: confirmations of an unspent output (0 in the mempool), or None when
        it is spent (by a block, or by the mempool with ``include_mempool``) or unknown."""
        method = "gettxout"
        reply = self.call(method, txid, vout, include_mempool)
        if reply is None:
            return None
        return _int(_dict(reply, method, "result").get("confirmations"), method, "confirmations")

    # -- regtest helpers (tests and demo) -------------------------------------------------

    def generate_to_address(self, n: int, address: str) -> list[str]:
        reply = _list(self.call("generatetoaddress", n, address), "generatetoaddress", "result")
        return [_hash(h, "generatetoaddress", "block hash") for h in reply]

    def send_to_address(self, address: str, sats: int) -> str:
        reply = self.call("sendtoaddress", address, sats_to_btc(sats))
        return _hash(reply, "sendtoaddress", "result")

    def send_many(self, outputs: dict[str, int]) -> str:
        amounts = {address: sats_to_btc(sats) for address, sats in outputs.items()}
        return _hash(self.call("sendmany", "", amounts), "sendmany", "result")

    def coldstation_reorg(
        self, depth: int, keep_transactions: bool = False, extra_blocks: int = 1
    ) -> list[str]:
        """Replace the last ``depth`` blocks (Coldstation regtest only); new block hashes."""
        method = "coldstation_reorg"
        reply = _list(self.call(method, depth, keep_transactions, extra_blocks), method, "result")
        return [_hash(h, method, "block hash") for h in reply]

    def coldstation_setfeeestimate(self, sat_per_kvb: int | None) -> None:
        """Fix what ``estimatesmartfee`` answers (None: no estimate); Coldstation regtest only."""
        self.call("coldstation_setfeeestimate", sat_per_kvb)

    def stop(self) -> str:
        """Ask the node to shut down; returns its goodbye message."""
        return _str(self.call("stop"), "stop", "result")
