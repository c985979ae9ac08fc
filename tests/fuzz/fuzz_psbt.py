"""Coverage-guided fuzzing of the PSBT decoder and roles with atheris (libFuzzer).

The property is the one in ``tests/unit/test_psbt_fuzz.py``: bytes from an untrusted
machine may only raise :class:`PsbtError`; whatever parses round-trips byte for byte, and
combine, finalize, extract and the software signer keep their contracts on it. Hypothesis
explores the shapes we thought of; libFuzzer follows coverage into the ones we did not.

Most byte mutations of a PSBT break a length prefix and die in the first map, so half the
time a structure-aware mutator rewrites one record (its key or value through libFuzzer's
own mutator, lengths kept consistent) or moves, copies or drops records.

    python tests/fuzz/fuzz_psbt.py -atheris_runs=200000 [corpus_dir ...] [libFuzzer flags]

Without a corpus directory the seeds (the official valid vectors when present, plus PSBTs
built here) go to a temporary one, and a dictionary of PSBT tokens is supplied.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import random
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["shared"]):
    from coincurve import PrivateKey

    from shared.bitcoin import ecdsa
    from shared.bitcoin.bip32 import KeyOrigin
    from shared.bitcoin.script import multisig_script, p2wpkh_script, p2wsh_script
    from shared.bitcoin.sighash import SighashCache
    from shared.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
    from shared.psbt import Psbt, PsbtError, combine, extract, finalize
    from shared.psbt.model import MAGIC
    from shared.psbt.scripts import spend_info
    from shared.psbt.signer import sign_psbt

SECRETS = [bytes([i]) * 32 for i in (1, 2, 3, 4)]
PUBKEYS = [PrivateKey(s).public_key.format(compressed=True) for s in SECRETS]
VECTORS = Path(
    os.environ.get(
        "COLDSTATION_VECTORS", Path(__file__).resolve().parents[3] / "shared" / "vectors"
    )
)
#: libFuzzer dictionary: the magic, hostile CompactSizes, a version record, separators.
TOKENS = [
    MAGIC,
    b"\xff" * 9,
    b"\xff" + (2**60).to_bytes(8, "little"),
    b"\xfe\xff\xff\xff\xff",
    b"\xfd\xff\xff",
    b"\x01\xfb\x04\x02\x00\x00\x00",
    b"\x00\x01",
]


# -- the property ------------------------------------------------------------------------


def test_one_input(data: bytes) -> None:
    if not data.startswith(MAGIC):
        with contextlib.suppress(PsbtError):
            Psbt.from_text(data)
    try:
        psbt = Psbt.parse(data)
    except PsbtError:
        return
    encoded = psbt.serialize()
    if Psbt.parse(encoded).serialize() != encoded:
        raise AssertionError("serialize() does not re-parse to the same PSBT")
    _check_roles(psbt, encoded)


def _check_roles(psbt: Psbt, encoded: bytes) -> None:
    with contextlib.suppress(PsbtError):
        if combine([psbt, psbt]).serialize() != encoded:
            raise AssertionError("combining a PSBT with itself changed it")
    with contextlib.suppress(PsbtError):
        extract(psbt)
    with contextlib.suppress(PsbtError):
        result = finalize(psbt)
        Psbt.parse(result.psbt.serialize())
        if result.complete:
            extract(result.psbt)
    try:
        signed, added = sign_psbt(psbt, SECRETS)
    except PsbtError:
        return
    before = sum(len(inp.partial_sigs) for inp in psbt.inputs)
    if sum(len(inp.partial_sigs) for inp in signed.inputs) != before + added:
        raise AssertionError("the signer miscounted the signatures it added")
    _check_new_signatures(psbt, signed)


def _check_new_signatures(before: Psbt, after: Psbt) -> None:
    cache = SighashCache(after.unsigned_tx)
    for index, (old, new) in enumerate(zip(before.inputs, after.inputs, strict=True)):
        for pubkey in new.partial_sigs.keys() - old.partial_sigs.keys():
            sig = new.partial_sigs[pubkey]
            if not ecdsa.verify(pubkey, sig[:-1], spend_info(after, index).digest(cache, sig[-1])):
                raise AssertionError(f"input {index}: the signer added a bad signature")


# -- structure-aware mutation (plain Python, kept out of the coverage map) ------------------


def _read_compact(data: bytes, pos: int) -> tuple[int, int]:
    first = data[pos]
    width = {0xFD: 2, 0xFE: 4, 0xFF: 8}.get(first, 0)
    if pos + 1 + width > len(data):
        raise ValueError("truncated")
    value = int.from_bytes(data[pos + 1 : pos + 1 + width], "little") if width else first
    return value, pos + 1 + width


def _compact(n: int) -> bytes:
    if n < 0xFD:
        return bytes([n])
    return b"\xfd" + n.to_bytes(2, "little") if n <= 0xFFFF else b"\xfe" + n.to_bytes(4, "little")


def split_records(data: bytes) -> list[list[list[bytes]]] | None:
    """[map][record] = [key, value], or None when ``data`` is not map-shaped."""
    if not data.startswith(MAGIC):
        return None
    maps: list[list[list[bytes]]] = [[]]
    pos = len(MAGIC)
    try:
        while pos < len(data):
            size, pos = _read_compact(data, pos)
            if size == 0:
                maps.append([])
                continue
            key, pos = data[pos : pos + size], pos + size
            size, pos = _read_compact(data, pos)
            maps[-1].append([key, data[pos : pos + size]])
            pos += size
    except (ValueError, IndexError):
        return None
    return maps[:-1] if not maps[-1] else None


def join_records(maps: list[list[list[bytes]]]) -> bytes:
    return MAGIC + b"".join(
        b"".join(_compact(len(part)) + part for record in records for part in record) + b"\x00"
        for records in maps
    )


def mutate(data: bytes, max_size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    maps = split_records(data)
    records = [(m, r) for m, rs in enumerate(maps or []) for r in range(len(rs))]
    if not records or rng.random() < 0.5:
        return atheris.Mutate(data, max_size)
    assert maps is not None
    m, r = rng.choice(records)
    action = rng.randrange(8)
    if action == 0:
        del maps[m][r]
    elif action == 1:
        maps[rng.randrange(len(maps))].append(list(maps[m][r]))
    elif action == 2:
        maps[rng.randrange(len(maps))].append(maps[m].pop(r))
    else:
        part = 0 if action == 3 else 1
        old = maps[m][r][part]
        maps[m][r][part] = atheris.Mutate(old, len(old) + 16) if old else bytes([rng.randrange(32)])
    return join_records(maps)[:max_size]


# -- seeds -----------------------------------------------------------------------------------


def _built_seeds() -> list[bytes]:
    witness_script = multisig_script(2, PUBKEYS[1:4])
    funding = Transaction(
        2,
        [TxIn(OutPoint(b"\x11" * 32, 3))],
        [TxOut(50_000, p2wpkh_script(PUBKEYS[0])), TxOut(80_000, p2wsh_script(witness_script))],
        0,
    )
    spend = Transaction(
        2,
        [TxIn(OutPoint(funding.txid, 0)), TxIn(OutPoint(funding.txid, 1))],
        [TxOut(120_000, p2wpkh_script(PUBKEYS[3]))],
        0,
    )
    psbt = Psbt.from_unsigned_tx(spend)
    origin = KeyOrigin(b"\xc0\x1d\x57\xa7", [0x80000030, 0]).to_psbt_bytes()
    psbt.inputs[0].set(0x00, funding.serialize())
    psbt.inputs[0].set(0x03, (1).to_bytes(4, "little"))
    psbt.inputs[0].set(0x06, origin, keydata=PUBKEYS[0])
    psbt.inputs[1].set(0x01, funding.outputs[1].serialize())
    psbt.inputs[1].set(0x05, witness_script)
    psbt.outputs[0].set(0x02, origin, keydata=PUBKEYS[3])
    signed, _ = sign_psbt(psbt, SECRETS[:3])
    return [
        psbt.serialize(),
        sign_psbt(psbt, SECRETS[:2])[0].serialize(),
        signed.serialize(),
        finalize(signed).psbt.serialize(),
    ]


def _vector_seeds() -> list[bytes]:
    seeds = []
    for name in ("bip174", "bip370", "bip371", "bip373"):
        path = VECTORS / "psbt" / f"{name}_vectors.json"
        if path.is_file():
            seeds += [bytes.fromhex(v["hex"]) for v in json.loads(path.read_text())["valid"]]
    core = VECTORS / "psbt" / "bitcoin_core_rpc_psbt.json"
    if core.is_file():
        seeds += [base64.b64decode(text) for text in json.loads(core.read_text())["valid"]]
    return seeds


def _prepare_argv(argv: list[str]) -> list[str]:
    """Add a seeded corpus directory and a token dictionary unless the caller gave them."""
    argv = list(argv)
    work = Path(tempfile.mkdtemp(prefix="fuzz_psbt_"))
    if not any(not arg.startswith("-") for arg in argv[1:]):
        corpus = work / "corpus"
        corpus.mkdir()
        for seed in _built_seeds() + _vector_seeds():
            (corpus / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
        argv.append(str(corpus))
        print(f"fuzz_psbt: seed corpus in {corpus}", file=sys.stderr)
    if not any(arg.startswith("-dict=") for arg in argv):
        lines = ['"' + "".join(f"\\x{b:02x}" for b in token) + '"' for token in TOKENS]
        (work / "psbt.dict").write_text("\n".join(lines) + "\n")
        argv.append(f"-dict={work / 'psbt.dict'}")
    return argv


def main() -> None:
    atheris.Setup(_prepare_argv(sys.argv), test_one_input, custom_mutator=mutate)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
