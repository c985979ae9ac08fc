"""UR text (BCR-2020-005): ``ur:type/bytewords`` and ``ur:type/seq-len/bytewords``.

This is the layer the camera loop talks to. :class:`UREncoder` turns one UR into the
strings shown frame after frame; :class:`URDecoder` takes whatever text a QR decoder
produced and answers with a :class:`ReceiveStatus` instead of raising, because a camera
sees junk, other wallets' codes and half-read frames all the time and the scan must go
on. Anything refused leaves the transfer in progress untouched, with one exception: a
message that is complete but fails its CRC-32 (or is not CBOR) cannot be repaired and is
discarded so that scanning can start again.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from shared.ur import bytewords
from shared.ur.fountain import (
    DEFAULT_MAX_MESSAGE_LEN,
    DEFAULT_MAX_SEQ_LEN,
    UINT32_MAX,
    FountainDecoder,
    FountainEncoder,
    Part,
    Progress,
    Solve,
    read_cbor_head,
)

__all__ = [
    "UR",
    "ReceiveState",
    "ReceiveStatus",
    "URDecoder",
    "UREncoder",
    "URError",
    "URText",
    "cbor_problem",
    "decode_ur",
    "encode_part",
    "encode_ur",
    "is_valid_type",
    "parse_ur_text",
    "upper",
]

_TYPE = re.compile(r"[a-z0-9-]+")
_SEQ = re.compile(r"([0-9]{1,10})-([0-9]{1,10})")
_MAX_CBOR_DEPTH = 1000


class URError(ValueError):
    """Text that is not a UR, or not one this receiver can take."""


def is_valid_type(ur_type: str) -> bool:
    """UR types use lower-case letters, digits and hyphens only."""
    return isinstance(ur_type, str) and _TYPE.fullmatch(ur_type) is not None


@dataclass(frozen=True, slots=True)
class UR:
    """A typed CBOR payload, e.g. ``UR("crypto-psbt", cbor)``."""

    type: str
    cbor: bytes

    def __post_init__(self) -> None:
        if not is_valid_type(self.type):
            raise URError(f"invalid UR type {self.type!r}: use a-z, 0-9 and '-' only")
        if not isinstance(self.cbor, bytes | bytearray | memoryview):
            raise URError("UR payload must be bytes")
        object.__setattr__(self, "cbor", bytes(self.cbor))

    def __str__(self) -> str:
        return encode_ur(self)

    @classmethod
    def parse(cls, text: str) -> UR:
        return decode_ur(text)


def encode_ur(ur: UR) -> str:
    """Single-part text: ``ur:type/`` + minimal Bytewords of the CBOR, lower case."""
    return f"ur:{ur.type}/{bytewords.encode(ur.cbor, bytewords.Style.MINIMAL)}"


def encode_part(ur_type: str, part: Part) -> str:
    """Multipart text: ``ur:type/seqNum-seqLen/`` + minimal Bytewords of the part CBOR."""
    payload = bytewords.encode(part.to_cbor(), bytewords.Style.MINIMAL)
    return f"ur:{ur_type}/{part.seq_num}-{part.seq_len}/{payload}"


def upper(text: str) -> str:
    """The upper-case form QR codes carry, so that they can use alphanumeric mode."""
    return text.upper()


@dataclass(frozen=True, slots=True)
class URText:
    """A parsed UR string: type, ``(seqNum, seqLen)`` for a multipart part, and payload."""

    type: str
    seq: tuple[int, int] | None
    payload: bytes


def parse_ur_text(text: str, max_chars: int | None = None) -> URText:
    """Parse any UR string, in any letter case; raises :class:`URError` saying why not."""
    if not isinstance(text, str):
        raise URError(f"not a UR: expected text, got {type(text).__name__}")
    if max_chars is not None and len(text) > max_chars:
        raise URError(f"text of {len(text)} characters exceeds the {max_chars} allowed")
    lowered = text.strip().lower()
    if not lowered.startswith("ur:"):
        raise URError("not a UR: text does not start with 'ur:'")
    components = lowered[3:].split("/")
    if len(components) not in (2, 3):
        raise URError(
            "not a UR: expected ur:type/payload or ur:type/seq-len/payload, "
            f"got {len(components)} path components"
        )
    if not is_valid_type(components[0]):
        raise URError(f"invalid UR type {components[0][:40]!r}: use a-z, 0-9 and '-' only")
    seq = _parse_seq(components[1]) if len(components) == 3 else None
    try:
        payload = bytewords.decode(components[-1], bytewords.Style.MINIMAL)
    except bytewords.BytewordsError as exc:
        raise URError(f"bad payload: {exc}") from None
    return URText(components[0], seq, payload)


def _parse_seq(text: str) -> tuple[int, int]:
    match = _SEQ.fullmatch(text)
    if match is None:
        raise URError(f"invalid sequence component {text[:24]!r}: expected seqNum-seqLen")
    seq_num, seq_len = int(match[1]), int(match[2])
    if not (1 <= seq_num <= UINT32_MAX and 1 <= seq_len <= UINT32_MAX):
        raise URError(f"sequence component {text!r} out of range")
    return seq_num, seq_len


def decode_ur(text: str) -> UR:
    """A single-part UR from its text; multipart parts go to :class:`URDecoder`."""
    parsed = parse_ur_text(text)
    if parsed.seq is not None:
        raise URError("this is one part of a multipart UR: use URDecoder")
    return UR(parsed.type, parsed.payload)


# -- encoder -------------------------------------------------------------------------------


class UREncoder:
    """The strings to show, one a frame: the UR itself if it fits, else fountain parts."""

    def __init__(
        self,
        ur: UR,
        max_fragment_len: int,
        first_seq_num: int = 0,
        *,
        min_fragment_len: int = 10,
        degree_floor: bool = False,
    ) -> None:
        self._ur = ur
        self._fountain = FountainEncoder(
            ur.cbor, max_fragment_len, min_fragment_len, first_seq_num, degree_floor=degree_floor
        )

    @property
    def ur(self) -> UR:
        return self._ur

    @property
    def fountain(self) -> FountainEncoder:
        return self._fountain

    @property
    def seq_len(self) -> int:
        return self._fountain.seq_len

    @property
    def is_single_part(self) -> bool:
        return self._fountain.is_single_part

    def next_part(self) -> str:
        """The next frame's text (the single-part UR every time if it fits one fragment)."""
        if self.is_single_part:
            return encode_ur(self._ur)
        return encode_part(self._ur.type, self._fountain.next_part())

    def cycle_parts(self, cycles: float = 1.0) -> list[str]:
        """The next ``cycles`` times seqLen parts (at least one), for a text file, a video or
        a terminal: one full cycle decodes without loss, more cycles survive lost frames."""
        return [self.next_part() for _ in range(max(1, math.ceil(self.seq_len * cycles)))]

    def __iter__(self) -> Iterator[str]:
        while True:
            yield self.next_part()


# -- decoder -------------------------------------------------------------------------------


class ReceiveState(StrEnum):
    ACCEPTED = "accepted"  # a new part of the transfer in progress
    DUPLICATE = "duplicate"  # already had it (or the message is already complete)
    COMPLETE = "complete"  # this text completed the message: URDecoder.result is set
    REJECTED = "rejected"  # refused; the reason says why, the transfer is unchanged


@dataclass(frozen=True, slots=True)
class ReceiveStatus:
    """What :meth:`URDecoder.receive` made of one text, and where the transfer stands."""

    state: ReceiveState
    reason: str
    progress: Progress

    @property
    def rejected(self) -> bool:
        return self.state is ReceiveState.REJECTED

    def __str__(self) -> str:
        return f"{self.state}: {self.reason} ({self.progress})"


class URDecoder:
    """Receives single-part URs and multipart streams; never raises on bad input."""

    def __init__(
        self,
        expected_types: Iterable[str] | None = None,
        *,
        solve: Solve = "gf2",
        max_message_len: int = DEFAULT_MAX_MESSAGE_LEN,
        max_seq_len: int = DEFAULT_MAX_SEQ_LEN,
    ) -> None:
        self._expected = frozenset(expected_types) if expected_types is not None else None
        self._fountain = FountainDecoder(
            solve=solve, max_message_len=max_message_len, max_seq_len=max_seq_len
        )
        self._max_chars = 2 * (max_message_len + 64) + 256
        self.reset()

    def reset(self) -> None:
        """Drop the transfer in progress (or the finished one) and start afresh."""
        self._fountain.reset()
        self._type: str | None = None
        self._result: UR | None = None

    @property
    def ur_type(self) -> str | None:
        """Type of the transfer in progress or completed, once a part was accepted."""
        return self._type

    @property
    def is_complete(self) -> bool:
        return self._result is not None

    @property
    def result(self) -> UR | None:
        return self._result

    @property
    def progress(self) -> Progress:
        if self._result is not None and self._fountain.seq_len is None:
            return Progress(1, 1, 1, 1, 0)
        return self._fountain.progress

    def receive(self, text: str) -> ReceiveStatus:
        """Take one scanned text; the status says what happened and why."""
        try:
            state, reason = self._receive(text)
        except ValueError as exc:  # URError, FountainError, BytewordsError
            state, reason = ReceiveState.REJECTED, str(exc)
        return ReceiveStatus(state, reason, self.progress)

    def _receive(self, text: str) -> tuple[ReceiveState, str]:
        parsed = parse_ur_text(text, self._max_chars)
        self._check_type(parsed.type)
        if parsed.seq is None:
            return self._receive_single(parsed)
        return self._receive_part(parsed, parsed.seq)

    def _check_type(self, ur_type: str) -> None:
        if self._expected is not None and ur_type not in self._expected:
            wanted = ", ".join(sorted(self._expected)) or "nothing"
            raise URError(f"unexpected UR type {ur_type!r} (expecting {wanted})")
        if self._type is not None and ur_type != self._type:
            raise URError(f"UR type {ur_type!r} is not that of this transfer ({self._type!r})")

    def _receive_single(self, parsed: URText) -> tuple[ReceiveState, str]:
        if self._result is not None:
            if self._result.cbor == parsed.payload:
                return ReceiveState.DUPLICATE, "message already complete"
            raise URError("a message is already complete; reset() to receive another")
        _require_cbor(parsed.payload)
        if self._fountain.seq_len is not None:
            raise URError("single-part UR while a multipart transfer is in progress: ignored")
        self._type, self._result = parsed.type, UR(parsed.type, parsed.payload)
        return ReceiveState.COMPLETE, f"single-part ur:{parsed.type}, {len(parsed.payload)} bytes"

    def _receive_part(self, parsed: URText, seq: tuple[int, int]) -> tuple[ReceiveState, str]:
        if self._result is not None and self._fountain.seq_len is None:
            raise URError("a single-part message is already complete; reset() to receive another")
        part = Part.from_cbor(parsed.payload)
        if (part.seq_num, part.seq_len) != seq:
            raise URError(
                f"sequence {seq[0]}-{seq[1]} in the text disagrees with the part's CBOR "
                f"(seqNum {part.seq_num}, seqLen {part.seq_len})"
            )
        was_complete = self._fountain.is_complete
        try:
            new = self._fountain.receive(part)
        finally:
            if self._fountain.seq_len is None:  # nothing accepted yet, or a failed message
                self._type = None
        if not new:
            done = "message already complete" if was_complete else "already received"
            return ReceiveState.DUPLICATE, f"part {part.seq_num}: {done}"
        self._type = parsed.type
        if not self._fountain.is_complete:
            return ReceiveState.ACCEPTED, f"part {part.seq_num} of seqLen {part.seq_len}"
        return self._complete(parsed.type)

    def _complete(self, ur_type: str) -> tuple[ReceiveState, str]:
        message = self._fountain.result
        assert message is not None
        problem = cbor_problem(message)
        if problem is not None:
            self.reset()
            raise URError(f"message passed its checksum but is not CBOR ({problem}); discarded")
        self._result = UR(ur_type, message)
        return ReceiveState.COMPLETE, f"multipart ur:{ur_type}, {len(message)} bytes"


# -- CBOR well-formedness --------------------------------------------------------------------


def _require_cbor(data: bytes) -> None:
    problem = cbor_problem(data)
    if problem is not None:
        raise URError(f"payload is not CBOR: {problem}")


def cbor_problem(data: bytes) -> str | None:
    """None if ``data`` is exactly one well-formed CBOR item (RFC 8949 App. C), else why not.

    Walks the item heads without building Python objects, so hostile input cannot make it
    allocate more than the input itself.
    """
    try:
        end = _skip_item(bytes(data))
    except ValueError as exc:
        return str(exc)
    if end != len(data):
        return f"{len(data) - end} bytes after the CBOR item"
    return None


_UNTIL_BREAK = -1


def _skip_item(data: bytes) -> int:
    pos, pending = 0, [1]  # items still expected in each open container
    while pending:
        if pending[-1] == 0:
            pending.pop()
            continue
        if pending[-1] == _UNTIL_BREAK and data[pos : pos + 1] == b"\xff":
            pending.pop()
            pos += 1
            continue
        if pending[-1] > 0:
            pending[-1] -= 1
        pos, children = _skip_head(data, pos)
        if children:
            if len(pending) >= _MAX_CBOR_DEPTH:
                raise ValueError(f"nested deeper than {_MAX_CBOR_DEPTH}")
            pending.append(children)
    return pos


def _skip_head(data: bytes, pos: int) -> tuple[int, int]:
    """Skip one head (and string contents); return the new offset and the children owed."""
    info = data[pos] & 0x1F if pos < len(data) else 0
    major, arg, pos = read_cbor_head(data, pos)
    if major in (2, 3):
        return (_skip_chunks(data, pos, major) if arg is None else _skip_bytes(data, pos, arg)), 0
    if major in (4, 5):
        return pos, _UNTIL_BREAK if arg is None else arg * (major - 3)
    if major == 6:
        return pos, 1
    if major == 7 and arg is None:
        raise ValueError("break outside an indefinite-length item")
    if major == 7 and info == 24 and arg is not None and arg < 32:
        raise ValueError(f"simple value {arg} in two-byte form")
    return pos, 0


def _skip_bytes(data: bytes, pos: int, length: int) -> int:
    if pos + length > len(data):
        raise ValueError("truncated string")
    return pos + length


def _skip_chunks(data: bytes, pos: int, major: int) -> int:
    while data[pos : pos + 1] != b"\xff":
        chunk_major, length, pos = read_cbor_head(data, pos)
        if chunk_major != major or length is None:
            raise ValueError("indefinite-length string with a chunk of another kind")
        pos = _skip_bytes(data, pos, length)
    return pos + 1
