"""Configuration safety, the fee-rate cap, and every way a payload can arrive."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from online_coordinator.chain.rpc import ChainUnavailable
from online_coordinator.commands.batch import parse_fee_rate
from online_coordinator.commands.common import CommandError
from online_coordinator.config import ConfigError, load_config
from online_coordinator.fees import fee_choice
from online_coordinator.store import Store, StoreError
from online_coordinator.transport import receive, ur_parts, write_qr_video
from shared.ur.registry import encode_bytes
from tests.coordinator.conftest import Desk

NODE = '[node]\nurl = "http://127.0.0.1:1"\n'


def write(state: Path, text: str, mode: int = 0o600) -> None:
    state.mkdir(parents=True, exist_ok=True)
    path = state / "coordinator.toml"
    path.write_text(text)
    os.chmod(path, mode)


def test_password_in_a_world_readable_config_is_refused(tmp_path: Path) -> None:
    write(tmp_path, f'network = "regtest"\n{NODE}user = "u"\npassword = "p"\n', 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_config(tmp_path)
    os.chmod(tmp_path / "coordinator.toml", 0o600)
    assert load_config(tmp_path).node.password == "p"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f'network = "regtest"\nfoo = 1\n{NODE}cookie = "/c"\n', "unknown setting 'foo'"),
        (f'network = "moon"\n{NODE}cookie = "/c"\n', "moon"),
        (f'network = "regtest"\n{NODE}', "cookie, or user and password"),
        (f'network = "regtest"\nconfirmations = 0\n{NODE}cookie = "/c"\n', "confirmations"),
        ('network = "regtest"\n[node\n', "coordinator.toml"),
        (
            f'network = "regtest"\n{NODE}cookie = "/c"\n[fees]\nmax_fee_rate = 100000\n',
            "max_fee_rate has no unit; write max_fee_rate_sat_per_vb = 100",
        ),
        (
            f'network = "regtest"\n{NODE}cookie = "/c"\n[fees]\nmax_fee_rate_sat_per_vb = "x"\n',
            "must be a number of sat/vB",
        ),
        (
            f'network = "regtest"\n{NODE}cookie = "/c"\n'
            "[fees]\nfallback_fee_rate_sat_per_vb = 2.0001\n",
            "at most 3 decimals",
        ),
        (f'network = "regtest"\n{NODE}cookie = "/c"\n[fees]\nmax_fee = 1\n', "unknown setting"),
    ],
)
def test_bad_configs_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    write(tmp_path, text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path)


def test_fee_rates_are_read_in_the_sat_per_vb_their_keys_name(tmp_path: Path) -> None:
    """Issue 18: `max_fee_rate = 100000` had no unit while the docs said sat/vB."""
    fees = "[fees]\nmax_fee_rate_sat_per_vb = 55.5\nfallback_fee_rate_sat_per_vb = 3\n"
    write(tmp_path, f'network = "regtest"\n{NODE}cookie = "/c"\n{fees}')
    config = load_config(tmp_path)
    assert (config.max_fee_rate, config.fallback_fee_rate) == (55_500, 3_000)


def test_a_database_from_a_newer_coordinator_is_refused(tmp_path: Path) -> None:
    Store.open(tmp_path / "db.sqlite").close()
    with Store.open(tmp_path / "db.sqlite") as store:
        store.db.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="upgrade the coordinator"):
        Store.open(tmp_path / "db.sqlite")


def test_an_older_database_is_migrated_in_place(tmp_path: Path) -> None:
    import sqlite3

    from online_coordinator.store import MIGRATIONS

    db = sqlite3.connect(tmp_path / "db.sqlite")
    db.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    db.execute("INSERT INTO events (time, kind, severity, message) VALUES (1, 'k', 'alert', 'm')")
    db.commit()
    db.close()
    with Store.open(tmp_path / "db.sqlite") as store:
        assert store.one("PRAGMA user_version")[0] == len(MIGRATIONS)
        row = store.one("SELECT message, acknowledged FROM events")
        assert (row["message"], row["acknowledged"]) == ("m", None)


def test_fee_rate_comes_from_the_node_and_is_capped(desk: Desk) -> None:
    config = load_config(desk.state)
    fallback = fee_choice(config, None)  # fresh regtest: no estimate
    assert (fallback.rate, fallback.source) == (config.fallback_fee_rate, "fallback")
    assert "no estimate (Insufficient data or no feerate found)" in fallback.note
    desk.node.set_fee_estimate(5_000)
    assert fee_choice(config, None).rate == 5_000
    desk.node.set_fee_estimate(1_000_000)
    capped = fee_choice(config, None)
    assert (capped.rate, capped.source) == (config.max_fee_rate, "capped")
    assert fee_choice(config, 3_000).rate == 3_000


@pytest.mark.parametrize(("text", "rate"), [("1", 1000), ("2.5", 2500), ("12.345", 12345)])
def test_fee_rate_argument(text: str, rate: int) -> None:
    assert parse_fee_rate(text) == rate


@pytest.mark.parametrize("text", ["0.5", "abc", "1.0001", "nan", "-3"])
def test_bad_fee_rate_argument(text: str) -> None:
    with pytest.raises(CommandError):
        parse_fee_rate(text)


def test_payload_arrives_the_same_from_file_ur_text_and_video(tmp_path: Path) -> None:
    payload = os.urandom(3000)
    raw = tmp_path / "payload.bin"
    raw.write_bytes(payload)
    text = tmp_path / "payload.ur.txt"
    text.write_text("junk line\n" + "\n".join(ur_parts("bytes", encode_bytes(payload))) + "\n")
    video = tmp_path / "payload.avi"
    write_qr_video("bytes", encode_bytes(payload), video)
    assert receive(str(raw)).data == payload
    assert receive(str(text)).data == payload
    received = receive(str(video))
    assert received.data == payload and received.how == "video"


def test_incomplete_or_missing_payloads_are_clear_errors(tmp_path: Path) -> None:
    parts = ur_parts("bytes", encode_bytes(os.urandom(3000)))
    partial = tmp_path / "partial.ur.txt"
    partial.write_text(parts[0] + "\n")
    with pytest.raises(CommandError, match="incomplete"):
        receive(str(partial))
    with pytest.raises(CommandError, match="No such file"):
        receive(str(tmp_path / "missing.psbt"))
    with pytest.raises(CommandError, match="camera:N"):
        receive("camera:front")


def test_init_never_overwrites_a_config_nor_writes_a_broken_one(desk: Desk) -> None:
    from online_coordinator.config import write_config

    tmp_path = desk.tmp
    with pytest.raises(ConfigError, match="not running"):
        write_config(tmp_path / "a", "regtest", tmp_path / "no-regtest")
    assert not (tmp_path / "a" / "coordinator.toml").exists()
    with pytest.raises(ChainUnavailable, match="wrote nothing"):  # no node answers there
        write_config(tmp_path / "b", "regtest", ("http://127.0.0.1:1", tmp_path / "cookie"))
    assert not (tmp_path / "b" / "coordinator.toml").exists()
    before = (desk.state / "coordinator.toml").read_bytes()
    node = load_config(desk.state).node
    with pytest.raises(ConfigError, match="already exists"):
        write_config(desk.state, "mainnet", (node.url, node.cookie))
    assert (desk.state / "coordinator.toml").read_bytes() == before


def test_migration_3_renames_states_to_the_words_status_uses(tmp_path: Path) -> None:
    import sqlite3

    from online_coordinator.store import MIGRATIONS

    db = sqlite3.connect(tmp_path / "db.sqlite")
    db.executescript(MIGRATIONS[0] + ";" + MIGRATIONS[1] + "; PRAGMA user_version = 2;")
    db.executescript(
        "INSERT INTO wallets VALUES (1, 'w', 'regtest', 'single', NULL, 0, 0);"
        "INSERT INTO batches VALUES (1, 1, 'sent', x'00', 'p', 'broadcast', 0);"
        "INSERT INTO batches VALUES (2, 1, 'deep', x'00', 'p', 'confirmed', 0);"
        "INSERT INTO batches VALUES (3, 1, 'mined', x'00', 'p', 'broadcast', 0);"
        + "".join(
            f"INSERT INTO requests VALUES ({n}, {n}, x'0{n}', 'payment', NULL, x'00', x'00', "
            f"'t{n}', 1, 1, 0, 1, 'broadcast');"
            for n in (1, 2, 3)
        )
        + "INSERT INTO broadcasts VALUES (1, 1, 't1', 'w1', x'00', 0, 0, 1, NULL, NULL, 'sent');"
        "INSERT INTO broadcasts VALUES (2, 2, 't2', 'w2', x'00', 0, 0, 1, 'h', 5, 'final');"
        "INSERT INTO broadcasts VALUES (3, 3, 't3', 'w3', x'00', 0, 0, 1, 'h', 9, 'confirmed');"
    )
    db.commit()
    db.close()
    with Store.open(tmp_path / "db.sqlite") as store:
        batches = [r["state"] for r in store.all("SELECT state FROM batches ORDER BY id")]
        rows = [r["state"] for r in store.all("SELECT state FROM broadcasts ORDER BY id")]
        assert batches == ["in_mempool", "final", "confirmed"]
        assert rows == ["mempool", "final", "confirmed"]
        assert store.meta("last_sync") is None
