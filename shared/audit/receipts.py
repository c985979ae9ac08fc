"""What may serve as a receipt, and what a deferred record may say (issue 12, item 4).

A receipt is a journal record the outside relies on: the coordinator imports wallets on
``wallet_exported``/``wallet_pinned`` receipts, stops receiving to a key on
``key_suspended``/``key_archived`` receipts (``key_reactivated`` undoes it), and accepts
signed responses on approved ``signing_decision`` receipts. The audit key signs every
record, including records written from the station's ``pending/`` folder at a later
activation (refusals decided before any officer was present). So a valid signature alone
proves too little: a file dropped in ``pending/`` once became a signed "wallet export" of
an attacker's key. The record contract closes this, and the replay holds every record to
it:

* a receipt is never deferred, and names the quorum in force with at least that many
  distinct officers in ``actors`` (for an approval, each with an approval signature):
  :func:`shared.journal.receipt_problem`, the same rule the coordinator applies;
* a deferred record (``details["deferred"]``) may only be a refusal: a ``signing_decision``
  with decision ``refused``, marked with exactly ``True``, carrying none of
  :data:`NOT_IN_DEFERRED` (nothing that pays, approves or pins).

These functions only name problems; the replays decide where the finding is filed.
"""

from __future__ import annotations

from shared.journal import KEY_STATE_EVENTS, WALLET_RECEIPT_EVENTS, Record, receipt_problem

#: Details a deferred refusal may never carry: amounts counted toward limits, approvals,
#: wallets, signatures made.
NOT_IN_DEFERRED = ("paid_out", "approvals", "descriptor", "descriptors", "signatures")


def is_receipt(record: Record) -> bool:
    """True for records that vouch for something outside the station. A key-state record
    is one when it names its quorum (the coordinator stops receiving to a suspended key on
    it); those written before key states were receipts name none, and vouch for nothing."""
    if record.event in KEY_STATE_EVENTS:
        return "quorum" in record.details
    return record.event in WALLET_RECEIPT_EVENTS or (
        record.event == "signing_decision" and record.decision == "approved"
    )


def journal_receipt_problem(record: Record) -> str | None:
    """For a receipt record of the journal: why it cannot serve as one, or None."""
    if not is_receipt(record):
        return None
    return receipt_problem(record, wallet=record.event != "signing_decision")


def standalone_receipt_problem(record: Record) -> str | None:
    """For a record presented on its own as a receipt (``coldstation-audit
    verify-receipt``): why it cannot serve as one, or None."""
    if not is_receipt(record):
        return f"seq {record.seq} records {record.event}/{record.decision}, not a receipt"
    return journal_receipt_problem(record)


def deferred_problem(record: Record) -> str | None:
    """For a record marked deferred: why it breaks the deferred-refusal contract, or None
    (also None for a record that is not deferred)."""
    marker = record.details.get("deferred")
    if marker is None:
        return None
    problems = []
    if marker is not True:
        problems.append(f"its deferred marker is {marker!r}, not true")
    if record.event != "signing_decision" or record.decision != "refused":
        problems.append(f"it records {record.event}/{record.decision}; only refusals may wait")
    carried = [name for name in NOT_IN_DEFERRED if name in record.details]
    if carried:
        problems.append(f"it carries {', '.join(carried)}")
    if not problems:
        return None
    return "deferred record breaks the refusal-only contract: " + "; ".join(problems)


__all__ = [
    "NOT_IN_DEFERRED",
    "deferred_problem",
    "is_receipt",
    "journal_receipt_problem",
    "standalone_receipt_problem",
]
