"""Evidence text never reaches the auditor's terminal (or the report files) raw.

Issue 12: escape sequences in the evidence reached the auditor's terminal and could paint a
fake "OK". The label here recolours "OK" green and then starts a line of its own; printed
raw it would read as a clean verdict. Everything goes through ``coldstation-audit``'s real
command line and report writers.
"""

from __future__ import annotations

import json
from pathlib import Path

from shared.audit.text import printable, printable_lines
from tests.audit.conftest import SoftCold, SoftDesk, run_audit, soft_ceremony, write_evidence

HOSTILE = "treasury\x1b[32mOK\x1b[0m\naudit replay: OK: every check holds"
SHOWN = "treasury\\x1b[32mOK\\x1b[0m\\naudit replay: OK: every check holds"
RAW = ("\x1b", "\x9b", "\r", "\x07")


def hostile_world(tmp_path: Path) -> list[str]:
    """A wallet named HOSTILE whose birth height is a lie, so a finding names it; an alert
    and a policy file name carrying escapes too."""
    cold, desk = SoftCold("cold-1"), SoftDesk()
    wallet = desk.import_single(HOSTILE, cold)
    wallet.birth_height = 1_000_000
    soft_ceremony(desk, wallet, [cold], 1)
    args = write_evidence(tmp_path, [cold], desk)
    coordinator = Path(args[-1])
    document = json.loads(coordinator.read_text())
    document["alerts"] = [
        {
            "time": 1,
            "kind": "outflow\x1b[2K",
            "message": "\x1b]0;pwned\x07all good\r",
            "acknowledged": 0,
        }
    ]
    coordinator.write_text(json.dumps(document))
    policies = tmp_path / f"bundle-{cold.id}" / "policies"
    (policies / "0001.cbor").rename(policies / "0001\x1b[2K\rOK.cbor")
    return args


def test_terminal_summary_escapes_every_control_character(tmp_path: Path) -> None:
    run = run_audit(*hostile_world(tmp_path), reports=tmp_path)
    assert run.code == 1
    assert not any(c in run.out for c in RAW), repr(run.out)
    lines = run.out.splitlines()
    assert lines[0] == "audit replay: 2 FINDING(S)"
    assert not any(line.startswith("audit replay: OK") for line in lines)  # no forged verdict
    finding = next(line for line in lines if "claims birth height" in line)
    assert f"wallet {SHOWN} claims birth height 1000000" in finding
    assert "policy version 1 is filed as 0001\\x1b[2K\\rOK.cbor" in run.out


def test_html_report_escapes_control_characters_and_markup(tmp_path: Path) -> None:
    run = run_audit(*hostile_world(tmp_path), reports=tmp_path)
    assert not any(c in run.html for c in RAW)
    assert f"wallet {SHOWN} claims birth height" in run.html
    assert "outflow\\x1b[2K: \\x1b]0;pwned\\x07all good\\r" in run.html  # the alert
    assert "0001\\x1b[2K\\rOK.cbor" in run.html


def test_json_report_keeps_the_text_but_never_a_raw_control_character(tmp_path: Path) -> None:
    run = run_audit(*hostile_world(tmp_path), reports=tmp_path)
    text = (tmp_path / "report.json").read_text()
    assert not any(c in text for c in RAW)
    assert any(HOSTILE in f["message"] for f in run.report["findings"])  # exact, for machines


def test_unusable_evidence_error_is_one_escaped_line(tmp_path: Path) -> None:
    cold, desk = SoftCold("cold-1"), SoftDesk()
    desk.import_single("treasury", cold)
    args = write_evidence(tmp_path, [cold], desk)
    transcripts = tmp_path / f"bundle-{cold.id}" / "transcripts"
    (transcripts / "x\x1b[32mOK\x1b[0m\nline.cbor").write_bytes(b"\xa0")
    run = run_audit(*args)
    assert run.code == 2 and run.out == ""
    assert run.err.count("\n") == 1 and not any(c in run.err for c in RAW)
    assert (
        "transcripts/x\\x1b[32mOK\\x1b[0m\\nline.cbor: a transcript's name must be its "
        "SHA-256 in hex" in run.err
    )


def test_printable_escapes_controls_and_keeps_honest_text() -> None:
    assert printable("Zahlung an Müller, 東京 – ok") == "Zahlung an Müller, 東京 – ok"
    assert printable("a\x1bb\x9bc\x7fd\te\r\n") == "a\\x1bb\\x9bc\\x7fd\\te\\r\\n"
    assert printable("safe\u202etxt.exe\u2028") == "safe\\u202etxt.exe\\u2028"  # bidi, LS
    assert printable(b"\x1b") == "b'\\x1b'"  # any object, by its str()
    assert printable_lines(["one", "two\nthree"]) == "one\ntwo\\nthree"
