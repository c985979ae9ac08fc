"""The coordinator's SQLite store: wallets, coins, batches, requests, responses, broadcasts.

Why SQLite: one file, ACID, safe across processes. The coordinator must never lose a batch
and never put one coin in two batches, so

* the connection runs in WAL mode with ``synchronous=FULL`` and foreign keys on;
* every change happens inside :meth:`Store.write`, a ``BEGIN IMMEDIATE`` transaction: the
  write lock is taken *before* anything is read, so two processes selecting coins at the
  same moment are serialised and the second one sees the first one's locks;
* nothing is deleted: a cancelled request is marked cancelled, a spent coin is marked
  spent, an orphaned block is marked orphaned, and every state change also lands in the
  append-only ``events`` table (REQUIREMENTS 37: the reconciliation needs the history).

Schema changes are numbered migrations applied in order and recorded in ``user_version``;
a database newer than this program is refused rather than guessed at.

The database, its ``-wal`` and ``-shm`` files are created mode 600 (SQLite gives the
journal files the database's mode) and tightened to 600 when found looser: they hold the
wallets, every request and the evidence, and nobody else on the machine needs them.

When SQLite cannot read or write (a full disk, an I/O error, a lock held past the busy
timeout, a read-only or corrupt file), the transaction is rolled back and a
:class:`StorageError` says so in one line; callers add what was and was not done by then
(:func:`outcome`), since only they know whether the node was already told something.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from online_coordinator import faults
from shared.closing import Closing

BUSY_TIMEOUT_MS = 30_000

MIGRATIONS: tuple[str, ...] = (
    # 1: the whole first schema.
    """
    CREATE TABLE wallets (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        network TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('single', 'multisig')),
        threshold INTEGER,
        birth_height INTEGER NOT NULL DEFAULT 0,
        created INTEGER NOT NULL
    );
    CREATE TABLE descriptors (
        id INTEGER PRIMARY KEY,
        wallet_id INTEGER NOT NULL REFERENCES wallets(id),
        position INTEGER NOT NULL,
        descriptor TEXT NOT NULL,
        UNIQUE (wallet_id, position)
    );
    CREATE TABLE appliances (
        appliance_id TEXT PRIMARY KEY,
        audit_key BLOB NOT NULL,
        pinned INTEGER NOT NULL
    );
    CREATE TABLE wallet_members (
        id INTEGER PRIMARY KEY,
        wallet_id INTEGER NOT NULL REFERENCES wallets(id),
        appliance_id TEXT REFERENCES appliances(appliance_id),
        key TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('appliance', 'external')),
        export_receipt BLOB,
        pin_receipt BLOB
    );
    CREATE TABLE addresses (
        id INTEGER PRIMARY KEY,
        wallet_id INTEGER NOT NULL REFERENCES wallets(id),
        descriptor_id INTEGER NOT NULL REFERENCES descriptors(id),
        change INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        script BLOB NOT NULL UNIQUE,
        address TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('fresh', 'issued', 'used')),
        note TEXT,
        UNIQUE (descriptor_id, change, idx)
    );
    CREATE TABLE transactions (
        txid TEXT PRIMARY KEY,
        raw BLOB NOT NULL
    );
    CREATE TABLE utxos (
        txid TEXT NOT NULL REFERENCES transactions(txid),
        vout INTEGER NOT NULL,
        wallet_id INTEGER NOT NULL REFERENCES wallets(id),
        address_id INTEGER NOT NULL REFERENCES addresses(id),
        value INTEGER NOT NULL CHECK (value > 0),
        height INTEGER NOT NULL,
        coinbase INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL CHECK (state IN ('available', 'locked', 'spent', 'orphaned')),
        request_id INTEGER REFERENCES requests(id),
        spent_by TEXT,
        spent_block TEXT,
        first_seen INTEGER NOT NULL,
        PRIMARY KEY (txid, vout)
    );
    CREATE INDEX utxos_by_wallet ON utxos (wallet_id, state);
    CREATE TABLE batches (
        id INTEGER PRIMARY KEY,
        wallet_id INTEGER NOT NULL REFERENCES wallets(id),
        label TEXT NOT NULL UNIQUE,
        csv_sha256 BLOB NOT NULL,
        purpose TEXT NOT NULL,
        state TEXT NOT NULL,
        created INTEGER NOT NULL
    );
    CREATE TABLE payouts (
        id INTEGER PRIMARY KEY,
        batch_id INTEGER NOT NULL REFERENCES batches(id),
        line INTEGER NOT NULL,
        address TEXT NOT NULL,
        amount INTEGER NOT NULL CHECK (amount > 0),
        reference TEXT NOT NULL,
        UNIQUE (batch_id, reference)
    );
    CREATE TABLE requests (
        id INTEGER PRIMARY KEY,
        batch_id INTEGER NOT NULL REFERENCES batches(id),
        request_id BLOB NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        replaces INTEGER REFERENCES requests(id),
        unsigned_psbt BLOB NOT NULL,
        request_hash BLOB NOT NULL,
        txid TEXT NOT NULL,
        fee INTEGER NOT NULL,
        fee_rate INTEGER NOT NULL,
        created INTEGER NOT NULL,
        expiry INTEGER NOT NULL,
        state TEXT NOT NULL
    );
    CREATE TABLE responses (
        id INTEGER PRIMARY KEY,
        request_id INTEGER NOT NULL REFERENCES requests(id),
        psbt BLOB NOT NULL,
        received INTEGER NOT NULL,
        source TEXT NOT NULL
    );
    CREATE TABLE receipts (
        id INTEGER PRIMARY KEY,
        request_id INTEGER NOT NULL REFERENCES requests(id),
        appliance_id TEXT NOT NULL REFERENCES appliances(appliance_id),
        entry BLOB NOT NULL,
        UNIQUE (request_id, appliance_id)
    );
    CREATE TABLE broadcasts (
        id INTEGER PRIMARY KEY,
        request_id INTEGER NOT NULL UNIQUE REFERENCES requests(id),
        txid TEXT NOT NULL,
        wtxid TEXT NOT NULL,
        raw BLOB NOT NULL,
        first_sent INTEGER NOT NULL,
        last_sent INTEGER NOT NULL,
        sends INTEGER NOT NULL DEFAULT 1,
        block_hash TEXT,
        height INTEGER,
        state TEXT NOT NULL
    );
    CREATE TABLE blocks (
        height INTEGER NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL CHECK (state IN ('active', 'orphaned')),
        seen INTEGER NOT NULL
    );
    CREATE INDEX active_blocks ON blocks (state, height);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        time INTEGER NOT NULL,
        kind TEXT NOT NULL,
        severity TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'alert')),
        batch_id INTEGER REFERENCES batches(id),
        message TEXT NOT NULL
    );
    """,
    # 2: alerts are acknowledged (by whom, why), never deleted.
    """
    ALTER TABLE events ADD COLUMN acknowledged TEXT;
    """,
    # 3: states that say what they mean. A broadcast row is written *before* the node is
    # asked (state 'sending', sends = attempts so far), then 'mempool', 'confirmed', 'final'
    # (or 'replaced', 'abandoned'); batches use the words signed, sending, in_mempool,
    # confirmed, final. 'sent' was "the node accepted it"; the old batch 'confirmed' was
    # final. The meta table keeps the last sync (height, time) for status without a node.
    """
    UPDATE broadcasts SET state = 'mempool' WHERE state = 'sent';
    UPDATE batches SET state = 'final' WHERE state = 'confirmed';
    UPDATE batches SET state = 'confirmed' WHERE state = 'broadcast' AND id IN (SELECT
        r.batch_id FROM requests r JOIN broadcasts b ON b.request_id = r.id
        WHERE b.state = 'confirmed');
    UPDATE batches SET state = 'in_mempool' WHERE state = 'broadcast';
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 4: sync scans the UTXO set once per inventory script, not on every run: ``scanned`` is
    # the walked height the scan covered (NULL: never scanned; the walk sees every later
    # coin). Existing addresses are scanned once more on the first sync after upgrading.
    # Batch create reads the spendable coins in order straight off a covering index.
    """
    ALTER TABLE addresses ADD COLUMN scanned INTEGER;
    CREATE INDEX addresses_unscanned ON addresses (wallet_id) WHERE scanned IS NULL;
    CREATE INDEX utxos_spendable ON utxos (wallet_id, height, txid, vout, value, coinbase,
        address_id) WHERE state = 'available';
    """,
    # 5: the team (issue 19): users with a role and an argon2 password hash (never the
    # password), failed logins counted toward a lockout; requesters' passkeys (WebAuthn
    # COSE public keys, registered at an RP id and origin); every event names the user who
    # acted (``actor``; NULL for the command line and the node). Nothing is deleted: a user
    # is disabled, a passkey revoked. ``session_epoch`` ends every session of a user at
    # sign-out (a session names the epoch it began in).
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL
            CHECK (role IN ('requester', 'operator', 'viewer', 'administrator')),
        password_hash TEXT NOT NULL,
        failed_logins INTEGER NOT NULL DEFAULT 0,
        locked_until INTEGER NOT NULL DEFAULT 0,
        disabled INTEGER NOT NULL DEFAULT 0,
        session_epoch INTEGER NOT NULL DEFAULT 0,
        created INTEGER NOT NULL
    );
    CREATE TABLE passkeys (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id),
        credential_id BLOB NOT NULL UNIQUE,
        public_key BLOB NOT NULL,
        rp_id TEXT NOT NULL,
        origin TEXT NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0,
        created INTEGER NOT NULL
    );
    ALTER TABLE events ADD COLUMN actor TEXT;
    """,
    # 6: key states the stations vouch for (``key_states``): each suspension, reactivation
    # or archive receipt, verified under the appliance's pinned audit key and kept; a key's
    # state is its receipt with the highest journal seq (module key_states).
    """
    CREATE TABLE key_states (
        id INTEGER PRIMARY KEY,
        appliance_id TEXT NOT NULL REFERENCES appliances(appliance_id),
        label TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('active', 'suspended', 'archived')),
        seq INTEGER NOT NULL,
        receipt BLOB NOT NULL,
        recorded INTEGER NOT NULL,
        UNIQUE (appliance_id, seq)
    );
    CREATE INDEX key_states_by_key ON key_states (appliance_id, label, seq);
    """,
)

#: File mode of the database and its journal files: the owner only.
PRIVATE_FILE_MODE = 0o600
#: How SQLite and the OS say "no room".
_FULL_MARKERS = ("database or disk is full", "no space left")
#: Below this much free space, an I/O error on our files is taken for a full disk.
LOW_SPACE_BYTES = 256 * 1024


class StoreError(RuntimeError):
    """The database cannot be used: newer than this program, or corrupt."""


class StorageError(StoreError):
    """SQLite (or the file system under it) failed; what was done is in ``outcome``.

    ``str()`` is the one line the command prints: the failure, then what was and was not
    done. ``full`` tells a full disk from other failures, for the advice.
    """

    def __init__(self, what: str, *, full: bool = False, outcome: str | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.full = full
        self.outcome = outcome

    def __str__(self) -> str:
        advice = " (free some space, then run the command again)" if self.full else ""
        done = f"; {self.outcome}" if self.outcome else ""
        return f"{self.what}{advice}{done}"


def storage_error(path: Path | str, exc: BaseException) -> StorageError:
    """One line for an SQLite or OS failure on the coordinator's own files.

    SQLite reports a full disk as "database or disk is full", but when the journal's shared
    memory file cannot grow it says only "disk I/O error"; the free space of the file
    system is checked so the line says what is really wrong.
    """
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    full = any(marker in reason.lower() for marker in _FULL_MARKERS) or (
        isinstance(exc, OSError) and exc.errno == errno.ENOSPC
    )
    if not full:
        free = _free_bytes(Path(path))
        if free is not None and free < LOW_SPACE_BYTES:
            full = True
            reason = f"{reason}; the file system holding it has {free} bytes free"
    return StorageError(f"cannot write {path}: {reason}", full=full)


def _free_bytes(path: Path) -> int | None:
    """Bytes an unprivileged writer may still use on ``path``'s file system, if known."""
    for candidate in (path, *path.parents):
        try:
            info = os.statvfs(candidate)
        except OSError:
            continue
        return info.f_bavail * info.f_frsize
    return None


@contextlib.contextmanager
def outcome(text: str) -> Iterator[None]:
    """Say what was and was not done if a StorageError escapes the block.

    The innermost ``outcome`` wins: it is the one that knows how far the work got.
    """
    try:
        yield
    except StorageError as exc:
        if exc.outcome is None:
            exc.outcome = text
        raise


def now() -> int:
    return int(time.time())


class Store(Closing):
    """One connection to the coordinator database; open with :meth:`open`."""

    def __init__(self, connection: sqlite3.Connection, path: Path | str) -> None:
        self.db = connection
        self.path = path

    @property
    def postgres(self) -> bool:
        return isinstance(self.path, str)

    @classmethod
    def open(cls, path: Path | str) -> Store:
        """The store at ``path``: the SQLite file, or a ``postgresql://`` URL
        (:mod:`online_coordinator.pgstore`)."""
        if isinstance(path, str):
            return cls._open_postgres(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _private_files(path)
        except OSError as exc:
            raise storage_error(path, exc) from exc
        try:
            db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
            store = cls(db, path)
            store._migrate()
        except StorageError:
            raise
        except sqlite3.OperationalError as exc:
            raise storage_error(path, exc) from exc
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: {exc}") from exc
        try:
            _private_files(path)  # the -wal and -shm files exist now
        except OSError as exc:
            raise storage_error(path, exc) from exc
        return store

    @classmethod
    def _open_postgres(cls, url: str) -> Store:
        from online_coordinator.pgstore import PgConnection

        shown = _without_password(url)
        try:
            connection = PgConnection(url)
        except sqlite3.OperationalError as exc:
            raise StorageError(f"cannot open {shown}: {exc}") from exc
        store = cls(connection, shown)  # type: ignore[arg-type]
        try:
            store._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{shown}: {exc}") from exc
        connection.learn_tables()
        return store

    def close(self) -> None:
        self.db.close()

    def _migrate(self) -> None:
        if self.postgres:
            self._migrate_postgres()
            return
        with self.write():
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"{self.path} has schema version {version}; this coordinator knows up to "
                    f"{len(MIGRATIONS)}: upgrade the coordinator"
                )
            for number in range(version, len(MIGRATIONS)):
                for statement in _statements(MIGRATIONS[number]):
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {number + 1}")

    def _migrate_postgres(self) -> None:
        """The same numbered migrations, translated; the version in coldstation_schema."""
        from online_coordinator.pgstore import translate_ddl

        with self.write() as db:
            db.execute("CREATE TABLE IF NOT EXISTS coldstation_schema (version BIGINT NOT NULL)")
            row = db.execute("SELECT version FROM coldstation_schema").fetchone()
            if row is None:
                db.execute("INSERT INTO coldstation_schema (version) VALUES (0)")
            version = 0 if row is None else int(row[0])
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"{self.path} has schema version {version}; this coordinator knows up to "
                    f"{len(MIGRATIONS)}: upgrade the coordinator"
                )
            for number in range(version, len(MIGRATIONS)):
                for statement in _statements(translate_ddl(MIGRATIONS[number])):
                    db.execute(statement)
                db.execute("UPDATE coldstation_schema SET version = ?", (number + 1,))

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction: committed on success, rolled back on error.

        Nested use joins the outer transaction, so helpers can be composed.
        """
        if self.db.in_transaction:
            yield self.db
            return
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise storage_error(self.path, exc) from exc
        try:
            yield self.db
            faults.point("store.commit")
            self.db.execute("COMMIT")
        except BaseException as exc:
            self._rollback()
            if isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError:
                raise storage_error(self.path, exc) from exc
            raise

    def _rollback(self) -> None:
        """Undo the open transaction; SQLite may already have (after SQLITE_FULL, say)."""
        if self.db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")

    def one(self, sql: str, *params: Any) -> sqlite3.Row | None:
        try:
            return self.db.execute(sql, params).fetchone()
        except sqlite3.OperationalError as exc:
            raise storage_error(self.path, exc) from exc

    def row(self, sql: str, *params: Any) -> sqlite3.Row:
        """The row a foreign key or an earlier read says exists; its absence means the
        database was changed under us, which no command should take for "nothing"."""
        found = self.one(sql, *params)
        if found is None:
            raise StoreError(
                f"{self.path}: a row this command relies on is missing "
                f"({sql.split(' WHERE ')[0]}): the database was changed "
                "outside Coldstation"
            )
        return found

    def all(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        try:
            return self.db.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            raise storage_error(self.path, exc) from exc

    def meta(self, key: str) -> str | None:
        row = self.one("SELECT value FROM meta WHERE key = ?", key)
        return None if row is None else str(row["value"])

    def set_meta(self, key: str, value: str) -> None:
        with self.write() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def event(
        self,
        kind: str,
        message: str,
        *,
        severity: str = "info",
        batch_id: int | None = None,
        actor: str | None = None,
    ) -> None:
        """Append to the event log (inside the caller's transaction when there is one);
        ``actor`` is the web user who acted (None: the command line or the node)."""
        with self.write() as db:
            db.execute(
                "INSERT INTO events (time, kind, severity, batch_id, message, actor) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (now(), kind, severity, batch_id, message, actor),
            )

    def check_integrity(self) -> list[str]:
        """SQLite's own integrity and foreign-key checks; empty when the file is sound.
        (PostgreSQL enforces foreign keys on every write and checks its own pages.)"""
        if self.postgres:
            return []
        problems = [r[0] for r in self.db.execute("PRAGMA integrity_check") if r[0] != "ok"]
        problems += [
            f"foreign key: {tuple(r)}" for r in self.db.execute("PRAGMA foreign_key_check")
        ]
        return problems


def _without_password(url: str) -> str:
    """A database URL as messages may show it: libpq's own parse, less any password
    (in the authority, the query, or a key=value string)."""
    try:
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        parts = conninfo_to_dict(url)
        parts.pop("password", None)
        return make_conninfo(**parts)  # type: ignore[arg-type]
    except Exception:  # not parseable, or psycopg missing: say nothing of it
        return "the configured PostgreSQL database"


def _private_files(path: Path) -> None:
    """Create the database mode 600 (its journals inherit it); tighten what is looser."""
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE_MODE))
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        with contextlib.suppress(FileNotFoundError):
            if stat.S_IMODE(name.stat().st_mode) & ~PRIVATE_FILE_MODE:
                name.chmod(PRIVATE_FILE_MODE)


def _statements(script: str) -> list[str]:
    """Split a migration into statements (no semicolons inside our DDL strings)."""
    return [part.strip() for part in script.split(";") if part.strip()]
