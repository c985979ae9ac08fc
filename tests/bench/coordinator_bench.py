"""Coordinator bench: growth of sync, idle re-sync and batch create with the wallet's coins.

Run with ``python -m tests.bench.coordinator_bench [--coins 1000,10000,100000]
[--per-tx 100,1000] [--payouts 1000] [--idle-runs 3]``. Everything is real: the local
regtest (kernel-validated blocks) behind real JSON-RPC over loopback, the SQLite store
(WAL, ``synchronous=FULL``), the coin selection and the PSBT builder: the path a user takes
with ``coordinator regtest start`` and ``coordinator sync``.

For each layout (coins arriving in funding transactions of ``--per-tx`` outputs each, all
to the wallet's address) one chain is funded up to each size in turn; at each size a fresh
coordinator state imports the wallet (birth height 0) and is timed on:

* **sync**: the first sync, walking every block (from the genesis block, so it needs no
  UTXO scan: the walk sees every coin);
* **idle**: a sync again with no new block (the fastest of ``--idle-runs``);
* **block**: a sync after one new (empty) block;
* **scan**: the first sync of a second state whose wallet is born at the tip, so every
  coin comes from the UTXO scan (``scantxoutset``, previous transactions, recording);
* **batch**: ``batch create`` of ``--payouts`` payouts (coin selection and PSBT build).

Each figure is wall time and the CPU time of the coordinator's thread
(``time.thread_time``): the node serves from its own threads in this process, so its
work (block serving, the UTXO scan) counts in the wall time only. Under each table, the
fitted exponent (least-squares slope of log time on log coins; 1.0 is linear, 2.0
quadratic). Targets (issue 14): sync linear, idle re-sync <= 0.2 s and batch create <= 1 s
at 100,000 coins.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from online_coordinator.batch import build_request
from online_coordinator.config import Config, load_config, write_config
from online_coordinator.regtest.node import RegtestNode
from online_coordinator.regtest.server import start_in_thread
from online_coordinator.store import Store
from online_coordinator.sync import run_sync
from online_coordinator.wallet import import_single, load_wallet, next_address, read_export
from shared.bitcoin.address import Network, script_to_address
from tests.bench.growth import fitted_exponent
from tests.coordinator.softappliance import SoftAppliance, secret

COIN_SATS = 100_000
#: Funding transactions per block: below the node's 25-transaction mempool chain limit.
TXS_PER_BLOCK = 20
#: Outputs per block, well inside the 4,000,000 WU block weight.
OUTPUTS_PER_BLOCK = 20_000
T = TypeVar("T")


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float


@dataclass(frozen=True)
class Row:
    coins: int
    blocks: int
    sync: Timing
    idle: Timing
    block: Timing
    scan: Timing
    batch: Timing
    inputs: int
    psbt_kb: float


def timed(action: Callable[[], T]) -> tuple[T, Timing]:
    """Run ``action``; its result with the wall and this thread's CPU time."""
    wall, cpu = time.perf_counter(), time.thread_time()
    result = action()
    return result, Timing(time.perf_counter() - wall, time.thread_time() - cpu)


class Chain:
    """A regtest node serving JSON-RPC, funded in steps to the bench wallet's script."""

    def __init__(self, root: Path, script: bytes, per_tx: int) -> None:
        self.root = root
        self.node = RegtestNode(root / "regtest")
        self.server = start_in_thread(self.node)
        self.script = script
        self.per_tx = per_tx
        self.funded = 0
        self.node.mine(150)  # mature coinbases for the faucet

    def fund_to(self, coins: int) -> None:
        """Pay the script until it holds ``coins`` coins, ``per_tx`` per transaction."""
        pending = 0
        while self.funded < coins:
            count = min(self.per_tx, coins - self.funded)
            self.node.fund([(self.script, COIN_SATS)] * count)
            self.funded += count
            pending += 1
            if pending >= min(TXS_PER_BLOCK, max(1, OUTPUTS_PER_BLOCK // self.per_tx)):
                self.node.mine(1)
                pending = 0
        self.node.mine(1)

    def close(self) -> None:
        self.server.shutdown()
        self.node.close()


def payouts_csv(payouts: int) -> bytes:
    rows = ["address,amount,reference"]
    for n in range(payouts):
        address = script_to_address(b"\x00\x14" + secret(f"payee {n}")[:20], Network.REGTEST)
        rows.append(f"{address},0.00010000,PAY-{n:05d}")
    return ("\n".join(rows) + "\n").encode()


def measure(chain: Chain, state: Path, appliance: SoftAppliance, csv: bytes, idle_runs: int) -> Row:
    """A fresh coordinator state on ``chain``: first sync, idle re-syncs, a sync of one new
    block, one batch; then a state born at the tip, whose coins all come from the scan."""
    with opened(chain, state, appliance, birth_height=0) as (store, config):
        report, sync = timed(lambda: run_sync(store, config.rpc(), config.confirmations))
        idle = min(
            (
                timed(lambda: run_sync(store, config.rpc(), config.confirmations))[1]
                for _ in range(idle_runs)
            ),
            key=lambda t: t.wall,
        )
        chain.node.mine(1)
        block = timed(lambda: run_sync(store, config.rpc(), config.confirmations))[1]
        coins = store.one("SELECT COUNT(*) AS n FROM utxos WHERE state = 'available'")["n"]
        wallet = load_wallet(store, "treasury")
        built, batch = timed(
            lambda: build_request(
                store,
                wallet,
                csv,
                label="bench",
                purpose="bench",
                requester="ops",
                fee_rate=2000,
                tip=chain.node.height(),
                expiry_seconds=3600,
            )
        )
    born = chain.node.height()
    with opened(chain, state.with_name(f"{state.name}-scan"), appliance, born) as (store, config):
        scanned, scan = timed(lambda: run_sync(store, config.rpc(), config.confirmations))
    if scanned.new_coins != coins:
        raise SystemExit(f"the scan found {scanned.new_coins} coins, the walk {coins}")
    size = len(built.psbt.serialize()) / 1000
    return Row(
        coins, report.blocks_walked, sync, idle, block, scan, batch, len(built.psbt.inputs), size
    )


@contextmanager
def opened(
    chain: Chain, state: Path, appliance: SoftAppliance, birth_height: int
) -> Iterator[tuple[Store, Config]]:
    """A coordinator state on ``chain`` with the bench wallet imported: a pool of two fixed
    keys, the first paid (its one address), the second for the batch's change (an address
    is never handed out twice)."""
    write_config(state, "regtest", (chain.server.url, Path(chain.server.cookie_path)))
    config = load_config(state)
    with Store.open(config.database) as store:
        exports = [
            read_export(appliance.descriptor_of(p), appliance.export(position=p)[1]) for p in (0, 1)
        ]
        wallet = import_single(store, "treasury", Network.REGTEST, exports, birth_height)
        next_address(store, wallet, change=False, note="bench")
        yield store, config


def run_layout(per_tx: int, sizes: list[int], payouts: int, idle_runs: int) -> list[Row]:
    """One chain funded ``per_tx`` outputs per transaction, measured at every size."""
    appliance = SoftAppliance("bench")
    csv = payouts_csv(payouts)
    rows = []
    script = appliance.descriptor.derive(0).script_pubkey  # wpkh(<key>): its one address
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        chain = Chain(root, script, per_tx)
        try:
            for size in sizes:
                chain.fund_to(size)
                rows.append(measure(chain, root / f"state-{size}", appliance, csv, idle_runs))
                print_row(per_tx, rows[-1])
        finally:
            chain.close()
    return rows


def print_row(per_tx: int, row: Row) -> None:
    print(
        f"  {per_tx:>5} out/tx {row.coins:>7} coins {row.blocks:>4} blocks | sync "
        f"{row.sync.wall:6.2f} / {row.sync.cpu:6.2f} | idle {row.idle.wall:6.3f} / "
        f"{row.idle.cpu:6.3f} | block {row.block.wall:6.3f} / {row.block.cpu:6.3f} | scan "
        f"{row.scan.wall:6.2f} / {row.scan.cpu:6.2f} | batch {row.batch.wall:6.3f} / "
        f"{row.batch.cpu:6.3f} ({row.inputs} inputs, {row.psbt_kb:.0f} kB)",
        flush=True,
    )


def print_table(
    title: str, layouts: dict[int, list[Row]], pick: Callable[[Row], Timing], target: str
) -> None:
    print(f"\n{title} ({target})")
    print(f"  {'out/tx':>6} {'coins':>8} {'wall s':>9} {'cpu s':>9}")
    for per_tx, rows in layouts.items():
        for row in rows:
            timing = pick(row)
            print(f"  {per_tx:>6} {row.coins:>8} {timing.wall:>9.3f} {timing.cpu:>9.3f}")
        walls = [(r.coins, pick(r).wall) for r in rows]
        cpus = [(r.coins, pick(r).cpu) for r in rows]
        print(
            f"  {per_tx:>6} fitted exponent: wall {fitted_exponent(walls):.2f}, "
            f"cpu {fitted_exponent(cpus):.2f}"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def sizes(text: str) -> list[int]:
        return sorted({int(part) for part in text.split(",") if part})

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--coins",
        type=sizes,
        default=[1_000, 10_000, 100_000],
        help="wallet sizes, comma-separated (default 1000,10000,100000)",
    )
    parser.add_argument(
        "--per-tx",
        type=sizes,
        default=[100, 1_000],
        help="outputs per funding transaction (default 100,1000)",
    )
    parser.add_argument("--payouts", type=int, default=1_000, help="payouts in the batch")
    parser.add_argument("--idle-runs", type=int, default=3, help="idle re-syncs, best kept")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    layouts: dict[int, list[Row]] = {}
    print(
        "per size, wall / cpu s: first sync | idle re-sync | sync of one new block | "
        "first sync from the UTXO scan | batch create"
    )
    for per_tx in args.per_tx:
        layouts[per_tx] = run_layout(per_tx, args.coins, args.payouts, args.idle_runs)
    print_table("sync vs coins", layouts, lambda r: r.sync, "linear")
    print_table("idle re-sync vs coins", layouts, lambda r: r.idle, "<= 0.2 s at 100,000")
    print_table("sync of one new block vs coins", layouts, lambda r: r.block, "flat")
    print_table("first sync from the UTXO scan vs coins", layouts, lambda r: r.scan, "linear")
    print_table(
        f"batch create ({args.payouts} payouts) vs coins",
        layouts,
        lambda r: r.batch,
        "<= 1 s at 100,000",
    )


if __name__ == "__main__":
    main()
