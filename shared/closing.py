"""Resources that end with one call, usable in a ``with`` block.

A journal file, an officer's unlocked token, the activation PIN, a database, a node
connection, a camera, worker processes: each has one method that ends its use (close,
lock, wipe), and each must run it when the block ends, on error too. One base class
instead of the same ``__enter__``/``__exit__`` pair in every one of them. No I/O here:
what ending means is each subclass's :meth:`Closing.close`.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Closing:
    """``with resource:`` calls :meth:`close` when the block ends, however it ends."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
