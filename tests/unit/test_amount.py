"""Money constants and Core's fee rounding, the one definition every caller uses."""

from __future__ import annotations

import pytest

from online_coordinator.coinselect import fee_for_weight
from shared.bitcoin.amount import COIN, MAX_MONEY, dust_threshold, fee_at_rate


@pytest.mark.parametrize(
    ("vsize", "rate", "fee"),
    [
        (141, 1_000, 141),
        (141, 1_500, 212),
        (1, 1, 1),
        (999, 1, 1),
        (1_001, 1, 2),
        (0, 5_000, 0),
        (250, 2_500, 625),
    ],
)
def test_fee_at_rate_rounds_up_as_core_getfee(vsize: int, rate: int, fee: int) -> None:
    """Core >= 23 (``std::ceil``): a fee never pays below its rate, and never 0 for a rate."""
    assert fee_at_rate(vsize, rate) == fee


def test_coin_selection_and_the_regtest_node_count_fees_alike() -> None:
    assert fee_for_weight(4 * 141 - 3, 1_500) == fee_at_rate(141, 1_500) == 212
    # Core's GetDustThreshold is GetFee at the dust relay rate: P2WPKH 294, P2PKH 546.
    assert dust_threshold(b"\x00\x14" + bytes(20)) == 294
    assert dust_threshold(b"\x76\xa9\x14" + bytes(20) + b"\x88\xac") == 546
    assert MAX_MONEY == 21_000_000 * COIN == 2_100_000_000_000_000
