"""The fee rate a new batch pays: the operator's, the node's estimate, or the fallback; and
a line saying which and why.

A node has no estimate after a restart or on a quiet chain; silently paying the configured
fallback then can leave a mainnet payout stuck for days (or overpay). So the fallback is
used only off mainnet, and always said; on mainnet the operator must give ``--fee-rate``.
An estimate that is not a plain number of satoshis per kvB, below the relay minimum, or
above what any sane node answers (Core's own default ``maxfeerate``) is refused as garbage,
whatever the network: such a node is not to be believed about fees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from online_coordinator.chain.rpc import BitcoinCoreRPC, MalformedReply
from shared.bitcoin.address import Network
from shared.bitcoin.amount import fee_at_rate

if TYPE_CHECKING:  # config imports this module (the relay minimum bounds its rates)
    from online_coordinator.config import Config

#: Core's minimum relay fee rate (sat/kvB); it never estimates below it.
MIN_RELAY_FEE_RATE = 1_000
#: BIP-125 rule 4: a replacement pays for its own size at Core's incremental relay fee rate.
INCREMENTAL_RELAY_FEE_RATE = 1_000
#: Core's default ``maxfeerate`` (0.10 BTC/kvB): no honest estimate is above it.
MAX_SANE_FEE_RATE = 10_000_000


class FeeError(ValueError):
    """No fee rate can be chosen without the operator; nothing was created."""


@dataclass(frozen=True)
class FeeChoice:
    rate: int  # sat/kvB
    source: str  # "given", "estimate", "capped" or "fallback"
    note: str  # one line for the operator

    @property
    def warn(self) -> bool:
        """The operator should notice: a fallback or a cap was applied."""
        return self.source in ("fallback", "capped")


def _sat_vb(rate: int) -> str:
    return f"{rate / 1000:g} sat/vB"


def check_fee_cap(rate: int, max_fee_rate: int) -> None:
    """The operator's rate (sat/kvB) against the configured cap, for a new batch and a fee
    bump alike: a typo in ``--fee-rate`` must not pay a fortune."""
    if rate > max_fee_rate:
        raise FeeError(f"--fee-rate is over the configured cap {_sat_vb(max_fee_rate)}")


def check_fee_within_cap(fee: int, vsize: int, max_fee_rate: int) -> None:
    """A computed fee against the cap: a fee bump must also pay the original's fee plus
    the incremental relay fee (BIP-125 rule 4), which can take it above the rate asked for.
    Compared as fees, so a fee rounded up to a whole satoshi at the cap itself passes."""
    if fee > fee_at_rate(vsize, max_fee_rate):
        raise FeeError(
            f"a replacement must pay {fee} sat for its {vsize} vB (the original's fee plus "
            f"{_sat_vb(INCREMENTAL_RELAY_FEE_RATE)}, BIP-125), over the configured cap "
            f"{_sat_vb(max_fee_rate)}; no replacement request was created"
        )


def fee_choice(config: Config, given: int | None) -> FeeChoice:
    """The rate a new batch pays and why, with the node and limits of ``config``."""
    return choose_fee_rate(
        config.rpc(),
        config.network,
        given,
        target_blocks=config.target_blocks,
        max_fee_rate=config.max_fee_rate,
        fallback_fee_rate=config.fallback_fee_rate,
    )


def choose_fee_rate(
    rpc: BitcoinCoreRPC,
    network: Network,
    given: int | None,
    *,
    target_blocks: int,
    max_fee_rate: int,
    fallback_fee_rate: int,
) -> FeeChoice:
    """See the module docstring; rates in sat/kvB. Raises FeeError."""
    if given is not None:
        check_fee_cap(given, max_fee_rate)
        return FeeChoice(given, "given", f"{_sat_vb(given)} as given (--fee-rate)")
    try:
        estimate, why = rpc.fee_estimate(target_blocks)
    except MalformedReply as exc:
        raise FeeError(f"the node's fee estimate is garbage ({exc}): give --fee-rate") from exc
    if estimate is None:
        if network is Network.MAINNET:
            raise FeeError(
                f"the node has no fee estimate ({why}); on mainnet give --fee-rate (sat/vB)"
            )
        return FeeChoice(
            fallback_fee_rate,
            "fallback",
            f"{_sat_vb(fallback_fee_rate)}: the fallback rate from coordinator.toml, because "
            f"the node has no estimate ({why})",
        )
    if not MIN_RELAY_FEE_RATE <= estimate <= MAX_SANE_FEE_RATE:
        raise FeeError(
            f"the node's fee estimate {_sat_vb(estimate)} is garbage (outside "
            f"{_sat_vb(MIN_RELAY_FEE_RATE)}..{_sat_vb(MAX_SANE_FEE_RATE)}): give --fee-rate"
        )
    if estimate > max_fee_rate:
        return FeeChoice(
            max_fee_rate,
            "capped",
            f"{_sat_vb(max_fee_rate)}: the configured cap; the node estimates "
            f"{_sat_vb(estimate)} for {target_blocks} blocks",
        )
    return FeeChoice(
        estimate, "estimate", f"{_sat_vb(estimate)}: the node's estimate for {target_blocks} blocks"
    )
