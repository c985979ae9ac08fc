"""The coordinator with a real appliance (SoftHSM2, officers' tokens, journal): the wallet
export is imported from its UR text files, the request the coordinator builds is accepted
by the appliance's own review, signed inside the HSM, and the signed PSBT with its receipt
is imported, broadcast and confirmed on the kernel-validated regtest."""

from __future__ import annotations

import json

from tests.appliance.test_ceremonies_cli import ADMIN_PINS, OFFICER_PINS, run
from tests.coordinator.conftest import Desk
from tests.coordinator.test_flow import BTC, csv_for, payee, status

TWO = ["--officers", "officer-1,officer-2"]
TWO_PINS = ["1111", "2222"]


def test_real_appliance_signs_what_the_coordinator_built(desk: Desk) -> None:
    cold = desk.tmp / "appliance"
    init = run(
        cold,
        "init",
        "--demo",
        "--network",
        "regtest",
        pins=[*OFFICER_PINS.values(), *ADMIN_PINS.values()],
    )
    assert init.returncode == 0, init.stderr
    keygen = run(cold, "keygen", "treasury-1", "--key-model", "bip32-seed", *TWO, pins=TWO_PINS)
    assert keygen.returncode == 0, keygen.stderr
    export = desk.tmp / "export"
    done = run(cold, "export-wallet", "treasury-1", "--out", str(export), *TWO, pins=TWO_PINS)
    assert done.returncode == 0, done.stderr

    out = desk.ok(
        "wallet",
        "import",
        "treasury",
        "--export",
        str(export / "wallet.ur"),
        str(export / "receipt.ur"),
    )
    fingerprint = json.loads(run(cold, "status").stdout)["audit_key_fingerprint"]
    assert f"audit key fingerprint {fingerprint}" in out  # what ops compare at the station
    address = desk.ok("wallet", "address", "treasury").split()[0]
    desk.fund(address, BTC, 2)
    desk.ok("sync")
    csv = desk.write("payouts.csv", csv_for((payee(1), "0.4", "INV-1"), (payee(2), "0.3", "INV-2")))
    desk.ok(
        "batch",
        "create",
        "treasury",
        csv,
        "--label",
        "b1",
        "--purpose",
        "payouts",
        "--out",
        str(desk.tmp / "req"),
    )

    signed = desk.tmp / "signed.psbt"
    done = run(
        cold,
        "sign",
        "--in",
        str(desk.tmp / "req" / "b1.psbt"),
        *TWO,
        "--out",
        str(signed),
        pins=TWO_PINS,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert "change (ours)" in done.stdout

    desk.ok("batch", "import", "b1", str(signed))
    desk.ok("batch", "broadcast", "b1")
    desk.node.mine(1)
    desk.ok("sync")
    assert status(desk, "b1")["confirmations"] == 1
