"""Byte-level encodings shared by transactions and PSBTs: hashes, CompactSize, a bounded reader.

Every parser in Coldstation reads through :class:`ByteReader`, which never returns fewer
bytes than asked for and never allocates more than the bytes actually present, so a
hostile length prefix cannot make us allocate memory or raise ``IndexError``.
"""

from __future__ import annotations

import hashlib


class DecodeError(ValueError):
    """Raised when bytes do not decode; the message says what was being read."""


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hash256(data: bytes) -> bytes:
    """Double SHA-256, Bitcoin's txid/sighash hash."""
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def ripemd160(data: bytes) -> bytes:
    return hashlib.new("ripemd160", data).digest()


def hash160(data: bytes) -> bytes:
    """RIPEMD-160 of SHA-256: P2PKH, P2WPKH and BIP-32 fingerprints."""
    return ripemd160(sha256(data))


def compact_size(n: int) -> bytes:
    """Encode ``n`` as a Bitcoin CompactSize (minimal encoding)."""
    if 0 <= n < 0xFD:
        return _ONE_BYTE[n]  # the common case, from a table
    if n < 0:
        raise ValueError("CompactSize cannot be negative")
    if n <= 0xFFFF:
        return b"\xfd" + n.to_bytes(2, "little")
    if n <= 0xFFFFFFFF:
        return b"\xfe" + n.to_bytes(4, "little")
    if n <= 0xFFFFFFFFFFFFFFFF:
        return b"\xff" + n.to_bytes(8, "little")
    raise ValueError("CompactSize too large")


_ONE_BYTE = [bytes((n,)) for n in range(0xFD)]


def with_length(data: bytes) -> bytes:
    """``data`` prefixed with its CompactSize length."""
    return compact_size(len(data)) + data


class ByteReader:
    """A cursor over immutable bytes that refuses to read past the end.

    Every read is a slice of the bytes held (so never more than is present); the common
    one-byte CompactSize is read inline. The appliance parses every byte of a PSBT that can
    hold a thousand inputs through here, so the per-read cost is kept to a bounds check and
    one slice.
    """

    __slots__ = ("_data", "_end", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)
        self._end = len(self._data)
        self._pos = 0

    @property
    def position(self) -> int:
        return self._pos

    def remaining(self) -> int:
        return self._end - self._pos

    def at_end(self) -> bool:
        return self._pos >= self._end

    def read(self, n: int, what: str = "data") -> bytes:
        pos = self._pos
        end = pos + n
        if n < 0 or end > self._end:
            raise DecodeError(
                f"truncated {what}: need {n} bytes at offset {pos}, {self._end - pos} left"
            )
        self._pos = end
        return self._data[pos:end]

    def read_uint(self, size: int, what: str = "integer") -> int:
        return int.from_bytes(self.read(size, what), "little")

    def read_int(self, size: int, what: str = "integer") -> int:
        return int.from_bytes(self.read(size, what), "little", signed=True)

    def read_compact_size(self, what: str = "length") -> int:
        """Read a CompactSize, refusing non-minimal encodings as Bitcoin Core does."""
        pos = self._pos
        if pos < self._end and self._data[pos] < 0xFD:
            self._pos = pos + 1
            return self._data[pos]
        first = self.read(1, what)[0]
        size = {0xFD: 2, 0xFE: 4, 0xFF: 8}[first]
        value = self.read_uint(size, what)
        if value < {2: 0xFD, 4: 0x10000, 8: 0x100000000}[size]:
            raise DecodeError(f"non-canonical CompactSize for {what} at offset {self._pos}")
        return value

    def read_var_bytes(self, what: str = "bytes") -> bytes:
        """Read a CompactSize length and that many bytes (bounded by what is present)."""
        pos = self._pos
        if pos < self._end and self._data[pos] < 0xFD:  # one-byte length, inline
            start = pos + 1
            end = start + self._data[pos]
            if end <= self._end:
                self._pos = end
                return self._data[start:end]
        n = self.read_compact_size(f"{what} length")
        return self.read(n, what)
