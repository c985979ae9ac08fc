"""Blocks: the 80-byte header, the block wire format, merkle roots and proof of work.

Pure data and functions, no I/O. The regtest node builds its blocks with these and lets
Bitcoin Core's consensus code (libbitcoinkernel) judge them, so everything here follows
Core's serialization byte for byte. Hashes are kept in internal (little-endian) byte
order and shown reversed, as Core does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from shared.bitcoin.encoding import ByteReader, DecodeError, compact_size, hash256
from shared.bitcoin.script import OP_RETURN
from shared.bitcoin.tx import Transaction, read_transaction

HEADER_SIZE = 80
#: BIP-9 "top bits" version that Core's miner uses when no soft fork is signalled.
VERSIONBITS_TOP = 0x20000000
#: Regtest's proof-of-work limit in compact form (no retargeting on regtest).
REGTEST_BITS = 0x207FFFFF
#: BIP-141 witness commitment: OP_RETURN, push of 36 bytes, then this 4-byte tag.
WITNESS_COMMITMENT_TAG = bytes.fromhex("aa21a9ed")
WITNESS_COMMITMENT_PREFIX = bytes([OP_RETURN, 0x24]) + WITNESS_COMMITMENT_TAG
#: Smallest possible serialized transaction (one input, no outputs), to bound counts.
_MIN_TX_SIZE = 51


@dataclass(frozen=True, slots=True)
class BlockHeader:
    version: int
    prev_hash: bytes  # 32 bytes, internal byte order
    merkle_root: bytes  # 32 bytes, internal byte order
    time: int
    bits: int
    nonce: int

    def serialize(self) -> bytes:
        return b"".join(
            (
                self.version.to_bytes(4, "little", signed=True),
                self.prev_hash,
                self.merkle_root,
                self.time.to_bytes(4, "little"),
                self.bits.to_bytes(4, "little"),
                self.nonce.to_bytes(4, "little"),
            )
        )

    @classmethod
    def parse(cls, data: bytes) -> BlockHeader:
        """Parse exactly 80 bytes."""
        if len(data) != HEADER_SIZE:
            raise DecodeError(f"block header must be {HEADER_SIZE} bytes, got {len(data)}")
        return read_header(ByteReader(data))

    @property
    def hash(self) -> bytes:
        """Block hash in internal byte order."""
        return hash256(self.serialize())

    @property
    def hash_hex(self) -> str:
        """Block hash as displayed (big-endian hex)."""
        return self.hash[::-1].hex()


@dataclass(slots=True)
class Block:
    header: BlockHeader
    transactions: list[Transaction] = field(default_factory=list)

    def serialize(self) -> bytes:
        parts = [self.header.serialize(), compact_size(len(self.transactions))]
        parts.extend(tx.serialize() for tx in self.transactions)
        return b"".join(parts)

    @classmethod
    def parse(cls, data: bytes) -> Block:
        """Parse a whole serialized block; an empty block or trailing bytes are errors."""
        reader = ByteReader(data)
        header = read_header(reader)
        count = reader.read_compact_size("transaction count")
        if count == 0:
            raise DecodeError("block has no transactions (a coinbase is required)")
        if count * _MIN_TX_SIZE > reader.remaining():
            raise DecodeError(f"transaction count {count} exceeds the bytes present")
        transactions = [_read_block_tx(reader, i) for i in range(count)]
        if not reader.at_end():
            raise DecodeError(f"{reader.remaining()} trailing bytes after block")
        return cls(header, transactions)

    @property
    def hash(self) -> bytes:
        return self.header.hash

    @property
    def hash_hex(self) -> str:
        return self.header.hash_hex

    def compute_merkle_root(self) -> bytes:
        """The merkle root the transactions imply (compare with ``header.merkle_root``)."""
        return merkle_root([tx.txid for tx in self.transactions])


def read_header(reader: ByteReader) -> BlockHeader:
    return BlockHeader(
        version=reader.read_int(4, "block version"),
        prev_hash=reader.read(32, "previous block hash"),
        merkle_root=reader.read(32, "merkle root"),
        time=reader.read_uint(4, "block time"),
        bits=reader.read_uint(4, "block bits"),
        nonce=reader.read_uint(4, "block nonce"),
    )


def _read_block_tx(reader: ByteReader, index: int) -> Transaction:
    """Read transaction ``index``, naming it in the error so a bad block is easy to locate."""
    try:
        return read_transaction(reader)
    except DecodeError as exc:
        raise DecodeError(f"transaction {index} of block: {exc}") from exc


# -- merkle trees -------------------------------------------------------------------------


def merkle_root(hashes: Sequence[bytes]) -> bytes:
    """Bitcoin's merkle root (odd levels duplicate their last hash), internal byte order.

    The duplication is what makes CVE-2012-2459 mutation possible; Core detects it, and
    so does the kernel when it checks our blocks, so no extra check is done here.
    """
    if not hashes:
        raise ValueError("merkle root of no hashes is undefined")
    level = list(hashes)
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [hash256(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def witness_merkle_root(txs: Sequence[Transaction]) -> bytes:
    """BIP-141 root over wtxids, the coinbase (``txs[0]``) counting as 32 zero bytes.

    The coinbase is zeroed because it carries the commitment to this very root.
    """
    return merkle_root([bytes(32)] + [hash256(tx.serialize()) for tx in txs[1:]])


def witness_commitment_script(txs: Sequence[Transaction], reserved: bytes = bytes(32)) -> bytes:
    """The coinbase output script committing to the witnesses of ``txs`` (coinbase first).

    ``reserved`` is the witness reserved value: the coinbase input's single witness item.
    """
    if len(reserved) != 32:
        raise ValueError("witness reserved value must be 32 bytes")
    return WITNESS_COMMITMENT_PREFIX + hash256(witness_merkle_root(txs) + reserved)


# -- proof of work ------------------------------------------------------------------------


def target_from_bits(bits: int) -> int:
    """Expand compact ``bits`` as Core's ``arith_uint256::SetCompact``.

    Negative, overflowing or zero targets raise ValueError: Core's proof-of-work check
    rejects each of them, so no caller has a use for the number.
    """
    size = bits >> 24
    word = bits & 0x007FFFFF
    target = word >> (8 * (3 - size)) if size <= 3 else word << (8 * (size - 3))
    if word and bits & 0x00800000:
        raise ValueError(f"compact bits {bits:#010x} encode a negative target")
    if word and (size > 34 or (word > 0xFF and size > 33) or (word > 0xFFFF and size > 32)):
        raise ValueError(f"compact bits {bits:#010x} overflow 256 bits")
    if target == 0:
        raise ValueError(f"compact bits {bits:#010x} encode a zero target")
    return target


def check_proof_of_work(header: BlockHeader, pow_limit_bits: int = REGTEST_BITS) -> bool:
    """Core's ``CheckProofOfWork``: a valid target no easier than the limit, and met."""
    try:
        target = target_from_bits(header.bits)
    except ValueError:
        return False
    if target > target_from_bits(pow_limit_bits):
        return False
    return int.from_bytes(header.hash, "little") <= target
