"""A journal export read entry by entry, each entry verified as it is read.

A year of a busy station is some 100,000 records, about 85 MB of export. Decoding that in
one piece (:func:`shared.journal.parse_export`) holds the file, its decoded map and every
parsed entry at once, and :func:`shared.journal.verify_journal` then wants them all again
as a list. Here the export is read as a stream instead:

* :class:`JournalExport` walks the export's canonical CBOR frame once to find the header
  (appliance id and audit key come *after* the entries in canonical key order), checks the
  header with :func:`~shared.journal.parse_export` itself (on the header alone), and then
  hands out the raw entries in order. Anything but the exact canonical frame is handed to
  ``parse_export`` whole, so a malformed export fails with the same message as before;
* :func:`parse_entries` parses and checks a run of entries (a worker process can do it, as
  the entries are independent until they are chained): the record, its audit-key signature
  and the entry's hash;
* the chain is checked by :class:`shared.journal.StreamVerifier`, the one check the
  station and ``verify_journal`` use too, fed one entry at a time: it keeps only hashes
  and sequence numbers, never entries;
* :func:`read_entries` yields the checked entries in order, from worker processes for a long
  journal (:class:`~shared.audit.workers.Workers`: a bounded window of chunks in flight, so
  memory does not grow with the journal) or in this process for a short one.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import cbor2
from coincurve import PublicKey

from shared import canonical, journal
from shared.audit.workers import Workers
from shared.journal import (
    MAX_ENTRY_BYTES,
    MAX_RECORD_BYTES,
    MAX_SEQ,
    Entry,
    JournalError,
    Record,
    parse_export,
)

#: Entries per chunk handed to a worker: big enough that pickling and the round trip are
#: small against parsing (~0.3 ms an entry), small enough to keep few in flight.
CHUNK = 256
#: Journals shorter than this are parsed in this process: starting workers costs more.
PARALLEL_FROM = 4096
#: The export's keys in canonical order (length first, then bytewise), as export_journal
#: writes them.
_KEYS = ("type", "entries", "version", "appliance", "audit_key")
_SIG_PREFIX = b"\xa2" + canonical.encode("sig")
_RECORD_KEY = canonical.encode("record")


class _NotCanonicalError(Exception):
    """The frame is not exactly what export_journal writes: let parse_export judge it."""


# -- the export's frame -------------------------------------------------------------------


def _head(major: int, value: int) -> bytes:
    """A canonical (shortest) CBOR head."""
    if value < 24:
        return bytes([major << 5 | value])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if value < 1 << (8 * size):
            return bytes([major << 5 | info]) + value.to_bytes(size, "big")
    raise ValueError("CBOR head value out of range")


class _Reader:
    """Shortest-form CBOR heads and strings from a binary stream; anything else (indefinite
    lengths, longer heads than needed, a short read) is :class:`_NotCanonicalError`."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream

    def exactly(self, size: int) -> bytes:
        data = self.stream.read(size)
        if len(data) != size:
            raise _NotCanonicalError
        return data

    def head(self, major: int) -> int:
        first = self.exactly(1)[0]
        if first >> 5 != major:
            raise _NotCanonicalError
        info = first & 0x1F
        if info < 24:
            return info
        sizes = {24: 1, 25: 2, 26: 4, 27: 8}
        if info not in sizes:
            raise _NotCanonicalError
        value = int.from_bytes(self.exactly(sizes[info]), "big")
        if _head(major, value) != bytes([first]) + value.to_bytes(sizes[info], "big"):
            raise _NotCanonicalError  # a longer head than the value needs
        return value

    def text(self) -> str:
        try:
            return self.exactly(self.head(3)).decode("utf-8")
        except UnicodeDecodeError:
            raise _NotCanonicalError from None

    def key(self, expected: str) -> None:
        if self.text() != expected:
            raise _NotCanonicalError


@dataclass(frozen=True)
class _Frame:
    """Where the entries are and what the header says."""

    count: int
    entries_at: int
    appliance_id: str
    audit_key: bytes


def _frame(stream: BinaryIO) -> _Frame:
    """Walk the export's frame, skipping over the entries (read in a second pass)."""
    reader = _Reader(stream)
    if reader.head(5) != len(_KEYS):
        raise _NotCanonicalError
    reader.key("type")
    kind = reader.text()
    reader.key("entries")
    count = reader.head(4)
    entries_at = stream.tell()
    for _ in range(count):
        size = reader.head(2)
        if size > MAX_ENTRY_BYTES:  # parse_entries names it; skip it here all the same
            stream.seek(size, io.SEEK_CUR)
        elif len(reader.stream.read(size)) != size:
            raise _NotCanonicalError
    reader.key("version")
    version = reader.head(0)
    reader.key("appliance")
    appliance = reader.text()
    reader.key("audit_key")
    key = reader.exactly(reader.head(2))
    if stream.read(1):
        raise _NotCanonicalError  # trailing bytes
    # the header is judged by parse_export itself, on the header with no entries: the same
    # checks and the same messages as for the whole document
    header = canonical.encode(
        {"type": kind, "version": version, "appliance": appliance, "audit_key": key, "entries": []}
    )
    appliance_id, audit_key, _ = parse_export(header)
    return _Frame(count, entries_at, appliance_id, audit_key)


class JournalExport:
    """One journal export, read from ``open_stream()`` (a fresh binary stream each call).

    Construction walks the frame once (raising :class:`~shared.journal.JournalError` for an
    export ``parse_export`` would refuse, with its message); :meth:`blobs` then yields the
    raw entries. A frame that is not exactly canonical is decoded whole by
    ``parse_export``, which either names the problem or (never, for what export_journal
    writes) accepts it; then the entries it parsed are used.
    """

    def __init__(self, open_stream: Callable[[], BinaryIO]) -> None:
        self._open = open_stream
        self._parsed: list[Entry] | None = None
        try:
            with open_stream() as stream:
                frame = _frame(stream)
        except _NotCanonicalError:
            with open_stream() as stream:
                appliance_id, audit_key, entries = parse_export(stream.read())
            self._parsed = entries
            frame = _Frame(len(entries), 0, appliance_id, audit_key)
        self._frame = frame

    @classmethod
    def from_bytes(cls, data: bytes) -> JournalExport:
        """An export already in memory (tests, a bare export given as bytes)."""
        if not isinstance(data, bytes):
            raise JournalError("export must be bytes")
        return cls(lambda: io.BytesIO(data))

    @property
    def appliance_id(self) -> str:
        return self._frame.appliance_id

    @property
    def audit_key(self) -> bytes:
        return self._frame.audit_key

    def __len__(self) -> int:
        return self._frame.count

    def blobs(self) -> Iterator[bytes | Oversized]:
        """The raw entries in export order; one too large to be an entry is not read."""
        if self._parsed is not None:
            yield from (e.to_bytes() for e in self._parsed)
            return
        with self._open() as stream:
            stream.seek(self._frame.entries_at)
            reader = _Reader(stream)
            for _ in range(self._frame.count):
                size = reader.head(2)
                if size > MAX_ENTRY_BYTES:
                    stream.seek(size, io.SEEK_CUR)
                    yield Oversized(size)
                else:
                    yield reader.exactly(size)


@dataclass(frozen=True)
class Oversized:
    """Stands for an entry too large to be one: only its length is read."""

    size: int


# -- entries ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckedEntry:
    """An entry as read: ``signed`` when its signature verifies under the bundle's audit
    key, ``prepared`` what the reader's ``prepare`` made of its record ahead of the replay
    (see :func:`read_entries`)."""

    entry: Entry
    signed: bool
    prepared: Any = None


@dataclass(frozen=True)
class EntryProblem:
    """An entry that does not parse: the export cannot be used (as with parse_export)."""

    position: int
    message: str


def parse_entry(blob: bytes) -> Entry:
    """:meth:`Entry.from_bytes`, without decoding the entry twice.

    ``Entry.from_bytes`` proves the bytes canonical by re-encoding the whole entry, then
    builds the record, which copies its details through a second encoding and encodes
    the record a third time to hash it. Here the entry is decoded once, the record's
    fields are held to every rule ``Record`` applies, and the entry is canonical exactly
    when its bytes are the canonical prefix (the signature, the key ``record``) followed by
    the record's own canonical encoding, which is then what is hashed. The details need no
    copy: they were just decoded from those bytes, and nothing else holds them. Whatever
    does not pass that way goes to ``Entry.from_bytes``, so the result and every error are
    the same (the test suite compares the two on every single-byte change).
    """
    fast = _parse_canonical(blob)
    return fast if fast is not None else Entry.from_bytes(blob)


def _parse_canonical(blob: bytes) -> Entry | None:
    if len(blob) > MAX_ENTRY_BYTES:
        return None
    try:
        plain = cbor2.loads(blob)
    except Exception:  # any decoding trouble: Entry.from_bytes names it
        return None
    if type(plain) is not dict or plain.keys() != {"record", "sig"}:
        return None
    sig = plain["sig"]
    if type(sig) is not bytes:
        return None
    prefix = _SIG_PREFIX + _head(2, len(sig)) + sig + _RECORD_KEY
    if not blob.startswith(prefix) or len(blob) - len(prefix) > MAX_RECORD_BYTES:
        return None
    try:
        record = _record(plain["record"], memoryview(blob)[len(prefix) :])
        return Entry(record, sig) if record is not None else None
    except (JournalError, canonical.CanonicalError):
        return None


def _record(plain: object, encoded: memoryview) -> Record | None:
    """The record ``Record.from_plain(plain)`` builds, when ``encoded`` is its canonical
    encoding (else None): the same checks, in a cheaper order of work."""
    if type(plain) is not dict or plain.keys() != journal._RECORD_KEYS:
        return None
    if (
        plain["type"] != journal.RECORD_TYPE
        or plain["format"] != journal.RECORD_FORMAT
        or isinstance(plain["format"], bool)
    ):
        return None
    journal._check.integer(plain["seq"], "seq", 0, MAX_SEQ)
    journal._check.fixed_bytes(plain["prev_hash"], "prev_hash", 32)
    journal._check.integer(plain["time"], "time", 0, journal.MAX_TIME)
    journal._check.text(plain["appliance"], "appliance id", journal.MAX_APPLIANCE_ID)
    journal._check_event(plain["event"])
    actors = journal._check_actors(plain["actors"])
    subjects = journal._check_subjects(plain["subjects"])
    journal._check_decision(plain["decision"])
    details = plain["details"]
    if type(details) is not dict or not _details_ok(details, 0):
        return None
    # Every value is now of a plain type (checked above, as Record checks it), for which
    # canonical CBOR differs from what cbor2 writes by default only in the order of map
    # keys: with every map's keys already in canonical order (by encoded length, then
    # bytes), the default encoding *is* the canonical one, and several times cheaper.
    if not _ordered(plain) or not _ordered(plain["subjects"]):
        return None
    if cbor2.dumps(plain) != encoded:  # the record's own canonical encoding?
        return None
    record = object.__new__(Record)
    # the fields Record.__post_init__ would have set (frozen: written to its __dict__)
    record.__dict__.update(
        seq=plain["seq"],
        prev_hash=plain["prev_hash"],
        time=plain["time"],
        appliance_id=plain["appliance"],
        event=plain["event"],
        actors=actors,
        subjects=subjects,
        decision=plain["decision"],
        details=details,
        _digest=hashlib.sha256(encoded).digest(),
    )
    return record


def _details_ok(value: dict[Any, Any], depth: int) -> bool:
    """The rules ``Record`` holds details to (``_check_detail_map``), for the exact types
    CBOR decodes to; False for anything else, which ``Entry.from_bytes`` then judges."""
    if len(value) > journal.MAX_DETAIL_ITEMS or not _ordered(value):
        return False
    for key, item in value.items():
        if type(key) is not str or not 0 < len(key) <= journal.MAX_SUBJECT_NAME * 2:
            return False
        if not _detail_ok(item, depth + 1):
            return False
    return True


def _ordered(mapping: dict[Any, Any]) -> bool:
    """True when the keys are ASCII text in canonical CBOR order (by length of the encoded
    bytes, then by the bytes: what ``cbor2.dumps(canonical=True)`` sorts them into); False
    for any other key (``Entry.from_bytes`` then judges the entry)."""
    previous_length, previous = -1, ""
    for key in mapping:
        if type(key) is not str or not key.isascii():
            return False
        length = len(key)  # of ASCII text: its UTF-8 bytes, in the same order
        if length < previous_length or (length == previous_length and key <= previous):
            return False
        previous_length, previous = length, key
    return True


def _detail_ok(value: Any, depth: int) -> bool:
    """A decoded CBOR value (untyped by nature) within the journal's detail limits; the
    exact-type tests are the fast path of the replay and keep bools out of the ints."""
    if depth > journal.MAX_DETAIL_DEPTH:
        return False
    kind = type(value)
    if kind is bool:
        return True
    if kind is int:
        return bool(-(2**64) <= value < 2**64)
    if kind is str or kind is bytes:
        return len(value) <= journal.MAX_DETAIL_TEXT
    if kind is list:
        return len(value) <= journal.MAX_DETAIL_ITEMS and all(
            _detail_ok(item, depth + 1) for item in value
        )
    if kind is dict:
        return _details_ok(value, depth)
    return False


def parse_entries(
    audit_key: bytes,
    first: int,
    blobs: Sequence[bytes | Oversized],
    prepare: Callable[[Record], Any] | None = None,
) -> list[CheckedEntry | EntryProblem]:
    """Parse and check ``blobs`` (export positions ``first``...), stopping at the first
    that does not parse (as Entry.from_bytes would say it); ``prepare`` is called on each
    record in order (best effort: what it raises is dropped, the replay then does the work
    itself). Pure, so a worker can run it."""
    out: list[CheckedEntry | EntryProblem] = []
    verify = _verifier(audit_key)
    for offset, blob in enumerate(blobs):
        if isinstance(blob, Oversized):
            out.append(
                EntryProblem(
                    first + offset,
                    f"entry: {blob.size} bytes exceeds the {MAX_ENTRY_BYTES}-byte limit",
                )
            )
            break
        try:
            entry = parse_entry(blob)
        except JournalError as exc:
            out.append(EntryProblem(first + offset, str(exc)))
            break
        signed = verify(entry.signature, entry.record.hash())
        prepared = None
        if prepare is not None:
            try:
                prepared = prepare(entry.record)
            except Exception:  # best effort: the replay does it itself, and says what fails
                prepared = None
        out.append(CheckedEntry(entry, signed, prepared))
    return out


def _verifier(audit_key: bytes) -> Callable[[bytes, bytes], bool]:
    """``ecdsa.verify(audit_key, ...)`` with the key parsed once, not once per entry (the
    same answers: a key that does not parse verifies nothing, a bad signature is False)."""
    try:
        key = PublicKey(bytes(audit_key))
    except (ValueError, TypeError):
        return lambda der, digest: False

    def verify(der: bytes, digest: bytes) -> bool:
        if len(digest) != 32:
            raise ValueError("digest must be 32 bytes")
        try:
            return key.verify(bytes(der), digest, hasher=None)
        except (ValueError, TypeError):
            return False

    return verify


_Chunk = tuple[bytes, int, list[bytes | Oversized], Callable[[Record], Any] | None]


def _parse_chunk(job: _Chunk) -> list[CheckedEntry | EntryProblem]:
    return parse_entries(*job)


Preparer = Callable[[Sequence[bytes | Oversized]], Callable[[Record], Any]]


def _chunks(export: JournalExport, prepare: Preparer | None) -> Iterator[_Chunk]:
    chunk: list[bytes | Oversized] = []
    first = 0
    for position, blob in enumerate(export.blobs()):
        if not chunk:
            first = position
        chunk.append(blob)
        if len(chunk) == CHUNK or isinstance(blob, Oversized):
            yield export.audit_key, first, chunk, prepare(chunk) if prepare else None
            chunk = []
    if chunk:
        yield export.audit_key, first, chunk, prepare(chunk) if prepare else None


def read_entries(
    export: JournalExport, workers: Workers | None = None, prepare: Preparer | None = None
) -> Iterator[CheckedEntry | EntryProblem]:
    """Every entry in order, parsed and checked; an :class:`EntryProblem` ends the stream.

    With ``workers`` and a long journal, worker processes parse chunks of entries while
    the caller goes on with what it does with each (a bounded number of chunks in flight,
    so memory stays flat however long the journal). Then ``prepare(blobs)``, called in
    order with each chunk's raw entries as it is sent, gives the (picklable) function that
    prepares each of that chunk's records for the caller, in the worker
    (:attr:`CheckedEntry.prepared`); read in this process, no record is prepared: the
    caller does that work as it goes.
    """
    pool = workers or Workers(0)
    parallel = len(export) >= PARALLEL_FROM and pool.processes > 0
    chunks = _chunks(export, prepare if parallel else None)
    for results in pool.map(_parse_chunk, chunks, parallel):
        yield from results
        if results and isinstance(results[-1], EntryProblem):
            return


# -- the chain, one entry at a time -------------------------------------------------------


__all__ = [
    "CHUNK",
    "PARALLEL_FROM",
    "CheckedEntry",
    "EntryProblem",
    "JournalExport",
    "Oversized",
    "Preparer",
    "parse_entries",
    "parse_entry",
    "read_entries",
]
