"""Benchmark: from the last QR part received to the signed QR ready, on SoftHSM2, as the
journal grows.

A 100-input, 2-output request paying from the appliance's own HSM key is carried as UR
parts. Each run opens the station afresh, as every `coldstation-appliance` ceremony does
(checkpoint signature, journal prefix hash, the records after the checkpoint verified and
folded); the clock starts when the last part is handed to the receiver and stops when the
first frame of the signed PSBT's animated QR is rendered. The officers' PIN entry is human
time and not counted; the machine work of their approvals (token login, key challenge,
anchor check, approval signature) is shown on its own line. The table repeats the run with
10x and 100x the journal behind it (signed approval records, each naming its outpoints and
approvals like a real one); target: under 0.5 s with 10,000 records. Also the TUI's cold
start: a fresh process to the Home screen drawn; target under 1.5 s. Prints figures only.

    python -m tests.bench.sign_bench [--inputs 100] [--journal 100,1000,10000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from appliance.ceremonies import Appliance
from appliance.signing import SigningSession
from shared.bitcoin.address import Network, address_to_script
from shared.bitcoin.script import p2wpkh_script
from shared.bitcoin.tx import SEQUENCE_RBF, OutPoint, Transaction, TxIn, TxOut
from shared.psbt import Psbt
from shared.qr.presets import FAST
from shared.qr.receiver import QrReceiver
from shared.request import RequestMetadata, attach_request
from shared.ur.payload import cbor_to_file
from shared.ur.registry import encode_psbt
from shared.ur.ur import UR, UREncoder

EXE = str(Path(sys.executable).with_name("coldstation-appliance"))
PINS = {"officer-1": "1111", "officer-2": "2222", "officer-3": "3333"}
TARGET = 0.5
TUI_TARGET = 1.5


def cli(state: Path, *args: str, pins: list[str]) -> None:
    read, write = os.pipe()
    os.write(write, "".join(f"{p}\n" for p in pins).encode())
    os.close(write)
    done = subprocess.run([EXE, "--state", str(state), "--pin-fd", str(read), *args],
                          pass_fds=(read,), capture_output=True, text=True, check=False)
    os.close(read)
    if done.returncode:
        raise SystemExit(f"{args[0]} failed: {done.stderr}")


def make_request(pubkey: bytes, inputs: int) -> bytes:
    ours = p2wpkh_script(pubkey)
    payee = address_to_script("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080", Network.REGTEST)
    fundings = [Transaction(inputs=[TxIn(OutPoint(os.urandom(32), 0), b"\x51")],
                            outputs=[TxOut(100_000, ours)]) for _ in range(inputs)]
    total = 100_000 * inputs
    spend = Transaction(inputs=[TxIn(OutPoint(f.txid, 0), sequence=SEQUENCE_RBF)
                                for f in fundings],
                        outputs=[TxOut(total // 2, payee), TxOut(total // 2 - 20_000, ours)])
    psbt = Psbt.from_unsigned_tx(spend)
    for i, funding in enumerate(fundings):
        psbt.inputs[i].set(0x00, funding.serialize())
        psbt.inputs[i].set(0x01, funding.outputs[0].serialize())
    now = int(time.time())
    meta = RequestMetadata(request_id=os.urandom(16), batch_id="bench", requester="ops",
                           created=now - 5, expiry=now + 3600, purpose="bench",
                           network="regtest")
    return attach_request(psbt, meta).serialize()


def one_run(state: Path, pubkey: bytes, inputs: int) -> tuple[float, float]:
    data = make_request(pubkey, inputs)
    receiver = QrReceiver()
    encoder = UREncoder(UR("crypto-psbt", encode_psbt(data)), FAST.max_fragment_len)
    parts = [encoder.next_part() for _ in range(encoder.seq_len)]
    for part in parts[:-1]:
        receiver.feed_text(part)
    start = time.perf_counter()
    appliance = Appliance(state)  # a ceremony opens the station: verified from its checkpoint
    assert not appliance.problems, appliance.problems
    session = SigningSession(appliance)
    receiver.feed_text(parts[-1])
    assert receiver.result is not None
    review = session.load(cbor_to_file(receiver.result.ur_type, receiver.result.cbor))
    assert review is not None and review.approved_for_signing, review and review.refusals
    review_done = time.perf_counter()
    for label in ("officer-1", "officer-2"):
        session.approve(label, PINS[label])
    approvals = time.perf_counter() - review_done
    result = session.sign()
    signed = UREncoder(UR("crypto-psbt", encode_psbt(result.psbt_bytes)),
                       FAST.max_fragment_len)
    FAST.renderer().image(signed.next_part().upper())
    total = time.perf_counter() - start - approvals
    appliance.close()
    return total, approvals


def fill_journal(state: Path, records: int) -> None:
    """Append signed approval records until the journal holds ``records`` (bench only: one
    activation, records sealed by the audit key and folded as the station does, one anchor
    and one checkpoint at the end instead of one anchor per record)."""
    from shared.journal import Record, seal

    with Appliance(state) as appliance, appliance.activated(
            [("officer-1", "1111"), ("officer-2", "2222")]) as act:  # fmt: skip
        recorder, keystore = appliance.recorder, appliance.keystore
        approvals = {fp: os.urandom(70) for fp in act.actors}
        while recorder.state.length < records:
            head = recorder.state
            txid = os.urandom(32)
            record = Record(seq=head.seq + 1, prev_hash=head.head, time=int(time.time()),
                            appliance_id=appliance.config.appliance_id,
                            event="signing_decision", actors=act.actors, decision="approved",
                            subjects={"psbt": os.urandom(32), "transcript": os.urandom(32),
                                      "request": os.urandom(32)},
                            details={"txid": txid.hex(), "outpoints": [
                                f"{os.urandom(32).hex()}:{i}" for i in range(2)],
                                "refusals": [], "request_id": os.urandom(16), "paid_out": 0,
                                "fee": 500, "approvals": approvals, "quorum": 2,
                                "signatures": 2})  # fmt: skip
            entry = seal(record, keystore.sign_audit_digest)
            head.apply(record, record.hash())
            recorder.store.append(entry.to_bytes())
        recorder.anchor()


COLD_START = """
import asyncio, sys, time
start = float(sys.argv[2])
from appliance.ceremonies import Appliance
from appliance.tui.app import ColdstationApp
from appliance.tui.screens.home import HomeScreen
async def main():
    app = ColdstationApp(Appliance(sys.argv[1]))
    async with app.run_test(size=(80, 24)) as pilot:
        while not isinstance(app.screen, HomeScreen):
            await pilot.pause()
        await pilot.pause()
        print(time.time() - start)
asyncio.run(main())
"""


def tui_cold_start(state: Path) -> float:
    """Seconds from launching a fresh Python process to the Home screen drawn (80x24)."""
    done = subprocess.run([sys.executable, "-c", COLD_START, str(state), str(time.time())],
                          capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--journal", default="100,1000,10000",
                        help="journal sizes (records before the ceremony), comma separated")
    args = parser.parse_args()
    sizes = [int(x) for x in args.journal.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="coldstation-sign-bench-") as tmp:
        state = Path(tmp) / "appliance"
        cli(state, "init", "--demo", pins=[*PINS.values(), "ad11", "ad22"])
        two = ["--officers", "officer-1,officer-2"]
        cli(state, "keygen", "hot", *two, pins=["1111", "2222"])
        cli(state, "export-wallet", "hot", "--out", str(Path(tmp) / "x"), *two,
            pins=["1111", "2222"])
        with Appliance(state) as appliance:
            pubkey = next(k.public_key_bytes for k in appliance.keystore.key_infos()
                          if k.label == "hot")
        for size in sizes:
            fill_journal(state, size)
            totals, approvals = [], []
            for _ in range(args.runs):
                total, approval = one_run(state, pubkey, args.inputs)
                totals.append(total)
                approvals.append(approval)
            rows.append((size, statistics.median(totals), statistics.median(approvals),
                         (state / "journal.log").stat().st_size))
        cold = statistics.median(tui_cold_start(state) for _ in range(3))
    print(f"Signing ceremony, {args.inputs}-input 2-output PSBT, SoftHSM2, median of "
          f"{args.runs} runs, station opened afresh each run")
    print(f"  {'journal records':>16} {'journal MB':>11} {'last QR part -> signed QR':>26} "
          f"{'approvals (2 officers)':>23}")
    for size, total, approval, size_bytes in rows:
        verdict = "" if size != 10_000 else ("  OK" if total < TARGET else "  OVER")
        print(f"  {size:>16,} {size_bytes / 1e6:>11.1f} {total * 1000:>23.0f} ms "
              f"{approval * 1000:>20.0f} ms{verdict}")
    if len(rows) >= 2 and rows[0][1] > 0:
        import math

        first, last = rows[0], rows[-1]
        slope = math.log(last[1] / first[1]) / math.log(last[0] / first[0])
        print(f"  fitted exponent (time ~ records^k): k = {slope:.2f}; target < "
              f"{TARGET * 1000:.0f} ms at 10,000 records")
    verdict = "OK" if cold < TUI_TARGET else "OVER"
    print(f"  TUI cold start to Home screen    {cold * 1000:7.0f} ms (median of 3; target "
          f"< {TUI_TARGET * 1000:.0f} ms: {verdict})")


if __name__ == "__main__":
    main()
