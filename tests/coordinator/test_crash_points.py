"""SIGKILL at every point of ``batch import``, ``batch broadcast`` and ``sync``.

The real command line runs as a child process against the real regtest node and kills
itself (SIGKILL: no clean-up, as a power cut) at a named point between two effects
(``online_coordinator.faults``; ``store.commit:N`` is the N-th commit, killed before it
is durable). Afterwards: the database is sound, no broadcast the node has is missing from
it, a rerun converges, sync raises no alert, and the payee is paid exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from online_coordinator.faults import CRASH_VARIABLE
from tests.coordinator.conftest import Desk
from tests.coordinator.softappliance import SoftAppliance
from tests.coordinator.test_broadcast_faults import (
    AMOUNT,
    alerts,
    broadcast_rows,
    settle_and_check_paid_once,
    signed_batch,
    status_of,
)
from tests.coordinator.test_flow import create, funded_single, payee

REPO = Path(__file__).resolve().parents[2]


def crash(desk: Desk, point: str, *args: str) -> None:
    """Run the coordinator CLI in a child process that SIGKILLs itself at ``point``."""
    command = [
        sys.executable,
        "-m",
        "online_coordinator.cli",
        *args[:2],
        "--state",
        str(desk.state),
        *args[2:],
    ]
    env = {**os.environ, CRASH_VARIABLE: point}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, (point, done.returncode, done.stderr)


def assert_sound(desk: Desk) -> None:
    """Integrity holds, and whatever the node has of ours is in the broadcast records."""
    with desk.store() as store:
        assert store.check_integrity() == []
    recorded = {r["txid"] for r in broadcast_rows(desk)}
    assert set(desk.node.mempool()) <= recorded, "a broadcast the node has is not recorded"
    assert len(recorded) <= 1


BROADCAST_POINTS = [
    ("store.commit:2", False),  # the intent's commit: not durable, nothing sent
    ("broadcast.intent", False),  # intent durable, the node not asked
    ("store.commit:3", False),  # the attempt's commit: not durable
    ("broadcast.attempt", False),  # attempt counted, sendrawtransaction not called
    ("broadcast.sent", True),  # the node accepted it, nothing recorded yet
    ("store.commit:4", True),  # recording it: not durable
    ("broadcast.recorded", True),  # all recorded, killed before printing
]


@pytest.mark.parametrize(("point", "sent"), BROADCAST_POINTS)
def test_sigkill_during_broadcast(desk: Desk, point: str, sent: bool) -> None:
    signed_batch(desk)
    crash(desk, point, "batch", "broadcast", "b1")
    assert_sound(desk)
    assert bool(desk.node.mempool()) is sent
    rows = broadcast_rows(desk)
    if point == "store.commit:2":
        assert rows == [] and status_of(desk)["state"] == "signed"
    else:
        assert rows[0]["state"] in ("sending", "mempool")
    if sent:
        assert desk.run("batch", "cancel", "b1").code == 2  # the payment may be out there
    again = desk.run("batch", "broadcast", "b1")
    assert again.code == 0, again.err
    assert desk.node.mempool() == [broadcast_rows(desk)[0]["txid"]]
    settle_and_check_paid_once(desk)


IMPORT_POINTS = ["import.verified", "store.commit:2", "import.recorded"]


@pytest.mark.parametrize("point", IMPORT_POINTS)
def test_sigkill_during_import(desk: Desk, point: str) -> None:
    appliance = SoftAppliance("cold-1")
    funded_single(desk, appliance)
    request = create(desk, "b1", [(payee(1), AMOUNT, "INV-1")])
    signed = desk.write("signed.psbt", appliance.sign(request.read_bytes()))
    crash(desk, point, "batch", "import", "b1", signed)
    with desk.store() as store:
        assert store.check_integrity() == []
        kept = store.one("SELECT COUNT(*) AS n FROM responses")["n"]
    assert kept == (1 if point == "import.recorded" else 0)
    again = desk.ok("batch", "import", "b1", signed)
    assert "complete: ready to broadcast" in again
    assert ("counted once" in again) is (point == "import.recorded")
    with desk.store() as store:
        assert store.one("SELECT COUNT(*) AS n FROM responses")["n"] == 1
        assert store.one("SELECT COUNT(*) AS n FROM receipts")["n"] == 1
    desk.ok("batch", "broadcast", "b1")
    settle_and_check_paid_once(desk)


SYNC_POINTS = [
    "store.commit:2",  # undoing the reorg: not durable
    "sync.block",  # the first group of new blocks walked and committed
    "sync.coins",
    "sync.resend",  # re-send counted, the node not asked
    "sync.resent",  # the node took it back, not recorded yet
    "sync.settled",
]


@pytest.mark.parametrize("point", SYNC_POINTS)
def test_sigkill_during_sync_after_a_reorg(desk: Desk, point: str) -> None:
    signed_batch(desk)
    desk.ok("batch", "broadcast", "b1")
    txid = broadcast_rows(desk)[0]["txid"]
    desk.node.mine(1)
    desk.ok("sync")
    desk.node.reorg(1)  # our block is replaced and the node forgets the transaction
    assert desk.node.mempool() == []
    crash(desk, point, "sync")
    assert_sound(desk)
    result = desk.run("sync")
    assert result.code == 0 and "ALERT" not in result.out, result.out
    assert desk.node.mempool() == [txid] and alerts(desk) == []
    settle_and_check_paid_once(desk)
