"""Rendering a replay :class:`~shared.audit.model.Report`: JSON, HTML, a short summary.

Pure functions returning text. The JSON is for machines (keys sorted, so two runs diff
cleanly; ``json.dumps`` writes control characters as ``\\u00XX``); the HTML is one
self-contained page for people (inline style, no script, no external resource). Journal
details and coordinator fields are attacker-reachable text, so every value shown in the
HTML goes through :func:`_html` (control characters escaped by
:func:`shared.audit.text.printable`, then :func:`html.escape`), and every line of the
terminal summary through :func:`shared.audit.text.printable_lines`.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Iterator, Sequence
from html import escape
from typing import Any, TextIO

from shared.audit.model import CHECKS, SEVERITIES, Ceremony, OutflowResult, Report
from shared.audit.text import printable, printable_lines
from shared.bitcoin.amount import format_btc

REPORT_TYPE = "coldstation-audit-report"
REPORT_VERSION = 1


def to_plain(report: Report, inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": REPORT_TYPE,
        "version": REPORT_VERSION,
        "ok": report.ok,
        "inputs": inputs or {},
        "summary": report.counts(),
        "findings_by_check": {c: sum(1 for f in report.findings if f.check == c) for c in CHECKS},
        "appliances": [a.to_plain() for a in report.appliances],
        "ceremonies": [c.to_plain() for c in report.ceremonies],
        "broadcasts": [b.to_plain() for b in report.broadcasts],
        "chain": report.chain.to_plain() if report.chain else None,
        "findings": [f.to_plain() for f in report.findings],
        "notes": report.notes,
        "coordinator_alerts": report.alerts,
    }


def to_json(report: Report, inputs: dict[str, Any] | None = None) -> str:
    out = io.StringIO()
    write_json(report, out, inputs)
    return out.getvalue()


def write_json(report: Report, file: TextIO, inputs: dict[str, Any] | None = None) -> None:
    """:func:`to_json`, written to ``file`` as it is made: a year's report is some 100 MB
    of text, and its ceremonies are turned into maps one at a time."""
    plain = to_plain(report, inputs)
    for name, items in (
        ("ceremonies", report.ceremonies),
        ("broadcasts", report.broadcasts),
        ("findings", report.findings),
    ):
        plain[name] = _Lazy(items)
    parts: list[str] = []
    _write(plain, parts, "\n", file)
    parts.append("\n")
    file.write("".join(parts))


class _Lazy:
    """A list of the report's objects, each written as its ``to_plain()`` map."""

    def __init__(self, items: Sequence[Any]) -> None:
        self.items = items


def dumps(value: Any) -> str:
    """``json.dumps(value, indent=1, sort_keys=True)``, the same text, several times faster.

    With an indent, the standard library encodes in Python, generator by generator: a
    100,000-ceremony report took some 15 s of it. The report holds only maps with text
    keys, lists, text, integers, booleans and None; this writes those directly (text
    through the standard library's own C escaper) and hands anything else to
    ``json.dumps``, so the output is byte for byte the same (the test suite compares).
    """
    parts: list[str] = []
    _write(value, parts, "\n")
    return "".join(parts)


_escape_json = json.encoder.encode_basestring_ascii
_int_repr = int.__repr__
_FLUSH = 1 << 16  # parts written to the file at a time
_CONSTANTS = {None: "null", True: "true", False: "false"}
_sorted_keys: dict[tuple[str, ...], list[str]] = {}  # maps of one kind share their order
_key_texts: dict[str, str] = {}


def _write(value: Any, parts: list[str], newline: str, file: TextIO | None = None) -> None:
    kind = type(value)
    if kind is str:
        parts.append(_escape_json(value))
    elif kind is int:
        parts.append(_int_repr(value))
    elif value is None or kind is bool:
        parts.append(_CONSTANTS[value])
    elif kind is dict and all(type(k) is str for k in value):
        if not value:
            parts.append("{}")
            return
        keys = tuple(value)
        order = _sorted_keys.get(keys)
        if order is None:
            order = sorted(keys)
            if len(_sorted_keys) < 1024:
                _sorted_keys[keys] = order
        inner = newline + " "
        separator = "{" + inner
        append = parts.append
        for key in order:
            label = _key_texts.get(key)
            if label is None:
                label = _escape_json(key) + ": "
                if len(_key_texts) < 4096:
                    _key_texts[key] = label
            append(separator)
            append(label)
            item = value[key]
            kind = type(item)  # the common values written here, without a call
            if kind is str:
                append(_escape_json(item))
            elif kind is int:
                append(_int_repr(item))
            elif item is None or kind is bool:
                append(_CONSTANTS[item])
            else:
                _write(item, parts, inner, file)
            separator = "," + inner
        append(newline + "}")
    elif kind is list or kind is _Lazy:
        items = value if kind is list else (item.to_plain() for item in value.items)
        inner = newline + " "
        separator = "[" + inner
        for item in items:
            parts.append(separator)
            _write(item, parts, inner, file)
            separator = "," + inner
            if file is not None and len(parts) > _FLUSH:
                file.write("".join(parts))
                parts.clear()
        parts.append("[]" if separator[0] == "[" else newline + "]")
    else:  # anything else (a float, a tuple, a map with other keys): exactly as json does
        text = json.dumps(value, indent=1, sort_keys=True)
        parts.append(text.replace("\n", newline))


def summary(report: Report) -> str:
    """A few lines for the terminal: the verdict, the counts, the first findings; each line
    escaped on its own, so no evidence text can colour, move or forge a line."""
    counts = report.counts()
    verdict = "OK: every check holds" if report.ok else f"{counts['findings']} FINDING(S)"
    lines = [
        f"audit replay: {verdict}",
        f"  {counts['appliances']} appliance(s), {counts['records']} journal records, "
        f"{counts['ceremonies']} ceremonies ({counts['approved']} approved, "
        f"{counts['refused']} refused), {counts['requests']} requests, "
        f"{counts['broadcasts']} broadcasts"
        + (f", {counts['outflows']} on-chain outflows" if report.chain else ", chain not checked"),
    ]
    if report.chain is not None:
        chain = report.chain
        first = chain.first_wallet_height
        lines.append(
            f"  chain walked {chain.start}..{chain.tip} ({chain.start_source}); first "
            "block paying or spending a wallet: " + ("none" if first is None else str(first))
        )
    lines += [f"  {f}" for f in report.findings[:20]]
    if len(report.findings) > 20:
        lines.append(f"  ... and {len(report.findings) - 20} more (see the reports)")
    lines += [f"  note: {n}" for n in report.notes]
    if report.alerts:
        lines.append(
            f"  the coordinator raised {len(report.alerts)} alert(s) of its own "
            "(listed in the reports)"
        )
    return printable_lines(lines)


# -- HTML ---------------------------------------------------------------------------------

_STYLE = """
body{font:13px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{margin-bottom:.2em} h2{margin-top:1.4em}
table{border-collapse:collapse;margin:.5em 0 1.5em;width:100%}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top;
overflow-wrap:break-word}
th{background:#f2f2f2} td.num,td.critical,td.high{white-space:nowrap} td.num{text-align:right}
.hex{font:11px/1.3 ui-monospace,monospace;word-break:break-all} .path{word-break:break-all}
.muted{color:#666} .ok{background:#e6f4ea;color:#135c2a} .bad{background:#fdecea;color:#8a1c14}
.critical{background:#8a1c14;color:#fff;font-weight:bold} .high{background:#fdecea;color:#8a1c14}
.verdict{padding:.6em 1em;font-size:1.3em;font-weight:bold;display:inline-block}
table.narrow{width:auto}
@page{size:A4 landscape;margin:10mm}
@media print{body{margin:0;font-size:8pt} .hex{font-size:7pt} tr{break-inside:avoid}
h2,h3{break-after:avoid} *{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
"""


_HTML_SPECIAL = re.compile(r"[&<>\"']")


def _html(value: object) -> str:
    """Text for the page: control characters escaped, then HTML-escaped."""
    text = printable(value)
    return escape(text) if _HTML_SPECIAL.search(text) else text  # most text needs neither


def _cell(value: object, css: str = "") -> str:
    klass = f' class="{css}"' if css else ""
    if type(value) is int:
        return f"<td{klass}>{value}</td>"  # digits and a sign: nothing to escape
    text = "" if value is None else str(value)
    return f"<td{klass}>{_html(text)}</td>"


def _row(*cells: str) -> str:
    return "<tr>" + "".join(cells) + "</tr>"


def _head(*names: str) -> str:
    return "<tr>" + "".join(f"<th>{_html(n)}</th>" for n in names) + "</tr>"


def _summary_html(report: Report, inputs: dict[str, Any]) -> str:
    counts = report.counts()
    css = "ok" if report.ok else "bad"
    verdict = "OK: every check holds" if report.ok else f"{counts['findings']} finding(s)"
    rows = "".join(_row(_cell(k), _cell(v, "num")) for k, v in counts.items())
    sources = "".join(_row(_cell(k), _cell(v, "path")) for k, v in sorted(inputs.items()))
    return (
        f'<p class="verdict {css}">{_html(verdict)}</p>'
        f'<h2>Summary</h2><table class="narrow">{_head("item", "count")}{rows}</table>'
        f'<h2>Inputs</h2><table class="narrow">{_head("input", "value")}{sources}</table>'
    )


def _appliances_html(report: Report) -> str:
    rows = "".join(
        _row(
            _cell(a.appliance_id),
            f'<td class="path">{_html(a.source)}</td>',
            f"<td>{_hex(a.audit_key)}</td>",
            _cell(a.anchored),
            _cell(a.records, "num"),
            f"<td>{_hex(a.head[:16] + '…')}</td>",
            _cell("ok" if a.journal_ok else "broken", "ok" if a.journal_ok else "bad"),
            _cell(", ".join(map(str, a.policy_versions))),
            f"<td>{_named(sorted(a.officers, key=a.officers.__getitem__), a.officers)}</td>",
            _cell(a.findings, "num"),
        )
        for a in report.appliances
    )
    head = _head(
        "appliance",
        "bundle",
        "audit key",
        "anchored",
        "records",
        "head",
        "journal",
        "policies",
        "officers and administrators (token, key fingerprint)",
        "findings",
    )
    return f"<h2>Appliances</h2><table>{head}{rows}</table>"


def _utc(timestamp: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(timestamp))


def _btc(sats: int | None) -> str:
    return "" if sats is None else format_btc(sats)


def _hex(value: object) -> str:
    """A hash or id: monospace, broken anywhere (a 64-digit txid fits a narrow column)."""
    return "" if value is None else f'<span class="hex">{_html(value)}</span>'


def _lines(*parts: str) -> str:
    """Cell content of several lines (each already HTML)."""
    return "<br>".join(part for part in parts if part)


def _named(fingerprints: Sequence[str], names: dict[str, str]) -> str:
    """Officers as the team knows them: ``officer-1 (0a1b2c3d)``."""
    return ", ".join(
        f"{_html(names[fp])} ({_html(fp)})" if fp in names else _html(fp) for fp in fingerprints
    )


def _paid_to(c: Ceremony) -> str:
    if c.paid is None:
        return ""
    shown = [
        f"{_html(_btc(amount))} to {_hex(payee)}" if amount is not None else _hex(payee)
        for payee, amount in c.paid.payees
    ]
    more = c.paid.payee_count - len(c.paid.payees)
    if more > 0:
        shown.append(f'<span class="muted">and {more} more</span>')
    return _lines(*shown)


def _ceremony_row(c: Ceremony, names: dict[str, str]) -> str:
    css = "ok" if c.ok else "bad"
    quorum = f"{len(c.approvals)} of {c.quorum}" if c.quorum is not None else ""
    broadcast = "" if c.broadcast is None else f"in block {c.height}" if c.height else "sent"
    request = _lines(
        _html(f"batch {c.paid.batch}") if c.paid and c.paid.batch else "",
        _html(c.paid.purpose) if c.paid and c.paid.purpose else "",
        _hex(c.request_id),
    )
    amounts = _lines(
        _html(f"paid out {_btc(c.paid_out)}") if c.paid_out is not None else "",
        _html(f"re-derived {_btc(c.paid_out_rederived)}")
        if c.paid_out_rederived is not None
        else "",
        _html(f"fee {_btc(c.fee)}") if c.fee is not None else "",
    )
    approvals = _lines(
        _html(quorum),
        _named(c.approvals, names),
        _html(f"policy v{c.policy_version}") if c.policy_version is not None else "",
    )
    decision = _lines(
        _html(c.decision), _html(f"replayed: {c.policy_verdict}") if c.policy_verdict else ""
    )
    return (
        f'<tr><td class="num">{c.seq}</td>{_cell(_utc(c.time))}<td>{decision}</td>'
        f"<td>{request}</td><td>{_paid_to(c)}</td><td>{amounts}</td><td>{approvals}</td>"
        f"{_cell('; '.join(c.refusals))}<td>{_lines(_hex(c.txid), _html(broadcast))}</td>"
        f"{_cell('ok' if c.ok else f'{len(c.findings)} finding(s)', css)}</tr>"
    )


def _ceremonies_html(report: Report) -> Iterator[str]:
    yield "<h2>Ceremonies</h2>"
    head = _head(
        "seq",
        "time (UTC)",
        "decision",
        "request (batch, purpose, id)",
        "paid to",
        "amounts",
        "approvals (quorum, officers, policy)",
        "refusals",
        "transaction",
        "result",
    )
    for appliance in report.appliances:
        yield f"<h3>Appliance {_html(appliance.appliance_id)}</h3><table>{head}"
        rows: list[str] = []
        for c in report.ceremonies:
            if c.appliance == appliance.appliance_id:
                rows.append(_ceremony_row(c, appliance.officers))
                if len(rows) >= 4096:
                    yield "".join(rows)
                    rows.clear()
        yield "".join(rows) + "</table>"


def _broadcasts_html(report: Report) -> str:
    rows = "".join(
        _row(
            f"<td>{_hex(b.txid)}</td>",
            _cell(b.state),
            _cell(b.height, "num"),
            f"<td>{_hex(b.request_id)}</td>",
            _cell("; ".join(b.approved_by)),
            _cell("ok" if b.approved else "not approved", "ok" if b.approved else "bad"),
        )
        for b in report.broadcasts
    )
    head = _head("txid", "state", "height", "request id", "approved by", "result")
    return f"<h2>Broadcasts</h2><table>{head}{rows}</table>"


def _chain_html(report: Report) -> str:
    chain = report.chain
    if chain is None:
        return "<h2>Chain</h2><p>Not checked (no --chain given).</p>"
    rows = "".join(
        _row(
            f"<td>{_hex(o.txid)}</td>",
            _cell(o.height, "num"),
            _cell(o.broadcast or "none"),
            _cell("yes" if o.malleated else ""),
            _cell(*_outflow_result(o)),
        )
        for o in chain.outflows
    )
    first = chain.first_wallet_height
    intro = (
        f"<p>Blocks {chain.start}..{chain.tip} (tip {_html(chain.tip_hash)}), walked "
        f"from {_html(chain.start_source)}; {chain.wallet_outputs} wallet outputs seen; "
        f"first block paying or spending a wallet: "
        f"{'none' if first is None else first}.</p>"
    )
    head = _head("txid", "height", "broadcast", "malleated", "result")
    return f"<h2>Chain</h2>{intro}<table>{head}{rows}</table>"


def _outflow_result(outflow: OutflowResult) -> tuple[str, str]:
    if outflow.broadcast:
        return "ok", "ok"
    if outflow.approved_by:
        return (
            f"approved in the journal ({', '.join(outflow.approved_by)}); the "
            "coordinator's broadcast record is missing",
            "bad",
        )
    return "no approved ceremony", "bad"


def _list_html(title: str, items: list[str]) -> str:
    if not items:
        return ""
    listed = "".join(f"<li>{_html(item)}</li>" for item in items)
    return f"<h2>{_html(title)}</h2><ul>{listed}</ul>"


def _findings_html(report: Report) -> str:
    """Most urgent first, each with what it means and the auditor's next step."""
    if not report.findings:
        body = "<p>None.</p>"
    else:
        rank = {severity: n for n, severity in enumerate(SEVERITIES)}
        ordered = sorted(report.findings, key=lambda f: rank.get(f.severity, len(rank)))
        rows = "".join(
            _row(
                _cell(f.severity, f.severity),
                _cell(f.check),
                _cell(f.where(), "path"),
                _cell(f.message),
                _cell(f.next_step),
            )
            for f in ordered
        )
        head = _head("severity", "check", "where", "finding", "next step")
        body = f"<table>{head}{rows}</table>"
    return (
        f"<h2>Findings</h2>{body}"
        + _list_html("Notes", report.notes)
        + _list_html("The coordinator's own alerts", report.alerts)
    )


def to_html(report: Report, inputs: dict[str, Any] | None = None) -> str:
    """One self-contained page: verdict and summary first, then every table."""
    out = io.StringIO()
    write_html(report, out, inputs)
    return out.getvalue()


def write_html(report: Report, file: TextIO, inputs: dict[str, Any] | None = None) -> None:
    """:func:`to_html`, written to ``file`` as it is made."""
    inputs = inputs or {}
    file.write(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Coldstation audit replay</title>"
        f"<style>{_STYLE}</style></head><body><h1>Coldstation audit replay</h1>"
    )
    file.write(_summary_html(report, inputs))
    file.write(_findings_html(report))
    file.write(_appliances_html(report))
    for part in _ceremonies_html(report):
        file.write(part)
    file.write(_broadcasts_html(report))
    file.write(_chain_html(report))
    file.write("</body></html>\n")
