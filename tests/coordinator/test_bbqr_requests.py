"""Requests written as BBQr, for a COLDCARD Q cosigner (issue 17: it reads QR and BBQr, not
UR). The parts and the video are read back through Coldstation's own camera path here;
tests/interop reads the parts with Coinkite's library."""

from __future__ import annotations

import contextlib
import io

from online_coordinator.cli import main as coordinator_main
from shared.ur.bbqr import BBQrJoiner
from tests.coordinator.conftest import Desk
from tests.coordinator.softappliance import SoftAppliance
from tests.coordinator.test_flow import BTC, csv_for, funded_single, payee


def qr(*args: str) -> tuple[int, str]:
    """``coldstation-coordinator qr ...`` (no state folder): exit code and stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = coordinator_main(["qr", *args])
    assert code == 0 or "error" in err.getvalue(), err.getvalue()
    return code, err.getvalue()


def test_a_request_as_bbqr_parts_and_video_reads_back_as_the_same_psbt(desk: Desk) -> None:
    funded_single(desk, SoftAppliance("cold-1"), coins=2)
    csv = desk.write("b1.csv", csv_for((payee(1), "0.3", "INV-1")))
    out = desk.tmp / "requests"
    done = desk.ok(
        "batch", "create", "treasury", csv, "--label", "b1", "--purpose", "p",
        "--out", str(out), "--bbqr", "--video",
    )  # fmt: skip
    psbt = (out / "b1.psbt").read_bytes()
    assert "b1.bbqr.txt" in done and "b1.bbqr.avi" in done
    joiner = BBQrJoiner()
    parts = (out / "b1.bbqr.txt").read_text().split()
    assert all(p.startswith("B$ZP") for p in parts)
    for part in parts:
        joiner.add(part)
    assert joiner.result() == ("P", psbt)
    scanned = desk.tmp / "scanned.psbt"
    assert qr("scan", "--video", str(out / "b1.bbqr.avi"), "-o", str(scanned))[0] == 0
    assert scanned.read_bytes() == psbt

    again = desk.tmp / "again"
    desk.ok("batch", "export", "b1", "--out", str(again), "--bbqr")
    assert (again / "b1.bbqr.txt").read_text() == (out / "b1.bbqr.txt").read_text()


def test_qr_video_writes_bbqr_and_refuses_what_bbqr_does_not_carry(desk: Desk) -> None:
    funded_single(desk, SoftAppliance("cold-1"), coins=1, sats=BTC)
    csv = desk.write("b1.csv", csv_for((payee(1), "0.3", "INV-1")))
    out = desk.tmp / "requests"
    desk.ok(
        "batch", "create", "treasury", csv, "--label", "b1", "--purpose", "p", "--out", str(out)
    )
    video = desk.tmp / "q.avi"
    code, err = qr("video", str(out / "b1.psbt"), "--out", str(video), "--bbqr")
    assert code == 0 and "BBQr" in err
    scanned = desk.tmp / "q.psbt"
    assert qr("scan", "--video", str(video), "-o", str(scanned))[0] == 0
    assert scanned.read_bytes() == (out / "b1.psbt").read_bytes()
    code, err = qr(
        "video", str(out / "b1.psbt"), "--out", str(video), "--bbqr", "--type", "crypto-hdkey"
    )
    assert code != 0 and "BBQr carries PSBTs" in err


def test_a_request_too_big_for_bbqr_says_the_batch_is_created(tmp_path) -> None:
    """BBQr tops out at 1,295 parts; a request past that fails after the batch is recorded,
    and the message must say so (else staff retry and meet "label exists")."""
    import os

    import pytest

    from online_coordinator.commands.batch import write_request
    from online_coordinator.commands.common import CommandError
    from shared.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
    from shared.psbt import Psbt

    tx = Transaction(inputs=[TxIn(OutPoint(os.urandom(32), 0))], outputs=[TxOut(1000, b"\x51")])
    psbt = Psbt.from_unsigned_tx(tx)
    psbt.globals.set_record(b"\xfc\x05bloat\x00", os.urandom(1_500_000))  # incompressible
    with pytest.raises(CommandError, match="batch b1 IS created") as caught:
        write_request(psbt, "b1", tmp_path, False, bbqr=True, done="batch b1 IS created")
    assert "BBQr" in str(caught.value)
    assert (tmp_path / "b1.psbt").exists()  # what could be written was
