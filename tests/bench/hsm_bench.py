"""Benchmark: HSM signatures per second through Keystore.sign_digest versus raw python-pkcs11,
and the two key models side by side (issue 17).

The keystore adds a length check, a state check, the module lock, a cached key handle and
low-S DER encoding on top of one ``C_Sign``; its budget is at most 15% over raw
``priv.sign(digest, mechanism=Mechanism.ECDSA)`` on the same token and key. The key-model
table signs 10 / 100 / 1,000 inputs with an hsm-key (one ``C_Sign`` each) and with a
bip32-seed key's children (the seed read out once per login, then a BIP-32 derivation and
a libsecp256k1 signature each), with the fitted exponent. Runs on a throwaway SoftHSM2
token in a temporary state directory. Prints figures only; nothing here asserts on time.

    python tests/bench/hsm_bench.py [--signatures 2000] [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pkcs11 import Mechanism

from appliance import softhsm
from appliance.hsm import Hsm
from appliance.journal_store import journal_append_rate
from appliance.keystore import BackupModel, Keystore
from appliance.recorder import Recorder
from shared.bitcoin.address import Network
from shared.bitcoin.bip32 import ExtendedKey
from tests.bench.growth import fitted_exponent

TARGET_OVERHEAD = 15.0
LABEL = "bench-key"
BLOCK = 100


def elapsed(fn: Callable[[bytes], object], digests: Sequence[bytes]) -> float:
    """Seconds for one pass of ``fn`` over ``digests``."""
    start = time.perf_counter()
    for digest in digests:
        fn(digest)
    return time.perf_counter() - start


def paired_rates(
    first: Callable[[bytes], object], second: Callable[[bytes], object], digests: Sequence[bytes]
) -> tuple[float, float]:
    """Both paths over the same digests in alternating blocks, so load changes hit both."""
    spent = [0.0, 0.0]
    for at in range(0, len(digests), BLOCK):
        block = digests[at : at + BLOCK]
        spent[0] += elapsed(first, block)
        spent[1] += elapsed(second, block)
    return len(digests) / spent[0], len(digests) / spent[1]


def signing_section(keystore: Keystore, signatures: int, runs: int) -> None:
    """Keystore.sign_digest vs raw python-pkcs11 on the same key, median of ``runs``."""
    digests = [os.urandom(32) for _ in range(signatures)]
    with keystore.hsm.lock:
        private = keystore.private_key_object(LABEL)

    def raw(digest: bytes) -> bytes:
        return private.sign(digest, mechanism=Mechanism.ECDSA)

    def wrapped(digest: bytes) -> bytes:
        return keystore.sign_digest(LABEL, digest)

    paired_rates(raw, wrapped, digests[:BLOCK])  # warm up both paths
    raw_rates, keystore_rates = [], []
    for _ in range(runs):
        raw_rate, keystore_rate = paired_rates(raw, wrapped, digests)
        raw_rates.append(raw_rate)
        keystore_rates.append(keystore_rate)
    raw_median = statistics.median(raw_rates)
    keystore_median = statistics.median(keystore_rates)
    overhead = (raw_median / keystore_median - 1.0) * 100.0
    per_call_us = (1.0 / keystore_median - 1.0 / raw_median) * 1e6
    verdict = "OK" if overhead <= TARGET_OVERHEAD else "OVER BUDGET"
    print(f"HSM signing (SoftHSM2, secp256k1, CKM_ECDSA), {signatures} signatures x {runs} runs")
    print(f"  raw python-pkcs11      {raw_median:8.0f} sig/s (median)")
    print(f"  Keystore.sign_digest   {keystore_median:8.0f} sig/s (median, low-S DER)")
    budget = f"budget {TARGET_OVERHEAD:.0f} %: {verdict}"
    print(f"  overhead               {overhead:7.1f} %  ({budget})")
    print(f"  keystore cost per call {per_call_us:7.1f} us")


def journal_section(keystore: Keystore, state: Path, records: int) -> None:
    """Journal appends/s: the bare store (frame + fsync), and whole signed records (chain,
    audit-key signature in the HSM, signature check, frame, fsync) through the Recorder."""
    bare = journal_append_rate(state / "bare.log", records)
    keystore.create_audit_key()
    recorder = Recorder.open(
        state / "journal.log", state / "checkpoint.cbor", keystore, "bench-appliance", None
    )
    start = time.perf_counter()
    for i in range(records):
        recorder.record("intent", details={"ceremony": "bench", "n": i})
    signed = records / (time.perf_counter() - start)
    recorder.store.close()
    print(f"Journal appends with fsync, {records} records")
    print(f"  bare store (512 B frames)     {bare:8.0f} appends/s")
    print(f"  signed records (Recorder)     {signed:8.0f} appends/s")


def key_model_section(keystore: Keystore, pin: str, sizes: Sequence[int] = (10, 100, 1000)) -> None:
    """Signing n inputs after a fresh login: hsm-key versus bip32-seed children."""
    info = keystore.generate_seed("bench-seed", os.urandom(16), Network.REGTEST)
    account = ExtendedKey.parse(info.xpub)
    print("Signing n inputs after a fresh unlock, median of 3 (ms)")
    print(f"  {'inputs':>7s} {'hsm-key':>10s} {'bip32 child':>12s} {'ratio':>6s}")
    rows = []
    for n in sizes:
        children = [(account.derive_path([0, i]).public_key, (0, i)) for i in range(n)]
        digests = [os.urandom(32) for _ in range(n)]
        single, seeded = [], []
        for _ in range(3):
            keystore.lock()
            keystore.unlock(pin)
            start = time.perf_counter()
            for digest in digests:
                keystore.sign_digest(LABEL, digest)
            single.append(time.perf_counter() - start)
            keystore.lock()
            keystore.unlock(pin)
            start = time.perf_counter()
            for digest, (child, path) in zip(digests, children, strict=True):
                keystore.sign_digest("bench-seed", digest, path, Network.REGTEST, child)
            seeded.append(time.perf_counter() - start)
        a, b = statistics.median(single) * 1e3, statistics.median(seeded) * 1e3
        rows.append((n, a, b))
        print(f"  {n:7d} {a:10.1f} {b:12.1f} {b / a:6.2f}")
    print(
        f"  exponent: hsm-key {fitted_exponent([(n, a) for n, a, _ in rows]):.2f}, "
        f"bip32 child {fitted_exponent([(n, b) for n, _, b in rows]):.2f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signatures", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--records", type=int, default=500)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="coldstation-bench-") as state:
        softhsm.configure(Path(state))  # before Hsm(): SoftHSM2 reads it on C_Initialize
        label, pin = f"bench-{secrets.token_hex(4)}", secrets.token_hex(8)
        hsm = Hsm()
        hsm.rescan()
        hsm.init_token(label, secrets.token_hex(8), pin)
        hsm.rescan()
        keystore = Keystore(hsm, label)
        keystore.unlock(pin)
        keystore.generate_key(LABEL, BackupModel.NON_EXTRACTABLE)

        # --- section: signatures/s ---------------------------------------------------------
        signing_section(keystore, args.signatures, args.runs)

        # --- section: journal appends/s ----------------------------------------------------
        journal_section(keystore, Path(state), args.records)

        # --- section: key models -----------------------------------------------------------
        key_model_section(keystore, pin)

        hsm.logout_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
