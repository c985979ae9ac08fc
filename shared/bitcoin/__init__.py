"""Bitcoin primitives for Coldstation: pure functions and data, no I/O.

Modules are small and single-purpose, in the spirit of embit:
``encoding`` (hashes, compact sizes, a bounded reader), ``tx`` (transactions),
``script`` (scripts and output types), ``address`` (bech32/base58 with networks),
``sighash`` (legacy and BIP-143 digests), ``bip32`` (extended keys) and
``descriptor`` (BIP-380 output descriptors).
"""
