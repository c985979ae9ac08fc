"""Coin selection for payout batches, after Bitcoin Core's wallet.

First Core's branch and bound (``SelectCoinsBnB``): a changeless input set whose excess is
smaller than what a change output would cost, which saves fees and leaves no change output
to link. When there is none, a deterministic fallback: largest-first accumulation and
Core's "lowest larger" single coin, keeping the candidate with the least waste.

All arithmetic is on integers. Fee rates are sat/kvB like Core's ``CFeeRate``, and a fee is
always ``ceil(vsize * rate / 1000)`` with ``vsize = ceil(weight / 4)``: sizes are kept in
weight units and rounded only when a fee is taken. Rounding each input's fee separately
(as Core does for effective values) can only overpay, because the fee function is
subadditive, so every result pays at least :func:`fee_for_weight` of its final weight.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import NamedTuple

from shared.bitcoin.amount import MAX_MONEY, fee_at_rate
from shared.bitcoin.size import MAX_STANDARD_TX_WEIGHT, WITNESS_SCALE

#: Core's ``TOTAL_TRIES``: bounds branch and bound however many coins the wallet has.
TOTAL_TRIES = 100_000
#: Core's default ``-consolidatefeerate`` (10 sat/vB), its long-term fee rate estimate.
DEFAULT_LONG_TERM_FEE_RATE = 10_000


class Candidate(NamedTuple):
    """A spendable coin; ``key`` is opaque (e.g. an outpoint) and must be hashable.

    A tuple: a wallet offers every coin it holds, 100,000 of them per batch.
    """

    key: object
    value: int
    input_weight: int


@dataclass(frozen=True)
class Selection:
    """The inputs to spend; ``sum(chosen values) == payments + fee + change`` always.

    ``weight`` is the whole signed transaction's (change output included when
    ``change > 0``); ``waste`` is Core's waste metric in sats, kept for comparing results.
    """

    chosen: tuple[Candidate, ...]
    change: int
    fee: int
    weight: int
    algorithm: str
    waste: int = 0


class SelectionError(ValueError):
    """No acceptable input set: not enough money, too heavy, or nonsensical parameters."""


@dataclass(frozen=True)
class _Params:
    """The selection problem in the units the algorithms use."""

    payments: int
    base_weight: int
    change_output_weight: int
    fee_rate: int
    long_term_fee_rate: int
    min_change: int
    max_weight: int
    cost_of_change: int


class _Coin(NamedTuple):
    """A candidate with its fees at the current and the long-term fee rate: built only for
    the coins of a result, the pool keeps the same numbers in lists."""

    candidate: Candidate
    effective: int
    fee: int
    long_term_fee: int
    order: int  # position in the caller's sequence, the final tie-break


@dataclass(frozen=True)
class _Pool:
    """The usable coins in selection order (largest effective value first, then the cheaper
    input, then the caller's order), one list per number: every algorithm reads these
    lists by index, so 100,000 coins are a few lists of ints rather than 100,000 objects,
    and the order comes from C-level sorts of those lists."""

    candidates: list[Candidate]
    value: list[int]
    effective: list[int]
    fee: list[int]
    long_term_fee: list[int]
    weight: list[int]
    order: list[int]

    def coins(self, indices: Iterable[int]) -> list[_Coin]:
        """The coins at ``indices`` as objects, for a result (a few, never the pool)."""
        return [
            _Coin(
                self.candidates[i],
                self.effective[i],
                self.fee[i],
                self.long_term_fee[i],
                self.order[i],
            )
            for i in indices
        ]


def fee_for_weight(weight: int, fee_rate: int) -> int:
    """Fee in sats for ``weight`` WU at ``fee_rate`` sat/kvB: the vsize rounded up, then
    Core's GetFee (:func:`shared.bitcoin.amount.fee_at_rate`)."""
    return fee_at_rate(-(-weight // WITNESS_SCALE), fee_rate)


def select_coins(
    candidates: Sequence[Candidate],
    *,
    payments: int,
    base_weight: int,
    change_output_weight: int,
    change_spend_weight: int,
    fee_rate: int,
    long_term_fee_rate: int = DEFAULT_LONG_TERM_FEE_RATE,
    min_change: int,
    max_weight: int = MAX_STANDARD_TX_WEIGHT,
) -> Selection:
    """Choose inputs paying ``payments`` sats plus the fee at ``fee_rate``.

    ``base_weight`` is the transaction without inputs and without change (version,
    locktime, a one-byte input count, the output count, payment outputs, the segwit
    marker and flag); a longer input count is added here. ``change_output_weight`` must
    include any growth of the output count that adding the change output causes.
    ``min_change`` is the dust threshold of the change script: smaller change is left to
    the fee rather than created. The same arguments always give the same result.
    """
    values = [c.value for c in candidates]
    weights = [c.input_weight for c in candidates]
    _check_arguments(
        candidates, values, weights, payments, fee_rate, long_term_fee_rate, min_change
    )
    _check_weights(base_weight, change_output_weight, change_spend_weight, max_weight)
    cost_of_change = fee_for_weight(change_output_weight, fee_rate) + fee_for_weight(
        change_spend_weight, long_term_fee_rate
    )
    params = _Params(
        payments=payments,
        base_weight=base_weight,
        change_output_weight=change_output_weight,
        fee_rate=fee_rate,
        long_term_fee_rate=long_term_fee_rate,
        min_change=max(min_change, 1),  # a zero-value change output is never wanted
        max_weight=max_weight,
        cost_of_change=cost_of_change,
    )
    pool = _usable_coins(candidates, values, weights, params)
    _check_funds(candidates, pool, params)
    bnb = _branch_and_bound(pool, params)
    if bnb is not None:
        return bnb
    return _fallback(pool, params)


def _check_arguments(
    candidates: Sequence[Candidate],
    values: list[int],
    weights: list[int],
    payments: int,
    fee_rate: int,
    long_term_fee_rate: int,
    min_change: int,
) -> None:
    """Refuse inputs no real wallet produces, before they turn into a wrong fee."""
    if not 0 <= payments <= MAX_MONEY:
        raise SelectionError(f"payments of {payments} sats are out of range")
    if fee_rate < 0 or long_term_fee_rate < 0:
        raise SelectionError("fee rates must not be negative")
    if min_change < 0:
        raise SelectionError(f"min_change must not be negative, not {min_change}")
    if candidates and (min(values) <= 0 or max(values) > MAX_MONEY or min(weights) <= 0):
        bad = next(c for c in candidates if not 0 < c.value <= MAX_MONEY or c.input_weight <= 0)
        raise SelectionError(f"candidate {bad.key!r} has an invalid value or weight")
    if len({c.key for c in candidates}) != len(candidates):
        raise SelectionError("the same coin is offered twice")


def _check_weights(
    base_weight: int, change_output_weight: int, change_spend_weight: int, max_weight: int
) -> None:
    named = {
        "base_weight": base_weight,
        "change_output_weight": change_output_weight,
        "change_spend_weight": change_spend_weight,
        "max_weight": max_weight,
    }
    for name, value in named.items():
        if value <= 0:
            raise SelectionError(f"{name} must be positive, not {value}")


def _usable_coins(
    candidates: Sequence[Candidate], values: list[int], weights: list[int], params: _Params
) -> _Pool:
    """Coins worth more than the fee to spend them, largest effective value first.

    Ties go to the cheaper input, then keep the caller's order, so results are
    deterministic. Stable sorts of the index list (by fee, then by effective value
    descending) give that order without a key tuple per coin; with one input weight (a
    wallet of one script type) the fee is a constant and one sort by value does.
    """
    fees = {
        weight: (
            fee_for_weight(weight, params.fee_rate),
            fee_for_weight(weight, params.long_term_fee_rate),
        )
        for weight in set(weights)
    }  # per input weight; wallets have only a few
    if len(fees) == 1:
        return _uniform_pool(candidates, values, *next(iter(fees.items())))
    fee = [fees[w][0] for w in weights]
    effective = [v - f for v, f in zip(values, fee, strict=True)]
    order = [i for i, e in enumerate(effective) if e > 0]
    order.sort(key=fee.__getitem__)
    order.sort(key=effective.__getitem__, reverse=True)  # stable, even reversed
    return _Pool(
        candidates=[candidates[i] for i in order],
        value=[values[i] for i in order],
        effective=[effective[i] for i in order],
        fee=[fee[i] for i in order],
        long_term_fee=[fees[weights[i]][1] for i in order],
        weight=[weights[i] for i in order],
        order=order,
    )


def _uniform_pool(
    candidates: Sequence[Candidate], values: list[int], weight: int, fees: tuple[int, int]
) -> _Pool:
    """The pool when every coin has the same input weight, hence the same fees."""
    fee, long_term = fees
    everything = range(len(values))
    usable = everything if min(values) > fee else [i for i in everything if values[i] > fee]
    order = sorted(usable, key=values.__getitem__, reverse=True)  # stable, even reversed
    value = [values[i] for i in order]
    count = len(order)
    return _Pool(
        candidates=[candidates[i] for i in order],
        value=value,
        effective=[v - fee for v in value],
        fee=[fee] * count,
        long_term_fee=[long_term] * count,
        weight=[weight] * count,
        order=order,
    )


def _input_count_weight(count: int) -> int:
    """Weight the input count adds beyond the one byte counted in ``base_weight``."""
    extra_bytes = 0 if count < 0xFD else 2 if count <= 0xFFFF else 4
    return extra_bytes * WITNESS_SCALE


def _changeless_weight(coins: Sequence[_Coin], params: _Params) -> int:
    inputs = sum(c.candidate.input_weight for c in coins)
    return params.base_weight + _input_count_weight(len(coins)) + inputs


def _pool_weight(pool: _Pool, params: _Params) -> int:
    """The changeless weight of spending every usable coin."""
    return params.base_weight + _input_count_weight(len(pool.weight)) + sum(pool.weight)


def _check_funds(candidates: Sequence[Candidate], pool: _Pool, params: _Params) -> None:
    """Fail with how much is needed when even every usable coin is not enough."""
    available = sum(pool.value)
    fee = fee_for_weight(_pool_weight(pool, params), params.fee_rate)
    need = params.payments + fee
    count = len(pool.value)
    if count and available >= need:
        return
    if count:
        message = (
            f"insufficient funds: need {need} sats ({params.payments} to pay + {fee} fee to "
            f"spend all {count} usable coins), the wallet has {available} sats available"
        )
    else:
        message = f"insufficient funds: need at least {need} sats, the wallet has no usable coins"
    skipped = len(candidates) - count
    if skipped:
        dust = sum(c.value for c in candidates) - available
        message += f"; {skipped} coins ({dust} sats) are worth less than the fee to spend them"
    raise SelectionError(message)


def _waste(coins: Sequence[_Coin], change: int, excess: int, params: _Params) -> int:
    """Core's waste: fee paid now over the long-term rate, plus change cost or excess."""
    timing = sum(c.fee - c.long_term_fee for c in coins)
    return timing + (params.cost_of_change if change else excess)


# -- branch and bound ---------------------------------------------------------------------


def _branch_and_bound(pool: _Pool, params: _Params) -> Selection | None:
    """Core's changeless BnB, or None when it finds nothing acceptable."""
    if not pool.candidates:
        return None
    target = params.payments + fee_for_weight(params.base_weight, params.fee_rate)
    budget = params.max_weight - params.base_weight
    found = _bnb_search(pool, target, params.cost_of_change, budget)
    if not found:  # nothing, or the empty set when there is nothing to pay
        return None
    chosen = pool.coins(found)
    weight = _changeless_weight(chosen, params)
    fee = sum(c.candidate.value for c in chosen) - params.payments
    if weight > params.max_weight or fee < fee_for_weight(weight, params.fee_rate):
        return None  # only when over 252 inputs lengthen the input count
    excess = sum(c.effective for c in chosen) - target
    waste = _waste(chosen, 0, excess, params)
    return Selection(_candidates(chosen), 0, fee, weight, "bnb", waste)


def _bnb_search(
    pool: _Pool, target: int, cost_of_change: int, max_input_weight: int
) -> list[int] | None:
    """Indices of the least-waste changeless set within [target, target + cost_of_change].

    A port of Core's ``SelectCoinsBnB`` (src/wallet/coinselection.cpp): depth first,
    inclusion branch first, at most :data:`TOTAL_TRIES` steps, the same pruning and the
    same tie rule (a later equal-waste set wins). Core's running ``curr_available_value``
    always equals the sum of the coins from the current index on, so it is read from
    precomputed suffix sums instead of being re-added on every backtrack. Core steps over
    a coin equal to the one just excluded one try at a time; a run of them is stepped over
    at once (:func:`_skipped_run`), counting the same tries, so a wallet of many equal
    coins costs a few steps per backtrack rather than one per coin.
    """
    values, fees, weights = pool.effective, pool.fee, pool.weight
    timing = [f - lt for f, lt in zip(fees, pool.long_term_fee, strict=True)]
    remaining = _suffix_sums(values)
    if remaining[0] < target:
        return None
    upper = target + cost_of_change
    feerate_high = timing[0] > 0
    value = waste = weight = index = tries = 0
    selection: list[int] = []
    best: list[int] | None = None
    best_waste = MAX_MONEY
    while tries < TOTAL_TRIES:
        pruned = (
            value + remaining[index] < target  # the remaining coins cannot reach the target
            or value > upper  # past the window: adding more only overshoots further
            or (feerate_high and waste > best_waste)  # more inputs only add waste
            or weight > max_input_weight  # too heavy to be standard
        )
        if pruned or value >= target:
            if not pruned and waste + value - target <= best_waste:
                best, best_waste = selection.copy(), waste + value - target
            if not selection:
                break
            index = selection.pop()  # backtrack: now try the branch without this coin
            value -= values[index]
            waste -= timing[index]
            weight -= weights[index]
        elif (
            (selection[-1] == index - 1 if selection else True)
            or values[index] != values[index - 1]
            or fees[index] != fees[index - 1]
        ):
            selection.append(index)
            value += values[index]
            waste += timing[index]
            weight += weights[index]
        else:  # Core skips a coin equal to the one just excluded: the whole run at once
            steps = min(_skipped_run(pool, remaining, index, target - value), TOTAL_TRIES - tries)
            tries += steps
            index += steps
            continue
        tries += 1
        index += 1
    return best


def _skipped_run(pool: _Pool, remaining: list[int], index: int, need: int) -> int:
    """How many coins from ``index`` on Core would step over one try at a time.

    Each is equal (effective value and fee) to the excluded coin before ``index`` and the
    search is not yet pruned there (the coins from it on still add up to ``need``); both
    hold for a prefix of the coins from ``index`` on, found by bisection. Nothing else of
    the search state changes while stepping over them. At least 1 (``index`` itself).
    """
    values, fees = pool.effective, pool.fee
    value, fee = values[index], fees[index]
    low, high = index, len(values)  # skipped at ``low``; not at ``high`` (the end)
    while high - low > 1:
        middle = (low + high) // 2
        if values[middle] == value and fees[middle] == fee and remaining[middle] >= need:
            low = middle
        else:
            high = middle
    return high - index


def _suffix_sums(values: list[int]) -> list[int]:
    """``out[i] == sum(values[i:])``, with a final 0 for the index past the end."""
    out = list(accumulate(reversed(values), initial=0))
    out.reverse()
    return out


# -- fallback -----------------------------------------------------------------------------


def _fallback(pool: _Pool, params: _Params) -> Selection:
    """Least-waste of largest-first and lowest-larger; too heavy if none fits."""
    options = _largest_first(pool, params) + _lowest_larger(pool, params)
    fitting = [s for s in options if s.weight <= params.max_weight]
    if fitting:
        return min(fitting, key=lambda s: (s.waste, len(s.chosen), options.index(s)))
    lightest = min((s.weight for s in options), default=_pool_weight(pool, params))
    raise SelectionError(
        f"the transaction would weigh {lightest} WU, over the {params.max_weight} WU "
        f"standard limit; consolidate small coins first"
    )


def _largest_first(pool: _Pool, params: _Params) -> list[Selection]:
    """Prefixes of the largest-first order: the first that pays the fee with no change,
    and the first that also leaves change of at least ``min_change``."""
    found: list[Selection] = []
    total = weight = 0
    pairs = zip(pool.value, pool.weight, strict=True)
    for count, (value, input_weight) in enumerate(pairs, start=1):
        total += value
        weight += input_weight
        changeless = params.base_weight + _input_count_weight(count) + weight
        if not found and _pays(total, changeless, params):
            found.append(_settle(pool.coins(range(count)), "largest-first", params))
        if _has_change(total, changeless, params):
            if not found or found[-1].change == 0:
                found.append(_settle(pool.coins(range(count)), "largest-first", params))
            break
    return found


def _lowest_larger(pool: _Pool, params: _Params) -> list[Selection]:
    """Core's "lowest larger": the smallest single coins that pay without and with change.

    Smallest by value, ties to the caller's order, so the choice is deterministic.
    """
    values, base = pool.value, params.base_weight
    big = [i for i, value in enumerate(values) if value >= params.payments]  # cheap filter
    payers = [i for i in big if _pays(values[i], base + pool.weight[i], params)]
    changers = [i for i in payers if _has_change(values[i], base + pool.weight[i], params)]
    picks: list[int] = []
    for group in (payers, changers):
        best = min(group, key=lambda i: (values[i], pool.order[i]), default=None)
        if best is not None and best not in picks:
            picks.append(best)
    return [_settle(pool.coins([i]), "lowest-larger", params) for i in picks]


def _pays(total: int, changeless_weight: int, params: _Params) -> bool:
    return total - params.payments >= fee_for_weight(changeless_weight, params.fee_rate)


def _has_change(total: int, changeless_weight: int, params: _Params) -> bool:
    return _change_for(total, changeless_weight, params) >= params.min_change


def _change_for(total: int, changeless_weight: int, params: _Params) -> int:
    """Change left after paying for the transaction with a change output."""
    weight = changeless_weight + params.change_output_weight
    return total - params.payments - fee_for_weight(weight, params.fee_rate)


def _settle(chosen: list[_Coin], algorithm: str, params: _Params) -> Selection:
    """Turn inputs that pay for the transaction into a Selection, with change if not dust."""
    total = sum(c.candidate.value for c in chosen)
    changeless = _changeless_weight(chosen, params)
    change = _change_for(total, changeless, params)
    if change >= params.min_change:
        weight = changeless + params.change_output_weight
        fee = total - params.payments - change
        waste = _waste(chosen, change, 0, params)
        return Selection(_candidates(chosen), change, fee, weight, algorithm, waste)
    fee = total - params.payments
    excess = fee - fee_for_weight(changeless, params.fee_rate)
    waste = _waste(chosen, 0, excess, params)
    return Selection(_candidates(chosen), 0, fee, changeless, algorithm, waste)


def _candidates(chosen: Sequence[_Coin]) -> tuple[Candidate, ...]:
    return tuple(c.candidate for c in chosen)
