"""A full disk under the coordinator's state: one line saying what was and was not done,
exit status 5, no traceback, and the same command converges once there is space.

Two ways to fill the disk, each test runs with both where it can:

* ``tmpfs``: the state directory lives on a 16 MiB tmpfs and a filler file takes every
  free byte (SQLite then really fails with "database or disk is full", or "disk I/O
  error" when its shared-memory file cannot grow); needs root to mount, skipped otherwise;
* ``injected``: every commit fails as SQLite fails on a full disk, from the fault point
  just before COMMIT (``online_coordinator.faults``); runs everywhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from online_coordinator import faults
from online_coordinator.config import write_config
from online_coordinator.regtest.node import RegtestNode
from online_coordinator.regtest.server import start_in_thread
from tests.coordinator.conftest import Desk
from tests.coordinator.softappliance import SoftAppliance
from tests.coordinator.test_broadcast_faults import (
    AMOUNT,
    broadcast_rows,
    settle_and_check_paid_once,
    signed_batch,
    status_of,
)
from tests.coordinator.test_flow import create, csv_for, funded_single, payee

DISK_BYTES = 16 * 1024 * 1024


class Disk:
    """Fill and free the disk under the coordinator's state directory."""

    def __init__(self, mode: str, mount: Path) -> None:
        self.mode = mode
        self.mount = mount
        self._stack = contextlib.ExitStack()

    def fill(self) -> None:
        if self.mode == "injected":
            self._stack.enter_context(faults.hooked("store.commit", _disk_full))
            return
        with (self.mount / "filler").open("ab", buffering=0) as filler:
            for chunk in (1 << 20, 1 << 12, 1):
                with contextlib.suppress(OSError):
                    while True:
                        filler.write(bytes(chunk))
        assert os.statvfs(self.mount).f_bavail == 0

    def free(self) -> None:
        self._stack.close()
        (self.mount / "filler").unlink(missing_ok=True)


def _disk_full() -> None:
    raise sqlite3.OperationalError("database or disk is full")


def _mount_tmpfs(where: Path) -> bool:
    if os.geteuid() != 0:
        return False
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@pytest.fixture(params=["tmpfs", "injected"])
def full(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Desk, Disk]]:
    mount = tmp_path / "disk"
    if request.param == "tmpfs" and not _mount_tmpfs(mount):
        pytest.skip("a tmpfs needs root; the injected variant covers this test")
    mount.mkdir(exist_ok=True)
    node = RegtestNode(tmp_path / "regtest")
    server = start_in_thread(node)
    disk = Disk(request.param, mount)
    try:
        state = mount / "coordinator"
        write_config(state, "regtest", (server.url, Path(server.cookie_path)))
        yield Desk(state, node, tmp_path), disk
    finally:
        disk.free()
        server.shutdown()
        node.close()
        if request.param == "tmpfs":
            subprocess.run(["umount", str(mount)], check=False)


def assert_one_line(result_err: str, *expected: str) -> None:
    errors = [line for line in result_err.splitlines() if not line.startswith("warning: ")]
    assert "Traceback" not in result_err and len(errors) == 1, result_err
    assert "free some space, then run the command again" in result_err
    for text in expected:
        assert text in result_err, result_err


def test_create_on_a_full_disk_creates_nothing(full: tuple[Desk, Disk]) -> None:
    desk, disk = full
    funded_single(desk, SoftAppliance("cold-1"))
    csv = desk.write("p.csv", csv_for((payee(1), AMOUNT, "INV-1")))
    args = (
        "batch",
        "create",
        "treasury",
        csv,
        "--label",
        "b1",
        "--purpose",
        "p",
        "--out",
        str(desk.tmp / "req"),
    )
    disk.fill()
    result = desk.run(*args)
    assert result.code == 5
    assert_one_line(result.err, "nothing was")
    disk.free()
    with desk.store() as store:
        assert store.one("SELECT COUNT(*) AS n FROM batches")["n"] == 0
        assert store.one("SELECT COUNT(*) AS n FROM utxos WHERE state = 'locked'")["n"] == 0
    desk.ok(*args)


def test_request_files_on_a_full_disk_say_the_batch_exists(full: tuple[Desk, Disk]) -> None:
    desk, disk = full
    if disk.mode == "injected":
        pytest.skip("request files are plain files: only a real full disk fails them")
    funded_single(desk, SoftAppliance("cold-1"))
    csv = desk.write("p.csv", csv_for((payee(1), AMOUNT, "INV-1")))
    out = disk.mount / "requests"
    args = (
        "batch",
        "create",
        "treasury",
        csv,
        "--label",
        "b1",
        "--purpose",
        "p",
        "--out",
        str(out),
    )
    with faults.hooked("create.recorded", disk.fill):
        result = desk.run(*args)
    assert result.code == 5
    assert_one_line(result.err, "batch b1 IS created and recorded", "batch export b1")
    disk.free()
    desk.ok("batch", "export", "b1", "--out", str(out))
    assert (out / "b1.psbt").stat().st_size > 0


def test_import_on_a_full_disk_records_nothing(full: tuple[Desk, Disk]) -> None:
    desk, disk = full
    appliance = SoftAppliance("cold-1")
    funded_single(desk, appliance)
    request = create(desk, "b1", [(payee(1), AMOUNT, "INV-1")])
    signed = desk.write("signed.psbt", appliance.sign(request.read_bytes()))
    disk.fill()
    result = desk.run("batch", "import", "b1", signed)
    assert result.code == 5
    assert_one_line(result.err)
    assert "not recorded" in result.err or "nothing was changed" in result.err
    disk.free()
    assert "complete" in desk.ok("batch", "import", "b1", signed)


def test_broadcast_on_a_full_disk_sends_nothing(full: tuple[Desk, Disk]) -> None:
    desk, disk = full
    signed_batch(desk)
    disk.fill()
    result = desk.run("batch", "broadcast", "b1")
    assert result.code == 5
    assert_one_line(result.err, "nothing was")
    assert desk.node.mempool() == []
    disk.free()
    assert broadcast_rows(desk) == []
    desk.ok("batch", "broadcast", "b1")
    settle_and_check_paid_once(desk)


def test_disk_full_after_the_node_accepted_the_payment(full: tuple[Desk, Disk]) -> None:
    """The issue's case: sent, then the disk filled at the commit. Sync records it later."""
    desk, disk = full
    signed_batch(desk)
    with faults.hooked("broadcast.sent", disk.fill):
        result = desk.run("batch", "broadcast", "b1")
    assert result.code == 5
    assert_one_line(result.err, "IS at the node", "run `sync` when there is space")
    disk.free()
    (row,) = broadcast_rows(desk)
    assert desk.node.mempool() == [row["txid"]] and row["state"] == "sending"
    out = desk.ok("sync")
    assert "1 found in the mempool" in out and "ALERT" not in out
    assert status_of(desk)["state"] == "in_mempool"
    settle_and_check_paid_once(desk)


def test_sync_on_a_full_disk_keeps_what_it_walked(full: tuple[Desk, Disk]) -> None:
    desk, disk = full
    signed_batch(desk)
    desk.ok("batch", "broadcast", "b1")
    desk.node.mine(3)
    with faults.hooked("sync.block", disk.fill):
        result = desk.run("sync")
    assert result.code == 5
    assert_one_line(result.err, "sync stopped part way", "run sync again")
    disk.free()
    out = desk.ok("sync")
    assert "ALERT" not in out
    shown = json.loads(desk.ok("status", "b1", "--json"))
    assert shown["batches"][0]["state"] == "confirmed" and shown["alerts"] == []
