"""Back from the cold station: signed responses, combine, finalize, check, broadcast.

Nothing reaches the network that the appliance did not approve (REQUIREMENTS 20, DESIGN
2.4):

* a response must be the request we made: the same unsigned transaction, byte for byte;
* every partial signature must verify (a bad one refuses the whole response), signatures by
  keys foreign to the input are tolerated but never finalized (DESIGN 6: BDK adds them);
* every appliance whose key signed must have attached its receipt: its signed journal entry
  approving exactly this request hash, verified under the audit key pinned at import;
* the final transaction is re-extracted and compared with the approved request (same
  inputs, outputs, version and locktime, hence the same fee), then offered to the node's
  ``testmempoolaccept`` and only then sent with ``sendrawtransaction``; the bytes sent are
  stored and are the only bytes ever re-sent.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from online_coordinator.chain.rpc import BitcoinCoreRPC, RpcError
from online_coordinator.store import Store, now
from online_coordinator.wallet import pinned_audit_key
from shared.bitcoin.sighash import SighashCache
from shared.bitcoin.tx import Transaction
from shared.journal import Entry
from shared.psbt import PsbtError
from shared.psbt.model import Psbt
from shared.psbt.roles import combine, extract, finalize, valid_signatures
from shared.psbt.scripts import spend_info
from shared.request import RequestError, read_receipts

OPEN_STATES = ("open", "signed")


class FinishError(ValueError):
    """A response, finalization or broadcast that is refused."""


@dataclass(frozen=True)
class ImportResult:
    request_row: int
    signatures: int
    receipts: list[str]
    complete: bool
    missing: list[str]


def _request_for(store: Store, batch_id: int, psbt: Psbt) -> sqlite3.Row:
    """The open request of the batch this response answers (matched by its unsigned tx)."""
    txid = psbt.unsigned_tx.txid_hex
    row = store.one("SELECT * FROM requests WHERE batch_id = ? AND txid = ?", batch_id, txid)
    if row is None:
        raise FinishError(f"this PSBT (txid {txid}) answers no request of the batch")
    if row["state"] not in OPEN_STATES:
        raise FinishError(f"request {row['request_id'].hex()} is {row['state']}")
    approved = Psbt.parse(bytes(row["unsigned_psbt"])).unsigned_tx.serialize(include_witness=False)
    if psbt.unsigned_tx.serialize(include_witness=False) != approved:
        raise FinishError("the response's transaction differs from the request's")
    return row


def _check_signatures(psbt: Psbt) -> int:
    """Every partial signature verifies; returns how many were checked."""
    cache = SighashCache(psbt.unsigned_tx)
    count = 0
    for index, inp in enumerate(psbt.inputs):
        if not inp.partial_sigs:
            continue
        try:
            count += len(valid_signatures(psbt, spend_info(psbt, index), cache))
        except PsbtError as exc:
            raise FinishError(f"refused: {exc}") from exc
    return count


def _check_receipts(store: Store, psbt: Psbt, request: sqlite3.Row, wallet_id: int) -> list[str]:
    """Each receipt: a pinned member appliance approving exactly this request hash."""
    try:
        entries = [Entry.from_bytes(raw) for raw in read_receipts(psbt)]
    except (RequestError, ValueError) as exc:
        raise FinishError(f"refused: a receipt is malformed: {exc}") from exc
    members = {
        r["appliance_id"]: r["key"]
        for r in store.all(
            "SELECT appliance_id, key FROM wallet_members WHERE wallet_id = ? AND role = "
            "'appliance'",
            wallet_id,
        )
    }
    approved = []
    for entry in entries:
        record = entry.record
        name = record.appliance_id
        key = pinned_audit_key(store, name)
        if name not in members or key is None:
            raise FinishError(
                f"refused: receipt from appliance {name!r}, not a member of the wallet"
            )
        if not entry.verify(key):
            raise FinishError(
                f"refused: appliance {name!r}'s receipt does not verify under its pinned audit key"
            )
        if record.event != "signing_decision" or record.decision != "approved":
            raise FinishError(
                f"refused: appliance {name!r}'s receipt records "
                f"{record.event}/{record.decision}, not an approval"
            )
        if record.subjects.get("request") != bytes(request["request_hash"]):
            raise FinishError(f"refused: appliance {name!r} approved another request hash")
        approved.append(name)
    return approved


def _appliance_keys(store: Store, wallet_id: int) -> dict[bytes, str]:
    """Public key of each appliance member -> its appliance id (raw keys only)."""
    keys = {}
    for row in store.all(
        "SELECT appliance_id, key FROM wallet_members WHERE wallet_id = ? AND role = 'appliance'",
        wallet_id,
    ):
        text = row["key"].split("]")[-1]
        keys[bytes.fromhex(text)] = row["appliance_id"]
    return keys


def _unreceipted_signers(store: Store, psbt: Psbt, wallet_id: int, receipts: set[str]) -> set[str]:
    keys = _appliance_keys(store, wallet_id)
    signers = {keys[pk] for inp in psbt.inputs for pk in inp.partial_sigs if pk in keys}
    return signers - receipts


def import_response(store: Store, batch_id: int, data: bytes, source: str) -> ImportResult:
    """Verify and keep a signed response; combine with earlier ones and try to finalize."""
    try:
        psbt = Psbt.from_text(data)
    except PsbtError as exc:
        raise FinishError(f"not a valid PSBT: {exc}") from exc
    batch = store.one("SELECT * FROM batches WHERE id = ?", batch_id)
    request = _request_for(store, batch_id, psbt)
    count = _check_signatures(psbt)
    receipts = _check_receipts(store, psbt, request, batch["wallet_id"])
    missing = _unreceipted_signers(store, psbt, batch["wallet_id"], set(receipts))
    if missing:
        raise FinishError(
            f"refused: appliance(s) {', '.join(sorted(missing))} signed without "
            "attaching an approval receipt"
        )
    if count == 0:
        raise FinishError("the response carries no signature")
    with store.write() as db:
        db.execute(
            "INSERT INTO responses (request_id, psbt, received, source) VALUES (?, ?, ?, ?)",
            (request["id"], psbt.serialize(), now(), source),
        )
        for entry_bytes, name in zip(read_receipts(psbt), receipts, strict=True):
            db.execute(
                "INSERT OR IGNORE INTO receipts (request_id, appliance_id, entry) VALUES (?, ?, ?)",
                (request["id"], name, entry_bytes),
            )
        combined = combined_psbt(store, request["id"])
        complete, problems = _finalizable(combined)
        if complete:
            db.execute("UPDATE requests SET state = 'signed' WHERE id = ?", (request["id"],))
            db.execute("UPDATE batches SET state = 'signed' WHERE id = ?", (batch_id,))
        store.event(
            "response_imported",
            f"request {request['request_id'].hex()}: {count} "
            f"signature(s), receipts from {', '.join(receipts) or 'none'} "
            f"({'complete' if complete else 'more signatures needed'})",
            batch_id=batch_id,
        )
    return ImportResult(request["id"], count, receipts, complete, problems)


def combined_psbt(store: Store, request_row: int) -> Psbt:
    """The request combined with every response received for it."""
    request = store.one("SELECT unsigned_psbt FROM requests WHERE id = ?", request_row)
    responses = [
        Psbt.parse(bytes(r["psbt"]))
        for r in store.all(
            "SELECT psbt FROM responses WHERE request_id = ? ORDER BY id", request_row
        )
    ]
    try:
        return combine([Psbt.parse(bytes(request["unsigned_psbt"])), *responses])
    except PsbtError as exc:
        raise FinishError(f"cannot combine the responses: {exc}") from exc


def _finalizable(psbt: Psbt) -> tuple[bool, list[str]]:
    try:
        result = finalize(psbt)
    except PsbtError as exc:
        return False, [str(exc)]
    return result.complete, [str(p) for p in result.problems]


def final_transaction(store: Store, request_row: int) -> Transaction:
    """Finalize, extract and check against the approved request (REQUIREMENTS 20)."""
    psbt = combined_psbt(store, request_row)
    try:
        result = finalize(psbt)
        if not result.complete:
            raise FinishError("not enough signatures yet: " + "; ".join(map(str, result.problems)))
        tx = extract(result.psbt)
    except PsbtError as exc:
        raise FinishError(f"cannot finalize: {exc}") from exc
    check_against_request(store, request_row, tx)
    return tx


def check_against_request(store: Store, request_row: int, tx: Transaction) -> None:
    """The transaction must be the approved one: same unsigned serialization (so the same
    inputs, outputs, amounts, version and locktime, and therefore the same fee)."""
    request = store.one("SELECT unsigned_psbt, fee FROM requests WHERE id = ?", request_row)
    approved = Psbt.parse(bytes(request["unsigned_psbt"]))
    if tx.serialize(include_witness=False) != approved.unsigned_tx.serialize(include_witness=False):
        raise FinishError("refused: the signed transaction is not the approved request")
    fee = approved.fee()
    if fee is None or fee != request["fee"]:
        raise FinishError("refused: the approved request's fee cannot be recomputed")


def broadcast(store: Store, rpc: BitcoinCoreRPC, batch_id: int) -> str:
    """Send the batch's signed transaction; refuses twice-sending and unapproved bytes."""
    request = store.one(
        "SELECT * FROM requests WHERE batch_id = ? AND state = 'signed' ORDER BY id DESC LIMIT 1",
        batch_id,
    )
    if request is None:
        raise FinishError("the batch has no fully signed request to broadcast")
    if store.one("SELECT 1 FROM broadcasts WHERE request_id = ?", request["id"]):
        raise FinishError("this request was already broadcast; `status` tracks it")
    tx = final_transaction(store, request["id"])
    raw = tx.serialize()
    verdict = rpc.test_mempool_accept(raw)
    if not verdict.allowed:
        raise FinishError(f"the node refuses the transaction: {verdict.reason}")
    try:
        txid = rpc.send_raw_transaction(raw)
    except RpcError as exc:
        raise FinishError(f"sendrawtransaction failed: {exc}") from exc
    if txid != tx.txid_hex:
        raise FinishError(f"the node reports txid {txid}, we sent {tx.txid_hex}")
    with store.write() as db:
        db.execute(
            "INSERT INTO broadcasts (request_id, txid, wtxid, raw, first_sent, last_sent,"
            " state) VALUES (?, ?, ?, ?, ?, ?, 'sent')",
            (request["id"], tx.txid_hex, tx.wtxid_hex, raw, now(), now()),
        )
        db.execute("UPDATE requests SET state = 'broadcast' WHERE id = ?", (request["id"],))
        if request["replaces"] is not None:  # the node evicted it: never re-send it
            db.execute(
                "UPDATE broadcasts SET state = 'replaced' WHERE request_id = ? AND state = 'sent'",
                (request["replaces"],),
            )
        db.execute("UPDATE batches SET state = 'broadcast' WHERE id = ?", (batch_id,))
        store.event("broadcast", f"sent {tx.txid_hex} ({len(raw)} bytes)", batch_id=batch_id)
    return tx.txid_hex
