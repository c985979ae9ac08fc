"""Canonical encoding for everything Coldstation hashes or signs (DESIGN 3).

Journal records, policy documents, approvals and receipts are deterministic CBOR (RFC 8949
section 4.2: shortest integers, definite lengths, map keys sorted by their encoding), so
the appliance and an auditor's replay compute the same bytes and hashes from the same
content. Only plain types are allowed: anything else (floats, dates, sets, custom objects)
is refused, because its encoding is not obvious to a second implementation.
"""

from __future__ import annotations

import hashlib
from typing import Any

import cbor2


class CanonicalError(ValueError):
    """A value that has no canonical encoding here, or bytes that are not canonical."""


def encode(value: Any) -> bytes:
    """Deterministic CBOR of ``value`` (ints, text, bytes, bool, None, lists, maps)."""
    _check(value, depth=0)
    return cbor2.dumps(value, canonical=True)


def digest(value: Any) -> bytes:
    """SHA-256 of the canonical encoding: the hash that gets signed."""
    return hashlib.sha256(encode(value)).digest()


def encode_and_copy(value: Any) -> tuple[bytes, Any]:
    """(canonical encoding, a deep copy read back from it): the copy holds exactly what
    was encoded, so later edits to ``value`` cannot change what gets hashed. No re-check of
    canonical form is needed: the bytes are our own encoding."""
    data = encode(value)
    return data, cbor2.loads(data)


def decode(data: bytes, max_size: int = 1 << 20) -> Any:
    """Decode CBOR that must already be canonical (re-encoding gives the same bytes)."""
    if len(data) > max_size:
        raise CanonicalError(f"{len(data)} bytes exceeds the {max_size}-byte limit")
    try:
        value = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise CanonicalError(f"not CBOR: {exc}") from exc
    try:
        again = encode(value)
    except CanonicalError as exc:
        raise CanonicalError(f"CBOR holds a non-canonical type: {exc}") from exc
    if again != data:
        raise CanonicalError("CBOR is not in canonical form")
    return value


_LEAF_TYPES = frozenset({type(None), bool, str, bytes})
_INT_RANGE = range(-(2**64), 2**64)


def _check(value: Any, depth: int) -> None:
    """Refuse what has no canonical encoding here. Exact types first (one set lookup per
    leaf, which is most of a 1,450-input transcript); subclasses take the slow path."""
    if depth > 16:
        raise CanonicalError("nested deeper than 16 levels")
    kind = type(value)
    if kind in _LEAF_TYPES:
        return
    if kind is int:
        if value not in _INT_RANGE:
            raise CanonicalError("integer outside the 64-bit CBOR range")
        return
    if depth >= 16 and (kind is list or kind is tuple or kind is dict) and value:
        raise CanonicalError("nested deeper than 16 levels")  # its items would be at 17
    if kind is list or kind is tuple:
        for item in value:
            if type(item) not in _LEAF_TYPES:
                _check(item, depth + 1)
        return
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str and type(key) is not int:
                _check_key(key)
            if type(item) not in _LEAF_TYPES:
                _check(item, depth + 1)
        return
    _check_subclass(value, depth)


def _check_key(key: Any) -> None:
    if not isinstance(key, int | str) or isinstance(key, bool):
        raise CanonicalError(f"map key {key!r} is not an integer or text")


def _check_subclass(value: Any, depth: int) -> None:
    """Subclasses of the plain types (an IntEnum, a str subclass) encode as their base."""
    if isinstance(value, bool | str | bytes):
        return
    if isinstance(value, int):
        if not -(2**64) <= value < 2**64:
            raise CanonicalError("integer outside the 64-bit CBOR range")
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _check_key(key)
            _check(item, depth + 1)
        return
    raise CanonicalError(f"{type(value).__name__} has no canonical encoding here")
