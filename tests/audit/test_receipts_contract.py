"""Receipts and deferred records under the record contract (issue 12, item 4, audit half).

A receipt (approved ``signing_decision``, ``wallet_exported``, ``wallet_pinned``) names its
quorum and carries at least that many distinct officers; a deferred record (written from
the station's pending folder at a later activation) may only be a refusal. The audit key
signs them all, so the signature proves nothing here: the contract does.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from shared.audit.evidence import parse_bundle, parse_coordinator
from shared.audit.model import Report
from shared.audit.receipts import deferred_problem
from shared.audit.replay import replay
from shared.bitcoin.descriptor import Descriptor
from shared.journal import Record, next_record
from shared.policy import fingerprint_of
from tests.audit.conftest import (
    SoftCold,
    SoftDesk,
    payee,
    pubkey,
    run_audit,
    secret,
    soft_ceremony,
)


def run(colds: list[SoftCold], desk: SoftDesk) -> Report:
    bundles = [parse_bundle(c.id, *c.bundle()) for c in colds]
    return replay(bundles, parse_coordinator("desk.json", desk.evidence_bytes()))


def messages(report: Report, check: str | None = None) -> str:
    return "\n".join(str(f) for f in report.findings if check is None or f.check == check)


def test_clean_receipts_and_a_deferred_refusal_replay_ok() -> None:
    cold, desk = SoftCold("cold-1"), SoftDesk()
    wallet = desk.import_single("treasury", cold)
    soft_ceremony(desk, wallet, [cold], 1)
    cold.record(
        "signing_decision",
        decision="refused",
        subjects={"psbt": bytes(32)},
        details={"deferred": True, "refusals": [["expired", "request expired"]]},
    )
    report = run([cold], desk)
    assert report.ok, messages(report)


def test_forged_deferred_approval_is_named() -> None:
    """Issue 12: a forged "approved" record with a negative paid_out, dropped in pending/,
    reset the daily limit."""
    cold, desk = SoftCold("cold-1"), SoftDesk()
    desk.import_single("treasury", cold)
    forged = cold.record(
        "signing_decision",
        decision="approved",
        subjects={"psbt": bytes(32)},
        details={
            "deferred": True,
            "paid_out": -5 * 10**8,
            "approvals": {},
            "txid": "00" * 32,
            "outpoints": [],
        },
    )
    report = run([cold], desk)
    seq = forged.record.seq
    journal = messages(report, "journal")
    assert (
        f"seq {seq}: deferred record breaks the refusal-only contract: it records "
        "signing_decision/approved; only refusals may wait; it carries paid_out, approvals"
        in journal
    )
    assert f"seq {seq}: approved with a negative paid_out (-500000000 sat)" in messages(report)


def test_deferred_wallet_receipt_is_refused_on_both_sides() -> None:
    """Issue 12: a forged wallet_exported for wpkh(attacker), signed at the next activation,
    was accepted by the coordinator's wallet import."""
    cold, desk = SoftCold("cold-1"), SoftDesk()
    desk.import_single("treasury", cold)
    attacker = pubkey(secret("attacker"))
    text = str(Descriptor.parse(f"wpkh({attacker.hex()})", require_checksum=False))
    forged = cold.record(
        "wallet_exported",
        details={"descriptor": text, "deferred": True, "audit_key": cold.audit_pubkey.hex()},
    )
    raw = forged.to_bytes().hex()
    desk.wallets[0].members.append(
        {
            "appliance_id": cold.id,
            "key": attacker.hex(),
            "role": "appliance",
            "export_receipt": raw,
            "pin_receipt": None,
        }
    )
    report = run([cold], desk)
    seq = forged.record.seq
    assert (
        f"seq {seq}: deferred record breaks the refusal-only contract: it records "
        "wallet_exported/None; only refusals may wait; it carries descriptor"
        in messages(report, "journal")
    )
    assert (
        f"seq {seq}: wallet treasury export receipt is no valid receipt: seq {seq} is a "
        "deferred record, not a receipt" in messages(report, "receipt")
    )


def test_approval_receipt_short_of_its_quorum_is_named_in_journal_and_coordinator() -> None:
    cold, desk = SoftCold("cold-1"), SoftDesk()
    wallet = desk.import_single("treasury", cold)
    coin = desk.coin(wallet, 150_000)
    request = desk.request(wallet, [coin], [(payee(9), 50_000)], created=cold.clock)
    response, entry = cold.sign(request, approvers=(0,))
    desk.respond(response)
    report = run([cold], desk)
    seq = entry.record.seq
    receipt = [f for f in report.findings if f.check == "receipt" and f.seq == seq]
    problem = f"seq {seq} has 1 officer(s), the quorum is 2"
    assert f"signing_decision is no valid receipt: {problem}" in receipt[0].message
    assert any(
        f.request_id is not None and "receipts[0] is no valid receipt: " + problem in f.message
        for f in receipt
    )


def test_approval_whose_actors_lack_approval_signatures_is_named() -> None:
    cold, desk = SoftCold("cold-1"), SoftDesk()
    wallet = desk.import_single("treasury", cold)
    soft_ceremony(desk, wallet, [cold], 1, broadcast=False)
    entry = cold.entries.pop()
    cold.clock -= 1
    third = fingerprint_of(pubkey(cold.officer_keys[2]))
    forged = cold.record(
        "signing_decision",
        decision="approved",
        subjects=entry.record.subjects,
        actors=sorted([*entry.record.actors, third]),
        details=entry.record.details,
    )
    report = run([cold], desk)
    assert f"seq {forged.record.seq} lacks an approval signature for each officer" in messages(
        report, "receipt"
    )


def test_wallet_receipts_without_quorum_or_with_strangers_are_named() -> None:
    cold, desk = SoftCold("cold-1"), SoftDesk()
    desk.import_single("treasury", cold)
    stranger = fingerprint_of(pubkey(secret("stranger")))
    pins = []
    for i, (actors, details) in enumerate(
        [
            (cold.activating, {}),  # no quorum named
            ([cold.activating[0], stranger], {"quorum": 2}),  # one actor is nobody's officer
            (cold.activating[:1], {"quorum": 2}),  # one officer for a quorum of two
        ]
    ):
        text = str(
            Descriptor.parse(f"wpkh({pubkey(secret(f'w{i}')).hex()})", require_checksum=False)
        )
        pins.append(
            cold.record(
                "wallet_pinned",
                actors=actors,
                details={
                    "descriptor": text,
                    "authorised_by": "administrators",
                    **details,
                },
                subjects={"descriptor": hashlib.sha256(text.encode()).digest()},
            ).record.seq
        )
    text = messages(run([cold], desk), "receipt")
    assert (
        f"seq {pins[0]}: wallet_pinned is no valid receipt: seq {pins[0]} names no quorum" in text
    )
    assert f"seq {pins[1]}: wallet_pinned: actor {stranger} is not an enrolled officer" in text
    assert (
        f"seq {pins[2]}: wallet_pinned is no valid receipt: seq {pins[2]} has 1 officer(s), "
        "the quorum is 2" in text
    )


def test_deferred_marker_must_be_true_and_only_on_refusals() -> None:
    cold = SoftCold("cold-1")

    def record(**fields: Any) -> Record:
        return next_record(cold.entries[-1], time=cold.clock, appliance_id=cold.id, **fields)

    fine = record(event="signing_decision", decision="refused", details={"deferred": True})
    assert deferred_problem(fine) is None
    assert deferred_problem(record(event="pin_lockout")) is None  # not deferred at all
    odd = record(event="signing_decision", decision="refused", details={"deferred": 1})
    assert "its deferred marker is 1, not true" in deferred_problem(odd)
    lockout = record(event="pin_lockout", details={"deferred": True})
    assert "it records pin_lockout/None; only refusals may wait" in deferred_problem(lockout)
    signed = record(
        event="signing_decision",
        decision="refused",
        details={"deferred": True, "signatures": 1, "descriptors": []},
    )
    assert "it carries descriptors, signatures" in deferred_problem(signed)


def test_verify_receipt_holds_a_receipt_to_the_contract(tmp_path: Path) -> None:
    cold = SoftCold("cold-1")
    good = tmp_path / "good.receipt"
    good.write_bytes(cold.pin(cold.descriptor).to_bytes())
    run = run_audit("verify-receipt", str(good))
    assert run.code == 0, run.out + run.err
    assert "signature verifies" in run.out and "receipt contract: met" in run.out
    text = str(
        Descriptor.parse(f"wpkh({pubkey(secret('attacker')).hex()})", require_checksum=False)
    )
    forged = cold.record(
        "wallet_exported",
        details={"descriptor": text, "deferred": True, "audit_key": cold.audit_pubkey.hex()},
    )
    bad = tmp_path / "forged.receipt"
    bad.write_text(forged.to_bytes().hex())
    run = run_audit("verify-receipt", str(bad))
    assert run.code == 1
    assert "signature verifies" in run.out  # the audit key did sign it...
    assert f"NOT A VALID RECEIPT: seq {forged.record.seq} is a deferred record" in run.out
