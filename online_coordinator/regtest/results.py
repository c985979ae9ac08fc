"""What the regtest node answers: refusals with Core's RPC codes, and plain result records.

Kept apart from the node so the policy, mining and server code can share them without
importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

# Bitcoin Core's RPC error codes (src/rpc/protocol.h) that the node uses.
RPC_MISC_ERROR = -1
RPC_TYPE_ERROR = -3
RPC_INVALID_ADDRESS_OR_KEY = -5
RPC_WALLET_INSUFFICIENT_FUNDS = -6
RPC_INVALID_PARAMETER = -8
RPC_DESERIALIZATION_ERROR = -22
RPC_VERIFY_ERROR = -25
RPC_VERIFY_REJECTED = -26
RPC_VERIFY_ALREADY_IN_CHAIN = -27


class NodeError(Exception):
    """Refusal with a Bitcoin-Core-like reason string and an RPC error code.

    ``reason`` is the short reject reason Core reports (what ``testmempoolaccept`` puts in
    ``reject-reason``); ``detail`` is the optional explanation Core appends after a comma
    in ``sendrawtransaction`` errors, so ``str(error)`` reads like Core's message.
    """

    def __init__(self, code: int, reason: str, detail: str | None = None) -> None:
        super().__init__(f"{reason}, {detail}" if detail else reason)
        self.code = code
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class AcceptResult:
    """One ``testmempoolaccept`` answer; ``vsize`` and ``fee`` (sats) only when allowed."""

    txid: str
    wtxid: str
    allowed: bool
    reason: str | None
    vsize: int | None
    fee: int | None


@dataclass(frozen=True)
class UnspentOutput:
    """A confirmed UTXO set entry, as ``scantxoutset`` reports it."""

    txid: str
    vout: int
    script_pubkey: bytes
    value: int
    height: int
    coinbase: bool
