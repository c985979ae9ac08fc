"""Benchmark: from the last QR part received to the signed QR ready, on SoftHSM2.

A 100-input, 2-output request paying from the appliance's own HSM key is carried as UR
parts; the clock starts when the last part is handed to the receiver and stops when the
first frame of the signed PSBT's animated QR is rendered. The officers' PIN entry is human
time and not counted; the machine work of their approvals (token login, key challenge,
approval signature) is shown on its own line. Target: under 0.5 s. Also the TUI's cold
start: a fresh process to the Home screen drawn; target under 1.5 s. Prints figures only.

    python -m tests.bench.sign_bench [--inputs 100]
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


def one_run(appliance: Appliance, pubkey: bytes, inputs: int) -> tuple[float, float]:
    data = make_request(pubkey, inputs)
    receiver = QrReceiver()
    encoder = UREncoder(UR("crypto-psbt", encode_psbt(data)), FAST.max_fragment_len)
    parts = [encoder.next_part() for _ in range(encoder.seq_len)]
    for part in parts[:-1]:
        receiver.feed_text(part)
    session = SigningSession(appliance)
    start = time.perf_counter()
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
    return total, approvals


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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="coldstation-sign-bench-") as tmp:
        state = Path(tmp) / "appliance"
        cli(state, "init", "--demo", pins=[*PINS.values(), "ad11", "ad22"])
        two = ["--officers", "officer-1,officer-2"]
        cli(state, "keygen", "hot", *two, pins=["1111", "2222"])
        cli(state, "export-wallet", "hot", "--out", str(Path(tmp) / "x"), *two,
            pins=["1111", "2222"])
        appliance = Appliance(state)
        pubkey = next(k.public_key_bytes for k in appliance.keystore.key_infos()
                      if k.label == "hot")
        totals, approvals = [], []
        for _ in range(args.runs):
            total, approval = one_run(appliance, pubkey, args.inputs)
            totals.append(total)
            approvals.append(approval)
        appliance.close()
        cold = statistics.median(tui_cold_start(state) for _ in range(3))
    median = statistics.median(totals)
    verdict = "OK" if median < TARGET else "OVER"
    print(f"Signing ceremony, {args.inputs}-input 2-output PSBT, SoftHSM2, {args.runs} runs")
    print(f"  last QR part -> signed QR ready  {median * 1000:7.0f} ms (median; target "
          f"< {TARGET * 1000:.0f} ms: {verdict})")
    print(f"  officers' approvals (machine)    {statistics.median(approvals) * 1000:7.0f} ms "
          f"for two officers (not counted above)")
    verdict = "OK" if cold < TUI_TARGET else "OVER"
    print(f"  TUI cold start to Home screen    {cold * 1000:7.0f} ms (median of 3; target "
          f"< {TUI_TARGET * 1000:.0f} ms: {verdict})")


if __name__ == "__main__":
    main()
