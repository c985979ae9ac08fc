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

import json
import time
from html import escape
from typing import Any

from shared.audit.model import CHECKS, Ceremony, OutflowResult, Report
from shared.audit.text import printable, printable_lines

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
    return json.dumps(to_plain(report, inputs), indent=1, sort_keys=True) + "\n"


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
        lines.append(f"  chain walked {chain.start}..{chain.tip} ({chain.start_source}); first "
                     "block paying or spending a wallet: "
                     + ("none" if first is None else str(first)))  # fmt: skip
    lines += [f"  {f}" for f in report.findings[:20]]
    if len(report.findings) > 20:
        lines.append(f"  ... and {len(report.findings) - 20} more (see the reports)")
    lines += [f"  note: {n}" for n in report.notes]
    if report.alerts:
        lines.append(f"  the coordinator raised {len(report.alerts)} alert(s) of its own "
                     "(listed in the reports)")  # fmt: skip
    return printable_lines(lines)


# -- HTML ---------------------------------------------------------------------------------

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
h1{margin-bottom:.2em} table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f2f2f2} td.num{text-align:right} code{font-size:12px}
.ok{background:#e6f4ea;color:#135c2a} .bad{background:#fdecea;color:#8a1c14}
.verdict{padding:.6em 1em;font-size:1.3em;font-weight:bold;display:inline-block}
"""


def _html(value: object) -> str:
    """Text for the page: control characters escaped, then HTML-escaped."""
    return escape(printable(value))


def _cell(value: object, css: str = "") -> str:
    text = "" if value is None else str(value)
    klass = f' class="{css}"' if css else ""
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
    sources = "".join(_row(_cell(k), _cell(v)) for k, v in sorted(inputs.items()))
    return (f'<p class="verdict {css}">{_html(verdict)}</p>'
            f"<h2>Summary</h2><table>{_head('item', 'count')}{rows}</table>"
            f"<h2>Inputs</h2><table>{_head('input', 'value')}{sources}</table>")  # fmt: skip


def _appliances_html(report: Report) -> str:
    rows = "".join(
        _row(_cell(a.appliance_id), _cell(a.source), _cell(a.audit_key), _cell(a.anchored),
             _cell(a.records, "num"), _cell(a.head[:16] + "…"),
             _cell("ok" if a.journal_ok else "broken", "ok" if a.journal_ok else "bad"),
             _cell(", ".join(map(str, a.policy_versions))), _cell(a.findings, "num"))
        for a in report.appliances
    )  # fmt: skip
    head = _head("appliance", "bundle", "audit key", "anchored", "records", "head",
                 "journal", "policies", "findings")  # fmt: skip
    return f"<h2>Appliances</h2><table>{head}{rows}</table>"


def _utc(timestamp: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(timestamp))


def _ceremony_row(c: Ceremony) -> str:
    css = "ok" if c.ok else "bad"
    approvals = f"{len(c.approvals)}/{c.quorum}" if c.quorum is not None else ""
    broadcast = "" if c.broadcast is None else f"height {c.height}" if c.height else "sent"
    return _row(
        _cell(c.seq, "num"), _cell(_utc(c.time)), _cell(c.decision), _cell(c.policy_verdict),
        _cell(c.request_id), _cell(c.txid), _cell(c.paid_out, "num"),
        _cell(c.paid_out_rederived, "num"), _cell(c.fee, "num"),
        _cell(c.policy_version, "num"), _cell(approvals), _cell(", ".join(c.approvals)),
        _cell(", ".join(c.refusals)), _cell(broadcast),
        _cell("ok" if c.ok else f"{len(c.findings)} finding(s)", css),
    )  # fmt: skip


def _ceremonies_html(report: Report) -> str:
    parts = []
    head = _head("seq", "time (UTC)", "decision", "policy verdict (replayed)", "request id",
                 "txid", "paid out (sat)", "paid out, change re-derived (sat)", "fee (sat)",
                 "policy version", "quorum",
                 "approvals (officer fingerprints)", "refusals", "broadcast",
                 "result")  # fmt: skip
    for appliance in report.appliances:
        rows = "".join(_ceremony_row(c) for c in report.ceremonies
                       if c.appliance == appliance.appliance_id)  # fmt: skip
        parts.append(f"<h3>Appliance {_html(appliance.appliance_id)}</h3>"
                     f"<table>{head}{rows}</table>")  # fmt: skip
    return "<h2>Ceremonies</h2>" + "".join(parts)


def _broadcasts_html(report: Report) -> str:
    rows = "".join(
        _row(_cell(b.txid), _cell(b.state), _cell(b.height, "num"), _cell(b.request_id),
             _cell("; ".join(b.approved_by)),
             _cell("ok" if b.approved else "not approved", "ok" if b.approved else "bad"))
        for b in report.broadcasts
    )  # fmt: skip
    head = _head("txid", "state", "height", "request id", "approved by", "result")
    return f"<h2>Broadcasts</h2><table>{head}{rows}</table>"


def _chain_html(report: Report) -> str:
    chain = report.chain
    if chain is None:
        return "<h2>Chain</h2><p>Not checked (no --chain given).</p>"
    rows = "".join(
        _row(_cell(o.txid), _cell(o.height, "num"), _cell(o.broadcast or "none"),
             _cell("yes" if o.malleated else ""), _cell(*_outflow_result(o)))
        for o in chain.outflows
    )  # fmt: skip
    first = chain.first_wallet_height
    intro = (f"<p>Blocks {chain.start}..{chain.tip} (tip {_html(chain.tip_hash)}), walked "
             f"from {_html(chain.start_source)}; {chain.wallet_outputs} wallet outputs seen; "
             f"first block paying or spending a wallet: "
             f"{'none' if first is None else first}.</p>")  # fmt: skip
    head = _head("txid", "height", "broadcast", "malleated", "result")
    return f"<h2>Chain</h2>{intro}<table>{head}{rows}</table>"


def _outflow_result(outflow: OutflowResult) -> tuple[str, str]:
    if outflow.broadcast:
        return "ok", "ok"
    if outflow.approved_by:
        return (f"approved in the journal ({', '.join(outflow.approved_by)}); the "
                "coordinator's broadcast record is missing", "bad")
    return "no approved ceremony", "bad"


def _list_html(title: str, items: list[str]) -> str:
    if not items:
        return ""
    listed = "".join(f"<li>{_html(item)}</li>" for item in items)
    return f"<h2>{_html(title)}</h2><ul>{listed}</ul>"


def _findings_html(report: Report) -> str:
    if not report.findings:
        body = "<p>None.</p>"
    else:
        rows = "".join(_row(_cell(f.check), _cell(f.where()), _cell(f.message, "bad"))
                       for f in report.findings)  # fmt: skip
        body = f"<table>{_head('check', 'where', 'finding')}{rows}</table>"
    return (f"<h2>Findings</h2>{body}" + _list_html("Notes", report.notes)
            + _list_html("The coordinator's own alerts", report.alerts))  # fmt: skip


def to_html(report: Report, inputs: dict[str, Any] | None = None) -> str:
    """One self-contained page: verdict and summary first, then every table."""
    inputs = inputs or {}
    body = "".join((
        _summary_html(report, inputs), _findings_html(report),
        _appliances_html(report), _ceremonies_html(report), _broadcasts_html(report),
        _chain_html(report),
    ))  # fmt: skip
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Coldstation audit replay</title>"
        f"<style>{_STYLE}</style></head><body><h1>Coldstation audit replay</h1>"
        f"{body}</body></html>\n"
    )
