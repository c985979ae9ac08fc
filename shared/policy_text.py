"""A policy as administrators and officers read it, and what a new version changes.

``policy draft``, ``policy sign`` and ``policy install`` show this before anyone signs or
installs (issue 18: administrators signed policies blind). Amounts are BTC, fee rates
sat/vB, durations in hours, each with its unit; the policy document itself keeps satoshis
and sat/kvB (shared.policy).
"""

from __future__ import annotations

from shared.bitcoin.amount import format_btc, format_sat_per_vb
from shared.policy import Officer, Policy
from shared.requester import Requester


def _hours(seconds: int) -> str:
    return f"{seconds / 3600:g} h ({seconds} s)"


def _settings(policy: Policy) -> dict[str, str]:
    active = sum(o.active for o in policy.officers)
    return {
        "version": str(policy.version),
        "network": policy.network,
        "appliance": policy.appliance_id,
        "approval quorum": f"{policy.approval_quorum} of {active} active officers",
        "administrator quorum": f"{policy.admin_quorum} of {len(policy.administrators)}",
        "per-transaction limit": format_btc(policy.per_tx_limit),
        "daily limit": format_btc(policy.per_day_limit),
        "maximum fee": format_btc(policy.max_fee),
        "fee-rate ceiling": format_sat_per_vb(policy.fee_rate_ceiling),
        "longest request life": _hours(policy.request_ttl_max),
        "pay only address-book entries": "yes" if policy.require_address_book else "no",
        "time locks allowed": "yes" if policy.allow_timelocks else "no",
        "script types": ", ".join(t.value for t in policy.allowed_script_types),
    }


def _officer(officer: Officer) -> str:
    state = "active" if officer.active else "REVOKED"
    return f"{officer.fingerprint} ({officer.algorithm}, {state})"


def _requester(requester: Requester) -> str:
    """Every field a swap could hide in: the key and credential by fingerprint (SHA-256,
    16 hex digits, as the enrolment page showed the requester), the RP id and origin."""
    state = "active" if requester.active else "REVOKED"
    officer = f", officer {requester.officer}" if requester.officer else ""
    return (
        f"{requester.name} (key {requester.key_fingerprint}, credential "
        f"{requester.credential_fingerprint}, rp {requester.rp_id} at {requester.origin}"
        f"{officer}, {state})"
    )


def policy_lines(policy: Policy) -> list[str]:
    """Every rule of ``policy``, one per line, in words and units."""
    lines = [f"{name}: {value}" for name, value in _settings(policy).items()]
    lines += [f"officer {_officer(o)}" for o in policy.officers]
    lines += [f"administrator {_officer(o)}" for o in policy.administrators]
    lines += [f"address {address} = {label}" for address, label in policy.address_book]
    lines += [f"internal wallet {text}" for text in policy.internal_wallets]
    lines += [f"requester {_requester(r)}" for r in policy.requesters]
    if not policy.requesters:
        lines.append("requesters: none listed (requests are not verified: any name is taken)")
    return lines


def policy_diff(old: Policy, new: Policy) -> list[str]:
    """What ``new`` changes from ``old``: ``name: before -> after``, ``+ added``,
    ``- removed``; empty when only the version moves."""
    before, after = _settings(old), _settings(new)
    changes = [
        f"{name}: {before[name]} -> {after[name]}"
        for name in after
        if name != "version" and before.get(name) != after[name]
    ]
    old_rest = set(policy_lines(old)[len(before) :])
    new_rest = policy_lines(new)[len(after) :]
    changes += [f"+ {line}" for line in new_rest if line not in old_rest]
    changes += [
        f"- {line}" for line in policy_lines(old)[len(before) :] if line not in set(new_rest)
    ]
    return changes


__all__ = ["policy_diff", "policy_lines"]
