"""Benchmark: audit replay of 1,000 / 10,000 / 100,000 signing records (issue 14).

A software appliance (``tests.audit.conftest.SoftCold``: real review transcripts, real
officer approvals, real signatures, every record signed by a software audit key) runs N
signing ceremonies; every 50th request pays over the per-transaction limit and is refused
with its transcript; the policy changes version halfway. The coordinator side
(``SoftDesk``) holds every request, response, receipt and broadcast. The evidence is written
as the appliance and the coordinator write it (signing records name their inputs by
``outpoints_sha256``), then the clock measures what an auditor waits for:
``coldstation-audit replay --journal BUNDLE --coordinator-export FILE --json --html`` run
end to end in a fresh process (reading, every check, both reports), as the auditor runs it.

Each size is replayed ``--repeat`` times, sizes interleaved (the machine is shared: the
medians are reported, wall and CPU; CPU counts the worker processes too). Peak memory is
the resident set's high-water mark (``getrusage``) of the replaying process, and of the
largest worker. The growth table ends with the exponent fitted to wall and CPU time against
the number of records (least squares on the logs). Targets: 100,000 records within 60 s
wall, exponent at most 1.05.

Building the evidence is slow (some 10 ms a ceremony: 100,000 take a quarter of an hour),
so it is kept in ``--cache`` (default: a folder in the temporary directory) and reused.

    python -m tests.bench.audit_bench [--sizes 1000,10000,100000] [--repeat 3]
                                      [--workers N] [--cache DIR] [--rebuild] [--stages]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.audit.conftest import SoftCold, SoftDesk, payee
from tests.bench.growth import fitted_exponent

TARGET_WALL = 60.0
TARGET_EXPONENT = 1.05
AMOUNT = 50_000
#: Bump when what build() writes changes, so a stale cache is not measured.
BUILD_VERSION = 2
ROOT = Path(__file__).resolve().parents[2]


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


def evidence(cache: Path, records: int, rebuild: bool) -> tuple[Path, Path]:
    """The cached evidence of ``records`` ceremonies, built (in a child process, whose
    memory is then returned) when missing."""
    folder = cache / f"v{BUILD_VERSION}-{records}"
    done = folder / "done"
    if rebuild and folder.exists():
        shutil.rmtree(folder)
    if not done.exists():
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.bench.audit_bench",
                "--build-into",
                str(folder),
                "--records",
                str(records),
            ],
            check=True,
            cwd=ROOT,
        )
        done.write_text(f"{time.perf_counter() - started:.1f}\n")
        print(f"built {records} ceremonies in {done.read_text().strip()} s ({folder})", flush=True)
    return folder / "bundle", folder / "coordinator.json"


def _journal_records(bundle: Path) -> int:
    from shared.audit.journal_stream import JournalExport

    return len(JournalExport(lambda: (bundle / "journal.cbor").open("rb")))


# -- one measured replay (in a fresh process) ---------------------------------------------


def child(bundle: Path, coordinator: Path, workers: int) -> None:
    """Run the auditor's command end to end and print what it cost, as one JSON line."""
    from online_coordinator.audit_cli import main

    with tempfile.TemporaryDirectory() as out:
        started, cpu0 = time.perf_counter(), os.times()
        code = main(
            [
                "replay",
                "--journal",
                str(bundle),
                "--coordinator-export",
                str(coordinator),
                "--json",
                f"{out}/report.json",
                "--html",
                f"{out}/report.html",
                "--workers",
                str(workers),
            ]
        )
        wall, cpu1 = time.perf_counter() - started, os.times()
        findings = json.loads(Path(out, "report.json").read_text())["summary"]["findings"]
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(
        json.dumps(
            {
                "code": code,
                "findings": findings,
                "wall": wall,
                "cpu_main": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
                "cpu_workers": (cpu1.children_user - cpu0.children_user)
                + (cpu1.children_system - cpu0.children_system),
                "rss_main_mib": own / 1024,
                "rss_worker_mib": kids / 1024,
            }
        )
    )


def measure(bundle: Path, coordinator: Path, workers: int) -> dict[str, float]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.bench.audit_bench",
            "--child",
            str(bundle),
            str(coordinator),
            "--workers",
            str(workers),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    if result["code"] != 0 or result["findings"]:
        raise SystemExit(f"the replay of {bundle} did not pass: {result}")
    return result


# -- the stages, one by one (for profiling) -----------------------------------------------


def stages(bundle: Path, coordinator: Path, processes: int) -> None:
    """The replay's stages, timed one by one (wall and CPU seconds of this process; the
    workers' time is not counted here)."""
    import gc

    from online_coordinator.audit_files import read_bundle, read_coordinator
    from shared.audit.change import ChangeDeriver
    from shared.audit.coordinator_replay import CoordinatorReplay
    from shared.audit.journal_replay import ApplianceReplay
    from shared.audit.replay import replay
    from shared.audit.report import to_html, to_json
    from shared.audit.wallets import build_index
    from shared.audit.workers import Workers

    gc.disable()  # as coldstation-audit runs it
    marks = [("start", time.perf_counter(), time.process_time())]

    def mark(name: str) -> None:
        marks.append((name, time.perf_counter(), time.process_time()))

    with Workers(processes) as workers:
        bundles = [read_bundle(bundle)]
        mark("open the bundle (frame, header, names)")
        evidence = read_coordinator(coordinator, workers)
        mark("read + parse the coordinator evidence")
        index = build_index(evidence)
        change = ChangeDeriver(index.top)
        mark("derive wallet scripts")
        replays = {
            b.appliance_id: ApplianceReplay(
                b,
                evidence.appliances.get(b.appliance_id),
                evidence.verified,
                change,
                workers=workers,
            ).run()
            for b in bundles
        }
        evidence.resolve_receipts()
        mark("read + replay the journal (checks 1-3)")
        CoordinatorReplay(evidence, replays, index).run()
        mark("replay the coordinator side (check 4)")
        report = replay(
            [read_bundle(bundle)], read_coordinator(coordinator, workers), workers=workers
        )
        mark("(all of the above again, end to end: replay())")
    to_json(report), to_html(report)
    mark("render JSON + HTML")
    print(f"  {'stage':52s} {'wall s':>7s} {'cpu s':>7s}")
    for i, (name, wall, cpu) in enumerate(marks[1:]):
        print(f"  {name:52s} {wall - marks[i][1]:7.2f} {cpu - marks[i][2]:7.2f}")


# -- the growth table ---------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "coldstation-audit-bench"
    )
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument(
        "--stages", action="store_true", help="also time the stages of the largest size, one by one"
    )
    parser.add_argument("--build-into", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--records", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_into is not None:
        build(args.build_into, args.records)
        return
    if args.child is not None:
        child(*args.child, args.workers)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    paths = {n: evidence(args.cache, n, args.rebuild) for n in sizes}
    records = {n: _journal_records(paths[n][0]) for n in sizes}
    runs: dict[int, list[dict[str, float]]] = {n: [] for n in sizes}
    for round_ in range(args.repeat):
        for n in sizes:  # interleaved: a busy spell on the shared machine hits every size
            runs[n].append(measure(*paths[n], args.workers))
            last = runs[n][-1]
            print(
                f"  round {round_ + 1}: {n} ceremonies, {last['wall']:.2f} s wall, "
                f"{last['cpu_main'] + last['cpu_workers']:.2f} s CPU",
                flush=True,
            )
    print(
        f"\ncoldstation-audit replay, end to end, with the coordinator's evidence "
        f"(--workers {args.workers}; medians of {args.repeat}, sizes interleaved)"
    )
    print(
        f"  {'ceremonies':>10s} {'records':>8s} {'wall s':>8s} {'CPU s':>8s} "
        f"{'(main':>7s} {'workers)':>8s} {'µs/rec':>7s} {'peak RSS MiB':>12s} "
        f"{'(worker)':>8s}"
    )
    walls, cpus = [], []
    for n in sizes:
        med = {
            k: statistics.median(r[k] for r in runs[n])
            for k in ("wall", "cpu_main", "cpu_workers", "rss_main_mib", "rss_worker_mib")
        }
        cpu = statistics.median(r["cpu_main"] + r["cpu_workers"] for r in runs[n])
        walls.append((records[n], med["wall"]))
        cpus.append((records[n], cpu))
        print(
            f"  {n:>10d} {records[n]:>8d} {med['wall']:>8.2f} {cpu:>8.2f} "
            f"{med['cpu_main']:>7.2f} {med['cpu_workers']:>8.2f} "
            f"{med['wall'] / records[n] * 1e6:>7.0f} {med['rss_main_mib']:>12.0f} "
            f"{med['rss_worker_mib']:>8.0f}"
        )
    if len(sizes) > 1:
        wall_exp, cpu_exp = fitted_exponent(walls), fitted_exponent(cpus)
        print(
            f"  fitted exponent: wall {wall_exp:.3f}, CPU {cpu_exp:.3f} "
            f"(target <= {TARGET_EXPONENT})"
        )
    largest = max(sizes)
    print(
        f"  {largest} ceremonies: {statistics.median(r['wall'] for r in runs[largest]):.1f} s "
        f"wall (target {TARGET_WALL:.0f} s for 100,000)"
    )
    if args.stages:
        print(f"\nstages of one replay of {largest} ceremonies (this process's time only):")
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from tests.bench.audit_bench "
                "import stages; from pathlib import Path; "
                "stages(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))",
                *map(str, paths[largest]),
                str(args.workers),
            ],
            check=True,
            cwd=ROOT,
        )


if __name__ == "__main__":
    main()
