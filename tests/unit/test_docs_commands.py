"""Every command the README and the runbooks show, read as a user would type it, is one the
program accepts (issue 18: the runbooks defined `C` with `--state` where the coordinator
refused it). Each command line of the docs' code blocks is taken literally, its shell
variable expanded as the doc defines it, an optional part (``[--json]``) once with it and
once without, the first of alternatives (``a|b``), and parsed by the program's own argument
parser: a wrong option, a missing argument or a renamed subcommand fails here.

The commands also run, for real and in order, against a fresh state in
``tests/e2e/test_runbooks.py``; this test covers every variant of every line cheaply.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shlex

import pytest

from appliance.cli import build_parser as appliance_parser
from online_coordinator.audit_cli import build_parser as audit_parser
from online_coordinator.cli import build_parser as coordinator_parser
from tests.docs import commands, filled, first_alternatives, variants

PARSERS = {
    "coldstation-appliance": appliance_parser,
    "coldstation-coordinator": coordinator_parser,
    "coldstation-audit": audit_parser,
}


def _commands() -> list[tuple[str, list[str]]]:
    found = []
    for command in commands():
        for variant in variants(command.text):
            words = command.words(first_alternatives(variant))
            if words:
                found.append((f"{command.doc}: {command.text}", filled(words)))
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
