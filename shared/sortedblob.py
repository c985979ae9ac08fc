"""Sets and maps of fixed-width byte strings kept as one sorted blob, plus recent additions.

The station's signing history (request ids seen, outpoints signed, transactions approved)
grows by a few entries per ceremony and is read a few hundred times per ceremony. Kept as
Python sets it would cost one object per entry to load from the signed checkpoint every
time; kept as a sorted blob it loads as one ``bytes`` and answers by binary search, and the
entries added since the checkpoint sit in a small overlay. ``to_blob`` merges the sorted
overlay into the blob (one binary search per addition, then one join of slices: a
1,450-input ceremony adds 1,450 outpoints to a history of hundreds of thousands, and the
checkpoint it writes must not cost a sort of the whole history) and keeps the result as the
new blob. Written here because the standard library has no sorted byte-array
container and the checkpoint format must stay ours (it is hashed and signed).
"""

from __future__ import annotations

from collections.abc import Iterator


class BlobError(ValueError):
    """A blob whose length is not a multiple of its entry width, or that is not sorted."""


def _check(blob: bytes, width: int, what: str) -> None:
    """Only the length is checked on load: blobs come from a signed checkpoint that this
    module wrote sorted (``to_blob``), and a per-entry check would cost what it saves."""
    if len(blob) % width:
        raise BlobError(f"{what}: {len(blob)} bytes is not a multiple of {width}")


class FixedSet:
    """A set of byte strings of one width."""

    def __init__(self, width: int, blob: bytes = b"", *, what: str = "set") -> None:
        _check(blob, width, what)
        self.width = width
        self._blob = blob
        self._added: set[bytes] = set()

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, bytes) or len(item) != self.width:
            return False
        return item in self._added or _find(self._blob, self.width, self.width, item) >= 0

    def add(self, item: bytes) -> None:
        if len(item) != self.width:
            raise BlobError(f"entry of {len(item)} bytes in a set of {self.width}-byte entries")
        if item not in self:
            self._added.add(item)

    def __len__(self) -> int:
        return len(self._blob) // self.width + len(self._added)

    def __iter__(self) -> Iterator[bytes]:
        return iter(sorted(self._entries()))

    def _entries(self) -> list[bytes]:
        w = self.width
        return [self._blob[i : i + w] for i in range(0, len(self._blob), w)] + list(self._added)

    def to_blob(self) -> bytes:
        if self._added:
            added = {item: b"" for item in self._added}  # never in the blob (see add)
            self._blob = _merged(self._blob, self.width, self.width, added)
            self._added.clear()
        return self._blob


class FixedMap:
    """A map from byte strings of one width to byte strings of another."""

    def __init__(
        self, key_width: int, value_width: int, blob: bytes = b"", *, what: str = "map"
    ) -> None:
        self.key_width, self.value_width = key_width, value_width
        self._stride = key_width + value_width
        _check(blob, self._stride, what)
        self._blob = blob
        self._added: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        if len(key) != self.key_width:
            return None
        found = self._added.get(key)
        if found is not None:
            return found
        at = _find(self._blob, self._stride, self.key_width, key)
        if at < 0:
            return None
        start = at * self._stride + self.key_width
        return self._blob[start : start + self.value_width]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, bytes) and self.get(key) is not None

    def set(self, key: bytes, value: bytes) -> None:
        if len(key) != self.key_width or len(value) != self.value_width:
            raise BlobError("map entry of the wrong width")
        self._added[key] = value

    def __len__(self) -> int:
        return len(self.to_blob()) // self._stride

    def items(self) -> list[tuple[bytes, bytes]]:
        merged: dict[bytes, bytes] = {}
        for i in range(0, len(self._blob), self._stride):
            merged[self._blob[i : i + self.key_width]] = self._blob[
                i + self.key_width : i + self._stride
            ]
        merged.update(self._added)
        return sorted(merged.items())

    def to_blob(self) -> bytes:
        if self._added:
            self._blob = _merged(self._blob, self._stride, self.key_width, self._added)
            self._added.clear()
        return self._blob


def _merged(blob: bytes, stride: int, key_width: int, added: dict[bytes, bytes]) -> bytes:
    """``blob`` with each ``key + added[key]`` in its sorted place (replacing the entry of
    the same key): slices of the blob between the insertion points, joined once."""
    pieces: list[bytes] = []
    taken = 0  # entries of the blob already copied
    for key in sorted(added):
        at = _lower_bound(blob, stride, key_width, key, taken)
        pieces.append(blob[taken * stride : at * stride])
        pieces.append(key + added[key])
        same = at * stride
        taken = at + 1 if blob[same : same + key_width] == key else at
    pieces.append(blob[taken * stride :])
    return b"".join(pieces)


def _lower_bound(blob: bytes, stride: int, key_width: int, key: bytes, low: int) -> int:
    """Index of the first entry at or after ``low`` whose key is not below ``key``."""
    high = len(blob) // stride
    while low < high:
        middle = (low + high) >> 1
        start = middle * stride
        if blob[start : start + key_width] < key:
            low = middle + 1
        else:
            high = middle
    return low


def _find(blob: bytes, stride: int, key_width: int, key: bytes) -> int:
    """Index of the entry whose first ``key_width`` bytes are ``key``, or -1 (a binary
    search; each probe slices the blob once, the cheapest comparison Python offers)."""
    low, high = 0, len(blob) // stride
    while low < high:
        middle = (low + high) >> 1
        start = middle * stride
        probe = blob[start : start + key_width]
        if probe < key:
            low = middle + 1
        elif probe == key:
            return middle
        else:
            high = middle
    return -1
