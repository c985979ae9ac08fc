"""The journal's append-only file: framed, checksummed, fsynced; damage reported, never cut.

shared.journal defines what a record says and signs; this module only keeps the bytes.
Each entry is one frame::

    b"CSJ1" | length (4 bytes, big-endian) | payload | CRC-32 of (length + payload), 4 bytes

An append is one ``write`` of the whole frame followed by ``fsync``, so after a crash the
file ends with complete frames plus at most one partial frame (the append in flight). Any
damage found on open (a torn or bad tail, or a bad frame followed by good ones) is
*reported* in :class:`RecoveryReport` and the store refuses to append: the station stops
until an administrators' recovery ceremony (appliance.appliance) journals what was lost
and only then cuts the tail (:meth:`JournalStore.cut_tail`, which keeps the bytes in a
quarantine file ``<name>.torn-<n>`` first). Nothing is ever truncated silently (DESIGN 9).

Opening can start from a signed checkpoint (:class:`Start`): the checkpoint's own last
frame must still be where it was, byte for byte (its SHA-256), and only the frames after it
are read and scanned, so opening costs the same at 100 or 100,000 records. A checkpoint
frame that moved or changed, or a file shorter than the checkpoint, is reported
(``prefix_changed``) and the whole file is scanned. Bytes changed *before* the checkpoint's
last frame are not read on open: `journal verify` and `journal export` check every frame
(the decisions come from the checkpoint's signed state, not from those bytes).
The file is held under an exclusive ``flock`` so two processes never append to it at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from shared.closing import Closing

MAGIC = b"CSJ1"
MAX_PAYLOAD = 1 << 20  # 1 MiB: a journal record is a few kB; anything bigger is a bug
_HEADER = struct.Struct(">4sI")
_CRC = struct.Struct(">I")
HEADER_SIZE = _HEADER.size
TRAILER_SIZE = _CRC.size
OVERHEAD = HEADER_SIZE + TRAILER_SIZE


class JournalStoreError(RuntimeError):
    """The journal file is corrupt, locked by another process, or cannot be written."""


class JournalLockedError(JournalStoreError):
    """Another process (the officers' TUI, a ceremony) holds the journal's writer lock."""


@dataclass(frozen=True)
class Damage:
    """Bytes from ``offset`` on that are not a run of valid frames, as found on open."""

    offset: int
    length: int
    frame: int  # index of the first frame that is not valid
    problem: str
    followed_by_valid_frames: bool = False

    def __str__(self) -> str:
        where = f"frame {self.frame} at offset {self.offset} ({self.length} bytes): {self.problem}"
        if self.followed_by_valid_frames:
            return where + "; valid frames follow it (corruption, not a crash)"
        return where


@dataclass(frozen=True)
class Start:
    """Where a verified checkpoint left the file: ``index`` frames end at ``offset``, and
    the last of them starts at ``last_offset`` and hashes to ``last_sha256``."""

    offset: int
    index: int
    last_offset: int
    last_sha256: bytes


@dataclass(frozen=True)
class RecoveryReport:
    """What open() found: complete frames, damage if any, and whether the prefix held."""

    path: Path
    frames: int
    damage: Damage | None = None
    prefix_changed: bool = False

    @property
    def clean(self) -> bool:
        return self.damage is None and not self.prefix_changed


def encode_frame(payload: bytes) -> bytes:
    """The on-disk frame for one payload."""
    length = struct.pack(">I", len(payload))
    crc = zlib.crc32(payload, zlib.crc32(length))
    return MAGIC + length + payload + _CRC.pack(crc)


class JournalStore(Closing):
    """An open, exclusively locked journal file. Use :meth:`open`, not the constructor."""

    def __init__(
        self,
        path: Path,
        fd: int,
        frames: list[tuple[int, int]],
        first: int,
        end: int,
        damage: Damage | None,
    ) -> None:
        self.path = path
        self._fd = fd
        self._first = first  # index of frames[0]; frames before it are indexed on demand
        self._frames = frames  # (offset of the frame, payload length)
        self._end = end
        self._failed: str | None = None
        self.damage = damage
        self.read_only = False
        #: read-only: the last frame was incomplete, as one the writer is appending looks
        self.incomplete_tail = False

    # --- opening ----------------------------------------------------------------------

    @classmethod
    def open(
        cls, path: Path | str, start: Start | None = None
    ) -> tuple[JournalStore, RecoveryReport]:
        """Open (creating if needed), lock and scan; damage is reported, nothing is cut."""
        path = Path(path)
        fd, created = _open_locked(path)
        try:
            if created:
                _fsync_dir(path.parent)
            start, changed, frames, damage, end = _scan_from(fd, path, start)
        except BaseException:
            os.close(fd)
            raise
        store = cls(path, fd, frames, start.index, end, damage)
        return store, RecoveryReport(path, len(store), damage, changed)

    @classmethod
    def open_read_only(
        cls, path: Path | str, start: Start | None = None
    ) -> tuple[JournalStore, RecoveryReport]:
        """Open without the writer's lock, beside the process that holds it (``status``
        while the TUI runs): what is on disk now, never written to. A last frame cut short
        (:data:`IN_FLIGHT`) while a writer holds the lock is what an append in progress
        looks like, so it is left out and flagged (``incomplete_tail``); any other damage,
        or a short frame nobody is writing, is reported as :meth:`open` would."""
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise JournalStoreError(f"cannot open journal {path}: {exc}") from exc
        try:
            start, changed, frames, damage, end = _scan_from(fd, path, start)
        except BaseException:
            os.close(fd)
            raise
        incomplete = (
            damage is not None
            and damage.problem in IN_FLIGHT
            and not damage.followed_by_valid_frames
            and _writer_holds(fd)
        )
        store = cls(path, fd, frames, start.index, end, None if incomplete else damage)
        store.read_only, store.incomplete_tail = True, incomplete
        store._failed = "opened read-only (another process holds the journal)"
        return store, RecoveryReport(path, len(store), store.damage, changed)

    # --- reading ----------------------------------------------------------------------

    def __len__(self) -> int:
        return self._first + len(self._frames)

    @property
    def end_offset(self) -> int:
        """Where the next frame goes: the end of the last valid frame."""
        return self._end

    def frame_end(self, index: int) -> int:
        """The offset just after frame ``index``."""
        offset, length = self._frame(index)
        return offset + length + OVERHEAD

    def start_at(self, index: int) -> Start:
        """Where frame ``index`` ends and what it hashes to: what a checkpoint records."""
        offset, length = self._frame(index)
        frame = os.pread(self._fd, length + OVERHEAD, offset)
        return Start(offset + len(frame), index + 1, offset, hashlib.sha256(frame).digest())

    def entry(self, index: int) -> bytes:
        """One payload, re-checked against its CRC as it is read."""
        offset, length = self._frame(index)
        frame = os.pread(self._fd, length + OVERHEAD, offset)
        if len(frame) != length + OVERHEAD or _frame_error(frame, 0, length) is not None:
            raise JournalStoreError(
                f"journal {self.path}: frame {index} at offset {offset} changed on disk"
            )
        return frame[HEADER_SIZE : HEADER_SIZE + length]

    def entries(self, first: int = 0) -> list[bytes]:
        return [self.entry(i) for i in range(first, len(self))]

    def last(self) -> bytes | None:
        """The newest payload, or None for an empty journal."""
        return self.entry(len(self) - 1) if len(self) else None

    def _frame(self, index: int) -> tuple[int, int]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"journal {self.path} has no entry {index}")
        if index < self._first:
            self._index_prefix()
        return self._frames[index - self._first]

    def _index_prefix(self) -> None:
        """Index the frames before the checkpoint (read headers only; they were hashed)."""
        frames: list[tuple[int, int]] = []
        offset = 0
        while len(frames) < self._first:
            header = os.pread(self._fd, HEADER_SIZE, offset)
            if len(header) != HEADER_SIZE or header[:4] != MAGIC:
                raise JournalStoreError(f"journal {self.path}: no frame at offset {offset}")
            (length,) = struct.unpack_from(">I", header, 4)
            frames.append((offset, length))
            offset += length + OVERHEAD
        self._frames = frames + self._frames
        self._first = 0

    # --- writing ----------------------------------------------------------------------

    def append(self, payload: bytes) -> int:
        """Write one frame in a single write, fsync it, and return its index.

        Only when this returns is the entry durable. After a failed write or fsync the
        store refuses further appends: the kernel may have dropped the dirty pages, so
        retrying could acknowledge data that is not on disk. A damaged journal is never
        appended to (the recovery ceremony cuts the damage first).
        """
        if self.damage is not None:
            raise JournalStoreError(
                f"journal {self.path} is damaged ({self.damage}): the "
                "station is stopped until `journal recover`"
            )
        if self._failed is not None:
            raise JournalStoreError(f"journal {self.path} is unusable: {self._failed}")
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise TypeError("journal payload must be bytes")
        payload = bytes(payload)
        if len(payload) > MAX_PAYLOAD:
            raise JournalStoreError(
                f"journal {self.path}: payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}"
            )
        frame = encode_frame(payload)
        try:
            written = os.write(self._fd, frame)  # O_APPEND: at the end of the file
            if written != len(frame):
                self._undo_short_write(written, len(frame))
            os.fsync(self._fd)
        except OSError as exc:
            self._failed = f"append of frame {len(self)} failed: {exc}"
            raise JournalStoreError(f"journal {self.path}: {self._failed}") from exc
        self._frames.append((self._end, len(payload)))
        self._end += len(frame)
        return len(self) - 1

    def append_many(self, payloads: list[bytes]) -> int:
        """Append several frames with one write and one fsync (restoring a journal from an
        export); all are durable when this returns. Returns the new length."""
        if not payloads:
            return len(self)
        if self.damage is not None or self._failed is not None:
            raise JournalStoreError(f"journal {self.path} cannot be appended to")
        frames = [encode_frame(bytes(p)) for p in payloads]
        if any(len(p) > MAX_PAYLOAD for p in payloads):
            raise JournalStoreError(f"journal {self.path}: a payload exceeds {MAX_PAYLOAD}")
        data = b"".join(frames)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)
        except OSError as exc:
            self._failed = f"bulk append failed: {exc}"
            raise JournalStoreError(f"journal {self.path}: {self._failed}") from exc
        for frame in frames:
            self._frames.append((self._end, len(frame) - OVERHEAD))
            self._end += len(frame)
        return len(self)

    def _undo_short_write(self, written: int, wanted: int) -> None:
        """A short write (disk full) leaves a partial frame: cut it off before failing."""
        os.ftruncate(self._fd, self._end)
        os.fsync(self._fd)
        raise OSError(errno.ENOSPC, f"short write: {written} of {wanted} bytes")

    def cut_tail(self, index: int) -> Path | None:
        """Quarantine everything from frame ``index`` (or the damage, if earlier) to the end
        of the file, then truncate there; returns the quarantine file (None if nothing).

        Only the recovery ceremony calls this, after the loss has been described and
        signed by the administrators; the journal record of it is appended next.
        """
        if self.read_only:
            raise JournalStoreError(f"journal {self.path} is open read-only: not cut")
        offset = self._frame(index)[0] if index < len(self) else self._end
        if self.damage is not None and self.damage.followed_by_valid_frames:
            raise JournalStoreError(
                f"journal {self.path}: {self.damage}; restore the file "
                "from a copy instead of cutting it"
            )
        size = os.fstat(self._fd).st_size
        target = None
        if size > offset:
            target = _quarantine(self.path, self._fd, offset, size)
        self._frames = self._frames[: max(0, index - self._first)]
        self._end, self.damage, self._failed = offset, None, None
        return target

    # --- closing ----------------------------------------------------------------------

    def close(self) -> None:
        """Release the lock and the file."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    @property
    def closed(self) -> bool:
        return self._fd < 0


def read_payloads(path: Path | str) -> list[bytes]:
    """Every complete frame's payload, read without the writer's lock (for read-only tools
    and tests; a damaged tail is left out, as open() would report it)."""
    data = Path(path).read_bytes()
    frames, _damage = _scan(data, 0, 0)
    return [data[o + HEADER_SIZE : o + HEADER_SIZE + n] for o, n in frames]


# --- helpers ----------------------------------------------------------------------------


def _scan_from(
    fd: int, path: Path, start: Start | None
) -> tuple[Start, bool, list[tuple[int, int]], Damage | None, int]:
    """The frames after ``start`` (from the first when its boundary no longer holds):
    (the start used, whether the boundary changed, frames, damage, end of the valid run)."""
    changed = start is not None and not _boundary_holds(fd, start)
    if start is None or changed:
        start = Start(0, 0, 0, b"")
    data = _read_all(fd, path, start.offset)
    frames, damage = _scan(data, start.offset, start.index)
    end = damage.offset if damage is not None else start.offset + len(data)
    return start, changed, frames, damage, end


#: Damage an append in progress can show: the frame is not all there yet. A complete frame
#: with a bad magic or CRC is never in flight.
IN_FLIGHT = ("partial header", "partial frame")


def _writer_holds(fd: int) -> bool:
    """True when another open file description holds the writer's exclusive lock now."""
    probe = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(probe)
    return False


def _open_locked(path: Path) -> tuple[int, bool]:
    """Open for append (creating it if missing) and take the exclusive lock."""
    flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
    try:
        try:
            fd, created = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600), True
        except FileExistsError:
            fd, created = os.open(path, flags), False
    except OSError as exc:
        raise JournalStoreError(f"cannot open journal {path}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise JournalLockedError(
            f"journal {path} is locked by another writer (another process or open store)"
        ) from exc
    return fd, created


def _read_all(fd: int, path: Path, offset: int = 0) -> bytes:
    """The file's bytes from ``offset`` to its end."""
    size = os.fstat(fd).st_size
    chunks = []
    while offset < size:
        chunk = os.pread(fd, min(size - offset, 1 << 24), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    if offset != size:
        raise JournalStoreError(f"journal {path}: read {offset} of {size} bytes")
    return b"".join(chunks)


def _frame_error(data: bytes, offset: int, length: int | None = None) -> str | None:
    """Why the frame at ``offset`` is not valid and complete, or None if it is."""
    if len(data) - offset < HEADER_SIZE:
        return "partial header"
    magic, declared = _HEADER.unpack_from(data, offset)
    if magic != MAGIC:
        return "bad magic"
    if declared > MAX_PAYLOAD or (length is not None and declared != length):
        return f"bad length {declared}"
    end = offset + HEADER_SIZE + declared + TRAILER_SIZE
    if end > len(data):
        return "partial frame"
    body = data[offset + 4 : offset + HEADER_SIZE + declared]
    (stored,) = _CRC.unpack_from(data, end - TRAILER_SIZE)
    if zlib.crc32(body) != stored:
        return "bad CRC"
    return None


def _boundary_holds(fd: int, start: Start) -> bool:
    """The checkpoint's last frame is still where it was, byte for byte."""
    size = start.offset - start.last_offset
    frame = os.pread(fd, size, start.last_offset) if size > 0 else b""
    return len(frame) == size and hashlib.sha256(frame).digest() == start.last_sha256


def _scan(data: bytes, base: int, index: int) -> tuple[list[tuple[int, int]], Damage | None]:
    """Complete frames in ``data`` (the file from offset ``base``, where frame ``index``
    starts), with file offsets, and the damage after them."""
    frames: list[tuple[int, int]] = []
    at = 0
    while at < len(data):
        problem = _frame_error(data, at)
        if problem is not None:
            later = _next_valid_frame(data, at + 1)
            return frames, Damage(
                base + at, len(data) - at, index + len(frames), problem, later is not None
            )
        (length,) = struct.unpack_from(">I", data, at + 4)
        frames.append((base + at, length))
        at += length + OVERHEAD
    return frames, None


def _next_valid_frame(data: bytes, start: int) -> int | None:
    """Offset of the first valid complete frame at or after ``start``."""
    at = data.find(MAGIC, start)
    while at != -1:
        if _frame_error(data, at) is None:
            return at
        at = data.find(MAGIC, at + 1)
    return None


def _quarantine(path: Path, fd: int, offset: int, size: int) -> Path:
    """Keep bytes ``offset..size`` in ``<name>.torn-<n>`` (durably), then truncate."""
    torn = os.pread(fd, size - offset, offset)
    n = 1
    while True:
        target = path.with_name(f"{path.name}.torn-{n}")
        try:
            qfd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            break
        except FileExistsError:
            n += 1
        except OSError as exc:
            raise JournalStoreError(f"cannot quarantine the tail of {path}: {exc}") from exc
    try:
        view = memoryview(torn)
        while view:
            view = view[os.write(qfd, view) :]
        os.fsync(qfd)
    finally:
        os.close(qfd)
    _fsync_dir(path.parent)
    os.ftruncate(fd, offset)
    os.fsync(fd)
    return target


def _fsync_dir(directory: Path) -> None:
    """Make a created or renamed directory entry durable."""
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def journal_append_rate(path: Path | str, n: int = 200, payload_size: int = 512) -> float:
    """Appends per second (each fsynced) of ``n`` payloads to a fresh journal at ``path``.

    A benchmark helper (tests/bench): the rate is bounded by fsync latency of the disk
    holding ``path``, which is what the signing ceremony will see.
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"benchmark journal {path} already exists")
    payload = bytes(payload_size)
    store, _report = JournalStore.open(path)
    with store:
        start = time.perf_counter()
        for _ in range(n):
            store.append(payload)
        elapsed = time.perf_counter() - start
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return n / elapsed if elapsed > 0 else float("inf")
