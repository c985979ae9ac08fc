"""The coordinator's side of the audit evidence (``coldstation-coordinator export``).

Auditors replay ceremonies without trusting the coordinator: this file only gives them the
material to check (REQUIREMENTS 37). Wallets with their descriptors and members, the audit
keys pinned for each appliance, every request with its unsigned PSBT and request hash,
every signed response and receipt, every transaction broadcast (the exact bytes) with where
it confirmed, and the coordinator's alerts. Binary values are hex (PSBTs base64), so the
document is plain JSON an auditor can read; ``shared.audit`` re-derives everything that
matters from the bytes, never from the coordinator's summaries.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from online_coordinator.store import Store, outcome, storage_error

EVIDENCE_TYPE = "coldstation-coordinator-evidence"
EVIDENCE_VERSION = 1


def _hex(value: bytes | None) -> str | None:
    return None if value is None else bytes(value).hex()


def _b64(value: bytes) -> str:
    return base64.b64encode(bytes(value)).decode()


def _wallets(store: Store) -> list[dict[str, Any]]:
    wallets = []
    for row in store.all("SELECT * FROM wallets ORDER BY id"):
        descriptors = [
            r["descriptor"]
            for r in store.all(
                "SELECT descriptor FROM descriptors WHERE wallet_id = ? ORDER BY position",
                row["id"],
            )
        ]
        members = [
            {
                "appliance_id": m["appliance_id"],
                "key": m["key"],
                "role": m["role"],
                "export_receipt": _hex(m["export_receipt"]),
                "pin_receipt": _hex(m["pin_receipt"]),
            }
            for m in store.all(
                "SELECT * FROM wallet_members WHERE wallet_id = ? ORDER BY id", row["id"]
            )
        ]
        wallets.append(
            {
                "name": row["name"],
                "network": row["network"],
                "kind": row["kind"],
                "threshold": row["threshold"],
                "birth_height": row["birth_height"],
                "descriptors": descriptors,
                "members": members,
            }
        )
    return wallets


def _requests(store: Store) -> list[dict[str, Any]]:
    out = []
    for row in store.all(
        "SELECT r.*, b.label FROM requests r JOIN batches b ON b.id = r.batch_id ORDER BY r.id"
    ):
        replaces = store.one("SELECT request_id FROM requests WHERE id = ?", row["replaces"])
        out.append(
            {
                "batch": row["label"],
                "request_id": _hex(row["request_id"]),
                "kind": row["kind"],
                "replaces": _hex(replaces["request_id"]) if replaces else None,
                "unsigned_psbt": _b64(row["unsigned_psbt"]),
                "request_hash": _hex(row["request_hash"]),
                "txid": row["txid"],
                "fee": row["fee"],
                "state": row["state"],
                "created": row["created"],
                "expiry": row["expiry"],
                "responses": [
                    _b64(r["psbt"])
                    for r in store.all(
                        "SELECT psbt FROM responses WHERE request_id = ? ORDER BY id", row["id"]
                    )
                ],
                "receipts": [
                    {"appliance_id": r["appliance_id"], "entry": _hex(r["entry"])}
                    for r in store.all(
                        "SELECT * FROM receipts WHERE request_id = ? ORDER BY appliance_id",
                        row["id"],
                    )
                ],
            }
        )
    return out


def _broadcasts(store: Store) -> list[dict[str, Any]]:
    return [
        {
            "request_id": _hex(r["request_key"]),
            "txid": r["txid"],
            "wtxid": r["wtxid"],
            "raw": _hex(r["raw"]),
            "state": r["state"],
            "block_hash": r["block_hash"],
            "height": r["height"],
            "sends": r["sends"],
        }
        for r in store.all(
            "SELECT b.*, q.request_id AS request_key FROM broadcasts b JOIN requests q ON "
            "q.id = b.request_id ORDER BY b.id"
        )
    ]


def export_evidence(store: Store) -> bytes:
    """The whole evidence document as UTF-8 JSON (keys sorted, so it diffs cleanly)."""
    document = {
        "type": EVIDENCE_TYPE,
        "version": EVIDENCE_VERSION,
        "appliances": [
            {"appliance_id": r["appliance_id"], "audit_key": _hex(r["audit_key"])}
            for r in store.all("SELECT * FROM appliances ORDER BY appliance_id")
        ],
        "wallets": _wallets(store),
        "requests": _requests(store),
        "broadcasts": _broadcasts(store),
        "alerts": [
            {
                "time": r["time"],
                "kind": r["kind"],
                "message": r["message"],
                "acknowledged": r["acknowledged"],
            }
            for r in store.all("SELECT * FROM events WHERE severity = 'alert' ORDER BY id")
        ],
    }
    return (json.dumps(document, indent=1, sort_keys=True) + "\n").encode()


def write_evidence(store: Store, path: Path) -> int:
    """``export``: the evidence document written to ``path``; returns its size in bytes."""
    document = export_evidence(store)
    with outcome("no evidence file was written"):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(document)
        except OSError as exc:
            raise storage_error(path, exc) from exc
    return len(document)
