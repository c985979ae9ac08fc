"""The backup register (REQUIREMENTS 24): which blobs exist, in which bag, where and with
whom, and their test restores on a spare token, proven and destroyed there, never
registered for signing; each in the journal, checked by the fold and by the auditors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from shared.journal import Record
from shared.station import BACKUP_TEST_INTERVAL_DAYS, StationError, StationState
from tests.appliance.medium_tools import replay_findings
from tests.appliance.test_ceremonies_cli import ADMIN_PINS, OFFICER_PINS, officers, run
from tests.appliance.test_crash_ceremonies import SPARE, events, spare_objects, token_script

TWO, TWO_PINS = officers("officer-1", "officer-2")


@pytest.fixture(scope="module")
def station(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("register")
    state = root / "appliance"
    pins = [*OFFICER_PINS.values(), *ADMIN_PINS.values()]
    assert run(state, "init", "--demo", pins=pins).returncode == 0
    kek = run(state, "kek", "new-shares", "--shares", "2,3").stdout.splitlines()
    shares = [line.split(":", 1)[1].strip() for line in kek]
    keygen = run(
        state, "keygen", "cold", "--backup-model", "wrap-with-trusted", *TWO, pins=TWO_PINS
    )
    assert keygen.returncode == 0, keygen.stderr
    blob = root / "cold.blob"
    backup = run(state, "backup", "cold", "--out", str(blob), *TWO, pins=[*TWO_PINS, *shares[:2]])
    assert backup.returncode == 0, backup.stderr
    label, so, user = SPARE
    token_script(state, f"hsm.init_token({label!r}, {so!r}, {user!r})")
    return {"state": state, "blob": blob, "shares": shares, "root": root}


def register(state: Path) -> list[dict]:
    done = run(state, "backups")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_backup_is_in_the_register_and_its_storage_is_recorded(station):
    state, blob = station["state"], station["blob"]
    (entry,) = register(state)
    assert entry["label"] == "cold" and entry["last_test"] == "never" and entry["bag"] is None
    assert not entry["overdue"]
    stored = run(
        state,
        "backup-store",
        str(blob),
        "--bag",
        "TEB-000123",
        "--location",
        "vault B, safe 2",
        "--custodian",
        "Alice",
        "--custodian",
        "Bob",
        *TWO,
        pins=TWO_PINS,
    )
    assert stored.returncode == 0, stored.stderr
    (entry,) = register(state)
    assert (entry["bag"], entry["location"], entry["custodians"]) == (
        "TEB-000123",
        "vault B, safe 2",
        ["Alice", "Bob"],
    )


def test_the_register_speaks_only_of_exported_blobs(station, tmp_path):
    stranger = tmp_path / "stranger.blob"
    stranger.write_bytes(os.urandom(64))
    for args in (
        ["backup-store", str(stranger), "--bag", "X", "--location", "Y", "--custodian", "Z"],
        ["backup-test", str(stranger), "--token", SPARE[0]],
    ):
        done = run(station["state"], *args, *TWO, pins=TWO_PINS)
        assert done.returncode == 1 and "not in the backup register" in done.stderr, done.stderr
    bad_text = run(
        station["state"],
        "backup-store",
        str(station["blob"]),
        "--bag",
        "",
        "--location",
        "Y",
        "--custodian",
        "Z",
        *TWO,
        pins=TWO_PINS,
    )
    assert bad_text.returncode == 1 and "bag serial must be" in bad_text.stderr


def test_a_test_restore_proves_the_blob_on_a_spare_token_and_leaves_nothing(station):
    state, blob, shares = station["state"], station["blob"], station["shares"]
    keys_before = json.loads(run(state, "status").stdout)["keys"]
    _, so, user = SPARE
    done = run(
        state,
        "backup-test",
        str(blob),
        "--token",
        SPARE[0],
        *TWO,
        pins=[*TWO_PINS, so, user, *shares[1:]],
    )
    assert done.returncode == 0, done.stderr
    (entry,) = register(state)
    assert entry["last_test"] == "ok"
    assert spare_objects(state) == []  # no key, no KEK, nothing public either
    assert json.loads(run(state, "status").stdout)["keys"] == keys_before
    tested = [r for r in events(state) if r.event == "backup_tested"]
    assert tested[-1].details["result"] == "ok" and tested[-1].details["token"] == SPARE[0]


def test_a_test_restore_under_the_wrong_kek_is_journaled_as_failed(station):
    state, blob = station["state"], station["blob"]
    other = run(state, "kek", "new-shares", "--shares", "2,3").stdout.splitlines()
    wrong = [line.split(":", 1)[1].strip() for line in other][:2]
    _, so, user = SPARE
    done = run(
        state,
        "backup-test",
        str(blob),
        "--token",
        SPARE[0],
        *TWO,
        pins=[*TWO_PINS, so, user, *wrong],
    )
    assert done.returncode == 1 and "test restore FAILED" in done.stdout, done.stdout
    (entry,) = register(state)
    assert entry["last_test"].startswith("failed: ")
    assert spare_objects(state) == []


def test_the_signing_token_is_never_the_spare(station):
    done = run(
        station["state"],
        "backup-test",
        str(station["blob"]),
        "--token",
        "coldstation-signing",
        *TWO,
        pins=[*TWO_PINS, "x1234", "y1234"],
    )
    assert done.returncode == 1 and "never the signing token" in done.stderr
    officer = run(
        station["state"],
        "backup-test",
        str(station["blob"]),
        "--token",
        "officer-3",
        *TWO,
        pins=[*TWO_PINS, "x1234", "y1234"],
    )
    assert officer.returncode == 1 and "an officer's or administrator's token" in officer.stderr


def test_overdue_follows_the_last_good_test_and_the_auditors_agree(station, tmp_path):
    state = station["state"]
    folded = StationState()
    for record in events(state):
        folded.apply(record, record.hash())
    (entry,) = folded.backups.values()
    day = 86400
    assert entry.tested > 0  # the good test of the test above (a later failure keeps it)
    assert not folded.overdue_backups(entry.tested + (BACKUP_TEST_INTERVAL_DAYS - 1) * day)
    assert folded.overdue_backups(entry.tested + BACKUP_TEST_INTERVAL_DAYS * day) == [entry]
    assert replay_findings(state, tmp_path, TWO_PINS) == []
    # a register record naming a blob no backup exported is refused by the fold
    forged = Record(
        seq=folded.seq + 1,
        prev_hash=folded.head,
        time=folded.last_time,
        appliance_id=str(folded.appliance_id),
        event="backup_stored",
        details={"blob": "00" * 32, "bag": "B", "location": "L", "custodians": ["C"]},
    )
    with pytest.raises(StationError, match="which no backup exported"):
        folded.apply(forged, forged.hash())
