"""Issue 12 on the coordinator: receipts that are deferred or short of their quorum are
refused (wallet import, confirm-pin, batch import), labels never write outside the output
folder, and the state folder is 700 with every file in it 600."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from online_coordinator.config import load_config
from tests.coordinator.conftest import Desk
from tests.coordinator.softappliance import SoftAppliance
from tests.coordinator.test_flow import create, csv_for, funded_single, payee


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- receipts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"deferred": True}, "deferred record"),
        ({"officers": 1}, "has 1 officer(s), the quorum is 2"),
    ],
)
def test_wallet_import_refuses_deferred_or_short_quorum_export_receipts(
    desk: Desk, options: dict, message: str
) -> None:
    appliance = SoftAppliance("cold-1")
    descriptor, receipt = appliance.export(**options)
    result = desk.run(
        "wallet",
        "import",
        "treasury",
        "--export",
        desk.write("w.desc", descriptor),
        desk.write("w.receipt", receipt),
    )
    assert result.code == 2 and message in result.err and "refused" in result.err
    with desk.store() as store:
        assert store.one("SELECT COUNT(*) AS n FROM wallets")["n"] == 0
        assert store.one("SELECT COUNT(*) AS n FROM appliances")["n"] == 0


def test_confirm_pin_takes_wallet_pinned_receipts_and_refuses_bad_ones(desk: Desk) -> None:
    a, b = SoftAppliance("cold-a"), SoftAppliance("cold-b")
    exports = []
    for appliance in (a, b):
        descriptor, receipt = appliance.export()
        exports += [
            "--export",
            desk.write(f"{appliance.appliance_id}.desc", descriptor),
            desk.write(f"{appliance.appliance_id}.receipt", receipt),
        ]
    out = desk.ok("wallet", "multisig", "vault", "--threshold", "2", *exports)
    descriptor = next(line for line in out.splitlines() if line.startswith("wsh("))
    deferred = desk.run(
        "wallet", "confirm-pin", "vault", desk.write("a.deferred", a.pin(descriptor, deferred=True))
    )
    assert deferred.code == 2 and "deferred record" in deferred.err
    short = desk.run(
        "wallet", "confirm-pin", "vault", desk.write("a.short", a.pin(descriptor, officers=1))
    )
    assert short.code == 2 and "the quorum is 2" in short.err
    pinned_b = desk.ok("wallet", "confirm-pin", "vault", desk.write("b.pin", b.pin(descriptor)))
    assert "still waiting for cold-a" in pinned_b
    pinned_a = desk.ok("wallet", "confirm-pin", "vault", desk.write("a.pin", a.pin(descriptor)))
    assert "wallet ready" in pinned_a
    assert desk.ok("wallet", "address", "vault").startswith("bcrt1")
    assert a.entries[-1].record.event == "wallet_pinned"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"deferred": True}, "deferred record"),
        ({"approvers": 1}, "has 1 officer(s), the quorum is 2"),
    ],
)
def test_batch_import_refuses_deferred_or_short_quorum_signing_receipts(
    desk: Desk, options: dict, message: str
) -> None:
    appliance = SoftAppliance("cold-1")
    funded_single(desk, appliance)
    request = create(desk, "b1", [(payee(1), "0.1", "INV-1")])
    signed = desk.write("bad.psbt", appliance.sign(request.read_bytes(), **options))
    result = desk.run("batch", "import", "b1", signed)
    assert result.code == 2 and message in result.err and "not usable" in result.err
    with desk.store() as store:
        assert store.one("SELECT COUNT(*) AS n FROM responses")["n"] == 0
    good = desk.write("good.psbt", appliance.sign(request.read_bytes()))
    assert "complete" in desk.ok("batch", "import", "b1", good)


# -- labels and files -------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["../../escape", "/tmp/escape", "a/b", ".hidden", "-rf", ""])
def test_hostile_labels_are_refused_and_nothing_is_written(desk: Desk, label: str) -> None:
    funded_single(desk, SoftAppliance("cold-1"))
    out = desk.tmp / "deep" / "out"
    csv = desk.write("p.csv", csv_for((payee(1), "0.1", "INV-1")))
    result = desk.run(
        "batch", "create", "treasury", csv, f"--label={label}", "--purpose", "p", "--out", str(out)
    )
    assert result.code == 2 and "label" in result.err and "nothing was created" in result.err
    assert not out.exists() and not (desk.tmp / "escape.psbt").exists()
    assert not Path("/tmp/escape.psbt").exists()
    with desk.store() as store:
        assert store.one("SELECT COUNT(*) AS n FROM batches")["n"] == 0


def test_an_old_label_with_path_characters_still_exports_inside_the_folder(desk: Desk) -> None:
    funded_single(desk, SoftAppliance("cold-1"))
    create(desk, "b1", [(payee(1), "0.1", "INV-1")])
    with desk.store() as store:  # as written by a coordinator before the label rule
        store.db.execute("UPDATE batches SET label = '../../evil label'")
    out = desk.tmp / "deep" / "out"
    written = desk.ok("batch", "export", "../../evil label", "--out", str(out))
    files = sorted(p.name for p in out.iterdir())
    assert files == ["_.._evil_label.psbt", "_.._evil_label.ur.txt"], files
    assert all(line.startswith(f"wrote {out}/") for line in written.splitlines())
    assert not (desk.tmp / "evil label.psbt").exists()


def test_state_folder_is_700_and_its_files_600(desk: Desk) -> None:
    appliance = SoftAppliance("cold-1")
    funded_single(desk, appliance)
    state = desk.state
    names = [
        "coordinator.toml",
        "coordinator.sqlite",
        "coordinator.sqlite-wal",
        "coordinator.sqlite-shm",
    ]
    with desk.store():  # while open, the journal files exist
        assert mode(state) == 0o700
        for name in names:
            assert mode(state / name) == 0o600, name
    for name in ("coordinator.toml", "coordinator.sqlite"):  # loosened by hand ...
        (state / name).chmod(0o644)
    state.chmod(0o755)
    desk.ok("status")  # ... and tightened by the next command
    assert mode(state) == 0o700
    assert mode(state / "coordinator.toml") == mode(state / "coordinator.sqlite") == 0o600
    assert load_config(state).node.timeout_seconds == 30


def test_init_writes_a_private_state_folder(desk: Desk) -> None:
    node = load_config(desk.state).node
    fresh = desk.tmp / "fresh"
    desk.ok(
        "init",
        "--network",
        "regtest",
        "--node-url",
        node.url,
        "--cookie",
        str(node.cookie),
        "--state",
        str(fresh),
    )
    assert mode(fresh) == 0o700
    assert mode(fresh / "coordinator.toml") == mode(fresh / "coordinator.sqlite") == 0o600
    assert json.loads(desk.run("status", "--state", str(fresh), "--json").out)["batches"] == []


def test_wallet_import_scans_the_stations_two_screens_in_turn(desk: Desk) -> None:
    """The station's TUI shows a wallet export as two animated QRs, the descriptor then the
    receipt; a camera pointed at it sees both. The same video (the descriptor's frames
    first) is given for both sources: the receipt's scan passes over the descriptor's
    parts instead of taking them for the receipt."""
    from shared.adapters.video import write_video
    from shared.bitcoin.descriptor import Descriptor
    from shared.qr.presets import FAST
    from shared.ur.registry import encode_bytes, encode_crypto_output
    from shared.ur.ur import UR, UREncoder

    descriptor, receipt = SoftAppliance("cold-1").export()
    screens = [
        UR("crypto-output", encode_crypto_output(Descriptor.parse(descriptor))),
        UR("bytes", encode_bytes(receipt)),
    ]
    renderer = FAST.renderer()
    frames = [
        renderer.image(part.upper())
        for ur in screens
        for part in UREncoder(ur, FAST.max_fragment_len).cycle_parts(2)
    ]
    video = desk.tmp / "station-screens.avi"
    assert write_video(frames, video, fps=10) == len(frames)
    out = desk.ok("wallet", "import", "treasury", "--export", str(video), str(video))
    assert "wallet treasury: 1 descriptor(s) imported" in out
