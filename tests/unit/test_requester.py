"""Requesters' passkeys (shared.requester): the policy's entries and the assertions over a
request hash, attacked one field at a time."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from shared import canonical
from shared.bitcoin import ecdsa
from shared.policy import Policy, PolicyError, approval_digest, count_valid_approvals
from shared.psbt import Psbt
from shared.request import (
    RequestError,
    attach_assertion,
    read_assertion,
    read_request,
    request_hash,
)
from shared.requester import (
    Assertion,
    RequesterError,
    cose_p256_point,
    excluded_approver,
    verify_assertion,
    verify_requester,
)
from shared.review import requester_line
from tests.adversarial.psbts import Scenario
from tests.passkeys import FLAG_UP, FLAG_UV, ORIGIN, RP_ID, SoftPasskey
from tests.unit.test_policy import POLICY, fp, make_policy, secret

REQUEST_HASH = hashlib.sha256(b"request to pay the supplier").digest()
ALICE, BOB, CAROL = SoftPasskey("alice"), SoftPasskey("bob"), SoftPasskey("carol")


@pytest.fixture
def request_psbt():
    """A built scenario's request: a PSBT with its metadata and full previous transactions."""
    return Scenario().build().psbt


def listed():
    return (
        ALICE.requester(officer=fp("ann")),
        BOB.requester(),
        CAROL.requester(active=False),
    )


def test_a_valid_assertion_names_its_requester():
    assert verify_assertion(ALICE.assert_(REQUEST_HASH), listed(), REQUEST_HASH).name == "alice"
    found = verify_requester(listed(), BOB.assert_(REQUEST_HASH), REQUEST_HASH, "bob")
    assert found.name == "bob" and found.officer is None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: None, "carries no requester passkey assertion"),
        (lambda: SoftPasskey("mallory").assert_(REQUEST_HASH), "is not a requester the policy"),
        (lambda: CAROL.assert_(REQUEST_HASH), "'carol' is revoked"),
        (
            lambda: ALICE.assert_(REQUEST_HASH, signer=ec.generate_private_key(ec.SECP256R1())),
            "Could not verify authentication signature",
        ),
        (lambda: ALICE.assert_(b"\x00" * 32), "challenge was not expected challenge"),
        (lambda: ALICE.assert_(REQUEST_HASH, origin="https://evil.example"), "origin"),
        (lambda: ALICE.assert_(REQUEST_HASH, rp_id="evil.example"), "RP ID hash"),
        (lambda: ALICE.assert_(REQUEST_HASH, flags=FLAG_UP), "User verification is required"),
        (lambda: ALICE.assert_(REQUEST_HASH, flags=FLAG_UV), "User was not present"),
        (lambda: ALICE.assert_(REQUEST_HASH, kind="webauthn.create"), "client data type"),
    ],
)
def test_every_forged_or_misplaced_assertion_is_refused_by_name(make, message):
    with pytest.raises(RequesterError) as caught:
        verify_requester(listed(), make(), REQUEST_HASH, "alice")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_assertion_by_one_requester_for_a_request_naming_another_is_refused():
    with pytest.raises(RequesterError, match="names requester 'bob' but its passkey"):
        verify_requester(listed(), ALICE.assert_(REQUEST_HASH), REQUEST_HASH, "bob")


def test_a_signature_over_other_bytes_with_the_right_key_is_refused():
    good = ALICE.assert_(REQUEST_HASH)
    other = ALICE.assert_(hashlib.sha256(b"another request").digest())
    spliced = replace(good, signature=other.signature)
    with pytest.raises(RequesterError, match="Could not verify"):
        verify_assertion(spliced, listed(), REQUEST_HASH)
    tampered = replace(good, client_data_json=good.client_data_json.replace(b"false", b"true "))
    with pytest.raises(RequesterError, match="does not verify"):
        verify_assertion(tampered, listed(), REQUEST_HASH)


def test_the_requester_s_own_officer_key_is_the_one_excluded():
    alice = listed()[0]
    assert excluded_approver(listed(), alice, "alice") == fp("ann")
    assert excluded_approver(listed(), listed()[1], "bob") is None
    assert excluded_approver(listed(), None, fp("ann")) is None  # unverified text is no one
    assert excluded_approver((), None, fp("ann")) == fp("ann")  # as before requesters
    policy = make_policy(requesters=listed())
    digest = approval_digest(REQUEST_HASH, policy.hash())
    approvals = {fp(n): ecdsa.sign(secret(n), digest) for n in ("ann", "bob")}
    tally = count_valid_approvals(policy, REQUEST_HASH, approvals, fp("ann"))
    assert tally.valid == (fp("bob"),) and not tally.met
    assert tally.rejected == ((fp("ann"), "requester approving own request"),)


# -- the assertion's encodings ------------------------------------------------------------


def test_assertion_round_trips_through_cbor_and_browser_json():
    assertion = ALICE.assert_(REQUEST_HASH)
    assert Assertion.from_bytes(assertion.to_bytes()) == assertion
    text = json.dumps(assertion.to_webauthn_json())
    assert Assertion.from_webauthn_json(text) == assertion


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "assertion is not JSON"),
        ('{"type": "password"}', "not a public-key credential"),
        ('{"type": "public-key", "rawId": "AA"}', "no response object"),
        ('{"type": "public-key", "rawId": "A*A", "response": {}}', "rawId is not base64url"),
        (
            '{"type": "public-key", "id": "AQ", "rawId": "AA", "response": {}}',
            "id and rawId differ",
        ),
        (
            '{"type": "public-key", "rawId": "AA", "response": {"clientDataJSON": "AA"}}',
            "authenticatorData is missing",
        ),
    ],
)
def test_malformed_browser_json_is_named_in_one_line(text, message):
    with pytest.raises(RequesterError, match=message):
        Assertion.from_webauthn_json(text)


def test_assertion_cbor_is_strict():
    plain = ALICE.assert_(REQUEST_HASH).to_plain()
    with pytest.raises(RequesterError, match="unknown field"):
        Assertion.from_plain({**plain, "user_handle": b"x"})
    with pytest.raises(RequesterError, match=r"signature must be 1\.\.80 bytes"):
        Assertion.from_plain({**plain, "signature": b"s" * 81})
    with pytest.raises(RequesterError, match="assertion type"):
        Assertion.from_plain({**plain, "type": "coldstation-receipt"})


def test_the_psbt_carries_one_assertion_outside_the_request_hash(request_psbt):
    before = request_hash(request_psbt, read_request(request_psbt))
    assert read_assertion(request_psbt) is None
    first = attach_assertion(request_psbt, ALICE.assert_(before))
    bobs = BOB.assert_(before)
    again = attach_assertion(first, bobs)  # replaces, never two
    assert read_assertion(again) == bobs
    assert request_hash(again, read_request(again)) == before
    assert read_assertion(Psbt.parse(again.serialize())).credential_id == BOB.credential_id


def test_a_malformed_assertion_record_is_refused(request_psbt):
    from shared.psbt.fields import PSBT_GLOBAL_PROPRIETARY
    from shared.request import SUBTYPE_ASSERTION, proprietary_keydata

    bad = Psbt.parse(request_psbt.serialize())
    bad.globals.set(
        PSBT_GLOBAL_PROPRIETARY, b"\xa0", keydata=proprietary_keydata(SUBTYPE_ASSERTION)
    )
    with pytest.raises(RequestError, match="requester assertion: assertion is missing field"):
        read_assertion(bad)


# -- the policy's requesters --------------------------------------------------------------


def test_policy_without_requesters_keeps_its_encoding_and_hash():
    assert "requesters" not in POLICY.to_plain()
    plain = {**POLICY.to_plain(), "requesters": []}
    with pytest.raises(PolicyError, match="requesters is an empty list"):
        Policy.from_plain(plain)


def test_policy_with_requesters_round_trips():
    policy = make_policy(requesters=listed())
    again = Policy.from_bytes(policy.to_bytes())
    assert again == policy and again.hash() == policy.hash() != POLICY.hash()
    assert again.requester("alice").officer == fp("ann")


@pytest.mark.parametrize(
    ("requesters", "message"),
    [
        ((ALICE.requester(), replace(BOB.requester(), name="alice")), "two active requesters"),
        (
            (ALICE.requester(), replace(BOB.requester(), credential_id=ALICE.credential_id)),
            "two requesters share a credential id",
        ),
        ((ALICE.requester(officer=fp("mal")),), "officer .* is not an approver"),
        ((ALICE.requester(officer=fp("dan")),), "officer .* is not an approver"),  # an admin
    ],
)
def test_policy_requester_lists_are_checked(requesters, message):
    with pytest.raises(PolicyError, match=message):
        make_policy(requesters=requesters)


def cose(alg: int = -7, x: bytes = b"x" * 32, y: bytes = b"y" * 32) -> bytes:
    return canonical.encode({1: 2, 3: alg, -1: 1, -2: x, -3: y})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"public_key": b"\xff"}, "not a canonical COSE_Key"),
        ({"public_key": b"\x01"}, "must be a COSE_Key with kty"),
        ({"public_key": cose(alg=-8)}, "ES256"),
        ({"public_key": cose(x=b"\x01" * 32, y=b"\x02" * 32)}, "not a point on P-256"),
        ({"public_key": cose(x=b"\x01" * 31)}, "32 bytes each"),
        ({"origin": "http://coordinator.example"}, "must be https://"),
        ({"credential_id": b""}, r"credential id must be 1\.\.1023 bytes"),
        ({"name": "al\nice"}, "control characters"),
        ({"officer": "ann"}, "not 16 hex digits"),
        ({"officer": None}, "officer is null: omit it"),
        ({"name": "0f8afed15e34d918"}, "looks like an officer fingerprint"),
        ({"origin": "http://localhost.evil.example"}, "must be https://"),
        ({"origin": "https://coordinator.custodian.example/x"}, "must be https://HOST"),
        ({"rp_id": "evil.example"}, "is not the origin's host"),
        ({"rp_id": "custodian.example"}, None),  # a domain the origin's host is under
        ({"rp_id": "dian.example"}, "is not the origin's host"),
    ],
)
def test_requester_entries_are_checked(change, message):
    plain = {**ALICE.requester().to_plain(), **change}
    if message is None:
        assert Policy.from_plain({**POLICY.to_plain(), "requesters": [plain]}).requesters
        return
    with pytest.raises(PolicyError, match=message):
        Policy.from_plain({**POLICY.to_plain(), "requesters": [plain]})


def test_a_revoked_requester_can_be_enrolled_again_under_the_same_name():
    again = SoftPasskey("carol")
    policy = make_policy(requesters=(CAROL.requester(active=False), again.requester()))
    assert policy.requester("carol").credential_id == again.credential_id
    assert verify_requester(policy.requesters, again.assert_(REQUEST_HASH), REQUEST_HASH, "carol")
    with pytest.raises(RequesterError, match="'carol' is revoked"):
        verify_requester(policy.requesters, CAROL.assert_(REQUEST_HASH), REQUEST_HASH, "carol")


def test_cose_key_of_a_real_passkey_reads_back():
    assert len(cose_p256_point(ALICE.cose_key)) == 65
    assert ALICE.requester().rp_id == RP_ID and ALICE.requester().origin == ORIGIN


def test_the_review_shows_who_asked_verified_refused_or_on_trust():
    case = Scenario(requester="alice").build()
    assert requester_line(case.review()) == "alice (unverified: the policy lists no requesters)"
    digest = request_hash(case.psbt, read_request(case.psbt))
    listing = replace(case, policy=replace(case.policy, requesters=(ALICE.requester(),)))
    signed = replace(listing, psbt=attach_assertion(case.psbt, ALICE.assert_(digest)))
    verified = signed.review()
    assert verified.approved_for_signing and requester_line(verified) == "alice (passkey verified)"
    assert verified.to_plain()["requester_verified"] == "alice"
    refused = listing.review()
    assert refused.refusal_codes == ("requester",) and not refused.approved_for_signing
    assert requester_line(refused) == "alice (NOT verified: see the refusal)"
