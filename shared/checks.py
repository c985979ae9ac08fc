"""Field checks for decoded documents: one validator family, the error class a parameter.

Policies, requests, journal records, station state and review inputs are all read from
bytes someone else wrote, so every field is checked for its exact type and bounds before
use. The rules are the same everywhere (a bool is not an integer, text shown to officers
is printable, a map has exactly its fields); only the error class differs, so each module
binds its own once, ``_check = FieldChecks(PolicyError)``, and its callers keep catching
the error they always caught.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class FieldChecks:
    """The checks, raising ``error`` with a message that names the field."""

    error: type[Exception]

    def integer(self, value: object, name: str, low: int, high: int) -> int:
        """An int within ``low..high``; bools are refused though Python counts them as ints."""
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(f"{name} must be an integer, not {type(value).__name__}")
        if not low <= value <= high:
            raise self.error(f"{name} {value} is outside {low}..{high}")
        return value

    def boolean(self, value: object, name: str) -> bool:
        """Exactly True or False: 0 and 1 are integers, not answers."""
        if not isinstance(value, bool):
            raise self.error(f"{name} must be true or false, not {type(value).__name__}")
        return value

    def text(self, value: object, name: str, max_len: int, *, printable: bool = True) -> str:
        """Text of 1..``max_len`` characters. Printable by default: control characters could
        forge lines on a review screen or in a report. ``printable=False`` only where the
        text was already accepted under looser rules (a signed journal's details)."""
        if not isinstance(value, str):
            raise self.error(f"{name} must be text, not {type(value).__name__}")
        if not 0 < len(value) <= max_len:
            raise self.error(f"{name} must be 1..{max_len} characters, got {len(value)}")
        if printable and not value.isprintable():
            raise self.error(f"{name} contains control characters")
        return value

    def fixed_bytes(self, value: object, name: str, size: int) -> bytes:
        """Bytes of exactly ``size``: a hash, an id or a key, never text that looks like one."""
        if not isinstance(value, bytes) or len(value) != size:
            raise self.error(f"{name} must be {size} bytes")
        return value

    def choice(self, value: object, name: str, choices: tuple[str, ...]) -> str:
        """One of a closed set of names (a network, a kind)."""
        if not isinstance(value, str) or value not in choices:
            raise self.error(f"{name} must be one of {', '.join(choices)}, not {value!r}")
        return value

    def items(self, value: object, name: str, max_items: int) -> list[Any] | tuple[Any, ...]:
        """A list (or tuple) of at most ``max_items``: the bound comes before any item is read."""
        if not isinstance(value, list | tuple):
            raise self.error(f"{name} must be a list")
        if len(value) > max_items:
            raise self.error(f"{name} has {len(value)} items, over the limit of {max_items}")
        return value

    def exact_keys(
        self, plain: object, what: str, required: Set[str], optional: Set[str] = frozenset()
    ) -> dict[Any, Any]:
        """A map with every required field and nothing unknown: an unknown field is refused,
        never ignored, so nothing unsigned or unapproved can ride along."""
        if not isinstance(plain, dict):
            raise self.error(f"{what} must be a map")
        missing = sorted(required - set(plain))
        if missing:
            raise self.error(f"{what} is missing field {missing[0]!r}")
        unknown = sorted(repr(k) for k in set(plain) - required - optional)
        if unknown:
            raise self.error(f"{what} has unknown field {unknown[0]}")
        return plain
