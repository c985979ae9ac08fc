"""The coordinator's only window on the Bitcoin network: a Bitcoin Core JSON-RPC client."""

from online_coordinator.chain.rpc import (
    AUTH_FAILED,
    BitcoinCoreRPC,
    ChainError,
    ChainUnavailable,
    MalformedReply,
    MempoolAccept,
    RpcAuth,
    RpcError,
    ScannedOutput,
    btc_to_sats,
    sats_to_btc,
)

__all__ = [
    "AUTH_FAILED",
    "BitcoinCoreRPC",
    "ChainError",
    "ChainUnavailable",
    "MalformedReply",
    "MempoolAccept",
    "RpcAuth",
    "RpcError",
    "ScannedOutput",
    "btc_to_sats",
    "sats_to_btc",
]
