"""A loopback HTTP proxy between the coordinator and its node that breaks chosen replies.

Every request goes to the real node (the kernel-validated regtest behind real JSON-RPC);
only what comes back is tampered with, so the node really acts on a request whose reply
the coordinator never sees. Faults, for the first request naming a given RPC method:

* ``drop``: forward, then close the connection without a reply;
* ``half``: forward, send the headers and the first half of the body, close;
* ``trickle``: forward, then send the reply one byte every ``interval`` seconds;
* ``garbage``: forward, then answer HTTP 200 with a body that is not JSON;
* ``503``: do not forward; answer 503 with the page Core's HTTP server sends while it
  shuts down;
* ``result``: forward, then answer with ``result`` in place of the node's result;
* ``error``: forward, then answer with a JSON-RPC error object (its message holds a NUL).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

SERVICE_UNAVAILABLE_PAGE = (
    b"<HTML><HEAD>\n<TITLE>503 Service Unavailable</TITLE>\n</HEAD><BODY>\n"
    b"<H1>Service Unavailable</H1>\n</BODY></HTML>\n"
)
SERVICE_UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/html\r\n"
    + f"Content-Length: {len(SERVICE_UNAVAILABLE_PAGE)}\r\n".encode()
    + b"Connection: close\r\n\r\n"
    + SERVICE_UNAVAILABLE_PAGE
)
GARBAGE = b'{"result": "00000000", "error": null, "id": 1, <<<garbage'


@dataclass
class Fault:
    method: str
    kind: str
    times: int
    interval: float = 0.5
    result: Any = None


class FaultProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.faults: list[Fault] = []
        self.methods: list[str] = []  # every method seen, in order
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/"

    def fail(self, method: str, kind: str, times: int = 1, **options: Any) -> None:
        with self._lock:
            self.faults.append(Fault(method, kind, times, **options))

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _take(self, methods: list[str]) -> Fault | None:
        with self._lock:
            self.methods.extend(methods)
            for fault in self.faults:
                if fault.times > 0 and fault.method in methods:
                    fault.times -= 1
                    return fault
        return None

    def _serve(self, client: socket.socket) -> None:
        with client:
            while True:
                request = _read_message(client)
                if request is None:
                    return
                head, body = request
                fault = self._take(_methods(body))
                if fault is not None and fault.kind == "503":
                    client.sendall(SERVICE_UNAVAILABLE)
                    return
                try:
                    reply = self._forward(head + body)
                except OSError:
                    return  # the node is down: the client sees the connection close
                if fault is None:
                    client.sendall(reply[0] + reply[1])
                    continue
                self._break(client, fault, reply, body)
                return

    def _forward(self, raw: bytes) -> tuple[bytes, bytes]:
        with socket.create_connection(self.upstream, timeout=60) as node:
            node.sendall(raw)
            reply = _read_message(node)
        if reply is None:
            raise OSError("the node closed the connection")
        return reply

    def _break(
        self, client: socket.socket, fault: Fault, reply: tuple[bytes, bytes], body: bytes
    ) -> None:
        head, answer = reply
        with contextlib.suppress(OSError):
            if fault.kind == "half":
                client.sendall(head + answer[: len(answer) // 2])
            elif fault.kind == "trickle":
                for byte in head + answer:
                    client.sendall(bytes([byte]))
                    time.sleep(fault.interval)
            elif fault.kind == "garbage":
                client.sendall(_http(200, GARBAGE))
            elif fault.kind == "result":
                ident = json.loads(body).get("id")
                text = json.dumps({"result": fault.result, "error": None, "id": ident})
                client.sendall(_http(200, text.encode()))
            elif fault.kind == "error":  # Core's JSON-RPC error object, with HTTP 500
                ident = json.loads(body).get("id")
                error = {"code": -1, "message": "internal error\u0000 in the node"}
                text = json.dumps({"result": None, "error": error, "id": ident})
                client.sendall(_http(500, text.encode()))
            elif fault.kind != "drop":
                raise ValueError(f"unknown fault {fault.kind!r}")


def _http(status: int, body: bytes) -> bytes:
    return (
        f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def _methods(body: bytes) -> list[str]:
    try:
        request = json.loads(body)
    except ValueError:
        return []
    entries = request if isinstance(request, list) else [request]
    return [e.get("method", "") for e in entries if isinstance(e, dict)]


def _read_message(sock: socket.socket) -> tuple[bytes, bytes] | None:
    """One HTTP message (request or response): (head with the blank line, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        rest += chunk
    return head + b"\r\n\r\n", rest[:length]
