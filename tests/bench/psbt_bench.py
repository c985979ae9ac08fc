"""Benchmark: a 1,000-input batch PSBT through parse + serialize, and BIP-143 sighash growth.

Coldstation's largest batches are about 1,000 inputs and 1,000 outputs, and the appliance
decodes, validates and re-encodes every PSBT it is shown, so that round trip has a budget
(0.3 s). Signing cost must grow linearly with the input count: BIP-143 computes its three
shared hashes once per transaction, where the legacy algorithm re-hashes the whole
transaction for every input. Prints figures only; nothing here asserts on time.

    python tests/bench/psbt_bench.py
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable

from coincurve import PrivateKey

from shared.bitcoin.bip32 import KeyOrigin
from shared.bitcoin.encoding import sha256
from shared.bitcoin.script import multisig_script, p2wpkh_script, p2wsh_script
from shared.bitcoin.sighash import SIGHASH_ALL, SighashCache, p2wpkh_script_code
from shared.bitcoin.tx import SEQUENCE_RBF, OutPoint, Transaction, TxIn, TxOut
from shared.psbt import Psbt

N_INPUTS = N_OUTPUTS = 1_000
TARGET_SECONDS = 0.3
FINGERPRINT = bytes.fromhex("c01d57a7")
HARDENED = 0x80000000
ACCOUNT = [48 | HARDENED, 0 | HARDENED, 0 | HARDENED, 2 | HARDENED]


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


def build_batch() -> Psbt:
    """1,000 P2WSH 2-of-3 inputs (full UTXO data, three derivations) to 1,000 P2WPKH outputs."""
    funded = []
    for i in range(N_INPUTS):
        keys = sorted(pubkey(f"cosigner {c} input {i}") for c in range(3))
        script = multisig_script(2, keys)
        prev, vout = previous_tx(i, p2wsh_script(script), 100_000 + i)
        funded.append((prev, vout, script, keys))
    tx = Transaction(
        2,
        [TxIn(OutPoint(prev.txid, vout), b"", SEQUENCE_RBF) for prev, vout, _, _ in funded],
        [TxOut(90_000 + o, p2wpkh_script(pubkey(f"payee {o}"))) for o in range(N_OUTPUTS)],
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


def median_seconds(action: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        gc.collect()  # start each run from the same heap state
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_round_trip(runs: int = 7) -> None:
    start = time.perf_counter()
    raw = build_batch().serialize()
    built = time.perf_counter() - start
    if Psbt.parse(raw).serialize() != raw:
        raise SystemExit("round trip changed the PSBT")
    parsed = Psbt.parse(raw)
    parse = median_seconds(lambda: Psbt.parse(raw), runs)
    serialize = median_seconds(parsed.serialize, runs)
    total = median_seconds(lambda: Psbt.parse(raw).serialize(), runs)
    verdict = "OK" if total < TARGET_SECONDS else "OVER"
    print(f"PSBT v0, {N_INPUTS} P2WSH 2-of-3 inputs (non-witness + witness UTXO, witnessScript, "
          f"3 derivations), {N_OUTPUTS} P2WPKH outputs")  # fmt: skip
    print(f"  size:                {len(raw):,} bytes")
    print(f"  build (not timed below, set() validates each record): {built:.2f} s")
    print(f"  parse:               {parse:.3f} s (median of {runs})")
    print(f"  serialize:           {serialize:.3f} s (median of {runs})")
    print(f"  parse + serialize:   {total:.3f} s (median of {runs})  "
          f"target < {TARGET_SECONDS:.1f} s  {verdict}")  # fmt: skip


def sighash_tx(n_inputs: int) -> Transaction:
    inputs = [TxIn(OutPoint(sha256(b"prev %d" % i), i % 3), b"", SEQUENCE_RBF)
              for i in range(n_inputs)]  # fmt: skip
    outputs = [TxOut(50_000, p2wpkh_script(pubkey("payee"))),
               TxOut(10_000, p2wpkh_script(pubkey("change")))]  # fmt: skip
    return Transaction(2, inputs, outputs, 0)


def sighash_all_inputs(tx: Transaction, script_code: bytes) -> None:
    cache = SighashCache(tx)  # fresh: the shared BIP-143 hashes are part of the cost
    for index in range(len(tx.inputs)):
        cache.segwit_v0(index, script_code, 100_000, SIGHASH_ALL)


def bench_sighash(sizes: tuple[int, ...] = (100, 500, 1000), runs: int = 25) -> None:
    script_code = p2wpkh_script_code(bytes(20))
    print("BIP-143 sighash of every input, SighashCache.segwit_v0, fresh cache per run "
          f"(median of {runs}, 2 outputs)")  # fmt: skip
    seconds = {}
    for n in sizes:
        tx = sighash_tx(n)
        seconds[n] = median_seconds(lambda tx=tx: sighash_all_inputs(tx, script_code), runs)
        print(f"  {n:5d} inputs: {seconds[n] * 1e3:8.2f} ms total, "
              f"{seconds[n] / n * 1e6:6.2f} us per input")  # fmt: skip
    ratio = seconds[sizes[-1]] / seconds[sizes[0]]
    growth = sizes[-1] // sizes[0]
    print(
        f"  time({sizes[-1]})/time({sizes[0]}) = {ratio:.1f}x "
        f"(linear ~{growth}x; quadratic would be ~{growth**2}x)"
    )


def main() -> None:
    bench_round_trip()
    print()
    bench_sighash()


if __name__ == "__main__":
    main()
