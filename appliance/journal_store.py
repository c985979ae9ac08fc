"""The journal's append-only file: framed, checksummed, fsynced, torn tails reported.

shared.journal defines what a record says and signs; this module only keeps the bytes.
Each entry is one frame::

    b"CSJ1" | length (4 bytes, big-endian) | payload | CRC-32 of (length + payload), 4 bytes

An append is one ``write`` of the whole frame followed by ``fsync``, so after a crash the
file ends with complete frames plus at most one partial frame (the append in flight).
On open that damaged tail is *reported*, copied to a quarantine file beside the journal
(``<name>.torn-<n>``) and only then cut off, so appends can continue (DESIGN 3: a torn
last record is detected and reported, never silently dropped). Damage followed by a valid
frame cannot come from a crash: that is corruption, and opening refuses with the frame
index and offset instead of truncating anything. The file is held under an exclusive
``flock`` so two processes never append to it at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

MAGIC = b"CSJ1"
MAX_PAYLOAD = 1 << 20  # 1 MiB: a journal record is a few kB; anything bigger is a bug
_HEADER = struct.Struct(">4sI")
_CRC = struct.Struct(">I")
HEADER_SIZE = _HEADER.size
TRAILER_SIZE = _CRC.size
OVERHEAD = HEADER_SIZE + TRAILER_SIZE


class JournalStoreError(RuntimeError):
    """The journal file is corrupt, locked by another process, or cannot be written."""


@dataclass(frozen=True)
class TornTail:
    """Bytes after the last complete frame, as found on open (before truncation)."""

    offset: int
    length: int
    quarantine: Path


@dataclass(frozen=True)
class RecoveryReport:
    """What open() found: the complete frames kept and a torn tail, if there was one."""

    path: Path
    frames: int
    torn: TornTail | None = None

    @property
    def clean(self) -> bool:
        return self.torn is None


def encode_frame(payload: bytes) -> bytes:
    """The on-disk frame for one payload."""
    length = struct.pack(">I", len(payload))
    crc = zlib.crc32(payload, zlib.crc32(length))
    return MAGIC + length + payload + _CRC.pack(crc)


class JournalStore:
    """An open, exclusively locked journal file. Use :meth:`open`, not the constructor."""

    def __init__(self, path: Path, fd: int, frames: list[tuple[int, int]]) -> None:
        self.path = path
        self._fd = fd
        self._frames = frames  # (offset of the frame, payload length)
        self._end = frames[-1][0] + frames[-1][1] + OVERHEAD if frames else 0
        self._failed: str | None = None

    # --- opening and recovery ---------------------------------------------------------

    @classmethod
    def open(cls, path: Path | str) -> tuple[JournalStore, RecoveryReport]:
        """Open (creating if needed), lock, scan, and recover a torn tail."""
        path = Path(path)
        fd, created = _open_locked(path)
        try:
            if created:
                _fsync_dir(path.parent)
            data = _read_all(fd, path)
            frames, damage = _scan(data, path)
            torn = None
            if damage is not None:
                torn = _quarantine(path, fd, data, damage)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, frames), RecoveryReport(path, len(frames), torn)

    # --- reading ----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._frames)

    def entry(self, index: int) -> bytes:
        """One payload, re-checked against its CRC as it is read."""
        index = index if index >= 0 else len(self._frames) + index
        if not 0 <= index < len(self._frames):
            raise IndexError(f"journal {self.path} has no entry {index}")
        offset, length = self._frames[index]
        frame = os.pread(self._fd, length + OVERHEAD, offset)
        if len(frame) != length + OVERHEAD or _frame_error(frame, 0, length) is not None:
            raise JournalStoreError(
                f"journal {self.path}: frame {index} at offset {offset} changed on disk"
            )
        return frame[HEADER_SIZE : HEADER_SIZE + length]

    def entries(self) -> list[bytes]:
        return [self.entry(i) for i in range(len(self._frames))]

    def last(self) -> bytes | None:
        """The newest payload, or None for an empty journal."""
        return self.entry(-1) if self._frames else None

    # --- writing ----------------------------------------------------------------------

    def append(self, payload: bytes) -> int:
        """Write one frame in a single write, fsync it, and return its index.

        Only when this returns is the entry durable. After a failed write or fsync the
        store refuses further appends: the kernel may have dropped the dirty pages, so
        retrying could acknowledge data that is not on disk.
        """
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
            written = os.write(self._fd, frame)
            if written != len(frame):
                self._undo_short_write(written, len(frame))
            os.fsync(self._fd)
        except OSError as exc:
            self._failed = f"append of frame {len(self._frames)} failed: {exc}"
            raise JournalStoreError(f"journal {self.path}: {self._failed}") from exc
        self._frames.append((self._end, len(payload)))
        self._end += len(frame)
        return len(self._frames) - 1

    def _undo_short_write(self, written: int, wanted: int) -> None:
        """A short write (disk full) leaves a partial frame: cut it off before failing."""
        os.ftruncate(self._fd, self._end)
        os.fsync(self._fd)
        raise OSError(errno.ENOSPC, f"short write: {written} of {wanted} bytes")

    # --- closing ----------------------------------------------------------------------

    def close(self) -> None:
        """Release the lock and the file."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def __enter__(self) -> JournalStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --- helpers ----------------------------------------------------------------------------


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
        raise JournalStoreError(
            f"journal {path} is locked by another writer (another process or open store)"
        ) from exc
    return fd, created


def _read_all(fd: int, path: Path) -> bytes:
    size = os.fstat(fd).st_size
    chunks, offset = [], 0
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


def _scan(data: bytes, path: Path) -> tuple[list[tuple[int, int]], int | None]:
    """Complete frames, and the offset where a torn tail starts (None if there is none)."""
    frames: list[tuple[int, int]] = []
    offset = 0
    while offset < len(data):
        problem = _frame_error(data, offset)
        if problem is not None:
            later = _next_valid_frame(data, offset + 1)
            if later is not None:
                raise JournalStoreError(
                    f"journal {path} is corrupt: frame {len(frames)} at offset {offset} "
                    f"({problem}) is followed by a valid frame at offset {later}; "
                    "not truncating"
                )
            return frames, offset
        (length,) = struct.unpack_from(">I", data, offset + 4)
        frames.append((offset, length))
        offset += length + OVERHEAD
    return frames, None


def _next_valid_frame(data: bytes, start: int) -> int | None:
    """Offset of the first valid complete frame at or after ``start``."""
    at = data.find(MAGIC, start)
    while at != -1:
        if _frame_error(data, at) is None:
            return at
        at = data.find(MAGIC, at + 1)
    return None


def _quarantine(path: Path, fd: int, data: bytes, offset: int) -> TornTail:
    """Keep the torn bytes in ``<name>.torn-<n>`` (durably), then truncate the journal."""
    torn = data[offset:]
    n = 1
    while True:
        target = path.with_name(f"{path.name}.torn-{n}")
        try:
            qfd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            break
        except FileExistsError:
            n += 1
        except OSError as exc:
            raise JournalStoreError(f"cannot quarantine torn tail of {path}: {exc}") from exc
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
    return TornTail(offset=offset, length=len(torn), quarantine=target)


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
