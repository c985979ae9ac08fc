"""Money as Bitcoin Core counts it: integer satoshis, and fees from rates in sat/kvB.

The one home of the satoshis-per-BTC factor, the money range and Core's fee rounding, so
the coordinator's coin selection, its fee bumps and the regtest node's relay rules cannot
drift apart (Core: ``consensus/amount.h``, ``policy/feerate.cpp``, ``policy/policy.cpp``).

And of money as people type it: :func:`parse_btc` (``0.015``: a plain decimal, integer
arithmetic only, refusing what a spreadsheet may have mangled — exponents, separators, a
ninth decimal — and saying which) and :func:`parse_sat_per_vb` (``4.5`` sat/vB to sat/kvB),
for the payout CSV, the policy draft and the fee-rate options alike.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from shared.bitcoin.script import OutputType, classify, witness_program

#: Satoshis per BTC (Core's ``COIN``).
COIN = 100_000_000
#: No amount, and no sum of amounts, is above this (Core's ``MAX_MONEY``; consensus).
MAX_MONEY = 21_000_000 * COIN

_MAX_BTC_DIGITS = len(str(MAX_MONEY // COIN))
_AMOUNT = re.compile(r"([0-9]+)(?:\.([0-9]{1,8}))?")
_OVER_PRECISE = re.compile(r"[0-9]+\.[0-9]{9,}")
# Every pattern is unambiguous (no two quantifiers can share a character), so matching is
# linear: a 131,072-character field must not become a quadratic regex search.
_EXPONENT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][+-]?[0-9]+")
_NOT_A_NUMBER = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)
_SEPARATED = re.compile(r"[0-9]+(?:[,_' .][0-9]+)+")
_MAX_AMOUNT_CHARS = 64
_MAX_RATE_CHARS = 32


class AmountError(ValueError):
    """Typed money that is not a valid amount or rate; the message says why."""


def parse_btc(text: str, *, allow_zero: bool = False, shown: str | None = None) -> int:
    """Satoshis for a BTC amount written as a plain decimal (``0.015``), or AmountError
    naming the spreadsheet habit that produced anything else. ``shown`` is how the
    message quotes the text (default: its repr)."""
    text = text.strip()
    shown = repr(text[:_MAX_AMOUNT_CHARS]) if shown is None else shown
    if not text:
        raise AmountError("amount is empty")
    if len(text) > _MAX_AMOUNT_CHARS:
        raise AmountError(f"amount {shown} is {len(text)} characters, too long for an amount")
    match = _AMOUNT.fullmatch(text)
    if match is None:
        raise AmountError(_refusal(text, shown))
    whole, fraction = match.group(1).lstrip("0"), match.group(2) or ""
    if len(whole) > _MAX_BTC_DIGITS:
        raise AmountError(f"amount {shown} is over 21,000,000 BTC")
    sats = int(whole or "0") * COIN + int(fraction.ljust(8, "0"))
    if sats == 0 and not allow_zero:
        raise AmountError(f"amount {shown} is zero")
    if sats > MAX_MONEY:
        raise AmountError(f"amount {shown} is over 21,000,000 BTC")
    return sats


def _refusal(text: str, shown: str) -> str:
    if _NOT_A_NUMBER.fullmatch(text):
        return f"amount {shown} is not a number"
    if _EXPONENT.fullmatch(text):
        return f"amount {shown} uses exponent notation; write it as a plain decimal"
    if text.startswith("-"):
        return f"amount {shown} is negative"
    if _OVER_PRECISE.fullmatch(text):
        return f"amount {shown} is over-precise: more than 8 decimal places"
    if _SEPARATED.fullmatch(text):
        return f"amount {shown} has a thousands or decimal separator other than one '.'"
    return f"amount {shown} is not a BTC amount such as 0.015 (digits, '.', up to 8 decimals)"


def format_btc(sats: int) -> str:
    """``0.5 BTC``: satoshis as BTC, trailing zeros dropped (``1 BTC``, ``0.00012 BTC``)."""
    sign = "-" if sats < 0 else ""
    whole, fraction = divmod(abs(sats), COIN)
    digits = f"{fraction:08d}".rstrip("0")
    return f"{sign}{whole}{'.' + digits if digits else ''} BTC"


def format_sat_per_vb(rate_sat_per_kvb: int) -> str:
    """``2.5 sat/vB`` for a rate kept in sat/kvB."""
    whole, fraction = divmod(rate_sat_per_kvb, 1000)
    digits = f"{fraction:03d}".rstrip("0")
    return f"{whole}{'.' + digits if digits else ''} sat/vB"


def parse_sat_per_vb(text: str, minimum_sat_per_kvb: int = 0) -> int:
    """A fee rate typed in sat/vB (``4``, ``2.5``, at most 3 decimals) as integer sat/kvB."""
    text = text.strip()
    try:
        value = Decimal(text) if len(text) <= _MAX_RATE_CHARS else Decimal("nan")
    except InvalidOperation:
        raise AmountError(f"{text[:_MAX_RATE_CHARS]!r} is not a number of sat/vB") from None
    rate = value * 1000
    if not value.is_finite() or rate != rate.to_integral_value():
        raise AmountError(f"{text[:_MAX_RATE_CHARS]!r}: a rate in sat/vB has at most 3 decimals")
    if rate < minimum_sat_per_kvb:
        raise AmountError(f"{text!r} sat/vB is below {minimum_sat_per_kvb / 1000:g} sat/vB")
    return int(rate)


def fee_at_rate(vsize: int, rate_sat_per_kvb: int) -> int:
    """The fee in satoshis for ``vsize`` virtual bytes at ``rate_sat_per_kvb``.

    Core's ``CFeeRate::GetFee``: rounded *up* since Core 23.0, so a transaction built to a
    rate never pays below it, and a relay minimum computed here is Core's to the satoshi.
    Integer arithmetic, exact where Core's ``ceil`` of a double could not be; Core's
    one-satoshi floor for a non-zero fee is implied by rounding up (rates are never negative).
    """
    return -(-vsize * rate_sat_per_kvb // 1000)


#: Core's default ``-dustrelayfee``.
DUST_RELAY_FEE_SAT_PER_KVB = 3_000
#: What spending an output costs, by Core's ``GetDustThreshold``: an outpoint, a sequence, a
#: script length and a 107-byte signature and key (a quarter of it for a witness program).
_WITNESS_SPEND_BYTES = 32 + 4 + 1 + 107 // 4 + 4
_LEGACY_SPEND_BYTES = 32 + 4 + 1 + 107 + 4


def dust_threshold(
    script_pubkey: bytes, dust_relay_fee_sat_per_kvb: int = DUST_RELAY_FEE_SAT_PER_KVB
) -> int:
    """The smallest amount an output paying ``script_pubkey`` may carry and still relay.

    Core's ``GetDustThreshold`` (``policy/policy.cpp``): nodes refuse to relay a transaction
    with an output below it, so a payout or a change output that small would strand the
    whole batch. At the default rate: P2WPKH 294, P2WSH/P2TR 330, P2PKH 546, P2SH 540; other
    witness programs by their length. OP_RETURN outputs are never spent: 0.
    """
    if classify(script_pubkey) is OutputType.NULL_DATA:
        return 0
    length = len(script_pubkey)
    length_bytes = 1 if length < 0xFD else 3 if length <= 0xFFFF else 5
    spend = (
        _WITNESS_SPEND_BYTES if witness_program(script_pubkey) is not None else _LEGACY_SPEND_BYTES
    )
    return fee_at_rate(8 + length_bytes + length + spend, dust_relay_fee_sat_per_kvb)
