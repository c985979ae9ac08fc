"""Every command line: ``--version``, and a reader that goes away (issue 18: ``status |
head`` printed a BrokenPipeError traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shared.adapters.console import BROKEN_PIPE_EXIT, INTERRUPTED_EXIT

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
        "from shared.adapters.console import quiet_exits\n"
        "@quiet_exits\n"
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


def test_ctrl_c_at_a_pin_prompt_stops_in_one_line_and_leaves_nothing(tmp_path):
    """An operator who presses Ctrl-C while ``init`` waits for a PIN: exit 130, one line,
    no traceback, and no state directory (nothing was made before the PINs)."""
    import os
    import signal
    import time

    read, write = os.pipe()  # held open and never written: the prompt waits
    state = tmp_path / "station"
    process = subprocess.Popen(
        [
            BIN / "coldstation-appliance",
            "--state",
            str(state),
            "--pin-fd",
            str(read),
            "init",
            "--demo",
        ],
        pass_fds=(read,),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    os.close(read)
    try:
        time.sleep(3)  # imported and waiting at the first PIN
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        os.close(write)
    assert process.returncode == INTERRUPTED_EXIT, stderr
    assert b"Traceback" not in stderr and b"interrupted" in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not state.exists()


COMPLETES = [
    ("coldstation-coordinator", ["ba"], "batch"),
    ("coldstation-coordinator", ["batch", "create", "--"], "--fee-rate"),
    ("coldstation-appliance", ["address-"], "address-check"),
    ("coldstation-audit", ["replay", "--coordinator-"], "--coordinator-export"),
]


@pytest.mark.parametrize(("program", "words", "offered"), COMPLETES)
def test_bash_completes_commands_and_options_from_the_parser(program, words, offered):
    """The script ``--print-completion bash`` prints, loaded into a real bash, offers the
    program's subcommands and their options."""
    script = subprocess.run(
        [BIN / program, "--print-completion", "bash"], capture_output=True, text=True, check=True
    ).stdout
    function = "_shtab_" + program.replace("-", "_")
    line = " ".join([program, *words])
    probe = (
        f'{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words)}; COMP_LINE="{line}"; '
        f'COMP_POINT=${{#COMP_LINE}}; {function}; printf "%s\\n" "${{COMPREPLY[@]}}"'
    )
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert offered in done.stdout.split(), done.stdout
