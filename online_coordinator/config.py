"""The coordinator's configuration file, ``coordinator.toml`` in its state directory.

Credentials for the node come from a cookie file or from this file, never from the
command line (where ``ps`` shows them to every user) nor from the environment. A config
file holding a password must not be readable by other users.

Example::

    network = "regtest"
    requester = "ops-desk-1"
    confirmations = 6

    [node]
    url = "http://127.0.0.1:18443"
    cookie = "/var/lib/bitcoind/regtest/.cookie"   # or: user = "..." and password = "..."
    timeout_seconds = 30         # the deadline for each whole RPC call, reply included

    [fees]
    max_fee_rate_sat_per_vb = 100        # never pay more, whatever the node estimates
    fallback_fee_rate_sat_per_vb = 2     # when the node has no estimate (fresh regtest)
    target_blocks = 6

    [requests]
    expiry_hours = 24
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from online_coordinator.chain.identity import ChainMismatch, check_chain
from online_coordinator.chain.rpc import DEFAULT_TIMEOUT, BitcoinCoreRPC, ChainUnavailable, RpcAuth
from online_coordinator.fees import MIN_RELAY_FEE_RATE
from online_coordinator.store import Store
from shared.bitcoin.address import Network, network_by_name
from shared.bitcoin.amount import AmountError, parse_sat_per_vb

CONFIG_NAME = "coordinator.toml"
DATABASE_NAME = "coordinator.sqlite"
PRIVATE_DIR_MODE = 0o700
MIN_TIMEOUT_SECONDS = 0.5
MAX_TIMEOUT_SECONDS = 600.0
PRIVATE_FILE_MODE = 0o600


class ConfigError(ValueError):
    """A missing, malformed or unsafe configuration file."""


@dataclass(frozen=True)
class NodeConfig:
    url: str
    cookie: Path | None = None
    user: str | None = None
    password: str | None = None
    #: The deadline for each whole RPC call (connect, send, every byte of the reply).
    timeout_seconds: float = DEFAULT_TIMEOUT

    def auth(self) -> RpcAuth:
        if self.cookie is not None:
            return RpcAuth.from_cookie(self.cookie)
        assert self.user is not None and self.password is not None
        return RpcAuth(self.user, self.password)


@dataclass(frozen=True)
class Config:
    state_dir: Path
    network: Network
    node: NodeConfig
    requester: str = "ops"
    confirmations: int = 6
    max_fee_rate: int = 100_000
    fallback_fee_rate: int = 2_000
    target_blocks: int = 6
    expiry_hours: int = 24
    database_url: str | None = None  # PostgreSQL; None: the SQLite file in the state

    @property
    def database(self) -> Path | str:
        """Where the store is: a PostgreSQL URL, or the state folder's SQLite file."""
        return self.database_url or self.state_dir / DATABASE_NAME

    def rpc(self) -> BitcoinCoreRPC:
        """The node, once its chain is checked against ``network`` (ChainMismatch if not).

        One client per configuration, so a command checks the chain once however many
        calls it makes; every command that talks to the node comes through here.
        """
        return self._checked_rpc

    @functools.cached_property
    def _checked_rpc(self) -> BitcoinCoreRPC:
        rpc = BitcoinCoreRPC(self.node.url, self.node.auth(), self.node.timeout_seconds)
        check_chain(rpc, self.network)
        return rpc


def load_config(state_dir: Path) -> Config:
    """Read and check ``coordinator.toml``; the state folder and config are kept private."""
    path = state_dir / CONFIG_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path} does not exist: run `coldstation-coordinator init` first"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    config = _from_document(doc, state_dir, path)
    secure_state(state_dir)
    return config


def secure_state(state_dir: Path) -> None:
    """The state folder 700 and the config 600 (the store keeps its own files 600).

    Tightened on every load, so a folder created by hand or copied with a loose umask does
    not stay readable by other users; a password in a readable config is still refused
    before this runs, so it is never silently "fixed".
    """
    try:
        if stat.S_IMODE(state_dir.stat().st_mode) != PRIVATE_DIR_MODE:
            state_dir.chmod(PRIVATE_DIR_MODE)
        config = state_dir / CONFIG_NAME
        if config.exists() and stat.S_IMODE(config.stat().st_mode) & ~PRIVATE_FILE_MODE:
            config.chmod(PRIVATE_FILE_MODE)
    except OSError as exc:
        raise ConfigError(f"cannot make {state_dir} private: {exc.strerror or exc}") from exc


def _from_document(doc: dict[str, Any], state_dir: Path, path: Path) -> Config:
    allowed = {"network", "requester", "confirmations", "node", "fees", "requests", "database"}
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise ConfigError(f"{path}: unknown setting {unknown[0]!r}")
    try:
        network = network_by_name(_get(doc, "network", str, path))
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    node = _node(_table(doc, "node", path), path)
    fees, requests = _table(doc, "fees", path, {}), _table(doc, "requests", path, {})
    unknown = sorted(set(fees) - _FEE_KEYS - {"max_fee_rate", "fallback_fee_rate"})
    if unknown:  # the old unitless keys are named by _fee_rate, with their replacement
        raise ConfigError(f"{path}: unknown setting [fees] {unknown[0]!r}")
    config = Config(
        state_dir=state_dir,
        network=network,
        node=node,
        requester=_get(doc, "requester", str, path, "ops"),
        confirmations=_get(doc, "confirmations", int, path, 6),
        max_fee_rate=_fee_rate(fees, "max_fee_rate", path, 100_000),
        fallback_fee_rate=_fee_rate(fees, "fallback_fee_rate", path, 2_000),
        target_blocks=_get(fees, "target_blocks", int, path, 6),
        expiry_hours=_get(requests, "expiry_hours", int, path, 24),
        database_url=_database_url(_table(doc, "database", path, {}), path),
    )
    _check_ranges(config, path)
    return config


def _database_url(table: dict[str, Any], path: Path) -> str | None:
    """``[database] url``: a PostgreSQL server instead of the state folder's SQLite file.
    A password in the URL makes the file a secret: it must then be mode 600 (prefer a
    ``~/.pgpass`` file or peer authentication over a local socket)."""
    unknown = sorted(set(table) - {"url"})
    if unknown:
        raise ConfigError(f"{path}: unknown setting [database] {unknown[0]!r}")
    if "url" not in table:
        return None
    url = _get(table, "url", str, path)
    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"{path}: [database] url must be a postgresql:// URL")
    authority = url.split("//", 1)[1].split("/", 1)[0]
    has_password = "@" in authority and ":" in authority.split("@", 1)[0]
    if has_password and _others_can_read(path):
        raise ConfigError(
            f"{path} holds a database password and is readable by other users: chmod 600 {path}"
        )
    return url


def _node(table: dict[str, Any], path: Path) -> NodeConfig:
    unknown = sorted(
        set(table) - {"url", "cookie", "user", "password", "regtest", "timeout_seconds"}
    )
    if unknown:
        raise ConfigError(f"{path}: unknown setting [node] {unknown[0]!r}")
    timeout = table.get("timeout_seconds", DEFAULT_TIMEOUT)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not (MIN_TIMEOUT_SECONDS <= timeout <= MAX_TIMEOUT_SECONDS)
    ):
        raise ConfigError(
            f"{path}: [node] timeout_seconds must be a number of seconds, "
            f"{MIN_TIMEOUT_SECONDS:g}..{MAX_TIMEOUT_SECONDS:g}"
        )
    return dataclasses.replace(_node_without_timeout(table, path), timeout_seconds=timeout)


def _node_without_timeout(table: dict[str, Any], path: Path) -> NodeConfig:
    if "regtest" in table:
        return _regtest_node(Path(_get(table, "regtest", str, path)), path)
    url = _get(table, "url", str, path)
    cookie = table.get("cookie")
    user, password = table.get("user"), table.get("password")
    if (cookie is None) == (user is None or password is None):
        raise ConfigError(f"{path}: [node] needs either cookie, or user and password")
    if password is not None and _others_can_read(path):
        raise ConfigError(
            f"{path} holds a node password and is readable by other users: chmod 600 {path}"
        )
    return NodeConfig(url, Path(cookie) if cookie else None, user, password)


def _regtest_node(datadir: Path, path: Path) -> NodeConfig:
    """The local regtest's address is read when used: it gets a new port on each start."""
    try:
        info = json.loads((datadir / "regtest.json").read_text())
        return NodeConfig(str(info["url"]), Path(info["cookie"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path}: the local regtest in {datadir} is not running ({exc}); "
            "run `coldstation-coordinator regtest start` first"
        ) from exc


def _check_ranges(config: Config, path: Path) -> None:
    if not 1 <= config.confirmations <= 1000:
        raise ConfigError(f"{path}: confirmations must be 1..1000")
    if not MIN_RELAY_FEE_RATE <= config.fallback_fee_rate <= config.max_fee_rate:
        raise ConfigError(
            f"{path}: need {MIN_RELAY_FEE_RATE / 1000:g} <= fallback_fee_rate_sat_per_vb <= "
            "max_fee_rate_sat_per_vb"
        )
    if not 1 <= config.target_blocks <= 1008 or not 1 <= config.expiry_hours <= 24 * 30:
        raise ConfigError(f"{path}: target_blocks must be 1..1008 and expiry_hours 1..720")
    if not config.requester.isprintable() or not 0 < len(config.requester) <= 64:
        raise ConfigError(f"{path}: requester must be 1..64 printable characters")


def _others_can_read(path: Path) -> bool:
    return bool(path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))


def _table(
    doc: dict[str, Any], name: str, path: Path, default: dict[str, Any] | None = None
) -> dict[str, Any]:
    value = doc.get(name, default)
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [{name}] section is missing")
    return value


_FEE_KEYS = frozenset({"max_fee_rate_sat_per_vb", "fallback_fee_rate_sat_per_vb", "target_blocks"})


def _fee_rate(fees: dict[str, Any], name: str, path: Path, default_sat_per_kvb: int) -> int:
    """``[fees] NAME_sat_per_vb`` (a number, up to 3 decimals) as sat/kvB. The unit is in
    the key: the old unitless ``NAME`` (sat/kvB) is refused with its replacement, because
    people read it as sat/vB."""
    if name in fees:
        old = fees[name]
        shown = f"{old / 1000:g}" if isinstance(old, int) and not isinstance(old, bool) else "N"
        raise ConfigError(
            f"{path}: [fees] {name} has no unit; write {name}_sat_per_vb = {shown} "
            "(the old value was sat/kvB)"
        )
    key = f"{name}_sat_per_vb"
    value = fees.get(key)
    if value is None:
        return default_sat_per_kvb
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{path}: [fees] {key} must be a number of sat/vB")
    try:
        return parse_sat_per_vb(repr(value))
    except AmountError as exc:
        raise ConfigError(f"{path}: [fees] {key}: {exc}") from None


def _get(table: dict[str, Any], name: str, kind: type, path: Path, default: Any = None) -> Any:
    value = table.get(name, default)
    if value is None:
        raise ConfigError(f"{path}: {name} is required")
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ConfigError(f"{path}: {name} must be {kind.__name__}")
    return value


def write_config(
    state_dir: Path,
    network: str,
    node: tuple[str, Path] | Path,
    requester: str = "ops",
) -> Path:
    """A first config: ``node`` is (url, cookie file) of a node, or a local regtest's datadir.

    Cookie authentication only, so the file holds no password to protect (it is mode 600
    all the same). The node must answer and be on ``network`` (its chain name and genesis
    block are checked) before anything is written: ChainUnavailable or ChainMismatch
    otherwise.
    """
    path = state_dir / CONFIG_NAME
    if path.exists():
        raise ConfigError(f"{path} already exists: edit it, or use another --state directory")
    if isinstance(node, tuple):
        node_table = f"url = {_toml(node[0])}\ncookie = {_toml(str(node[1].resolve()))}\n"
    else:
        node_table = f"regtest = {_toml(str(node.resolve()))}\n"
    text = (
        f"network = {_toml(network)}\nrequester = {_toml(requester)}\nconfirmations = 6\n\n"
        f"[node]\n{node_table}\n"
        "[fees]\nmax_fee_rate_sat_per_vb = 100\nfallback_fee_rate_sat_per_vb = 2\n"
        "target_blocks = 6\n\n"
        "[requests]\nexpiry_hours = 24\n"
    )
    config = _from_document(tomllib.loads(text), state_dir, path)  # check before writing
    try:
        config.rpc()  # the node answers and is on ``network``; else nothing is written
    except ChainMismatch as exc:
        raise ChainMismatch(f"{exc}; init wrote nothing") from exc
    except ChainUnavailable as exc:
        raise ChainUnavailable(
            f"{exc} (init checks the node's chain first; it wrote nothing)"
        ) from exc
    state_dir.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    secure_state(state_dir)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def init_state(
    state_dir: Path, network: str, node: tuple[str, Path] | Path, requester: str = "ops"
) -> Path:
    """``init``: the first config (:func:`write_config`, node checked first) and an empty
    store with its schema, so the first real command finds both."""
    path = write_config(state_dir, network, node, requester)
    Store.open(load_config(state_dir).database).close()
    return path


def _toml(text: str) -> str:
    """A TOML basic string (JSON's escaping is valid TOML for these characters)."""
    return json.dumps(text)
