"""What may wait on the state medium for the next activation, and how it is checked.

The audit key lives in the signing token, which is locked until M officers activate it. Two
things happen while it is locked and must still reach the journal: a refusal decided before
any officer was present, and an administrators' reset of an officer's PIN lockout (the
locked-out officer may be needed for the quorum). They wait in ``STATE/pending`` and are
journaled at the next activation.

The medium is untrusted, so a pending file must never choose what the audit key signs
(DESIGN 9): each kind has a fixed schema checked field by field, a refusal can only ever
become a *refused* ``signing_decision`` marked ``deferred`` (no amounts, approvals,
descriptors or other events), and a lockout reset is journaled only when a quorum of the
policy's administrators signed it. Anything else is moved to ``pending/rejected`` and
named. The file's SHA-256 goes into the record, so a crash between journaling and deleting
never journals it twice.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared import canonical
from shared.journal import is_fingerprint
from shared.policy import Policy, count_admin_signatures
from shared.review import REFUSAL_CODES

DEFERRED_TYPE = "coldstation-deferred-refusal"
RESET_TYPE = "coldstation-lockout-reset"
MAX_PENDING_BYTES = 64 * 1024
#: Refusals one record lists, and the length of each message: every refusal is in the
#: transcript the record names; a request with a refusal per input (1,450 of them) would
#: otherwise outgrow a journal record (shared.journal.MAX_RECORD_BYTES).
MAX_REFUSALS = 32
MAX_MESSAGE = 300
_TXID = re.compile(r"[0-9a-f]{64}")
_SUBJECTS = {"psbt", "request", "transcript"}


class PendingError(ValueError):
    """A pending file that may not be journaled; the message says why."""


@dataclass(frozen=True)
class PendingRecord:
    """The journal record a verified pending file becomes."""

    event: str
    decision: str | None
    actors: tuple[str, ...] = ()
    subjects: dict[str, bytes] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def deferred_refusal(
    time: int, subjects: Mapping[str, bytes], details: Mapping[str, Any]
) -> dict[str, Any]:
    """The pending document for a refusal decided while the signing token is locked."""
    document = {
        "type": DEFERRED_TYPE,
        "time": time,
        "subjects": dict(subjects),
        "details": dict(details),
    }
    _check_refusal(document)  # fail at the refusal, not at the next activation
    return document


def lockout_reset(
    appliance_id: str, token: str, serial: str, time: int, nonce: str
) -> dict[str, Any]:
    """The statement administrators sign to give an officer token its PIN attempts back."""
    return {
        "type": RESET_TYPE,
        "appliance": appliance_id,
        "token": token,
        "serial": serial,
        "time": time,
        "nonce": nonce,
    }


def reset_digest(statement: Mapping[str, Any]) -> bytes:
    return canonical.digest(dict(statement))


def read_pending(data: bytes, policy: Policy, appliance_id: str) -> PendingRecord:
    """The record a pending file becomes, or PendingError (nothing about it is trusted)."""
    if len(data) > MAX_PENDING_BYTES:
        raise PendingError(f"{len(data)} bytes, more than a pending record can be")
    try:
        document = canonical.decode(data, max_size=MAX_PENDING_BYTES)
    except canonical.CanonicalError as exc:
        raise PendingError(f"not canonical CBOR: {exc}") from exc
    if not isinstance(document, dict):
        raise PendingError("not a map")
    digest = hashlib.sha256(data).hexdigest()
    if document.get("type") == DEFERRED_TYPE:
        return _refusal_record(document, bytes.fromhex(digest))
    if document.get("type") == RESET_TYPE:
        return _reset_record(document, policy, appliance_id, bytes.fromhex(digest))
    raise PendingError(f"unknown pending document type {document.get('type')!r}")


def _refusal_record(document: dict[str, Any], digest: bytes) -> PendingRecord:
    _check_refusal(document)
    details = {
        **document["details"],
        "deferred": True,
        "decided_at": document["time"],
        "pending": digest,
    }
    return PendingRecord("signing_decision", "refused", (), dict(document["subjects"]), details)


def _check_refusal(document: Mapping[str, Any]) -> None:
    _exact(document, {"type", "time", "subjects", "details"}, set())
    _int(document["time"], "time")
    subjects = document["subjects"]
    if not isinstance(subjects, dict) or not set(subjects) <= _SUBJECTS or "psbt" not in subjects:
        raise PendingError("a refusal names its psbt and at most its request and transcript")
    for name, value in subjects.items():
        if not isinstance(value, bytes) or len(value) != 32:
            raise PendingError(f"subject {name} must be a 32-byte hash")
    details = document["details"]
    _exact(details, {"refusals"}, {"txid", "request_id"})
    refusals = details["refusals"]
    if not isinstance(refusals, list) or not 1 <= len(refusals) <= MAX_REFUSALS:
        raise PendingError(f"a refusal lists 1..{MAX_REFUSALS} reasons")
    for item in refusals:
        if not _is_reason(item):
            raise PendingError("a refusal reason is [code, message] with a known code")
    if "txid" in details and not (
        isinstance(details["txid"], str) and _TXID.fullmatch(details["txid"])
    ):
        raise PendingError("txid must be 64 lowercase hex digits")
    if "request_id" in details and not (
        isinstance(details["request_id"], bytes) and len(details["request_id"]) == 16
    ):
        raise PendingError("request_id must be 16 bytes")


def _is_reason(item: object) -> bool:
    return (
        isinstance(item, list)
        and len(item) == 2
        and item[0] in REFUSAL_CODES
        and isinstance(item[1], str)
        and 0 < len(item[1]) <= MAX_MESSAGE
    )


def _reset_record(
    document: dict[str, Any], policy: Policy, appliance_id: str, digest: bytes
) -> PendingRecord:
    _exact(document, {"type", "appliance", "token", "serial", "time", "nonce", "signatures"}, set())
    if document["appliance"] != appliance_id:
        raise PendingError(f"lockout reset is for appliance {document['appliance']!r}")
    for name in ("token", "serial", "nonce"):
        value = document[name]
        if not isinstance(value, str) or not 0 < len(value) <= 64 or not value.isprintable():
            raise PendingError(f"{name} must be short printable text")
    _int(document["time"], "time")
    signatures = document["signatures"]
    if not isinstance(signatures, dict) or not all(is_fingerprint(k) for k in signatures):
        raise PendingError("signatures must map administrator fingerprints to signatures")
    statement = {k: v for k, v in document.items() if k != "signatures"}
    tally = count_admin_signatures(policy, reset_digest(statement), signatures)
    if not tally.met:
        refused = "; ".join(f"{fp}: {why}" for fp, why in tally.rejected) or "none"
        raise PendingError(
            f"lockout reset has {len(tally.valid)} valid administrator "
            f"signature(s), needs {policy.admin_quorum} ({refused})"
        )
    details = {
        "reset_token": document["token"],
        "serial": document["serial"],
        "reset_time": document["time"],
        "nonce": document["nonce"],
        "signatures": {fp: signatures[fp] for fp in tally.valid},
        "pending": digest,
    }
    return PendingRecord("pin_lockout", None, tally.valid, {}, details)


def _exact(value: object, required: set[str], optional: set[str]) -> None:
    if not isinstance(value, dict):
        raise PendingError("expected a map")
    missing = required - set(value)
    if missing:
        raise PendingError(f"missing field {sorted(missing)[0]!r}")
    unknown = set(value) - required - optional
    if unknown:
        raise PendingError(f"unknown field {sorted(map(str, unknown))[0]!r}")


def _int(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**40:
        raise PendingError(f"{name} must be a time")
    return value
