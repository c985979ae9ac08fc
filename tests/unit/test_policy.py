"""Policy document, administrator signatures, approvals and the deterministic evaluator."""

from __future__ import annotations

import dataclasses
import hashlib

import cbor2
import pytest
from coincurve import PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import canonical
from shared.bitcoin import ecdsa
from shared.bitcoin.address import Network, address_to_script, script_to_address
from shared.bitcoin.descriptor import Descriptor
from shared.bitcoin.script import (
    OutputType,
    p2pkh_script,
    p2wpkh_script,
    witness_program_script,
)
from shared.policy import (
    MAX_CLOCK_SKEW,
    MAX_MONEY,
    Decision,
    Facts,
    Officer,
    Payment,
    Policy,
    PolicyError,
    SignedPolicy,
    approval_digest,
    count_valid_approvals,
    evaluate,
    fingerprint_of,
    label_for,
    policy_signing_digest,
    utc_day,
    verify_signed_policy,
)


def secret(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


def pub(name: str) -> bytes:
    return PrivateKey(secret(name)).public_key.format()


def fp(name: str) -> str:
    return fingerprint_of(pub(name))


APPROVERS = ["ann", "bob", "cat"]
ADMINS = ["dan", "eve", "fay"]
ATTACKERS = ["mal", "oscar"]

PAYEE_SCRIPT = p2wpkh_script(pub("payee-1"))
PAYEE2_SCRIPT = witness_program_script(1, hashlib.sha256(b"payee-2").digest())
STRANGER_SCRIPT = p2wpkh_script(pub("stranger"))
CHANGE_SCRIPT = p2wpkh_script(pub("our change"))
P2PKH_SCRIPT = p2pkh_script(hashlib.sha256(b"legacy").digest()[:20])
PAYEE = script_to_address(PAYEE_SCRIPT, Network.REGTEST)
PAYEE2 = script_to_address(PAYEE2_SCRIPT, Network.REGTEST)
LEGACY = script_to_address(P2PKH_SCRIPT, Network.REGTEST)

NOW = 1_700_000_000


def officers(names, role, revoked=()):
    return tuple(Officer.from_pubkey(pub(n), role, active=n not in revoked) for n in names)


def make_policy(**changes) -> Policy:
    fields = dict(
        version=1,
        network="regtest",
        appliance_id="cold-01",
        officers=officers(APPROVERS, "approver"),
        approval_quorum=2,
        administrators=officers(ADMINS, "administrator"),
        admin_quorum=2,
        address_book=((PAYEE, "Exchange hot wallet"), (PAYEE2, "Supplier GmbH"), (LEGACY, "Old")),
        require_address_book=True,
        per_tx_limit=1_000_000,
        per_day_limit=3_000_000,
        fee_rate_ceiling=50_000,  # sat/kvB = 50 sat/vB
        max_fee=100_000,
        allowed_script_types=(OutputType.P2WPKH, OutputType.P2WSH, OutputType.P2TR),
        request_ttl_max=3600,
        previous_hash=None,
    )
    fields.update(changes)
    return Policy(**fields)


def sign_policy(policy: Policy, names) -> SignedPolicy:
    digest = policy_signing_digest(policy)
    return SignedPolicy(policy, {fp(n): ecdsa.sign(secret(n), digest) for n in names})


def successor(trusted: Policy, **changes) -> Policy:
    base = dict(version=trusted.version + 1, previous_hash=trusted.hash())
    base.update(changes)
    return dataclasses.replace(trusted, **base)


def facts(**changes) -> Facts:
    fields = dict(
        network="regtest",
        request_time=NOW,
        request_expiry=NOW + 600,
        payments=(Payment(PAYEE_SCRIPT, 400_000, False), Payment(CHANGE_SCRIPT, 5_000_000, True)),
        fee=2_000,
        vsize=200,
        spent_today_before=0,
        request_created=NOW - 60,
    )
    fields.update(changes)
    return Facts(**fields)


def pay(amount: int, script: bytes = PAYEE_SCRIPT) -> tuple[Payment, ...]:
    return (Payment(script, amount, False), Payment(CHANGE_SCRIPT, 9_000_000, True))


def names_of(decision: Decision) -> list[str]:
    return [v.split(":")[0] for v in decision.violations]


POLICY = make_policy()
REQUEST = hashlib.sha256(b"request 1").digest()


# -- document -----------------------------------------------------------------------------


def test_officer_fingerprint_is_first_8_bytes_of_sha256_of_pubkey():
    officer = Officer.from_pubkey(pub("ann"), "approver")
    assert officer.fingerprint == hashlib.sha256(pub("ann")).hexdigest()[:16]
    assert Officer.from_plain(officer.to_plain()) == officer


def test_policy_round_trip_through_canonical_cbor():
    data = POLICY.to_bytes()
    assert canonical.decode(data) == POLICY.to_plain()
    again = Policy.from_bytes(data)
    assert again == POLICY
    assert again.hash() == POLICY.hash() == hashlib.sha256(data).digest()
    signed = sign_policy(POLICY, ADMINS[:2])
    assert SignedPolicy.from_bytes(signed.to_bytes()) == signed


def test_label_for_uses_the_address_book():
    assert label_for(POLICY, PAYEE_SCRIPT) == "Exchange hot wallet"
    assert label_for(POLICY, STRANGER_SCRIPT) is None


def _plain(**changes):
    plain = POLICY.to_plain()
    plain.update(changes)
    return plain


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"version": "1"}, "version must be an integer"),
        ({"version": True}, "version must be an integer"),
        ({"version": 0}, "version 0 is outside"),
        ({"version": 2}, "only version 1, has no previous_hash"),
        ({"previous_hash": b"\x01" * 32}, "only version 1"),
        ({"network": "litecoin"}, "network must be one of"),
        ({"appliance": ""}, "appliance id must be 1"),
        ({"approval_quorum": 0}, "approval_quorum 0 is outside 1..3"),
        ({"approval_quorum": 4}, "approval_quorum 4 is outside 1..3"),
        ({"admin_quorum": 4}, "admin_quorum 4 is outside 1..3"),
        ({"per_tx_limit": -1}, "per_tx_limit -1 is outside"),
        ({"per_tx_limit": MAX_MONEY + 1}, "per_tx_limit .* is outside"),
        ({"per_day_limit": 2**64 - 1}, "per_day_limit .* is outside"),
        ({"per_tx_limit": 1.5}, "per_tx_limit must be an integer, not float"),
        ({"fee_rate_ceiling": 10**12}, "fee_rate_ceiling .* is outside"),
        ({"max_fee": None}, "max_fee must be an integer"),
        ({"request_ttl_max": 0}, "request_ttl_max 0 is outside"),
        ({"require_address_book": 1}, "require_address_book must be true or false"),
        ({"allowed_script_types": ["p2wpkh", "p2wpkh"]}, "lists a type twice"),
        ({"allowed_script_types": ["p2xx"]}, "unknown output script type"),
        ({"allowed_script_types": "p2wpkh"}, "script types must be a list"),
        ({"address_book": [[PAYEE]]}, r"\[address, label\] pairs"),
        ({"address_book": [PAYEE]}, r"\[address, label\] pairs"),
        ({"address_book": [[PAYEE, "a"], [PAYEE, "b"]]}, "twice"),
        ({"address_book": [[PAYEE, ""]]}, "label of .* must be 1"),
        ({"address_book": [[PAYEE.upper(), "x"]]}, "not in canonical form"),
        (
            {"address_book": [["bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "x"]]},
            "address is for mainnet, expected regtest",
        ),
        ({"address_book": [["not an address", "x"]]}, "address book: not an address"),
        ({"officers": "ann"}, "officers must be a list"),
        ({"officers": [{"pubkey": pub("ann")}]}, "officer is missing field"),
        ({"type": "coldstation-journal"}, "document type"),
        ({"format": 1}, "unsupported policy format"),
        ({"internal_wallets": ["wpkh(nonsense)"]}, "internal wallet"),
        ({"internal_wallets": "x"}, "internal_wallets must be a list"),
        ({"allow_timelocks": 1}, "allow_timelocks must be true or false"),
        ({"colour": "blue"}, "unknown field 'colour'"),
    ],
)
def test_hostile_policy_documents_raise_policy_error(changes, message):
    with pytest.raises(PolicyError, match=message):
        Policy.from_plain(_plain(**changes))


def test_missing_policy_field_is_named():
    plain = POLICY.to_plain()
    del plain["max_fee"]
    with pytest.raises(PolicyError, match="missing field 'max_fee'"):
        Policy.from_plain(plain)


def test_officer_entries_are_checked():
    good = Officer.from_pubkey(pub("ann"), "approver").to_plain()
    bad_fp = dict(good, fingerprint=fp("bob"))
    with pytest.raises(PolicyError, match="does not match its key"):
        Officer.from_plain(bad_fp)
    with pytest.raises(PolicyError, match="33 bytes"):
        Officer.from_plain(dict(good, pubkey=pub("ann")[:32]))
    with pytest.raises(PolicyError, match="not on the secp256k1 curve"):
        Officer.from_plain(dict(good, pubkey=b"\x02" + b"\x00" * 32))
    with pytest.raises(PolicyError, match="unknown role"):
        Officer.from_plain(dict(good, role="king"))
    with pytest.raises(PolicyError, match="active must be true or false"):
        Officer.from_plain(dict(good, active="yes"))


def test_registry_rules():
    with pytest.raises(PolicyError, match="listed twice"):
        make_policy(officers=officers(["ann", "ann", "bob"], "approver"))
    with pytest.raises(PolicyError, match="listed twice"):  # one key, one role
        make_policy(officers=officers(["ann", "dan"], "approver"), approval_quorum=1)
    with pytest.raises(PolicyError, match="has role administrator"):
        make_policy(officers=officers(["ann"], "administrator"), approval_quorum=1)
    with pytest.raises(PolicyError, match=r"approval_quorum 3 is outside 1\.\.2"):
        make_policy(officers=officers(APPROVERS, "approver", revoked={"cat"}), approval_quorum=3)
    with pytest.raises(PolicyError, match="no active officers"):
        make_policy(officers=officers(["ann"], "approver", revoked={"ann"}), approval_quorum=1)


@pytest.mark.parametrize(
    "data", [b"", b"\xff\xff", canonical.encode([1]), canonical.encode({"type": 1})]
)
def test_garbage_bytes_raise_policy_error(data):
    with pytest.raises(PolicyError):
        Policy.from_bytes(data)
    with pytest.raises(PolicyError):
        SignedPolicy.from_bytes(data)


def test_oversized_policy_document_refused():
    with pytest.raises(PolicyError, match="limit"):
        Policy.from_bytes(b"\x00" * (4 * 1024 * 1024 + 1))


def test_huge_address_book_refused():
    with pytest.raises(PolicyError, match="over the limit"):
        Policy.from_plain(_plain(address_book=[[PAYEE, "x"]] * 10_001))


# -- policy signatures --------------------------------------------------------------------


def test_first_policy_signed_by_quorum_of_its_own_admins():
    tally = verify_signed_policy(sign_policy(POLICY, ["dan", "eve"]), None)
    assert tally.valid == tuple(sorted([fp("dan"), fp("eve")]))
    assert tally.met


def test_first_policy_with_one_signature_less_than_quorum_fails():
    with pytest.raises(PolicyError, match=r"1 valid administrator signature.*needs 2"):
        verify_signed_policy(sign_policy(POLICY, ["dan"]), None)


def test_first_policy_must_be_version_1():
    later = successor(POLICY)
    with pytest.raises(PolicyError, match="first policy must be version 1"):
        verify_signed_policy(sign_policy(later, ADMINS), None)


def test_first_policy_against_pinned_genesis_admins():
    pinned = list(officers(ADMINS, "administrator"))
    assert verify_signed_policy(sign_policy(POLICY, ["dan", "fay"]), None, pinned).met
    rogue = make_policy(administrators=officers(ATTACKERS, "administrator"))
    with pytest.raises(PolicyError, match="differ from those enrolled"):
        verify_signed_policy(sign_policy(rogue, ATTACKERS), None, pinned)


def test_signatures_by_non_admins_never_count():
    signed = sign_policy(POLICY, ["dan", "ann", "mal"])  # one admin, an approver, a stranger
    with pytest.raises(PolicyError, match="1 valid") as err:
        verify_signed_policy(signed, None)
    assert f"{fp('ann')}: not an administrator" in str(err.value)
    assert f"{fp('mal')}: not an administrator" in str(err.value)


def test_duplicate_signer_counted_once():
    signed = sign_policy(POLICY, ["dan"])
    sig = signed.signatures[fp("dan")]
    doubled = SignedPolicy(POLICY, {fp("dan"): sig, fp("dan").upper(): sig})
    with pytest.raises(PolicyError, match="1 valid"):
        verify_signed_policy(doubled, None)
    # a CBOR map that repeats the same key is not canonical and never parses
    plain = signed.to_plain()
    body = cbor2.dumps(plain, canonical=True)
    entry = cbor2.dumps({fp("dan"): sig}, canonical=True)[1:]
    dup_map = bytes([0xA2]) + entry + entry
    forged = body.replace(cbor2.dumps({fp("dan"): sig}, canonical=True), dup_map)
    with pytest.raises(PolicyError):
        SignedPolicy.from_bytes(forged)


def test_signature_over_another_policy_is_bad():
    other = make_policy(per_tx_limit=999)
    sigs = sign_policy(other, ["dan", "eve"]).signatures
    with pytest.raises(PolicyError, match="bad signature"):
        verify_signed_policy(SignedPolicy(POLICY, sigs), None)


def test_successor_signed_by_trusted_admins():
    v2 = successor(POLICY, per_tx_limit=2_000_000)
    assert verify_signed_policy(sign_policy(v2, ["eve", "fay"]), POLICY).met


def test_successor_wrong_version():
    v3 = successor(POLICY, version=3)
    with pytest.raises(PolicyError, match="version 3 does not follow installed version 1"):
        verify_signed_policy(sign_policy(v3, ADMINS), POLICY)
    with pytest.raises(PolicyError, match="version 1 does not follow"):
        verify_signed_policy(sign_policy(POLICY, ADMINS), POLICY)  # replaying the same one


def test_successor_wrong_previous_hash():
    v2 = successor(POLICY, previous_hash=b"\x07" * 32)
    with pytest.raises(PolicyError, match="previous_hash is not the installed policy's hash"):
        verify_signed_policy(sign_policy(v2, ADMINS), POLICY)


def test_successor_cannot_sign_itself_in_with_new_admins():
    v2 = successor(POLICY, administrators=officers(ATTACKERS, "administrator"))
    with pytest.raises(PolicyError, match="0 valid"):
        verify_signed_policy(sign_policy(v2, ATTACKERS), POLICY)
    # the trusted admins may install it, and then it binds the next change
    assert verify_signed_policy(sign_policy(v2, ["dan", "eve"]), POLICY).met
    v3 = successor(v2)
    with pytest.raises(PolicyError, match="0 valid"):
        verify_signed_policy(sign_policy(v3, ["dan", "eve"]), v2)
    assert verify_signed_policy(sign_policy(v3, ATTACKERS), v2).met


def test_revoked_admin_signature_ignored():
    v2 = successor(POLICY, administrators=officers(ADMINS, "administrator", revoked={"dan"}))
    assert verify_signed_policy(sign_policy(v2, ["dan", "eve"]), POLICY).met
    v3 = successor(v2)
    with pytest.raises(PolicyError, match=f"{fp('dan')}: revoked"):
        verify_signed_policy(sign_policy(v3, ["dan", "eve"]), v2)


def test_successor_cannot_move_appliance_or_network():
    v2 = successor(POLICY, appliance_id="cold-02")
    with pytest.raises(PolicyError, match="for appliance 'cold-02'"):
        verify_signed_policy(sign_policy(v2, ADMINS), POLICY)
    v2 = successor(POLICY, network="testnet", address_book=())
    with pytest.raises(PolicyError, match="changes network"):
        verify_signed_policy(sign_policy(v2, ADMINS), POLICY)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_any_single_byte_change_to_a_signed_policy_is_refused(data):
    blob = SIGNED_BLOB
    pos = data.draw(st.integers(0, len(blob) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != blob[pos]))
    mutated = blob[:pos] + bytes([value]) + blob[pos + 1 :]
    with pytest.raises(PolicyError):
        verify_signed_policy(SignedPolicy.from_bytes(mutated), None)


SIGNED_BLOB = sign_policy(POLICY, ["dan", "fay"]).to_bytes()


# -- approvals ----------------------------------------------------------------------------


def approve(name: str, request: bytes = REQUEST, policy: Policy = POLICY) -> bytes:
    return ecdsa.sign(secret(name), approval_digest(request, policy.hash()))


def test_approval_digest_is_domain_separated():
    expected = canonical.digest(
        {"type": "coldstation-approval", "request": REQUEST, "policy": POLICY.hash()}
    )
    assert approval_digest(REQUEST, POLICY.hash()) == expected
    assert approval_digest(REQUEST, POLICY.hash()) != policy_signing_digest(POLICY)
    with pytest.raises(PolicyError, match="request hash must be 32 bytes"):
        approval_digest(REQUEST[:31], POLICY.hash())


def test_quorum_met_and_m_minus_one():
    tally = count_valid_approvals(
        POLICY, REQUEST, {fp("ann"): approve("ann"), fp("bob"): approve("bob")}, None
    )
    assert tally.met and tally.valid == tuple(sorted([fp("ann"), fp("bob")]))
    tally = count_valid_approvals(POLICY, REQUEST, {fp("ann"): approve("ann")}, None)
    assert not tally.met and tally.quorum == 2


def test_rejected_approvals_each_with_reason():
    policy = make_policy(officers=officers(APPROVERS, "approver", revoked={"cat"}))
    approvals = {
        fp("ann"): approve("ann", policy=policy),  # the requester
        fp("bob"): approve("bob", policy=policy),  # valid
        fp("cat"): approve("cat", policy=policy),  # revoked
        fp("dan"): approve("dan", policy=policy),  # administrator
        fp("mal"): approve("mal", policy=policy),  # unknown
    }
    tally = count_valid_approvals(policy, REQUEST, approvals, requester=fp("ann"))
    assert tally.valid == (fp("bob"),)
    assert dict(tally.rejected) == {
        fp("ann"): "requester approving own request",
        fp("cat"): "revoked",
        fp("dan"): "administrator key cannot approve",
        fp("mal"): "unknown officer",
    }
    assert not tally.met


def test_bad_signatures_do_not_count():
    other_request = hashlib.sha256(b"request 2").digest()
    other_policy = make_policy(per_tx_limit=1)
    approvals = {
        fp("ann"): approve("ann", request=other_request),
        fp("bob"): approve("bob", policy=other_policy),
        fp("cat"): b"\x30\x06\x02\x01\x01\x02\x01\x01",
    }
    tally = count_valid_approvals(POLICY, REQUEST, approvals, None)
    assert tally.valid == ()
    assert {why for _, why in tally.rejected} == {"bad signature"}


def test_hostile_approval_values_do_not_crash():
    approvals = {fp("ann"): "not bytes", 7: b"x", fp("bob"): approve("bob")}
    tally = count_valid_approvals(POLICY, REQUEST, approvals, None)  # type: ignore[dict-item]
    assert tally.valid == (fp("bob"),)
    assert (fp("ann"), "bad signature") in tally.rejected
    assert ("7", "unknown officer") in tally.rejected
    with pytest.raises(PolicyError, match="approvals must be a map"):
        count_valid_approvals(POLICY, REQUEST, [b"x"], None)  # type: ignore[arg-type]


# -- evaluator ----------------------------------------------------------------------------


def test_ordinary_request_is_approved_with_every_check_listed():
    decision = evaluate(POLICY, facts())
    assert decision.approved and decision.violations == ()
    names = [name for name, _ in decision.checks]
    assert names == [
        "network",
        "expiry",
        "ttl",
        "created",
        "tx_version",
        "locktime",
        "relative_locks",
        "output 0 script type",
        "output 0 address book",
        "per_tx_limit",
        "per_day_limit",
        "max_fee",
        "fee_rate",
    ]
    assert all(result.startswith("ok: ") for _, result in decision.checks)
    assert ("output 0 address book", "ok: Exchange hot wallet") in decision.checks


def test_evaluation_is_deterministic_byte_for_byte():
    a = evaluate(POLICY, facts(payments=pay(2_000_000, STRANGER_SCRIPT)))
    b = evaluate(
        Policy.from_bytes(POLICY.to_bytes()), facts(payments=pay(2_000_000, STRANGER_SCRIPT))
    )
    assert a.to_bytes() == b.to_bytes()
    assert canonical.decode(a.to_bytes()) == a.to_plain()
    assert not a.approved


@pytest.mark.parametrize(("amount", "ok"), [(999_999, True), (1_000_000, True), (1_000_001, False)])
def test_per_tx_limit_boundary(amount, ok):
    decision = evaluate(POLICY, facts(payments=pay(amount), vsize=1000))
    assert decision.approved is ok
    assert names_of(decision) == ([] if ok else ["per_tx_limit"])


def test_per_tx_limit_sums_non_change_outputs_only():
    payments = (
        Payment(PAYEE_SCRIPT, 600_000, False),
        Payment(PAYEE2_SCRIPT, 400_001, False),
        Payment(CHANGE_SCRIPT, 50_000_000, True),
    )
    assert names_of(evaluate(POLICY, facts(payments=payments))) == ["per_tx_limit"]


@pytest.mark.parametrize(
    ("before", "ok"), [(1_999_999, True), (2_000_000, True), (2_000_001, False)]
)
def test_per_day_limit_boundary(before, ok):
    decision = evaluate(POLICY, facts(payments=pay(1_000_000), spent_today_before=before))
    assert names_of(decision) == ([] if ok else ["per_day_limit"])


@pytest.mark.parametrize(("fee", "ok"), [(99_999, True), (100_000, True), (100_001, False)])
def test_max_fee_boundary(fee, ok):
    decision = evaluate(POLICY, facts(fee=fee, vsize=100_000))  # rate 1 sat/vB, far below
    assert names_of(decision) == ([] if ok else ["max_fee"])


@pytest.mark.parametrize(
    ("fee", "vsize", "ok"),
    [
        (9_999, 200, True),
        (10_000, 200, True),  # exactly 50 sat/vB
        (10_001, 200, False),
        (7_050, 141, True),  # 50.0 sat/vB on an odd size: no float rounding
        (7_051, 141, False),  # 50.007 sat/vB
    ],
)
def test_fee_rate_boundary(fee, vsize, ok):
    decision = evaluate(POLICY, facts(fee=fee, vsize=vsize))
    assert names_of(decision) == ([] if ok else ["fee_rate"])


def test_wrong_network():
    decision = evaluate(POLICY, facts(network="mainnet"))
    assert names_of(decision) == ["network"]
    assert "request is for mainnet, policy is for regtest" in decision.violations[0]


@pytest.mark.parametrize(("delta", "ok"), [(-1, True), (0, True), (1, False)])
def test_expiry_boundary(delta, ok):
    decision = evaluate(POLICY, facts(request_time=NOW + 600 + delta))
    assert names_of(decision) == ([] if ok else ["expiry"])


@pytest.mark.parametrize(("ttl", "ok"), [(3599, True), (3600, True), (3601, False)])
def test_ttl_boundary(ttl, ok):
    decision = evaluate(POLICY, facts(request_created=NOW, request_expiry=NOW + ttl))
    assert names_of(decision) == ([] if ok else ["ttl"])


def test_ttl_without_created_time_measures_from_now():
    decision = evaluate(POLICY, facts(request_created=None, request_expiry=NOW + 3601))
    assert names_of(decision) == ["ttl"]


def test_a_request_dated_in_the_future_cannot_stretch_its_lifetime():
    """created ten years ahead made expiry - created small while expiry - now was huge."""
    ten_years = 10 * 366 * 86400
    decision = evaluate(
        POLICY, facts(request_created=NOW + ten_years, request_expiry=NOW + ten_years + 600)
    )
    assert set(names_of(decision)) == {"ttl", "created"}


@pytest.mark.parametrize(("ahead", "ok"), [(MAX_CLOCK_SKEW, True), (MAX_CLOCK_SKEW + 1, False)])
def test_clock_skew_boundary_for_created(ahead, ok):
    decision = evaluate(POLICY, facts(request_created=NOW + ahead, request_expiry=NOW + 1200))
    assert ("created" not in names_of(decision)) is ok


@pytest.mark.parametrize(
    ("lock", "tip", "relative", "version", "violations"),
    [
        (0, None, 0, 2, []),
        (800_000, 800_000, 0, 2, []),  # anti-fee-sniping: the declared tip
        (800_001, 800_000, 0, 2, ["locktime"]),  # one block past the tip
        (800_000, None, 0, 2, ["locktime"]),  # no tip declared
        (1_700_000_000, 800_000, 0, 2, ["locktime"]),  # a time lock
        (0, None, 1, 2, ["relative_locks"]),
        (0, None, 0, 3, ["tx_version"]),
        (0, None, 0, 0, ["tx_version"]),
    ],
)
def test_timelocks_and_version_are_bounded_by_default(lock, tip, relative, version, violations):
    decision = evaluate(
        POLICY, facts(locktime=lock, tip_height=tip, relative_locks=relative, tx_version=version)
    )
    assert names_of(decision) == violations


def test_a_policy_may_allow_timelocks():
    allowing = make_policy(allow_timelocks=True)
    decision = evaluate(allowing, facts(locktime=1_700_000_000, relative_locks=2))
    assert decision.approved


def test_internal_wallets_are_canonical_descriptors():
    text = "wpkh(" + pub("ann").hex() + ")"
    with pytest.raises(PolicyError, match="canonical form"):
        make_policy(internal_wallets=(text,))
    canonical_text = str(Descriptor.parse(text, require_checksum=False))
    assert make_policy(internal_wallets=(canonical_text,)).internal_wallets == (canonical_text,)
    with pytest.raises(PolicyError, match="twice"):
        make_policy(internal_wallets=(canonical_text, canonical_text))


def test_script_type_not_allowed():
    payments = (Payment(P2PKH_SCRIPT, 1_000, False), Payment(b"\x6a\x01\x00", 0, False))
    decision = evaluate(POLICY, facts(payments=payments))
    assert decision.violations == (
        "output 0 script type: p2pkh is not an allowed script type",
        "output 1 script type: op_return is not an allowed script type",
        "output 1 address book: script 6a0100 is not in the address book",
    )


def test_address_not_in_book_when_required_and_change_exempt():
    stranger = script_to_address(STRANGER_SCRIPT, Network.REGTEST)
    decision = evaluate(POLICY, facts(payments=pay(1_000, STRANGER_SCRIPT)))
    assert decision.violations == (f"output 0 address book: {stranger} is not in the address book",)
    relaxed = make_policy(require_address_book=False)
    assert evaluate(relaxed, facts(payments=pay(1_000, STRANGER_SCRIPT))).approved


def test_every_violation_is_reported_together():
    decision = evaluate(
        POLICY,
        facts(
            network="testnet",
            request_time=NOW + 10_000,
            payments=pay(5_000_000, STRANGER_SCRIPT),
            fee=200_000,
            vsize=200,
        ),
    )
    assert names_of(decision) == [
        "network",
        "expiry",
        "output 0 address book",
        "per_tx_limit",
        "per_day_limit",
        "max_fee",
        "fee_rate",
    ]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"network": "dogecoin"}, "network must be one of"),
        ({"fee": -1}, "fee -1 is outside"),
        ({"vsize": 0}, "vsize 0 is outside"),
        ({"request_time": 1.0}, "request_time must be an integer"),
        ({"spent_today_before": -5}, "spent_today_before"),
        ({"payments": [("script", 1, False)]}, "payments must hold Payment entries"),
    ],
)
def test_hostile_facts_raise_policy_error(changes, message):
    with pytest.raises(PolicyError, match=message):
        facts(**changes)


def test_hostile_payments_raise_policy_error():
    with pytest.raises(PolicyError, match="output amount"):
        Payment(PAYEE_SCRIPT, MAX_MONEY + 1, False)
    with pytest.raises(PolicyError, match="is_change must be true or false"):
        Payment(PAYEE_SCRIPT, 1, 0)  # type: ignore[arg-type]
    with pytest.raises(PolicyError, match="output script"):
        Payment("00", 1, False)  # type: ignore[arg-type]


def test_utc_day():
    assert utc_day(86_399) == 0 and utc_day(86_400) == 1
    assert address_to_script(PAYEE, Network.REGTEST) == PAYEE_SCRIPT
