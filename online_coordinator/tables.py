"""``status`` and ``wallet show`` as people read them (``--json`` gives the document).

Plain fixed-width text, one row per batch, alert, coin state or address: it reads in an 80
column terminal, pipes into ``grep`` and ``head``, and says amounts in BTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shared.bitcoin.amount import format_btc


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """Columns as wide as their widest cell, two spaces apart; ``-`` for None."""
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return lines


def _confirmations(batch: dict[str, Any]) -> str:
    got = batch.get("confirmations")
    return "-" if got is None else f"{got}/{batch.get('required', '?')}"


def status_text(document: dict[str, Any]) -> str:
    """The coordinator's status document as text."""
    lines = [
        f"node: {document['node']}" + (f" · tip {document['tip']}" if document.get("tip") else "")
    ]
    batches = document["batches"]
    if batches:
        lines += ["", *table(
            ["batch", "state", "conf", "payouts", "amount", "txid"],
            [
                [b["label"], b["state"], _confirmations(b), b["payouts"], format_btc(b["sats"]),
                 (b["txid"] or "")[:16] or None]
                for b in batches
            ],
        )]  # fmt: skip
        lines += [f"  {b['label']}: {b['note']}" for b in batches if b.get("note")]
    else:
        lines.append("no batches")
    alerts = document["alerts"]
    if alerts:
        lines += ["", f"OPEN ALERTS ({len(alerts)}): acknowledge each with `acknowledge ID --note`"]
        lines += table(
            ["id", "kind", "message"], [[a["id"], a["kind"], a["message"]] for a in alerts]
        )
    for warning in document.get("address_warnings", []):
        lines += ["", f"warning: {warning['message']}"]
    return "\n".join(lines)


def wallet_text(summary: dict[str, Any]) -> str:
    """``wallet show`` as text: coins by state, then every address handed out."""
    lines = [f"wallet {summary['wallet']} · {summary['kind']} · {summary['network']}"]
    coins = summary["coins"]
    lines += table(
        ["coins", "count", "amount"],
        [[state, c["count"], format_btc(c["sats"] or 0)] for state, c in sorted(coins.items())],
    ) if coins else ["no coins"]  # fmt: skip
    addresses = summary["addresses"]
    if addresses:
        lines += ["", *table(
            ["address", "branch", "index", "state", "balance", "note"],
            [
                [a["address"], "change" if a["change"] else "receive", a["index"], a["state"],
                 format_btc(a["sats"] or 0), a["note"]]
                for a in addresses
            ],
        )]  # fmt: skip
    return "\n".join(lines)


__all__ = ["status_text", "table", "wallet_text"]
