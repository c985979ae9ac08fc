"""The audit replay re-verifies who asked (issue 19): a station (here an insider holding
its audit key, ``SoftCold`` with a subverted judgement) that approves a request without a
valid passkey assertion by a listed requester, or counts the requester's own approval, is
named, each case in one finding that says why."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from shared.policy import fingerprint_of
from shared.request import attach_assertion, read_request, request_hash
from tests.audit.conftest import SoftCold, SoftDesk, payee, pubkey
from tests.audit.test_replay import messages, run
from tests.passkeys import SoftPasskey

ALICE, BOB = SoftPasskey("alice"), SoftPasskey("bob")


def _approve_anyway(plain: dict, _policy: object) -> dict:
    """A station whose requester check was removed: what it would have refused, approved."""
    refusals = [r for r in plain["refusals"] if r[0] != "requester"]
    return {**plain, "refusals": refusals, "approved_for_signing": not refusals}


@pytest.fixture
def team() -> tuple[SoftCold, SoftDesk]:
    cold, desk = SoftCold("cold-1"), SoftDesk()
    desk.import_single("treasury", cold)
    alice_officer = fingerprint_of(pubkey(cold.officer_keys[0]))
    cold.install(
        requesters=[ALICE.requester(officer=alice_officer).to_plain(), BOB.requester().to_plain()]
    )
    return cold, desk


def _ceremony(cold, desk, n, sign=None, requester="alice", approvers=(1, 2), judge=None):
    wallet = desk.wallets[0]
    coin = desk.coin(wallet, 150_000)
    psbt = desk.request(
        wallet, [coin], [(payee(n), 50_000)], created=cold.clock, requester=requester
    )
    digest = request_hash(psbt, read_request(psbt))
    assertion = (sign or ALICE.assert_)(digest)
    if assertion is not None:
        psbt = attach_assertion(psbt, assertion)
    response, entry = cold.sign(psbt, approvers=approvers, judge=judge)
    if entry.record.decision == "approved":
        desk.respond(response)
    return entry


def test_requests_by_verified_requesters_replay_clean(team) -> None:
    cold, desk = team
    _ceremony(cold, desk, 1)
    _ceremony(cold, desk, 2, sign=BOB.assert_, requester="bob", approvers=(0, 1))
    refused = _ceremony(cold, desk, 3, sign=lambda h: None)  # the station refuses it
    assert refused.record.decision == "refused"
    report = run([cold], desk)
    assert report.ok, messages(report)


@pytest.mark.parametrize(
    ("sign", "requester", "message"),
    [
        (lambda h: None, "alice", "the request carries no requester passkey assertion"),
        (
            lambda h: ALICE.assert_(h, signer=ec.generate_private_key(ec.SECP256R1())),
            "alice",
            "requester 'alice''s passkey assertion does not verify",
        ),
        (lambda h: SoftPasskey("mallory").assert_(h), "alice", "is not a requester the policy"),
        (lambda h: ALICE.assert_(h), "bob", "names requester 'bob' but its passkey assertion"),
    ],
    ids=["none", "forged", "unlisted", "impersonated"],
)
def test_an_approval_without_a_valid_assertion_is_named(team, sign, requester, message) -> None:
    cold, desk = team
    entry = _ceremony(cold, desk, 1, sign=sign, requester=requester, judge=_approve_anyway)
    assert entry.record.decision == "approved"
    found = messages(run([cold], desk), "ceremony")
    assert f"seq {entry.record.seq}: requester: " in found and message in found, found


def test_the_requester_s_own_approval_is_discounted(team) -> None:
    cold, desk = team
    entry = _ceremony(cold, desk, 1, approvers=(0, 1))  # officer 0 is alice
    found = messages(run([cold], desk), "ceremony")
    alice = fingerprint_of(pubkey(cold.officer_keys[0]))
    assert f"approval by {alice} does not count: requester approving own request" in found
    assert f"seq {entry.record.seq}: 1 valid approval(s)" in found
