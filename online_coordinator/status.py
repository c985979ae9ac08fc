"""``status`` and ``acknowledge``: every batch's state as the node sees it now, and the
alerts that stay open until someone records what was done about them.

An alert is an outflow without a signed request (REQUIREMENTS 25), raised by
:mod:`online_coordinator.sync`. It is never closed by time or by another sync: ``status``
exits 3 while one is open, so a scheduler keeps paging until a person acknowledges it with
a note saying who checked it and what they did.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from online_coordinator.batch import find_batch
from online_coordinator.chain.rpc import ChainUnavailable
from online_coordinator.config import Config
from online_coordinator.store import Store, outcome
from online_coordinator.sync import NodeView, SyncReport, batch_status, observe, sync_with
from online_coordinator.wallet import address_warnings


class AlertError(ValueError):
    """No such open alert; nothing was changed."""


@dataclass(frozen=True)
class Status:
    """What ``status`` prints (``document``, JSON) and what it exits on."""

    document: dict[str, Any]
    synced: SyncReport | None  # when asked to sync first
    node_available: bool

    @property
    def open_alerts(self) -> bool:
        return bool(self.document["alerts"])


def coordinator_status(
    config: Config, store: Store, *, label: str | None = None, sync_first: bool = False
) -> Status:
    """Every batch (or the one labelled ``label``) and the open alerts.

    A node that does not answer is no failure here: the batches are shown as last recorded,
    with confirmations ``null`` and ``node`` saying why, so a person still sees the alerts.
    """
    if label is not None:
        find_batch(store, label)
    report: SyncReport | None = None
    view: NodeView | None = None
    node = "ok"
    try:
        if sync_first:
            report = sync_with(config, store)
        view = observe(store, config.rpc())
    except ChainUnavailable as exc:
        node = f"unavailable: {exc}"
    batches = batch_status(store, view, config.confirmations)
    last = store.meta("last_sync")
    document = {
        "node": node,
        "tip": view.tip if view else None,
        "last_sync": json.loads(last) if last else None,
        "batches": [b for b in batches if label is None or b["label"] == label],
        "alerts": open_alerts(store),
        "address_warnings": address_warnings(store),
    }
    return Status(document, report, view is not None)


def open_alerts(store: Store) -> list[dict[str, Any]]:
    """Alerts nobody has acknowledged yet, oldest first."""
    rows = store.all(
        "SELECT id, time, kind, message FROM events WHERE severity = 'alert' AND "
        "acknowledged IS NULL ORDER BY id"
    )
    return [dict(row) for row in rows]


def acknowledge_alert(store: Store, alert_id: int, note: str, actor: str | None = None) -> None:
    """Close alert ``alert_id`` with ``note`` (who checked it and what was done), and
    journal that it was closed (by ``actor``, the web user, if any)."""
    row = store.one("SELECT * FROM events WHERE id = ? AND severity = 'alert'", alert_id)
    if row is None:
        raise AlertError(f"no alert with id {alert_id}")
    if row["acknowledged"] is not None:
        raise AlertError(f"alert {alert_id} was acknowledged: {row['acknowledged']}")
    with outcome("the alert is still open"), store.write() as db:
        db.execute("UPDATE events SET acknowledged = ? WHERE id = ?", (note, alert_id))
        store.event("alert_acknowledged", f"alert {alert_id} acknowledged: {note}", actor=actor)
