"""Requesters the station verifies (issue 19), through the REAL signing engine on SoftHSM2.

The administrators install a policy listing three requesters' passkeys (alice, who also
holds officer-1's token; bob; carol, revoked). Then every request goes through
``SigningSession.load`` as the station's screens drive it: one with no assertion, a forged
one, one by a passkey the policy does not list, by the revoked requester, for another
request, and one naming bob signed by alice are each refused with the code ``requester``
and a line that says why, and journaled. A valid request by alice is signed, but only
when two officers other than officer-1 approve: her own approval never counts.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.appliance import Appliance
from appliance.signing import SigningError, SigningSession
from shared import canonical
from shared.audit import transcript as tr
from shared.psbt import Psbt
from shared.request import attach_assertion, read_request, request_hash
from tests.appliance.test_adversarial_engine import (  # noqa: F401 (the station fixture)
    ADMINS,
    TWO,
    _base,
    _decisions,
    station,
)
from tests.appliance.test_ceremonies_cli import OFFICER_PINS
from tests.passkeys import SoftPasskey

ALICE, BOB, CAROL = SoftPasskey("alice"), SoftPasskey("bob"), SoftPasskey("carol")
ALICE_AND_TWO = [("officer-1", OFFICER_PINS["officer-1"]), TWO[1]]
OTHER_TWO = [TWO[1], ("officer-3", OFFICER_PINS["officer-3"])]


def _officer_fingerprint(appliance: Appliance, label: str) -> str:
    for entry in appliance.recorder.entries():
        record = entry.record
        if record.event == "officer_enrolled" and record.details.get("token") == label:
            return record.actors[0]
    raise AssertionError(f"no officer enrolled with token {label}")


@pytest.fixture(scope="module")
def with_requesters(station: Appliance) -> Appliance:  # noqa: F811
    current = station.policy()
    policy = replace(
        current,
        version=current.version + 1,
        previous_hash=current.hash(),
        requesters=(
            ALICE.requester(officer=_officer_fingerprint(station, "officer-1")),
            BOB.requester(),
            CAROL.requester(active=False),
        ),
    )
    station.install_policy(TWO, station.sign_policy(ADMINS, policy))
    assert station.policy().requesters == policy.requesters
    return station


def _request(name: str, requester: str = "alice") -> tuple[Psbt, bytes, int]:
    base = replace(_base(name), requester=requester, input_amounts=(710_000, 620_000))
    case = base.build(name)
    return case.psbt, request_hash(case.psbt, read_request(case.psbt)), case.scenario.now


def _load(appliance: Appliance, psbt: Psbt, now: int) -> tuple[SigningSession, object]:
    session = SigningSession(appliance, now=now)
    return session, session.load(psbt.serialize())


@pytest.mark.parametrize(
    ("name", "sign", "requester", "message"),
    [
        ("none", lambda h: None, "alice", "carries no requester passkey assertion"),
        (
            "forged",
            lambda h: ALICE.assert_(h, signer=ec.generate_private_key(ec.SECP256R1())),
            "alice",
            "'alice''s passkey assertion does not verify",
        ),
        ("unlisted", lambda h: SoftPasskey("alice").assert_(h), "alice", "is not a requester"),
        ("revoked", lambda h: CAROL.assert_(h), "carol", "'carol' is revoked"),
        ("other request", lambda h: ALICE.assert_(bytes(32)), "alice", "challenge"),
        (
            "wrong site",
            lambda h: ALICE.assert_(h, origin="https://evil.example"),
            "alice",
            "origin",
        ),
        ("impersonated", lambda h: ALICE.assert_(h), "bob", "names requester 'bob' but"),
    ],
)
def test_a_request_without_a_valid_assertion_is_refused_and_journaled(
    with_requesters, name, sign, requester, message
):
    psbt, digest, now = _request(f"requester {name}", requester)
    assertion = sign(digest)
    if assertion is not None:
        psbt = attach_assertion(psbt, assertion)
    before = _decisions(with_requesters)
    session, result = _load(with_requesters, psbt, now)
    assert result is not None and not result.approved_for_signing
    refusals = [r for r in result.refusals if r.code == "requester"]
    assert len(refusals) == 1 and message in refusals[0].message, result.refusals
    assert result.requester is None
    with pytest.raises(SigningError):
        session.approve(*OTHER_TWO[0])
    with_requesters.flush_pending(TWO)
    new = _decisions(with_requesters)[len(before) :]
    assert [e.record.decision for e in new] == ["refused"]
    assert ["requester", refusals[0].message] in new[0].record.details["refusals"]


def test_the_requester_s_own_approval_never_counts_and_others_sign(with_requesters):
    psbt, digest, now = _request("requester valid")
    psbt = attach_assertion(psbt, ALICE.assert_(digest))
    session, result = _load(with_requesters, psbt, now)
    assert result is not None and result.approved_for_signing, result and result.refusals
    assert result.requester is not None and result.requester.name == "alice"
    for label, pin in ALICE_AND_TWO:
        state = session.approve(label, pin)
    assert not state.complete and len(state.approved) == 1
    assert [why for _, why in state.rejected] == ["requester approving own request"]
    with pytest.raises(SigningError, match="not enough approvals"):
        session.sign()  # refused, and journaled as such

    psbt, digest, now = _request("requester valid, other officers")
    psbt = attach_assertion(psbt, ALICE.assert_(digest))
    session, result = _load(with_requesters, psbt, now)
    for label, pin in OTHER_TWO:
        state = session.approve(label, pin)
    assert state.complete
    signed = session.sign()
    assert signed.signatures == 2
    entry = _decisions(with_requesters)[-1]
    assert entry.record.decision == "approved"
    name = f"{entry.record.subjects['transcript'].hex()}.cbor"
    transcript = canonical.decode((with_requesters.state.root / "transcripts" / name).read_bytes())
    found, problem = tr.requester(
        transcript, with_requesters.policy().requesters, entry.record.subjects["request"]
    )
    assert problem is None and found is not None and found.name == "alice"
