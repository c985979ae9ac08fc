"""A local regtest Bitcoin node for the coordinator's tests and demo.

Blocks are built in Python and validated by Bitcoin Core's consensus code
(libbitcoinkernel through py-bitcoinkernel, a test dependency); see :mod:`.node`.
"""

from online_coordinator.regtest.node import AcceptResult, NodeError, RegtestNode, UnspentOutput

__all__ = ["AcceptResult", "NodeError", "RegtestNode", "UnspentOutput"]
