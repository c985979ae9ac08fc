"""Every command line: ``--version``, and a reader that goes away (issue 18: ``status |
head`` printed a BrokenPipeError traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shared.adapters.console import BROKEN_PIPE_EXIT

BIN = Path(sys.executable).parent
PROGRAMS = ["coldstation-appliance", "coldstation-coordinator", "coldstation-audit"]


@pytest.mark.parametrize("program", PROGRAMS)
def test_every_program_says_its_version(program):
    done = subprocess.run([BIN / program, "--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.startswith(f"{program} ")
    assert done.stdout.split()[1][0].isdigit()


def _closed_early(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv``, read a little of its output, then close the pipe (``| head -c 10``)."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.read(10)
    process.stdout.close()
    stderr = process.stderr.read()
    process.wait(timeout=60)
    return subprocess.CompletedProcess(argv, process.returncode, b"", stderr)


def test_a_coordinator_whose_reader_goes_away_stops_quietly(tmp_path):
    payload = tmp_path / "big.bin"
    payload.write_bytes(bytes(range(256)) * 2000)
    done = _closed_early(
        [
            BIN / "coldstation-coordinator",
            "ur",
            "encode",
            str(payload),
            "--type",
            "bytes",
            "--max-fragment",
            "10",
        ]
    )
    assert done.returncode == BROKEN_PIPE_EXIT
    assert b"Traceback" not in done.stderr and b"BrokenPipe" not in done.stderr


def test_the_wrapper_ends_quietly_on_a_closed_pipe_and_passes_other_errors(tmp_path):
    script = tmp_path / "noisy.py"
    script.write_text(
        "import sys\n"
        "from shared.adapters.console import quiet_broken_pipe\n"
        "@quiet_broken_pipe\n"
        "def main(argv=None):\n"
        "    if argv == ['boom']:\n"
        "        raise ValueError('not a pipe problem')\n"
        "    for n in range(200000):\n"
        "        print('line', n)\n"
        "    return 0\n"
        "sys.exit(main(sys.argv[1:] or None))\n"
    )
    root = str(Path(__file__).resolve().parents[2])
    done = _closed_early(
        [
            sys.executable,
            "-c",
            f"import sys; sys.path.insert(0, {root!r}); exec(open({str(script)!r}).read())",
        ]
    )
    assert done.returncode == BROKEN_PIPE_EXIT and done.stderr == b""
    other = subprocess.run(
        [sys.executable, str(script), "boom"],
        capture_output=True,
        cwd=root,
        check=False,
        env={"PYTHONPATH": root},
    )
    assert other.returncode == 1 and b"ValueError: not a pipe problem" in other.stderr
