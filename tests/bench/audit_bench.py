"""Benchmark: audit replay of a journal of 10,000 signing records.

A software appliance (``tests.audit.conftest.SoftCold``: real review transcripts, real
officer approvals, real signatures, every record signed by a software audit key) runs
10,000 signing ceremonies; every 50th request pays over the per-transaction limit and is
refused with its transcript; the policy changes version halfway. The coordinator side
holds every request, response, receipt and broadcast. The evidence is written as the
appliance and the coordinator write it, then the clock measures what an auditor waits
for: reading and parsing the files, and the replay (every check). Target: under 10 s.
Prints figures only.

    python -m tests.bench.audit_bench [--records 10000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from online_coordinator.audit_cli import read_bundle, read_coordinator
from shared.audit.change import ChangeDeriver
from shared.audit.coordinator_replay import CoordinatorReplay, recompute, verified_requests
from shared.audit.journal_replay import ApplianceReplay
from shared.audit.model import Report
from shared.audit.replay import replay
from shared.audit.report import summary, to_html, to_json
from shared.audit.wallets import build_index
from tests.audit.conftest import SoftCold, SoftDesk, payee

TARGET = 10.0
AMOUNT = 50_000


def build(root: Path, records: int) -> tuple[Path, Path]:
    """The evidence of ``records`` signing decisions, written to ``root``."""
    cold = SoftCold("cold-bench", per_tx_limit=10 * AMOUNT)
    desk = SoftDesk()
    wallet = desk.import_single("treasury", cold)
    for n in range(records):
        if n == records // 2:
            cold.install(max_fee=900_000)
        over = n % 50 == 49
        amount = 20 * AMOUNT if over else AMOUNT
        coin = desk.coin(wallet, amount * 3)
        request = desk.request(wallet, [coin], [(payee(n), amount)], created=cold.clock)
        response, entry = cold.sign(request, approvers=((0, 1), (1, 2), (0, 2))[n % 3])
        if entry.record.decision == "approved":
            desk.respond(response)
            desk.broadcast([response], height=200 + n)
    bundle = cold.write_bundle(root / "bundle")
    coordinator = root / "coordinator.json"
    coordinator.write_bytes(desk.evidence_bytes())
    return bundle, coordinator


def _stages(bundle: Path, coordinator: Path) -> tuple[Report, list[tuple[str, float, float]]]:
    """The replay's stages, timed one by one (wall and CPU seconds), then the full replay."""
    marks = [("start", time.perf_counter(), time.process_time())]

    def mark(name: str) -> None:
        marks.append((name, time.perf_counter(), time.process_time()))

    bundles = [read_bundle(bundle)]
    mark("read + parse the appliance bundle")
    evidence = read_coordinator(coordinator)
    mark("read + parse the coordinator evidence")
    index = build_index(evidence)
    recomputed = [recompute(r) for r in evidence.requests]
    requests = verified_requests(evidence.requests, recomputed)
    mark("derive wallet scripts, recompute request hashes")
    change = ChangeDeriver(index.top)
    replays = {b.appliance_id: ApplianceReplay(b, evidence.appliances.get(b.appliance_id),
                                               requests, change).run()
               for b in bundles}  # fmt: skip
    mark("replay the journal (checks 1-3, change re-derived)")
    CoordinatorReplay(evidence, replays, index, recomputed).run()
    mark("replay the coordinator side (check 4)")
    report = replay(bundles, evidence)
    mark("(the same, end to end: replay())")
    to_json(report), to_html(report)
    mark("render JSON + HTML")
    stages = [(name, wall - marks[i][1], cpu - marks[i][2])
              for i, (name, wall, cpu) in enumerate(marks[1:])]  # fmt: skip
    return report, stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        bundle, coordinator = build(Path(tmp), args.records)
        print(f"built {args.records} ceremonies in {time.perf_counter() - started:.1f} s")
        report, stages = _stages(bundle, coordinator)
    print(summary(report).splitlines()[0])
    print(f"  {'stage':52s} {'wall s':>7s} {'cpu s':>7s}")
    for name, wall, cpu in stages:
        print(f"  {name:52s} {wall:7.2f} {cpu:7.2f}")
    journal = sum(w for n, w, _ in stages[:1] + stages[3:4])
    full = sum(w for _, w, _ in stages[:5])
    print(f"journal replay of {args.records} signing records (bundle read + checks 1-3): "
          f"{journal:.2f} s; with the coordinator evidence (checks 1-4): {full:.2f} s "
          f"(target {TARGET:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
