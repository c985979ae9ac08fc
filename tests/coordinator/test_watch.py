"""``watch``, the always-on monitor (issue 19): every alert class raised once, delivered
once to a loopback webhook receiver with a valid HMAC, in order, and never again while
its condition holds; a receiver that is down gets everything later; the metrics endpoint
parses with prometheus_client's own parser."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from online_coordinator.monitor import ALERT_KINDS, DELIVERY_HEADER, SIGNATURE_HEADER
from tests.coordinator.conftest import Desk, ProxiedDesk
from tests.coordinator.softappliance import SoftAppliance
from tests.coordinator.test_flow import BTC, create, funded_single, payee, sign_and_import, steal

BOTH_STORES = True  # SQLite and PostgreSQL (tests/coordinator/conftest.py)

SECRET = b"a webhook secret of more than thirty-two bytes"


class Receiver(ThreadingHTTPServer):
    """A webhook endpoint on loopback: keeps every POST (headers, body); answers
    ``status`` (503 plays a receiver that is down)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def kinds(self) -> list[str]:
        return [json.loads(body)["kind"] for _, body in self.posts]


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        receiver: Receiver = self.server  # type: ignore[assignment]
        if receiver.status == 200:
            receiver.posts.append((dict(self.headers), body))
        self.send_response(receiver.status)
        if receiver.status == 302:  # "moved": a GET elsewhere would not be a delivery
            self.send_header("Location", "/elsewhere")
        self.end_headers()

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Receiver:
    server = Receiver()
    yield server
    server.shutdown()


def _secret(desk: Desk) -> Path:
    path = desk.tmp / "webhook.secret"
    path.write_bytes(SECRET)
    path.chmod(0o600)
    return path


def watch(desk: Desk, receiver: Receiver, *extra: str) -> str:
    return desk.ok(
        "watch",
        "--rounds",
        "1",
        "--interval",
        "0",
        "--webhook",
        receiver.url,
        "--webhook-secret-file",
        str(_secret(desk)),
        "--unconfirmed-blocks",
        "2",
        *extra,
    )


def test_every_alert_class_reaches_the_webhook_once_signed(
    proxied: ProxiedDesk, receiver: Receiver
) -> None:
    desk = proxied
    appliance = SoftAppliance("cold-1", pool=3)
    address = funded_single(desk, appliance, coins=3)

    first = watch(desk, receiver)  # a fixed-key pool of 3 with one address used
    assert "ALERT" in first and "low_fresh_addresses" in first and "no_fee_estimate" in first
    assert watch(desk, receiver).count("ALERT") == 0  # still true: not raised again

    request = create(desk, "b1", [(payee(1), "0.1", "INV-1")])
    sign_and_import(desk, "b1", request, appliance)
    desk.proxy.fail("sendrawtransaction", "503", times=1000)  # the node will not take it
    assert desk.run("batch", "broadcast", "b1").code == 4  # recorded as sending
    assert "node_unavailable" in watch(desk, receiver)
    desk.node.mine(2)
    assert "broadcast_unconfirmed" in watch(desk, receiver)
    desk.proxy.faults.clear()  # the node takes it again: re-sent, then mined
    assert "cleared node_unavailable" in watch(desk, receiver)
    desk.node.mine(1)
    assert "cleared broadcast_unconfirmed" in watch(desk, receiver)

    steal(desk, appliance, address)  # spent by a transaction no request built
    assert "unknown_outflow" in watch(desk, receiver)

    suspended = desk.write("suspended.receipt", appliance.key_state("key_suspended"))
    desk.ok("wallet", "key-state", suspended)
    desk.fund(address, BTC)  # paid to the key its station suspended
    assert "deposit_to_inactive_key" in watch(desk, receiver)

    desk.node.reorg(3, keep_transactions=True)
    assert "deep_reorg" in watch(desk, receiver)

    config = desk.state / "coordinator.toml"
    regtest = config.read_text()
    config.write_text(regtest.replace('network = "regtest"', 'network = "testnet"'))
    assert "wrong_chain" in watch(desk, receiver)
    assert "ALERT" not in watch(desk, receiver)
    config.write_text(regtest)

    assert sorted(receiver.kinds()) == sorted(ALERT_KINDS)  # each class, exactly once
    ids = []
    for headers, body in receiver.posts:
        expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers[SIGNATURE_HEADER], expected)
        alert = json.loads(body)
        assert headers[DELIVERY_HEADER] == str(alert["id"]) and alert["message"]
        ids.append(alert["id"])
    assert ids == sorted(ids)  # in order


def test_a_receiver_that_is_down_gets_every_alert_later(desk: Desk, receiver: Receiver) -> None:
    funded_single(desk, SoftAppliance("cold-1", pool=3))
    receiver.status = 503
    out = watch(desk, receiver)
    assert "0 alert(s) delivered" in out and "not delivered: HTTP 503 (kept for later)" in out
    receiver.status = 302
    out = watch(desk, receiver)
    assert "0 alert(s) delivered" in out and "HTTP 302" in out
    receiver.status = 200
    assert "2 alert(s) delivered" in watch(desk, receiver)
    assert sorted(receiver.kinds()) == ["low_fresh_addresses", "no_fee_estimate"]


def test_a_node_answering_with_errors_alerts_and_the_monitor_keeps_watching(
    proxied: ProxiedDesk,
) -> None:
    desk = proxied
    funded_single(desk, SoftAppliance("cold-1"))
    desk.proxy.fail("getblockcount", "error", times=2)
    first = desk.ok("watch", "--rounds", "1")
    assert "ALERT node_unavailable" in first
    with desk.store() as store:
        alert = store.one("SELECT message FROM events WHERE kind = 'node_unavailable'")
    assert alert["message"].startswith("the node refused: ")
    assert "ALERT" not in desk.ok("watch", "--rounds", "1")  # still refusing: not again
    assert "cleared node_unavailable" in desk.ok("watch", "--rounds", "1")


def test_node_down_alerts_once_clears_and_the_metrics_parse(proxied: ProxiedDesk) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    desk = proxied
    funded_single(desk, SoftAppliance("cold-1"))
    desk.stop_node()
    assert "ALERT node_unavailable" in desk.ok("watch", "--rounds", "1")
    assert "ALERT" not in desk.ok("watch", "--rounds", "1")
    desk.start_node()
    assert "cleared node_unavailable" in desk.ok("watch", "--rounds", "1")

    port = _free_port()
    thread = threading.Thread(
        target=desk.ok,
        args=("watch", "--rounds", "2", "--interval", "1", "--metrics-port", str(port)),
    )
    thread.start()
    text = ""
    for _ in range(50):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
                text = reply.read().decode()
            if _rounds_ended(text) >= 1:
                break
        except OSError:
            pass
        threading.Event().wait(0.1)
    thread.join(20)
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples["coldstation_node_up"] == 1
    assert samples["coldstation_chain_tip_height"] > 100
    assert samples["coldstation_open_alerts"] >= 1  # node_unavailable, not acknowledged
    balances = {
        sample.labels["wallet"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "coldstation_wallet_balance_sat"
    }
    assert balances == {"treasury": 3 * BTC}, text


def _rounds_ended(text: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "coldstation_watch_rounds_total":
                return sample.value
    return 0.0


def test_before_the_first_round_the_node_is_not_reported_down() -> None:
    """A scrape while the first round runs must not read as an outage (node_up 0) or tip 0."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from online_coordinator.monitor import Metrics

    text = generate_latest(Metrics().registry).decode()
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert math.isnan(samples["coldstation_node_up"])
    assert math.isnan(samples["coldstation_chain_tip_height"])
    assert samples["coldstation_watch_rounds_total"] == 0


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_webhook_settings_are_checked(desk: Desk, tmp_path: Path) -> None:
    loose = tmp_path / "loose.secret"
    loose.write_bytes(SECRET)
    loose.chmod(0o644)
    short = tmp_path / "short.secret"
    short.write_bytes(b"short")
    short.chmod(0o600)
    for args, message in (
        (["--webhook", "http://alerts.example/x", "--webhook-secret-file", str(short)], "https"),
        (
            ["--webhook", "https://alerts.example/x", "--webhook-secret-file", str(loose)],
            "mode 600",
        ),
        (
            ["--webhook", "https://alerts.example/x", "--webhook-secret-file", str(short)],
            "32 bytes",
        ),
        (["--webhook", "https://alerts.example/x"], "needs --webhook-secret-file"),
    ):
        result = desk.run("watch", "--rounds", "1", *args)
        assert result.code == 2 and message in result.err, result


def test_alerts_appear_on_the_web_page_and_an_operator_acknowledges_them(desk: Desk) -> None:
    from starlette.testclient import TestClient

    from online_coordinator.users import add_user
    from online_coordinator.web.app import WebSettings, build_app
    from tests.coordinator.test_web import ORIGIN, PASSWORD, csrf, login

    funded_single(desk, SoftAppliance("cold-1", pool=3))
    desk.ok("watch", "--rounds", "1")
    with desk.store() as store:
        add_user(store, "vic", "viewer", PASSWORD)
        add_user(store, "olga", "operator", PASSWORD)
    web = TestClient(build_app(WebSettings(desk.state, ORIGIN)), base_url=ORIGIN)
    login(web, "vic")
    page = web.get("/alerts").text
    assert "low_fresh_addresses" in page and "no_fee_estimate" in page
    assert "Acknowledge" not in page  # a viewer reads only
    login(web, "olga")
    first = int(re.search(r'action="/alerts/(\d+)/acknowledge"', web.get("/alerts").text)[1])
    empty = web.post(f"/alerts/{first}/acknowledge", data={"note": "", "csrf": csrf(web, "/")})
    assert empty.status_code == 400
    done = web.post(
        f"/alerts/{first}/acknowledge",
        data={"note": "fee estimates return after a day of blocks", "csrf": csrf(web, "/")},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert f'action="/alerts/{first}/acknowledge"' not in web.get("/alerts").text
    with desk.store() as store:
        row = store.one("SELECT acknowledged FROM events WHERE id = ?", first)
        actor = store.one("SELECT actor FROM events WHERE kind = 'alert_acknowledged'")
    assert row["acknowledged"].startswith("olga: ") and actor["actor"] == "olga"
