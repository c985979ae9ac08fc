"""The appliance's ceremonies through its command line, each in a fresh process on its own
SoftHSM2 token store, PINs through a file descriptor as an automation would pass them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.journal_store import encode_frame
from shared.journal import parse_export, verify_journal

EXE = str(Path(sys.executable).with_name("coldstation-appliance"))
OFFICER_PINS = {"officer-1": "1111", "officer-2": "2222", "officer-3": "3333"}
ADMIN_PINS = {"admin-1": "ad11", "admin-2": "ad22"}


def run(state: Path, *args: str, pins: list[str] = ()) -> subprocess.CompletedProcess:
    read, write = os.pipe()
    os.write(write, "".join(f"{p}\n" for p in pins).encode())
    os.close(write)
    try:
        return subprocess.run(
            [EXE, "--state", str(state), "--pin-fd", str(read), *args],
            pass_fds=(read,),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(read)


def officers(*labels: str) -> tuple[list[str], list[str]]:
    return ["--officers", ",".join(labels)], [OFFICER_PINS[label] for label in labels]


@pytest.fixture
def appliance(tmp_path) -> tuple[Path, dict]:
    state = tmp_path / "appliance"
    done = run(
        state,
        "init",
        "--demo",
        "--network",
        "regtest",
        pins=[*OFFICER_PINS.values(), *ADMIN_PINS.values()],
    )
    assert done.returncode == 0, done.stderr
    return state, json.loads(done.stdout)


def test_init_journals_everything_and_verifies(appliance):
    state, info = appliance
    assert set(info["officers"]) == set(OFFICER_PINS)
    done = run(state, "journal", "verify")
    assert done.returncode == 0 and "OK" in done.stdout
    status = json.loads(run(state, "status").stdout)
    assert status["policy_version"] == 1
    assert [k["label"] for k in status["keys"]] == ["coldstation-audit"]


def test_quorum_lockout_reset_and_revocation_with_rekey(appliance):
    state, info = appliance
    args, pins = officers("officer-1")
    short = run(state, "keygen", "k1", *args, pins=pins)
    assert short.returncode == 1 and "2 needed" in short.stderr
    for attempt in range(3):
        wrong = run(
            state,
            "keygen",
            "k1",
            "--officers",
            "officer-1,officer-2",
            pins=["1111", f"bad{attempt}"],
        )
        assert wrong.returncode == 1 and "refused the PIN" in wrong.stderr
    locked = run(
        state, "keygen", "k1", *officers("officer-1", "officer-2")[0], pins=["1111", "2222"]
    )
    assert locked.returncode == 1 and "locked out" in locked.stderr.lower()
    ok = run(state, "keygen", "k1", *officers("officer-1", "officer-3")[0], pins=["1111", "3333"])
    assert ok.returncode == 0, ok.stderr
    reset = run(
        state,
        "reset-lockout",
        "officer-2",
        "--admins",
        "admin-1,admin-2",
        pins=list(ADMIN_PINS.values()),
    )
    assert reset.returncode == 0, reset.stderr
    again = run(
        state, "keygen", "k2", *officers("officer-1", "officer-2")[0], pins=["1111", "2222"]
    )
    assert again.returncode == 0, again.stderr

    draft, signed = state.parent / "draft.cbor", state.parent / "signed.cbor"
    assert (
        run(
            state, "policy", "draft", "--revoke", info["officers"]["officer-3"], "-o", str(draft)
        ).returncode
        == 0
    )
    assert (
        run(
            state,
            "policy",
            "sign",
            str(draft),
            "--admins",
            "admin-1,admin-2",
            "-o",
            str(signed),
            pins=list(ADMIN_PINS.values()),
        ).returncode
        == 0
    )
    partial = run(
        state,
        "policy",
        "install",
        str(signed),
        *officers("officer-1", "officer-3")[0],
        pins=["1111", "3333"],
    )
    assert partial.returncode == 1 and "present them all" in partial.stderr
    installed = run(
        state,
        "policy",
        "install",
        str(signed),
        *officers("officer-1", "officer-2")[0],
        pins=["1111", "2222"],
    )
    assert installed.returncode == 0, installed.stderr
    revoked = run(
        state, "keygen", "k3", *officers("officer-1", "officer-3")[0], pins=["1111", "3333"]
    )
    assert revoked.returncode == 1 and "revoked" in revoked.stderr
    export = state.parent / "journal.cbor"
    assert (
        run(
            state,
            "journal",
            "export",
            "--out",
            str(export),
            *officers("officer-1", "officer-2")[0],
            pins=["1111", "2222"],
        ).returncode
        == 0
    )
    events = [(e.record.event, e.record.actors) for e in parse_export(export.read_bytes())[2]]
    assert ("officer_revoked", (info["officers"]["officer-3"],)) in events
    assert ("pin_lockout", tuple(sorted(info["administrators"].values()))) in [
        (event, tuple(sorted(actors))) for event, actors in events
    ]
    kinds = [event for event, _ in events]
    assert kinds.count("pin_rekeyed") == 1 and kinds.count("intent") == 3  # 2 keygens, rekey
    # every successful ceremony after initialisation starts with the activation that allowed
    # it (keygen k1, keygen k2, policy install, journal export); refused ones activate nothing
    assert kinds.count("activation") == 4


def test_suspend_and_policy_signatures(appliance):
    state, _ = appliance
    assert (
        run(
            state, "keygen", "k1", *officers("officer-1", "officer-2")[0], pins=["1111", "2222"]
        ).returncode
        == 0
    )
    done = run(
        state, "suspend", "k1", *officers("officer-2", "officer-3")[0], pins=["2222", "3333"]
    )
    assert done.returncode == 0 and "suspended" in done.stdout
    status = json.loads(run(state, "status").stdout)
    assert {k["label"]: k["state"] for k in status["keys"]}["k1"] == "suspended"
    audit = run(
        state,
        "suspend",
        "coldstation-audit",
        *officers("officer-2", "officer-3")[0],
        pins=["2222", "3333"],
    )
    assert audit.returncode == 1 and "audit key" in audit.stderr
    assert run(state, "journal", "verify").returncode == 0
    draft, signed = state.parent / "d.cbor", state.parent / "s.cbor"
    drafted = run(state, "policy", "draft", "--set", "per_tx_limit_sat=5000", "-o", str(draft))
    assert "per-transaction limit: 10 BTC -> 0.00005 BTC" in drafted.stderr  # issue 18
    one_admin = run(
        state, "policy", "sign", str(draft), "--admins", "admin-1", "-o", str(signed), pins=["ad11"]
    )
    assert one_admin.returncode == 0
    assert "per-transaction limit: 10 BTC -> 0.00005 BTC" in one_admin.stderr
    assert "policy version 2, in full:" in one_admin.stderr
    refused = run(
        state,
        "policy",
        "install",
        str(signed),
        *officers("officer-1", "officer-2")[0],
        pins=["1111", "2222"],
    )
    assert refused.returncode == 1 and "signature" in refused.stderr.lower()


def test_backup_restores_on_a_second_appliance_and_proves_the_key(tmp_path, appliance):
    state_a, _ = appliance
    state_b = tmp_path / "second"
    assert (
        run(
            state_b, "init", "--demo", pins=[*OFFICER_PINS.values(), *ADMIN_PINS.values()]
        ).returncode
        == 0
    )
    shares = [
        line.split(":", 1)[1].strip()
        for line in run(state_a, "kek", "new-shares", "--shares", "2,3").stdout.splitlines()
    ]
    assert len(shares) == 3
    assert (
        run(
            state_a,
            "keygen",
            "cold",
            "--backup-model",
            "wrap-with-trusted",
            *officers("officer-1", "officer-2")[0],
            pins=["1111", "2222"],
        ).returncode
        == 0
    )
    blob = tmp_path / "cold.blob"
    backup = run(
        state_a,
        "backup",
        "cold",
        "--out",
        str(blob),
        "--kek-shares",
        "2",
        *officers("officer-1", "officer-2")[0],
        pins=["1111", "2222", *shares[:2]],
    )
    assert backup.returncode == 0, backup.stderr
    keys = json.loads(run(state_a, "status").stdout)["keys"]
    public_key = next(k["public_key"] for k in keys if k["label"] == "cold")
    restored = run(
        state_b,
        "restore",
        str(blob),
        "--label",
        "cold",
        "--public-key",
        public_key,
        *officers("officer-2", "officer-3")[0],
        pins=["2222", "3333", *shares[1:]],
    )
    assert restored.returncode == 0, restored.stderr
    keys_b = json.loads(run(state_b, "status").stdout)["keys"]
    assert next(k["public_key"] for k in keys_b if k["label"] == "cold") == public_key
    assert run(state_b, "journal", "verify").returncode == 0


def test_journal_export_verifies_offline_and_tampering_is_named(appliance, tmp_path):
    state, _ = appliance
    out = tmp_path / "journal.cbor"
    done = run(
        state,
        "journal",
        "export",
        "--out",
        str(out),
        "--ur",
        *officers("officer-1", "officer-2")[0],
        pins=["1111", "2222"],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ur:bytes/")
    appliance_id, audit_key, entries = parse_export(out.read_bytes())
    report = verify_journal(entries, audit_key, appliance_id=appliance_id)
    assert report.ok and entries[-1].record.event == "journal_export"

    journal = state / "journal.log"
    data = bytearray(journal.read_bytes())
    middle = len(data) // 2
    data[middle] ^= 0x01
    journal.write_bytes(bytes(data))
    broken = run(state, "journal", "verify")
    assert broken.returncode == 1
    assert "Traceback" not in broken.stderr
    assert "changed on disk" in broken.stdout and "problem(s)" in broken.stdout
    refused = run(
        state,
        "journal",
        "export",
        "--out",
        str(tmp_path / "again.cbor"),
        *officers("officer-1", "officer-2")[0],
        pins=["1111", "2222"],
    )
    assert refused.returncode == 1 and "does not verify" in refused.stderr


def test_wallet_export_writes_descriptor_receipt_and_ur(appliance, tmp_path):
    state, _ = appliance
    assert (
        run(
            state, "keygen", "w", *officers("officer-1", "officer-2")[0], pins=["1111", "2222"]
        ).returncode
        == 0
    )
    out = tmp_path / "export"
    done = run(
        state,
        "export-wallet",
        "w",
        "--out",
        str(out),
        *officers("officer-1", "officer-2")[0],
        pins=["1111", "2222"],
    )
    assert done.returncode == 0, done.stderr
    descriptor = (out / "wallet.descriptor").read_text().strip()
    assert descriptor.startswith("wpkh(") and "#" in descriptor
    assert (out / "wallet.ur").read_text().startswith("ur:crypto-output/")
    from shared.journal import Entry

    receipt = Entry.from_bytes((out / "wallet.receipt").read_bytes())
    status = json.loads(run(state, "status").stdout)
    audit = next(k["public_key"] for k in status["keys"] if k["label"] == "coldstation-audit")
    assert receipt.verify(bytes.fromhex(audit))
    assert receipt.record.details["descriptor"] == descriptor


HOLDER = (
    "import sys\n"
    "from appliance.appliance import Appliance\n"
    "station = Appliance(sys.argv[1])\n"
    "print('open', flush=True)\n"
    "sys.stdin.read()\n"
)


def test_status_works_read_only_beside_the_open_tui_and_changes_nothing(appliance):
    """Issue 18: `status` was refused while the officers' TUI held the station. It now
    opens read-only beside it, says so, and shows the journal as it stands, a frame being
    appended left out; ceremonies are still refused while the station is held."""
    state, info = appliance
    alone = json.loads(run(state, "status").stdout)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        journal = state / "journal.log"
        before = journal.read_bytes()
        beside = run(state, "status")
        assert beside.returncode == 0, beside.stderr
        shown = json.loads(beside.stdout)
        assert "open in another process" in beside.stderr
        assert shown["usable"] and shown["problems"] == []
        assert shown["journal_head"] == alone["journal_head"]
        assert shown["appliance"]["appliance_id"] == info["appliance_id"]
        with journal.open("ab") as file:  # the holder is half-way through an append
            file.write(before[:20])
        partial = run(state, "status")
        assert partial.returncode == 0, partial.stderr
        assert json.loads(partial.stdout)["usable"]
        assert "still being written" in partial.stderr
        os.truncate(journal, len(before))
        with journal.open("ab") as file:  # a whole frame with a bad CRC is never in flight
            file.write(encode_frame(b"x" * 40)[:-1] + b"\x00")
        corrupt = run(state, "status")
        assert corrupt.returncode == 1 and not json.loads(corrupt.stdout)["usable"]
        assert "bad CRC" in corrupt.stdout
        os.truncate(journal, len(before))
        refused = run(state, "keygen", "k", *officers("officer-1", "officer-2")[0], pins=["1111"])
        assert refused.returncode != 0 and "locked by another writer" in refused.stderr
        assert journal.read_bytes() == before
    finally:
        holder.communicate("", timeout=30)
    with journal.open("ab") as file:  # torn by a crash, and nobody is writing it now
        file.write(before[:20])
    opened = subprocess.run(
        [sys.executable, "-c", READ_ONLY, str(state)], capture_output=True, text=True, check=True
    )
    assert "partial" in opened.stdout, opened.stdout  # reported, not taken for an append
    os.truncate(journal, len(before))


READ_ONLY = (
    "import sys\n"
    "from appliance.appliance import Appliance\n"
    "station = Appliance(sys.argv[1], read_only=True)\n"
    "print(station.problems)\n"
)


def test_start_over_never_wipes_a_directory_that_is_no_station(tmp_path):
    """A typo'd --state pointing at someone's files: init refuses, and --start-over too."""
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "thesis.txt").write_text("years of work")
    pins = [*OFFICER_PINS.values(), *ADMIN_PINS.values()]
    for extra in ([], ["--start-over"]):
        done = run(folder, "init", "--demo", *extra, pins=pins)
        assert done.returncode != 0 and "holds no station" in done.stderr, done.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["thesis.txt"]


def test_a_key_state_receipt_stops_the_coordinator_receiving_to_the_key(appliance, tmp_path):
    """The station's own receipts, end to end: ``export-wallet`` imported by the
    coordinator, then ``suspend --out``: the coordinator verifies it under the pinned audit
    key and hands out no address on the key; ``reactivate --out`` lets it receive again.
    The TUI's journal shows the same record as a QR receipt."""
    from appliance.tui.screens.receipts import receipt_screens
    from online_coordinator.key_states import record_key_state
    from online_coordinator.store import Store
    from online_coordinator.wallet import (
        WalletError,
        import_single,
        load_wallet,
        next_address,
        read_export,
    )
    from shared.bitcoin.address import Network
    from shared.bitcoin.descriptor import Descriptor
    from shared.journal import Entry

    state, _ = appliance
    two, pins = officers("officer-1", "officer-2")[0], ["1111", "2222"]
    assert run(state, "keygen", "w", *two, pins=pins).returncode == 0
    assert (
        run(state, "export-wallet", "w", "--out", str(tmp_path / "x"), *two, pins=pins).returncode
        == 0
    )
    descriptor = Descriptor.parse((tmp_path / "x" / "wallet.descriptor").read_text())
    with Store.open(tmp_path / "coordinator.sqlite") as store:
        export = read_export(descriptor, (tmp_path / "x" / "wallet.receipt").read_bytes())
        import_single(store, "treasury", Network.REGTEST, [export])
        wallet = load_wallet(store, "treasury")
        done = run(state, "suspend", "w", "--out", str(tmp_path / "s"), *two, pins=pins)
        assert done.returncode == 0, done.stderr
        receipt = (tmp_path / "s" / "key.receipt").read_bytes()
        assert (tmp_path / "s" / "receipt.ur").read_text().startswith("ur:bytes/")
        change = record_key_state(store, receipt)
        assert (change.key.label, change.key.state, change.wallets) == (
            "w",
            "suspended",
            ("treasury",),
        )
        with pytest.raises(WalletError, match=r"key w on appliance .* is suspended"):
            next_address(store, wallet, change=False, note="refused")
        (screen,) = receipt_screens(Entry.from_bytes(receipt))
        assert screen.title_text.startswith("Key suspended receipt for key w")
        done = run(state, "reactivate", "w", "--out", str(tmp_path / "r"), *two, pins=pins)
        assert done.returncode == 0, done.stderr
        record_key_state(store, (tmp_path / "r" / "key.receipt").read_bytes())
        assert next_address(store, wallet, change=False, note="again").address


def test_a_read_only_open_of_a_moved_medium_writes_nothing(appliance, tmp_path):
    """The medium mounted at another path (an auditor's machine, status beside the TUI):
    a read-only open reads the station through a private SoftHSM2 config and leaves every
    byte of the medium, its SoftHSM2 config included, as it was."""
    state, _ = appliance
    moved = tmp_path / "mounted-elsewhere"
    shutil.copytree(state, moved, symlinks=True)
    before = {p: p.read_bytes() for p in moved.rglob("*") if p.is_file()}
    modes = {p: p.stat().st_mode for p in moved.rglob("*")}
    opened = subprocess.run(
        [sys.executable, "-c", READ_ONLY, str(moved)], capture_output=True, text=True, check=True
    )
    assert opened.stdout.strip() == "[]", opened.stdout + opened.stderr  # no problem found
    assert {p: p.read_bytes() for p in moved.rglob("*") if p.is_file()} == before
    assert {p: p.stat().st_mode for p in moved.rglob("*")} == modes
    assert str(state) in (moved / "softhsm" / "softhsm2.conf").read_text()  # not rewritten
