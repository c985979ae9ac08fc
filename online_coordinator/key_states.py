"""Key states the stations vouch for: a suspended or archived key receives nothing (issue 19).

A station's officers suspend, reactivate or archive a key (``coldstation-appliance suspend
|reactivate|archive LABEL``, or the keys screen); the signed journal record is the receipt
(``--out``, or the journal screen's ``q``). ``wallet key-state RECEIPT`` verifies it under
the appliance's pinned audit key, as a record of a quorum ceremony (never a deferred one),
and keeps it: the table only grows, and the state of a key is its receipt with the highest
journal seq, so a stale receipt shown later (an old suspension after the reactivation)
changes nothing.

A key is matched to the wallets that hold it through the export receipts the coordinator
already keeps (``wallet_members.export_receipt`` names the station's label). Then:

* **no new address on it**: a key pool skips an inactive key's addresses; a wallet whose
  every key is inactive, or a multisig with an inactive member, gets none (the station
  would refuse to sign for the coins it receives: :func:`blocked_descriptors`);
* **its coins are not spent, nor change sent to it,** unless the descriptor keeps enough
  active keys to sign (a multisig's remaining quorum can still move coins away from a
  suspended member, change included);
* **an alert on every coin paid to it** (``deposit_to_inactive_key``): each coin the sync
  records after the receipt, raised by the sync itself, so the command line, ``status``,
  the web page and ``watch``'s webhook all see it (:func:`deposit_alerts`); and, when the
  receipt is recorded, each unspent coin first seen since the station's record, since the
  receipt crosses the air gap some time after the station suspended the key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from online_coordinator.store import Store, now
from shared.bitcoin.amount import format_btc
from shared.bitcoin.descriptor import Descriptor
from shared.journal import KEY_TRANSITIONS, Entry, JournalError, Record, receipt_problem

#: The station's key-state events and the state each leaves the key in.
ALERT_KIND = "deposit_to_inactive_key"
#: The last utxos row the deposit check has looked at (rows only grow).
CURSOR_KEY = "key_states:utxo_cursor"


class KeyStateError(ValueError):
    """A key-state receipt that is refused."""


@dataclass(frozen=True)
class InactiveKey:
    """A wallet key its station no longer signs with (as its newest receipt says)."""

    appliance_id: str
    label: str
    state: str
    seq: int

    def __str__(self) -> str:
        return (
            f"key {self.label} on appliance {self.appliance_id} is {self.state} "
            f"(station journal record {self.seq})"
        )


@dataclass(frozen=True)
class KeyStateChange:
    """What ``wallet key-state`` recorded."""

    key: InactiveKey  # its state may be 'active' (a reactivation)
    wallets: tuple[str, ...]
    current: bool  # False: a newer receipt for the key was already recorded
    alerts: tuple[str, ...] = ()  # deposits found paid to the key since the station's record


def record_key_state(store: Store, receipt: bytes) -> KeyStateChange:
    """Verify a key-state receipt and keep it; see the module docstring."""
    record = _verified(store, receipt)
    label = record.details.get("label")
    if not isinstance(label, str) or not label:
        raise KeyStateError(f"the receipt (seq {record.seq}) names no key label")
    state = KEY_TRANSITIONS[record.event][1]
    wallets = _wallets_holding(store, record.appliance_id, label)
    if not wallets:
        raise KeyStateError(
            f"no wallet here holds key {label!r} of appliance {record.appliance_id!r} "
            "(import its wallet export first)"
        )
    with store.write() as db:
        deposit_alerts(store)  # coins recorded so far are judged by the states known so far
        seen = db.execute(
            "SELECT 1 FROM key_states WHERE appliance_id = ? AND seq = ?",
            (record.appliance_id, record.seq),
        ).fetchone()
        if seen is None:
            db.execute(
                "INSERT INTO key_states (appliance_id, label, state, seq, receipt, recorded) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (record.appliance_id, label, state, record.seq, receipt, now()),
            )
        newest = _newest(store, record.appliance_id, label)
        key = InactiveKey(record.appliance_id, label, state, record.seq)
        current = newest is not None and newest.seq == record.seq
        if seen is None:
            store.event(
                "key_state",
                f"{key}; wallets {', '.join(wallets)}"
                + ("" if current else f" (a newer record, {newest}, stays in force)"),
            )
            if current and state != "active":
                alerts = _deposits(store, since_time=record.time, key=key)
                _alert(store, alerts)
                return KeyStateChange(key, wallets, current, tuple(alerts))
    return KeyStateChange(key, wallets, current)


def _verified(store: Store, receipt: bytes) -> Record:
    try:
        entry = Entry.from_bytes(receipt)
    except JournalError as exc:
        raise KeyStateError(f"not an appliance receipt: {exc}") from exc
    record = entry.record
    if record.event not in KEY_TRANSITIONS:
        raise KeyStateError(
            f"the receipt records {record.event!r}, not a key suspension, reactivation or archive"
        )
    row = store.one("SELECT audit_key FROM appliances WHERE appliance_id = ?", record.appliance_id)
    if row is None:
        raise KeyStateError(
            f"appliance {record.appliance_id!r} is not known: import its wallet export first"
        )
    if not entry.verify(bytes(row["audit_key"])):
        raise KeyStateError(
            f"the receipt does not verify under appliance {record.appliance_id!r}'s pinned "
            "audit key"
        )
    problem = receipt_problem(record, wallet=True)
    if problem is not None:
        raise KeyStateError(
            f"the receipt from appliance {record.appliance_id!r} is refused: {problem}"
        )
    return record


def _export_label(receipt: bytes | None) -> str | None:
    """The station label an export receipt names (None for a cosigner's key)."""
    if receipt is None:
        return None
    try:
        label = Entry.from_bytes(bytes(receipt)).record.details.get("label")
    except JournalError:  # verified at import: a stored one that no longer reads is no label
        return None
    return label if isinstance(label, str) else None


def _members(store: Store, where: str, *params: object) -> list[tuple[int, str, str, str]]:
    """(wallet id, appliance id, key text, station label) of the station keys ``where``
    selects."""
    rows = store.all(
        "SELECT wallet_id, appliance_id, key, export_receipt FROM wallet_members "
        f"WHERE role = 'appliance' AND {where}",
        *params,
    )
    found = []
    for row in rows:
        label = _export_label(row["export_receipt"])
        if label is not None:
            found.append((row["wallet_id"], row["appliance_id"], row["key"], label))
    return found


def _wallets_holding(store: Store, appliance_id: str, label: str) -> tuple[str, ...]:
    ids = {
        w for w, _, _, held in _members(store, "appliance_id = ?", appliance_id) if held == label
    }
    rows = store.all("SELECT id, name FROM wallets ORDER BY name")
    return tuple(r["name"] for r in rows if r["id"] in ids)


def _newest(store: Store, appliance_id: str, label: str) -> InactiveKey | None:
    row = store.one(
        "SELECT state, seq FROM key_states WHERE appliance_id = ? AND label = ? "
        "ORDER BY seq DESC LIMIT 1",
        appliance_id,
        label,
    )
    return None if row is None else InactiveKey(appliance_id, label, row["state"], row["seq"])


def inactive_keys(store: Store, wallet_id: int) -> dict[str, InactiveKey]:
    """The wallet's keys (by key text) whose newest receipt says suspended or archived."""
    if store.one("SELECT 1 FROM key_states LIMIT 1") is None:
        return {}
    found = {}
    for _, appliance_id, key, label in _members(store, "wallet_id = ?", wallet_id):
        newest = _newest(store, appliance_id, label)
        if newest is not None and newest.state != "active":
            found[key] = newest
    return found


def blocked_descriptors(
    store: Store,
    wallet_id: int,
    descriptors: Iterable[tuple[int, Descriptor]],
    *,
    spending: bool = False,
) -> dict[int, InactiveKey]:
    """Of the wallet's (descriptor id, descriptor), those its inactive keys block, each with
    one such key. Receiving: any inactive key blocks (no receive address is handed out).
    Spending (its coins as inputs, its change addresses): only a descriptor left with fewer
    active keys than it needs to sign, so a multisig's remaining quorum can still move the
    coins away from a suspended member."""
    inactive = inactive_keys(store, wallet_id)
    if not inactive:
        return {}
    blocked = {}
    for descriptor_id, descriptor in descriptors:
        held = [inactive[str(k)] for k in descriptor.keys if str(k) in inactive]
        needed = descriptor.threshold or 1
        if held and (not spending or len(descriptor.keys) - len(held) < needed):
            blocked[descriptor_id] = held[0]
    return blocked


def deposit_alerts(store: Store) -> list[str]:
    """An alert (event and message) for each coin recorded since the last check that pays
    an address of a blocked descriptor; see the module docstring. The cursor is read and
    moved in the one transaction that writes the alerts (two processes never judge the same
    coins), and never backwards."""
    with store.write():
        cursor = int(store.meta(CURSOR_KEY) or 0)
        top = int(store.row("SELECT COALESCE(MAX(rowid), 0) AS n FROM utxos")["n"])
        if top <= cursor:
            return []
        messages = []
        if store.one("SELECT 1 FROM key_states WHERE state != 'active' LIMIT 1") is not None:
            messages = _deposits(store, after_rowid=cursor, upto_rowid=top)
        _alert(store, messages)
        store.set_meta(CURSOR_KEY, str(top))
    return messages


def _alert(store: Store, messages: list[str]) -> None:
    for message in messages:
        store.event(ALERT_KIND, message, severity="alert")


def _deposits(
    store: Store,
    *,
    after_rowid: int = 0,
    upto_rowid: int | None = None,
    since_time: int | None = None,
    key: InactiveKey | None = None,
) -> list[str]:
    """Deposit alerts for coins to blocked receive descriptors: the coins recorded between
    two row ids, or (``since_time``) the unspent coins first seen after the second of the
    station's record suspending ``key``, found when its receipt is recorded (coins seen
    in that same second are taken as paid before it)."""
    params: tuple[int | None, ...]
    if since_time is None:
        where, params = "u.rowid > ? AND u.rowid <= ?", (after_rowid, upto_rowid)
    else:
        where = "u.first_seen > ? AND u.state IN ('available', 'locked', 'orphaned')"
        params = (since_time,)
    rows = store.all(
        "SELECT u.txid, u.vout, u.value, u.height, u.wallet_id, a.address, a.descriptor_id, "
        "w.name FROM utxos u JOIN addresses a ON a.id = u.address_id JOIN wallets w ON w.id = "
        f"u.wallet_id WHERE {where} ORDER BY u.rowid",
        *params,
    )
    blocked_by_wallet: dict[int, dict[int, InactiveKey]] = {}
    messages = []
    for row in rows:
        wallet_id = row["wallet_id"]
        if wallet_id not in blocked_by_wallet:
            blocked_by_wallet[wallet_id] = blocked_descriptors(
                store, wallet_id, _descriptors(store, wallet_id)
            )
        blocker = blocked_by_wallet[wallet_id].get(row["descriptor_id"])
        if blocker is not None and (key is None or blocker == key):
            messages.append(
                f"deposit to an inactive key: {format_btc(row['value'])} to {row['address']} "
                f"of wallet {row['name']} (coin {row['txid']}:{row['vout']}, height "
                f"{row['height']}); {blocker}: the station does not sign with it until its "
                "officers reactivate it"
            )
    return messages


def _descriptors(store: Store, wallet_id: int) -> list[tuple[int, Descriptor]]:
    rows = store.all("SELECT id, descriptor FROM descriptors WHERE wallet_id = ?", wallet_id)
    return [(r["id"], Descriptor.parse(r["descriptor"])) for r in rows]
