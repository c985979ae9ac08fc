"""``policy draft``: the next policy version, from the one in force and the changes asked for.

A draft is only a proposal: the administrators sign it (``policy sign``) and the officers
install it (``policy install``), where :func:`shared.policy.verify_signed_policy` checks it
as a successor. Drafting therefore decides only what a draft may change: the limits,
quorums and flags in :data:`SETTABLE`, the address book, the internal wallets, and which
officers are revoked (kept listed, inactive). The identity and chain fields never change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from appliance.station import CeremonyError
from shared.bitcoin.descriptor import Descriptor
from shared.policy import Policy

#: Policy fields a draft may set (``--set FIELD=VALUE``); identity and chain fields may not.
SETTABLE = frozenset(
    {
        "approval_quorum",
        "admin_quorum",
        "require_address_book",
        "per_tx_limit",
        "per_day_limit",
        "fee_rate_ceiling",
        "max_fee",
        "request_ttl_max",
        "allow_timelocks",
    }
)
BOOLEAN = frozenset({"require_address_book", "allow_timelocks"})


@dataclass(frozen=True)
class PolicyChanges:
    """What the administrators ask a draft to change, as typed (values still text)."""

    settings: Sequence[tuple[str, str]] = ()  # (field, value), applied in order
    internal_wallets: Sequence[str] = ()  # descriptors, checksum optional
    addresses: Sequence[tuple[str, str]] = ()  # (address, label), appended to the book
    revoked: Sequence[str] = ()  # officer fingerprints


def draft_next(current: Policy, changes: PolicyChanges) -> Policy:
    """The next version of ``current`` with ``changes``, chained to it by hash.

    Raises CeremonyError for a field a draft may not set or an unknown officer, ValueError
    for a value that is not a number, and the policy's own errors for a draft it refuses.
    """
    plain = current.to_plain()
    for field, value in changes.settings:
        if field not in SETTABLE:
            raise CeremonyError(
                f"--set {field}: not a field a draft may change ({', '.join(sorted(SETTABLE))})"
            )
        plain[field] = value.lower() == "true" if field in BOOLEAN else int(value)
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
    plain["version"] = current.version + 1
    plain["previous_hash"] = current.hash()
    return Policy.from_plain(plain)
