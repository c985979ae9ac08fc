"""The document field checks: one family, each module's own error class."""

from __future__ import annotations

import pytest

from shared.checks import FieldChecks


class _Error(ValueError):
    pass


CHECK = FieldChecks(_Error)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: CHECK.integer(True, "n", 0, 9), "n must be an integer, not bool"),
        (lambda: CHECK.integer(10, "n", 0, 9), r"n 10 is outside 0\.\.9"),
        (lambda: CHECK.boolean(1, "b"), "b must be true or false, not int"),
        (lambda: CHECK.text("", "t", 4), r"t must be 1\.\.4 characters, got 0"),
        (lambda: CHECK.text("a\tb", "t", 4), "t contains control characters"),
        (lambda: CHECK.fixed_bytes("00" * 32, "h", 32), "h must be 32 bytes"),
        (lambda: CHECK.choice("x", "c", ("a", "b")), "c must be one of a, b, not 'x'"),
        (lambda: CHECK.items((1, 2), "l", 1), "l has 2 items, over the limit of 1"),
        (lambda: CHECK.exact_keys([], "doc", {"a"}), "doc must be a map"),
        (lambda: CHECK.exact_keys({}, "doc", {"a"}), "doc is missing field 'a'"),
        (lambda: CHECK.exact_keys({"a": 1, 7: 1}, "doc", {"a"}), "doc has unknown field 7"),
    ],
)
def test_each_check_raises_the_bound_error_naming_the_field(call, message):
    with pytest.raises(_Error, match=message):
        call()


def test_values_that_pass_come_back_unchanged():
    assert CHECK.integer(9, "n", 0, 9) == 9
    assert CHECK.text("a\tb", "t", 4, printable=False) == "a\tb"  # signed as it is
    assert CHECK.exact_keys({"a": 1, "b": 2}, "doc", {"a"}, {"b"}) == {"a": 1, "b": 2}
