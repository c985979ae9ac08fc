"""Every command the README and the runbooks show, read as a user would type it, is one the
program accepts (issue 18: the runbooks defined `C` with `--state` where the coordinator
refused it). Each command line of the docs' code blocks is taken literally, its shell
variable expanded as the doc defines it, an optional part (``[--json]``) once with it and
once without, the first of alternatives (``a|b``), and parsed by the program's own argument
parser: a wrong option, a missing argument or a renamed subcommand fails here.

Running each block end to end needs the room (tokens, PINs, a camera); the demo
(``tests/e2e``) runs the main flow. This test keeps the docs from drifting off the parsers.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from appliance.cli import build_parser as appliance_parser
from online_coordinator.audit_cli import build_parser as audit_parser
from online_coordinator.cli import build_parser as coordinator_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("docs/**/*.md"))]
PARSERS = {
    "coldstation-appliance": appliance_parser,
    "coldstation-coordinator": coordinator_parser,
    "coldstation-audit": audit_parser,
}
#: The runbooks' shorthand: ``A`` and ``C`` (README: ``$A``, ``$C``).
SHORTHAND = {"A": "coldstation-appliance", "C": "coldstation-coordinator"}
#: Placeholders a reader fills in, and what stands in for them here (``...`` after an
#: option is its value; anywhere else it means "more of the same" and is left out).
FILL = {"...": "x", "bc1q...": "bc1qx", "HEX": "00", "FD": "3"}


def _filled(words: list[str]) -> list[str]:
    out: list[str] = []
    for word in words:
        if word == "..." and not (out and out[-1].startswith("--")):
            continue
        out.append(FILL.get(word, word))
    return out


def _blocks(text: str) -> list[list[str]]:
    """The lines of each fenced code block, continuation lines joined."""
    blocks, inside, current = [], False, []
    for line in text.splitlines():
        if line.startswith("```"):
            if inside:
                blocks.append(current)
            inside, current = not inside, []
            continue
        if inside:
            if current and current[-1].endswith("\\"):
                current[-1] = current[-1][:-1] + " " + line.strip()
            else:
                current.append(line)
    return blocks


def _program(words: list[str], defined: dict[str, list[str]]) -> list[str] | None:
    """The command's words with its program first, or None when it is no command of ours."""
    first = words[0]
    if first.startswith("$") and first[1:] in defined:
        return defined[first[1:]] + words[1:]
    if first in SHORTHAND:
        return [SHORTHAND[first], *words[1:]]
    if first in PARSERS:
        return words
    return None


def _variants(line: str) -> list[str]:
    """The line with each ``[optional]`` part left out, and with all of them put in."""
    bare = re.sub(r"\s*\[[^\]]*\]", "", line)
    full = re.sub(r"\[([^\]]*)\]", r"\1", line)
    return [bare] if bare == full else [bare, full]


def _commands() -> list[tuple[str, list[str]]]:
    found = []
    for name in DOCS:
        for block in _blocks((ROOT / name).read_text()):
            defined: dict[str, list[str]] = {}
            for line in block:
                assignment = re.match(r'^([A-Z])="([^"]+)"', line)
                if assignment:
                    defined[assignment[1]] = assignment[2].split()
                    continue
                for part in re.split(r"\s;\s", line):
                    for variant in _variants(part):
                        variant = re.sub(r"([^\s|]+)(?:\|[^\s|]+)+", r"\1", variant)  # a|b: a
                        try:
                            words = shlex.split(variant, comments=True)
                        except ValueError:
                            continue
                        words = _filled(words)
                        if not words:
                            continue
                        command = _program(words, defined)
                        if command is not None:
                            found.append((f"{name}: {part.strip()}", command))
    return found


COMMANDS = _commands()


def test_the_docs_show_commands_of_every_program() -> None:
    programs = {command[0] for _, command in COMMANDS}
    assert programs == set(PARSERS), programs
    assert len(COMMANDS) >= 60


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_each_documented_command_parses(where: str, command: list[str]) -> None:
    parser: argparse.ArgumentParser = PARSERS[command[0]]()
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(command[1:])
        except SystemExit as exc:
            assert exc.code == 0, f"{where}\n  {shlex.join(command)}\n  {errors.getvalue()}"
