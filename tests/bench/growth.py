"""The growth exponent every bench prints under its table: one definition for all."""

from __future__ import annotations

import math


def fitted_exponent(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of log(time) on log(size): 1.0 is linear, 2.0 quadratic.

    Times are floored at 1 µs (an idle sync can round to 0); fewer than two sizes give NaN.
    """
    usable = [(math.log(n), math.log(max(t, 1e-6))) for n, t in points]
    if len(usable) < 2:
        return float("nan")
    mean_x = sum(x for x, _ in usable) / len(usable)
    mean_y = sum(y for _, y in usable) / len(usable)
    spread = sum((x - mean_x) ** 2 for x, _ in usable)
    return sum((x - mean_x) * (y - mean_y) for x, y in usable) / spread
