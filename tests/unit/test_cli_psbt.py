"""``coldstation-coordinator psbt ...``: JSON out, files in any encoding, exit codes."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from online_coordinator.cli import main
from shared.psbt import Psbt
from tests.vectors import load_json


@pytest.fixture
def roles() -> dict:
    return load_json("psbt/bip174_vectors.json")["role_tests"]


def _b64(role: dict) -> str:
    result = role["result"]
    return result["base64"] if isinstance(result, dict) else result


def test_decode_prints_inputs_outputs_fee_and_fields(tmp_path, roles, capsys):
    path = tmp_path / "p.psbt"
    path.write_text(_b64(roles["updater"]))
    assert main(["psbt", "decode", str(path), "--network", "testnet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["psbt_version"] == 0
    assert len(report["inputs"]) == 2 and len(report["outputs"]) == 2
    assert report["outputs"][0]["amount"] == 149_990_000
    assert report["outputs"][0]["address"].startswith("tb1q")
    in_total = sum(i["utxo"]["amount"] for i in report["inputs"])
    assert report["fee"] == in_total - report["total_out"] > 0
    assert "PSBT_IN_WITNESS_SCRIPT" in report["inputs"][1]["fields"]
    assert report["inputs"][0]["bip32_derivations"]


@pytest.mark.parametrize("encoding", ["binary", "base64", "hex"])
def test_every_input_encoding_is_accepted(tmp_path, roles, capsys, encoding):
    raw = base64.b64decode(_b64(roles["creator"]))
    data = {"binary": raw, "base64": base64.b64encode(raw), "hex": raw.hex().encode()}[encoding]
    path = tmp_path / "p"
    path.write_bytes(data)
    assert main(["psbt", "decode", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["fee"] is None  # no UTXOs yet


def test_combine_finalize_extract_pipeline(tmp_path, roles, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text(_b64(roles["signer_1"]))
    b.write_text(_b64(roles["signer_2"]))
    combined, final = tmp_path / "c.psbt", tmp_path / "f.psbt"
    assert main(["psbt", "combine", str(a), str(b), "-o", str(combined)]) == 0
    assert Psbt.parse(combined.read_bytes()).to_base64() == _b64(roles["combiner"])
    assert main(["psbt", "finalize", str(combined), "-o", str(final)]) == 0
    capsys.readouterr()
    assert main(["psbt", "extract", str(final)]) == 0
    assert capsys.readouterr().out.strip() == roles["extractor"]["result_tx_hex"]


def test_finalize_of_a_half_signed_psbt_exits_1_and_says_why(tmp_path, roles, capsys):
    a = tmp_path / "a"
    a.write_text(_b64(roles["signer_1"]))
    assert main(["psbt", "finalize", str(a), "-o", str(tmp_path / "out")]) == 1
    assert "incomplete: input 0" in capsys.readouterr().err
    assert (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["psbt", "decode", "{missing}"], "No such file"),
        (["psbt", "decode", "{garbage}"], "neither a binary PSBT"),
        (["psbt", "extract", "{unsigned}"], "input 0: not finalized"),
        (["psbt", "combine", "{unsigned}", "{other}", "-o", "{out}"], "different transaction"),
        (["psbt", "decode", "{bad_field}"], "PSBT_IN_PARTIAL_SIG"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, roles, capsys, args, message):
    files = {
        "missing": tmp_path / "nope",
        "garbage": tmp_path / "garbage",
        "unsigned": tmp_path / "unsigned",
        "other": tmp_path / "other",
        "out": tmp_path / "out",
        "bad_field": tmp_path / "bad",
    }
    files["garbage"].write_text("this is not a psbt")
    files["unsigned"].write_text(_b64(roles["creator"]))
    vectors = load_json("psbt/bip174_vectors.json")
    files["other"].write_text(vectors["valid"][0]["base64"])
    invalid = next(v for v in vectors["invalid"] if "partial signature" in v["description"])
    files["bad_field"].write_text(invalid["base64"])
    code = main([a.format(**{k: str(v) for k, v in files.items()}) for a in args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1


def test_console_script_is_installed_and_reads_stdin(roles):
    exe = Path(sys.executable).with_name("coldstation-coordinator")
    assert exe.exists(), "pip install -e . installs the console scripts beside python"
    done = subprocess.run(
        [exe, "psbt", "decode", "-"],
        input=_b64(roles["creator"]).encode(),
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["unsigned_txid"]
