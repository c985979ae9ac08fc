"""One ceremony signs the largest transaction Bitcoin Core relays (issue 14).

A request spending as many P2WPKH coins of the station's own key as fit in
MAX_STANDARD_TX_WEIGHT (about 1,460) is reviewed, approved by two officers, signed inside
SoftHSM2, journaled (the record commits to the inputs by digest; the list is in the
transcript) and receipted; libbitcoinkernel verifies every input. One input more is refused
as too heavy, with one journal record, and nothing signed.
"""

from __future__ import annotations

import json
import os
import time

import cbor2
import pytest

from shared.bitcoin.address import Network, address_to_script
from shared.bitcoin.script import p2wpkh_script
from shared.bitcoin.size import MAX_STANDARD_TX_WEIGHT, P2WPKH_SHAPE, estimate_weight
from shared.bitcoin.tx import SEQUENCE_RBF, OutPoint, Transaction, TxIn, TxOut
from shared.journal import MAX_RECORD_BYTES, outpoints_digest, parse_export
from shared.psbt import Psbt, extract, finalize
from shared.request import RequestMetadata, attach_request, read_receipts
from tests.appliance.conftest import softhsm_available
from tests.appliance.test_ceremonies_cli import ADMIN_PINS, OFFICER_PINS, run
from tests.kernel import verify_all

TWO = ["--officers", "officer-1,officer-2"]
TWO_PINS = ["1111", "2222"]
PAYEE = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
COIN = 100_000

pytestmark = pytest.mark.skipif(not softhsm_available(), reason="SoftHSM2 is not installed")


def _spend(ours: bytes, count: int, payee: bytes) -> tuple[Transaction, list[Transaction]]:
    fundings = [
        Transaction(
            inputs=[TxIn(OutPoint(os.urandom(32), 0), b"\x51")], outputs=[TxOut(COIN, ours)]
        )
        for _ in range(count)
    ]
    total = COIN * count
    spend = Transaction(
        inputs=[TxIn(OutPoint(f.txid, 0), sequence=SEQUENCE_RBF) for f in fundings],
        outputs=[TxOut(total // 2, payee), TxOut(total // 2 - 120_000, ours)],
    )
    return spend, fundings


def largest(ours: bytes, payee: bytes) -> int:
    """The most P2WPKH inputs that fit in the standard weight, signed."""
    count = 1_000
    while True:
        spend, _ = _spend(ours, count + 1, payee)
        if estimate_weight(spend, [P2WPKH_SHAPE] * (count + 1)) > MAX_STANDARD_TX_WEIGHT:
            return count
        count += 1


def request(ours: bytes, payee: bytes, count: int) -> tuple[bytes, list[TxOut]]:
    spend, fundings = _spend(ours, count, payee)
    psbt = Psbt.from_unsigned_tx(spend)
    for inp, funding in zip(psbt.inputs, fundings, strict=True):
        inp.set(0x00, funding.serialize())
        inp.set(0x01, funding.outputs[0].serialize())
    now = int(time.time())
    meta = RequestMetadata(
        request_id=os.urandom(16),
        batch_id="max",
        requester="ops",
        created=now - 5,
        expiry=now + 3600,
        purpose="consolidation",
        network="regtest",
    )
    return attach_request(psbt, meta).serialize(), [f.outputs[0] for f in fundings]


def test_the_largest_standard_transaction_is_signed_in_one_ceremony(tmp_path):
    state = tmp_path / "station"
    assert (
        run(state, "init", "--demo", pins=[*OFFICER_PINS.values(), *ADMIN_PINS.values()]).returncode
        == 0
    )
    assert run(state, "keygen", "bulk", *TWO, pins=TWO_PINS).returncode == 0
    assert (
        run(
            state, "export-wallet", "bulk", "--out", str(tmp_path / "x"), *TWO, pins=TWO_PINS
        ).returncode
        == 0
    )
    keys = json.loads(run(state, "status").stdout)["keys"]
    ours = p2wpkh_script(bytes.fromhex(next(k["public_key"] for k in keys if k["label"] == "bulk")))
    payee = address_to_script(PAYEE, Network.REGTEST)
    count = largest(ours, payee)
    assert count > 1_400

    data, spent = request(ours, payee, count)
    (tmp_path / "max.psbt").write_bytes(data)
    done = run(
        state,
        "sign",
        "--in",
        str(tmp_path / "max.psbt"),
        *TWO,
        "--out",
        str(tmp_path / "signed.psbt"),
        pins=TWO_PINS,
    )
    assert done.returncode == 0, done.stderr
    assert f"signed {count} input(s)" in done.stdout
    # a ceremony this size is checkpointed at once: later opens do not re-read its transcript
    checkpoint_seq = cbor2.loads((state / "checkpoint.cbor").read_bytes())["checkpoint"]["seq"]
    signed = Psbt.parse((tmp_path / "signed.psbt").read_bytes())
    assert len(read_receipts(signed)) == 1
    tx = extract(finalize(signed).psbt)
    assert tx.weight() <= MAX_STANDARD_TX_WEIGHT
    assert verify_all(tx, spent) == [True] * count

    heavy, _ = request(ours, payee, count + 1)
    (tmp_path / "heavy.psbt").write_bytes(heavy)
    refused = run(
        state,
        "sign",
        "--in",
        str(tmp_path / "heavy.psbt"),
        *TWO,
        "--out",
        str(tmp_path / "no.psbt"),
        pins=TWO_PINS,
    )
    assert refused.returncode == 1 and "weight:" in refused.stderr
    assert not (tmp_path / "no.psbt").exists()

    out = tmp_path / "journal.cbor"
    assert run(state, "journal", "export", "--out", str(out), *TWO, pins=TWO_PINS).returncode == 0
    entries = parse_export(out.read_bytes())[2]
    decisions = [e for e in entries if e.record.event == "signing_decision"]
    approved, heavy_refusal = decisions[-2], decisions[-1]
    assert approved.record.decision == "approved"
    assert checkpoint_seq == approved.record.seq
    assert approved.record.details["inputs"] == count
    assert (
        approved.record.details["outpoints_sha256"]
        == outpoints_digest(txin.prevout for txin in tx.inputs).hex()
    )
    assert len(approved.to_bytes()) < MAX_RECORD_BYTES // 4, "records stay small"
    assert heavy_refusal.record.decision == "refused"
    assert [code for code, _ in heavy_refusal.record.details["refusals"]] == ["weight"]
