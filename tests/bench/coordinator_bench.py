"""Coordinator bench: sync a 10,000-coin wallet, build a 1,000-payout batch from it.

Run with ``python -m tests.bench.coordinator_bench``. Everything is real: the local
regtest (kernel-validated blocks) behind real JSON-RPC over loopback, the SQLite store, the
coin selection and the PSBT builder. Target (issue 6): the batch in under 1 s.

The 10,000 coins arrive in 100 funding transactions of 100 outputs each, so every PSBT
input carries a realistic ~3 KB previous transaction rather than one giant one.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from online_coordinator.batch import build_request
from online_coordinator.config import load_config, write_config
from online_coordinator.regtest.node import RegtestNode
from online_coordinator.regtest.server import start_in_thread
from online_coordinator.store import Store
from online_coordinator.sync import run_sync
from online_coordinator.wallet import import_single, load_wallet, next_address, read_export
from shared.bitcoin.address import Network, address_to_script, script_to_address
from tests.coordinator.softappliance import SoftAppliance, secret

COINS = 10_000
PER_TX = 100
PAYOUTS = 1_000
COIN_SATS = 100_000


def _fund(node: RegtestNode, script: bytes) -> None:
    node.mine(150)  # mature coinbases for the faucet
    for number in range(COINS // PER_TX):
        node.fund([(script, COIN_SATS)] * PER_TX)
        if number % 20 == 19:
            node.mine(1)
    node.mine(1)


def _csv() -> bytes:
    rows = ["address,amount,reference"]
    for n in range(PAYOUTS):
        address = script_to_address(b"\x00\x14" + secret(f"payee {n}")[:20], Network.REGTEST)
        rows.append(f"{address},0.00010000,PAY-{n:05d}")
    return ("\n".join(rows) + "\n").encode()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        node = RegtestNode(Path(tmp) / "regtest")
        server = start_in_thread(node)
        try:
            state = Path(tmp) / "coordinator"
            write_config(state, "regtest", (server.url, Path(server.cookie_path)))
            config = load_config(state)
            store = Store.open(config.database)
            appliance = SoftAppliance("bench")
            export = read_export(appliance.descriptor, appliance.export()[1])
            wallet = import_single(store, "treasury", Network.REGTEST, [export], birth_height=0)
            slot = next_address(store, wallet, change=False, note="bench")
            _fund(node, address_to_script(slot.address, Network.REGTEST))

            started = time.perf_counter()
            report = run_sync(store, config.rpc(), config.confirmations)
            synced = time.perf_counter() - started
            coins = store.one("SELECT COUNT(*) AS n FROM utxos WHERE state = 'available'")["n"]
            print(f"sync: {coins} coins ({report.blocks_walked} blocks walked) in {synced:.2f} s")

            again = time.perf_counter()
            run_sync(store, config.rpc(), config.confirmations)
            print(f"sync again (nothing new): {time.perf_counter() - again:.2f} s")

            csv = _csv()
            wallet = load_wallet(store, "treasury")
            started = time.perf_counter()
            built = build_request(store, wallet, csv, label="bench", purpose="bench",
                                  requester="ops", fee_rate=2000, tip=node.height(),
                                  expiry_seconds=3600)  # fmt: skip
            elapsed = time.perf_counter() - started
            size = len(built.psbt.serialize())
            print(f"batch: {PAYOUTS} payouts from {coins} coins -> {len(built.psbt.inputs)} "
                  f"inputs, {size / 1000:.0f} kB PSBT ({built.selection.algorithm}) in "
                  f"{elapsed:.3f} s (target < 1 s)")  # fmt: skip
            store.close()
        finally:
            server.shutdown()
            node.close()


if __name__ == "__main__":
    main()
