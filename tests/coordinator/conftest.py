"""A real local regtest (kernel-validated blocks) behind real JSON-RPC, and a coordinator
state directory configured for it. Each test gets its own chain."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from online_coordinator.cli import main as coordinator_main
from online_coordinator.config import load_config, write_config
from online_coordinator.regtest.node import RegtestNode
from online_coordinator.regtest.server import RegtestServer, start_in_thread
from online_coordinator.store import Store
from shared.bitcoin.address import Network, address_to_script
from tests.coordinator.faultproxy import FaultProxy
from tests.coordinator.softappliance import SoftAppliance
from tests.postgres import fresh_database, postgres_server


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Desk:
    """The ops desk: a coordinator state directory, its node, and a CLI runner."""

    state: Path
    node: RegtestNode
    tmp: Path

    def run(self, *args: str) -> Result:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = coordinator_main(
                    [*args[:2], "--state", str(self.state), *args[2:]]
                    if args[0] in ("wallet", "batch", "user", "store")
                    else [args[0], "--state", str(self.state), *args[1:]]
                )
            except SystemExit as exc:  # argparse errors
                code = int(exc.code or 0)
        return Result(code, out.getvalue(), err.getvalue())

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.code == 0, f"{args}: {result.err}{result.out}"
        return result.out

    def store(self) -> Store:
        return Store.open(load_config(self.state).database)

    def write(self, name: str, data: bytes | str) -> str:
        path = self.tmp / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        return str(path)

    def fund(self, address: str, sats: int, count: int = 1) -> None:
        script = address_to_script(address, Network.REGTEST)
        self.node.fund([(script, sats)] * count)
        self.node.mine(1)

    def export_args(self, *appliances: SoftAppliance) -> list[str]:
        """``--export DESC RECEIPT`` for each appliance's first key, as files."""
        args: list[str] = []
        for appliance in appliances:
            descriptor, receipt = appliance.export()
            name = appliance.appliance_id
            args += [
                "--export",
                self.write(f"{name}.desc", descriptor),
                self.write(f"{name}.receipt", receipt),
            ]
        return args

    def import_soft(self, name: str, appliance: SoftAppliance) -> None:
        """Every key of the appliance's pool, as one single-signature wallet."""
        exports: list[str] = []
        for position in range(appliance.pool_size):
            descriptor, receipt = appliance.export(position=position)
            exports += [
                "--export",
                self.write(f"{name}-{position}.desc", descriptor),
                self.write(f"{name}-{position}.receipt", receipt),
            ]
        self.ok("wallet", "import", name, *exports)


@dataclass
class ProxiedDesk(Desk):
    """A desk whose coordinator reaches the node through a :class:`FaultProxy`, with a
    short RPC deadline, and whose node can be restarted (same chain, same cookie file)."""

    proxy: FaultProxy | None = None
    server: RegtestServer | None = None

    def stop_node(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.node.close()

    def start_node(self, *, forget_mempool: bool = False) -> None:
        assert self.proxy is not None
        if forget_mempool:  # as a node started with -persistmempool=0, or after a crash
            (self.node.datadir / "mempool.txt").unlink(missing_ok=True)
        self.node = RegtestNode(self.node.datadir)
        self.server = start_in_thread(self.node, cookie_path=self.tmp / "node.cookie")
        self.proxy.upstream = self.server.server_address[:2]

    def restart_node(self, *, forget_mempool: bool = False) -> None:
        self.stop_node()
        self.start_node(forget_mempool=forget_mempool)


RPC_DEADLINE_SECONDS = 2


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[ProxiedDesk]:
    node = RegtestNode(tmp_path / "regtest")
    server = start_in_thread(node, cookie_path=tmp_path / "node.cookie")
    proxy = FaultProxy(server.server_address[:2])
    desk = ProxiedDesk(tmp_path / "coordinator", node, tmp_path, proxy, server)
    try:
        write_config(desk.state, "regtest", (proxy.url, tmp_path / "node.cookie"))
        config = desk.state / "coordinator.toml"
        deadline = f"[node]\ntimeout_seconds = {RPC_DEADLINE_SECONDS}\n"
        config.write_text(config.read_text().replace("[node]\n", deadline))
        yield desk
    finally:
        proxy.close()
        assert desk.server is not None
        desk.server.shutdown()
        desk.node.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module with ``BOTH_STORES = True`` runs each desk test on SQLite and on a real
    PostgreSQL server (issue 19: the same guarantees behind the same interface); a set of
    test names runs only those on both (CI's time goes to what exercises the store)."""
    if "store_kind" in metafunc.fixturenames:
        both = getattr(metafunc.module, "BOTH_STORES", False)
        if not isinstance(both, bool):  # the names of the tests that touch the store's rules
            both = metafunc.function.__name__ in both
        metafunc.parametrize("store_kind", ["sqlite", "postgresql"] if both else ["sqlite"])


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture
def desk(tmp_path: Path, store_kind: str, request: pytest.FixtureRequest) -> Iterator[Desk]:
    node = RegtestNode(tmp_path / "regtest")
    server = start_in_thread(node)
    try:
        state = tmp_path / "coordinator"
        write_config(state, "regtest", (server.url, Path(server.cookie_path)))
        if store_kind == "postgresql":
            url = fresh_database(request.getfixturevalue("postgres_url"), tmp_path.name[:60])
            config = state / "coordinator.toml"
            config.write_text(config.read_text() + f'\n[database]\nurl = "{url}"\n')
        yield Desk(state, node, tmp_path)
    finally:
        server.shutdown()
        node.close()
