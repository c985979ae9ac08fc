"""Every benchmark under tests/bench runs to its table, at a small size (issue 14's figures
come from them: a bench that no longer runs reports nothing). The coordinator bench had
stopped at batch create since addresses became single-use, and nothing noticed.

Nothing here times anything: each bench is run in its own process with sizes small enough
for CI, and the test asserts it exits 0 and prints the line its figures end with.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: (bench module, its smallest meaningful arguments, a line its table prints)
BENCHES = [
    ("audit_bench", ["--sizes", "20,40", "--repeat", "1", "--workers", "1"], "fitted exponent"),
    (
        "coordinator_bench",
        ["--coins", "50,100", "--per-tx", "50", "--payouts", "5", "--idle-runs", "1"],
        "batch create",
    ),
    (
        "sign_bench",
        ["--inputs", "5", "--runs", "1", "--journal", "10,20", "--input-growth", "5,10"],
        "TUI cold start",
    ),
    ("hsm_bench", ["--signatures", "20", "--runs", "1", "--records", "20"], "exponent: hsm-key"),
    ("review_bench", ["--runs", "1"], "inputs"),
    (
        "psbt_bench",
        ["--runs-small", "1", "--runs-large", "1", "--runs-growth", "1", "--budget", "1"],
        "BIP-143 digest of every input",
    ),
    ("fountain_bench", ["--trials", "3"], ""),
    ("qr_bench", ["--trials", "2", "--preset", "fast"], ""),
    ("qr_render_bench", ["render", "--frames", "2"], ""),
    ("terminal_qr_bench", ["--fps", "5", "--message", "400"], ""),
]


@pytest.mark.parametrize(("module", "args", "expected"), BENCHES, ids=[b[0] for b in BENCHES])
def test_the_bench_runs_to_its_table(
    module: str, args: list[str], expected: str, tmp_path: Path
) -> None:
    extra = ["--cache", str(tmp_path / "cache")] if module == "audit_bench" else []
    done = subprocess.run(
        [sys.executable, "-m", f"tests.bench.{module}", *args, *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"{module}: {done.stderr[-2000:]}"
    assert done.stdout.strip(), f"{module} printed nothing"
    assert expected in done.stdout, done.stdout[-2000:]
