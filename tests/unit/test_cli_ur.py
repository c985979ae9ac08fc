"""``coldstation-coordinator ur encode | decode``."""

from __future__ import annotations

import io
import random

import pytest

from online_coordinator.cli import main
from tests.vectors import load_json


def _encode(tmp_path, capsys, payload: bytes, *args: str) -> list[str]:
    source = tmp_path / "payload"
    source.write_bytes(payload)
    assert main(["ur", "encode", str(source), *args]) == 0
    return capsys.readouterr().out.split()


def _decode(monkeypatch, lines: list[str], out) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    return main(["ur", "decode", "-o", str(out)])


def test_parts_in_any_order_with_duplicates_and_junk(tmp_path, capsys, monkeypatch):
    payload = random.Random(1).randbytes(3_000)
    parts = _encode(
        tmp_path, capsys, payload, "--type", "bytes", "--max-fragment", "100", "--parts", "45"
    )
    assert len(parts) == 45 and all(p.startswith("ur:bytes/") for p in parts)
    mixed = ["garbage line", parts[5], *reversed(parts), parts[5], "ur:bytes/oops"]
    random.Random(2).shuffle(mixed)
    assert _decode(monkeypatch, mixed, tmp_path / "out") == 0
    assert (tmp_path / "out").read_bytes() == payload
    err = capsys.readouterr().err
    assert "warning: line" in err and "ignored" in err


def test_psbt_is_validated_before_encoding(tmp_path, capsys):
    source = tmp_path / "bad.psbt"
    source.write_text("cHNidP8AAAA=")
    assert main(["ur", "encode", str(source)]) == 2
    assert "not a valid crypto-psbt payload" in capsys.readouterr().err


def test_psbt_round_trip_writes_binary_psbt(tmp_path, capsys, monkeypatch):
    text = load_json("psbt/bip174_vectors.json")["valid"][5]["base64"]
    parts = _encode(tmp_path, capsys, text.encode(), "--upper", "--max-fragment", "60")
    assert all(p.startswith("UR:CRYPTO-PSBT/") for p in parts)
    assert _decode(monkeypatch, parts, tmp_path / "out.psbt") == 0
    assert (tmp_path / "out.psbt").read_bytes()[:5] == b"psbt\xff"


def test_incomplete_input_exits_2(tmp_path, capsys, monkeypatch):
    parts = _encode(tmp_path, capsys, bytes(2_000), "--type", "bytes", "--max-fragment", "100")
    assert _decode(monkeypatch, parts[:3], tmp_path / "out") == 2
    assert "incomplete" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [["--max-fragment", "5"], ["--parts", "0"]])
def test_bad_options_exit_2(tmp_path, capsys, bad):
    source = tmp_path / "p"
    source.write_bytes(b"x" * 100)
    assert main(["ur", "encode", str(source), "--type", "bytes", *bad]) == 2
