"""The headless signing ceremony on a real SoftHSM2 appliance: a request paying from the
appliance's own HSM key is reviewed, approved by two officers, signed inside the token, and
the result is valid to Bitcoin Core; adversarial requests are refused with nothing signed
and exactly one journal record each."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time

import pytest

from shared.bitcoin.address import Network, address_to_script
from shared.bitcoin.script import p2wpkh_script
from shared.bitcoin.tx import SEQUENCE_RBF, OutPoint, Transaction, TxIn, TxOut
from shared.journal import parse_export
from shared.psbt import Psbt, extract, finalize
from shared.request import RequestMetadata, attach_request, read_receipts
from tests.appliance.test_ceremonies_cli import ADMIN_PINS, OFFICER_PINS, officers, run
from tests.kernel import verify_all

PAYEE = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
TWO = ["--officers", "officer-1,officer-2"]
TWO_PINS = ["1111", "2222"]


@pytest.fixture(scope="module")
def station(tmp_path_factory) -> dict:
    state = tmp_path_factory.mktemp("station") / "appliance"
    assert (
        run(
            state,
            "init",
            "--demo",
            "--network",
            "regtest",
            pins=[*OFFICER_PINS.values(), *ADMIN_PINS.values()],
        ).returncode
        == 0
    )
    assert run(state, "keygen", "hot-1", *TWO, pins=TWO_PINS).returncode == 0
    out = state.parent / "export"
    assert (
        run(state, "export-wallet", "hot-1", "--out", str(out), *TWO, pins=TWO_PINS).returncode == 0
    )
    keys = json.loads(run(state, "status").stdout)["keys"]
    pubkey = bytes.fromhex(next(k["public_key"] for k in keys if k["label"] == "hot-1"))
    return {"state": state, "pubkey": pubkey}


def request(
    pubkey: bytes,
    *,
    pay: int = 400_000,
    request_id: bytes | None = None,
    network: str = "regtest",
    sighash: int | None = None,
    expiry_delta: int = 1800,
    funding_seed: bytes | None = None,
    fee: int = 2_000,
) -> tuple[bytes, list[TxOut]]:
    ours = p2wpkh_script(pubkey)
    funding = Transaction(
        inputs=[TxIn(OutPoint(funding_seed or os.urandom(32), 0), b"\x51")],
        outputs=[TxOut(1_000_000, ours)],
    )
    spend = Transaction(
        inputs=[TxIn(OutPoint(funding.txid, 0), sequence=SEQUENCE_RBF)],
        outputs=[
            TxOut(pay, address_to_script(PAYEE, Network.REGTEST)),
            TxOut(1_000_000 - pay - fee, ours),
        ],
    )
    psbt = Psbt.from_unsigned_tx(spend)
    psbt.inputs[0].set(0x00, funding.serialize())
    psbt.inputs[0].set(0x01, funding.outputs[0].serialize())
    if sighash is not None:
        psbt.inputs[0].set(0x03, sighash.to_bytes(4, "little"))
    now = int(time.time())
    meta = RequestMetadata(
        request_id=request_id or os.urandom(16),
        batch_id="batch-1",
        requester="ops-alice",
        created=now - 10,
        expiry=now + expiry_delta,
        purpose="payouts",
        network=network,
    )
    return attach_request(psbt, meta).serialize(), funding.outputs


def test_happy_path_signs_in_the_hsm_and_core_accepts(station, tmp_path):
    data, spent = request(station["pubkey"])
    source, signed = tmp_path / "req.psbt", tmp_path / "signed.psbt"
    source.write_bytes(data)
    done = run(
        station["state"], "sign", "--in", str(source), *TWO, "--out", str(signed), pins=TWO_PINS
    )
    assert done.returncode == 0, done.stderr
    assert "words:" in done.stdout and "change (ours)" in done.stdout
    psbt = Psbt.parse(signed.read_bytes())
    assert station["pubkey"] in psbt.inputs[0].partial_sigs
    assert len(read_receipts(psbt)) == 1
    tx = extract(finalize(psbt).psbt)
    assert verify_all(tx, spent) == [True]


@pytest.mark.parametrize(
    ("name", "kwargs", "code"),
    [
        ("outputs exceed inputs", {"pay": 900_000_000}, "malformed"),
        ("wrong network", {"network": "mainnet"}, "network"),
        ("sighash none", {"sighash": 2}, "sighash"),
        ("expired", {"expiry_delta": -5}, "expired"),
    ],
)
def test_refused_requests_sign_nothing_and_leave_one_record(station, tmp_path, name, kwargs, code):
    state = station["state"]
    data, _ = request(station["pubkey"], **kwargs)
    source, signed = tmp_path / "req.psbt", tmp_path / "signed.psbt"
    source.write_bytes(data)
    before = _decisions(state, tmp_path)
    done = run(state, "sign", "--in", str(source), *TWO, "--out", str(signed), pins=TWO_PINS)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "nothing signed" in done.stderr and code in done.stderr
    assert not signed.exists()
    after = _decisions(state, tmp_path)
    assert len(after) == len(before) + 1 and after[-1] == "refused"


def test_an_approved_request_presented_again_is_shown_again_never_approved_twice(station, tmp_path):
    """Issue 13's lost output: the signed PSBT comes back from the station's copy (no PIN,
    no record); if the copy is gone, officers activate and the same transaction is signed
    again as `signing_reissued`, counted toward no limit. Another transaction under the same
    request id is refused as a replay."""
    request_id = os.urandom(16)
    first, spent = request(station["pubkey"], request_id=request_id)
    (tmp_path / "a").write_bytes(first)
    ok = run(
        station["state"],
        "sign",
        "--in",
        str(tmp_path / "a"),
        *TWO,
        "--out",
        str(tmp_path / "sa"),
        pins=TWO_PINS,
    )
    assert ok.returncode == 0, ok.stderr
    before = _events(station["state"], tmp_path)
    again = run(
        station["state"],
        "sign",
        "--in",
        str(tmp_path / "a"),
        "--officers",
        "officer-1,officer-2",
        "--out",
        str(tmp_path / "sb"),
    )  # no PINs needed
    assert again.returncode == 0 and "shown again" in again.stdout, again.stderr
    assert (tmp_path / "sb").read_bytes() == (tmp_path / "sa").read_bytes()
    txid = Psbt.parse(first).unsigned_tx.txid_hex
    (station["state"] / "signed" / f"{txid}.psbt").unlink()  # the copy lost in a crash
    third = run(
        station["state"],
        "sign",
        "--in",
        str(tmp_path / "a"),
        *TWO,
        "--out",
        str(tmp_path / "sc"),
        pins=TWO_PINS,
    )
    assert third.returncode == 0 and "sign the same transaction again" in third.stderr
    psbt = Psbt.parse((tmp_path / "sc").read_bytes())
    assert verify_all(extract(finalize(psbt).psbt), spent) == [True]
    assert read_receipts(psbt) == read_receipts(Psbt.parse((tmp_path / "sa").read_bytes()))
    after = _events(station["state"], tmp_path)
    assert [e for e in after if e[0] == "signing_decision"] == [
        e for e in before if e[0] == "signing_decision"
    ]
    assert after[-1][0] == "signing_reissued"
    psbt_other = Psbt.parse(first)
    tx = psbt_other.unsigned_tx
    changed = dataclasses.replace(tx.inputs[0], sequence=0xFFFFFFFE)
    psbt_other.globals.set(
        0x00, Transaction(tx.version, [changed], tx.outputs, tx.locktime).serialize()
    )
    (tmp_path / "b").write_bytes(psbt_other.serialize())
    refused = run(
        station["state"],
        "sign",
        "--in",
        str(tmp_path / "b"),
        *TWO,
        "--out",
        str(tmp_path / "sd"),
        pins=TWO_PINS,
    )
    assert refused.returncode == 1 and "replayed" in refused.stderr


def _events(state, tmp_path) -> list[tuple[str, str | None]]:
    """(event, decision) of every signing record, from a journal export."""
    out = tmp_path / f"j{len(list(tmp_path.iterdir()))}.cbor"
    done = run(state, "journal", "export", "--out", str(out), *TWO, pins=TWO_PINS)
    assert done.returncode == 0, done.stderr
    return [
        (e.record.event, e.record.decision)
        for e in parse_export(out.read_bytes())[2]
        if e.record.event in ("signing_decision", "signing_reissued")
    ]


def _sign(station, tmp_path, data: bytes, name: str) -> subprocess.CompletedProcess:
    (tmp_path / name).write_bytes(data)
    return run(
        station["state"],
        "sign",
        "--in",
        str(tmp_path / name),
        *TWO,
        "--out",
        str(tmp_path / f"{name}.signed"),
        pins=TWO_PINS,
    )


def test_conflicting_spend_of_a_signed_coin_is_refused(station, tmp_path):
    """The journal remembers which coins were signed away: a second transaction spending
    the same coin (a different fee, so a different txid) is a double spend, not a retry."""
    coin = os.urandom(32)
    first, _ = request(station["pubkey"], funding_seed=coin)
    assert _sign(station, tmp_path, first, "first").returncode == 0
    second, _ = request(station["pubkey"], funding_seed=coin, fee=3_000)
    refused = _sign(station, tmp_path, second, "second")
    assert refused.returncode == 1 and "conflicting_spend" in refused.stderr
    assert not (tmp_path / "second.signed").exists()


def test_daily_total_counts_what_was_signed_today(tmp_path):
    """Two payments each under the per-tx limit, together over the per-day limit."""
    state = tmp_path / "appliance"
    assert (
        run(state, "init", "--demo", pins=[*OFFICER_PINS.values(), *ADMIN_PINS.values()]).returncode
        == 0
    )
    assert run(state, "keygen", "k", *TWO, pins=TWO_PINS).returncode == 0
    assert (
        run(
            state, "export-wallet", "k", "--out", str(tmp_path / "x"), *TWO, pins=TWO_PINS
        ).returncode
        == 0
    )
    draft, signed = tmp_path / "d.cbor", tmp_path / "s.cbor"
    assert (
        run(
            state, "policy", "draft", "--set", "per_day_limit_sat=700000", "-o", str(draft)
        ).returncode
        == 0
    )
    assert (
        run(
            state,
            "policy",
            "sign",
            str(draft),
            "--admins",
            "admin-1,admin-2",
            "-o",
            str(signed),
            pins=list(ADMIN_PINS.values()),
        ).returncode
        == 0
    )
    assert run(state, "policy", "install", str(signed), *TWO, pins=TWO_PINS).returncode == 0
    keys = json.loads(run(state, "status").stdout)["keys"]
    station = {
        "state": state,
        "pubkey": bytes.fromhex(next(k["public_key"] for k in keys if k["label"] == "k")),
    }
    first, _ = request(station["pubkey"], pay=400_000)
    assert _sign(station, tmp_path, first, "a").returncode == 0
    second, _ = request(station["pubkey"], pay=400_000)
    refused = _sign(station, tmp_path, second, "b")
    assert refused.returncode == 1 and "limits" in refused.stderr


def test_one_officer_is_not_enough(station, tmp_path):
    data, _ = request(station["pubkey"])
    (tmp_path / "r").write_bytes(data)
    done = run(
        station["state"],
        "sign",
        "--in",
        str(tmp_path / "r"),
        *officers("officer-1")[0],
        "--out",
        str(tmp_path / "s"),
        pins=["1111"],
    )
    assert done.returncode == 1 and "approvals" in done.stderr
    assert not (tmp_path / "s").exists()


def _decisions(state, tmp_path) -> list[str]:
    out = tmp_path / f"j{time.monotonic_ns()}.cbor"
    assert run(state, "journal", "export", "--out", str(out), *TWO, pins=TWO_PINS).returncode == 0
    return [
        e.record.decision
        for e in parse_export(out.read_bytes())[2]
        if e.record.event == "signing_decision"
    ]
