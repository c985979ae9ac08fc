"""Batches fail closed: bad CSVs write nothing, two processes never share a coin, and a
SIGKILL in the middle of building leaves the database consistent."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from online_coordinator.store import Store
from shared.psbt.model import Psbt
from tests.coordinator.conftest import Desk
from tests.coordinator.softappliance import SoftAppliance
from tests.coordinator.test_flow import BTC, csv_for, funded_single, payee

REPO = Path(__file__).resolve().parents[2]
#: Run on SQLite and PostgreSQL (tests/coordinator/conftest.py): no coin in two requests
#: under concurrent writers, and a consistent store after SIGKILL.
BOTH_STORES = frozenset(
    {
        "test_two_processes_at_once_never_select_the_same_coin",
        "test_eight_workers_build_batches_from_one_wallet_and_share_no_coin",
        "test_sigkill_while_building_leaves_the_database_consistent",
    }
)
TESTNET_ADDRESS = "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"


def counts(store: Store) -> tuple[int, int, int]:
    batches = store.one("SELECT COUNT(*) AS n FROM batches")["n"]
    requests = store.one("SELECT COUNT(*) AS n FROM requests")["n"]
    locked = store.one("SELECT COUNT(*) AS n FROM utxos WHERE state = 'locked'")["n"]
    return batches, requests, locked


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([(TESTNET_ADDRESS, "0.1", "A")], ["line 2", "testnet"]),
        ([(payee(1), "-0.1", "A")], ["line 2", "negative"]),
        ([(payee(1), "0.123456789", "A")], ["line 2", "8 decimal"]),
        ([(payee(1), "0.1", "A"), (payee(2), "0.1", "A")], ["line 2", "line 3", "reference"]),
        ([(payee(1), "0.1", "A"), (payee(1), "0.2", "B")], ["line 2", "line 3", "address"]),
        ([(payee(1), "0.00000100", "A")], ["line 2", "dust"]),
        ([(payee(1), "1000", "A")], ["insufficient"]),
    ],
)
def test_bad_csv_is_refused_with_line_numbers_and_nothing_written(
    desk: Desk, rows: list, expected: list[str]
) -> None:
    funded_single(desk, SoftAppliance("cold-1"))
    csv = desk.write("bad.csv", csv_for(*rows))
    result = desk.run("batch", "create", "treasury", csv, "--label", "x", "--purpose", "p")
    assert result.code == 2, result.out
    for text in expected:
        assert text in result.err.lower() or text in result.err, result.err
    with desk.store() as store:
        assert counts(store) == (0, 0, 0)


def test_every_bad_row_is_reported_at_once(desk: Desk) -> None:
    funded_single(desk, SoftAppliance("cold-1"))
    rows = [(payee(1), "-1", "A"), (payee(2), "0.1", "B"), (TESTNET_ADDRESS, "0.1", "C")]
    result = desk.run(
        "batch",
        "create",
        "treasury",
        desk.write("bad.csv", csv_for(*rows)),
        "--label",
        "x",
        "--purpose",
        "p",
    )
    assert result.code == 2 and "line 2" in result.err and "line 4" in result.err


def test_empty_and_huge_files_are_refused(desk: Desk) -> None:
    funded_single(desk, SoftAppliance("cold-1"))
    empty = desk.write("empty.csv", b"")
    result = desk.run("batch", "create", "treasury", empty, "--label", "x", "--purpose", "p")
    assert result.code == 2 and "no payouts" in result.err
    huge = desk.tmp / "huge.csv"
    with huge.open("wb") as handle:  # 1 GB, sparse: refused by size before being read
        handle.truncate(1 << 30)
    started = time.monotonic()
    result = desk.run("batch", "create", "treasury", str(huge), "--label", "x", "--purpose", "p")
    assert result.code == 2 and "limit" in result.err
    assert time.monotonic() - started < 5
    with desk.store() as store:
        assert counts(store) == (0, 0, 0)


def _spent_outpoints(store: Store) -> list[str]:
    outpoints = []
    for row in store.all("SELECT unsigned_psbt FROM requests"):
        psbt = Psbt.parse(bytes(row["unsigned_psbt"]))
        outpoints += [str(txin.prevout) for txin in psbt.unsigned_tx.inputs]
    return outpoints


def test_two_processes_at_once_never_select_the_same_coin(desk: Desk) -> None:
    funded_single(desk, SoftAppliance("cold-1"), coins=6, sats=BTC)
    commands = []
    for n in range(4):  # 4 batches of 1.5 BTC each need 2 coins each: at most 3 fit in 6
        csv = desk.write(f"c{n}.csv", csv_for((payee(n), "1.5", f"R{n}")))
        commands.append(
            [
                sys.executable,
                "-m",
                "online_coordinator.cli",
                "batch",
                "create",
                "--state",
                str(desk.state),
                "treasury",
                csv,
                "--label",
                f"c{n}",
                "--purpose",
                "p",
                "--out",
                str(desk.tmp / "out"),
            ]
        )
    processes = [
        subprocess.Popen(c, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    results = [(p.wait(60), p.stderr.read() if p.stderr else "") for p in processes]
    successes = [code for code, _ in results if code == 0]
    assert len(successes) == 3, results
    assert all("insufficient" in err for code, err in results if code != 0)
    with desk.store() as store:
        spent = _spent_outpoints(store)
        assert len(spent) == len(set(spent)) == 6
        assert store.check_integrity() == []


BUILDER = """
import sys
from pathlib import Path
from online_coordinator.batch import build_request
from online_coordinator.config import load_config
from online_coordinator.store import Store
from online_coordinator.wallet import load_wallet
state, csv = Path(sys.argv[1]), Path(sys.argv[2]).read_bytes()
store = Store.open(load_config(state).database)
wallet = load_wallet(store, "treasury")
print("ready", flush=True)
n = 0
while True:
    n += 1
    try:
        build_request(store, wallet, csv, label=f"k{sys.argv[3]}-{n}", purpose="p",
                      requester="ops", fee_rate=1000, tip=200, expiry_seconds=3600)
    except Exception as exc:
        print(exc, flush=True)
        break
"""


def test_eight_workers_build_batches_from_one_wallet_and_share_no_coin(desk: Desk) -> None:
    """Issue 19: 8 processes build batches from one wallet at once, each until the coins
    run out; every coin is in at most one request, and every request holds its own."""
    # a key pool with a fresh change address for every batch
    funded_single(desk, SoftAppliance("cold-1", pool=24), coins=16, sats=BTC // 10)
    csv = desk.write("k.csv", csv_for((payee(1), "0.05", "R1")))
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", BUILDER, str(desk.state), csv, f"w{n}"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(8)
    ]
    outputs = [w.communicate(timeout=300) for w in workers]
    for out, err in outputs:
        assert out.splitlines()[0] == "ready" and "insufficient" in out, (out, err)
    with desk.store() as store:
        batches, requests, locked = counts(store)
        assert batches == requests == 16 and locked == 16  # one 0.1 BTC coin each
        spent = _spent_outpoints(store)
        assert len(spent) == len(set(spent)) == 16
        held = store.all("SELECT request_id, COUNT(*) AS n FROM utxos GROUP BY request_id")
        assert all(row["n"] == 1 for row in held if row["request_id"] is not None)
        assert store.check_integrity() == []


def test_sigkill_while_building_leaves_the_database_consistent(desk: Desk) -> None:
    funded_single(desk, SoftAppliance("cold-1"), coins=60, sats=BTC // 10)
    csv = desk.write("k.csv", csv_for((payee(1), "0.05", "R1")))
    rng = random.Random(6)
    for round_ in range(8):
        child = subprocess.Popen(
            [sys.executable, "-c", BUILDER, str(desk.state), csv, str(round_)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.15))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    with desk.store() as store:
        assert store.check_integrity() == []
        batches, requests, locked = counts(store)
        assert batches == requests > 0
        rows = store.all("SELECT r.id, r.unsigned_psbt FROM requests r")
        for row in rows:
            inputs = {
                str(t.prevout) for t in Psbt.parse(bytes(row["unsigned_psbt"])).unsigned_tx.inputs
            }
            held = {
                f"{r['txid']}:{r['vout']}"
                for r in store.all("SELECT txid, vout FROM utxos WHERE request_id = ?", row["id"])
            }
            assert inputs == held
        assert locked == len(_spent_outpoints(store))
