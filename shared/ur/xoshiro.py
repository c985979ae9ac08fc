"""Xoshiro256** seeded from SHA-256: the deterministic generator behind MUR fountain codes.

Sender and receiver must derive the same fragment mix for a sequence number from the
part header alone, so every step here is bit-exact with the bc-ur reference: the state is
the SHA-256 of the seed read as four big-endian 64-bit words, a 32-bit seed (a CRC-32) is
serialized big-endian first, and ``next_double`` divides by 2**64 in IEEE-754 doubles.
"""

from __future__ import annotations

import hashlib

__all__ = ["Xoshiro256", "make_message"]

_MASK64 = (1 << 64) - 1
_TWO_POW_64 = float(1 << 64)


def _rotl(value: int, shift: int) -> int:
    return ((value << shift) | (value >> (64 - shift))) & _MASK64


class Xoshiro256:
    """Xoshiro256** 1.0 whose 256-bit state is ``SHA-256(seed)``."""

    __slots__ = ("_s",)

    def __init__(self, seed: bytes) -> None:
        digest = hashlib.sha256(seed).digest()
        self._s = [int.from_bytes(digest[i : i + 8], "big") for i in range(0, 32, 8)]

    @classmethod
    def from_string(cls, seed: str) -> Xoshiro256:
        """Seed with the UTF-8 bytes of ``seed`` (the vectors use ``"Wolf"``)."""
        return cls(seed.encode())

    @classmethod
    def from_uint32(cls, seed: int) -> Xoshiro256:
        """Seed with a 32-bit integer (e.g. a CRC-32) serialized big-endian."""
        return cls(seed.to_bytes(4, "big"))

    @property
    def state(self) -> tuple[int, int, int, int]:
        """The four 64-bit state words, for debugging against the derived vectors."""
        s0, s1, s2, s3 = self._s
        return s0, s1, s2, s3

    def next(self) -> int:
        """The next 64-bit output."""
        s0, s1, s2, s3 = self._s
        x = (s1 * 5) & _MASK64
        result = ((((x << 7) | (x >> 57)) & _MASK64) * 9) & _MASK64
        t = (s1 << 17) & _MASK64
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        self._s = [s0, s1, s2, _rotl(s3, 45)]
        return result

    def next_double(self) -> float:
        """A double in [0, 1): ``double(next()) / 2**64`` (the conversion rounds, as in C++)."""
        return float(self.next()) / _TWO_POW_64

    def next_int(self, low: int, high: int) -> int:
        """An integer in [low, high]: ``floor(next_double() * (high - low + 1)) + low``."""
        return int(float(self.next()) / _TWO_POW_64 * float(high - low + 1)) + low

    def next_byte(self) -> int:
        """An integer in [0, 255]."""
        return self.next_int(0, 255)

    def next_data(self, count: int) -> bytes:
        """``count`` bytes from :meth:`next_byte`."""
        return bytes(self.next_byte() for _ in range(count))


def make_message(length: int, seed: str = "Wolf") -> bytes:
    """The deterministic test message of the official vectors (``make_message`` upstream)."""
    return Xoshiro256.from_string(seed).next_data(length)
