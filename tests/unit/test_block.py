"""Blocks, merkle roots and proof of work against well-known mainnet data."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shared.bitcoin.block import (
    REGTEST_BITS,
    WITNESS_COMMITMENT_PREFIX,
    Block,
    BlockHeader,
    check_proof_of_work,
    merkle_root,
    target_from_bits,
    witness_commitment_script,
    witness_merkle_root,
)
from shared.bitcoin.encoding import DecodeError, hash256
from shared.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut

MAINNET_BITS = 0x1D00FFFF
GENESIS_HEX = (
    "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27a"
    "c72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c0101000000010000000000"
    "000000000000000000000000000000000000000000000000000000ffffffff4d04ffff001d010445546865205469"
    "6d65732030332f4a616e2f32303039204368616e63656c6c6f72206f6e206272696e6b206f66207365636f6e6420"
    "6261696c6f757420666f722062616e6b73ffffffff0100f2052a01000000434104678afdb0fe5548271967f1a671"
    "30b7105cd6a828e03909a67962e0ea1f61deb649f6bc3f4cef38c4f35504e51ec112de5c384df7ba0b8d578a4c70"
    "2b6bf11d5fac00000000"
)
GENESIS_HASH = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
GENESIS_MERKLE = "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"
#: Regtest shares the genesis transaction; only time, bits and nonce differ.
REGTEST_GENESIS_HASH = "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"
#: Mainnet block 100,000: four transactions (display order) and their merkle root.
BLOCK_100000_TXIDS = [
    "8c14f0db3df150123e6f3dbbf30f8b955a8249b62ac1d1ff16284aefa3d06d87",
    "fff2525b8931402dd09222c50775608f75787bd2b87e56995a7bdd30f79702c4",
    "6359f0868171b1d194cbee1af2f16ea598ae8fad666d9b012c8ed2b79a236ec4",
    "e9a66845e05d5abc0ad04ec80f774a7e585c6e8db975962d069a522137b80c1d",
]
BLOCK_100000_MERKLE = "f3e94742aca4b5ef85488dc37c06c3282295ffec960994b2c0d5ac2a25a95766"


def _internal(display_hex: str) -> bytes:
    return bytes.fromhex(display_hex)[::-1]


def _genesis() -> Block:
    return Block.parse(bytes.fromhex(GENESIS_HEX))


def _segwit_tx(witness_item: bytes) -> Transaction:
    return Transaction(
        inputs=[TxIn(OutPoint(b"\x11" * 32, 0), witness=[witness_item, b"\x02" * 33])],
        outputs=[TxOut(1_000, b"\x00\x14" + b"\x22" * 20)],
    )


def _coinbase(witness_item: bytes = bytes(32)) -> Transaction:
    return Transaction(
        inputs=[TxIn(OutPoint(bytes(32), 0xFFFFFFFF), b"\x51\x00", witness=[witness_item])],
        outputs=[TxOut(50, b"\x51")],
    )


# -- parsing and identity ---------------------------------------------------------------


def test_genesis_round_trip_hash_and_merkle_root():
    raw = bytes.fromhex(GENESIS_HEX)
    block = Block.parse(raw)
    assert block.serialize() == raw
    assert block.hash_hex == GENESIS_HASH
    assert block.header.merkle_root == _internal(GENESIS_MERKLE)
    assert block.compute_merkle_root() == block.header.merkle_root
    assert block.header.prev_hash == bytes(32)
    header = block.header
    assert (header.version, header.time, header.bits) == (1, 1231006505, MAINNET_BITS)
    assert header.nonce == 2083236893
    assert len(block.transactions) == 1
    assert block.transactions[0].txid_hex == GENESIS_MERKLE


def test_header_parse_is_exactly_80_bytes():
    header = _genesis().header
    assert BlockHeader.parse(header.serialize()) == header
    assert header.hash == hash256(header.serialize())
    with pytest.raises(DecodeError, match="80 bytes"):
        BlockHeader.parse(header.serialize() + b"\x00")
    with pytest.raises(DecodeError, match="80 bytes"):
        BlockHeader.parse(header.serialize()[:79])


def test_negative_version_round_trips():
    header = BlockHeader(-1, bytes(32), bytes(32), 0, REGTEST_BITS, 0)
    assert BlockHeader.parse(header.serialize()).version == -1


def test_regtest_genesis_differs_only_in_header_fields():
    block = _genesis()
    block.header = BlockHeader(1, bytes(32), block.header.merkle_root, 1296688602, REGTEST_BITS, 2)
    assert block.hash_hex == REGTEST_GENESIS_HASH
    assert check_proof_of_work(block.header)


def test_block_with_segwit_transactions_round_trips():
    block = Block(
        BlockHeader(0x20000000, b"\x01" * 32, bytes(32), 1, REGTEST_BITS, 0),
        [_coinbase(), _segwit_tx(b"\x30" * 71), _segwit_tx(b"\x31" * 71)],
    )
    parsed = Block.parse(block.serialize())
    assert parsed.serialize() == block.serialize()
    assert [tx.txid for tx in parsed.transactions] == [tx.txid for tx in block.transactions]
    assert parsed.transactions[1].inputs[0].witness == [b"\x30" * 71, b"\x02" * 33]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda raw: raw[:79], "block version|previous block hash|merkle root|block nonce"),
        (lambda raw: raw[:80], "transaction count"),
        (lambda raw: raw[:80] + b"\x00", "no transactions"),
        (lambda raw: raw[:80] + b"\xfd\x00\x10" + raw[81:], "exceeds the bytes present"),
        (lambda raw: raw[:80] + b"\xfd\x01\x00" + raw[81:], "non-canonical CompactSize"),
        (lambda raw: raw + b"\x00", "trailing bytes"),
        (lambda raw: raw[:-1], "transaction 0 of block"),
        (lambda raw: raw[:81] + raw[81:] + raw[81:], "trailing bytes"),
    ],
)
def test_malformed_blocks_are_refused_with_a_reason(mutate, message):
    raw = bytes.fromhex(GENESIS_HEX)
    with pytest.raises(DecodeError, match=message):
        Block.parse(mutate(raw))


def test_truncated_second_transaction_is_located():
    raw = bytes.fromhex(GENESIS_HEX)
    two = raw[:80] + b"\x02" + raw[81:] + raw[81:-5]
    with pytest.raises(DecodeError, match="transaction 1 of block"):
        Block.parse(two)


# -- merkle trees -----------------------------------------------------------------------


def test_merkle_root_of_block_100000():
    hashes = [_internal(txid) for txid in BLOCK_100000_TXIDS]
    assert merkle_root(hashes) == _internal(BLOCK_100000_MERKLE)


def test_merkle_root_of_one_hash_is_the_hash_and_odd_levels_duplicate():
    a, b, c = (bytes([i]) * 32 for i in (1, 2, 3))
    assert merkle_root([a]) == a
    assert merkle_root([a, b, c]) == merkle_root([a, b, c, c])
    assert merkle_root([a, b]) == hash256(a + b)
    with pytest.raises(ValueError, match="no hashes"):
        merkle_root([])


def test_witness_commitment_commits_to_witnesses_not_the_coinbase():
    txs = [_coinbase(), _segwit_tx(b"\x30" * 71)]
    script = witness_commitment_script(txs)
    assert len(script) == 38
    assert script.startswith(WITNESS_COMMITMENT_PREFIX)
    expected_root = merkle_root([bytes(32), hash256(txs[1].serialize())])
    assert witness_merkle_root(txs) == expected_root
    assert script[6:] == hash256(expected_root + bytes(32))
    # The coinbase counts as zeros, so its own witness (the reserved value) is not hashed in.
    assert witness_commitment_script([_coinbase(b"\x07" * 32), txs[1]]) == script
    # Another signature (same txid) changes the commitment; so does the reserved value.
    assert witness_commitment_script([txs[0], _segwit_tx(b"\x31" * 71)]) != script
    assert witness_commitment_script(txs, b"\x01" * 32) != script
    with pytest.raises(ValueError, match="32 bytes"):
        witness_commitment_script(txs, b"\x00")


# -- proof of work ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bits", "target"),
    [
        (0x01123456, 0x12),
        (0x02123456, 0x1234),
        (0x03123456, 0x123456),
        (0x04123456, 0x12345600),
        (0x05009234, 0x92340000),
        (0x20123456, 0x123456 << (8 * 29)),
        (MAINNET_BITS, 0xFFFF << 208),
        (REGTEST_BITS, 0x7FFFFF << 232),
    ],
)
def test_target_from_bits_matches_core_set_compact(bits, target):
    assert target_from_bits(bits) == target


@pytest.mark.parametrize(
    ("bits", "message"),
    [
        (0x04923456, "negative"),
        (0xFF123456, "overflow"),
        (0x00000000, "zero"),
        (0x01003456, "zero"),
    ],
)
def test_invalid_compact_bits_are_refused(bits, message):
    with pytest.raises(ValueError, match=message):
        target_from_bits(bits)


def test_proof_of_work_checks_hash_target_and_limit():
    header = _genesis().header
    assert check_proof_of_work(header, pow_limit_bits=MAINNET_BITS)
    wrong_nonce = replace(header, nonce=0)
    assert not check_proof_of_work(wrong_nonce, pow_limit_bits=MAINNET_BITS)
    easy = BlockHeader(1, bytes(32), bytes(32), 0, REGTEST_BITS, 0)
    assert not check_proof_of_work(easy, pow_limit_bits=MAINNET_BITS)  # easier than the limit
    negative = BlockHeader(1, bytes(32), bytes(32), 0, 0x04923456, 0)
    assert not check_proof_of_work(negative)
