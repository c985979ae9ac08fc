"""``store import-sqlite`` (online_coordinator/store_copy.py): a coordinator that ran on
SQLite moves to a real PostgreSQL server with every row, and carries on there."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from online_coordinator.config import DATABASE_NAME
from online_coordinator.store import MIGRATIONS, _statements
from tests.coordinator.conftest import Desk
from tests.coordinator.softappliance import SoftAppliance
from tests.coordinator.test_flow import create, funded_single, payee, sign_and_import
from tests.postgres import fresh_database

#: What a team looks at, before and after the move.
VIEWS = (
    ("wallet", "show", "treasury", "--json"),
    ("status", "--json"),
    ("wallet", "show", "treasury"),
)


def _seen(desk: Desk) -> list[str]:
    return [desk.ok(*view) for view in VIEWS]


def _use_postgres(desk: Desk, url: str) -> None:
    config = desk.state / "coordinator.toml"
    config.write_text(config.read_text() + f'\n[database]\nurl = "{url}"\n')


def test_a_sqlite_coordinator_moves_to_postgresql_and_carries_on(
    desk: Desk, postgres_url: str, request: pytest.FixtureRequest
) -> None:
    appliance = SoftAppliance("cold-1", pool=6)
    funded_single(desk, appliance, coins=3)
    request_path = create(desk, "b1", [(payee(1), "0.1", "INV-1")])
    sign_and_import(desk, "b1", request_path, appliance)
    desk.ok("batch", "broadcast", "b1")
    desk.node.mine(1)
    desk.ok("sync")
    desk.ok("wallet", "key-state", desk.write("s.rcpt", appliance.key_state("key_suspended", 5)))
    with desk.store() as store:  # SQLite keeps a NUL (a node's error may hold one)
        store.event("node_unavailable", "the node said a\x00b")
    before = _seen(desk)
    backup = desk.tmp / "backup.sqlite"
    shutil.copy(desk.state / DATABASE_NAME, backup)
    original = backup.read_bytes()

    _use_postgres(desk, fresh_database(postgres_url, request.node.name[:40].lower()))
    moved = desk.run("store", "import-sqlite", str(backup))
    assert moved.code == 0, moved.err
    assert "every table read back equal" in moved.out and "utxos" in moved.out
    assert _seen(desk) == before  # the same wallet, status and batches
    with desk.store() as store:  # PostgreSQL's text holds no NUL: kept as pgstore writes it
        said = store.all("SELECT message FROM events WHERE kind = 'node_unavailable'")
    assert [r["message"] for r in said] == ["the node said a\\x00b"]
    assert backup.read_bytes() == original  # the file was only read

    desk.ok("wallet", "address", "treasury")  # new rows get new ids (sequences advanced)
    request_path = create(desk, "b2", [(payee(2), "0.2", "INV-2")])
    sign_and_import(desk, "b2", request_path, appliance)
    desk.ok("batch", "broadcast", "b2")
    desk.node.mine(1)
    assert desk.run("sync").code == 0
    again = desk.run("store", "import-sqlite", str(backup))
    assert again.code == 2 and "already holds rows" in again.err


def test_only_a_coordinator_file_into_postgresql_is_copied(
    desk: Desk, postgres_url: str, tmp_path: Path
) -> None:
    stranger = tmp_path / "notes.sqlite"
    with sqlite3.connect(stranger) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    untouched = stranger.read_bytes()
    desk.store().close()  # the coordinator's own file exists
    into_sqlite = desk.run("store", "import-sqlite", str(desk.state / DATABASE_NAME))
    assert into_sqlite.code == 2 and "into the configured PostgreSQL store" in into_sqlite.err
    _use_postgres(desk, fresh_database(postgres_url, "copy_refusals"))
    refused = desk.run("store", "import-sqlite", str(stranger))
    assert refused.code == 2 and "is not a coordinator database" in refused.err
    assert stranger.read_bytes() == untouched
    missing = desk.run("store", "import-sqlite", str(tmp_path / "nothing.sqlite"))
    assert missing.code == 2 and "no such file" in missing.err
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database at all" * 100)
    broken = desk.run("store", "import-sqlite", str(garbage))
    assert broken.code == 2 and "not a readable SQLite file" in broken.err


def test_an_older_coordinator_file_is_migrated_in_a_copy_never_in_place(
    desk: Desk, postgres_url: str
) -> None:
    """A file at the previous schema version: the copy is migrated and imported; the file
    itself (the backup) keeps every byte."""
    old = desk.tmp / "old.sqlite"
    with sqlite3.connect(old) as db:
        for number in range(len(MIGRATIONS) - 1):
            for statement in _statements(MIGRATIONS[number]):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number + 1}")
        db.execute("INSERT INTO meta (key, value) VALUES ('last_sync', '{}')")
    original = old.read_bytes()
    _use_postgres(desk, fresh_database(postgres_url, "copy_older_schema"))
    moved = desk.run("store", "import-sqlite", str(old))
    assert moved.code == 0, moved.err
    assert old.read_bytes() == original
    with desk.store() as store:
        assert store.row("SELECT value FROM meta WHERE key = 'last_sync'")["value"] == "{}"


def test_a_file_with_tables_or_columns_of_its_own_is_refused_never_spliced_into_sql(
    desk: Desk, postgres_url: str
) -> None:
    """Names reach SQL only from the schema the migrations made: a table or column the
    file adds (here named to break out of a statement) is refused, and nothing is copied."""
    desk.store().close()
    url = fresh_database(postgres_url, "copy_strangers")
    _use_postgres(desk, url)
    for n, sql in enumerate(
        (
            'CREATE TABLE "events; DROP TABLE wallets; --" (x TEXT)',
            'ALTER TABLE events ADD COLUMN "kind) VALUES (1); --" TEXT',
        )
    ):
        hostile = desk.tmp / f"hostile{n}.sqlite"
        shutil.copy(desk.state / DATABASE_NAME, hostile)
        with sqlite3.connect(hostile) as db:
            db.execute(sql)
        refused = desk.run("store", "import-sqlite", str(hostile))
        assert refused.code == 2 and "the schema has not" in refused.err, refused.err
    with desk.store() as store:  # the PostgreSQL store: its tables there, and empty
        assert store.one("SELECT COUNT(*) AS n FROM wallets")["n"] == 0
        assert store.one("SELECT COUNT(*) AS n FROM events WHERE kind = 'store_imported'")["n"] == 0
