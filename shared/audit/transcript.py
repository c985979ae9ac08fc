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
from typing import Any

from shared.policy import Decision, Facts, Payment, PolicyError
from shared.psbt import Psbt
from shared.review import REVIEW_FORMAT, REVIEW_TYPE


class TranscriptError(ValueError):
    """A transcript whose content cannot be read as a review."""


def check_shape(plain: dict[str, Any]) -> None:
    if plain.get("type") != REVIEW_TYPE or plain.get("format") != REVIEW_FORMAT:
        raise TranscriptError(f"not a {REVIEW_TYPE} format {REVIEW_FORMAT} transcript")


def _int(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TranscriptError(f"{name} is not an integer")
    return value


def _map(plain: dict[str, Any], name: str) -> dict[str, Any]:
    value = plain.get(name)
    if not isinstance(value, dict):
        raise TranscriptError(f"{name} is missing or not a map")
    return value


def payments(plain: dict[str, Any]) -> tuple[Payment, ...]:
    """The outputs as the evaluator saw them: (script, amount, is_change)."""
    outputs = plain.get("outputs")
    if not isinstance(outputs, list):
        raise TranscriptError("outputs is not a list")
    try:
        return tuple(
            Payment(o["script"], _int(o["amount"], "output amount"), o["is_change"])
            for o in outputs
        )
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


def txid_hex(plain: dict[str, Any]) -> str | None:
    """The transcript's txid as displayed (it stores internal byte order)."""
    txid = plain.get("txid")
    return txid[::-1].hex() if isinstance(txid, bytes) else None


def compare_with_psbt(plain: dict[str, Any], psbt: Psbt) -> list[str]:
    """What the officers were shown must be the request's transaction: same outpoints,
    same outputs (script and amount), same fee. Returns the differences."""
    tx = psbt.unsigned_tx
    problems = []
    shown_in = [i.get("outpoint") for i in plain.get("inputs", []) if isinstance(i, dict)]
    if shown_in != [str(txin.prevout) for txin in tx.inputs]:
        problems.append("the inputs shown are not the request's inputs")
    shown_out = [(o.get("script"), o.get("amount")) for o in plain.get("outputs", [])
                 if isinstance(o, dict)]  # fmt: skip
    if shown_out != [(o.script_pubkey, o.value) for o in tx.outputs]:
        problems.append("the outputs shown are not the request's outputs")
    if plain.get("fee") != psbt.fee():
        problems.append(f"the fee shown ({plain.get('fee')}) is not the request's ({psbt.fee()})")
    return problems
