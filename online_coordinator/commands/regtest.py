"""``regtest start | stop | status | mine | fund | reorg``: a local node for tests and the demo.

``start`` runs ``python -m online_coordinator.regtest.server`` as a background process in
its own session, so it outlives the command; every other action talks to it the way the
coordinator talks to Bitcoin Core, through :class:`BitcoinCoreRPC` with the cookie file
named in ``<datadir>/regtest.json``. That file exists exactly while the server runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from online_coordinator.chain.rpc import (
    AmountError,
    BitcoinCoreRPC,
    ChainError,
    RpcAuth,
    RpcError,
    btc_to_sats,
)
from online_coordinator.commands.common import CommandError, ExitCode, add_state
from online_coordinator.config import CONFIG_NAME

# These must match online_coordinator.regtest.server; importing it here would load the
# whole node (and libbitcoinkernel) for every coordinator command.
DEFAULT_PORT = 18443
INFO_FILE = "regtest.json"
PID_FILE = "regtest.pid"
LOG_FILE = "regtest.log"
DEFAULT_DATADIR = Path("coldstation-regtest")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
#: Mining and reorgs validate every block; give them longer than the client's default.
RPC_TIMEOUT = 300.0
_POLL = 0.1


def register(commands: Any) -> None:
    """Add ``regtest`` and its actions to the coordinator's command parser."""
    group = commands.add_parser("regtest", help="run a local regtest node (tests and demo)")
    sub = group.add_subparsers(dest="regtest_command", required=True, metavar="ACTION")
    common = add_state(argparse.ArgumentParser(add_help=False))  # whose config names the node
    common.add_argument(
        "--datadir",
        type=Path,
        help=f"node directory (default: the one coordinator.toml names, else {DEFAULT_DATADIR})",
    )

    start = sub.add_parser("start", parents=[common], help="start the node in the background")
    start.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    start.set_defaults(handler=start_command)

    sub.add_parser("stop", parents=[common], help="stop the node").set_defaults(
        handler=stop_command
    )
    sub.add_parser("status", parents=[common], help="is it running; height").set_defaults(
        handler=status_command
    )

    mine = sub.add_parser("mine", parents=[common], help="mine blocks")
    mine.add_argument("count", type=int, help="number of blocks")
    mine.add_argument("--address", help="coinbase address (default: the node's faucet)")
    mine.set_defaults(handler=mine_command)

    fund = sub.add_parser("fund", parents=[common], help="pay an address from the node's funds")
    fund.add_argument("address")
    fund.add_argument("amount", help="amount in BTC, e.g. 1.5")
    fund.set_defaults(handler=fund_command)

    reorg = sub.add_parser("reorg", parents=[common], help="replace the last DEPTH blocks")
    reorg.add_argument("depth", type=int)
    reorg.add_argument(
        "--keep-transactions",
        action="store_true",
        help="re-mine the orphaned transactions (default: they return to the mempool only)",
    )
    reorg.add_argument("--extra-blocks", type=int, default=1, help="longer by (default 1)")
    reorg.set_defaults(handler=reorg_command)


# -- the running server -------------------------------------------------------------------


def _datadir(args: argparse.Namespace) -> Path:
    """``--datadir``, else the local regtest the coordinator's config names (``init
    --regtest DIR`` wrote it), else ``coldstation-regtest``."""
    if args.datadir is not None:
        return Path(args.datadir)
    try:
        with (Path(args.state) / CONFIG_NAME).open("rb") as handle:
            named = tomllib.load(handle).get("node", {}).get("regtest")
    except (OSError, tomllib.TOMLDecodeError, AttributeError):
        named = None
    return Path(named) if isinstance(named, str) else DEFAULT_DATADIR


def _require_kernel() -> None:
    """The node validates blocks with libbitcoinkernel (py-bitcoinkernel, the ``regtest``
    extra); without it, say so instead of the server's traceback."""
    if importlib.util.find_spec("pbk") is None:
        raise CommandError(
            "the local regtest node needs the 'regtest' extra (py-bitcoinkernel): "
            "pip install 'coldstation[regtest]'"
        )


def _read_info(datadir: Path) -> dict[str, Any] | None:
    """``regtest.json`` if present and well formed."""
    try:
        info = json.loads((datadir / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not {"url", "cookie"} <= info.keys():
        return None
    return info


def _client(info: dict[str, Any], timeout: float = RPC_TIMEOUT) -> BitcoinCoreRPC:
    return BitcoinCoreRPC(str(info["url"]), RpcAuth.from_cookie(info["cookie"]), timeout)


def _answers(info: dict[str, Any]) -> bool:
    """True when the server named in ``info`` answers RPC with its cookie."""
    try:
        with _client(info, timeout=5.0) as rpc:
            rpc.block_count()
    except ChainError:
        return False
    return True


def _pid_alive(pid: Any) -> bool:
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def _rpc(datadir: Path) -> Iterator[BitcoinCoreRPC]:
    """A client for the running server; the node's refusals become one-line command errors
    (an unreachable node goes up as ChainUnavailable: exit 4)."""
    info = _read_info(datadir)
    if info is None:
        raise CommandError(
            f"no regtest node running in {datadir} (start one: coldstation-coordinator "
            f"regtest start --datadir {datadir})",
            ExitCode.NODE_UNAVAILABLE,
        )
    try:
        with _client(info) as rpc:
            yield rpc
    except RpcError as exc:
        raise CommandError(str(exc)) from exc


def _log_tail(datadir: Path, lines: int = 15) -> str:
    try:
        text = (datadir / LOG_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _print_json(value: dict[str, Any]) -> None:
    print(json.dumps(value, indent=2))


# -- start / stop / status ----------------------------------------------------------------


def start_command(args: argparse.Namespace) -> int:
    _require_kernel()
    datadir = _datadir(args).resolve()
    info = _read_info(datadir)
    if info is not None and _answers(info):
        _print_json({**info, "already_running": True})
        return 0
    if info is not None and _pid_alive(info.get("pid")):
        raise CommandError(
            f"a regtest server (pid {info['pid']}) is running in {datadir} but not answering;"
            f" see {datadir / LOG_FILE}"
        )
    for name in (INFO_FILE, PID_FILE):
        (datadir / name).unlink(missing_ok=True)  # left by a server that was killed
    process = _spawn(datadir, args.port)
    info = _wait_ready(datadir, process)
    _print_json({**info, "already_running": False})
    return 0


def _spawn(datadir: Path, port: int) -> subprocess.Popen[bytes]:
    """The server in its own session (so terminal signals do not reach it), logging to file."""
    try:
        datadir.mkdir(parents=True, exist_ok=True)
        with (datadir / LOG_FILE).open("ab") as log:
            command = [sys.executable, "-m", "online_coordinator.regtest.server"]
            command += ["--datadir", str(datadir), "--port", str(port)]
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    except OSError as exc:
        raise CommandError(f"cannot start the regtest server: {exc.strerror or exc}") from exc


def _wait_ready(datadir: Path, process: subprocess.Popen[bytes]) -> dict[str, Any]:
    """Wait until the new server answers RPC; on failure say why, with the log's last lines."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        status = process.poll()
        if status is not None:
            raise CommandError(
                f"regtest server exited with status {status}; {datadir / LOG_FILE} ends:\n"
                + _log_tail(datadir)
            )
        info = _read_info(datadir)
        if info is not None and _answers(info):
            return info
        time.sleep(_POLL)
    process.terminate()
    raise CommandError(
        f"regtest server did not answer within {START_TIMEOUT:g} s (stopped it); "
        f"{datadir / LOG_FILE} ends:\n" + _log_tail(datadir)
    )


def stop_command(args: argparse.Namespace) -> int:
    datadir = _datadir(args)
    info = _read_info(datadir)
    if info is None:
        print(f"not running ({datadir})")
        return 0
    if not _answers(info):
        if _pid_alive(info.get("pid")):
            raise CommandError(f"regtest server (pid {info.get('pid')}) is not answering")
        for name in (INFO_FILE, PID_FILE):
            (datadir / name).unlink(missing_ok=True)
        print(f"not running ({datadir}; removed files left by a server that was killed)")
        return 0
    with _rpc(datadir) as rpc:
        print(rpc.stop())
    # regtest.json goes once the node is closed; only then may it be restarted or copied.
    deadline = time.monotonic() + STOP_TIMEOUT
    while (datadir / INFO_FILE).exists() and _pid_alive(info.get("pid")):
        if time.monotonic() > deadline:
            raise CommandError(f"regtest server (pid {info.get('pid')}) has not exited yet")
        time.sleep(_POLL)
    return 0


def status_command(args: argparse.Namespace) -> int:
    """JSON status; exit 0 when running, 1 when not (so scripts can test it)."""
    datadir = _datadir(args)
    info = _read_info(datadir)
    if info is None:
        _print_json({"running": False, "datadir": str(datadir)})
        return 1
    try:
        with _client(info, timeout=10.0) as rpc:
            chain, height, mempool = rpc.chain_name(), rpc.block_count(), rpc.mempool_txids()
    except ChainError as exc:
        _print_json({"running": False, "datadir": str(datadir), "error": str(exc)})
        return 1
    _print_json(
        {**info, "running": True, "chain": chain, "height": height, "mempool": len(mempool)}
    )
    return 0


# -- mine / fund / reorg ------------------------------------------------------------------


def mine_command(args: argparse.Namespace) -> int:
    if args.count < 0:
        raise CommandError("count must not be negative")
    datadir = _datadir(args)
    address = args.address or (_read_info(datadir) or {}).get("faucet_address")
    with _rpc(datadir) as rpc:
        if not isinstance(address, str):
            raise CommandError(f"{datadir / INFO_FILE} names no faucet; pass --address")
        hashes = rpc.generate_to_address(args.count, address)
    for block_hash in hashes:
        print(block_hash)
    return 0


def fund_command(args: argparse.Namespace) -> int:
    try:
        sats = btc_to_sats(Decimal(args.amount))
    except (InvalidOperation, AmountError) as exc:
        raise CommandError(f"bad amount {args.amount!r}: {exc}") from exc
    if sats <= 0:
        raise CommandError("amount must be positive")
    with _rpc(_datadir(args)) as rpc:
        print(rpc.send_to_address(args.address, sats))
    return 0


def reorg_command(args: argparse.Namespace) -> int:
    with _rpc(_datadir(args)) as rpc:
        hashes = rpc.coldstation_reorg(args.depth, args.keep_transactions, args.extra_blocks)
    for block_hash in hashes:
        print(block_hash)
    return 0
