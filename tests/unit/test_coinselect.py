"""Coin selection: Core's branch and bound, the fallback, fees, limits and determinism."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from online_coordinator.coinselect import (
    DEFAULT_LONG_TERM_FEE_RATE,
    MAX_STANDARD_TX_WEIGHT,
    TOTAL_TRIES,
    Candidate,
    Selection,
    SelectionError,
    fee_for_weight,
    select_coins,
)
from shared.bitcoin.amount import MAX_MONEY

P2WPKH_IN = 272  # 41 bytes * 4 + 108-byte witness
P2TR_IN = 230  # 41 bytes * 4 + 66-byte witness
P2WSH_2OF3_IN = 41 * 4 + 254
CHANGE_OUT = 31 * 4  # P2WPKH output
CHANGE_SPEND = P2WPKH_IN
BASE = (4 + 4 + 1 + 1 + 31) * 4 + 2  # version, locktime, counts, one P2WPKH payment, marker
RATE = 1_000  # 1 sat/vB


def coin(key: str, value: int, weight: int = P2WPKH_IN) -> Candidate:
    return Candidate(key, value, weight)


def select(candidates: list[Candidate], payments: int, **overrides: int) -> Selection:
    args = {
        "payments": payments,
        "base_weight": BASE,
        "change_output_weight": CHANGE_OUT,
        "change_spend_weight": CHANGE_SPEND,
        "fee_rate": RATE,
        "long_term_fee_rate": DEFAULT_LONG_TERM_FEE_RATE,
        "min_change": 294,
    }
    args.update(overrides)
    return select_coins(candidates, **args)


def keys(selection: Selection) -> list[object]:
    return [c.key for c in selection.chosen]


def assert_balanced(selection: Selection, payments: int, rate: int) -> None:
    total = sum(c.value for c in selection.chosen)
    assert total == payments + selection.fee + selection.change
    assert selection.fee >= fee_for_weight(selection.weight, rate)


# -- fees ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weight", "rate", "fee"),
    [
        (0, 5_000, 0),
        (1, 1_000, 1),  # 1 WU is 1 vB
        (4, 1_000, 1),
        (5, 1_000, 2),  # vsize rounds up first
        (4, 1, 1),  # then the fee rounds up
        (561 * 4, 1_000, 561),
        (561 * 4, 1_500, 842),  # 841.5 -> 842
        (400_000, 2_000, 200_000),
    ],
)
def test_fee_for_weight_rounds_vsize_then_fee_up(weight: int, rate: int, fee: int) -> None:
    assert fee_for_weight(weight, rate) == fee


@given(st.integers(0, 400_000), st.integers(0, 400_000), st.integers(0, 10**7))
def test_fee_is_subadditive_so_per_part_fees_never_underpay(a: int, b: int, rate: int) -> None:
    assert fee_for_weight(a, rate) + fee_for_weight(b, rate) >= fee_for_weight(a + b, rate)


# -- branch and bound ---------------------------------------------------------------------


def test_bnb_finds_the_exact_changeless_match() -> None:
    """Two coins whose effective values add up to exactly payments + base fee."""
    payments = 1_000_000
    target = payments + fee_for_weight(BASE, RATE)  # 1_000_042
    input_fee = fee_for_weight(P2WPKH_IN, RATE)  # 68
    a = coin("a", 600_000 + input_fee)
    b = coin("b", target - 600_000 + input_fee)
    distractors = [coin("big", 5_000_000), coin("c", 300_000), coin("d", 123_456)]
    selection = select([distractors[0], a, *distractors[1:], b], payments)
    assert selection.algorithm == "bnb"
    assert sorted(keys(selection)) == ["a", "b"]
    assert selection.change == 0
    assert selection.fee == fee_for_weight(BASE, RATE) + 2 * input_fee == 178
    assert selection.weight == BASE + 2 * P2WPKH_IN
    assert selection.fee == fee_for_weight(selection.weight, RATE)  # no excess at all
    assert_balanced(selection, payments, RATE)


def test_bnb_accepts_excess_up_to_the_cost_of_change() -> None:
    cost_of_change = fee_for_weight(CHANGE_OUT, RATE) + fee_for_weight(
        CHANGE_SPEND, DEFAULT_LONG_TERM_FEE_RATE
    )
    payments = 50_000
    needed = payments + fee_for_weight(BASE + P2WPKH_IN, RATE)
    exactly_at_edge = select([coin("x", needed + cost_of_change)], payments)
    assert exactly_at_edge.algorithm == "bnb"
    assert exactly_at_edge.fee == needed - payments + cost_of_change
    over_edge = select([coin("x", needed + cost_of_change + 1)], payments)
    assert over_edge.algorithm != "bnb"


def core_bnb(
    pool: list[tuple[int, int, int, int]], target: int, cost_of_change: int, max_weight: int
) -> list[int]:
    """Bitcoin Core's SelectCoinsBnB transliterated line by line (the oracle).

    ``pool`` holds (effective value, fee, long-term fee, weight), sorted as Core sorts it.
    Keeps Core's running ``curr_available_value`` rather than the suffix sums used in
    production, so the two are checked against each other.
    """
    available = sum(p[0] for p in pool)
    if available < target:
        return []
    waste = value = weight = 0
    selection: list[int] = []
    best: list[int] = []
    best_waste = MAX_MONEY
    high = pool[0][1] > pool[0][2]
    index = 0
    tries = 0
    while tries < TOTAL_TRIES:
        backtrack = False
        if (
            value + available < target
            or value > target + cost_of_change
            or (waste > best_waste and high)
            or weight > max_weight  # Core's separate branch only sets a flag we do not need
        ):
            backtrack = True
        elif value >= target:
            waste += value - target
            if waste <= best_waste:
                best, best_waste = list(selection), waste
            waste -= value - target
            backtrack = True
        if backtrack:
            if not selection:
                break
            index -= 1
            while index > selection[-1]:
                available += pool[index][0]
                index -= 1
            value -= pool[index][0]
            waste -= pool[index][1] - pool[index][2]
            weight -= pool[index][3]
            selection.pop()
        else:
            eff, fee, long_term, w = pool[index]
            available -= eff
            if (
                not selection
                or index - 1 == selection[-1]
                or eff != pool[index - 1][0]
                or fee != pool[index - 1][1]
            ):
                selection.append(index)
                value += eff
                waste += fee - long_term
                weight += w
        tries += 1
        index += 1
    return best


_WEIGHTS = st.sampled_from([P2TR_IN, P2WPKH_IN, P2WSH_2OF3_IN, 592])


@st.composite
def bnb_problems(draw: st.DrawFn) -> tuple[list[Candidate], int, int, int]:
    """Pools with many equal and near-equal coins, and payments near a subset's sum."""
    values = draw(
        st.lists(
            st.sampled_from([10_000, 20_000, 20_500, 50_000, 77_777]) | st.integers(1_000, 300_000),
            min_size=1,
            max_size=14,
        )
    )
    candidates = [Candidate(i, v, draw(_WEIGHTS)) for i, v in enumerate(values)]
    rate = draw(st.sampled_from([0, 1_000, 3_000, 12_000, 25_000]))
    long_term = draw(st.sampled_from([0, 5_000, 10_000]))
    subset = draw(st.lists(st.sampled_from(candidates), max_size=5, unique=True))
    effective = sum(c.value - fee_for_weight(c.input_weight, rate) for c in subset)
    payments = max(1, effective - fee_for_weight(BASE, rate) - draw(st.integers(-50, 900)))
    return candidates, payments, rate, long_term


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bnb_problems())
def test_bnb_matches_cores_algorithm(problem: tuple[list[Candidate], int, int, int]) -> None:
    candidates, payments, rate, long_term = problem
    pool = []
    for order, c in enumerate(candidates):
        fee = fee_for_weight(c.input_weight, rate)
        if c.value > fee:
            lt = fee_for_weight(c.input_weight, long_term)
            pool.append((c.value - fee, fee, lt, c.input_weight, order))
    pool.sort(key=lambda p: (-p[0], p[1], p[4]))
    target = payments + fee_for_weight(BASE, rate)
    cost_of_change = fee_for_weight(CHANGE_OUT, rate) + fee_for_weight(CHANGE_SPEND, long_term)
    expected = (
        core_bnb([p[:4] for p in pool], target, cost_of_change, MAX_STANDARD_TX_WEIGHT - BASE)
        if pool
        else []
    )
    try:
        selection = select(candidates, payments, fee_rate=rate, long_term_fee_rate=long_term)
    except SelectionError:
        assert not expected
        return
    if expected:
        assert selection.algorithm == "bnb"
        assert keys(selection) == [candidates[pool[i][4]].key for i in expected]
    else:
        assert selection.algorithm != "bnb"


# -- fallback -----------------------------------------------------------------------------


def test_fallback_makes_change_when_it_is_not_dust() -> None:
    payments = 1_000_000
    selection = select([coin("only", 5_000_000)], payments)
    assert selection.algorithm == "largest-first"
    weight = BASE + P2WPKH_IN + CHANGE_OUT
    assert selection.weight == weight
    assert selection.fee == fee_for_weight(weight, RATE) == 141
    assert selection.change == 5_000_000 - payments - 141
    assert_balanced(selection, payments, RATE)


def test_fallback_folds_dust_change_into_the_fee() -> None:
    """Excess above BnB's window but too small for a change output of at least min_change."""
    payments = 1_000_000
    excess = 200  # > cost of change (31 with a zero long-term rate), change would be 169
    value = payments + fee_for_weight(BASE, RATE) + fee_for_weight(P2WPKH_IN, RATE) + excess
    selection = select([coin("only", value)], payments, long_term_fee_rate=0)
    assert selection.algorithm != "bnb"
    assert selection.change == 0
    assert selection.fee == value - payments == 310
    assert selection.weight == BASE + P2WPKH_IN
    assert_balanced(selection, payments, RATE)
    with_lower_dust_limit = select(
        [coin("only", value)], payments, long_term_fee_rate=0, min_change=169
    )
    assert with_lower_dust_limit.change == 169


def test_largest_first_accumulates_in_value_order() -> None:
    candidates = [coin("small", 30_000), coin("large", 90_000), coin("mid", 60_000)]
    selection = select(candidates, 140_000)
    assert selection.algorithm == "largest-first"
    assert keys(selection) == ["large", "mid"]
    assert selection.change > 294
    assert_balanced(selection, 140_000, RATE)


def test_lowest_larger_wins_when_it_wastes_less() -> None:
    """At a high fee rate a light single coin beats the heavier largest coin."""
    rate = 50_000
    candidates = [coin("heavy-big", 9_000_000, 2_000), coin("light", 3_000_000, P2TR_IN)]
    selection = select(candidates, 1_000_000, fee_rate=rate)
    assert selection.algorithm == "lowest-larger"
    assert keys(selection) == ["light"]
    assert_balanced(selection, 1_000_000, rate)


def test_largest_first_wins_when_consolidating_is_cheap() -> None:
    """Below the long-term rate, spending the heavier coin now is the lower-waste choice."""
    candidates = [coin("heavy-big", 9_000_000, 2_000), coin("light", 3_000_000, P2TR_IN)]
    selection = select(candidates, 1_000_000, fee_rate=1_000)
    assert selection.algorithm == "largest-first"
    assert keys(selection) == ["heavy-big"]


# -- skipped coins, errors, limits ------------------------------------------------------


def test_coins_not_worth_their_fee_are_skipped() -> None:
    rate = 10_000
    input_fee = fee_for_weight(P2WPKH_IN, rate)  # 680
    candidates = [coin("zero", input_fee), coin("neg", 100), coin("ok", 1_000_000)]
    selection = select(candidates, 900_000, fee_rate=rate)
    assert keys(selection) == ["ok"]


def test_insufficient_funds_says_what_is_needed_and_available() -> None:
    rate = 10_000
    input_fee = fee_for_weight(P2WPKH_IN, rate)
    candidates = [coin("a", 400_000), coin("b", 500_000), coin("dust", input_fee - 1)]
    with pytest.raises(SelectionError) as info:
        select(candidates, 900_000, fee_rate=rate)
    fee = fee_for_weight(BASE + 2 * P2WPKH_IN, rate)
    assert str(info.value) == (
        f"insufficient funds: need {900_000 + fee} sats (900000 to pay + {fee} fee to spend "
        f"all 2 usable coins), the wallet has 900000 sats available; 1 coins "
        f"({input_fee - 1} sats) are worth less than the fee to spend them"
    )


def test_no_usable_candidates_is_insufficient_funds() -> None:
    with pytest.raises(SelectionError) as info:
        select([coin("dust", 68)], 1_000)
    assert str(info.value) == (
        "insufficient funds: need at least 1042 sats, the wallet has no usable coins; "
        "1 coins (68 sats) are worth less than the fee to spend them"
    )
    with pytest.raises(SelectionError, match=r"no usable coins$"):
        select([], 0, fee_rate=0)


def test_max_weight_is_respected() -> None:
    candidates = [coin(f"c{i}", 10_000) for i in range(40)]
    payments = 300_000
    selection = select(candidates, payments)
    assert len(selection.chosen) == 31
    with pytest.raises(SelectionError) as info:
        select(candidates, payments, max_weight=BASE + 30 * P2WPKH_IN)
    assert str(info.value).startswith("the transaction would weigh ")
    assert str(info.value).endswith(
        f"WU, over the {BASE + 30 * P2WPKH_IN} WU standard limit; consolidate small coins first"
    )
    heavy_enough = select(candidates, payments, max_weight=selection.weight)
    assert heavy_enough.weight <= selection.weight


def test_change_is_never_burnt_to_fit_the_weight_limit() -> None:
    """Without its change output the transaction would fit, but 3.99 BTC would go to fees."""
    with pytest.raises(SelectionError) as info:
        select([coin("only", 500_000_000)], 100_000_000, max_weight=BASE + P2WPKH_IN)
    limit = BASE + P2WPKH_IN
    assert str(info.value) == (
        f"the transaction would weigh {limit + CHANGE_OUT} WU, over the {limit} WU standard "
        "limit; consolidate small coins first"
    )


def test_more_than_252_inputs_pay_for_the_longer_input_count() -> None:
    candidates = [coin(f"c{i}", 1_000) for i in range(300)]
    payments = 260 * (1_000 - 68) - 100
    selection = select(candidates, payments)
    count = len(selection.chosen)
    assert count > 252
    extra = 0 if selection.change == 0 else CHANGE_OUT
    assert selection.weight == BASE + count * P2WPKH_IN + 2 * 4 + extra
    assert_balanced(selection, payments, RATE)


def test_bnb_match_that_misses_the_longer_input_count_is_dropped() -> None:
    """260 inputs need a 3-byte input count: 2 vB Core's per-input fees do not pay for."""
    candidates = [coin(f"c{i}", 1_000) for i in range(300)]
    effective = 1_000 - fee_for_weight(P2WPKH_IN, RATE)
    payments = 260 * effective - fee_for_weight(BASE, RATE)  # an exact 260-coin BnB match
    selection = select(candidates, payments)
    assert selection.algorithm == "largest-first"
    assert len(selection.chosen) == 261
    assert selection.weight == BASE + 261 * P2WPKH_IN + 8 + CHANGE_OUT
    assert_balanced(selection, payments, RATE)


@pytest.mark.parametrize(
    ("candidates", "overrides", "message"),
    [
        ([coin("a", 1), coin("a", 2)], {}, "the same coin is offered twice"),
        ([coin("a", 0)], {}, "candidate 'a' has an invalid value or weight"),
        ([coin("a", MAX_MONEY + 1)], {}, "candidate 'a' has an invalid value or weight"),
        ([coin("a", 10, 0)], {}, "candidate 'a' has an invalid value or weight"),
        ([], {"fee_rate": -1}, "fee rates must not be negative"),
        ([], {"payments": -1}, "payments of -1 sats are out of range"),
        ([], {"base_weight": 0}, "base_weight must be positive, not 0"),
        ([], {"min_change": -5}, "min_change must not be negative, not -5"),
    ],
)
def test_nonsense_arguments_are_refused(
    candidates: list[Candidate], overrides: dict[str, int], message: str
) -> None:
    payments = overrides.pop("payments", 1_000)
    with pytest.raises(SelectionError) as info:
        select(candidates, payments, **overrides)
    assert str(info.value) == message


# -- determinism --------------------------------------------------------------------------


def test_same_input_same_output_and_ties_follow_the_given_order() -> None:
    candidates = [coin(f"c{i}", 100_000) for i in range(10)]
    first = select(candidates, 250_000)
    assert first == select(list(candidates), 250_000)
    assert keys(first) == ["c0", "c1", "c2"]
    reordered = select(list(reversed(candidates)), 250_000)
    assert keys(reordered) == ["c9", "c8", "c7"]


# -- properties ---------------------------------------------------------------------------


@st.composite
def problems(draw: st.DrawFn) -> dict[str, object]:
    values = draw(st.lists(st.integers(1, 5_000_000) | st.integers(1, 3_000), max_size=30))
    candidates = [Candidate(("tx", i), v, draw(_WEIGHTS)) for i, v in enumerate(values)]
    return {
        "candidates": candidates,
        "payments": draw(st.integers(0, 20_000_000)),
        "base_weight": draw(st.integers(42, 4_000)),
        "change_output_weight": draw(st.sampled_from([CHANGE_OUT, 43 * 4, 32 * 4 + 8])),
        "change_spend_weight": draw(st.sampled_from([P2TR_IN, P2WPKH_IN, P2WSH_2OF3_IN])),
        "fee_rate": draw(st.integers(0, 200_000)),
        "long_term_fee_rate": draw(st.integers(0, 50_000)),
        "min_change": draw(st.sampled_from([0, 294, 330, 546, 5_000])),
        "max_weight": draw(st.sampled_from([MAX_STANDARD_TX_WEIGHT, 6_000, 2_500])),
    }


def _changeless_weight(chosen: tuple[Candidate, ...] | list[Candidate], base: int) -> int:
    return base + sum(c.input_weight for c in chosen) + (8 if len(chosen) > 252 else 0)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_selection_invariants(problem: dict[str, object]) -> None:
    args = dict(problem)
    candidates: list[Candidate] = args.pop("candidates")  # type: ignore[assignment]
    rate = int(args["fee_rate"])  # type: ignore[call-overload]
    base = int(args["base_weight"])  # type: ignore[call-overload]
    usable = [c for c in candidates if c.value > fee_for_weight(c.input_weight, rate)]
    try:
        selection = select_coins(candidates, **args)  # type: ignore[arg-type]
    except SelectionError as exc:
        message = str(exc)
        total = sum(c.value for c in usable)
        all_weight = _changeless_weight(usable, base)
        if message.startswith("insufficient funds"):
            assert not usable or total < args["payments"] + fee_for_weight(all_weight, rate)
        else:  # the lightest option found is too heavy; it is a largest-first prefix
            weight = int(message.split()[4])
            assert weight > args["max_weight"]
            assert weight <= all_weight + args["change_output_weight"]  # type: ignore[operator]
        return
    chosen = selection.chosen
    payments = int(args["payments"])  # type: ignore[call-overload]
    # value conservation and a fee that covers the whole transaction's vsize
    assert_balanced(selection, payments, rate)
    assert len({c.key for c in chosen}) == len(chosen) > 0
    assert all(c in usable for c in chosen)
    change_weight = args["change_output_weight"] if selection.change else 0
    assert selection.weight == _changeless_weight(chosen, base) + change_weight
    assert selection.weight <= args["max_weight"]
    # change is never dust
    min_change = max(1, int(args["min_change"]))  # type: ignore[call-overload]
    assert selection.change == 0 or selection.change >= min_change
    assert selection.algorithm in {"bnb", "largest-first", "lowest-larger"}
    excess = selection.fee - fee_for_weight(selection.weight, rate)
    if selection.algorithm == "bnb":
        assert selection.change == 0
        cost_of_change = fee_for_weight(args["change_output_weight"], rate) + fee_for_weight(
            args["change_spend_weight"],
            args["long_term_fee_rate"],  # type: ignore[arg-type]
        )
        per_part_rounding = (len(chosen) + 1) * (rate * 3 // 4000 + 2)
        assert excess <= cost_of_change + per_part_rounding
    elif selection.change == 0:  # what went to the fee was too little to make change from
        weight_with_change = selection.weight + int(args["change_output_weight"])  # type: ignore[call-overload]
        assert selection.fee < fee_for_weight(weight_with_change, rate) + min_change
    # determinism
    assert select_coins(list(candidates), **args) == selection  # type: ignore[arg-type]
