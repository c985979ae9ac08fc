"""The records a station writes to stand on its own journal (issue 12), replayed by the
auditors: who authorised a pin or an unpin, a journal recovery (always a finding, and its
administrators' statement must verify), and a lost output signed again."""

from __future__ import annotations

from shared import canonical
from shared.bitcoin import ecdsa
from shared.policy import fingerprint_of, recovery_statement, wallet_pin_statement
from tests.audit.conftest import SoftCold, SoftDesk, pubkey
from tests.audit.test_change_and_keys import attacker_wallet, messages, run


def _signed(cold: SoftCold, statement: dict, keys: list[bytes]) -> dict[str, bytes]:
    digest = canonical.digest(statement)
    return {fingerprint_of(pubkey(k)): ecdsa.sign(k, digest) for k in keys}


def test_a_pin_needs_the_quorum_of_administrators_it_claims() -> None:
    cold, desk = SoftCold("cold-1"), SoftDesk()
    desk.import_single("treasury", cold)
    wallet = str(attacker_wallet(cold))
    one = _signed(cold, wallet_pin_statement(cold.id, "pin", wallet), cold.admin_keys[:1])
    entry = cold.record(
        "wallet_pinned",
        actors=cold.activating,
        details={
            "descriptor": wallet,
            "quorum": 2,
            "authorised_by": "administrators",
            "admin_signatures": one,
        },
    )
    text = messages(run([cold], desk), "journal")
    assert (
        f"seq {entry.record.seq}: wallet_pinned has 1 valid administrator signature(s), "
        "the policy in force needs 2" in text
    )


def test_a_pin_the_policy_is_said_to_authorise_must_be_named_by_it() -> None:
    cold, desk = SoftCold("cold-1"), SoftDesk()
    desk.import_single("treasury", cold)
    entry = cold.record(
        "wallet_pinned",
        actors=cold.activating,
        details={"descriptor": str(attacker_wallet(cold)), "quorum": 2, "authorised_by": "policy"},
    )
    text = messages(run([cold], desk), "journal")
    assert (
        f"seq {entry.record.seq}: wallet_pinned says the policy names the wallet internal, "
        "but the policy in force does not" in text
    )


def test_an_unpin_signed_for_another_wallet_does_not_count() -> None:
    cold, desk = SoftCold("cold-1"), SoftDesk()
    desk.import_single("treasury", cold)
    wallet = attacker_wallet(cold)
    cold.pin(wallet, "wallet_pinned")
    other = _signed(
        cold, wallet_pin_statement(cold.id, "unpin", "wpkh(something-else)"), cold.admin_keys
    )
    entry = cold.record(
        "wallet_unpinned",
        actors=cold.activating,
        details={"descriptor": str(wallet), "admin_signatures": other},
    )
    text = messages(run([cold], desk), "journal")
    assert f"seq {entry.record.seq}: wallet_unpinned has 0 valid administrator" in text


def test_a_recovery_is_always_a_finding_and_its_statement_must_verify() -> None:
    cold, desk = SoftCold("cold-1"), SoftDesk()
    desk.import_single("treasury", cold)
    kept = cold.entries[-1].record
    statement = recovery_statement(
        cold.id,
        kept.seq,
        kept.hash(),
        kept.seq + 1,
        kept.seq + 4,
        ["journal ends before its checkpoint"],
    )
    good = cold.record(
        "journal_recovered",
        actors=cold.activating,
        details={
            "kept_through": kept.seq,
            "cut_from": kept.seq + 1,
            "lost_through": kept.seq + 4,
            "problems": ["journal ends before its checkpoint"],
            "quarantine": "",
            "quarantine_sha256": "",
            "admin_signatures": _signed(cold, statement, cold.admin_keys),
        },
    )
    forged = cold.record(
        "journal_recovered",
        actors=cold.activating,
        details={
            "kept_through": kept.seq,
            "cut_from": kept.seq + 1,
            "lost_through": kept.seq + 9,
            "problems": [],
            "quarantine": "",
            "quarantine_sha256": "",
            "admin_signatures": _signed(cold, statement, cold.admin_keys),
        },
    )
    text = messages(run([cold], desk), "journal")
    assert (
        f"seq {good.record.seq}: the journal was recovered (kept through seq {kept.seq}" in text
        and f"records up to seq {kept.seq + 4} of the old chain lost" in text
    )
    assert f"seq {good.record.seq}: journal_recovered has" not in text
    assert f"seq {forged.record.seq}: journal_recovered has 0 valid administrator" in text


def test_a_reissue_must_name_an_approval_of_the_same_transaction() -> None:
    cold, desk = SoftCold("cold-1"), SoftDesk()
    desk.import_single("treasury", cold)
    entry = cold.record(
        "signing_reissued",
        actors=cold.activating,
        subjects={"request": bytes(32), "psbt": bytes(32), "signatures": bytes(32)},
        details={"approval": 1, "txid": "00" * 32, "signatures": 1, "quorum": 2},
    )
    text = messages(run([cold], desk), "ceremony")
    assert (
        f"seq {entry.record.seq}: signing_reissued names no approval of the same "
        "transaction (seq 1)" in text
    )
