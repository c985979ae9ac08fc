"""Multipart fountain codes (BCR-2024-001): split a message into parts and rebuild it.

The encoder reproduces the bc-ur part sequence byte for byte, so any wallet can decode
what Coldstation shows. It can also follow a ``degree_floor`` policy, which BCR-2024-001
permits because the sender chooses which sequence numbers to show: after the first pass
of plain fragments it shows only mixed parts of degree >= ceil(seqLen/4). Those parts
almost always carry new information for a receiver that solves by elimination: at 10 %
frame loss and seqLen 100 the median frames shown fall from 1.24x seqLen (reference
peeling, standard stream) to 1.135x (tests/bench/fountain_bench.py; DESIGN.md sec. 7).

The decoder treats its input as hostile: every part is checked against the first one
(seqLen, messageLen, checksum, fragment length) and against size caps before anything is
allocated, a part of another message is refused without disturbing the current one, and
the rebuilt message must match its CRC-32. It solves either exactly as the reference
(``solve="peel"``, kept for comparison) or by incremental Gaussian elimination over GF(2)
(``solve="gf2"``, the default), which finishes as soon as the parts determine the message.
"""

from __future__ import annotations

import math
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import cbor2

from shared.ur.sampler import choose_fragments, floor_degree, fragment_degree, fragment_mask

__all__ = [
    "DEFAULT_MAX_MESSAGE_LEN",
    "DEFAULT_MAX_SEQ_LEN",
    "FountainDecoder",
    "FountainEncoder",
    "FountainError",
    "Part",
    "Progress",
    "Solve",
    "find_nominal_fragment_length",
    "join_fragments",
    "partition",
    "read_cbor_head",
]

#: Largest message a decoder accepts unless told otherwise (checked before allocating).
DEFAULT_MAX_MESSAGE_LEN = 10 * 1024 * 1024
#: Largest fragment count a decoder accepts: ~4 MB at 400-byte frames, 30 min at 5 fps.
DEFAULT_MAX_SEQ_LEN = 10_000
UINT32_MAX = 0xFFFFFFFF

Solve = Literal["gf2", "peel"]


class FountainError(ValueError):
    """A part or message that is malformed, inconsistent, oversized or fails its checksum."""


# -- fragments -----------------------------------------------------------------------------


def find_nominal_fragment_length(
    message_len: int, min_fragment_len: int, max_fragment_len: int
) -> int:
    """Smallest fragment count whose fragment length fits ``max_fragment_len`` (bc-ur rule).

    A message shorter than ``min_fragment_len`` is one fragment (bc-ur asserts instead).
    """
    if message_len < 1 or min_fragment_len < 1 or max_fragment_len < min_fragment_len:
        raise ValueError(
            "need message_len >= 1 and 1 <= min_fragment_len <= max_fragment_len, got "
            f"{message_len}, {min_fragment_len}, {max_fragment_len}"
        )
    fragment_len = message_len
    for fragment_count in range(1, max(1, message_len // min_fragment_len) + 1):
        fragment_len = math.ceil(message_len / fragment_count)
        if fragment_len <= max_fragment_len:
            break
    return fragment_len


def partition(message: bytes, fragment_len: int) -> list[bytes]:
    """Fragments of ``fragment_len`` bytes; the last is zero-padded."""
    padded_len = -(-len(message) // fragment_len) * fragment_len
    padded = bytes(message).ljust(padded_len, b"\x00")
    return [padded[i : i + fragment_len] for i in range(0, padded_len, fragment_len)]


def join_fragments(fragments: list[bytes], message_len: int) -> bytes:
    """Concatenate fragments and drop the padding."""
    return b"".join(fragments)[:message_len]


def _bits(value: int) -> Iterator[int]:
    """Indexes of the set bits of ``value``, lowest first (fragment sets are bitmasks)."""
    while value:
        low = value & -value
        yield low.bit_length() - 1
        value ^= low


# -- parts ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Part:
    """One fountain part: CBOR ``[seqNum, seqLen, messageLen, checksum, data]``."""

    seq_num: int
    seq_len: int
    message_len: int
    checksum: int
    data: bytes

    @property
    def indexes(self) -> tuple[int, ...]:
        """The fragments XOR-ed into :attr:`data`."""
        return choose_fragments(self.seq_num, self.seq_len, self.checksum)

    def to_cbor(self) -> bytes:
        return cbor2.dumps(
            [self.seq_num, self.seq_len, self.message_len, self.checksum, bytes(self.data)]
        )

    @classmethod
    def from_cbor(cls, raw: bytes) -> Part:
        """Parse strictly: a definite array of four unsigned integers and a byte string."""
        try:
            return cls._parse(bytes(raw))
        except ValueError as exc:
            raise FountainError(f"malformed part CBOR: {exc}") from None

    @classmethod
    def _parse(cls, raw: bytes) -> Part:
        major, count, pos = read_cbor_head(raw, 0)
        if major != 4 or count != 5:
            raise ValueError("expected an array of 5 items")
        numbers = []
        for name in ("seqNum", "seqLen", "messageLen", "checksum"):
            major, value, pos = read_cbor_head(raw, pos)
            if major != 0 or value is None:
                raise ValueError(f"{name} is not an unsigned integer")
            numbers.append(value)
        major, length, pos = read_cbor_head(raw, pos)
        if major != 2 or length is None:
            raise ValueError("data is not a definite-length byte string")
        if pos + length != len(raw):
            problem = "truncated" if pos + length > len(raw) else "trailing bytes after"
            raise ValueError(f"{problem} the data byte string")
        seq_num, seq_len, message_len, checksum = numbers
        return cls(seq_num, seq_len, message_len, checksum, raw[pos:])

    def description(self) -> str:
        """The bc-ur test format, e.g. ``seqNum:1, seqLen:9, messageLen:256, ...``."""
        return (
            f"seqNum:{self.seq_num}, seqLen:{self.seq_len}, messageLen:{self.message_len}, "
            f"checksum:{self.checksum}, data:{self.data.hex()}"
        )


def read_cbor_head(data: bytes, pos: int) -> tuple[int, int | None, int]:
    """``(major type, argument or None if indefinite, next offset)`` of the head at ``pos``.

    Raises ValueError when the head is truncated or uses a reserved additional-info value.
    Major type 7 (simple values, floats, break) returns the additional info as argument
    for values 0..23 and the raw payload otherwise.
    """
    if pos >= len(data):
        raise ValueError("truncated CBOR (expected another item)")
    initial = data[pos]
    major, info = initial >> 5, initial & 0x1F
    if info < 24:
        return major, info, pos + 1
    if info == 31:
        if major in (0, 1, 6):
            raise ValueError(f"indefinite length is not allowed for major type {major}")
        return major, None, pos + 1
    if info > 27:
        raise ValueError(f"reserved additional information {info}")
    size = 1 << (info - 24)
    if pos + 1 + size > len(data):
        raise ValueError("truncated CBOR head")
    return major, int.from_bytes(data[pos + 1 : pos + 1 + size], "big"), pos + 1 + size


# -- encoder -------------------------------------------------------------------------------


class FountainEncoder:
    """Emits the parts of one message: seq numbers first_seq_num+1, +2, ... (bc-ur order).

    With ``degree_floor=True`` the sender skips, after the plain fragments, every seq
    number whose part would mix fewer than ceil(seqLen/4) fragments. Such a stream is
    meant for a GF(2) receiver (Coldstation's); peeling decoders cope badly with it, so
    keep the default for third-party wallets. :meth:`part` builds any seq number on demand.
    """

    def __init__(
        self,
        message: bytes,
        max_fragment_len: int,
        min_fragment_len: int = 10,
        first_seq_num: int = 0,
        *,
        degree_floor: bool = False,
    ) -> None:
        message = bytes(message)
        if not 0 < len(message) <= UINT32_MAX:
            raise ValueError(f"message length must be 1..{UINT32_MAX}, got {len(message)}")
        if not 0 <= first_seq_num < UINT32_MAX:
            raise ValueError(f"first_seq_num must be 0..{UINT32_MAX - 1}")
        self._message_len = len(message)
        self._checksum = zlib.crc32(message)
        self._fragment_len = find_nominal_fragment_length(
            len(message), min_fragment_len, max_fragment_len
        )
        self._fragments = partition(message, self._fragment_len)
        self._values = [int.from_bytes(f, "big") for f in self._fragments]
        self._seq_num = first_seq_num
        self._degree_floor = degree_floor

    @property
    def message_len(self) -> int:
        return self._message_len

    @property
    def checksum(self) -> int:
        """CRC-32 of the message."""
        return self._checksum

    @property
    def fragment_len(self) -> int:
        return self._fragment_len

    @property
    def seq_num(self) -> int:
        """Seq number of the last part emitted (``first_seq_num`` before the first)."""
        return self._seq_num

    @property
    def degree_floor(self) -> bool:
        """Whether :meth:`next_part` skips mixed parts of low degree."""
        return self._degree_floor

    @property
    def fragments(self) -> tuple[bytes, ...]:
        return tuple(self._fragments)

    @property
    def seq_len(self) -> int:
        return len(self._fragments)

    @property
    def is_single_part(self) -> bool:
        return len(self._fragments) == 1

    @property
    def is_complete(self) -> bool:
        """True once every plain fragment has been emitted (bc-ur: seq_num >= seq_len)."""
        return self._seq_num >= self.seq_len

    def part(self, seq_num: int) -> Part:
        """The part for any ``seq_num`` in 1..2**32-1 (does not move the sequence)."""
        if not 1 <= seq_num <= UINT32_MAX:
            raise ValueError(f"seq_num must be 1..{UINT32_MAX}, got {seq_num}")
        value, values = 0, self._values
        mask = fragment_mask(seq_num, self.seq_len, self._checksum)
        while mask:  # XOR of the chosen fragments (inlined _bits: the hot loop)
            low = mask & -mask
            value ^= values[low.bit_length() - 1]
            mask ^= low
        data = value.to_bytes(self._fragment_len, "big")
        return Part(seq_num, self.seq_len, self._message_len, self._checksum, data)

    def next_part(self) -> Part:
        """The next part of the stream (standard, or ``degree_floor`` policy)."""
        self._seq_num = self._next_seq_num(self._seq_num)
        return self.part(self._seq_num)

    def __iter__(self) -> Iterator[Part]:
        while True:
            yield self.next_part()

    def _next_seq_num(self, seq_num: int) -> int:
        floor = floor_degree(self.seq_len) if self._degree_floor else 1
        while True:
            if seq_num >= UINT32_MAX:
                raise FountainError("sequence numbers exhausted (2**32 - 1 parts emitted)")
            seq_num += 1
            if seq_num <= self.seq_len or floor == 1:
                return seq_num
            if fragment_degree(seq_num, self.seq_len, self._checksum) >= floor:
                return seq_num


# -- decoder -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a transfer is: fragments known out of seq_len, and an honest estimate."""

    seq_len: int
    fragments_known: int
    parts_received: int
    rank: int
    estimated_parts_left: int

    def __str__(self) -> str:
        if not self.seq_len:
            return "waiting for the first part"
        parts = "part" if self.parts_received == 1 else "parts"
        return (
            f"{self.fragments_known}/{self.seq_len} fragments known from "
            f"{self.parts_received} {parts}, about {self.estimated_parts_left} more needed"
        )


@dataclass(frozen=True, slots=True)
class _Header:
    seq_len: int
    message_len: int
    checksum: int
    fragment_len: int


class _Gf2System:
    """Equations ``XOR of fragments in mask = data`` kept in reduced row echelon form.

    Solved fragments are rows with a single bit; substituting them into a new part is the
    peeling step. Only a part that still has unknown bits after substitution and after
    the other rows' pivots are cleared adds rank; only then is elimination done (its pivot
    is cleared from the other unsolved rows), and only then are data bytes touched, so a
    redundant part costs a few integer operations on masks.
    """

    def __init__(self, keep_data: bool = True) -> None:
        self._keep_data = keep_data
        self._solved: dict[int, int] = {}  # fragment index -> data
        self._solved_mask = 0
        self._rows: dict[int, list[int]] = {}  # pivot -> [mask, data] of unsolved rows
        self._pivot_mask = 0

    @property
    def rank(self) -> int:
        return len(self._solved) + len(self._rows)

    @property
    def known(self) -> int:
        return len(self._solved)

    def add(self, mask: int, data: int) -> bool:
        """Add one equation; True when it was independent of those already held."""
        known = mask & self._solved_mask
        mask ^= known
        used = mask & self._pivot_mask
        for pivot in _bits(used):
            mask ^= self._rows[pivot][0]
        if not mask:
            return False
        if self._keep_data:
            data = self._substitute(data, known, used)
        self._eliminate(mask, data)
        return True

    def fragments(self, count: int) -> list[int]:
        return [self._solved[i] for i in range(count)]

    def _substitute(self, data: int, known: int, used: int) -> int:
        for index in _bits(known):
            data ^= self._solved[index]
        for pivot in _bits(used):
            data ^= self._rows[pivot][1]
        return data

    def _eliminate(self, mask: int, data: int) -> None:
        low = mask & -mask
        for pivot, row in list(self._rows.items()):
            if row[0] & low:
                row[0] ^= mask
                row[1] ^= data
                if not row[0] & (row[0] - 1):  # only its pivot is left: solved
                    del self._rows[pivot]
                    self._pivot_mask &= ~(1 << pivot)
                    self._solve(pivot, row[1])
        if mask == low:
            self._solve(low.bit_length() - 1, data)
        else:
            self._rows[low.bit_length() - 1] = [mask, data]
            self._pivot_mask |= low

    def _solve(self, index: int, data: int) -> None:
        self._solved[index] = data
        self._solved_mask |= 1 << index


class _Peeler:
    """The bc-ur reference decoder: substitute known fragments, reduce by strict subsets."""

    def __init__(self, seq_len: int) -> None:
        self._seq_len = seq_len
        self._simple: dict[int, int] = {}
        self._simple_mask = 0
        self._mixed: dict[int, int] = {}
        self._queue: deque[tuple[int, int]] = deque()
        self._ranks = _Gf2System(keep_data=False)

    @property
    def rank(self) -> int:
        return self._ranks.rank

    @property
    def known(self) -> int:
        return len(self._simple)

    def add(self, mask: int, data: int) -> bool:
        independent = self._ranks.add(mask, 0)
        self._queue.append((mask, data))
        while self._queue and len(self._simple) < self._seq_len:
            mask, data = self._queue.popleft()
            if mask & (mask - 1):
                self._process_mixed(mask, data)
            else:
                self._process_simple(mask, data)
        return independent

    def fragments(self, count: int) -> list[int]:
        return [self._simple[i] for i in range(count)]

    def _process_simple(self, mask: int, data: int) -> None:
        index = mask.bit_length() - 1
        if index in self._simple:
            return
        self._simple[index] = data
        self._simple_mask |= mask
        if len(self._simple) < self._seq_len:
            self._reduce_mixed_by(mask, data)

    def _process_mixed(self, mask: int, data: int) -> None:
        if mask in self._mixed:
            return
        known = mask & self._simple_mask
        if known == mask:  # fully known: reduces to its highest fragment, a duplicate
            known ^= 1 << (mask.bit_length() - 1)
        for index in _bits(known):
            data ^= self._simple[index]
        mask ^= known
        for other, other_data in self._mixed.items():
            if other & mask == other and other != mask:
                mask ^= other
                data ^= other_data
        if mask & (mask - 1):
            self._reduce_mixed_by(mask, data)
            self._mixed.setdefault(mask, data)
        else:
            self._queue.append((mask, data))

    def _reduce_mixed_by(self, mask: int, data: int) -> None:
        reduced: dict[int, int] = {}
        for other, other_data in self._mixed.items():
            if other & mask == mask and other != mask:
                other ^= mask
                other_data ^= data
            if other & (other - 1):
                reduced.setdefault(other, other_data)
            else:
                self._queue.append((other, other_data))
        self._mixed = reduced


class FountainDecoder:
    """Rebuilds one message from its parts, in any order, tolerating loss and junk.

    :meth:`receive` returns True for a new part, False for a repeat (or after completion)
    and raises :class:`FountainError` for a part it refuses; a refused part never changes
    the state, except a completed message that fails its CRC-32, which is discarded.
    """

    def __init__(
        self,
        *,
        solve: Solve = "gf2",
        max_message_len: int = DEFAULT_MAX_MESSAGE_LEN,
        max_seq_len: int = DEFAULT_MAX_SEQ_LEN,
    ) -> None:
        if solve not in ("gf2", "peel"):
            raise ValueError(f"solve must be 'gf2' or 'peel', not {solve!r}")
        self._solve_mode: Solve = solve
        self._max_message_len = max_message_len
        self._max_seq_len = max_seq_len
        self.reset()

    def reset(self) -> None:
        """Forget the current message and accept the first part of any other."""
        self._header: _Header | None = None
        self._solver: _Gf2System | _Peeler | None = None
        self._seen: dict[int, int] = {}
        self._result: bytes | None = None

    @property
    def solve(self) -> Solve:
        return self._solve_mode

    @property
    def seq_len(self) -> int | None:
        return self._header.seq_len if self._header else None

    @property
    def message_len(self) -> int | None:
        return self._header.message_len if self._header else None

    @property
    def checksum(self) -> int | None:
        return self._header.checksum if self._header else None

    @property
    def is_complete(self) -> bool:
        return self._result is not None

    @property
    def result(self) -> bytes | None:
        """The message once complete and CRC-verified, else None."""
        return self._result

    @property
    def progress(self) -> Progress:
        if self._header is None or self._solver is None:
            return Progress(0, 0, 0, 0, 0)
        seq_len = self._header.seq_len
        known = seq_len if self._result is not None else self._solver.known
        rank = seq_len if self._result is not None else self._solver.rank
        return Progress(seq_len, known, len(self._seen), rank, self._estimate(seq_len, rank))

    def _estimate(self, seq_len: int, rank: int) -> int:
        if self._result is not None:
            return 0
        deficit = seq_len - rank  # independent parts still missing; ~10 % are redundant
        return max(1, deficit + math.ceil(deficit / 10))

    def receive(self, part: Part) -> bool:
        header = self._check(part)
        if self._header is not None and header != self._header:
            raise FountainError(_mismatch(self._header, header))
        if not self._is_new(part):
            return False
        if self._result is not None:
            return False
        if self._header is None:
            self._header = header
            self._solver = _Gf2System() if self._solve_mode == "gf2" else _Peeler(header.seq_len)
        assert self._solver is not None
        self._seen[part.seq_num] = zlib.crc32(part.data)
        mask = fragment_mask(part.seq_num, header.seq_len, header.checksum)
        self._solver.add(mask, int.from_bytes(part.data, "big"))
        if self._solver.known == header.seq_len:
            self._finish(header, self._solver)
        return True

    def _is_new(self, part: Part) -> bool:
        digest = self._seen.get(part.seq_num)
        if digest is None:
            return True
        if digest != zlib.crc32(part.data):
            raise FountainError(f"part seqNum {part.seq_num} repeated with different data")
        return False

    def _finish(self, header: _Header, solver: _Gf2System | _Peeler) -> None:
        size = header.fragment_len
        fragments = [value.to_bytes(size, "big") for value in solver.fragments(header.seq_len)]
        message = join_fragments(fragments, header.message_len)
        actual = zlib.crc32(message)
        if actual != header.checksum:
            self.reset()
            raise FountainError(
                f"checksum mismatch: rebuilt message has CRC-32 {actual:08x}, parts announced "
                f"{header.checksum:08x}; message discarded, start the transfer again"
            )
        self._result = message

    def _check(self, part: Part) -> _Header:
        """Validate a part on its own, and against the caps, before anything is allocated."""
        seq_len, message_len, fragment_len = part.seq_len, part.message_len, len(part.data)
        if not 1 <= part.seq_num <= UINT32_MAX:
            raise FountainError(f"seqNum {part.seq_num} outside 1..{UINT32_MAX}")
        if not 0 <= part.checksum <= UINT32_MAX:
            raise FountainError(f"checksum {part.checksum} is not a 32-bit value")
        if not 1 <= message_len <= self._max_message_len:
            raise FountainError(
                f"messageLen {message_len} outside 1..{self._max_message_len} (size cap)"
            )
        if not 1 <= seq_len <= min(self._max_seq_len, message_len):
            raise FountainError(
                f"seqLen {seq_len} outside 1..{min(self._max_seq_len, message_len)}"
            )
        expected = -(-message_len // seq_len)
        if fragment_len != expected:
            raise FountainError(
                f"fragment length {fragment_len} does not match ceil(messageLen {message_len} "
                f"/ seqLen {seq_len}) = {expected}"
            )
        if (seq_len - 1) * fragment_len >= message_len:
            raise FountainError(
                f"seqLen {seq_len} x fragment length {fragment_len} leaves whole fragments "
                f"of padding for messageLen {message_len}"
            )
        return _Header(seq_len, message_len, part.checksum, fragment_len)


def _mismatch(expected: _Header, got: _Header) -> str:
    fields = (
        ("checksum", got.checksum, expected.checksum),
        ("messageLen", got.message_len, expected.message_len),
        ("seqLen", got.seq_len, expected.seq_len),
        ("fragment length", got.fragment_len, expected.fragment_len),
    )
    differences = [
        f"checksum {mine:08x}, expected {theirs:08x}"
        if name == "checksum"
        else f"{name} {mine}, expected {theirs}"
        for name, mine, theirs in fields
        if mine != theirs
    ]
    return "part of another message (" + "; ".join(differences) + "): ignored"
