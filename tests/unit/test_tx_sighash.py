"""Transactions, scripts and signature hashes against published examples."""

from __future__ import annotations

import pytest

from shared.bitcoin.encoding import ByteReader, DecodeError, compact_size
from shared.bitcoin.script import OutputType, classify, multisig_script, parse_multisig
from shared.bitcoin.sighash import SIGHASH_ALL, SighashCache
from shared.bitcoin.tx import Transaction

# BIP-143 "Native P2WPKH" and "P2SH-P2WPKH" examples.
NATIVE_TX = (
    "0100000002fff7f7881a8099afa6940d42d1e7f6362bec38171ea3edf433541db4e4ad969f0000000000eeff"
    "ffffef51e1b804cc89d182d279655c3aa89e815b1b309fe287d9b2b55d57b90ec68a0100000000ffffffff02"
    "202cb206000000001976a9148280b37df378db99f66f85c95a783a76ac7a6d5988ac9093510d000000001976"
    "a9143bde42dbee7e4dbe6a21b2d50ce2f0167faa815988ac11000000"
)
NESTED_TX = (
    "0100000001db6b1b20aa0fd7b23880be2ecbd4a98130974cf4748fb66092ac4d3ceb1a54770100000000feff"
    "ffff02b8b4eb0b000000001976a914a457b684d7f0d539a46a45bbc043f35b59d0d96388ac0008af2f0000"
    "00001976a914fd270b1ee6abcaea97fea7ad0402e8bd8ad6d77c88ac92040000"
)


@pytest.mark.parametrize(
    ("tx_hex", "index", "script_code", "amount", "expected"),
    [
        (
            NATIVE_TX,
            1,
            "76a9141d0f172a0ecb48aee1be1f2687d2963ae33f71a188ac",
            600_000_000,
            "c37af31116d1b27caf68aae9e3ac82f1477929014d5b917657d0eb49478cb670",
        ),
        (
            NESTED_TX,
            0,
            "76a91479091972186c449eb1ded22b78e40d009bdf008988ac",
            1_000_000_000,
            "64f3b0f4dd2bb3aa1ce8566d220cc74dda9df97d8490cc81d89d735c92e59fb6",
        ),
    ],
)
def test_bip143_examples(tx_hex, index, script_code, amount, expected):
    tx = Transaction.parse(bytes.fromhex(tx_hex))
    digest = SighashCache(tx).segwit_v0(index, bytes.fromhex(script_code), amount, SIGHASH_ALL)
    assert digest.hex() == expected


def test_round_trip_with_and_without_witness():
    tx = Transaction.parse(bytes.fromhex(NATIVE_TX))
    tx.inputs[0].witness = [b"\x01" * 72, b"\x02" * 33]
    raw = tx.serialize()
    assert raw[4:6] == b"\x00\x01"
    again = Transaction.parse(raw)
    assert again.serialize() == raw
    assert again.txid == Transaction.parse(bytes.fromhex(NATIVE_TX)).txid
    assert again.wtxid_hex != again.txid_hex
    assert again.weight() == 3 * len(again.serialize(include_witness=False)) + len(raw)


@pytest.mark.parametrize("cut", [1, 4, 5, 40, 100, len(NATIVE_TX) // 2 - 1])
def test_truncated_transactions_raise_decode_error(cut):
    with pytest.raises(DecodeError):
        Transaction.parse(bytes.fromhex(NATIVE_TX)[:cut])


def test_trailing_bytes_and_huge_counts_are_refused():
    with pytest.raises(DecodeError, match="trailing"):
        Transaction.parse(bytes.fromhex(NATIVE_TX) + b"\x00")
    huge_inputs = bytes.fromhex("01000000") + b"\xfe\xff\xff\xff\x7f"
    with pytest.raises(DecodeError, match="exceeds"):
        Transaction.parse(huge_inputs)


def test_superfluous_witness_flag_is_refused():
    tx = Transaction.parse(bytes.fromhex(NATIVE_TX))
    raw = tx.serialize()
    flagged = raw[:4] + b"\x00\x01" + raw[4:-4] + b"\x00\x00" + raw[-4:]
    with pytest.raises(DecodeError, match="superfluous"):
        Transaction.parse(flagged)


def test_non_canonical_compact_size_is_refused():
    with pytest.raises(DecodeError, match="non-canonical"):
        ByteReader(b"\xfd\x10\x00").read_compact_size()
    assert ByteReader(compact_size(0x10000)).read_compact_size() == 0x10000


@pytest.mark.parametrize(
    ("script_hex", "kind"),
    [
        ("76a9148280b37df378db99f66f85c95a783a76ac7a6d5988ac", OutputType.P2PKH),
        ("a914b7f5faf40e3d40a5a459b1db3535f2b72fa921e887", OutputType.P2SH),
        ("0014d85c2b71d0060b09c9886aeb815e50991dda124d", OutputType.P2WPKH),
        ("00208c2353173743b595dfb4a07b72ba8e42e3797da74e87fe7d9d7497e3b2028903", OutputType.P2WSH),
        ("5120" + "11" * 32, OutputType.P2TR),
        ("5210" + "22" * 16, OutputType.WITNESS_UNKNOWN),
        ("6a0401020304", OutputType.NULL_DATA),
        ("51", OutputType.NONSTANDARD),
    ],
)
def test_output_types(script_hex, kind):
    assert classify(bytes.fromhex(script_hex)) is kind


def test_multisig_scripts_parse_back_and_refuse_non_minimal_forms():
    keys = [bytes([2]) + bytes([i]) * 32 for i in range(1, 4)]
    script = multisig_script(2, keys)
    parsed = parse_multisig(script)
    assert parsed is not None and parsed.threshold == 2 and list(parsed.pubkeys) == keys
    # n in the script disagreeing with the key count, or m > n, is not our template
    assert parse_multisig(script[:-2] + bytes([0x52, 0xAE])) is None
    assert parse_multisig(bytes([0x54]) + script[1:]) is None


def test_multisig_with_more_than_16_keys_uses_number_pushes_like_core():
    keys = [bytes([3]) + bytes([i]) * 32 for i in range(1, 21)]
    script = multisig_script(17, keys)
    assert script[:2] == b"\x01\x11" and script[-3:] == b"\x01\x14\xae"
    parsed = parse_multisig(script)
    assert parsed is not None and parsed.threshold == 17 and len(parsed.pubkeys) == 20
    assert classify(script) is OutputType.MULTISIG
