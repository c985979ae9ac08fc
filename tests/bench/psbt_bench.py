"""Benchmark: PSBT parse + serialize against other Python stacks, and growth in inputs.

Coldstation's largest batches are about 1,000 inputs and 1,000 outputs, and the appliance
decodes, validates and re-encodes every PSBT it is shown, so that round trip has a budget
(0.3 s). Three parts, all printing figures only (nothing here asserts on time):

1. Coldstation alone, 1,000 P2WSH 2-of-3 inputs to 1,000 outputs: parse, serialize, both.
2. The same PSBT bytes (100 in / 100 out and 1,000 in / 1,000 out) through Coldstation,
   embit, bdkpython (BDK, Rust, through its Python bindings) and python-bitcointx, in
   interleaved runs: every library parses the bytes into its own objects, validating them,
   then writes them back (each round trip must give the same bytes, else it is not timed).
   BDK's Python API takes and returns base64 only, so its row includes one base64 decode
   and one encode (about 1% of its time). python-bitcointx loads the system libsecp256k1,
   or else the one coincurve ships (the library the station uses); its parser runs a
   sanity check that computes every input's sighash without a cache, which is quadratic,
   so each library gets a CPU budget per size (``--budget``) and one slower than that is
   timed on fewer runs (at 1,000 / 1,000 python-bitcointx gets one). Then what each one
   refuses, on three malformed variants of the small PSBT: parsing is not the same work
   if one parser checks less.
3. Growth at 10x and 100x, with the fitted exponent (least-squares slope of log CPU time
   on log size; 1.0 is linear): the station's review (``shared.review.review``, requests
   from :mod:`tests.bench.review_bench`) and the BIP-143 digest of every input. BIP-143
   computes its three shared hashes once per transaction, where the legacy algorithm
   re-hashes the whole transaction for every input.

The machine may be shared: CPU time (``time.process_time``) is the figure to read, wall
time is shown beside it; both are medians.

    python -m tests.bench.psbt_bench [--runs-small 31] [--runs-large 7] [--runs-growth 5]
                                     [--budget 10]

The peers are the ``bench`` extra: ``pip install -e '.[bench]'`` (``make bench`` does it).
"""

from __future__ import annotations

import argparse
import base64
import ctypes.util
import gc
import importlib.metadata
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from coincurve import PrivateKey

from shared.bitcoin.bip32 import KeyOrigin
from shared.bitcoin.encoding import sha256, with_length
from shared.bitcoin.script import multisig_script, p2wpkh_script, p2wsh_script
from shared.bitcoin.sighash import SIGHASH_ALL, SighashCache, p2wpkh_script_code
from shared.bitcoin.tx import SEQUENCE_RBF, OutPoint, Transaction, TxIn, TxOut
from shared.psbt import Psbt
from shared.psbt.fields import _parsed_transaction
from shared.psbt.model import MAGIC
from tests.bench.growth import fitted_exponent

N_INPUTS = N_OUTPUTS = 1_000
TARGET_SECONDS = 0.3
FINGERPRINT = bytes.fromhex("c01d57a7")
HARDENED = 0x80000000
ACCOUNT = [48 | HARDENED, 0 | HARDENED, 0 | HARDENED, 2 | HARDENED]
PEER_SIZES = (100, 1_000)  # n inputs and n outputs


def pubkey(label: str) -> bytes:
    return PrivateKey(sha256(label.encode())).public_key.format(compressed=True)


def origin(*tail: int) -> bytes:
    return KeyOrigin(FINGERPRINT, [*ACCOUNT, *tail]).to_psbt_bytes()


def previous_tx(index: int, script_pubkey: bytes, amount: int) -> tuple[Transaction, int]:
    """A small funding transaction paying ``script_pubkey`` at vout ``index % 2``."""
    vout = index % 2
    other = TxOut(12_345, p2wpkh_script(pubkey(f"other {index}")))
    ours = TxOut(amount, script_pubkey)
    outputs = [ours, other] if vout == 0 else [other, ours]
    funding_in = TxIn(OutPoint(sha256(f"coin {index}".encode()), 0), b"", SEQUENCE_RBF)
    return Transaction(2, [funding_in], outputs, 0), vout


def build_batch(n_inputs: int | None = None, n_outputs: int | None = None) -> Psbt:
    """``n_inputs`` P2WSH 2-of-3 inputs (full UTXO data, three derivations) to ``n_outputs``
    P2WPKH outputs, every fourth with its derivation (defaults: N_INPUTS, N_OUTPUTS)."""
    n_inputs = N_INPUTS if n_inputs is None else n_inputs
    n_outputs = N_OUTPUTS if n_outputs is None else n_outputs
    funded = []
    for i in range(n_inputs):
        keys = sorted(pubkey(f"cosigner {c} input {i}") for c in range(3))
        script = multisig_script(2, keys)
        prev, vout = previous_tx(i, p2wsh_script(script), 100_000 + i)
        funded.append((prev, vout, script, keys))
    tx = Transaction(
        2,
        [TxIn(OutPoint(prev.txid, vout), b"", SEQUENCE_RBF) for prev, vout, _, _ in funded],
        [TxOut(90_000 + o, p2wpkh_script(pubkey(f"payee {o}"))) for o in range(n_outputs)],
        0,
    )
    psbt = Psbt.from_unsigned_tx(tx)
    for inp, (prev, vout, script, keys) in zip(psbt.inputs, funded, strict=True):
        inp.set(0x00, prev.serialize())
        inp.set(0x01, prev.outputs[vout].serialize())
        inp.set(0x05, script)
        for c, key in enumerate(keys):
            inp.set(0x06, origin(0, c), keydata=key)
    for o, out in enumerate(psbt.outputs):
        if o % 4 == 0:  # change outputs carry their derivation
            out.set(0x02, origin(1, o), keydata=pubkey(f"payee {o}"))
    return psbt


def timed(action: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds of one call, from a collected heap."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def median_seconds(action: Callable[[], object], runs: int) -> float:
    return statistics.median(timed(action)[0] for _ in range(runs))


# -- 1. Coldstation alone -------------------------------------------------------------------


def bench_round_trip(runs: int = 7) -> None:
    start = time.perf_counter()
    raw = build_batch().serialize()
    built = time.perf_counter() - start
    if Psbt.parse(raw).serialize() != raw:
        raise SystemExit("round trip changed the PSBT")
    parsed = Psbt.parse(raw)
    parse = median_seconds(lambda: (_parsed_transaction.cache_clear(), Psbt.parse(raw)), runs)
    serialize = median_seconds(parsed.serialize, runs)
    total = median_seconds(lambda: _coldstation(raw), runs)
    verdict = "OK" if total < TARGET_SECONDS else "OVER"
    print(
        f"PSBT v0, {N_INPUTS} P2WSH 2-of-3 inputs (non-witness + witness UTXO, witnessScript, "
        f"3 derivations), {N_OUTPUTS} P2WPKH outputs"
    )
    print(f"  size:                {len(raw):,} bytes")
    print(f"  build (not timed below, set() validates each record): {built:.2f} s")
    print(f"  parse:               {parse:.3f} s (median of {runs})")
    print(f"  serialize:           {serialize:.3f} s (median of {runs})")
    print(
        f"  parse + serialize:   {total:.3f} s (median of {runs})  "
        f"target < {TARGET_SECONDS:.1f} s  {verdict}"
    )


# -- 2. side by side ------------------------------------------------------------------------


@dataclass
class Peer:
    """One PSBT library: its name, version and a bytes -> bytes round trip (or why not)."""

    name: str
    version: str
    round_trip: Callable[[bytes], bytes] | None
    note: str = ""


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _coldstation(raw: bytes) -> bytes:
    # each round parses afresh, as the peers do: the parser keeps recent previous
    # transactions (a batch's inputs often share one), which a rerun of the same bytes
    # would otherwise find there
    _parsed_transaction.cache_clear()
    return Psbt.parse(raw).serialize()


def load_peers() -> list[Peer]:
    """Coldstation and whichever peers are installed (the ``bench`` extra)."""
    peers = [Peer("Coldstation", _version("coldstation"), _coldstation)]
    missing = "not installed (pip install -e '.[bench]')"
    try:
        from embit import psbt as embit_psbt

        def embit_round_trip(raw: bytes) -> bytes:
            return embit_psbt.PSBT.parse(raw).serialize()

        peers.append(Peer("embit", _version("embit"), embit_round_trip))
    except ImportError:
        peers.append(Peer("embit", "-", None, missing))
    try:
        import bdkpython

        def bdk_round_trip(raw: bytes) -> bytes:
            text = bdkpython.Psbt(base64.b64encode(raw).decode()).serialize()
            return base64.b64decode(text)

        peers.append(
            Peer(
                "bdkpython (BDK)",
                _version("bdkpython"),
                bdk_round_trip,
                "base64 in and out (its only API)",
            )
        )
    except ImportError:
        peers.append(Peer("bdkpython (BDK)", "-", None, missing))
    try:
        import bitcointx

        note = "system libsecp256k1"
        if ctypes.util.find_library("secp256k1") is None:
            import coincurve._libsecp256k1 as bundled

            bitcointx.set_custom_secp256k1_path(bundled.__file__)
            note = "coincurve's libsecp256k1"
        from bitcointx.core.psbt import PartiallySignedTransaction

        def bitcointx_round_trip(raw: bytes) -> bytes:
            return PartiallySignedTransaction.deserialize(raw).serialize()

        peers.append(
            Peer("python-bitcointx", _version("python-bitcointx"), bitcointx_round_trip, note)
        )
    except ImportError as exc:
        peers.append(
            Peer("python-bitcointx", _version("python-bitcointx"), None, f"cannot load: {exc}")
        )
    return peers


def _check(peer: Peer, raw: bytes) -> tuple[str | None, tuple[float, float]]:
    """(why ``peer`` cannot be timed on ``raw``, else None; the (wall, CPU) of this first
    round trip, kept as the only sample of a peer too slow for its time budget)."""
    if peer.round_trip is None:
        return peer.note, (0.0, 0.0)
    trip = peer.round_trip
    out: list[bytes] = []
    try:
        first = timed(lambda: out.append(trip(raw)))
    except Exception as exc:  # a peer's own exception types: report, do not stop
        return f"cannot parse: {type(exc).__name__}: {str(exc)[:60]}", (0.0, 0.0)
    if out[0] != raw:
        return f"round trip gives other bytes ({len(out[0]):,} vs {len(raw):,})", first
    return None, first


def bench_peers(runs_small: int, runs_large: int, budget: float) -> None:
    peers = load_peers()
    raws = {n: build_batch(n, n).serialize() for n in PEER_SIZES}
    runs = {PEER_SIZES[0]: runs_small, PEER_SIZES[1]: runs_large}
    checked = {(p.name, n): _check(p, raws[n]) for p in peers for n in PEER_SIZES}
    problems = {key: problem for key, (problem, _) in checked.items()}
    samples: dict[tuple[str, int], list[tuple[float, float]]] = {
        (p.name, n): [] for p in peers for n in PEER_SIZES
    }
    # a peer whose first round trip already ate the budget keeps that one as its sample
    spent = {key: first[1] for key, (_, first) in checked.items()}
    for key, (problem, first) in checked.items():
        if problem is None and first[1] > budget:
            samples[key].append(first)
    for run in range(max(runs.values())):
        for n in PEER_SIZES:
            if run >= runs[n]:
                continue
            order = peers[run % len(peers) :] + peers[: run % len(peers)]  # rotate who goes first
            for peer in order:
                key = (peer.name, n)
                if problems[key] is None and peer.round_trip is not None and spent[key] <= budget:
                    trip, raw = peer.round_trip, raws[n]
                    samples[key].append(timed(lambda trip=trip, raw=raw: trip(raw)))
                    spent[key] += samples[key][-1][1]
    print(
        "PSBT parse + serialize, the same bytes through each library (P2WSH 2-of-3 inputs "
        "with full previous transaction, witness UTXO, witnessScript and 3 derivations; "
        "P2WPKH outputs, every 4th with a derivation)"
    )
    print(
        "  median ms, interleaved runs ("
        + ", ".join(
            f"{n:,} in / {n:,} out: {len(raws[n]) / 1e3:,.0f} kB, {runs[n]} runs"
            for n in PEER_SIZES
        )
        + "); ratio = CPU time / Coldstation's CPU time"
    )
    head = "".join(
        f"{f'{n:,} / {n:,}:':>16}{'CPU':>10}{'wall':>10}{'ratio':>9}" for n in PEER_SIZES
    )
    print(f"  {'library':<18}{'version':>9}{head}")
    base = {
        n: statistics.median(c for _, c in samples[("Coldstation", n)])
        for n in PEER_SIZES
        if samples[("Coldstation", n)]
    }
    for peer in peers:
        cells, notes = "", [peer.note] if peer.note and peer.round_trip else []
        for n in PEER_SIZES:
            got = samples[(peer.name, n)]
            if not got:
                cells += f"{'-':>43}"
                notes.append(f"{n:,}/{n:,}: {problems[(peer.name, n)]}")
                continue
            cpu = statistics.median(c for _, c in got)
            wall = statistics.median(w for w, _ in got)
            if len(got) < runs[n]:
                notes.append(f"{n:,}/{n:,}: {len(got)} run(s), over the {budget:.0f} s budget")
            ratio = f"{cpu / base[n]:.2f}x" if n in base else "-"
            cells += f"{'':>16}{cpu * 1e3:>10.1f}{wall * 1e3:>10.1f}{ratio:>9}"
        print(
            f"  {peer.name:<18}{peer.version:>9}{cells}"
            + (f"  ({'; '.join(notes)})" if notes else "")
        )
    strictness(peers)


def _join(maps: list[list[tuple[bytes, bytes]]]) -> bytes:
    """PSBT bytes from raw records, unchecked (to build malformed variants)."""
    body = b"".join(
        b"".join(with_length(k) + with_length(v) for k, v in records) + b"\x00" for records in maps
    )
    return MAGIC + body


def malformed_variants() -> dict[str, bytes]:
    """Three ways a PSBT can be wrong that a parser may or may not notice."""
    psbt = build_batch(2, 2)
    base = [list(m.raw_records().items()) for m in (psbt.globals, *psbt.inputs, *psbt.outputs)]

    def variant(change: Callable[[list[tuple[bytes, bytes]]], None]) -> bytes:
        maps = [list(records) for records in base]
        change(maps[1])  # input 0
        return _join(maps)

    def off_curve(records: list[tuple[bytes, bytes]]) -> None:
        j = next(j for j, (k, _) in enumerate(records) if k[0] == 0x06)
        records[j] = (b"\x06\x02" + bytes(31) + b"\x05", records[j][1])  # x = 5: no point

    def wrong_prev_tx(records: list[tuple[bytes, bytes]]) -> None:
        j = next(j for j, (k, _) in enumerate(records) if k == b"\x00")
        value = bytearray(records[j][1])
        value[-5] ^= 1  # an output script byte: another transaction, another txid
        records[j] = (b"\x00", bytes(value))

    def loose_der(records: list[tuple[bytes, bytes]]) -> None:
        key = next(k for k, _ in records if k[0] == 0x06)
        padded = b"\x30\x07\x02\x01\x01\x02\x02\x00\x01\x01"  # S with a needless 0x00, ALL
        records.append((b"\x02" + key[1:], padded))

    return {
        "derivation key not on the curve": variant(off_curve),
        "full previous tx is another tx (txid)": variant(wrong_prev_tx),
        "partial signature not strict DER": variant(loose_der),
    }


def strictness(peers: list[Peer]) -> None:
    print("  what each refuses (parse + serialize of a 2-in/2-out PSBT with one defect):")
    for name, raw in malformed_variants().items():
        verdicts = []
        for peer in peers:
            if peer.round_trip is None:
                continue
            try:
                peer.round_trip(raw)
                verdicts.append(f"{peer.name} accepts")
            except Exception:  # any refusal counts
                verdicts.append(f"{peer.name} refuses")
        print(f"    {name:<40}" + ", ".join(verdicts))


# -- 3. growth ------------------------------------------------------------------------------


def sighash_tx(n_inputs: int) -> Transaction:
    inputs = [
        TxIn(OutPoint(sha256(b"prev %d" % i), i % 3), b"", SEQUENCE_RBF) for i in range(n_inputs)
    ]
    outputs = [
        TxOut(50_000, p2wpkh_script(pubkey("payee"))),
        TxOut(10_000, p2wpkh_script(pubkey("change"))),
    ]
    return Transaction(2, inputs, outputs, 0)


def sighash_all_inputs(tx: Transaction, script_code: bytes) -> None:
    cache = SighashCache(tx)  # fresh: the shared BIP-143 hashes are part of the cost
    for index in range(len(tx.inputs)):
        cache.segwit_v0(index, script_code, 100_000, SIGHASH_ALL)


def bench_growth(runs: int) -> None:
    """Review and sighash at 1x, 10x and 100x, interleaved; CPU medians and the exponent."""
    from tests.bench.review_bench import build_request, fresh_wallet, review_request

    review_sizes = (14, 145, 1_450)  # 1,450 P2WPKH inputs: about the standard maximum
    sighash_sizes = (100, 1_000, 10_000)
    requests = {n: Psbt.parse(build_request("wpkh", n)) for n in review_sizes}
    for psbt in requests.values():
        if not review_request(psbt).approved_for_signing:
            raise SystemExit("the review bench's request was refused")
    script_code = p2wpkh_script_code(bytes(20))
    txs = {n: sighash_tx(n) for n in sighash_sizes}
    rows: dict[str, dict[int, list[float]]] = {
        "review": {n: [] for n in review_sizes},
        "sighash": {n: [] for n in sighash_sizes},
    }
    for _ in range(runs):
        for n in review_sizes:
            wallet = fresh_wallet()  # fresh (nothing derived yet), built before the clock
            rows["review"][n].append(timed(lambda p=requests[n], w=wallet: review_request(p, w))[1])
        for n in sighash_sizes:
            rows["sighash"][n].append(
                timed(lambda tx=txs[n]: sighash_all_inputs(tx, script_code))[1]
            )
    labels = {
        "review": "shared.review.review, P2WPKH inputs",
        "sighash": "BIP-143 digest of every input",
    }
    print(
        f"Growth in inputs, CPU ms (median of {runs} interleaved runs); k = fitted exponent "
        "over the three sizes, k 10-100 = slope from 10x to 100x (1.0 linear, 2.0 "
        "quadratic). The review's pinned wallet is built fresh before the clock (about "
        "3 ms, the same at every size)"
    )
    print(f"  {'':<38}{'1x':>16}{'10x':>16}{'100x':>16}{'k':>7}{'k 10-100':>10}")
    for name, by_size in rows.items():
        medians = [(n, statistics.median(v)) for n, v in by_size.items()]
        cells = "".join(f"{f'{t * 1e3:.2f} ({n:,})':>16}" for n, t in medians)
        per = medians[-1][1] / medians[-1][0] * 1e6
        print(
            f"  {labels[name]:<38}{cells}{fitted_exponent(medians):>7.2f}"
            f"{fitted_exponent(medians[1:]):>10.2f}   {per:.1f} us/input at 100x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-small", type=int, default=31, help="runs at 100 in / 100 out")
    parser.add_argument("--runs-large", type=int, default=7, help="runs at 1,000 / 1,000")
    parser.add_argument("--runs-growth", type=int, default=5)
    parser.add_argument(
        "--budget",
        type=float,
        default=10.0,
        help="CPU seconds per library and size; slower ones get fewer runs",
    )
    args = parser.parse_args()
    bench_round_trip()
    print()
    bench_peers(args.runs_small, args.runs_large, args.budget)
    print()
    bench_growth(args.runs_growth)


if __name__ == "__main__":
    main()
