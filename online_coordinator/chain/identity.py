"""Which chain a node is on, and whether it is the chain the coordinator is configured for.

A coordinator set to mainnet that talks to a regtest (or testnet) node would issue real
``bc1`` addresses against fake coins and count them as funds. Every command that talks to
the node therefore first asks for the node's chain name and its genesis block hash (one
round trip) and refuses anything but the configured network's. The genesis hash is the
identity that matters; the name is checked too so the message can say what the node is.
"""

from __future__ import annotations

from online_coordinator.chain.rpc import BitcoinCoreRPC, ChainError
from shared.bitcoin.address import Network

#: Core's ``getblockchaininfo`` chain name -> genesis block hash (display order).
GENESIS = {
    "main": "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f",
    "test": "000000000933ea01ad0ee984209779baaec3ced90fa3f408719526f8d77f4943",
    "testnet4": "00000000da84f2bafbbc53dee25a72ae507ff4914b867c565be350b0da8bf043",
    # Every signet, the default one and custom ones, shares this genesis block.
    "signet": "00000008819873e925422c1ff0f99f7cc9bbb232af63a077a480a3633bee1ef6",
    "regtest": "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206",
}
#: The coordinator's network -> the Core chains it accepts (testnet means testnet3 or 4).
CHAINS = {
    Network.MAINNET: ("main",),
    Network.TESTNET: ("test", "testnet4"),
    Network.SIGNET: ("signet",),
    Network.REGTEST: ("regtest",),
}


class ChainMismatch(ChainError):  # noqa: N818 - reads as what it is
    """The node is up, but on another chain than the coordinator is configured for."""


def check_chain(rpc: BitcoinCoreRPC, network: Network) -> str:
    """Raise ChainMismatch unless the node is on ``network``; returns Core's chain name."""
    chain, genesis = rpc.chain_identity()
    accepted = CHAINS[network]
    if chain not in accepted:
        raise ChainMismatch(
            f"the node at {rpc.url} is on chain {chain!r}, the coordinator is configured for "
            f"{network.label}: refusing to use it (nothing was read from or sent to it)"
        )
    if genesis != GENESIS[chain]:
        raise ChainMismatch(
            f"the node at {rpc.url} says {chain!r} but its genesis block is {genesis}, not "
            f"{GENESIS[chain]}: refusing to use it (nothing was read from or sent to it)"
        )
    return chain
