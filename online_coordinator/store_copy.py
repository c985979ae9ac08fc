"""Move a coordinator from its SQLite file to PostgreSQL (issue 19): ``store import-sqlite``.

A team outgrowing one machine points ``[database] url`` at an empty PostgreSQL database and
imports the old file into it. The copy is all or nothing (one PostgreSQL transaction), keeps
every row as it was (ids and SQLite's row ids too, so every reference and every cursor that
counts rows, such as the deposit check's, still holds), moves each identity sequence past
the copied ids, and then reads both sides back: the row count and a SHA-256 over every row,
table by table, must match, or nothing is committed. The SQLite file is only read (after
the same numbered migrations any opening applies, on a private copy made with SQLite's
backup API), so it stays as the backup, byte for byte.

Refused: a target that already holds anything (no merge of two histories: the events
table, the requests and the coin locks would contradict each other), and a source that is
not a coordinator database.
"""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from online_coordinator.pgstore import stored_values
from online_coordinator.store import Store, StoreError

#: Rows per INSERT batch.
CHUNK_ROWS = 2_000
#: Tables the store keeps for itself (its schema version), never copied.
OWN_TABLES = frozenset({"coldstation_schema", "sqlite_sequence"})


class CopyError(StoreError):
    """A copy that is refused or does not verify (nothing was committed)."""


@dataclass(frozen=True)
class CopiedTable:
    name: str
    rows: int
    sha256: str


@contextmanager
def open_source(path: Path) -> Iterator[Store]:
    """The old SQLite file as a store: read only (SQLite's backup API, which reads through
    its write-ahead log) into a private copy, once a read-only look shows it is a
    coordinator's database; the copy, not the file, is migrated to this version's schema."""
    try:
        source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise CopyError(f"{path}: not a readable SQLite file ({exc})") from None
    with tempfile.TemporaryDirectory(prefix="coldstation-import-") as folder:
        copy = Path(folder) / "coordinator.sqlite"
        try:
            version = source.execute("PRAGMA user_version").fetchone()[0]
            names = {r[0] for r in source.execute("SELECT name FROM sqlite_master")}
            if version < 1 or not {"wallets", "events"} <= names:
                raise CopyError(f"{path} is not a coordinator database")
            target = sqlite3.connect(copy)
            try:
                source.backup(target)
            finally:
                target.close()
        except sqlite3.Error as exc:
            raise CopyError(f"{path}: not a readable SQLite file ({exc})") from None
        finally:
            source.close()
        with Store.open(copy) as store:
            yield store


def import_sqlite(source: Store, target: Store) -> list[CopiedTable]:
    """Copy every table of the SQLite ``source`` into the empty PostgreSQL ``target``;
    see the module docstring."""
    if source.postgres or not target.postgres:
        raise CopyError("the copy goes from a SQLite file into the configured PostgreSQL store")
    schema = _shared_schema(source, target)
    with target.write() as db:
        for name in schema:
            if db.execute(f"SELECT 1 FROM {name} LIMIT 1").fetchone() is not None:
                raise CopyError(
                    f"the PostgreSQL store already holds rows in {name}: import only into an "
                    "empty database (nothing was copied)"
                )
        copied = [_copy_table(source, target, name, columns) for name, columns in schema.items()]
        for name in schema:
            _advance_sequence(target, name)
        for table in copied:
            check = _digest(target, table.name, schema[table.name])
            if (check.rows, check.sha256) != (table.rows, table.sha256):
                raise CopyError(
                    f"table {table.name} reads back differently ({check.rows} rows, sha256 "
                    f"{check.sha256[:16]}… against {table.rows}, {table.sha256[:16]}…): "
                    "nothing was committed"
                )
        target.event(  # in the copy's own transaction: no import without its event
            "store_imported",
            f"imported from {source.path}: "
            + ", ".join(f"{t.name} {t.rows}" for t in copied if t.rows),
        )
    return copied


def _shared_schema(source: Store, target: Store) -> dict[str, list[str]]:
    """Each table to copy, in foreign-key order, with its columns. Every table and column
    of the file must be one the target's migrations made: names are only ever taken from
    that schema into SQL, so a file with tables or columns of its own is refused, never
    spliced into a statement."""
    tables = {
        r["table_name"]: _target_columns(target, r["table_name"])
        for r in target.all(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
        if r["table_name"] not in OWN_TABLES
    }
    found = [
        r["name"]
        for r in source.all("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        if r["name"] not in OWN_TABLES
    ]
    strangers = sorted(set(found) - set(tables))
    if strangers or "events" not in found or "wallets" not in found:
        named = f" (it holds {strangers[0][:64]!r}, which the schema has not)" if strangers else ""
        raise CopyError(f"{source.path} is not a coordinator database{named}")
    schema = {}
    for name in _ordered(source, found):
        declared = [r["name"] for r in source.all(f"PRAGMA table_info({name})")]
        unknown = [c for c in declared if c not in tables[name]]
        if unknown:
            raise CopyError(
                f"{source.path}: table {name} has a column {unknown[0][:64]!r} the schema has not"
            )
        with_rowid = "id" not in declared and "rowid" in tables[name]
        schema[name] = ["rowid", *declared] if with_rowid else declared
    return schema


def _ordered(source: Store, names: list[str]) -> list[str]:
    """``names`` (known tables), each after the tables its foreign keys point at."""
    depends = {
        name: {
            r["table"]
            for r in source.all(f"PRAGMA foreign_key_list({name})")
            if r["table"] != name  # a self-reference (a bump's request) points at earlier ids
        }
        for name in names
    }
    ordered: list[str] = []
    while len(ordered) < len(names):
        ready = [n for n in names if n not in ordered and depends[n] <= set(ordered)]
        if not ready:
            raise CopyError(f"{source.path}: the tables' foreign keys form a cycle")
        ordered.extend(ready)
    return ordered


def _target_columns(target: Store, name: str) -> set[str]:
    rows = target.all(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
        "AND table_schema = current_schema()",
        name,
    )
    return {r["column_name"] for r in rows}


def _select(name: str, columns: Sequence[str]) -> tuple[str, bool]:
    """The query reading ``name`` in id (or row id) order, and whether it is ordered: a
    table with neither (``meta``) is sorted by the reader, since SQLite and PostgreSQL
    order text differently."""
    key = next((c for c in ("id", "rowid") if c in columns), None)
    query = f"SELECT {', '.join(columns)} FROM {name}"
    return (f"{query} ORDER BY {key}", True) if key else (query, False)


def _copy_table(source: Store, target: Store, name: str, columns: list[str]) -> CopiedTable:
    """Copy one table in chunks, hashing the rows as PostgreSQL will keep them as they go
    (one read of the file; a table without an order is hashed apart, sorted)."""
    insert = f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    query, ordered = _select(name, columns)
    cursor = source.db.execute(query)
    digest, count = hashlib.sha256(), 0
    while rows := [tuple(row) for row in cursor.fetchmany(CHUNK_ROWS)]:
        if ordered:
            _hash_rows(digest, [stored_values(row) for row in rows])
        target.db.executemany(insert, rows)
        count += len(rows)
    if not ordered:
        return _digest(source, name, columns, as_stored=True)
    return CopiedTable(name, count, digest.hexdigest())


def _digest(store: Store, name: str, columns: list[str], as_stored: bool = False) -> CopiedTable:
    """Count and SHA-256 of ``name``'s rows as ``store`` reads them (``as_stored``: as
    PostgreSQL keeps them, a NUL in text written as ``\\x00``; module pgstore)."""
    digest, count = hashlib.sha256(), 0
    query, ordered = _select(name, columns)
    batch: list[tuple[Any, ...]] = []
    for row in store.db.execute(query):
        batch.append(stored_values(tuple(row)) if as_stored else tuple(row))
        if ordered and len(batch) >= CHUNK_ROWS:
            _hash_rows(digest, batch)
            count, batch = count + len(batch), []
    _hash_rows(digest, batch if ordered else sorted(batch, key=repr))
    return CopiedTable(name, count + len(batch), digest.hexdigest())


def _hash_rows(digest: Any, rows: Iterable[tuple[Any, ...]]) -> None:
    """Each value with its type, so 1, '1' and b'1' never hash alike."""
    for row in rows:
        for value in row:
            if isinstance(value, memoryview):
                value = bytes(value)
            kind = type(value).__name__
            data = value if isinstance(value, bytes) else repr(value).encode()
            digest.update(kind.encode() + b":" + len(data).to_bytes(8, "big") + data)
        digest.update(b"\n")


def _advance_sequence(target: Store, name: str) -> None:
    """The identity behind ``id`` (or ``rowid``) continues after the copied rows."""
    present = _target_columns(target, name)
    column = "id" if "id" in present else "rowid" if "rowid" in present else None
    if column is None:
        return
    found = target.one("SELECT pg_get_serial_sequence(?, ?) AS sequence", name, column)
    if found is not None and found["sequence"] is not None:
        target.db.execute(
            f"SELECT setval(?, COALESCE((SELECT MAX({column}) FROM {name}), 0) + 1, false)",
            (found["sequence"],),
        )
