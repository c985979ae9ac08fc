"""Back from the cold station: signed responses, combine, finalize, check, broadcast.

Nothing reaches the network that the appliance did not approve (REQUIREMENTS 20, DESIGN
2.4):

* a response must be the request we made: the same unsigned transaction, byte for byte;
* every partial signature must verify against the *request's* scripts (a bad one refuses
  the whole response); signatures by keys foreign to the input are tolerated but never
  finalized (DESIGN 6: BDK adds them). A cosigner may also answer with inputs already
  finalized (Bitcoin Core's ``walletprocesspsbt`` does so by default): each final
  scriptSig and witness must then have exactly the form our finalizer writes, the request's
  scripts and the threshold's number of signatures, each verified the same way;
* every appliance whose key signed (partially or inside a final witness) must have given
  its receipt, in this response or an earlier one: its signed journal entry approving
  exactly this request hash, verified under the audit key pinned at import, neither
  deferred nor short of the quorum it records (``shared.journal.receipt_problem``);
* the final transaction is re-extracted and compared with the approved request (same
  inputs, outputs, version and locktime, hence the same fee).

Broadcast is intent first: the exact bytes are recorded as ``sending`` (and the attempt
counted) in committed transactions *before* ``sendrawtransaction``. Whatever happens next
(the reply lost, the node stopping, the process killed, the disk full at the commit), a
rerun or ``sync`` finds those bytes in the node's mempool or a block and records success,
or sends the same bytes again; no new transaction is ever built for the batch, and its own
payment never reads as an outflow without a request.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from online_coordinator import faults
from online_coordinator.chain.rpc import BitcoinCoreRPC, ChainUnavailable, RpcError
from online_coordinator.store import Store, now, outcome
from online_coordinator.sync import (
    RPC_VERIFY_ALREADY_IN_UTXO_SET,
    found_in_mempool,
    live_broadcast,
    record_in_mempool,
    walk_chain,
)
from online_coordinator.wallet import pinned_audit_key
from shared.bitcoin.descriptor import parse_key
from shared.bitcoin.sighash import SighashCache
from shared.bitcoin.tx import Transaction
from shared.journal import Entry, receipt_problem
from shared.psbt import PsbtError
from shared.psbt.model import Psbt
from shared.psbt.roles import combine, extract, final_signatures, finalize, valid_signatures
from shared.psbt.scripts import spend_info
from shared.request import RequestError, read_receipts

OPEN_STATES = ("open", "signed")
#: A station showing again the signed PSBT of an approval it journaled may add a record of
#: that; it is checked (pinned key, this request) but counts for nothing: the approval
#: receipt itself must be there (in this response or an earlier one) for every signer.
REISSUE_EVENT = "signing_reissued"
#: testmempoolaccept reasons meaning "I have it already" (Core's PreChecks).
IN_MEMPOOL_REASONS = ("txn-already-in-mempool", "txn-same-nonwitness-data-in-mempool")
#: ... and "it is in a block, or its coins are spent" (Core: TX_CONFLICT, TX_MISSING_INPUTS).
SPENT_REASONS = ("txn-already-known", "missing-inputs", "bad-txns-inputs-missingorspent")


class FinishError(ValueError):
    """A response, finalization or broadcast that is refused."""


@dataclass(frozen=True)
class ImportResult:
    request_row: int
    signatures: int
    receipts: list[str]
    complete: bool
    missing: list[str]  # why the combined PSBT is not final yet, input by input
    duplicate: bool = False  # this very response was imported before


@dataclass(frozen=True)
class BroadcastResult:
    txid: str
    state: str  # the broadcast row's state: 'mempool', 'confirmed' or 'final'
    already: bool  # it had been broadcast before this run
    how: str  # what this run did, for the operator


# -- import ---------------------------------------------------------------------------------


def _request_for(store: Store, batch_id: int, psbt: Psbt) -> sqlite3.Row:
    """The open request of the batch this response answers (matched by its unsigned tx)."""
    txid = psbt.unsigned_tx.txid_hex
    row = store.one("SELECT * FROM requests WHERE batch_id = ? AND txid = ?", batch_id, txid)
    if row is None:
        raise FinishError(f"this PSBT (txid {txid}) answers no request of the batch")
    if row["state"] == "broadcast":
        sent = store.one("SELECT txid FROM broadcasts WHERE request_id = ?", row["id"])
        raise FinishError(
            f"request {row['request_id'].hex()} was already broadcast as "
            f"{sent['txid'] if sent else txid}; nothing to import"
        )
    if row["state"] not in OPEN_STATES:
        raise FinishError(f"request {row['request_id'].hex()} is {row['state']}")
    approved = Psbt.parse(bytes(row["unsigned_psbt"])).unsigned_tx.serialize(include_witness=False)
    if psbt.unsigned_tx.serialize(include_witness=False) != approved:
        raise FinishError("the response's transaction differs from the request's")
    return row


def _check_signatures(request: Psbt, psbt: Psbt) -> tuple[int, set[bytes]]:
    """Every signature verifies, partial or final; (how many were checked, their keys).

    The scripts come from the request we built, never from the response.
    """
    cache = SighashCache(psbt.unsigned_tx)
    count, signers = 0, set()
    for index, inp in enumerate(psbt.inputs):
        if not inp.is_finalized and not inp.partial_sigs:
            continue
        try:
            info = spend_info(request, index)
            if inp.is_finalized:
                sigs = final_signatures(
                    psbt,
                    info,
                    cache,
                    inp.final_script_sig or b"",
                    list(inp.final_script_witness or []),
                )
            else:
                sigs = valid_signatures(psbt, info, cache)
        except PsbtError as exc:
            raise FinishError(f"refused: {exc}") from exc
        count += len(sigs)
        signers |= set(sigs)
    return count, signers


def _check_receipts(
    store: Store, psbt: Psbt, request: sqlite3.Row, wallet_id: int
) -> list[tuple[str, bytes]]:
    """Each receipt: a pinned member appliance approving exactly this request hash, with the
    quorum it records and not deferred. Returns (appliance id, entry bytes)."""
    try:
        raws = read_receipts(psbt)
        entries = [Entry.from_bytes(raw) for raw in raws]
    except (RequestError, ValueError) as exc:
        raise FinishError(f"refused: a receipt is malformed: {exc}") from exc
    members = {
        r["appliance_id"]
        for r in store.all(
            "SELECT appliance_id FROM wallet_members WHERE wallet_id = ? AND role = 'appliance'",
            wallet_id,
        )
    }
    approved = []
    for raw, entry in zip(raws, entries, strict=True):
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
        if record.subjects.get("request") != bytes(request["request_hash"]):
            raise FinishError(f"refused: appliance {name!r}'s receipt is for another request")
        if record.event == REISSUE_EVENT:
            continue  # "shown again": a note beside the approval, which it never replaces
        problem = receipt_problem(record, wallet=False)
        if problem is not None:
            raise FinishError(f"refused: appliance {name!r}'s receipt is not usable: {problem}")
        approved.append((name, raw))
    return approved


def _appliance_keys(store: Store, wallet_id: int, request: Psbt) -> dict[bytes, str]:
    """Public key -> appliance id, for every key an appliance member signs the request's
    inputs with: its plain key, or (a bip32-seed key's account xpub) each child the inputs'
    derivation hints name, re-derived from the xpub so a hint cannot claim a key."""
    keys = {}
    for row in store.all(
        "SELECT appliance_id, key FROM wallet_members WHERE wallet_id = ? AND role = 'appliance'",
        wallet_id,
    ):
        member = parse_key(row["key"])
        if member.pubkey is not None:
            keys[member.pubkey] = row["appliance_id"]
            continue
        for inp in request.inputs:
            for pubkey, origin in inp.bip32_derivations.items():
                if member.child_at(origin) == pubkey:
                    keys[pubkey] = row["appliance_id"]
    return keys


def import_response(store: Store, batch_id: int, data: bytes, source: str) -> ImportResult:
    """Verify and keep a signed response; combine with earlier ones and try to finalize.

    Importing the same response again changes nothing (a station that shows its signed
    output a second time is counted once).
    """
    try:
        psbt = Psbt.from_text(data)
    except PsbtError as exc:
        raise FinishError(f"not a valid PSBT: {exc}") from exc
    batch = store.row("SELECT * FROM batches WHERE id = ?", batch_id)
    request = _request_for(store, batch_id, psbt)
    count, signers = _check_signatures(Psbt.parse(bytes(request["unsigned_psbt"])), psbt)
    receipts = _check_receipts(store, psbt, request, batch["wallet_id"])
    earlier = {
        r["appliance_id"]
        for r in store.all("SELECT appliance_id FROM receipts WHERE request_id = ?", request["id"])
    }
    keys = _appliance_keys(store, batch["wallet_id"], Psbt.parse(bytes(request["unsigned_psbt"])))
    missing = {keys[k] for k in signers if k in keys} - {n for n, _ in receipts} - earlier
    if missing:
        raise FinishError(
            f"refused: appliance(s) {', '.join(sorted(missing))} signed without "
            "attaching an approval receipt"
        )
    if count == 0:
        raise FinishError("the response carries no signature")
    faults.point("import.verified")
    raw = psbt.serialize()
    with outcome("the response was not recorded: import it again"), store.write() as db:
        duplicate = store.one(
            "SELECT 1 FROM responses WHERE request_id = ? AND psbt = ?", request["id"], raw
        )
        if duplicate is None:
            db.execute(
                "INSERT INTO responses (request_id, psbt, received, source) VALUES (?, ?, ?, ?)",
                (request["id"], raw, now(), source),
            )
        for name, entry_bytes in receipts:
            db.execute(
                "INSERT OR IGNORE INTO receipts (request_id, appliance_id, entry) VALUES (?, ?, ?)",
                (request["id"], name, entry_bytes),
            )
        complete, problems = _finalizable(combined_psbt(store, request["id"]))
        if complete:
            db.execute("UPDATE requests SET state = 'signed' WHERE id = ?", (request["id"],))
            db.execute(
                "UPDATE batches SET state = 'signed' WHERE id = ? AND state = "
                "'awaiting_signatures'",
                (batch_id,),
            )
        names = ", ".join(n for n, _ in receipts) or "none"
        store.event(
            "response_imported",
            f"request {request['request_id'].hex()}: {count} signature(s), receipts from "
            f"{names} ({'complete' if complete else 'more signatures needed'})"
            + (" (the same response again: counted once)" if duplicate else ""),
            batch_id=batch_id,
        )
    faults.point("import.recorded")
    return ImportResult(
        request["id"], count, [n for n, _ in receipts], complete, problems, duplicate is not None
    )


def combined_psbt(store: Store, request_row: int) -> Psbt:
    """The request combined with every response received for it."""
    request = store.row("SELECT unsigned_psbt FROM requests WHERE id = ?", request_row)
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
    """(complete, why not: one line per input that is not final yet)."""
    try:
        result = finalize(psbt)
    except PsbtError as exc:
        return False, [str(exc)]
    return result.complete, list(result.problems.values())


def final_transaction(store: Store, request_row: int) -> Transaction:
    """Finalize, extract and check against the approved request (REQUIREMENTS 20)."""
    psbt = combined_psbt(store, request_row)
    try:
        result = finalize(psbt)
        if not result.complete:
            raise FinishError("not enough signatures yet: " + "; ".join(result.problems.values()))
        tx = extract(result.psbt)
    except PsbtError as exc:
        raise FinishError(f"cannot finalize: {exc}") from exc
    check_against_request(store, request_row, tx)
    return tx


def check_against_request(store: Store, request_row: int, tx: Transaction) -> None:
    """The transaction must be the approved one: same unsigned serialization (so the same
    inputs, outputs, amounts, version and locktime, and therefore the same fee)."""
    request = store.row("SELECT unsigned_psbt, fee FROM requests WHERE id = ?", request_row)
    approved = Psbt.parse(bytes(request["unsigned_psbt"]))
    if tx.serialize(include_witness=False) != approved.unsigned_tx.serialize(include_witness=False):
        raise FinishError("refused: the signed transaction is not the approved request")
    fee = approved.fee()
    if fee is None or fee != request["fee"]:
        raise FinishError("refused: the approved request's fee cannot be recomputed")


# -- broadcast ------------------------------------------------------------------------------


def broadcast(store: Store, rpc: BitcoinCoreRPC, batch_id: int) -> BroadcastResult:
    """Send the batch's signed transaction, intent first (see the module docstring).

    A batch already in the mempool or a block answers "already broadcast"; one left
    ``sending`` by an earlier run is settled with the bytes recorded then.
    """
    signed = store.one(
        "SELECT * FROM requests WHERE batch_id = ? AND state = 'signed' ORDER BY id DESC LIMIT 1",
        batch_id,
    )
    current = live_broadcast(store, batch_id)
    if signed is not None and (current is None or current["request_id"] < signed["id"]):
        tx = final_transaction(store, signed["id"])
        current = _record_intent(store, signed, tx)
        faults.point("broadcast.intent")
    if current is None:
        state = store.row("SELECT state FROM batches WHERE id = ?", batch_id)["state"]
        raise FinishError(f"the batch is {state}: it has no fully signed request to broadcast")
    if current["state"] != "sending":
        return BroadcastResult(current["txid"], current["state"], True, "already broadcast")
    return _settle(store, rpc, current)


def _record_intent(store: Store, request: sqlite3.Row, tx: Transaction) -> sqlite3.Row:
    """The exact bytes, as ``sending`` with no attempt yet, before the node hears of them."""
    raw = tx.serialize()
    unrecorded = "nothing was sent: the transaction could not be recorded first"
    with outcome(unrecorded), store.write() as db:
        db.execute(
            "INSERT INTO broadcasts (request_id, txid, wtxid, raw, first_sent, last_sent, "
            "sends, state) VALUES (?, ?, ?, ?, ?, ?, 0, 'sending')",
            (request["id"], tx.txid_hex, tx.wtxid_hex, raw, now(), now()),
        )
        db.execute("UPDATE requests SET state = 'broadcast' WHERE id = ?", (request["id"],))
        db.execute("UPDATE batches SET state = 'sending' WHERE id = ?", (request["batch_id"],))
        store.event(
            "broadcast_intent",
            f"sending {tx.txid_hex} ({len(raw)} bytes): recorded before the node is asked",
            batch_id=request["batch_id"],
        )
    row = store.one("SELECT * FROM broadcasts WHERE request_id = ?", request["id"])
    assert row is not None
    return row


def _settle(store: Store, rpc: BitcoinCoreRPC, row: sqlite3.Row) -> BroadcastResult:
    """Find the recorded bytes at the node, or send them; record what happened."""
    txid = row["txid"]
    try:
        return _settle_at_node(store, rpc, row)
    except ChainUnavailable as exc:
        attempted = store.row("SELECT sends FROM broadcasts WHERE id = ?", row["id"])["sends"]
        may = " may or may not have reached the node: it" if attempted else ""
        raise ChainUnavailable(
            f"{exc}. Transaction {txid}{may} is recorded as sending, exact bytes kept; run "
            "`batch broadcast` again or `sync` when the node answers: they find it or send "
            "the same bytes. Do not cancel or rebuild these payouts"
        ) from exc


def _settle_at_node(store: Store, rpc: BitcoinCoreRPC, row: sqlite3.Row) -> BroadcastResult:
    raw, txid = bytes(row["raw"]), row["txid"]
    wtxid = rpc.mempool_wtxid(txid)
    if wtxid is not None:
        return _seen(store, row, found_in_mempool(row, wtxid))
    verdict = rpc.test_mempool_accept(raw)
    if not verdict.allowed:
        reason = verdict.reason or "rejected"
        if reason in IN_MEMPOOL_REASONS:
            return _seen(store, row, "found in the node's mempool")
        if reason in SPENT_REASONS:
            return _find_in_blocks(store, rpc, row, reason)
        raise FinishError(_refusal(row, reason, attempted=row["sends"] > 0))
    with outcome("nothing was sent: the attempt could not be recorded first"), store.write() as db:
        db.execute(
            "UPDATE broadcasts SET sends = sends + 1, last_sent = ? WHERE id = ?",
            (now(), row["id"]),
        )
    faults.point("broadcast.attempt")
    try:
        sent = rpc.send_raw_transaction(raw)
    except RpcError as exc:
        if exc.code == RPC_VERIFY_ALREADY_IN_UTXO_SET:
            return _find_in_blocks(store, rpc, row, exc.message)
        if any(reason in exc.message for reason in IN_MEMPOOL_REASONS):
            return _seen(store, row, "found in the node's mempool")
        raise FinishError(_refusal(row, exc.message, attempted=True)) from exc
    faults.point("broadcast.sent")
    if sent != txid:
        raise FinishError(f"the node reports txid {sent}, we sent {txid}")
    return _seen(store, row, "sent")


def _seen(store: Store, row: sqlite3.Row, how: str) -> BroadcastResult:
    with outcome(
        f"{row['txid']} IS at the node, but that could not be recorded yet; run `sync` "
        "when there is space (it finds it and records it). Do not rebuild these payouts"
    ):
        record_in_mempool(store, row, how)
    faults.point("broadcast.recorded")
    return BroadcastResult(row["txid"], "mempool", False, how)


def _find_in_blocks(
    store: Store, rpc: BitcoinCoreRPC, row: sqlite3.Row, reason: str
) -> BroadcastResult:
    """The node says it is mined, or its coins are spent: walk the chain to see which."""
    walk_chain(store, rpc)
    now_row = store.row("SELECT * FROM broadcasts WHERE id = ?", row["id"])
    if now_row["state"] in ("confirmed", "final"):
        return BroadcastResult(row["txid"], now_row["state"], True, "found in a block")
    raise FinishError(
        f"the node says {reason}: the coins of {row['txid']} are spent, and no block up to "
        "the tip holds this transaction; nothing was sent. Run `sync`: a spend that is not "
        "ours raises an ALERT"
    )


def _refusal(row: sqlite3.Row, reason: str, *, attempted: bool) -> str:
    """The node's no, and what it means for the batch (still ``sending``, bytes kept)."""
    txid = row["txid"]
    if "non-final" in reason:
        locktime = Transaction.parse(bytes(row["raw"])).locktime
        return (
            f"the node refuses {txid} as non-final: its nLockTime {locktime} is above the "
            f"chain's height (a deep reorg shortened the chain); it becomes valid once the "
            f"chain reaches height {locktime}, and `sync` keeps re-sending the same bytes. "
            "This is not a compromise"
        )
    sent = "an earlier attempt may have reached the node" if attempted else "nothing was sent"
    return (
        f"the node refuses the transaction: {reason}; {sent}. {txid} stays recorded as "
        "sending and `sync` retries it"
    )
