"""The replay's judgements, on software-built evidence (genuine signatures, real reviews).

Here the adversary can be an insider who holds the audit key: every record still verifies,
so only the replay's deeper checks (policy re-evaluation, approval quorum, daily totals,
replays, receipts against the journal, signers of the broadcast) can find the problem.
"""

from __future__ import annotations

import base64
import copy
import json
from html.parser import HTMLParser

import pytest

from shared.audit.chain import ChainScanner, shape
from shared.audit.evidence import EvidenceError, parse_bundle, parse_coordinator
from shared.audit.model import Finding, Report
from shared.audit.replay import replay
from shared.audit.report import summary, to_html, to_json
from shared.audit.wallets import build_index
from shared.bitcoin import ecdsa
from shared.bitcoin.block import Block, BlockHeader
from shared.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from shared.policy import Policy, approval_digest, fingerprint_of
from shared.psbt import Psbt
from tests.audit.conftest import SoftCold, SoftDesk, payee, pubkey, secret, soft_ceremony


def run(colds: list[SoftCold], desk: SoftDesk, chain: ChainScanner | None = None) -> Report:
    bundles = [parse_bundle(c.id, *c.bundle()) for c in colds]
    return replay(bundles, parse_coordinator("desk.json", desk.evidence_bytes()), chain)


def messages(report: Report, check: str | None = None) -> str:
    return "\n".join(str(f) for f in report.findings if check is None or f.check == check)


@pytest.fixture
def single() -> tuple[SoftCold, SoftDesk]:
    cold, desk = SoftCold("cold-1"), SoftDesk()
    wallet = desk.import_single("treasury", cold)
    for n in range(3):
        soft_ceremony(desk, wallet, [cold], n)
    return cold, desk


# -- clean evidence -----------------------------------------------------------------------


def test_clean_single_and_multisig_evidence_replays_ok() -> None:
    cold, a, b = SoftCold("cold-1"), SoftCold("cold-a"), SoftCold("cold-b")
    desk = SoftDesk()
    treasury = desk.import_single("treasury", cold)
    vault = desk.multisig("vault", 2, [a, b], [pubkey(secret("hardware wallet"))])
    soft_ceremony(desk, treasury, [cold], 1)
    cold.install(per_tx_limit=5 * 10**8)  # a policy change is its own ceremony
    soft_ceremony(desk, treasury, [cold], 2)
    soft_ceremony(desk, vault, [a, b], 3)
    report = run([cold, a, b], desk)
    assert report.ok, messages(report)
    assert report.counts()["ceremonies"] == 4 and report.counts()["broadcasts"] == 3
    versions = [c.policy_version for c in report.ceremonies if c.appliance == "cold-1"]
    assert versions == [1, 2]
    assert all(len(c.approvals) == 2 and c.quorum == 2 for c in report.ceremonies)
    multisig = report.broadcasts[-1]
    assert sorted(multisig.approved_by) == ["cold-a seq 11", "cold-b seq 11"]
    assert next(a for a in report.appliances if a.appliance_id == "cold-1").policy_versions == [
        1,
        2,
    ]


def test_a_refusal_replays_as_refused(single) -> None:
    cold, desk = single
    wallet = desk.wallets[0]
    coin = desk.coin(wallet, 30 * 10**8)
    request = desk.request(wallet, [coin], [(payee(7), 20 * 10**8)], created=cold.clock)
    _, entry = cold.sign(request)
    assert entry.record.decision == "refused"
    report = run([cold], desk)
    assert report.ok, messages(report)
    refused = report.ceremonies[-1]
    assert refused.decision == "refused" and refused.policy_verdict == "refused"
    assert refused.refusals == ("limits",)


def test_officers_stopping_a_ceremony_show_their_reason(single) -> None:
    cold, desk = single
    cold.record(
        "signing_decision",
        decision="refused",
        subjects={"psbt": bytes(32)},
        details={"refusals": [], "officers": "approval failed: wrong PIN"},
    )
    report = run([cold], desk)
    assert report.ok, messages(report)
    assert report.ceremonies[-1].refusals == ("officers: approval failed: wrong PIN",)


# -- an insider holding the audit key -----------------------------------------------------


def test_approval_short_of_quorum_is_named(single) -> None:
    cold, desk = single
    wallet = desk.wallets[0]
    coin = desk.coin(wallet, 150_000)
    request = desk.request(wallet, [coin], [(payee(9), 50_000)], created=cold.clock)
    response, entry = cold.sign(request, approvers=(0,))
    desk.respond(response)
    report = run([cold], desk)
    assert (
        f"seq {entry.record.seq}: 1 valid approval(s), the quorum of policy version 1 is 2"
        in messages(report, "ceremony")
    )


def test_approval_by_a_revoked_officer_is_named(single) -> None:
    cold, desk = single
    revoked = fingerprint_of(pubkey(cold.officer_keys[2]))
    officers = [{**o.to_plain(), "active": o.fingerprint != revoked} for o in cold.policy.officers]
    cold.install(officers=officers)
    soft_ceremony(desk, desk.wallets[0], [cold], 10, broadcast=False)
    # the insider files an approval by the revoked officer in a re-signed record
    entry = cold.entries.pop()
    approvals = dict(entry.record.details["approvals"])
    request_hash = entry.record.subjects["request"]
    approvals[revoked] = ecdsa.sign(
        cold.officer_keys[2], approval_digest(request_hash, cold.policy.hash())
    )
    first = sorted(approvals)[0] if sorted(approvals)[0] != revoked else sorted(approvals)[1]
    del approvals[first]
    cold.clock -= 1
    cold.record(
        "signing_decision",
        decision="approved",
        subjects=entry.record.subjects,
        details={**entry.record.details, "approvals": approvals},
    )
    report = run([cold], desk)
    text = messages(report, "ceremony")
    assert f"approval by {revoked} does not count: revoked" in text
    assert "1 valid approval(s), the quorum of policy version 2 is 2" in text


def test_decision_the_policy_in_force_does_not_reach_is_named(single) -> None:
    cold, desk = single
    installed = cold.policy
    cold.policy = Policy.from_plain({**installed.to_plain(), "per_tx_limit": 10**15})
    wallet = desk.wallets[0]
    coin = desk.coin(wallet, 30 * 10**8)
    request = desk.request(wallet, [coin], [(payee(8), 20 * 10**8)], created=cold.clock)
    response, entry = cold.sign(request)  # reviewed under a policy never installed
    cold.policy = installed
    desk.respond(response)
    report = run([cold], desk)
    text = messages(report, "ceremony")
    seq = entry.record.seq
    assert f"seq {seq}: policy version 1 does not reach the same decision: per_tx_limit" in text
    assert f"seq {seq}: approved, but the policy in force refuses it: per_tx_limit" in text


def test_daily_total_hidden_from_the_evaluator_is_named(single) -> None:
    cold, desk = single
    cold.history.paid.clear()  # the appliance "forgets" what it approved today
    soft_ceremony(desk, desk.wallets[0], [cold], 11)
    report = run([cold], desk)
    assert "were already approved that day; the journal says 150000" in messages(report)


def test_replayed_request_approved_again_is_named(single) -> None:
    cold, desk = single
    request = Psbt.parse(bytes(base64.b64decode(desk.requests[0]["unsigned_psbt"])))
    cold.history.seen.clear()
    _, entry = cold.sign(request)
    report = run([cold], desk)
    assert f"seq {entry.record.seq}: request id was already presented at seq" in messages(
        report, "ceremony"
    )


def test_double_spend_of_a_signed_coin_is_named(single) -> None:
    cold, desk = single
    wallet = desk.wallets[0]
    coin = desk.coin(wallet, 150_000)
    first = desk.request(wallet, [coin], [(payee(20), 50_000)], created=cold.clock)
    desk.respond(cold.sign(first)[0])
    second = desk.request(wallet, [coin], [(payee(21), 60_000)], created=cold.clock)
    cold.history.outpoints.clear()
    desk.respond(cold.sign(second)[0])
    report = run([cold], desk)
    assert "was already signed in" in messages(report, "ceremony")


def test_fee_bump_replacing_a_signed_transaction_is_not_a_double_spend(single) -> None:
    cold, desk = single
    wallet = desk.wallets[0]
    coin = desk.coin(wallet, 150_000)
    first = desk.request(wallet, [coin], [(payee(40), 50_000)], created=cold.clock, fee=300)
    signed_first, _ = cold.sign(first)
    desk.respond(signed_first)
    desk.broadcast([signed_first])
    bump = desk.request(
        wallet,
        [coin],
        [(payee(40), 50_000)],
        created=cold.clock,
        fee=3000,
        replaces=first.unsigned_tx,
    )
    signed_bump, entry = cold.sign(bump)
    assert entry.record.decision == "approved"
    desk.respond(signed_bump)
    desk.broadcast([signed_bump], height=400)
    report = run([cold], desk)
    assert report.ok, messages(report)


def test_hidden_signature_is_found_through_its_receipt(single) -> None:
    """The insider signs, hands out the signed PSBT, then drops the record from the journal
    (re-chaining what follows): the coordinator's receipt and broadcast expose it."""
    cold, desk = single
    wallet = desk.wallets[0]
    coin = desk.coin(wallet, 150_000)
    request = desk.request(wallet, [coin], [(payee(30), 50_000)], created=cold.clock)
    response, entry = cold.sign(request)
    cold.entries.pop()
    desk.respond(response)
    tx = desk.broadcast([response], height=300)
    report = run([cold], desk)
    hidden = f"seq {entry.record.seq} is not in the appliance's journal"
    assert hidden in messages(report, "receipt")
    assert any(
        f.txid == tx.txid_hex and "0 approvals of this request" in f.message
        for f in report.findings
    )


# -- the coordinator's evidence -----------------------------------------------------------


def test_bad_and_foreign_partial_signatures_are_named(single) -> None:
    cold, desk = single
    row = desk.requests[0]
    psbt = Psbt.parse(base64.b64decode(row["responses"][0]))
    (key,) = psbt.inputs[0].partial_sigs
    psbt.inputs[0].set(0x02, ecdsa.sign(cold.key, bytes(32)) + b"\x01", keydata=key)
    row["responses"][0] = psbt.to_base64()
    stranger = pubkey(secret("stranger"))
    other = Psbt.parse(base64.b64decode(desk.requests[1]["responses"][0]))
    other.inputs[0].set(0x02, ecdsa.sign(secret("stranger"), bytes(32)) + b"\x01", keydata=stranger)
    desk.requests[1]["responses"][0] = other.to_base64()
    report = run([cold], desk)
    text = messages(report, "response")
    assert f"signature by {key.hex()} does not verify" in text
    assert f"signature by {stranger.hex()}, which is not a key of the wallet" in text


def test_member_without_a_bundle_is_named() -> None:
    a, b = SoftCold("cold-a"), SoftCold("cold-b")
    desk = SoftDesk()
    vault = desk.multisig("vault", 2, [a, b], [])
    soft_ceremony(desk, vault, [a, b], 1)
    report = run([a], desk)  # cold-b's bundle withheld
    assert "no bundle was given for this appliance" in messages(report, "receipt")
    assert "signed by an appliance whose journal was not given" in messages(report, "broadcast")


def test_approval_unknown_to_the_coordinator_is_named(single) -> None:
    cold, desk = single
    removed = desk.requests.pop()
    desk.broadcasts = [b for b in desk.broadcasts if b["txid"] != removed["txid"]]
    report = run([cold], desk)
    assert "approved and signed, but the request is not in the coordinator evidence" in messages(
        report, "ceremony"
    )


def test_unpinned_and_repinned_appliances_are_named(single) -> None:
    cold, desk = single
    desk.pinned[cold.id] = pubkey(secret("another audit key"))
    report = run([cold], desk)
    assert "is not the key the coordinator pinned" in messages(report, "journal")
    assert "does not verify under the pinned audit key" in messages(report, "receipt")


# -- the chain ----------------------------------------------------------------------------


def _block(previous: bytes, txs: list[Transaction]) -> Block:
    coinbase = Transaction(
        2, [TxIn(OutPoint(bytes(32), 0xFFFFFFFF), b"\x01\x01")], [TxOut(0, b"\x6a")]
    )
    header = BlockHeader(
        version=4, prev_hash=previous, merkle_root=bytes(32), time=0, bits=0x207FFFFF, nonce=0
    )
    return Block(header, [coinbase, *txs])


def test_chain_outflows_map_to_approved_broadcasts(single) -> None:
    cold, desk = single
    broadcast = [Transaction.parse(bytes.fromhex(b["raw"])) for b in desk.broadcasts]
    funding = [
        Transaction.parse(
            Psbt.parse(base64.b64decode(r["unsigned_psbt"])).inputs[0].non_witness_utxo.serialize()
        )
        for r in desk.requests
    ]
    malleated = Transaction.parse(broadcast[1].serialize())
    malleated.inputs[0].script_sig = b"\x00"  # a different txid, the same payment
    rogue = Transaction(2, [TxIn(OutPoint(funding[2].txid, 0))], [TxOut(1000, payee(66))])
    index = build_index(parse_coordinator("desk", desk.evidence_bytes()))
    scanner = ChainScanner(index.scripts, start=10)
    first = _block(bytes(32), funding)
    second = _block(first.hash, [broadcast[0], malleated, rogue])
    scanner.add_block(10, first, first.hash_hex)
    scanner.add_block(11, second, second.hash_hex)
    report = run([cold], desk, scanner)
    assert [o.txid for o in report.chain.outflows] == [
        broadcast[0].txid_hex,
        malleated.txid_hex,
        rogue.txid_hex,
    ]
    mapped = report.chain.outflows
    assert mapped[0].broadcast == broadcast[0].txid_hex and not mapped[0].malleated
    assert mapped[1].broadcast == broadcast[1].txid_hex and mapped[1].malleated
    assert mapped[2].broadcast is None
    chain = [f for f in report.findings if f.check == "chain"]
    assert any(
        f.txid == rogue.txid_hex and "outflow without an approved ceremony" in f.message
        for f in chain
    )
    assert shape(malleated) == shape(broadcast[1])


def test_chain_scanner_refuses_a_broken_chain() -> None:
    scanner = ChainScanner(set(), start=0)
    first = _block(bytes(32), [])
    scanner.add_block(0, first, first.hash_hex)
    stray = _block(b"\x01" * 32, [])
    with pytest.raises(ValueError, match="does not extend"):
        scanner.add_block(1, stray, stray.hash_hex)
    with pytest.raises(ValueError, match="the node named"):
        scanner.add_block(1, _block(first.hash, []), "00" * 32)


# -- evidence parsing and rendering -------------------------------------------------------


def test_evidence_errors_name_the_field(single) -> None:
    cold, desk = single
    document = copy.deepcopy(desk.evidence())
    document["requests"][1]["unsigned_psbt"] = "!!"
    where = r"desk.json.requests\[1\].unsigned_psbt: is not base64"
    with pytest.raises(EvidenceError, match=where):
        parse_coordinator("desk.json", json.dumps(document).encode())
    with pytest.raises(EvidenceError, match="repeats a key"):
        parse_coordinator("d", b'{"type": 1, "type": 2}')
    with pytest.raises(EvidenceError, match="must be its SHA-256"):
        parse_bundle("b", cold.bundle()[0], {}, {"x.cbor": b"\xa0"})
    bundle = parse_bundle("b", *cold.bundle())
    with pytest.raises(EvidenceError, match="both bundles of appliance cold-1"):
        replay([bundle, bundle], parse_coordinator("d", desk.evidence_bytes()))


class _Strict(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)


def test_coordinator_alerts_are_carried_into_the_report(single) -> None:
    cold, desk = single
    document = desk.evidence()
    document["alerts"] = [{"time": 1, "kind": "outflow", "message": "outflow without a request"}]
    report = replay(
        [parse_bundle(cold.id, *cold.bundle())],
        parse_coordinator("d", json.dumps(document).encode()),
    )
    assert report.alerts == ["outflow: outflow without a request"]
    assert "outflow without a request" in to_html(report)
    assert json.loads(to_json(report))["coordinator_alerts"] == report.alerts


def test_reports_escape_hostile_text(single) -> None:
    cold, desk = single
    report = run([cold], desk)
    report.findings.append(Finding("request", "<script>alert(1)</script>", request_id="<b>"))
    page = to_html(report, {"coordinator evidence": "<img src=x>"})
    assert "<script>" not in page and "<img" not in page and "&lt;script&gt;" in page
    parser = _Strict()
    parser.feed(page)
    assert "script" not in parser.tags and "img" not in parser.tags
    plain = json.loads(to_json(report))
    assert plain["ok"] is False and plain["summary"]["findings"] == 1
    assert plain["findings"][0]["message"] == "<script>alert(1)</script>"
    assert summary(report).startswith("audit replay: 1 FINDING(S)")


def test_reports_escape_hostile_batch_purpose_payees_and_token_labels(single) -> None:
    """What the report now shows of whom a ceremony paid, and the officers' token labels,
    is evidence text too: escaped like the rest."""
    from shared.audit.transcript import Paid

    cold, desk = single
    report = run([cold], desk)
    ceremony = report.ceremonies[0]
    ceremony.paid = Paid("<script>b</script>", "<img src=p>", (("<svg onload=x>", 5),), 3)
    appliance = report.appliances[0]
    fingerprint = "0a1b2c3d4e5f6a7b"
    appliance.officers[fingerprint] = "<iframe>"
    ceremony.approvals = (fingerprint,)
    page = to_html(report)
    parser = _Strict()
    parser.feed(page)
    assert not {"script", "img", "svg", "iframe"} & set(parser.tags)
    assert "&lt;script&gt;" in page and "&lt;iframe&gt;" in page and "and 2 more" in page
    plain = json.loads(to_json(report))["ceremonies"][0]
    assert plain["batch"] == "<script>b</script>" and plain["payee_count"] == 3
