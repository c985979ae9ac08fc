"""``policy draft``: the next policy version, from the one in force and the changes asked for.

A draft is only a proposal: the administrators sign it (``policy sign``) and the officers
install it (``policy install``), where :func:`shared.policy.verify_signed_policy` checks it
as a successor. Drafting therefore decides only what a draft may change: the limits,
quorums and flags in :data:`SETTINGS`, the address book, the internal wallets, which
officers are revoked (kept listed, inactive), and the requesters whose passkeys the
station verifies (added from the coordinator's enrolment file, linked to the officer key
the same person holds, revoked). The identity and chain fields never change.

Every setting that has a unit says it in its name (``per_tx_limit_btc=0.5``,
``fee_rate_ceiling_sat_per_vb=50``): the policy document keeps satoshis and sat/kvB, and a
bare ``fee_rate_ceiling=50`` (0.05 sat/vB, which refuses every request) or
``per_tx_limit=0.5`` is refused with the names to use instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from appliance.station import CeremonyError
from shared.bitcoin.amount import AmountError, parse_btc, parse_sat_per_vb
from shared.bitcoin.descriptor import Descriptor
from shared.policy import Policy
from shared.requester import RequesterError, from_enrolment_json


def _btc(text: str) -> int:
    return parse_btc(text, allow_zero=True)


def _sats(text: str) -> int:
    if not text.strip().isdigit():
        raise AmountError(f"{text.strip()[:32]!r} is not a whole number of satoshis")
    return int(text)


def _count(text: str) -> int:
    if not text.strip().isdigit():
        raise AmountError(f"{text.strip()[:32]!r} is not a whole number")
    return int(text)


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise AmountError(f"{text.strip()[:32]!r} is not true or false")
    return value == "true"


@dataclass(frozen=True)
class Setting:
    """A ``--set NAME=VALUE`` name: the policy field it sets, and how its value is read."""

    field: str
    unit: str
    parse: Callable[[str], int | bool]


#: What a draft may set (``--set NAME=VALUE``); identity and chain fields may not.
SETTINGS: dict[str, Setting] = {
    "per_tx_limit_btc": Setting("per_tx_limit", "BTC", _btc),
    "per_tx_limit_sat": Setting("per_tx_limit", "satoshis", _sats),
    "per_day_limit_btc": Setting("per_day_limit", "BTC", _btc),
    "per_day_limit_sat": Setting("per_day_limit", "satoshis", _sats),
    "max_fee_btc": Setting("max_fee", "BTC", _btc),
    "max_fee_sat": Setting("max_fee", "satoshis", _sats),
    "fee_rate_ceiling_sat_per_vb": Setting("fee_rate_ceiling", "sat/vB", parse_sat_per_vb),
    "fee_rate_ceiling_sat_per_kvb": Setting("fee_rate_ceiling", "sat/kvB", _count),
    "request_ttl_max_s": Setting("request_ttl_max", "seconds", _count),
    "approval_quorum": Setting("approval_quorum", "officers", _count),
    "admin_quorum": Setting("admin_quorum", "administrators", _count),
    "require_address_book": Setting("require_address_book", "true/false", _flag),
    "allow_timelocks": Setting("allow_timelocks", "true/false", _flag),
}


@dataclass(frozen=True)
class PolicyChanges:
    """What the administrators ask a draft to change, as typed (values still text)."""

    settings: Sequence[tuple[str, str]] = ()  # (field, value), applied in order
    internal_wallets: Sequence[str] = ()  # descriptors, checksum optional
    addresses: Sequence[tuple[str, str]] = ()  # (address, label), appended to the book
    revoked: Sequence[str] = ()  # officer fingerprints
    requesters: Sequence[str | bytes] = ()  # enrolments (JSON, from the coordinator)
    requester_officers: Sequence[tuple[str, str]] = ()  # (requester name, officer fingerprint)
    revoked_requesters: Sequence[str] = ()  # requester names


def _setting(name: str) -> Setting:
    setting = SETTINGS.get(name)
    if setting is not None:
        return setting
    named = sorted(n for n, s in SETTINGS.items() if s.field == name)
    if named:
        raise CeremonyError(
            f"--set {name}: name the unit: {' or '.join(f'{n}=...' for n in named)}"
        )
    raise CeremonyError(f"--set {name}: not a setting a draft may change ({', '.join(SETTINGS)})")


def _requesters(listed: list[dict], changes: PolicyChanges) -> list[dict]:
    """The policy's requesters with the draft's enrolments, officer links and revocations."""
    requesters = [dict(entry) for entry in listed]
    for text in changes.requesters:
        try:
            requesters.append(from_enrolment_json(text).to_plain())
        except RequesterError as exc:
            raise CeremonyError(f"--add-requester: {exc}") from None
    by_name = {entry["name"]: entry for entry in requesters}
    for option, names in (
        ("--requester-officer", [name for name, _ in changes.requester_officers]),
        ("--revoke-requester", list(changes.revoked_requesters)),
    ):
        for name in names:
            if name not in by_name:
                raise CeremonyError(f"{option} {name}: no such requester")
    for name, fingerprint in changes.requester_officers:
        by_name[name]["officer"] = fingerprint
    for name in changes.revoked_requesters:
        by_name[name]["active"] = False
    return requesters


def draft_next(current: Policy, changes: PolicyChanges) -> Policy:
    """The next version of ``current`` with ``changes``, chained to it by hash.

    Raises CeremonyError for a setting a draft may not change, a value that is not one of
    its unit, or an unknown officer, and the policy's own errors for a draft it refuses.
    """
    plain = current.to_plain()
    for name, value in changes.settings:
        setting = _setting(name)
        try:
            plain[setting.field] = setting.parse(value)
        except AmountError as exc:
            raise CeremonyError(f"--set {name}: {exc} ({setting.unit})") from None
    for text in changes.internal_wallets:
        plain["internal_wallets"] = [
            *plain["internal_wallets"],
            str(Descriptor.parse(text, require_checksum=False)),
        ]
    plain["address_book"] = [
        *(list(entry) for entry in plain["address_book"]),
        *([address, label] for address, label in changes.addresses),
    ]
    for fingerprint in changes.revoked:
        matches = [o for o in plain["officers"] if o["fingerprint"] == fingerprint]
        if not matches:
            raise CeremonyError(f"--revoke {fingerprint}: no such officer")
        matches[0]["active"] = False
    plain["requesters"] = _requesters(plain.get("requesters", []), changes)
    if not plain["requesters"]:
        del plain["requesters"]
    plain["version"] = current.version + 1
    plain["previous_hash"] = current.hash()
    return Policy.from_plain(plain)
