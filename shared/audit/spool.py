"""Facts kept on disk while the replay goes on: a year of evidence is not held in memory.

The coordinator's evidence is read once, up front (:mod:`shared.audit.evidence`), and most
of what its requests and broadcasts say is needed only once, later, in order: when the
coordinator check walks them. A :class:`Spool` keeps such facts pickled in a temporary
file (deleted when closed, or when the process ends) and hands them back in order, or by
position; only the positions stay in memory.
"""

from __future__ import annotations

import pickle
import tempfile
from array import array
from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar

_PROTOCOL = pickle.HIGHEST_PROTOCOL
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Records(Protocol[T_co]):
    """What the checks ask of a list of facts: a :class:`Spool` or, in tests, a tuple."""

    def __len__(self) -> int: ...
    def __getitem__(self, position: int, /) -> T_co: ...
    def __iter__(self) -> Iterator[T_co]: ...


class Spool(Generic[T]):
    """Objects in the order appended, read back in order or by position."""

    def __init__(self) -> None:
        # in memory up to a few MB (a small evidence never touches the disk), then a file
        self._file = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115
        self._offsets = array("q")
        self._end = 0

    def __len__(self) -> int:
        return len(self._offsets)

    def append(self, value: T) -> int:
        """Keep ``value`` (picklable); returns its position."""
        return self.append_pickled(pickle.dumps(value, _PROTOCOL))

    def append_pickled(self, data: bytes) -> int:
        """Keep an object already pickled (by a worker process); returns its position."""
        position = len(self._offsets)
        self._file.seek(self._end)
        self._file.write(data)
        self._offsets.append(self._end)
        self._end += len(data)
        return position

    def __getitem__(self, position: int) -> T:
        if not 0 <= position < len(self._offsets):
            raise IndexError(position)
        self._file.seek(self._offsets[position])
        found: T = pickle.load(self._file)  # what append() pickled: a T
        return found

    def __iter__(self) -> Iterator[T]:
        """Every object in order (each read as it is reached: nothing accumulates)."""
        for position in range(len(self._offsets)):
            yield self[position]

    def close(self) -> None:
        self._file.close()

    def __getstate__(self) -> None:
        raise TypeError("a Spool stays in the process that wrote it")


__all__ = ["Spool"]
