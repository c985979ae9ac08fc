"""The station's sorted-blob sets and maps: what a checkpoint stores must be exactly the
sorted union of the loaded blob and the additions, whatever the order of additions and
however they interleave with the blob (the merge in ``to_blob`` is checked against a plain
sort of everything)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.sortedblob import BlobError, FixedMap, FixedSet

KEY = st.binary(min_size=2, max_size=2)


@given(st.sets(KEY, max_size=40), st.lists(KEY, max_size=40))
def test_set_blob_is_the_sorted_union(loaded: set[bytes], added: list[bytes]) -> None:
    kept = FixedSet(2, b"".join(sorted(loaded)))
    for item in added:
        kept.add(item)
    expected = sorted(loaded | set(added))
    assert kept.to_blob() == b"".join(expected)
    assert len(kept) == len(expected)
    assert list(kept) == expected
    assert all(item in kept for item in expected)
    kept.add(b"\xff\xff")  # the overlay works again after a merge
    assert kept.to_blob() == b"".join(sorted({*expected, b"\xff\xff"}))


@given(
    st.dictionaries(KEY, st.binary(min_size=1, max_size=1), max_size=40),
    st.lists(st.tuples(KEY, st.binary(min_size=1, max_size=1)), max_size=40),
)
def test_map_blob_is_the_sorted_merge_later_values_win(
    loaded: dict[bytes, bytes], added: list[tuple[bytes, bytes]]
) -> None:
    kept = FixedMap(2, 1, b"".join(k + v for k, v in sorted(loaded.items())))
    expected = dict(loaded)
    for key, value in added:
        kept.set(key, value)
        expected[key] = value
    assert kept.items() == sorted(expected.items())
    assert kept.to_blob() == b"".join(k + v for k, v in sorted(expected.items()))
    assert len(kept) == len(expected)
    assert all(kept.get(k) == v for k, v in expected.items())
    assert kept.get(b"\x00") is None  # wrong width: never found


def test_a_blob_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(BlobError, match="not a multiple of 3"):
        FixedMap(2, 1, b"\x00" * 4, what="signed outpoints")
    with pytest.raises(BlobError, match="entry of 3 bytes"):
        FixedSet(2).add(b"abc")
