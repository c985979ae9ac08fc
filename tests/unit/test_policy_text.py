"""A policy in words and units, and what a new version changes (issue 18: administrators
signed policies blind)."""

from __future__ import annotations

from dataclasses import replace

from shared.bitcoin.amount import format_btc, format_sat_per_vb
from shared.policy_text import policy_diff, policy_lines
from tests.unit.test_policy import make_policy


def test_amounts_and_rates_are_shown_with_their_units():
    assert [format_btc(n) for n in (0, 1, 50_000_000, 100_000_000, 123_456_789)] == [
        "0 BTC", "0.00000001 BTC", "0.5 BTC", "1 BTC", "1.23456789 BTC",
    ]  # fmt: skip
    assert [format_sat_per_vb(n) for n in (1000, 2500, 50_000, 1)] == [
        "1 sat/vB", "2.5 sat/vB", "50 sat/vB", "0.001 sat/vB",
    ]  # fmt: skip


def test_every_rule_is_a_line_in_units():
    policy = make_policy()
    lines = policy_lines(policy)
    assert f"per-transaction limit: {format_btc(policy.per_tx_limit)}" in lines
    assert f"fee-rate ceiling: {format_sat_per_vb(policy.fee_rate_ceiling)}" in lines
    assert sum(line.startswith("officer ") for line in lines) == len(policy.officers)
    assert sum(line.startswith("address ") for line in lines) == len(policy.address_book)


def test_the_diff_names_each_change_and_nothing_else():
    old = make_policy()
    assert policy_diff(old, replace(old, version=old.version + 1, previous_hash=old.hash())) == []
    revoked = replace(old.officers[0], active=False)
    new = replace(
        old,
        per_tx_limit=50_000_000,
        fee_rate_ceiling=60_000,
        officers=(revoked, *old.officers[1:]),
        address_book=old.address_book[1:],
    )
    changes = policy_diff(old, new)
    assert f"per-transaction limit: {format_btc(old.per_tx_limit)} -> 0.5 BTC" in changes
    assert f"fee-rate ceiling: {format_sat_per_vb(old.fee_rate_ceiling)} -> 60 sat/vB" in changes
    assert f"+ officer {revoked.fingerprint} ({revoked.algorithm}, REVOKED)" in changes
    assert f"- officer {revoked.fingerprint} ({revoked.algorithm}, active)" in changes
    address, label = old.address_book[0]
    assert f"- address {address} = {label}" in changes
    assert not any(line.startswith("daily limit") for line in changes)
