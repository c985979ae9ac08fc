"""UR conformance: every file of the official Blockchain Commons vectors in ``ur/``.

Bytewords, CRC-32, SHA-256 seeding, Xoshiro256**, the Walker-Vose sampler, both shuffle
and both degree-chooser variants (C++ per-nonce generator, BCR single generator), the
fragment chooser, the fountain encoder's exact part bytes and UR strings, and the
decoder round trips. ``ur_registry_types.json`` is used only for its multipart
``crypto-psbt`` stream: mapping registry CBOR to objects is tested with the registry.
The last test fails if a vector file appears that nothing here reads.
"""

from __future__ import annotations

import hashlib
import zlib
from collections import Counter

import cbor2
import pytest

from shared.ur import bytewords
from shared.ur.fountain import (
    FountainDecoder,
    FountainEncoder,
    Part,
    find_nominal_fragment_length,
    join_fragments,
    partition,
)
from shared.ur.sampler import (
    RandomSampler,
    choose_degree,
    choose_fragments,
    fragment_rng,
    shuffle,
)
from shared.ur.ur import UR, ReceiveState, URDecoder, UREncoder, decode_ur, encode_ur
from shared.ur.xoshiro import Xoshiro256, make_message
from tests.vectors import cases, load_json, vectors_dir

BYTEWORDS = "ur/bytewords.json"
CRC32 = "ur/crc32.json"
SHA256 = "ur/sha256.json"
XOSHIRO = "ur/xoshiro256.json"
SAMPLER = "ur/random_sampler.json"
SHUFFLE = "ur/shuffle.json"
FRAGMENT_LENGTH = "ur/fragment_length.json"
PARTITION = "ur/partition.json"
DEGREES = "ur/degree_chooser.json"
CHOOSER = "ur/fragment_chooser.json"
ENCODER = "ur/fountain_encoder.json"
PART_CBOR = "ur/part_cbor.json"
SINGLE = "ur/ur_single_part.json"
MULTI = "ur/ur_multipart_bytes.json"
SEED = "ur/ur_multipart_seed_example.json"
REGISTRY = "ur/ur_registry_types.json"
ROUNDTRIP = "ur/decoder_roundtrip.json"
WORDLIST = "ur/bytewords_wordlist.txt"


# -- Bytewords ---------------------------------------------------------------------------


def test_embedded_wordlist_is_the_official_one():
    path = vectors_dir() / WORDLIST
    if not path.is_file():
        pytest.skip(f"official vectors not found at {path} (set COLDSTATION_VECTORS)")
    assert path.read_text().split() == list(bytewords.WORDS)
    assert len(set(bytewords.WORDS)) == 256


@pytest.mark.parametrize("vector", cases(BYTEWORDS, "valid", ident="name"))
def test_bytewords_encode_and_decode(vector):
    data = bytes.fromhex(vector["input_hex"])
    if "input_bytes" in vector:
        assert list(data) == vector["input_bytes"]
    if "crc32_hex" in vector:
        assert f"{zlib.crc32(data):08x}" == vector["crc32_hex"]
    for style in ("standard", "uri", "minimal"):
        expected = vector.get(style) or vector[f"{style}_derived"]
        assert bytewords.encode(data, style) == expected
        assert bytewords.decode(expected, style) == data
        assert bytewords.decode(expected.upper(), style) == data


@pytest.mark.parametrize("vector", cases(BYTEWORDS, "invalid_must_fail", ident="reason"))
def test_bytewords_refuses(vector):
    expected = {"bad checksum": "checksum mismatch", "too short": "too short"}[vector["reason"]]
    with pytest.raises(bytewords.BytewordsError, match=expected):
        bytewords.decode(vector["input"], vector["style"])


# -- CRC-32, SHA-256, Xoshiro256** ---------------------------------------------------------


@pytest.mark.parametrize("vector", cases(CRC32, "cases", ident="input_utf8"))
def test_crc32(vector):
    data = bytes.fromhex(vector["input_hex"])
    if "input_utf8" in vector:
        assert data == vector["input_utf8"].encode()
    if "make_message" in vector.get("note", ""):
        assert data == make_message(len(data))
    assert zlib.crc32(data) == vector["crc32_uint32"]
    assert zlib.crc32(data).to_bytes(4, "big").hex() == vector["crc32_hex"]


@pytest.mark.parametrize("vector", cases(SHA256, "cases", ident="input_utf8"))
def test_sha256(vector):
    assert hashlib.sha256(vector["input_utf8"].encode()).hexdigest() == vector["sha256_hex"]


def _xoshiro_outputs(vector: dict) -> list[int]:
    if "seed_uint32_crc32_of_utf8" in vector:
        crc = zlib.crc32(vector["seed_uint32_crc32_of_utf8"].encode())
        assert crc.to_bytes(4, "big").hex() == vector["seed_bytes_hex"]
        rng = Xoshiro256.from_uint32(crc)
    else:
        rng = Xoshiro256.from_string(vector["seed_utf8"])
    draw = {
        "next() % 100": lambda: rng.next() % 100,
        "next_int(1, 10)": lambda: rng.next_int(1, 10),
    }
    return [draw[vector["op"]]() for _ in range(vector["count"])]


@pytest.mark.parametrize("vector", cases(XOSHIRO, "cases", ident="name"))
def test_xoshiro256(vector):
    if "op" in vector:
        assert _xoshiro_outputs(vector) == vector["expected"]
    elif "ops" in vector:  # next_data twice, then XOR
        rng = Xoshiro256.from_string(vector["seed_utf8"])
        first, second = rng.next_data(10), rng.next_data(10)
        mixed = bytes(a ^ b for a, b in zip(first, second, strict=True))
        assert [first.hex(), second.hex(), mixed.hex()] == vector["expected_hex"]
    else:  # derived seeding state and raw outputs
        seed = vector["seed_utf8"].encode()
        assert hashlib.sha256(seed).hexdigest() == vector["sha256_of_seed_hex"]
        rng = Xoshiro256(seed)
        assert [f"{word:016x}" for word in rng.state] == vector["initial_state_hex"]
        assert [str(rng.next()) for _ in range(5)] == vector["first_5_next_uint64"]


# -- sampler, shuffle, degrees, fragment chooser ------------------------------------------


@pytest.mark.parametrize("vector", cases(SAMPLER, "cases", ident="rng_seed_utf8"))
def test_random_sampler(vector):
    sampler = RandomSampler(vector["probs"])
    rng = Xoshiro256.from_string(vector["rng_seed_utf8"])
    samples = [sampler.next(rng.next_double) for _ in range(vector["count"])]
    assert samples == vector["expected_samples"]
    histogram = Counter(samples)
    assert [histogram[i] for i in range(len(vector["probs"]))] == vector["expected_histogram"]


@pytest.mark.parametrize("vector", cases(SHUFFLE, "cases", ident="name"))
def test_shuffle(vector):
    values = vector["values"]
    if vector["name"] == "cpp_10_successive_full_shuffles":
        rng = Xoshiro256.from_string(vector["rng_seed_utf8"])
        got = [shuffle(values, rng) for _ in vector["expected"]]
    else:  # partial shuffles, a fresh generator for each count
        got = [
            shuffle(values, Xoshiro256.from_string(vector["rng_seed_utf8"]), count)
            for count in range(1, len(vector["expected"]) + 1)
        ]
    assert got == vector["expected"]


@pytest.mark.parametrize("vector", cases(DEGREES, "cases", ident="name"))
def test_degree_chooser(vector):
    seq_len, expected = vector["seq_len"], vector["expected_degrees"]
    if vector["name"] == "cpp_per_nonce_rng":
        got = [
            choose_degree(seq_len, Xoshiro256.from_string(f"Wolf-{nonce}"))
            for nonce in range(1, len(expected) + 1)
        ]
    else:  # one generator for all draws
        rng = Xoshiro256.from_string("Wolf")
        got = [choose_degree(seq_len, rng) for _ in expected]
    assert got == expected
    if "expected_histogram_degree_1_to_11" in vector:
        histogram = Counter(got)
        assert [histogram[d] for d in range(1, 12)] == vector["expected_histogram_degree_1_to_11"]


def test_fragment_chooser():
    vector = load_json(CHOOSER)
    seq_len, checksum = vector["seq_len"], vector["checksum_uint32"]
    assert zlib.crc32(make_message(1024)) == checksum
    assert f"{checksum:08x}" == vector["checksum_hex"]
    got = [sorted(choose_fragments(n, seq_len, checksum)) for n in range(1, 51)]
    assert got == vector["expected_sorted_indexes_for_seq_num_1_to_50"]
    for key, seed_hex in vector["derived_example_seed_bytes_hex"].items():
        seq_num = int(key.removeprefix("seq_num_"))
        assert fragment_rng(seq_num, checksum).state == Xoshiro256(bytes.fromhex(seed_hex)).state


# -- fragments and fountain parts -------------------------------------------------------------


def _length_cases() -> list:
    return cases(FRAGMENT_LENGTH, "cases") + cases(FRAGMENT_LENGTH, "derived_cases")


@pytest.mark.parametrize("vector", _length_cases())
def test_find_nominal_fragment_length(vector):
    fragment_len = find_nominal_fragment_length(
        vector["message_len"], vector["min_fragment_len"], vector["max_fragment_len"]
    )
    assert fragment_len == vector["expected_fragment_len"]
    if "expected_seq_len" in vector:
        message = bytes(vector["message_len"])
        assert len(partition(message, fragment_len)) == vector["expected_seq_len"]


def test_partition_and_join():
    vector = load_json(PARTITION)
    message = bytes.fromhex(vector["message"]["hex"])
    assert message == make_message(vector["message"]["len"])
    assert f"{zlib.crc32(message):08x}" == vector["message"]["crc32_hex"]
    fragment_len = find_nominal_fragment_length(
        len(message), vector["min_fragment_len"], vector["max_fragment_len"]
    )
    assert fragment_len == vector["fragment_len"]
    fragments = partition(message, fragment_len)
    assert [f.hex() for f in fragments] == vector["expected_fragments_hex"]
    assert join_fragments(fragments, len(message)) == message


def test_fountain_encoder_parts():
    vector = load_json(ENCODER)
    message = bytes.fromhex(vector["message"]["hex"])
    assert message == make_message(len(message))
    encoder = FountainEncoder(
        message, vector["max_fragment_len"], vector["min_fragment_len"], vector["first_seq_num"]
    )
    for index, expected in enumerate(vector["expected_parts"]):
        part = encoder.next_part()
        assert encoder.is_complete == (index + 1 >= part.seq_len)
        assert part.description() == expected["description"]
        assert part.to_cbor().hex() == expected["cbor_hex"]
        assert (part.seq_num, part.seq_len, part.message_len, part.checksum) == (
            expected["seq_num"],
            expected["seq_len"],
            expected["message_len"],
            expected["checksum"],
        )
        assert part.data.hex() == expected["data_hex"]
        assert sorted(part.indexes) == expected["derived_fragment_indexes"]
        assert Part.from_cbor(bytes.fromhex(expected["cbor_hex"])) == part


@pytest.mark.parametrize("vector", cases(PART_CBOR, "cases", ident="diagnostic"))
def test_part_cbor(vector):
    data = bytes.fromhex(vector["data_hex"])
    assert vector["checksum"] == int(vector["checksum_hex"], 16)
    fields = (vector[key] for key in ("seq_num", "seq_len", "message_len", "checksum"))
    part = Part(*fields, data)
    assert part.to_cbor().hex() == vector["expected_cbor_hex"]
    assert Part.from_cbor(bytes.fromhex(vector["expected_cbor_hex"])) == part
    assert cbor2.loads(part.to_cbor()) == [12, 8, 100, 0x12345678, data]


# -- UR strings -------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", cases(SINGLE, "cases", ident="name"))
def test_single_part_ur(vector):
    ur = UR(vector["type"], bytes.fromhex(vector["cbor_hex"]))
    if "payload_hex" in vector:
        assert cbor2.loads(ur.cbor) == bytes.fromhex(vector["payload_hex"])
    if vector["name"] == "bytes_50":
        assert ur.cbor == cbor2.dumps(make_message(50))
    assert encode_ur(ur) == vector["ur"]
    assert decode_ur(vector["ur"]) == ur
    assert decode_ur(vector["ur"].upper()) == ur
    decoder = URDecoder(expected_types=[vector["type"]])
    assert decoder.receive(vector["ur"]).state is ReceiveState.COMPLETE
    assert decoder.result == ur
    encoder = UREncoder(ur, max_fragment_len=len(ur.cbor))
    assert encoder.is_single_part and encoder.next_part() == vector["ur"]


def test_ur_case_insensitivity():
    vector = load_json(SINGLE)["derived_case_insensitivity"]
    assert decode_ur(vector["ur_upper"]) == decode_ur(vector["must_decode_equal_to"])
    assert vector["ur_upper"] == vector["must_decode_equal_to"].upper()


def test_multipart_bytes_encoder():
    vector = load_json(MULTI)
    ur = UR(vector["ur_type"], cbor2.dumps(make_message(256)))
    assert ur.cbor.hex() == vector["message_cbor_hex"]
    assert f"{zlib.crc32(ur.cbor):08x}" == vector["message_crc32_hex"]
    encoder = UREncoder(
        ur,
        vector["max_fragment_len"],
        vector["first_seq_num"],
        min_fragment_len=vector["min_fragment_len"],
    )
    assert [encoder.next_part() for _ in vector["expected_parts"]] == vector["expected_parts"]


@pytest.mark.parametrize("detail", cases(MULTI, "parts_detail", ident="ur"))
def test_multipart_bytes_part_fields(detail):
    text = detail["ur"]
    payload = text.rsplit("/", 1)[1]
    part = Part.from_cbor(bytewords.decode(payload))
    assert text.split("/")[1] == f"{part.seq_num}-{part.seq_len}"
    assert (part.seq_num, part.seq_len, part.message_len, part.checksum) == (
        detail["derived_seq_num"],
        detail["derived_seq_len"],
        detail["derived_message_len"],
        detail["derived_checksum"],
    )
    assert part.data.hex() == detail["derived_fragment_hex"]
    assert sorted(part.indexes) == detail["derived_fragment_indexes"]


def test_multipart_bytes_decoder():
    vector = load_json(MULTI)
    decoder = URDecoder(expected_types=["bytes"])
    states = [decoder.receive(text.upper()).state for text in vector["expected_parts"]]
    assert states[:8] == [ReceiveState.ACCEPTED] * 8
    assert states[8] is ReceiveState.COMPLETE  # the nine plain fragments suffice
    assert set(states[9:]) == {ReceiveState.DUPLICATE}
    assert decoder.result == UR("bytes", bytes.fromhex(vector["message_cbor_hex"]))


def test_multipart_bytes_from_fountain_parts_mostly():
    """Parts 10..20 never mix fragment 4: they leave exactly it unknown; part 5 completes."""
    vector = load_json(MULTI)
    decoder = URDecoder()
    for text in vector["expected_parts"][9:]:
        assert not decoder.receive(text).rejected
    progress = decoder.progress
    assert decoder.result is None and progress.rank == 8 and progress.fragments_known < 9
    assert decoder.receive(vector["expected_parts"][4]).state is ReceiveState.COMPLETE
    assert decoder.result is not None
    assert decoder.result.cbor.hex() == vector["message_cbor_hex"]


def test_multipart_seed_example():
    vector = load_json(SEED)
    ur = decode_ur(vector["single_part_ur"])
    assert ur.type == "seed" and ur.cbor.hex() == vector["message_cbor_hex"]
    assert f"{zlib.crc32(ur.cbor):08x}" == vector["message_crc32_hex"]
    parts = vector["derived_parts_1_to_6"]
    assert parts[0] == vector["upstream_part_1"]
    for max_fragment_len in (18, 26):
        encoder = UREncoder(ur, max_fragment_len)
        assert [encoder.next_part() for _ in parts] == parts
    decoder = URDecoder(expected_types=["seed"])
    for text in parts[1:]:  # without the upstream part 1
        status = decoder.receive(text)
    assert status.state in (ReceiveState.COMPLETE, ReceiveState.DUPLICATE)
    assert decoder.result == ur


def test_registry_multipart_crypto_psbt_stream():
    vector = load_json(REGISTRY)
    stream = vector["derived_multipart_crypto_psbt"]
    (psbt_case,) = [c for c in vector["cases"] if c["ur_type"] == "crypto-psbt"]
    cbor = bytes.fromhex(psbt_case["cbor_hex"])
    decoder = URDecoder(expected_types=["crypto-psbt", "psbt"])
    for text in stream["parts"][4:]:  # only the fountain parts after the first pass
        decoder.receive(text)
    assert decoder.result == UR("crypto-psbt", cbor)
    encoder = UREncoder(
        UR("crypto-psbt", cbor),
        stream["max_fragment_len"],
        stream["first_seq_num"],
        min_fragment_len=stream["min_fragment_len"],
    )
    assert [encoder.next_part() for _ in stream["parts"]] == stream["parts"]


# -- decoder round trips ----------------------------------------------------------------------


def _roundtrip_message(vector: dict) -> bytes:
    message = make_message(32767)
    return cbor2.dumps(message) if vector["name"] == "multipart_ur" else message


def _parts_to_complete(vector: dict, solve: str) -> int:
    message = _roundtrip_message(vector)
    encoder = FountainEncoder(message, vector["max_fragment_len"], 10, vector["first_seq_num"])
    assert (encoder.fragment_len, encoder.seq_len) == (
        vector["derived_fragment_len"],
        vector["derived_seq_len"],
    )
    assert f"{encoder.checksum:08x}" == vector["derived_message_crc32_hex"]
    decoder = FountainDecoder(solve=solve)
    count = 0
    while not decoder.is_complete:
        part = encoder.next_part()
        assert part.seq_num > part.seq_len  # first_seq_num 100: purely rateless
        decoder.receive(part)
        count += 1
    assert decoder.result == message
    return count


@pytest.mark.parametrize("vector", cases(ROUNDTRIP, "cases", ident="name"))
def test_decoder_roundtrip(vector):
    peel = _parts_to_complete(vector, "peel")
    gf2 = _parts_to_complete(vector, "gf2")
    # Informational upstream, but our "peel" mode is the reference algorithm: it must agree.
    assert peel == vector["derived_parts_needed_reference_decoder"]
    assert vector["derived_seq_len"] <= gf2 < peel


@pytest.mark.parametrize("vector", cases(ROUNDTRIP, "cases", ident="name"))
def test_multipart_ur_roundtrip(vector):
    """The same stream as UR text through URDecoder (test_multipart_ur upstream)."""
    message = _roundtrip_message(vector)
    ur = UR("bytes", message if vector["name"] == "multipart_ur" else cbor2.dumps(message))
    encoder = UREncoder(ur, vector["max_fragment_len"], vector["first_seq_num"])
    decoder = URDecoder(expected_types=["bytes"])
    for _ in range(4 * encoder.seq_len):
        if decoder.receive(encoder.next_part()).state is ReceiveState.COMPLETE:
            break
    assert decoder.result == ur


def _rule_first_part_fixes_header() -> None:
    decoder = FountainDecoder()
    decoder.receive(FountainEncoder(make_message(256), 30).next_part())
    with pytest.raises(ValueError, match="another message"):
        decoder.receive(FountainEncoder(make_message(256, "Other"), 30).next_part())
    assert decoder.seq_len == 9 and decoder.progress.parts_received == 1


def _rule_duplicates_ignored() -> None:
    decoder = FountainDecoder()
    part = FountainEncoder(make_message(256), 30).next_part()
    assert decoder.receive(part) is True
    assert decoder.receive(part) is False
    assert decoder.progress.parts_received == 1


def _rule_checksum_verified() -> None:
    encoder = FountainEncoder(make_message(256), 30)
    decoder = FountainDecoder()
    parts = [encoder.next_part() for _ in range(9)]
    forged = Part(9, 9, 256, encoder.checksum, bytes(len(parts[8].data)))
    for part in parts[:8]:
        decoder.receive(part)
    with pytest.raises(ValueError, match="checksum mismatch"):
        decoder.receive(forged)
    assert decoder.result is None


def _rule_seq_text_agrees_with_cbor() -> None:
    text = UREncoder(UR("bytes", cbor2.dumps(make_message(256))), 30).next_part()
    status = URDecoder().receive(text.replace("/1-9/", "/2-9/"))
    assert status.rejected and "disagrees" in status.reason


def _rule_same_type() -> None:
    encoder = UREncoder(UR("bytes", cbor2.dumps(make_message(256))), 30)
    decoder = URDecoder()
    decoder.receive(encoder.next_part())
    status = decoder.receive(encoder.next_part().replace("ur:bytes/", "ur:seed/"))
    assert status.rejected and "type" in status.reason


_RULES = {
    "first valid part fixes": _rule_first_part_fixes_header,
    "duplicate parts are ignored": _rule_duplicates_ignored,
    "verify CRC-32": _rule_checksum_verified,
    "seq component in the UR text": _rule_seq_text_agrees_with_cbor,
    "same UR type": _rule_same_type,
}


def test_decoder_rules_from_spec():
    rules = load_json(ROUNDTRIP)["decoder_rules_from_spec"]
    for rule in rules:
        (check,) = [check for key, check in _RULES.items() if key in rule]
        check()
    assert len(rules) == len(_RULES)


# -- coverage of the vector folder -------------------------------------------------------------


def test_every_ur_vector_file_is_covered():
    folder = vectors_dir() / "ur"
    if not folder.is_dir():
        pytest.skip(f"official vectors not found at {folder} (set COLDSTATION_VECTORS)")
    covered = {
        BYTEWORDS,
        CRC32,
        SHA256,
        XOSHIRO,
        SAMPLER,
        SHUFFLE,
        FRAGMENT_LENGTH,
        PARTITION,
        DEGREES,
        CHOOSER,
        ENCODER,
        PART_CBOR,
        SINGLE,
        MULTI,
        SEED,
        REGISTRY,
        ROUNDTRIP,
        WORDLIST,
    }
    present = {f"ur/{p.name}" for p in folder.iterdir() if p.name != "README.md"}
    assert present == covered
