"""Evidence text made safe to show: every control character escaped, in one place.

Everything the evidence carries is attacker-reachable text: key labels, purposes, batch,
wallet and file names, descriptors, addresses, request ids typed into JSON, exception
messages quoting any of these. Printed raw, an ANSI escape sequence can recolour the
auditor's terminal, move the cursor or erase a line, and so paint a fake
"OK: every check holds" over a finding; a newline or carriage return can forge a whole line
of the report; a bidi override (U+202E) reorders what is shown.

So every character Python does not call printable (C0 and C1 controls including ESC, DEL,
line and paragraph separators, format characters such as the bidi overrides, surrogates,
unassigned code points) is shown as the Python-style escape that names it (``\\x1b``,
``\\n``, ``\\u202e``). Letters of every script and ordinary spaces pass unchanged, so
honest text reads as it was written.

:func:`printable` is the only escaper: the terminal summary, the CLI's own lines, its
one-line errors, and the HTML report (before HTML escaping, so the file is safe to ``cat``
too) all go through it. The JSON report needs no help: ``json.dumps`` writes every
control character as ``\\u00XX``.
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(value: object) -> str:
    """``value`` as text with every non-printable character escaped (see the module)."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text  # the common case costs one scan
    return "".join(_escape(ch) for ch in text)


def _escape(ch: str) -> str:
    if ch.isprintable():
        return ch
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable_lines(lines: list[str]) -> str:
    """Lines joined for the terminal, each escaped on its own: only the newlines this
    program puts between them survive, so no evidence text can start a line of its own."""
    return "\n".join(printable(line) for line in lines)


__all__ = ["printable", "printable_lines"]
