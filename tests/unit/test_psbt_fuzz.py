"""Property and fuzz tests: hostile PSBT bytes may only ever raise PsbtError.

PSBTs reach the appliance over QR from an untrusted online machine, and every caller
catches :class:`PsbtError` only, so any other exception escaping the parser or a role
(IndexError, OverflowError, a bare DecodeError...) is a bug. Random bytes rarely get past
the magic, so most inputs here are mutations of valid PSBTs (the official vectors when
present, and PSBTs built in this file so the tests never depend on them alone): byte-level
damage, record-level splicing, and length prefixes rewritten to absurd CompactSizes.
Whatever parses must also round-trip, and the roles must keep their contracts on it.
"""

from __future__ import annotations

import base64
import contextlib
import time
import tracemalloc
from collections.abc import Callable

import pytest
from coincurve import PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.bitcoin import ecdsa
from shared.bitcoin.address import wif_to_private_key
from shared.bitcoin.bip32 import ExtendedKey, KeyOrigin
from shared.bitcoin.encoding import ByteReader, compact_size
from shared.bitcoin.script import multisig_script, p2wpkh_script, p2wsh_script
from shared.bitcoin.sighash import SighashCache
from shared.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from shared.psbt import (
    MAX_PSBT_SIZE,
    Psbt,
    PsbtDecodeError,
    PsbtError,
    PsbtSizeError,
    combine,
    extract,
    finalize,
)
from shared.psbt.model import MAGIC
from shared.psbt.scripts import spend_info
from shared.psbt.signer import sign_psbt
from tests.vectors import load_json_or_empty

FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Record = tuple[bytes, bytes]
Maps = list[list[Record]]

# -- a PSBT built here: P2WPKH + P2WSH 2-of-3, every common v0 field ---------------------

SECRETS = [bytes([i]) * 32 for i in (1, 2, 3, 4)]
PUBKEYS = [PrivateKey(s).public_key.format(compressed=True) for s in SECRETS]
HARDENED = 0x80000000


def _origin(index: int) -> bytes:
    return KeyOrigin(b"\xc0\x1d\x57\xa7", [48 | HARDENED, HARDENED, 0, index]).to_psbt_bytes()


def _built_unsigned() -> Psbt:
    witness_script = multisig_script(2, PUBKEYS[1:4])
    funding = Transaction(
        2,
        [TxIn(OutPoint(b"\x11" * 32, 3), b"\x51", 0xFFFFFFFE)],
        [TxOut(50_000, p2wpkh_script(PUBKEYS[0])), TxOut(80_000, p2wsh_script(witness_script))],
        0,
    )
    spend = Transaction(
        2,
        [
            TxIn(OutPoint(funding.txid, 0), b"", 0xFFFFFFFD),
            TxIn(OutPoint(funding.txid, 1), b"", 0xFFFFFFFD),
        ],
        [TxOut(100_000, p2wpkh_script(PUBKEYS[3])), TxOut(29_000, p2wpkh_script(PUBKEYS[0]))],
        840_000,
    )
    psbt = Psbt.from_unsigned_tx(spend)
    xpub = ExtendedKey.from_seed(b"coldstation psbt fuzz seed!").neuter().serialize()
    psbt.globals.set(0x01, _origin(99), keydata=xpub)
    psbt.globals.set(0xFC, b"global secret", keydata=b"\x04cold\x01")
    first, second = psbt.inputs
    first.set(0x00, funding.serialize())
    first.set(0x01, funding.outputs[0].serialize())
    first.set(0x03, (1).to_bytes(4, "little"))
    first.set(0x06, _origin(0), keydata=PUBKEYS[0])
    second.set(0x01, funding.outputs[1].serialize())
    second.set(0x05, witness_script)
    for i in (1, 2, 3):
        second.set(0x06, _origin(i), keydata=PUBKEYS[i])
    second.set(0x2A, b"unknown input record", keydata=b"\x01\x02")
    psbt.outputs[1].set(0x02, _origin(0), keydata=PUBKEYS[0])
    return psbt


def _built_seeds() -> list[bytes]:
    """Unsigned, half-signed, fully signed and finalized forms of the PSBT built here."""
    unsigned = _built_unsigned()
    half, _ = sign_psbt(unsigned, SECRETS[:2])
    signed, _ = sign_psbt(half, SECRETS[2:3])
    final = finalize(signed).psbt
    return [p.serialize() for p in (unsigned, half, signed, final)]


# -- the official vectors, when present ----------------------------------------------------


def _vector_seeds() -> list[bytes]:
    seeds: list[bytes] = []
    for name in ("bip174", "bip370", "bip371", "bip373"):
        data = load_json_or_empty(f"psbt/{name}_vectors.json") or {}
        seeds += [bytes.fromhex(v["hex"]) for v in data.get("valid", [])]
    roles = (load_json_or_empty("psbt/bip174_vectors.json") or {}).get("role_tests", {})
    seeds += [
        bytes.fromhex(step["result"]["hex"])
        for step in roles.values()
        if isinstance(step, dict) and isinstance(step.get("result"), dict)
    ]
    core = load_json_or_empty("psbt/bitcoin_core_rpc_psbt.json") or {}
    seeds += [base64.b64decode(text) for text in core.get("valid", [])]
    interop = load_json_or_empty("psbt/interop_p2wpkh_p2wsh_sortedmulti.json") or {}
    seeds += [base64.b64decode(interop[k]) for k in interop if k.endswith("psbt_base64")]
    return seeds


def _vector_secrets() -> list[bytes]:
    roles = (load_json_or_empty("psbt/bip174_vectors.json") or {}).get("role_tests", {})
    wifs = [
        k["wif"]
        for step in ("signer_1", "signer_2")
        for k in roles.get(step, {}).get("privkeys", [])
    ]
    interop = load_json_or_empty("psbt/interop_p2wpkh_p2wsh_sortedmulti.json") or {}
    return [wif_to_private_key(w).secret for w in wifs] + [
        bytes.fromhex(k["privkey_hex"]) for k in interop.get("keys", [])
    ]


BUILT = _built_seeds()
VECTOR_SEEDS = _vector_seeds()
SEEDS = BUILT + VECTOR_SEEDS
ALL_SECRETS = SECRETS + _vector_secrets()


# -- records: an independent splitter and joiner over valid PSBT bytes ---------------------


def split_records(raw: bytes) -> Maps:
    reader = ByteReader(raw[len(MAGIC) :])
    maps: Maps = []
    while not reader.at_end():
        records: list[Record] = []
        while key := reader.read_var_bytes():
            records.append((key, reader.read_var_bytes()))
        maps.append(records)
    return maps


LengthFn = Callable[[int, int, int, bytes], bytes | None]


def join_records(maps: Maps, length: LengthFn | None = None) -> bytes:
    """Re-encode maps; ``length(map, record, 0 key / 1 value, data)`` may override a prefix."""
    out = [MAGIC]
    for m, records in enumerate(maps):
        for r, record in enumerate(records):
            for part, data in enumerate(record):
                prefix = length(m, r, part, data) if length else None
                out += [prefix if prefix is not None else compact_size(len(data)), data]
        out.append(b"\x00")
    return b"".join(out)


HUGE_LENGTHS = [
    b"\xff" + b"\xff" * 8,
    b"\xff" + (2**60).to_bytes(8, "little"),
    b"\xfe" + b"\xff" * 4,
    b"\xfd" + b"\xff" * 2,
]


def _hostile_prefix(draw: st.DrawFn, data: bytes) -> bytes:
    """A length prefix that lies: huge, off by one, or non-minimally encoded."""
    n = len(data)
    return draw(
        st.sampled_from(
            [
                *HUGE_LENGTHS,
                compact_size(n + 1),
                compact_size(max(n - 1, 0)),
                b"\xfd" + n.to_bytes(2, "little")
                if n < 0x10000
                else b"\xfe" + n.to_bytes(4, "little"),
                b"\xff" + n.to_bytes(8, "little"),
            ]
        )
    )


# -- mutation strategies --------------------------------------------------------------------


def _pos(draw: st.DrawFn, data: bytearray, end: bool = False) -> int:
    return draw(st.integers(0, len(data) if end else max(len(data) - 1, 0)))


def _flip_bit(draw: st.DrawFn, data: bytearray) -> None:
    if data:
        data[_pos(draw, data)] ^= 1 << draw(st.integers(0, 7))


def _set_byte(draw: st.DrawFn, data: bytearray) -> None:
    if data:
        data[_pos(draw, data)] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFC, 0xFD, 0xFE, 0xFF]))


def _insert(draw: st.DrawFn, data: bytearray) -> None:
    at = _pos(draw, data, end=True)
    data[at:at] = draw(st.binary(min_size=1, max_size=16))


def _delete(draw: st.DrawFn, data: bytearray) -> None:
    at = _pos(draw, data)
    del data[at : at + draw(st.integers(1, 16))]


def _truncate(draw: st.DrawFn, data: bytearray) -> None:
    del data[_pos(draw, data) :]


def _huge_compact(draw: st.DrawFn, data: bytearray) -> None:
    at = _pos(draw, data)
    data[at : at + 1] = draw(st.sampled_from(HUGE_LENGTHS))


def _repeat_slice(draw: st.DrawFn, data: bytearray) -> None:
    start = _pos(draw, data)
    piece = data[start : start + draw(st.integers(1, 64))]
    at = _pos(draw, data, end=True)
    data[at:at] = piece


def _splice_foreign(draw: st.DrawFn, data: bytearray) -> None:
    other = draw(st.sampled_from(SEEDS))
    start = draw(st.integers(0, len(other) - 1))
    at = _pos(draw, data, end=True)
    data[at : at + draw(st.integers(0, 32))] = other[start : start + draw(st.integers(1, 96))]


BYTE_OPS = [
    _flip_bit,
    _set_byte,
    _insert,
    _delete,
    _truncate,
    _huge_compact,
    _repeat_slice,
    _splice_foreign,
]


@st.composite
def byte_mutants(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        draw(st.sampled_from(BYTE_OPS))(draw, data)
    return bytes(data)


def _pick(draw: st.DrawFn, maps: Maps) -> tuple[int, int] | None:
    filled = [m for m, records in enumerate(maps) if records]
    if not filled:
        return None
    m = draw(st.sampled_from(filled))
    return m, draw(st.integers(0, len(maps[m]) - 1))


def _drop_record(draw: st.DrawFn, maps: Maps) -> None:
    if (at := _pick(draw, maps)) is not None:
        del maps[at[0]][at[1]]


def _duplicate_record(draw: st.DrawFn, maps: Maps) -> None:
    if (at := _pick(draw, maps)) is not None:
        maps[at[0]].insert(draw(st.integers(0, len(maps[at[0]]))), maps[at[0]][at[1]])


def _move_record(draw: st.DrawFn, maps: Maps) -> None:
    if (at := _pick(draw, maps)) is not None:
        record = maps[at[0]].pop(at[1])
        maps[draw(st.integers(0, len(maps) - 1))].append(record)


def _foreign_record(draw: st.DrawFn, maps: Maps) -> None:
    other = split_records(draw(st.sampled_from(SEEDS)))
    if (at := _pick(draw, other)) is not None:
        maps[draw(st.integers(0, len(maps) - 1))].append(other[at[0]][at[1]])


def _new_value(draw: st.DrawFn, maps: Maps) -> None:
    if (at := _pick(draw, maps)) is not None:
        key, value = maps[at[0]][at[1]]
        fresh = bytearray(value)
        draw(st.sampled_from([_flip_bit, _set_byte, _insert, _delete, _truncate]))(draw, fresh)
        same_size = st.binary(min_size=len(value), max_size=len(value))
        maps[at[0]][at[1]] = (
            key,
            draw(st.one_of(st.just(bytes(fresh)), same_size, st.binary(max_size=80))),
        )


def _retype_key(draw: st.DrawFn, maps: Maps) -> None:
    if (at := _pick(draw, maps)) is not None:
        key, value = maps[at[0]][at[1]]
        new_type = draw(st.one_of(st.integers(0, 0x1C), st.sampled_from([0xFB, 0xFC, 0xFD])))
        maps[at[0]][at[1]] = compact_size(new_type) + key[1:], value


def _drop_or_copy_map(draw: st.DrawFn, maps: Maps) -> None:
    m = draw(st.integers(0, len(maps) - 1))
    if draw(st.booleans()):
        del maps[m]
    else:
        maps.insert(m, list(maps[m]))


RECORD_OPS = [
    _drop_record,
    _duplicate_record,
    _move_record,
    _foreign_record,
    _new_value,
    _retype_key,
    _drop_or_copy_map,
]


@st.composite
def record_mutants(draw: st.DrawFn) -> bytes:
    maps = split_records(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        if maps:
            draw(st.sampled_from(RECORD_OPS))(draw, maps)
    target = _pick(draw, maps) if draw(st.integers(0, 3)) == 0 else None
    if target is None:
        return join_records(maps)
    part = draw(st.integers(0, 1))
    prefix = _hostile_prefix(draw, maps[target[0]][target[1]][part])

    def length(m: int, r: int, p: int, _: bytes) -> bytes | None:
        return prefix if (m, r, p) == (*target, part) else None

    return join_records(maps, length)


# -- the properties ---------------------------------------------------------------------------


def parse_or_refuse(data: bytes) -> Psbt | None:
    """Parse, allowing only PsbtError; whatever parses must round-trip byte for byte."""
    try:
        psbt = Psbt.parse(data)
    except PsbtError:
        return None
    encoded = psbt.serialize()
    assert Psbt.parse(encoded).serialize() == encoded
    return psbt


def roles_keep_their_contracts(psbt: Psbt) -> None:
    """Each role either refuses with PsbtError or returns something consistent."""
    encoded = psbt.serialize()
    with contextlib.suppress(PsbtError):
        assert combine([psbt, psbt]).serialize() == encoded  # combining a copy is a no-op
    try:
        result = finalize(psbt)
    except PsbtError:
        result = None
    if result is not None:
        assert parse_or_refuse(result.psbt.serialize()) is not None
        if result.complete:
            extract(result.psbt)  # a complete finalization must extract
    with contextlib.suppress(PsbtError):
        extract(psbt)
    before = sum(len(inp.partial_sigs) for inp in psbt.inputs)
    try:
        signed, added = sign_psbt(psbt, ALL_SECRETS)
    except PsbtError:
        return
    assert sum(len(inp.partial_sigs) for inp in signed.inputs) == before + added
    assert psbt.serialize() == encoded  # roles work on copies
    added_signatures_verify(psbt, signed)


def added_signatures_verify(before: Psbt, after: Psbt) -> None:
    """Every signature the signer added verifies under the type its last byte names."""
    cache = SighashCache(after.unsigned_tx)
    for index, (old, new) in enumerate(zip(before.inputs, after.inputs, strict=True)):
        for pubkey in new.partial_sigs.keys() - old.partial_sigs.keys():
            sig = new.partial_sigs[pubkey]
            digest = spend_info(after, index).digest(cache, sig[-1])
            assert ecdsa.verify(pubkey, sig[:-1], digest), f"input {index}: bad signature"


def test_seeds_are_valid_and_the_built_psbt_goes_through_every_role():
    for seed in SEEDS:
        assert parse_or_refuse(seed) is not None
    unsigned, half, signed, final = (Psbt.parse(s) for s in BUILT)
    assert len(half.inputs[0].partial_sigs) == len(half.inputs[1].partial_sigs) == 1
    assert finalize(half).problems.keys() == {1}  # one of two multisig signatures
    assert finalize(signed).complete
    tx = extract(final)
    assert [len(txin.witness) for txin in tx.inputs] == [2, 4]
    assert finalize(unsigned).problems.keys() == {0, 1}


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_are_refused_with_psbt_error(data):
    parse_or_refuse(data)


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_after_the_magic_never_crash(tail):
    psbt = parse_or_refuse(MAGIC + tail)
    if psbt is not None:
        roles_keep_their_contracts(psbt)


@FUZZ
@given(st.one_of(st.text(max_size=512), st.binary(max_size=512)))
def test_from_text_only_raises_psbt_error(text):
    with contextlib.suppress(PsbtError):
        Psbt.from_text(text)


@FUZZ
@given(byte_mutants())
def test_byte_mutants_of_valid_psbts(data):
    psbt = parse_or_refuse(data)
    if psbt is not None:
        roles_keep_their_contracts(psbt)


@FUZZ
@given(record_mutants())
def test_record_splices_and_lying_lengths(data):
    psbt = parse_or_refuse(data)
    if psbt is not None:
        roles_keep_their_contracts(psbt)


@settings(FUZZ, max_examples=300)
@given(st.lists(st.binary(min_size=4, max_size=4), min_size=2, max_size=2))
def test_any_sighash_type_value_is_signed_or_refused(values):
    """PSBT_IN_SIGHASH_TYPE is any 32-bit value on the wire; the roles must cope with all."""
    psbt = Psbt.parse(BUILT[0])
    for inp, value in zip(psbt.inputs, values, strict=True):
        inp.set(0x03, value)
    roles_keep_their_contracts(psbt)


@settings(FUZZ, max_examples=300)
@given(byte_mutants(), st.sampled_from(["hex", "base64", "spaced"]))
def test_from_text_agrees_with_parse(data, form):
    text = {
        "hex": data.hex(),
        "base64": base64.b64encode(data).decode(),
        "spaced": " \n".join(
            base64.b64encode(data).decode()[i : i + 60] for i in range(0, 4 * len(data), 60)
        ),
    }[form]
    try:
        expected = Psbt.parse(data).serialize()
    except PsbtError:
        expected = None
    try:
        got = Psbt.from_text(text).serialize()
    except PsbtError:
        got = None
    if form == "hex" and not data.startswith(MAGIC):
        return  # hex is recognised by its magic; without it the text is tried as base64
    assert got == expected


@pytest.mark.parametrize("seed", BUILT + VECTOR_SEEDS[:10], ids=lambda s: f"{len(s)}B")
def test_every_truncation_is_refused(seed):
    for end in range(len(seed)):
        with pytest.raises(PsbtError):
            Psbt.parse(seed[:end])


@pytest.mark.parametrize("seed", BUILT, ids=["unsigned", "half", "signed", "final"])
def test_every_length_prefix_rewritten_to_a_huge_value_is_refused(seed):
    maps = split_records(seed)
    places = [
        (m, r, p) for m, records in enumerate(maps) for r in range(len(records)) for p in (0, 1)
    ]
    for place in places:
        for huge in HUGE_LENGTHS:
            data = join_records(
                maps, lambda m, r, p, _, h=huge, at=place: h if (m, r, p) == at else None
            )
            with pytest.raises(PsbtError):
                Psbt.parse(data)


# -- size limits ----------------------------------------------------------------------------


def test_oversized_binary_is_refused_before_decoding():
    valid = BUILT[0]
    data = valid + bytes(MAX_PSBT_SIZE + 1 - len(valid))
    start = time.perf_counter()
    with pytest.raises(PsbtSizeError):  # not "extra data": the size is checked first
        Psbt.parse(data)
    assert time.perf_counter() - start < 1.0
    with pytest.raises(PsbtSizeError):
        Psbt.from_text(data)
    with pytest.raises(PsbtDecodeError, match="extra data"):  # at the limit: decoded
        Psbt.parse(data[:-1])


def test_oversized_text_is_refused():
    with pytest.raises(PsbtSizeError):
        Psbt.from_text("A" * (2 * MAX_PSBT_SIZE + 1))
    with pytest.raises(PsbtSizeError):
        Psbt.from_text((MAGIC + bytes(MAX_PSBT_SIZE)).hex())
    padded = BUILT[0] + bytes(MAX_PSBT_SIZE + 1 - len(BUILT[0]))
    with pytest.raises(PsbtSizeError):  # small enough as text, too large once decoded
        Psbt.from_text(base64.b64encode(padded).decode())


def test_exabyte_length_claim_fails_fast_without_allocating():
    maps = split_records(BUILT[2])
    claim = b"\xff" + (2**60).to_bytes(8, "little")
    data = join_records(maps, lambda m, r, p, _: claim if (m, r, p) == (1, 0, 1) else None)
    tracemalloc.start()
    try:
        with pytest.raises(PsbtError, match="truncated"):
            Psbt.parse(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * len(data) + 1_000_000
