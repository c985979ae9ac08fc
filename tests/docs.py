"""The command lines the README and the runbooks show, read as a user reads them.

One home for reading the docs' code blocks, used by the parser check
(``tests/unit/test_docs_commands.py``: every documented command parses) and by the runbook
run (``tests/e2e/test_runbooks.py``: the commands run, for real, against a fresh state).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("docs/**/*.md"))]
PROGRAMS = ("coldstation-appliance", "coldstation-coordinator", "coldstation-audit")
#: The runbooks' shorthand: ``A`` and ``C`` (README: ``$A``, ``$C``).
SHORTHAND = {"A": "coldstation-appliance", "C": "coldstation-coordinator"}
#: Placeholders a reader fills in, and what stands in for them in the parser check
#: (``...`` after an option is its value; anywhere else it means "more of the same").
FILL = {"...": "x", "bc1q...": "bc1qx", "HEX": "00", "FD": "3"}


@dataclass(frozen=True)
class DocCommand:
    """One command of a code block: where it is, its text, and the block's definitions."""

    doc: str
    text: str  # as written: one part of a `a ; b` line, continuation lines joined
    defined: tuple[tuple[str, str], ...]  # the block's `X="..."` lines before it

    def words(self, text: str | None = None) -> list[str] | None:
        """The program's words (shorthand expanded), or None when it is no command of ours."""
        try:
            words = shlex.split(self.text if text is None else text, comments=True)
        except ValueError:
            return None
        if not words:
            return None
        defined = dict(self.defined)
        first = words[0]
        if first.startswith("$") and first[1:] in defined:
            return defined[first[1:]].split() + words[1:]
        if first in SHORTHAND:
            return [SHORTHAND[first], *words[1:]]
        if first in PROGRAMS:
            return words
        return None


def blocks(text: str) -> list[list[str]]:
    """The lines of each fenced code block, continuation lines joined; a block indented
    under a list item is read without its indent."""
    found, inside, current = [], False, []
    for raw in text.splitlines():
        line = raw.lstrip(" ")
        if line.startswith("```"):
            if inside:
                found.append(current)
            inside, current = not inside, []
            continue
        if inside:
            if current and current[-1].endswith("\\"):
                current[-1] = current[-1][:-1] + " " + line.strip()
            else:
                current.append(line)
    return found


def variants(text: str) -> list[str]:
    """The text with each ``[optional]`` part left out, and with all of them put in. An
    optional part opens at a word's start, outside quotes, and may hold quoted brackets
    (``[--cosigner '[fp/48h]xpub...']``)."""
    bare, full, group, depth, quote = [], [], [], 0, ""
    for index, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "[" and (index == 0 or text[index - 1].isspace()):
            depth += 1
            if depth == 1:
                continue
        elif char == "]" and depth:
            depth -= 1
            if not depth:  # `[a | b]` put in: its first alternative
                full.append("".join(group).split(" | ")[0])
                group = []
                continue
        if depth:
            group.append(char)
        else:
            full.append(char)
            bare.append(char)
    bare_text = re.sub(r" {2,}", " ", "".join(bare)).rstrip()
    full_text = "".join(full)
    return [full_text] if bare_text == full_text else [bare_text, full_text]


def first_alternatives(text: str) -> str:
    """``a|b`` read as ``a``."""
    return re.sub(r"([^\s|]+)(?:\|[^\s|]+)+", r"\1", text)


def filled(words: list[str]) -> list[str]:
    out: list[str] = []
    for word in words:
        if word == "..." and not (out and out[-1].startswith("--")):
            continue
        out.append(FILL.get(word, word))
    return out


def commands() -> list[DocCommand]:
    """Every command of ours in the docs' code blocks, in document order."""
    found = []
    for name in DOCS:
        defined: dict[str, str] = {}  # a doc's `C="..."` holds for its later blocks too
        for block in blocks((ROOT / name).read_text()):
            for line in block:
                assignment = re.match(r'^([A-Z])="([^"]+)"', line)
                if assignment:
                    defined[assignment[1]] = assignment[2]
                    continue
                for part in re.split(r"\s;\s", line):
                    command = DocCommand(name, part.strip(), tuple(defined.items()))
                    if command.words(first_alternatives(variants(command.text)[-1])) is not None:
                        found.append(command)
    return found
