"""The payout batch CSV that ops staff upload: ``address,amount,reference``.

Money code fails closed: :func:`parse_payouts` checks every row, reports every problem with
its line number in one :class:`PayoutsError`, and returns payouts only when the whole file
is clean. A half-accepted batch is worse than a rejected one, because staff would have to
work out which rows were paid.

Amounts are BTC written as plain decimals (``0.015``) and converted to satoshis with
integer arithmetic only; anything a spreadsheet might have mangled (exponents, thousands
separators, a ninth decimal) is refused rather than guessed at.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from shared.bitcoin.address import AddressError, Network, address_to_script
from shared.bitcoin.amount import COIN, MAX_MONEY, AmountError, dust_threshold, parse_btc
from shared.bitcoin.script import classify

MAX_CSV_BYTES = 8 * 1024 * 1024
MAX_PAYOUTS = 10_000
MAX_REFERENCE_CHARS = 64
#: Problems spelled out in ``str(PayoutsError)``; the rest are counted.
SHOWN_PROBLEMS = 50

HEADER = ("address", "amount", "reference")
_SATS_HEADER = re.compile(r"(?<![a-z])sat(?:s|oshis?)?(?![a-z])", re.IGNORECASE)
_SHOWN_CHARS = 90  # the longest valid address: never cut one short in a message
_BAD_BYTE = re.compile("[\udc80-\udcff]")  # undecodable bytes, kept by surrogateescape

_T = TypeVar("_T")
_K = TypeVar("_K", str, bytes)

# Core's GetDustThreshold: the output's size plus the size of spending it, at 3 sat/vB.


@dataclass(frozen=True)
class Payout:
    """One validated row; ``amount`` is in satoshis and ``line`` is the row's first line."""

    line: int
    address: str
    script_pubkey: bytes
    amount: int
    reference: str


@dataclass(frozen=True)
class CsvProblem:
    """One reason the file is refused; line 0 is about the whole file."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


class PayoutsError(ValueError):
    """The file is refused; ``problems`` holds every reason found, in line order."""

    def __init__(self, problems: list[CsvProblem] | tuple[CsvProblem, ...]) -> None:
        self.problems = tuple(sorted(problems, key=lambda p: p.line))
        super().__init__(_summary(self.problems))


def _summary(problems: tuple[CsvProblem, ...]) -> str:
    """All problems one per line, capped so a 10,000-row disaster stays readable."""
    count = len(problems)
    head = f"payout file refused: {count} problem{'s' if count != 1 else ''}"
    lines = [head, *(f"  {p}" for p in problems[:SHOWN_PROBLEMS])]
    if count > SHOWN_PROBLEMS:
        lines.append(f"  ... and {count - SHOWN_PROBLEMS} more")
    return "\n".join(lines)


class _FieldError(Exception):
    """One field's problem, raised by a field check and collected by the row check."""


def parse_payouts(data: bytes, network: Network) -> list[Payout]:
    """Validate a whole payout CSV; raises :class:`PayoutsError` listing every problem."""
    if len(data) > MAX_CSV_BYTES:
        size_problem = f"the file is {len(data):,} bytes, more than the {MAX_CSV_BYTES:,} limit"
        raise PayoutsError([CsvProblem(0, size_problem)])
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise PayoutsError([CsvProblem(0, "the file is UTF-16; export it as CSV (UTF-8)")])
    text = data.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    parser = _Parser(network)
    parser.parse(text)
    if parser.problems:
        raise PayoutsError(parser.problems)
    return parser.payouts


def _show(text: str) -> str:
    """A field quoted for an error message: escaped, and cut short if long."""
    if len(text) > _SHOWN_CHARS:
        text = text[:_SHOWN_CHARS] + "…"
    return repr(text)


def _sats_to_btc(sats: int) -> str:
    return f"{sats // COIN}.{sats % COIN:08d}"


def _has_bad_bytes(text: str) -> bool:
    """True when undecodable bytes (kept as lone surrogates) are in ``text``."""
    return _BAD_BYTE.search(text) is not None


class _Parser:
    """Walks the rows once, collecting payouts and problems; private to parse_payouts."""

    def __init__(self, network: Network) -> None:
        self.network = network
        self.payouts: list[Payout] = []
        self.problems: list[CsvProblem] = []
        self.rows = 0
        self.broken = False  # a CSV syntax error stopped the walk: later rows are unknown
        self.references: dict[str, int] = {}
        self.scripts: dict[bytes, int] = {}

    def problem(self, line: int, message: str) -> None:
        self.problems.append(CsvProblem(line, message))

    def parse(self, text: str) -> None:
        for line, row in self._records(text):
            if not self._record(line, row):
                break
        self._check_totals()

    def _lines(self, lines: Iterable[str]) -> Iterator[str]:
        """The physical lines, naming each one that holds invalid UTF-8 as it goes by."""
        for number, line in enumerate(lines, start=1):
            bad = _BAD_BYTE.search(line)
            if bad is not None:
                byte = ord(bad.group()) - 0xDC00
                self.problem(number, f"not valid UTF-8 (byte 0x{byte:02x}); save the file as UTF-8")
            yield line

    def _records(self, text: str) -> Iterator[tuple[int, list[str]]]:
        """(first line, fields) of each non-blank record; a CSV syntax error ends the walk."""
        lines = io.StringIO(text, newline="")
        checked = self._lines(lines) if _has_bad_bytes(text) else lines  # skip a slow path
        reader = csv.reader(checked, strict=True)
        start = 1
        try:
            for row in reader:
                if row and not all(field.isspace() or not field for field in row):
                    yield start, row
                start = reader.line_num + 1
        except csv.Error as exc:
            self.problem(start, f"CSV syntax error: {exc}")
            self.broken = True

    def _record(self, line: int, row: list[str]) -> bool:
        """Check one record; False once the file has too many payouts to go on."""
        if line == 1 and _is_header(row):
            if _SATS_HEADER.search(row[1]):
                self.problem(
                    line,
                    f"the amount column is headed {_show(row[1].strip())}, but amounts are BTC "
                    "such as 0.015, not satoshis",
                )
            return True
        self.rows += 1
        if self.rows > MAX_PAYOUTS:
            return False  # the rest is not read: an 8 MiB file must not take minutes
        if any(_has_bad_bytes(field) for field in row):
            return True  # already reported, by line, as not UTF-8
        if len(row) != len(HEADER):
            self.problem(line, _column_message(row))
            return True
        self._row(line, *row)
        return True

    def _row(self, line: int, address: str, amount_text: str, reference: str) -> None:
        script = self._field(line, lambda: address_to_script(address, self.network), address)
        amount = self._field(line, lambda: _amount(amount_text), amount_text)
        ref = self._field(line, lambda: _reference(reference), reference)
        if script is not None and amount is not None:
            self._check_dust(line, script, amount)
        if script is not None:
            self._check_duplicate(line, self.scripts, script, f"address {_show(address.strip())}")
        if ref is not None:
            self._check_duplicate(line, self.references, ref, f"reference {_show(ref)}")
        if script is not None and amount is not None and ref is not None:
            self.payouts.append(Payout(line, address.strip(), script, amount, ref))

    def _field(self, line: int, check: Callable[[], _T], text: str) -> _T | None:
        try:
            return check()
        except AddressError as exc:
            self.problem(line, f"address {_show(text.strip())} refused: {exc}")
        except _FieldError as exc:
            self.problem(line, str(exc))
        return None

    def _check_dust(self, line: int, script: bytes, amount: int) -> None:
        dust = dust_threshold(script)
        if amount < dust:
            kind = classify(script).value
            self.problem(
                line,
                f"amount {_sats_to_btc(amount)} BTC ({amount} sats) is below the dust "
                f"threshold of {dust} sats for a {kind} output",
            )

    def _check_duplicate(self, line: int, seen: dict[_K, int], key: _K, what: str) -> None:
        """Name both lines: staff must see which of the two rows to fix."""
        first = seen.setdefault(key, line)
        if first != line:
            self.problem(line, f"{what} is also on line {first}; each may appear only once")

    def _check_totals(self) -> None:
        if self.rows == 0 and not self.broken:
            self.problem(0, "the file has no payouts")
        if self.rows > MAX_PAYOUTS:
            self.problem(0, f"the file has more than {MAX_PAYOUTS:,} payouts, the most per batch")
        total = sum(p.amount for p in self.payouts)
        if total > MAX_MONEY:
            self.problem(
                0, f"the payouts total {_sats_to_btc(total)} BTC, more than 21,000,000 BTC"
            )


def _is_header(row: list[str]) -> bool:
    """A first row naming the columns, however a spreadsheet spelled them: ``address``,
    ``Address``, ``Amount (BTC)``, ``amount_btc``, ``Reference`` or ``Ref``."""
    names = [field.strip().lower() for field in row]
    return len(names) >= 2 and names[0].startswith(HEADER[0]) and names[1].startswith(HEADER[1])


def _column_message(row: list[str]) -> str:
    hint = ""
    if len(row) == 1 and (";" in row[0] or "\t" in row[0]):
        hint = "; fields must be separated by commas"
    return f"expected 3 columns (address,amount,reference), found {len(row)}{hint}"


def _amount(text: str) -> int:
    """Satoshis for a BTC amount written as a plain decimal, or :class:`_FieldError` saying why."""
    try:
        return parse_btc(text, shown=_show(text.strip()))
    except AmountError as exc:
        raise _FieldError(str(exc)) from None


def _reference(text: str) -> str:
    if not text:
        raise _FieldError("reference is empty")
    shown = _show(text)
    if len(text) > MAX_REFERENCE_CHARS:
        limit = MAX_REFERENCE_CHARS
        raise _FieldError(f"reference {shown} is {len(text)} characters, more than {limit}")
    bad = next((c for c in text if not c.isprintable()), None)
    if bad is not None:
        raise _FieldError(f"reference {shown} contains a non-printable character U+{ord(bad):04X}")
    if text != text.strip():
        raise _FieldError(f"reference {shown} has leading or trailing whitespace")
    return text
