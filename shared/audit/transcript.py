"""Reading a display transcript (``shared.review.Review.to_plain``) back for the replay.

The transcript is what officers were shown and what the appliance judged. The replay
rebuilds the evaluator's :class:`~shared.policy.Facts` from it (the facts map plus the
outputs as payments, exactly how the review built them), runs the same
:func:`shared.policy.evaluate`, and compares verdicts in the transcript's own shape
(``approved`` plus a name -> result map of checks), so "the same decision" means the same
verdict and the same result text for every check, not a loose resemblance.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, NamedTuple

from shared.bitcoin.tx import OutPoint
from shared.policy import Decision, Facts, Payment, PolicyError
from shared.requester import Assertion, Requester, RequesterError, verify_requester
from shared.review import REVIEW_FORMAT, REVIEW_TYPE

_TXID = re.compile(r"[0-9a-f]{64}")
_VOUT = re.compile(r"0|[1-9][0-9]{0,9}")


class TranscriptError(ValueError):
    """A transcript whose content cannot be read as a review."""


def check_shape(plain: dict[str, Any]) -> None:
    if plain.get("type") != REVIEW_TYPE or plain.get("format") != REVIEW_FORMAT:
        raise TranscriptError(f"not a {REVIEW_TYPE} format {REVIEW_FORMAT} transcript")


def _map(plain: dict[str, Any], name: str) -> dict[str, Any]:
    value = plain.get(name)
    if not isinstance(value, dict):
        raise TranscriptError(f"{name} is missing or not a map")
    return value


def payments(plain: dict[str, Any]) -> tuple[Payment, ...]:
    """The outputs as the evaluator saw them: (script, amount, is_change); Payment checks
    each field's type and range, as it did when the review built them."""
    outputs = plain.get("outputs")
    if not isinstance(outputs, list):
        raise TranscriptError("outputs is not a list")
    try:
        return tuple(Payment(o["script"], o["amount"], o["is_change"]) for o in outputs)
    except (KeyError, TypeError, PolicyError) as exc:
        raise TranscriptError(f"an output cannot be read: {exc}") from exc


#: Facts a newer station records (version and timelocks); read when present, so the replay
#: evaluates exactly what the station evaluated, and left at their defaults otherwise.
_OPTIONAL_FACTS = ("request_created", "tx_version", "locktime", "relative_locks", "tip_height")


def facts(plain: dict[str, Any]) -> Facts | None:
    """The evaluator's facts, or None when the appliance had none (nothing was decided)."""
    if "facts" not in plain:
        return None
    raw = _map(plain, "facts")
    known = {f.name for f in dataclasses.fields(Facts)}
    optional = {name: raw[name] for name in _OPTIONAL_FACTS if name in raw and name in known}
    try:
        return Facts(
            network=raw["network"],
            request_time=raw["request_time"],
            request_expiry=raw["request_expiry"],
            payments=payments(plain),
            fee=raw["fee"],
            vsize=raw["vsize"],
            spent_today_before=raw["spent_today_before"],
            **optional,
        )
    except (KeyError, TypeError, PolicyError) as exc:
        raise TranscriptError(f"facts cannot be read: {exc}") from exc


def decision_plain(decision: Decision) -> dict[str, Any]:
    """A decision in the transcript's shape (see ``shared.review``'s transcript)."""
    return {"approved": decision.approved, "checks": dict(decision.checks)}


def same_decision(plain: dict[str, Any], decision: Decision) -> bool:
    """True when the transcript records exactly this decision: the same verdict (a real
    bool, as canonical CBOR would tell 1 from true) and the same result for every check."""
    recorded = plain.get("decision")
    return (
        isinstance(recorded, dict)
        and type(recorded.get("approved")) is bool
        and recorded == decision_plain(decision)
        and all(type(v) is str for v in recorded.get("checks", {}).values())
    )


def differences(plain: dict[str, Any], decision: Decision) -> list[str]:
    """The checks whose results differ, for a finding an auditor can act on."""
    recorded = plain.get("decision")
    checks = recorded.get("checks", {}) if isinstance(recorded, dict) else {}
    replayed = dict(decision.checks)
    names = sorted(set(checks) | set(replayed))
    return [
        f"{name}: recorded {checks.get(name)!r}, replay {replayed.get(name)!r}"
        for name in names
        if checks.get(name) != replayed.get(name)
    ]


def refusals(plain: dict[str, Any]) -> list[list[str]]:
    value = plain.get("refusals", [])
    return value if isinstance(value, list) else []


def request(plain: dict[str, Any]) -> dict[str, Any]:
    value = plain.get("request")
    return value if isinstance(value, dict) else {}


def requester(
    plain: dict[str, Any], requesters: tuple[Requester, ...], request_hash: bytes
) -> tuple[Requester | None, str | None]:
    """Who the transcript's requester assertion proves asked for ``request_hash`` under a
    policy listing ``requesters`` (as the station decided it: ``shared.requester``), or
    why it proves nobody; (None, None) when the policy lists no requesters."""
    if not requesters:
        return None, None
    raw = plain.get("requester_assertion")
    try:
        assertion = None if raw is None else Assertion.from_plain(raw)
        named = request(plain).get("requester")
        found = verify_requester(requesters, assertion, request_hash, named)
    except RequesterError as exc:
        return None, str(exc)
    shown = plain.get("requester_verified")
    if shown != found.name:
        return found, f"the transcript shows {shown!r} verified as requester, not {found.name!r}"
    return found, None


def txid_hex(plain: dict[str, Any]) -> str | None:
    """The transcript's txid as displayed (it stores internal byte order)."""
    txid = plain.get("txid")
    return txid[::-1].hex() if isinstance(txid, bytes) else None


def compare_shown(
    plain: dict[str, Any], outpoints: list[str], outputs: list[tuple[bytes, int]], fee: int | None
) -> list[str]:
    """What the officers were shown must be the request's transaction: same outpoints,
    same outputs (script and amount), same fee, as read from the request
    (:attr:`shared.audit.evidence.RequestEvidence.shown`). Returns the differences."""
    problems = []
    shown_in = [i.get("outpoint") for i in plain.get("inputs", []) if isinstance(i, dict)]
    if shown_in != outpoints:
        problems.append("the inputs shown are not the request's inputs")
    shown_out = [
        (o.get("script"), o.get("amount")) for o in plain.get("outputs", []) if isinstance(o, dict)
    ]
    if shown_out != outputs:
        problems.append("the outputs shown are not the request's outputs")
    if plain.get("fee") != fee:
        problems.append(f"the fee shown ({plain.get('fee')}) is not the request's ({fee})")
    return problems


def parse_outpoint(text: object) -> OutPoint:
    """``txid:vout`` as the transcript shows it (``str(OutPoint)``): the txid in display
    order, lowercase hex, the output index in decimal."""
    if not isinstance(text, str):
        raise TranscriptError(f"outpoint {text!r} is not text")
    txid, _, vout = text.partition(":")
    if not _TXID.fullmatch(txid) or not _VOUT.fullmatch(vout) or int(vout) > 0xFFFFFFFF:
        raise TranscriptError(f"outpoint {text[:80]!r} is not txid:vout")
    return OutPoint.from_hex(txid, int(vout))


def outpoints(plain: dict[str, Any]) -> list[OutPoint]:
    """The outpoints of the inputs shown, in input order (what a signing record commits to
    by ``outpoints_sha256`` when it does not list them)."""
    inputs = plain.get("inputs")
    if not isinstance(inputs, list):
        raise TranscriptError("inputs is not a list")
    return [parse_outpoint(i.get("outpoint") if isinstance(i, dict) else None) for i in inputs]


class Shown(NamedTuple):
    """What :func:`compare_shown` reads of a transcript, and nothing else: the inputs'
    outpoints, the outputs' (script, amount) and the fee, as shown (what a ceremony keeps
    of its transcript once the journal check is done with it)."""

    inputs: tuple[object, ...]
    outputs: tuple[tuple[object, object], ...]
    fee: object


#: Payees a ceremony keeps for the report (the JSON and HTML show these and the count).
PAYEES_KEPT = 3


class Paid(NamedTuple):
    """Whom a ceremony paid, as its transcript shows: the request's batch and purpose, the
    first :data:`PAYEES_KEPT` outputs that are not change (address, or script in hex, and
    amount in sat), and how many there were."""

    batch: str | None
    purpose: str | None
    payees: tuple[tuple[str, int | None], ...]
    payee_count: int


def paid(plain: dict[str, Any]) -> Paid:
    """:class:`Paid` from a transcript (fields of the wrong type are shown as absent)."""
    meta = request(plain)
    outputs = plain.get("outputs")
    payees = [
        o
        for o in (outputs if isinstance(outputs, list) else [])
        if isinstance(o, dict) and o.get("is_change") is not True
    ]
    return Paid(
        _text(meta.get("batch_id")),
        _text(meta.get("purpose")),
        tuple((_payee(o), _int(o.get("amount"))) for o in payees[:PAYEES_KEPT]),
        len(payees),
    )


def _payee(output: dict[str, Any]) -> str:
    address, script = output.get("address"), output.get("script")
    if isinstance(address, str) and address:
        return address
    return "script " + script.hex() if isinstance(script, bytes) else "unknown"


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: object) -> int | None:
    return value if type(value) is int else None


def shown(plain: dict[str, Any]) -> Shown:
    """:func:`shown_transaction`, kept as :class:`Shown`: :func:`compare_kept` on it says
    what :func:`compare_shown` says on the transcript."""
    inputs, outputs = plain.get("inputs"), plain.get("outputs")
    return Shown(
        tuple(i.get("outpoint") for i in inputs if isinstance(i, dict))
        if isinstance(inputs, list | dict)
        else (),
        tuple((o.get("script"), o.get("amount")) for o in outputs if isinstance(o, dict))
        if isinstance(outputs, list | dict)
        else (),
        plain.get("fee"),
    )


def compare_kept(
    kept: Shown, outpoints: list[str], outputs: list[tuple[bytes, int]], fee: int | None
) -> list[str]:
    """:func:`compare_shown` on what :func:`shown` kept of the transcript."""
    problems = []
    if list(kept.inputs) != outpoints:
        problems.append("the inputs shown are not the request's inputs")
    if list(kept.outputs) != outputs:
        problems.append("the outputs shown are not the request's outputs")
    if kept.fee != fee:
        problems.append(f"the fee shown ({kept.fee}) is not the request's ({fee})")
    return problems


def shown_transaction(plain: dict[str, Any]) -> dict[str, Any]:
    """Only what :func:`compare_shown` reads (the inputs' outpoints, the outputs'
    scripts and amounts, the fee), in the transcript's shape: what a ceremony keeps of its
    transcript once the journal check is done with it."""
    inputs, outputs = plain.get("inputs"), plain.get("outputs")
    return {
        "inputs": [{"outpoint": i.get("outpoint")} for i in inputs if isinstance(i, dict)]
        if isinstance(inputs, list | dict)
        else [],
        "outputs": [
            {"script": o.get("script"), "amount": o.get("amount")}
            for o in outputs
            if isinstance(o, dict)
        ]
        if isinstance(outputs, list | dict)
        else [],
        "fee": plain.get("fee"),
    }
