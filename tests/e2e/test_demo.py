"""``make demo`` in CI: the demo runs start to finish into a temporary directory, as a
separate process exactly as ``make demo`` runs it, and its summary names what it achieved.

Why a test and not only the Makefile target: a demo nobody runs rots silently; here any step
that regresses in any of the three programs turns the suite red with the failing command.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

from shared.bitcoin.address import Network, script_to_address
from tests.e2e.demo import PAYOUTS_CSV

REPO = Path(__file__).resolve().parents[2]
BUDGET = 180  # seconds: the limit for the whole demo on a 2-core machine


def test_payees_are_keys_nobody_holds() -> None:
    """The shipped CSV pays the documented hash-derived addresses, nothing else."""
    rows = PAYOUTS_CSV.read_text().splitlines()[1:]
    for n, row in enumerate(rows, start=1):
        program = hashlib.sha256(f"coldstation demo payee {n}".encode()).digest()[:20]
        assert row.split(",")[0] == script_to_address(b"\x00\x14" + program, Network.REGTEST)
    assert 5 <= len(rows) <= 10


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    demo_dir = tmp_path / "demo dir"  # a space: every path must survive quoting
    done = subprocess.run(
        [sys.executable, "-m", "tests.e2e.demo", "--dir", str(demo_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=BUDGET + 60,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    summary = out[out.index("== Coldstation demo complete") :]
    seconds = float(re.search(r"complete in ([0-9.]+) s", summary).group(1))
    assert seconds < BUDGET, summary
    txids = re.findall(r"txid ([0-9a-f]{64})", summary)
    assert len(set(txids)) == 2, summary
    assert summary.count("6 confirmations") == 2, summary
    assert "audit report:" in summary
    for phase in ("1c. payout batch", "2c. vault batch", "3. evidence"):
        assert phase in summary
    assert (demo_dir / "evidence" / "coordinator.json").is_file()
    for name in ("a", "b"):
        assert (demo_dir / "evidence" / name / "journal.cbor").is_file()
    assert not (demo_dir / "regtest" / "regtest.json").exists(), "the node was left running"
