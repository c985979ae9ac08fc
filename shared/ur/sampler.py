"""Which fragments a fountain part mixes: Walker-Vose sampler, degree, shuffle, chooser.

A receiver learns a part's fragment set only by recomputing it from ``seqNum`` and the
message checksum, so the arithmetic must match bc-ur to the bit: the alias tables are
built from index lists filled in reverse order, probabilities are summed left to right
in doubles (not with a compensated sum), and a part of degree ``d`` takes the first ``d``
picks of the Fisher-Yates shuffle driven by the same generator that chose ``d``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import TypeVar

from shared.ur.xoshiro import Xoshiro256

__all__ = [
    "RandomSampler",
    "choose_degree",
    "choose_fragments",
    "floor_degree",
    "fragment_degree",
    "fragment_mask",
    "fragment_rng",
    "shuffle",
]

T = TypeVar("T")


class RandomSampler:
    """Walker-Vose alias method, laid out exactly as bc-ur's ``random-sampler.cpp``."""

    __slots__ = ("_aliases", "_probs")

    def __init__(self, weights: Sequence[float]) -> None:
        if not weights or any(not w >= 0 for w in weights):
            raise ValueError("weights must be a non-empty list of non-negative numbers")
        total = 0.0
        for w in weights:  # plain left-to-right sum, as std::accumulate does
            total += float(w)
        if not total > 0:
            raise ValueError("weights must not all be zero")
        n = len(weights)
        scaled = [float(w) * float(n) / total for w in weights]
        self._probs, self._aliases = _alias_tables(scaled)

    def next(self, next_double: Callable[[], float]) -> int:
        """Draw an index, consuming two doubles: column, then coin."""
        r1 = next_double()
        r2 = next_double()
        i = int(float(len(self._probs)) * r1)
        return i if r2 < self._probs[i] else self._aliases[i]


def _alias_tables(scaled: list[float]) -> tuple[list[float], list[int]]:
    n = len(scaled)
    small = [i for i in range(n - 1, -1, -1) if scaled[i] < 1]
    large = [i for i in range(n - 1, -1, -1) if scaled[i] >= 1]
    probs = [0.0] * n
    aliases = [0] * n
    while small and large:
        a = small.pop()
        g = large.pop()
        probs[a] = scaled[a]
        aliases[a] = g
        scaled[g] += scaled[a] - 1
        (small if scaled[g] < 1 else large).append(g)
    for i in large + small:  # leftovers (small only through rounding) always pick themselves
        probs[i] = 1.0
    return probs, aliases


@lru_cache(maxsize=64)
def _degree_sampler(seq_len: int) -> RandomSampler:
    return RandomSampler([1.0 / i for i in range(1, seq_len + 1)])


def choose_degree(seq_len: int, rng: Xoshiro256) -> int:
    """A degree in 1..seq_len with probability proportional to 1/degree."""
    return _degree_sampler(seq_len).next(rng.next_double) + 1


def shuffle(items: Sequence[T], rng: Xoshiro256, count: int | None = None) -> list[T]:
    """The first ``count`` picks (default all) of the MUR Fisher-Yates variant."""
    remaining = list(items)
    picks = len(remaining) if count is None else min(count, len(remaining))
    return [remaining.pop(rng.next_int(0, len(remaining) - 1)) for _ in range(picks)]


def fragment_rng(seq_num: int, checksum: int) -> Xoshiro256:
    """The generator of a mixed part: seeded with ``uint32_be(seqNum) || uint32_be(checksum)``."""
    return Xoshiro256(seq_num.to_bytes(4, "big") + checksum.to_bytes(4, "big"))


def fragment_degree(seq_num: int, seq_len: int, checksum: int) -> int:
    """How many fragments part ``seq_num`` mixes, without drawing the shuffle."""
    if seq_num <= seq_len:
        return 1
    return choose_degree(seq_len, fragment_rng(seq_num, checksum))


def choose_fragments(seq_num: int, seq_len: int, checksum: int) -> tuple[int, ...]:
    """Fragment indexes of part ``seq_num`` (in draw order; treat as a set).

    Parts 1..seq_len are the plain fragments ``seq_num - 1``; later parts mix a random
    subset whose size comes from :func:`choose_degree` on the same generator.
    """
    if seq_num < 1 or seq_len < 1:
        raise ValueError(f"seq_num and seq_len start at 1 (got {seq_num}, {seq_len})")
    if seq_num <= seq_len:
        return (seq_num - 1,)
    rng = fragment_rng(seq_num, checksum)
    degree = choose_degree(seq_len, rng)
    return tuple(shuffle(range(seq_len), rng, degree))


@lru_cache(maxsize=2048)
def fragment_mask(seq_num: int, seq_len: int, checksum: int) -> int:
    """:func:`choose_fragments` as a bitmask (bit i = fragment i).

    Cached, small (seq_len bits an entry), so that an encoder and a decoder in one
    process (tests, benchmarks, loopback) draw each part's fragments once.
    """
    mask = 0
    for index in choose_fragments(seq_num, seq_len, checksum):
        mask |= 1 << index
    return mask


def floor_degree(seq_len: int) -> int:
    """Minimum degree of the mixed parts a ``degree_floor`` sender shows: ceil(seq_len/4)."""
    return max(1, math.ceil(seq_len / 4))
