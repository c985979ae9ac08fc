"""Money as Bitcoin Core counts it: integer satoshis, and fees from rates in sat/kvB.

The one home of the satoshis-per-BTC factor, the money range and Core's fee rounding, so
the coordinator's coin selection, its fee bumps and the regtest node's relay rules cannot
drift apart (Core: ``consensus/amount.h``, ``policy/feerate.cpp``, ``policy/policy.cpp``).
"""

from __future__ import annotations

from shared.bitcoin.script import OutputType, classify, witness_program

#: Satoshis per BTC (Core's ``COIN``).
COIN = 100_000_000
#: No amount, and no sum of amounts, is above this (Core's ``MAX_MONEY``; consensus).
MAX_MONEY = 21_000_000 * COIN


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
