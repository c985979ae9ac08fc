"""The UR receiver against hostile input: refuse with a reason, keep the transfer going.

A camera at the cold station sees junk, other wallets' codes, half-read frames and, in
the worst case, crafted ones. Every text below must come back as ``rejected`` with a
reason a person can act on, must leave the transfer in progress exactly as it was, and the
receiver must still complete the right message afterwards. Also: random order and
repeats, the sender's ``degree_floor`` policy, and two hypothesis properties (any subset
of parts that determines the message yields exactly that message; garbage never raises).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.ur import bytewords
from shared.ur.fountain import (
    UINT32_MAX,
    FountainDecoder,
    FountainEncoder,
    FountainError,
    Part,
    find_nominal_fragment_length,
)
from shared.ur.sampler import choose_fragments, floor_degree, fragment_degree
from shared.ur.ur import (
    UR,
    ReceiveState,
    ReceiveStatus,
    URDecoder,
    UREncoder,
    URError,
    cbor_problem,
    decode_ur,
    encode_part,
    encode_ur,
    upper,
)
from shared.ur.xoshiro import make_message

MESSAGE = UR("bytes", cbor2.dumps(make_message(1000)))  # 1003 bytes of CBOR
MAX_FRAGMENT = 60  # -> 17 fragments of 59 bytes
ENCODER = FountainEncoder(MESSAGE.cbor, MAX_FRAGMENT)
SEQ_LEN, FRAGMENT_LEN, CHECKSUM = ENCODER.seq_len, ENCODER.fragment_len, ENCODER.checksum
LENGTH = len(MESSAGE.cbor)
STREAM = [encode_part("bytes", ENCODER.part(n)) for n in range(1, 4 * SEQ_LEN)]
HEAD = 5  # parts received before the hostile text


def raw_part(payload: bytes, seq: str = "3-17", ur_type: str = "bytes") -> str:
    return f"ur:{ur_type}/{seq}/{bytewords.encode(payload)}"


def forged(seq_num: int, seq_len: int, message_len: int, checksum: int, data_len: int) -> str:
    """A part with the header given and all-zero data."""
    return encode_part("bytes", Part(seq_num, seq_len, message_len, checksum, bytes(data_len)))


def flip_one_word(text: str) -> str:
    prefix, payload = text.rsplit("/", 1)
    middle = len(payload) // 2 & ~1
    replacement = "ae" if payload[middle : middle + 2] != "ae" else "ad"
    return f"{prefix}/{payload[:middle]}{replacement}{payload[middle + 2 :]}"


def other_message_part(seq_num: int) -> str:
    other = FountainEncoder(cbor2.dumps(make_message(1000, "Other")), MAX_FRAGMENT)
    return encode_part("bytes", other.part(seq_num))


def complete_with(decoder: URDecoder, texts: list[str]) -> ReceiveStatus:
    status = None
    for text in texts:
        status = decoder.receive(text)
        if status.state is ReceiveState.COMPLETE:
            return status
    raise AssertionError(f"stream did not complete: {status}")


@dataclass(frozen=True)
class Hostile:
    name: str
    text: object
    reason: str  # regular expression the reason must match
    alone_too: bool = True  # also refused as the very first text


HOSTILE = [
    Hostile("junk", "hello world", r"does not start with 'ur:'"),
    Hostile("empty", "", r"does not start with 'ur:'"),
    Hostile("url", "https://example.com/ur:bytes/aeae", r"does not start with 'ur:'"),
    Hostile("not text: None", None, r"expected text, got NoneType"),
    Hostile("not text: bytes", STREAM[0].encode(), r"expected text, got bytes"),
    Hostile("too many components", "ur:bytes/1-17/2/aeae", r"4 path components"),
    Hostile("bad type", "ur:by_tes/1-17/aeae", r"invalid UR type"),
    Hostile("not a byteword", "ur:bytes/6-17/" + "zz" * 12, r"not a minimal byteword"),
    Hostile("odd letters", STREAM[5] + "a", r"even number of letters"),
    Hostile("bytewords checksum", flip_one_word(STREAM[5]), r"checksum mismatch"),
    Hostile("truncated bytewords", "ur:bytes/6-17/aeadao", r"too short"),
    Hostile("seq not numeric", STREAM[5].replace("/6-17/", "/six-17/"), r"invalid sequence"),
    Hostile("seqLen 0 in text", STREAM[5].replace("/6-17/", "/6-0/"), r"out of range"),
    Hostile("seqNum over 32 bits", STREAM[5].replace("/6-17/", "/4294967296-17/"), r"out of range"),
    Hostile("seq disagrees with CBOR", STREAM[5].replace("/6-17/", "/7-17/"), r"disagrees"),
    Hostile("unexpected type", encode_ur(UR("crypto-psbt", b"\x40")), r"unexpected UR type"),
    Hostile(
        "other type mid-stream",
        STREAM[5].replace("ur:bytes/", "ur:seed/"),
        r"not that of this transfer",
        alone_too=False,
    ),
    Hostile(
        "single-part mid-stream",
        encode_ur(UR("bytes", b"\x41\x00")),
        r"single-part UR while a multipart",
        alone_too=False,
    ),
    Hostile(
        "another message", other_message_part(6), r"another message.*checksum", alone_too=False
    ),
    Hostile(
        "inconsistent seqLen",
        forged(6, 18, LENGTH, CHECKSUM, -(-LENGTH // 18)),
        r"another message.*seqLen 18, expected 17",
        alone_too=False,
    ),
    Hostile(
        "inconsistent messageLen",
        forged(6, SEQ_LEN, LENGTH - 3, CHECKSUM, FRAGMENT_LEN),
        r"another message.*messageLen 1000, expected 1003",
        alone_too=False,
    ),
    Hostile(
        "repeated seqNum, other data",
        forged(2, SEQ_LEN, LENGTH, CHECKSUM, FRAGMENT_LEN),
        r"seqNum 2 repeated with different data",
        alone_too=False,
    ),
    Hostile("messageLen memory bomb", forged(6, 1, 2**32 - 1, CHECKSUM, 1), r"size cap"),
    Hostile("seqLen bomb", forged(6, 1_000_000, 1_000_000, CHECKSUM, 1), r"seqLen 1000000"),
    Hostile("messageLen 0", forged(6, 1, 0, CHECKSUM, 0), r"messageLen 0 outside"),
    Hostile(
        "fragment too short",
        forged(6, SEQ_LEN, LENGTH, CHECKSUM, FRAGMENT_LEN - 1),
        r"fragment length 58 does not match",
    ),
    Hostile("fragments of padding", forged(6, 8, 10, CHECKSUM, 2), r"padding"),
    Hostile(
        "checksum over 32 bits",
        forged(6, SEQ_LEN, LENGTH, 2**32, FRAGMENT_LEN),
        r"not a 32-bit value",
    ),
    Hostile("CBOR map", raw_part(cbor2.dumps({"seq": 6})), r"malformed part CBOR.*array of 5"),
    Hostile(
        "CBOR 4 items", raw_part(cbor2.dumps([3, 17, LENGTH, CHECKSUM])), r"malformed part CBOR"
    ),
    Hostile(
        "CBOR negative",
        raw_part(cbor2.dumps([-3, 17, LENGTH, CHECKSUM, b"x"])),
        r"seqNum is not an unsigned integer",
    ),
    Hostile(
        "CBOR bool",
        raw_part(cbor2.dumps([True, 17, LENGTH, CHECKSUM, b"x"])),
        r"seqNum is not an unsigned integer",
    ),
    Hostile(
        "CBOR text data",
        raw_part(cbor2.dumps([3, 17, LENGTH, CHECKSUM, "x"])),
        r"data is not a definite-length byte string",
    ),
    Hostile("CBOR trailing", raw_part(ENCODER.part(3).to_cbor() + b"\x00"), r"trailing bytes"),
    Hostile("CBOR truncated", raw_part(ENCODER.part(3).to_cbor()[:-1]), r"truncated"),
    Hostile(
        "CBOR indefinite",
        raw_part(b"\x9f" + ENCODER.part(3).to_cbor()[1:] + b"\xff"),
        r"array of 5",
    ),
    Hostile("CBOR reserved", raw_part(b"\x85\x1c"), r"reserved additional information"),
    Hostile(
        "CBOR huge data", raw_part(b"\x85\x03\x11\x19\x03\xeb\x00\x5b" + b"\xff" * 8), r"truncated"
    ),
    Hostile(
        "single-part not CBOR", "ur:bytes/" + bytewords.encode(b"\xff\x00"), r"payload is not CBOR"
    ),
]


@pytest.mark.parametrize("case", HOSTILE, ids=[case.name for case in HOSTILE])
def test_hostile_text_mid_stream_is_refused_and_the_transfer_goes_on(case):
    decoder = URDecoder(expected_types=["bytes", "seed"])
    for text in STREAM[:HEAD]:
        assert decoder.receive(text).state is ReceiveState.ACCEPTED
    before = decoder.progress
    status = decoder.receive(case.text)
    assert status.state is ReceiveState.REJECTED, status
    assert re.search(case.reason, status.reason), status.reason
    assert decoder.progress == before == status.progress
    assert decoder.ur_type == "bytes"
    complete_with(decoder, STREAM[HEAD:])
    assert decoder.result == MESSAGE


@pytest.mark.parametrize(
    "case", [c for c in HOSTILE if c.alone_too], ids=[c.name for c in HOSTILE if c.alone_too]
)
def test_hostile_text_first_is_refused_and_does_not_fix_the_transfer(case):
    decoder = URDecoder(expected_types=["bytes", "seed"])
    status = decoder.receive(case.text)
    assert status.rejected and re.search(case.reason, status.reason), status.reason
    assert decoder.ur_type is None and decoder.progress.seq_len == 0
    complete_with(decoder, STREAM)
    assert decoder.result == MESSAGE


def test_text_longer_than_any_allowed_message_is_refused_unread():
    decoder = URDecoder(max_message_len=1000)
    status = decoder.receive("ur:bytes/" + "ae" * 5000)
    assert status.rejected and "exceeds" in status.reason


def test_checksum_mismatch_discards_the_message_and_scanning_starts_again():
    decoder = URDecoder()
    for text in STREAM[: SEQ_LEN - 1]:
        decoder.receive(text)
    status = decoder.receive(forged(SEQ_LEN, SEQ_LEN, LENGTH, CHECKSUM, FRAGMENT_LEN))
    assert status.rejected and "checksum mismatch" in status.reason and "discarded" in status.reason
    assert decoder.result is None and decoder.ur_type is None
    assert decoder.progress.parts_received == 0
    complete_with(decoder, STREAM)
    assert decoder.result == MESSAGE


def test_message_that_is_not_cbor_is_refused_after_its_checksum():
    junk = UR("bytes", b"\xff" * 500)
    decoder = URDecoder()
    encoder = UREncoder(junk, 60)
    statuses = [decoder.receive(encoder.next_part()) for _ in range(encoder.seq_len)]
    assert statuses[-1].rejected and "not CBOR" in statuses[-1].reason
    assert decoder.result is None and decoder.progress.parts_received == 0
    complete_with(decoder, STREAM)
    assert decoder.result == MESSAGE


# -- order, repeats, completion ----------------------------------------------------------------


def test_random_order_with_repeats_completes_and_reports_duplicates():
    rng = random.Random(7)
    feed = STREAM[: 2 * SEQ_LEN] + rng.sample(STREAM[: 2 * SEQ_LEN], SEQ_LEN)
    rng.shuffle(feed)
    decoder = URDecoder(expected_types=["bytes"])
    seen: set[str] = set()
    for text in feed:
        status = decoder.receive(text)
        if status.state is ReceiveState.COMPLETE:
            break
        assert status.state is (ReceiveState.DUPLICATE if text in seen else ReceiveState.ACCEPTED)
        seen.add(text)
    assert decoder.result == MESSAGE
    assert decoder.progress.parts_received == len(seen) + 1


def test_after_completion_repeats_are_duplicates_and_others_refused():
    decoder = URDecoder()
    complete_with(decoder, STREAM)
    assert decoder.receive(STREAM[0]).state is ReceiveState.DUPLICATE
    assert decoder.receive(STREAM[-1]).state is ReceiveState.DUPLICATE
    assert decoder.receive(other_message_part(1)).rejected
    assert decoder.receive(encode_ur(UR("bytes", b"\x40"))).rejected
    assert decoder.result == MESSAGE
    decoder.reset()
    assert decoder.result is None and decoder.progress.seq_len == 0
    assert decoder.receive(encode_ur(UR("bytes", b"\x40"))).state is ReceiveState.COMPLETE


def test_single_part_ur():
    ur = UR("crypto-psbt", cbor2.dumps(b"psbt\xff"))
    decoder = URDecoder(expected_types=["crypto-psbt", "psbt"])
    status = decoder.receive(upper(encode_ur(ur)))
    assert status.state is ReceiveState.COMPLETE and decoder.result == ur
    assert decoder.ur_type == "crypto-psbt" and decoder.progress.estimated_parts_left == 0
    assert decoder.receive(encode_ur(ur)).state is ReceiveState.DUPLICATE
    assert decoder.receive(encode_ur(UR("crypto-psbt", b"\x40"))).rejected
    assert decoder.receive(STREAM[0]).rejected


def test_progress_counts_fragments_parts_and_an_estimate():
    decoder = URDecoder()
    assert decoder.progress.seq_len == 0 and str(decoder.progress) == "waiting for the first part"
    rng = random.Random(3)
    known = 0
    for text in STREAM:
        if rng.random() < 0.3:
            continue
        status = decoder.receive(text)
        progress = status.progress
        assert progress.seq_len == SEQ_LEN
        assert known <= progress.fragments_known <= progress.rank <= SEQ_LEN
        known = progress.fragments_known
        deficit = SEQ_LEN - progress.rank
        if status.state is ReceiveState.COMPLETE:
            assert progress.estimated_parts_left == 0 and progress.fragments_known == SEQ_LEN
            break
        assert progress.estimated_parts_left >= max(1, deficit)
        assert f"/{SEQ_LEN} fragments known" in str(progress)
    assert decoder.result == MESSAGE


# -- encoder side ------------------------------------------------------------------------------


def test_degree_floor_stream_shows_plain_fragments_then_only_high_degrees():
    encoder = FountainEncoder(MESSAGE.cbor, 20, degree_floor=True)
    seq_len, floor = encoder.seq_len, floor_degree(encoder.seq_len)
    assert seq_len == 51 and floor == 13
    parts = [encoder.next_part() for _ in range(3 * seq_len)]
    assert [p.seq_num for p in parts[:seq_len]] == list(range(1, seq_len + 1))
    for part in parts[seq_len:]:
        assert len(part.indexes) >= floor
        assert part == FountainEncoder(MESSAGE.cbor, 20).part(part.seq_num)  # same wire parts
    skipped = set(range(seq_len + 1, parts[-1].seq_num)) - {p.seq_num for p in parts}
    assert skipped and all(fragment_degree(n, seq_len, encoder.checksum) < floor for n in skipped)
    decoder = FountainDecoder()
    for part in parts[seq_len:]:  # the fountain parts alone suffice
        decoder.receive(part)
        if decoder.is_complete:
            break
    assert decoder.result == MESSAGE.cbor


def test_ur_encoder_degree_floor_and_first_seq_num():
    encoder = UREncoder(MESSAGE, MAX_FRAGMENT, 100, degree_floor=True)
    texts = [encoder.next_part() for _ in range(2 * SEQ_LEN)]
    decoder = URDecoder()
    complete_with(decoder, texts)
    assert decoder.result == MESSAGE


def test_encoder_part_on_demand_matches_the_stream_and_seq_numbers_end():
    encoder = FountainEncoder(MESSAGE.cbor, MAX_FRAGMENT)
    assert [encoder.next_part() for _ in range(40)] == [encoder.part(n) for n in range(1, 41)]
    last = FountainEncoder(MESSAGE.cbor, MAX_FRAGMENT, first_seq_num=UINT32_MAX - 1)
    assert last.next_part().seq_num == UINT32_MAX
    with pytest.raises(FountainError, match="exhausted"):
        last.next_part()


def test_short_message_is_one_part():
    assert find_nominal_fragment_length(5, 10, 100) == 5
    encoder = UREncoder(UR("bytes", b"\x44abcd"), 100)
    assert encoder.is_single_part and encoder.next_part() == encoder.next_part()
    assert decode_ur(encoder.next_part()) == UR("bytes", b"\x44abcd")


def test_ur_type_and_text_validation():
    with pytest.raises(URError, match="invalid UR type"):
        UR("Crypto-PSBT", b"\x40")
    with pytest.raises(URError, match="multipart"):
        decode_ur(STREAM[0])
    assert decode_ur(upper(encode_ur(MESSAGE))) == MESSAGE


def test_fountain_decoder_caps_and_bounds():
    small = FountainDecoder(max_message_len=1000)
    with pytest.raises(FountainError, match="size cap"):
        small.receive(ENCODER.part(1))
    with pytest.raises(FountainError, match="seqNum 0 outside"):
        FountainDecoder().receive(Part(0, SEQ_LEN, LENGTH, CHECKSUM, bytes(FRAGMENT_LEN)))
    with pytest.raises(FountainError, match=r"seqLen 17 outside 1\.\.16"):
        FountainDecoder(max_seq_len=16).receive(ENCODER.part(1))
    with pytest.raises(ValueError, match="solve"):
        FountainDecoder(solve="magic")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (cbor2.dumps({"a": [1, 2.5, None, b"x", "y", {"z": True}]}), None),
        (bytes.fromhex("9f018202039f0405ffff"), None),  # indefinite arrays
        (bytes.fromhex("5f42010243030405ff"), None),  # indefinite byte string
        (bytes.fromhex("d8201a00000001"), None),  # tagged
        (b"", "truncated"),
        (b"\x01\x02", "1 bytes after"),
        (b"\x1c", "reserved"),
        (b"\xff", "break outside"),
        (b"\xf8\x10", "simple value 16"),
        (bytes.fromhex("5f4201026103ff"), "chunk of another kind"),
        (b"\x9b" + b"\xff" * 8, "truncated"),  # 2**64 items announced
        (b"\x81" * 2000 + b"\x00", "nested deeper"),
    ],
)
def test_cbor_well_formedness(raw, problem):
    found = cbor_problem(raw)
    assert found is None if problem is None else problem in found


# -- properties --------------------------------------------------------------------------------


def independent_rank(index_sets: list[tuple[int, ...]]) -> int:
    """GF(2) rank, computed by plain elimination on the highest bit (a second opinion)."""
    basis: dict[int, int] = {}
    for indexes in index_sets:
        row = sum(1 << i for i in set(indexes))
        while row:
            top = row.bit_length() - 1
            if top not in basis:
                basis[top] = row
                break
            row ^= basis[top]
    return len(basis)


@settings(max_examples=150, deadline=None)
@given(
    message=st.binary(min_size=1, max_size=400),
    max_fragment_len=st.integers(10, 80),
    solve=st.sampled_from(["gf2", "peel"]),
    data=st.data(),
)
def test_any_sufficient_subset_of_parts_yields_exactly_the_message(
    message, max_fragment_len, solve, data
):
    encoder = FountainEncoder(message, max_fragment_len)
    seq_len = encoder.seq_len
    pool = list(range(1, 3 * seq_len + 8))
    chosen = data.draw(st.lists(st.sampled_from(pool), unique=True, max_size=len(pool)))
    decoder = FountainDecoder(solve=solve)
    for seq_num in chosen:
        decoder.receive(encoder.part(seq_num))
    rank = independent_rank([choose_fragments(n, seq_len, encoder.checksum) for n in chosen])
    if solve == "gf2":
        assert decoder.is_complete == (rank == seq_len)
    else:
        assert not decoder.is_complete or rank == seq_len
    if decoder.is_complete:
        assert decoder.result == message


def part_shaped(draw_ints: st.SearchStrategy[int]) -> st.SearchStrategy[str]:
    """Texts that reach the part checks: valid Bytewords around plausible-looking CBOR."""
    fields = st.tuples(
        st.one_of(st.just(6), draw_ints),
        st.one_of(st.just(SEQ_LEN), draw_ints),
        st.one_of(st.just(LENGTH), draw_ints),
        st.one_of(st.just(CHECKSUM), draw_ints),
        st.binary(max_size=80),
    )
    return fields.map(
        lambda f: raw_part(cbor2.dumps(list(f)), seq=f"{max(f[0], 0)}-{max(f[1], 0)}")
    )


GARBAGE = st.one_of(
    st.text(max_size=200),
    st.text(max_size=200).map(lambda t: "ur:" + t),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz-/0123456789", max_size=120).map(
        lambda t: "ur:" + t
    ),
    st.binary(max_size=120).map(lambda b: "ur:bytes/" + bytewords.encode(b) if b else "ur:b/"),
    st.binary(min_size=1, max_size=120).map(raw_part),
    part_shaped(st.integers(-(2**70), 2**70)),
    st.tuples(st.integers(0, len(STREAM) - 1), st.integers(0, 400), st.characters()).map(
        lambda t: STREAM[t[0]][: t[1]] + t[2] + STREAM[t[0]][t[1] + 1 :]
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(GARBAGE)
def test_garbage_never_raises_and_never_derails_the_transfer(text):
    decoder = URDecoder()
    for part in STREAM[:HEAD]:
        decoder.receive(part)
    before = decoder.progress
    status = decoder.receive(text)
    assert isinstance(status, ReceiveStatus) and status.reason
    if status.rejected:
        assert decoder.progress == before
    if status.state is not ReceiveState.ACCEPTED or text in STREAM:
        complete_with(decoder, STREAM[HEAD:])
        assert decoder.result == MESSAGE
