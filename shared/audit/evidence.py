"""The auditor's inputs, parsed from bytes into typed objects (no file or network I/O).

Two kinds of evidence reach an auditor: each appliance's audit bundle (its journal export,
every policy it installed, every display transcript; ``coldstation-appliance journal
export --evidence``) and the coordinator's evidence document (``coldstation-coordinator
export``). Parsing checks only *form*: whether a file can be read at all. Whether what it
says is true (signatures, hashes, quorums, decisions) is judged by :mod:`shared.audit.replay`,
which names every problem instead of stopping at the first.

A bundle is not read whole: a year's journal is some 100,000 records, each with a
transcript. Its journal is a :class:`~shared.audit.journal_stream.JournalExport` (the frame
and header checked here, the entries read and checked one by one by the replay) and its
transcripts a :class:`TranscriptStore` (names checked here, each file read when its record
is replayed). The coordinator's document is not held whole either (a year of it is some
0.5 GB of JSON): it is read as a stream, each request and broadcast parsed on its own (by
worker processes for a long one) into what the checks need of it
(:mod:`shared.audit.facts`), kept on disk (:mod:`shared.audit.spool`) until the checks
walk them. The caller hands in functions that open or read the bytes, so this module still
does no I/O of its own.

Anything that cannot be parsed raises :class:`EvidenceError` with a one-line message naming
the file and the field, so the auditor's program can exit 2 without a traceback: a report
built on half-read evidence would be worse than none.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import itertools
import json
import pickle
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import cbor2

from shared.audit.facts import (
    BroadcastEvidence,
    ChangeFacts,
    Match,
    ReadOnlyPsbt,
    Receipt,
    ReceiptFacts,
    RequestEvidence,
    Signing,
    broadcast_facts,
    match,
    request_facts,
)
from shared.audit.journal_stream import JournalExport, parse_entry
from shared.audit.spool import Records, Spool
from shared.audit.workers import Workers
from shared.bitcoin.descriptor import Descriptor, DescriptorError
from shared.bitcoin.encoding import DecodeError
from shared.bitcoin.tx import Transaction
from shared.journal import Entry, JournalError
from shared.policy import PolicyError, SignedPolicy
from shared.psbt import Psbt, PsbtError

EVIDENCE_TYPE = "coldstation-coordinator-evidence"
EVIDENCE_VERSION = 1
MAX_TRANSCRIPT_BYTES = 4 * 1024 * 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")


class EvidenceError(ValueError):
    """Evidence that cannot be read at all; the message names the file and the field."""


# -- appliance bundle ---------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyFile:
    """One ``policies/NNNN.cbor`` file: the signed policy and the hash the journal names."""

    name: str
    signed: SignedPolicy
    hash: bytes


@dataclass(frozen=True)
class Transcript:
    """One ``transcripts/<hash>.cbor`` file; ``digest`` is the hash of what it holds now."""

    name: str
    plain: dict[str, Any]
    digest: bytes


class TranscriptStore:
    """A bundle's transcripts by hash (the file's stem), each read and parsed when asked for.

    The names are checked when the store is made (a file not named by its SHA-256 is
    refused at once, as before); a file's content when :meth:`get` first reads it, or, for
    files no record named, by :meth:`check_unread` at the end of the replay: every file is
    still held to the same form, without holding them all in memory.
    """

    def __init__(
        self,
        source: str,
        names: Iterable[str],
        load: Callable[[str], bytes],
        portable: bool = False,
    ) -> None:
        self._source = source
        self._load = load
        #: ``load`` reads by name and carries no content, so worker processes may be handed
        #: it to read transcripts ahead of the replay (see :meth:`reader`)
        self._portable = portable
        self._names: dict[str, str] = {}
        for name in sorted(names):
            stem = name.removesuffix(".cbor")
            if not _HEX64.fullmatch(stem):
                raise EvidenceError(
                    f"{source}/transcripts/{name}: a transcript's name must be its SHA-256 in hex"
                )
            self._names[stem] = name
        self._read: set[str] = set()

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, stem: object) -> bool:
        return stem in self._names

    def get(self, stem: str) -> Transcript | None:
        """The transcript whose file is named ``stem``, or None when there is none."""
        name = self._names.get(stem)
        if name is None:
            return None
        self._read.add(stem)
        return _transcript(f"{self._source}/transcripts/{name}", name, self._load(name))

    def reader(self) -> Callable[[str], Transcript | None] | None:
        """A function reading and parsing a transcript by its hash, to run in a worker
        process ahead of the replay (None when this store's files cannot be read there).
        What it reads is used only through :meth:`preloaded`."""
        if not self._portable:
            return None
        return _TranscriptReader(self._source, self._load)

    def preloaded(self, stem: str) -> bool:
        """True, and ``stem`` counts as read, when what :meth:`reader` read for ``stem`` is
        the file :meth:`get` would read for it."""
        if self._names.get(stem) != f"{stem}.cbor":
            return False
        self._read.add(stem)
        return True

    def check_unread(self) -> None:
        """Parse every file :meth:`get` never read (raises EvidenceError as parsing would)."""
        for stem, name in self._names.items():
            if stem not in self._read:
                _transcript(f"{self._source}/transcripts/{name}", name, self._load(name))
                self._read.add(stem)


@dataclass(frozen=True)
class _TranscriptReader:
    """Reads ``<hash>.cbor`` with a store's loader, in a worker process (picklable)."""

    source: str
    load: Callable[[str], bytes]

    def __call__(self, stem: str) -> Transcript:
        name = f"{stem}.cbor"
        return _transcript(f"{self.source}/transcripts/{name}", name, self.load(name))


@dataclass(frozen=True)
class ApplianceBundle:
    """One appliance's audit bundle; ``source`` says where it came from, for the report.

    ``journal`` yields its entries as the replay reads them; ``journal_where`` is how an
    unusable entry's error names the file.
    """

    source: str
    appliance_id: str
    audit_key: bytes
    journal: JournalExport
    policies: tuple[PolicyFile, ...]
    transcripts: TranscriptStore
    journal_where: str


def open_bundle(
    source: str,
    open_journal: Callable[[], BinaryIO],
    policies: Mapping[str, bytes],
    transcript_names: Iterable[str],
    load_transcript: Callable[[str], bytes],
    journal_name: str = "journal.cbor",
    *,
    portable: bool = False,
) -> ApplianceBundle:
    """A bundle whose journal is read from ``open_journal()`` (a fresh binary stream each
    call) and whose transcripts are read by name with ``load_transcript``: the frame, the
    header, the policies and the transcript names are checked now, the rest as the replay
    reads it. ``journal_name`` is how errors name the journal file (a bare export has no
    folder); ``portable`` says ``load_transcript`` may be pickled to worker processes (it
    reads files by name, holding no content)."""
    where = f"{source}/{journal_name}" if journal_name else source
    try:
        journal = JournalExport(open_journal)
    except JournalError as exc:
        raise EvidenceError(f"{where}: {exc}") from exc
    parsed_policies = tuple(
        _policy(f"{source}/policies/{name}", name, data) for name, data in sorted(policies.items())
    )
    transcripts = TranscriptStore(source, transcript_names, load_transcript, portable)
    return ApplianceBundle(
        source,
        journal.appliance_id,
        journal.audit_key,
        journal,
        parsed_policies,
        transcripts,
        where,
    )


def parse_bundle(
    source: str,
    journal: bytes,
    policies: Mapping[str, bytes],
    transcripts: Mapping[str, bytes],
    journal_name: str = "journal.cbor",
) -> ApplianceBundle:
    """:func:`open_bundle` for a bundle already in memory (file name -> bytes for the two
    folders)."""
    if not isinstance(journal, bytes):
        raise EvidenceError(f"{source}: the journal export must be bytes")
    return open_bundle(
        source,
        lambda: io.BytesIO(journal),
        policies,
        transcripts,
        transcripts.__getitem__,
        journal_name,
    )


def _policy(where: str, name: str, data: bytes) -> PolicyFile:
    try:
        signed = SignedPolicy.from_bytes(data)
    except PolicyError as exc:
        raise EvidenceError(f"{where}: not a signed policy: {exc}") from exc
    return PolicyFile(name, signed, signed.policy.hash())


def _transcript(where: str, name: str, data: bytes) -> Transcript:
    """A transcript is keyed by the hash in its name (what the journal points at).

    The content is hashed as stored; when that hash is the one the signed journal names,
    these are exactly the canonical bytes the appliance wrote, so plain CBOR decoding is
    enough (a file whose hash differs is reported as altered and its content never used).
    """
    stem = name.removesuffix(".cbor")
    if len(data) > MAX_TRANSCRIPT_BYTES:
        raise EvidenceError(f"{where}: larger than {MAX_TRANSCRIPT_BYTES} bytes")
    try:
        plain = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise EvidenceError(f"{where}: not a CBOR transcript: {exc}") from exc
    if not isinstance(plain, dict):
        raise EvidenceError(f"{where}: a transcript must be a map")
    return Transcript(stem, plain, hashlib.sha256(data).digest())


# -- coordinator evidence -----------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """A wallet member: an appliance (with its receipts) or an external cosigner key."""

    appliance_id: str | None
    key: str
    role: str
    export_receipt: Entry | None
    pin_receipt: Entry | None

    @property
    def pubkey(self) -> bytes | None:
        """The raw public key of an appliance member (its key is ``[origin]hex``)."""
        text = self.key.split("]")[-1]
        try:
            key = bytes.fromhex(text)
        except ValueError:
            return None
        return key if len(key) == 33 else None


@dataclass(frozen=True)
class WalletEvidence:
    """A wallet as the coordinator describes it. ``birth_height`` is the coordinator's
    unsigned claim: the replay checks it (:mod:`shared.audit.birth`) and never walks the
    chain from it."""

    name: str
    network: str
    kind: str
    threshold: int | None
    birth_height: int
    descriptors: tuple[Descriptor, ...]
    members: tuple[Member, ...]


class VerifiedRequests(Mapping[bytes, ChangeFacts]):
    """Request hash -> what re-deriving change needs of the first request with that hash
    whose hash recomputes from its PSBT (a journal record naming that hash then names
    exactly that transaction and the coins it spends). Kept in a :class:`Spool`, read when
    a journal record names the hash."""

    def __init__(self) -> None:
        self._at: dict[bytes, int] = {}
        self._spool: Spool[ChangeFacts] = Spool()

    def add(self, digest: bytes, pickled: bytes) -> None:
        if digest not in self._at:
            self._at[digest] = self._spool.append_pickled(pickled)

    def __getitem__(self, digest: bytes) -> ChangeFacts:
        return self._spool[self._at[digest]]

    def __contains__(self, digest: object) -> bool:
        return digest in self._at

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._at)

    def __len__(self) -> int:
        return len(self._at)


@dataclass
class CoordinatorEvidence:
    """The coordinator's evidence as the checks read it. ``requests`` and ``broadcasts``
    are read back in order from a :class:`~shared.audit.spool.Spool` (facts, not PSBTs:
    see :mod:`shared.audit.facts`); ``verified`` gives the requests whose hash recomputes
    by that hash, ``highest_hint`` is the largest derivation index any PSBT hints at,
    ``matched`` each broadcast (by position) that is a request's transaction, with its
    signatures checked (:class:`~shared.audit.facts.Match`). A request's receipt that is
    no journal entry makes the evidence unusable: :meth:`resolve_receipts` says so (after
    the journals are replayed, where such a receipt was first parsed before)."""

    source: str
    appliances: Mapping[str, bytes]
    wallets: tuple[WalletEvidence, ...]
    requests: Records[RequestEvidence]
    broadcasts: Records[BroadcastEvidence]
    alerts: tuple[str, ...]
    verified: Mapping[bytes, ChangeFacts] = field(default_factory=dict, repr=False)
    highest_hint: int = -1
    matched: Mapping[int, Match] = field(default_factory=dict, repr=False)
    receipt_error: EvidenceError | None = field(default=None, repr=False)

    def resolve_receipts(self) -> None:
        """Raise EvidenceError for the first request receipt that is no journal entry."""
        if self.receipt_error is not None:
            raise self.receipt_error


class _Field:
    """A JSON value with its path, so every error names exactly where it is.

    ``entries`` is shared by every field of one document: a receipt kept in several places
    (the wallet members) is parsed once.
    """

    def __init__(self, value: Any, path: str, entries: dict[bytes, Entry]) -> None:
        self.value = value
        self.path = path
        self.entries = entries

    def fail(self, problem: str) -> EvidenceError:
        return EvidenceError(f"{self.path}: {problem}")

    def __getitem__(self, key: str | int) -> _Field:
        if isinstance(key, str):
            if not isinstance(self.value, dict) or key not in self.value:
                raise self.fail(f"missing field {key!r}")
            return _Field(self.value[key], f"{self.path}.{key}", self.entries)
        return _Field(self.value[key], f"{self.path}[{key}]", self.entries)

    def items(self) -> list[_Field]:
        if not isinstance(self.value, list):
            raise self.fail("must be a list")
        return [self[i] for i in range(len(self.value))]

    def text(self, optional: bool = False) -> str:
        if optional and self.value is None:
            return ""
        if not isinstance(self.value, str):
            raise self.fail(f"must be text, not {type(self.value).__name__}")
        return self.value

    def integer(self, optional: bool = False) -> int | None:
        if optional and self.value is None:
            return None
        if not isinstance(self.value, int) or isinstance(self.value, bool):
            raise self.fail(f"must be an integer, not {type(self.value).__name__}")
        return self.value

    def hex(self, optional: bool = False) -> bytes | None:
        if optional and self.value is None:
            return None
        try:
            return bytes.fromhex(self.text())
        except ValueError:
            raise self.fail("is not hex") from None

    def base64(self) -> bytes:
        try:
            return base64.b64decode(self.text(), validate=True)
        except (binascii.Error, ValueError):
            raise self.fail("is not base64") from None

    def psbt(self) -> Psbt:
        try:
            return ReadOnlyPsbt.parse(self.base64())
        except PsbtError as exc:
            raise self.fail(f"not a PSBT: {exc}") from exc

    def entry(self) -> Entry | None:
        data = self.hex(optional=True)
        if data is None:
            return None
        if data not in self.entries:
            try:
                self.entries[data] = Entry.from_bytes(data)
            except JournalError as exc:
                raise self.fail(f"not a journal entry: {exc}") from exc
        return self.entries[data]


#: Requests and broadcasts fewer than this are parsed in this process: starting workers
#: costs more.
PARALLEL_FROM = 1024
#: Requests (or broadcasts) per job handed to a worker.
CHUNK = 128


def parse_coordinator(
    source: str, data: bytes, workers: Workers | None = None
) -> CoordinatorEvidence:
    """Parse ``coldstation-coordinator export`` output (UTF-8 JSON) held in memory."""
    return open_coordinator(source, lambda: io.BytesIO(data), workers)


def open_coordinator(
    source: str, open_stream: Callable[[], BinaryIO], workers: Workers | None = None
) -> CoordinatorEvidence:
    """Parse ``coldstation-coordinator export`` output read from ``open_stream()`` (a fresh
    binary stream each call).

    The document is read as a stream: the export writes it as ``json.dumps(indent=1,
    sort_keys=True)`` does, so its broadcasts and requests are found one by one, each
    parsed on its own (with ``workers``, by worker processes, in chunks, in order) into
    what the checks need (:mod:`shared.audit.facts`), and kept on disk in order, not in
    memory. The rest (appliances, wallets, alerts: small) is then parsed as one document
    with empty lists in their place, and must be exactly as the export writes it. Any
    document not laid out so is parsed whole, as before. Either way the result, and the
    first error, are the same: a document that is not JSON says so before anything else,
    and field errors are raised in the order the fields are read (type, version,
    appliances, wallets, requests, broadcasts, alerts).
    """
    pool = workers or Workers(0)
    try:
        with open_stream() as stream:
            scanner = _Scanner(stream)
            found = scanner.find(_LISTS[0])
            if found < 0:
                raise _NotCanonicalError
            head = scanner.take(found + len(_LISTS[0]))
            lists = _read_lists(pool, _streamed_jobs(source, scanner))
            plain = _canonical_rest(head + b'[],\n "requests": []' + scanner.rest())
    except _NotCanonicalError:
        return _whole(source, open_stream, pool)
    root = _Field(plain, source, {})
    appliances, wallets = _header(root)
    return _assemble(root, appliances, wallets, lists, None)


def _whole(source: str, open_stream: Callable[[], BinaryIO], pool: Workers) -> CoordinatorEvidence:
    """The document parsed whole (how any document was parsed before)."""
    with open_stream() as stream:
        data = stream.read()
    try:
        plain = json.loads(data.decode("utf-8"), object_pairs_hook=_unique)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise EvidenceError(f"{source}: not JSON: {exc}") from exc
    del data
    root = _Field(plain, source, {})
    appliances, wallets = _header(root)
    root["requests"].items()  # a list, or the error it is not
    broadcasts_error = None
    try:
        root["broadcasts"].items()
    except EvidenceError as exc:
        broadcasts_error = exc
    lists = _read_lists(pool, _listed(source, plain))
    return _assemble(root, appliances, wallets, lists, broadcasts_error)


def _header(root: _Field) -> tuple[dict[str, bytes], tuple[WalletEvidence, ...]]:
    plain = root.value
    if not isinstance(plain, dict) or plain.get("type") != EVIDENCE_TYPE:
        raise root.fail(f"not a coordinator evidence document (type {EVIDENCE_TYPE!r})")
    if root["version"].value != EVIDENCE_VERSION:
        raise root["version"].fail(f"unsupported version {root['version'].value!r}")
    appliances = _appliances(root["appliances"])
    return appliances, tuple(_wallet(w) for w in root["wallets"].items())


def _assemble(
    root: _Field,
    appliances: dict[str, bytes],
    wallets: tuple[WalletEvidence, ...],
    lists: _Lists,
    broadcasts_error: EvidenceError | None,
) -> CoordinatorEvidence:
    for error in (lists.request_error, broadcasts_error, lists.broadcast_error):
        if error is not None:
            raise error
    alerts = tuple(f"{a['kind'].text()}: {a['message'].text()}" for a in root["alerts"].items())
    return CoordinatorEvidence(
        root.path,
        appliances,
        wallets,
        lists.requests,
        lists.broadcasts,
        alerts,
        lists.verified,
        lists.highest,
        lists.matched,
        lists.receipt_error,
    )


class _NotCanonicalError(Exception):
    """Not laid out as the export writes it (or not JSON at all): parse it whole."""


Job = tuple[str, str, int, list[Any], bool]


def _listed(source: str, plain: dict[str, Any]) -> Iterator[Job]:
    """The jobs for a document parsed whole: its broadcasts, then its requests (the order a
    stream reads them)."""
    for kind in ("broadcasts", "requests"):
        values = plain.get(kind)
        if isinstance(values, list):
            for first in range(0, len(values), CHUNK):
                yield kind, f"{source}.{kind}", first, values[first : first + CHUNK], False


@dataclass
class _Lists:
    requests: Spool[RequestEvidence]
    broadcasts: Spool[BroadcastEvidence]
    verified: VerifiedRequests
    highest: int = -1
    by_unsigned: dict[bytes, list[int]] = field(default_factory=dict)
    receipt_error: EvidenceError | None = None
    request_error: EvidenceError | None = None
    broadcast_error: EvidenceError | None = None
    matched: dict[int, Match] = field(default_factory=dict)
    claimed: set[bytes] = field(default_factory=set)
    keys: dict[bytes, bytes] = field(default_factory=dict)

    def claim(self, unsigned: bytes | None, signing: bytes) -> None:
        """The first request with a transaction claims the broadcasts of it (the broadcasts
        come first in the document): their signatures are checked now, against its
        signature hashes, while the workers parse on (judged later, in their turn)."""
        positions = self.by_unsigned.get(unsigned) if unsigned is not None else None
        if positions is None or unsigned in self.claimed:
            return
        self.claimed.add(unsigned)  # type: ignore[arg-type]
        facts: Signing = pickle.loads(signing)
        for position in positions:
            self.matched[position] = match(facts, self.broadcasts[position], self.keys)


def _read_lists(pool: Workers, jobs: Iterator[Job]) -> _Lists:
    """Run the broadcast and request jobs (in worker processes when there are many): the
    facts go to spools; the first error of each list is kept, to be raised in its turn."""
    lists = _Lists(Spool(), Spool(), VerifiedRequests())
    ahead: list[Job] = []
    count = 0
    for job in jobs:  # parsed in this process when the lists are short
        ahead.append(job)
        count += len(job[3])
        if count >= PARALLEL_FROM:
            break
    parallel = count >= PARALLEL_FROM
    for results in pool.map(_coordinator_job, itertools.chain(ahead, jobs), parallel):
        for item in results:
            if isinstance(item, str):  # _NOT_JSON
                raise _NotCanonicalError
            kind, error, pickled, extra = item
            if kind == "broadcasts":
                if error is not None or lists.broadcast_error is not None:
                    lists.broadcast_error = lists.broadcast_error or error
                    continue  # the evidence is unusable: only its form is still checked
                position = lists.broadcasts.append_pickled(pickled)
                lists.by_unsigned.setdefault(extra, []).append(position)
                continue
            if error is not None or lists.request_error is not None:
                lists.request_error = lists.request_error or error
                continue
            lists.requests.append_pickled(pickled)
            digest, verified, change, hint, bad_receipt, unsigned, signing = extra
            if verified:
                lists.verified.add(digest, change)
            lists.highest = max(lists.highest, hint)
            if bad_receipt is not None and lists.receipt_error is None:
                lists.receipt_error = EvidenceError(bad_receipt)
            lists.claim(unsigned, signing)
    return lists


_NOT_JSON = "not JSON"  # a job's result for an element that is not JSON on its own
#: An element with more containers than this may nest deeper than the whole document may
#: (its depth counts from the document's): it is left to the whole-document parse.
_MAX_CONTAINERS = 256


def _coordinator_job(job: Job) -> list[Any]:
    """A worker's job: parse requests or broadcasts into their facts (see
    :mod:`shared.audit.facts`), each as (kind, error, pickled facts, what the reader keeps
    in memory); ``_NOT_JSON`` for an element of a streamed document that is not JSON."""
    kind, path, first, values, is_text = job
    out: list[Any] = []
    for offset, raw in enumerate(values):
        if is_text:
            if raw.count(b"[") + raw.count(b"{") > _MAX_CONTAINERS:
                return [_NOT_JSON]
            try:
                value = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique)
            except (UnicodeDecodeError, ValueError, RecursionError):
                return [_NOT_JSON]
        else:
            value = raw
        field_ = _Field(value, f"{path}[{first + offset}]", {})
        try:
            if kind == "requests":
                out.append((kind, None, *_request_facts(field_)))
            else:
                facts = _broadcast(first + offset, field_)
                out.append((kind, None, pickle.dumps(facts, _PICKLE), facts.unsigned))
        except EvidenceError as exc:
            out.append((kind, exc, None, None))
    return out


_PICKLE = pickle.HIGHEST_PROTOCOL


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A repeated key would let two readers see two different documents: refuse it."""
    value = dict(pairs)
    if len(value) != len(pairs):
        raise ValueError("a JSON object repeats a key")
    return value


# -- the document as a stream -------------------------------------------------------------

_BLOCK = 1 << 22
#: The most read ahead to find where a list starts or an element ends (a request is some
#: kilobytes): a document that needs more is parsed whole.
_SPAN = 1 << 26
_LISTS = (b'\n "broadcasts": ', b',\n "requests": ')
_NEXT = b",\n  {"
_END = b"\n ]"
_CLOSE = b"\n  }"


class _Scanner:
    """The export's bytes, read block by block."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.buffer = b""
        self.at = 0  # position in buffer

    def _more(self) -> bool:
        block = self.stream.read(_BLOCK)
        if not block:
            return False
        self.buffer = self.buffer[self.at :] + block
        self.at = 0
        return True

    def find(self, pattern: bytes) -> int:
        """Position in ``buffer`` of ``pattern`` at or after ``at`` (reading on), or -1
        (also when it is not within :data:`_SPAN` bytes: not a document to stream)."""
        start = self.at
        while True:
            found = self.buffer.find(pattern, start)
            if found >= 0:
                return found
            if len(self.buffer) - self.at > _SPAN:
                return -1
            start = max(self.at, len(self.buffer) - len(pattern) + 1)
            offset = self.at
            if not self._more():
                return -1
            start -= offset  # the buffer now starts at the old ``at``

    def expect(self, pattern: bytes) -> bool:
        """True, and past it, when ``pattern`` comes next."""
        while len(self.buffer) - self.at < len(pattern):
            if not self._more():
                return False
        if self.buffer.startswith(pattern, self.at):
            self.at += len(pattern)
            return True
        return False

    def take(self, end: int) -> bytes:
        """The bytes from ``at`` to ``end`` (a position in ``buffer``); ``at`` moves there."""
        data = self.buffer[self.at : end]
        self.at = end
        return data

    def rest(self) -> bytes:
        while self._more():
            pass
        return self.take(len(self.buffer))


def _elements(scanner: _Scanner) -> Iterator[bytes]:
    """The elements of a list written at the top level by ``json.dumps(indent=1)``, each
    ``{`` to ``}``, as text; the scanner ends past the list's ``]``."""
    if scanner.expect(b"[]"):
        return
    if not scanner.expect(b"[\n  "):
        raise _NotCanonicalError
    while True:
        if not scanner.expect(b"{"):
            raise _NotCanonicalError
        close = scanner.find(_CLOSE)
        if close < 0:
            raise _NotCanonicalError
        yield b"{" + scanner.take(close + len(_CLOSE))
        if scanner.expect(_NEXT):
            scanner.at -= 1  # back to the "{"
            continue
        if scanner.expect(_END):
            return
        raise _NotCanonicalError


def _streamed_jobs(source: str, scanner: _Scanner) -> Iterator[Job]:
    """The jobs for a streamed document: its broadcasts, then its requests, as text."""
    for kind, lead in (("broadcasts", b""), ("requests", _LISTS[1])):
        if lead and not scanner.expect(lead):
            raise _NotCanonicalError
        chunk: list[bytes] = []
        first = 0
        for element in _elements(scanner):
            chunk.append(element)
            if len(chunk) == CHUNK:
                yield kind, f"{source}.{kind}", first, chunk, True
                first += len(chunk)
                chunk = []
        if chunk:
            yield kind, f"{source}.{kind}", first, chunk, True


def _canonical_rest(small: bytes) -> Any:
    """The document with empty lists: it must be exactly as the export writes it (then the
    lists found are its top-level ``broadcasts`` and ``requests``)."""
    try:
        text = small.decode("utf-8")
        plain = json.loads(text, object_pairs_hook=_unique)
        again = json.dumps(plain, indent=1, sort_keys=True)
    except (UnicodeDecodeError, ValueError, RecursionError, TypeError):
        raise _NotCanonicalError from None
    if text not in (again, again + "\n") or _depth(plain) > _MAX_CONTAINERS:
        raise _NotCanonicalError
    return plain


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in item)
    return deepest


def _appliances(field: _Field) -> dict[str, bytes]:
    pinned: dict[str, bytes] = {}
    for item in field.items():
        name = item["appliance_id"].text()
        key = item["audit_key"].hex()
        if name in pinned:
            raise item.fail(f"appliance {name!r} is listed twice")
        pinned[name] = key or b""
    return pinned


def _wallet(field: _Field) -> WalletEvidence:
    descriptors = []
    for item in field["descriptors"].items():
        try:
            descriptors.append(Descriptor.parse(item.text(), require_checksum=False))
        except DescriptorError as exc:
            raise item.fail(f"not a descriptor: {exc}") from exc
    members = tuple(
        Member(
            m["appliance_id"].text(optional=True) or None,
            m["key"].text(),
            m["role"].text(),
            m["export_receipt"].entry(),
            m["pin_receipt"].entry(),
        )
        for m in field["members"].items()
    )
    return WalletEvidence(
        field["name"].text(),
        field["network"].text(),
        field["kind"].text(),
        field["threshold"].integer(optional=True),
        field["birth_height"].integer() or 0,
        tuple(descriptors),
        members,
    )


def _request_facts(field: _Field) -> tuple[bytes, tuple[Any, ...]]:
    """A request parsed (fields in the order they were always read, so the first error is
    the same) into its facts, pickled, and what the reader uses of it: its hash, whether
    that recomputes, what re-deriving change needs (pickled), its highest hinted derivation
    index, the error of its first receipt that is no journal entry, and its transaction's
    digest with what checking a broadcast of it needs (pickled)."""
    receipts = []
    for item in field["receipts"].items():
        raw = item["entry"].hex(optional=True)
        if raw is None:
            raise item["entry"].fail("missing")
        receipts.append((item["appliance_id"].text(), raw, item.path, item["entry"].path))
    start = (
        field["batch"].text(),
        field["request_id"].text(),
        field["kind"].text(),
        field["replaces"].text(optional=True) or None,
    )
    psbt = field["unsigned_psbt"].psbt()
    head = (
        *start,
        field["request_hash"].hex() or b"",
        field["txid"].text(),
        field["fee"].integer() or 0,
        field["state"].text(),
    )
    responses = [r.psbt() for r in field["responses"].items()]
    kept, bad = [], None
    for appliance, raw, where, entry_where in receipts:
        try:
            parsed: ReceiptFacts | str = ReceiptFacts.of(parse_entry(raw))
        except JournalError as exc:
            parsed = str(exc)
            bad = bad or f"{entry_where}: not a journal entry: {exc}"
        kept.append(Receipt(appliance, where, entry_where, hashlib.sha256(raw).digest(), parsed))
    facts, change, hint, signing = request_facts(head, tuple(kept), psbt, responses)
    verified = facts.recomputed.digest == facts.request_hash
    unsigned = facts.unsigned if isinstance(facts.unsigned, bytes) else None
    return pickle.dumps(facts, _PICKLE), (
        facts.request_hash,
        verified,
        pickle.dumps(change, _PICKLE),
        hint,
        bad,
        unsigned,
        pickle.dumps(signing, _PICKLE),
    )


def _broadcast(index: int, field: _Field) -> BroadcastEvidence:
    raw = field["raw"].hex() or b""
    try:
        tx = Transaction.parse(raw)
    except (DecodeError, ValueError) as exc:
        raise field["raw"].fail(f"not a transaction: {exc}") from exc
    return broadcast_facts(
        index,
        (
            field["request_id"].text(optional=True) or None,
            field["txid"].text(),
            field["wtxid"].text(),
            field["state"].text(),
            field["block_hash"].text(optional=True) or None,
            field["height"].integer(optional=True),
        ),
        tx,
    )
