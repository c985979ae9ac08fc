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
from dataclasses import dataclass
from pathlib import Path

from appliance.appliance import Appliance
from appliance.signing import SigningSession
from shared.adapters.receiver import QrReceiver
from shared.bitcoin.address import Network, address_to_script
from shared.bitcoin.script import p2wpkh_script
from shared.bitcoin.tx import SEQUENCE_RBF, OutPoint, Transaction, TxIn, TxOut
from shared.psbt import Psbt
from shared.qr.presets import FAST
from shared.request import RequestMetadata, attach_request
from shared.ur.registry import decode_psbt, encode_psbt
from shared.ur.ur import UR, UREncoder
from tests.bench.growth import fitted_exponent

EXE = str(Path(sys.executable).with_name("coldstation-appliance"))
PINS = {"officer-1": "1111", "officer-2": "2222", "officer-3": "3333"}
TARGET = 0.5
TUI_TARGET = 1.5


def cli(state: Path, *args: str, pins: list[str]) -> None:
    read, write = os.pipe()
    os.write(write, "".join(f"{p}\n" for p in pins).encode())
    os.close(write)
    done = subprocess.run(
        [EXE, "--state", str(state), "--pin-fd", str(read), *args],
        pass_fds=(read,),
        capture_output=True,
        text=True,
        check=False,
    )
    os.close(read)
    if done.returncode:
        raise SystemExit(f"{args[0]} failed: {done.stderr}")


def make_request(pubkey: bytes, inputs: int) -> bytes:
    ours = p2wpkh_script(pubkey)
    payee = address_to_script("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080", Network.REGTEST)
    fundings = [
        Transaction(
            inputs=[TxIn(OutPoint(os.urandom(32), 0), b"\x51")], outputs=[TxOut(100_000, ours)]
        )
        for _ in range(inputs)
    ]
    total = 100_000 * inputs
    spend = Transaction(
        inputs=[TxIn(OutPoint(f.txid, 0), sequence=SEQUENCE_RBF) for f in fundings],
        outputs=[TxOut(total // 2, payee), TxOut(total // 2 - 20_000, ours)],
    )
    psbt = Psbt.from_unsigned_tx(spend)
    for i, funding in enumerate(fundings):
        psbt.inputs[i].set(0x00, funding.serialize())
        psbt.inputs[i].set(0x01, funding.outputs[0].serialize())
    now = int(time.time())
    meta = RequestMetadata(
        request_id=os.urandom(16),
        batch_id="bench",
        requester="ops",
        created=now - 5,
        expiry=now + 3600,
        purpose="bench",
        network="regtest",
    )
    return attach_request(psbt, meta).serialize()


@dataclass
class Run:
    wall: float  # last QR part -> signed QR drawn, officers' approvals excluded
    open: float  # of it, opening the station (the TUI does this once, at start)
    approvals: float  # the machine work of two officers' approvals
    cpu: float  # CPU of open + load + review + approvals + sign (the measure)


def one_run(state: Path, pubkey: bytes, inputs: int) -> Run:
    data = make_request(pubkey, inputs)
    receiver = QrReceiver()
    encoder = UREncoder(UR("crypto-psbt", encode_psbt(data)), FAST.max_fragment_len)
    parts = [encoder.next_part() for _ in range(encoder.seq_len)]
    for part in parts[:-1]:
        receiver.feed_text(part)
    start, cpu_start = time.perf_counter(), time.process_time()
    appliance = Appliance(state)  # a ceremony opens the station: verified from its checkpoint
    opened = time.perf_counter() - start
    assert not appliance.problems, appliance.problems
    session = SigningSession(appliance)
    receiver.feed_text(parts[-1])
    assert receiver.result is not None
    # the TUI's scan screen hands the PSBT bytes straight to the session (one parse)
    review = session.load(decode_psbt(receiver.result.cbor))
    assert review is not None and review.approved_for_signing, review and review.refusals
    review_done = time.perf_counter()
    for label in ("officer-1", "officer-2"):
        session.approve(label, PINS[label])
    approvals = time.perf_counter() - review_done
    result = session.sign()
    cpu = time.process_time() - cpu_start
    signed = UREncoder(UR("crypto-psbt", encode_psbt(result.psbt_bytes)), FAST.max_fragment_len)
    FAST.renderer().image(signed.next_part().upper())
    total = time.perf_counter() - start - approvals
    appliance.close()
    return Run(wall=total, open=opened, approvals=approvals, cpu=cpu)


def raw_hsm(state: Path, count: int) -> float:
    """Seconds for the signing token alone to make ``count`` signatures (the floor)."""
    with (
        Appliance(state) as appliance,
        appliance.activated([("officer-1", "1111"), ("officer-2", "2222")]),
    ):
        label = next(k.label for k in appliance.keystore.key_infos() if k.label == "hot")
        digests = [os.urandom(32) for _ in range(count)]
        start = time.perf_counter()
        for digest in digests:
            appliance.keystore.sign_digest(label, digest)
        return time.perf_counter() - start


def fill_journal(state: Path, records: int) -> None:
    """Append signed approval records until the journal holds ``records`` (bench only: one
    activation, records sealed by the audit key and folded as the station does, one anchor
    and one checkpoint at the end instead of one anchor per record)."""
    from shared.journal import Record, outpoints_digest, seal

    with (
        Appliance(state) as appliance,
        appliance.activated([("officer-1", "1111"), ("officer-2", "2222")]) as act,
    ):
        recorder, keystore = appliance.recorder, appliance.keystore
        approvals = {fp: os.urandom(70) for fp in act.actors}
        batch: list[bytes] = []
        while recorder.state.length < records:
            head = recorder.state
            txid = os.urandom(32)
            outpoints = [OutPoint(os.urandom(32), i) for i in range(2)]
            record = Record(
                seq=head.seq + 1,
                prev_hash=head.head,
                time=int(time.time()),
                appliance_id=appliance.config.appliance_id,
                event="signing_decision",
                actors=act.actors,
                decision="approved",
                subjects={
                    "psbt": os.urandom(32),
                    "transcript": os.urandom(32),
                    "request": os.urandom(32),
                },
                details={
                    "txid": txid.hex(),
                    "inputs": 2,
                    "outpoints_sha256": outpoints_digest(outpoints).hex(),
                    "refusals": [],
                    "request_id": os.urandom(16),
                    "paid_out": 0,
                    "fee": 500,
                    "approvals": approvals,
                    "quorum": 2,
                    "signatures": 2,
                },
            )
            entry = seal(record, keystore.sign_audit_digest)
            head.apply(record, record.hash(), outpoints)
            batch.append(entry.to_bytes())
            if len(batch) == 1_000:
                recorder.store.append_many(batch)
                batch.clear()
        recorder.store.append_many(batch)
        recorder.anchor()
        recorder.checkpoint(force=True)


COLD_START = """
import asyncio, sys, time
start = float(sys.argv[2])
from appliance.appliance import Appliance
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
    done = subprocess.run(
        [sys.executable, "-c", COLD_START, str(state), str(time.time())],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def _median(runs: list[Run], name: str) -> float:
    if name == "ceremony":
        return statistics.median(run.wall - run.open for run in runs)
    return statistics.median(getattr(r, name) for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--journal",
        default="100,1000,10000",
        help="journal sizes (records before the ceremony), comma separated; "
        "add 100000 for the issue-14 target (filling takes minutes)",
    )
    parser.add_argument(
        "--input-growth",
        default="100,1000,max",
        help="inputs per request for the second table ('max': the most "
        "P2WPKH inputs Core's standard weight allows)",
    )
    args = parser.parse_args()
    sizes = [int(x) for x in args.journal.split(",")]
    with tempfile.TemporaryDirectory(prefix="coldstation-sign-bench-") as tmp:
        state = Path(tmp) / "appliance"
        cli(state, "init", "--demo", pins=[*PINS.values(), "ad11", "ad22"])
        two = ["--officers", "officer-1,officer-2"]
        cli(state, "keygen", "hot", *two, pins=["1111", "2222"])
        cli(
            state,
            "export-wallet",
            "hot",
            "--out",
            str(Path(tmp) / "x"),
            *two,
            pins=["1111", "2222"],
        )
        with Appliance(state) as appliance:
            pubkey = next(
                k.public_key_bytes for k in appliance.keystore.key_infos() if k.label == "hot"
            )
        journal_rows = []
        for size in sizes:
            fill_journal(state, size)
            runs = [one_run(state, pubkey, args.inputs) for _ in range(args.runs)]
            journal_rows.append((size, runs, (state / "journal.log").stat().st_size))
        input_rows = []
        for text in args.input_growth.split(","):
            count = max_inputs(pubkey) if text == "max" else int(text)
            runs = [one_run(state, pubkey, count) for _ in range(max(1, args.runs // 2))]
            floor = statistics.median(raw_hsm(state, count) for _ in range(2))
            input_rows.append((count, runs, floor))
        cold = statistics.median(tui_cold_start(state) for _ in range(3))
    print(
        f"Signing ceremony, {args.inputs}-input 2-output PSBT, SoftHSM2, median of "
        f"{args.runs} runs, station opened afresh each run"
    )
    print(
        f"  {'journal records':>16} {'MB':>6} {'QR part -> signed QR':>21} "
        f"{'approvals':>10} {'CPU open..sign':>15}"
    )
    for size, runs, size_bytes in journal_rows:
        print(
            f"  {size:>16,} {size_bytes / 1e6:>6.1f} {_median(runs, 'wall') * 1000:>18.0f} ms "
            f"{_median(runs, 'approvals') * 1000:>7.0f} ms {_median(runs, 'cpu') * 1000:>12.0f}"
            " ms"
        )
    if len(journal_rows) >= 2:
        cpu = [(size, _median(runs, "cpu")) for size, runs, _ in journal_rows]
        print(
            f"  fitted exponent of CPU in journal records: {fitted_exponent(cpu):.2f} (target: "
            "independent of the journal; < 500 ms wall at 10,000, <= 250 ms CPU at 100,000)"
        )
    print(
        "Inputs per request (journal as above), against the signing token alone; the "
        "ceremony from the last QR part to the signed QR drawn, on an open station (the "
        "TUI opens it once), approvals' machine work excluded"
    )
    print(f"  {'inputs':>8} {'ceremony':>10} {'raw HSM':>10} {'ratio':>6} {'+ open':>8}")
    for count, runs, floor in input_rows:
        wall = _median(runs, "ceremony")
        print(
            f"  {count:>8,} {wall * 1000:>7.0f} ms {floor * 1000:>7.0f} ms "
            f"{wall / floor:>6.2f} {_median(runs, 'open') * 1000:>5.0f} ms"
        )
    if len(input_rows) >= 2:
        growth = [(count, _median(runs, "ceremony")) for count, runs, _ in input_rows]
        print(
            f"  fitted exponent in inputs: {fitted_exponent(growth):.2f} (target: linear, "
            "within 1.3x the raw HSM time at the standard maximum)"
        )
    verdict = "OK" if cold < TUI_TARGET else "OVER"
    print(
        f"TUI cold start to Home screen {cold * 1000:.0f} ms (median of 3; target "
        f"< {TUI_TARGET * 1000:.0f} ms: {verdict})"
    )


def max_inputs(pubkey: bytes) -> int:
    """The most inputs of the bench's request shape within MAX_STANDARD_TX_WEIGHT."""
    from shared.bitcoin.size import MAX_STANDARD_TX_WEIGHT, P2WPKH_SHAPE, estimate_weight

    ours = p2wpkh_script(pubkey)
    outputs = [
        TxOut(
            1, address_to_script("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080", Network.REGTEST)
        ),
        TxOut(1, ours),
    ]
    count = 1
    while True:
        tx = Transaction(
            inputs=[TxIn(OutPoint(bytes(32), i)) for i in range(count + 1)], outputs=outputs
        )
        if estimate_weight(tx, [P2WPKH_SHAPE] * (count + 1)) > MAX_STANDARD_TX_WEIGHT:
            return count
        count += 1


if __name__ == "__main__":
    main()
