"""Benchmark: the station's review and the signing path in ``shared``, by input count.

Requests the way the coordinator builds them (every input with its full previous
transaction, a matching witness UTXO, witness script and derivation hints; request
metadata attached) paying one address-book payee and our change:

* 100, 1,000 and 1,450 P2WPKH inputs of the station's raw-key wallet (1,450 is about
  Bitcoin Core's largest standard transaction, ``MAX_STANDARD_TX_WEIGHT``);
* 950 P2WSH 2-of-3 inputs of the ranged ``sortedmulti`` wallet (the same weight), each
  script re-derived from the cosigner's xpub by the review.

For each: ``Psbt.parse`` of the request; ``shared.review.review`` against a freshly built
``PinnedWallet`` (as every ceremony builds it: nothing derived is cached from a previous
run); the signing preparation (``spend_info`` and the BIP-143 digest of every input to sign,
on a fresh ``SighashCache``: what the appliance computes around each HSM call); adding one
partial signature per input with ``PsbtMap.set`` (signatures made beforehand, so no curve
arithmetic is timed); and serializing the signed PSBT. Sizes run interleaved, CPU time
(``time.process_time``) and wall time are medians; the fitted exponent is the
least-squares slope of log(CPU) on log(inputs) over the P2WPKH sizes (1.0 is linear).
The machine is shared: read the CPU column. Prints figures only; nothing asserts on time.

    python -m tests.bench.review_bench [--runs 5]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from shared.bitcoin import ecdsa
from shared.bitcoin.descriptor import Descriptor
from shared.bitcoin.script import p2wpkh_script
from shared.bitcoin.sighash import SIGHASH_ALL, SighashCache
from shared.bitcoin.tx import SEQUENCE_RBF, OutPoint, Transaction, TxIn, TxOut
from shared.policy import Policy
from shared.psbt import Psbt
from shared.psbt.scripts import spend_info
from shared.request import RequestMetadata, attach_request
from shared.review import OurKey, PinnedWallet, Review, inputs_to_sign, review
from tests.adversarial.psbts import (
    NOW,
    OUR_SECRETS,
    OUR_WPKH,
    OUR_WSH,
    PAYEE_EXCHANGE,
    WPKH_DESCRIPTOR,
    WPKH_LABEL,
    WSH_DESCRIPTOR,
    WSH_LABEL,
    make_policy,
    pubkey,
    secret,
)
from tests.bench.growth import fitted_exponent

COIN = 1_000_000
#: (wallet kind, inputs): the rows of the table; the P2WPKH ones give the exponent.
SHAPES = (("wpkh", 100), ("wpkh", 1_000), ("wpkh", 1_450), ("wsh", 950))
#: Limits far above these requests: the policy approves, so the review does all its work.
POLICY: Policy = make_policy(per_tx_limit=10**15, per_day_limit=10**15, max_fee=10**12)


def fresh_wallet() -> PinnedWallet:
    """Both pinned descriptors, parsed again, with the station's keys: no derivation cached."""
    descriptors = tuple(
        Descriptor.parse(str(d), require_checksum=False) for d in (WPKH_DESCRIPTOR, WSH_DESCRIPTOR)
    )
    keys = (OurKey(pubkey(OUR_WPKH), WPKH_LABEL), OurKey(pubkey(OUR_WSH), WSH_LABEL))
    return PinnedWallet(descriptors, keys)


def build_request(kind: str, n_inputs: int) -> bytes:
    """A signing request spending ``n_inputs`` coins of the ``kind`` wallet, serialized.

    Each coin comes from its own funding transaction (one input, our output and another),
    so every input carries a full previous transaction of realistic size.
    """
    descriptor = WPKH_DESCRIPTOR if kind == "wpkh" else WSH_DESCRIPTOR
    funded = []
    for i in range(n_inputs):
        derived = descriptor.derive(i)
        ours = TxOut(COIN, derived.script_pubkey)
        other = TxOut(55_555, p2wpkh_script(pubkey(f"someone else {i % 7}")))
        vout = i % 2
        funding = Transaction(
            2,
            [TxIn(OutPoint(secret(f"coin {i}"), 0), b"", SEQUENCE_RBF)],
            [ours, other] if vout == 0 else [other, ours],
            0,
        )
        funded.append((funding, vout, derived))
    change = descriptor.derive(0, change=kind == "wsh")
    total = COIN * n_inputs
    fee = n_inputs * (300 if kind == "wsh" else 150)  # about 2-3 sat/vB
    spend = Transaction(
        2,
        [TxIn(OutPoint(f.txid, vout), b"", SEQUENCE_RBF) for f, vout, _ in funded],
        [TxOut(total // 2, PAYEE_EXCHANGE), TxOut(total - total // 2 - fee, change.script_pubkey)],
        0,
    )
    psbt = Psbt.from_unsigned_tx(spend)
    for inp, (funding, vout, derived) in zip(psbt.inputs, funded, strict=True):
        inp.set(0x00, funding.serialize())
        inp.set(0x01, funding.outputs[vout].serialize())
        if derived.witness_script is not None:
            inp.set(0x05, derived.witness_script)
        for key, origin in derived.keys:
            inp.set(0x06, origin.to_psbt_bytes(), keydata=key)
    out = psbt.outputs[1]
    if change.witness_script is not None:
        out.set(0x01, change.witness_script)
    for key, origin in change.keys:
        out.set(0x02, origin.to_psbt_bytes(), keydata=key)
    meta = RequestMetadata(
        request_id=secret(f"bench {kind} {n_inputs}")[:16],
        batch_id="bench",
        requester="ops",
        created=NOW - 60,
        expiry=NOW + 1800,
        purpose="review bench",
        network="regtest",
        references={0: secret("payee reference")},
    )
    return attach_request(psbt, meta).serialize()


def review_request(psbt: Psbt, wallet: PinnedWallet | None = None) -> Review:
    """The station's review of ``psbt`` with an empty history, on ``wallet`` (by default a
    freshly built one, as every ceremony builds it)."""
    return review(
        psbt,
        wallet or fresh_wallet(),
        POLICY,
        now=NOW,
        seen_request_ids=set(),
        signed_outpoints={},
        spent_today_before=0,
    )


@dataclass
class Prepared:
    """One request and what its timed steps need."""

    kind: str
    inputs: int
    raw: bytes
    to_sign: list[tuple[int, bytes]]  # (input index, our public key)
    signatures: list[bytes]  # DER + sighash byte, one per entry of to_sign


def prepare(kind: str, n_inputs: int) -> Prepared:
    """Build the request, check that the review approves it, and sign it once in software."""
    raw = build_request(kind, n_inputs)
    psbt = Psbt.parse(raw)
    verdict = review_request(psbt)
    if not verdict.approved_for_signing:
        raise SystemExit(f"{kind} x{n_inputs}: the review refused: {verdict.refusals}")
    to_sign = inputs_to_sign(verdict)
    cache = SighashCache(psbt.unsigned_tx)
    signatures = [
        ecdsa.sign(OUR_SECRETS[key], spend_info(psbt, i).digest(cache, SIGHASH_ALL))
        + bytes([SIGHASH_ALL])
        for i, key in to_sign
    ]
    return Prepared(kind, n_inputs, raw, to_sign, signatures)


def sign_prep(psbt: Psbt, to_sign: list[tuple[int, bytes]]) -> list[bytes]:
    """What the appliance computes around each HSM call: how the input is spent, its digest."""
    cache = SighashCache(psbt.unsigned_tx)
    return [spend_info(psbt, i).digest(cache, SIGHASH_ALL) for i, _ in to_sign]


def add_signatures(psbt: Psbt, job: Prepared) -> None:
    for (index, key), sig in zip(job.to_sign, job.signatures, strict=True):
        psbt.inputs[index].set(0x02, sig, keydata=key)


STEPS = ("parse", "review", "sign prep", "add sigs", "serialize")


def time_steps(job: Prepared) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds of each step on one request, run in order on one parsed PSBT."""
    out: dict[str, tuple[float, float]] = {}
    psbt: Psbt | None = None

    def parse() -> None:
        nonlocal psbt
        psbt = Psbt.parse(job.raw)

    steps: dict[str, Callable[[], object]] = {
        "parse": parse,
        "review": lambda: review_request(psbt),  # type: ignore[arg-type]
        "sign prep": lambda: sign_prep(psbt, job.to_sign),  # type: ignore[arg-type]
        "add sigs": lambda: add_signatures(psbt, job),  # type: ignore[arg-type]
        "serialize": lambda: psbt.serialize(),  # type: ignore[union-attr]
    }
    for name in STEPS:
        gc.collect()  # every step from the same heap state
        wall, cpu = time.perf_counter(), time.process_time()
        steps[name]()
        out[name] = (time.perf_counter() - wall, time.process_time() - cpu)
    return out


def measure(jobs: list[Prepared], runs: int) -> dict[tuple[str, int], dict[str, list[float]]]:
    """Every job ``runs`` times, interleaved (run 1 of every size, then run 2, ...)."""
    samples: dict[tuple[str, int], dict[str, list[float]]] = {
        (j.kind, j.inputs): {f"{s} {m}": [] for s in STEPS for m in ("wall", "cpu")} for j in jobs
    }
    for run in range(runs):
        for job in jobs[run % len(jobs) :] + jobs[: run % len(jobs)]:  # rotate the order
            for step, (wall, cpu) in time_steps(job).items():
                samples[(job.kind, job.inputs)][f"{step} wall"].append(wall)
                samples[(job.kind, job.inputs)][f"{step} cpu"].append(cpu)
    return samples


def report(jobs: list[Prepared], runs: int) -> None:
    samples = measure(jobs, runs)
    med = {key: {name: statistics.median(v) for name, v in s.items()} for key, s in samples.items()}
    print(
        f"Review and signing path in shared, median of {runs} interleaved runs, ms "
        "(CPU; wall in brackets). P2WSH inputs are 2-of-3 sortedmulti with an xpub cosigner."
    )
    print(f"  {'request':<22}" + "".join(f"{s:>19}" for s in STEPS) + f"{'review/input':>14}")
    for job in jobs:
        m = med[(job.kind, job.inputs)]
        label = f"{job.inputs:,} {'P2WPKH' if job.kind == 'wpkh' else 'P2WSH 2-of-3'} in"
        cells = "".join(f"{m[s + ' cpu'] * 1e3:9.1f} [{m[s + ' wall'] * 1e3:7.1f}]" for s in STEPS)
        per = m["review cpu"] / job.inputs * 1e6
        print(f"  {label:<22}{cells}{per:>11.0f} us")
    wpkh = [j for j in jobs if j.kind == "wpkh"]
    if len(wpkh) >= 2:
        print(
            f"  fitted exponent over {', '.join(f'{j.inputs:,}' for j in wpkh)} P2WPKH inputs "
            "(CPU; 1.0 is linear):"
        )
        for step in STEPS:
            points = [(j.inputs, med[(j.kind, j.inputs)][step + " cpu"]) for j in wpkh]
            print(f"    {step:<10} k = {fitted_exponent(points):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    start = time.perf_counter()
    jobs = [prepare(kind, n) for kind, n in SHAPES]
    sizes = ", ".join(f"{j.inputs:,} {j.kind}: {len(j.raw) / 1e3:,.0f} kB" for j in jobs)
    print(f"requests built and signed once in {time.perf_counter() - start:.1f} s ({sizes})")
    report(jobs, args.runs)


if __name__ == "__main__":
    main()
