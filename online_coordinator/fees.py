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

from online_coordinator.chain.rpc import BitcoinCoreRPC, MalformedReply
from shared.bitcoin.address import Network

#: Core's minimum relay fee rate (sat/kvB); it never estimates below it.
MIN_RELAY_FEE_RATE = 1_000
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
        if given > max_fee_rate:
            raise FeeError(f"--fee-rate is over the configured cap {_sat_vb(max_fee_rate)}")
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
