"""The tamper matrix on real evidence (SoftHSM2 appliance, coordinator on regtest).

Untouched, the evidence replays clean (exit 0), with and without the chain. Each tampering
is found, named (record seq, file, request or txid) and exits 1; unusable input exits 2
with one line on stderr.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from pathlib import Path

import pytest
from coincurve import PrivateKey

from online_coordinator.audit_cli import main
from shared.bitcoin import ecdsa
from shared.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from shared.journal import Entry, export_journal, parse_export
from shared.policy import Policy, SignedPolicy, fingerprint_of, policy_signing_digest
from tests.audit.conftest import Copy, payee, secret


@dataclasses.dataclass
class Run:
    code: int
    out: str
    err: str
    report: dict | None

    def findings(self, check: str | None = None) -> list[dict]:
        assert self.report is not None
        return [f for f in self.report["findings"] if check is None or f["check"] == check]

    def messages(self, check: str | None = None) -> str:
        return "\n".join(f"{f['where']}: {f['message']}" for f in self.findings(check))


def audit(copy: Copy, *extra: str, chain: bool = False) -> Run:
    out, err = io.StringIO(), io.StringIO()
    report = copy.bundle.parent / "report.json"
    html = copy.bundle.parent / "report.html"
    args = [
        "replay",
        "--journal",
        str(copy.bundle),
        "--coordinator-export",
        str(copy.coordinator),
        "--json",
        str(report),
        "--html",
        str(html),
        *extra,
    ]
    if chain:
        args += copy.chain
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    plain = json.loads(report.read_text()) if code in (0, 1) else None
    return Run(code, out.getvalue(), err.getvalue(), plain)


def cli(*args: str) -> Run:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
    return Run(code, out.getvalue(), err.getvalue(), None)


# -- journal helpers ----------------------------------------------------------------------


def load(copy: Copy) -> tuple[str, bytes, list[Entry]]:
    return parse_export((copy.bundle / "journal.cbor").read_bytes())


def save(copy: Copy, appliance: str, key: bytes, entries: list[Entry]) -> None:
    (copy.bundle / "journal.cbor").write_bytes(export_journal(entries, appliance, key))


def approved(entries: list[Entry]) -> list[int]:
    """Positions of the approved signing decisions."""
    return [
        i
        for i, e in enumerate(entries)
        if (e.record.event, e.record.decision) == ("signing_decision", "approved")
    ]


def with_details(entry: Entry, **changes: object) -> Entry:
    """The same signature on a record whose details were changed after signing."""
    record = dataclasses.replace(entry.record, details={**entry.record.details, **changes})
    return Entry(record, entry.signature)


# -- untouched ----------------------------------------------------------------------------


def test_untouched_evidence_passes_with_the_chain(evidence: Copy) -> None:
    run = audit(evidence, chain=True)
    assert run.code == 0, run.out
    assert "OK: every check holds" in run.out and "report.html" in run.out
    summary = run.report["summary"]
    assert summary == {
        **summary,
        "appliances": 1,
        "ceremonies": 3,
        "approved": 2,
        "refused": 1,
        "requests": 2,
        "broadcasts": 2,
        "outflows": 2,
        "findings": 0,
    }
    ceremonies = run.report["ceremonies"]
    assert [c["decision"] for c in ceremonies] == ["approved", "approved", "refused"]
    assert all(len(c["approvals"]) == 2 and c["policy_version"] == 1 for c in ceremonies[:2])
    # the request id reused on another transaction spending the same coins
    assert ceremonies[2]["refusals"] == ["replayed", "conflicting_spend"]
    assert all(o["broadcast"] == o["txid"] for o in run.report["chain"]["outflows"])
    assert run.report["appliances"][0]["anchored"] == "pinned by the coordinator"
    html = (evidence.bundle.parent / "report.html").read_text()
    assert "OK: every check holds" in html and ceremonies[0]["txid"] in html


def test_untouched_evidence_passes_without_the_chain(evidence: Copy) -> None:
    run = audit(evidence)
    assert run.code == 0 and run.report["chain"] is None and "chain not checked" in run.out


# -- the journal --------------------------------------------------------------------------


def test_edited_record_is_named(evidence: Copy) -> None:
    appliance, key, entries = load(evidence)
    at = approved(entries)[0]
    entries[at] = with_details(entries[at], paid_out=1)
    save(evidence, appliance, key, entries)
    run = audit(evidence)
    seq = entries[at].record.seq
    assert run.code == 1
    assert any(
        f["seq"] == seq and "signature does not verify" in f["message"]
        for f in run.findings("journal")
    ), run.messages()
    assert any(
        f["seq"] == seq + 1 and "chain break" in f["message"] for f in run.findings("journal")
    )


def test_deleted_record_is_named(evidence: Copy) -> None:
    appliance, key, entries = load(evidence)
    at = approved(entries)[1]
    seq = entries.pop(at).record.seq
    save(evidence, appliance, key, entries)
    run = audit(evidence)
    assert run.code == 1
    assert any(f"record seq {seq} is missing" in f["message"] for f in run.findings("journal"))
    # its receipt, kept by the coordinator, is no longer a journal record
    assert any(
        f["seq"] == seq and "not in the appliance's journal" in f["message"]
        for f in run.findings("receipt")
    ), run.messages()


def test_reordered_records_are_named(evidence: Copy) -> None:
    appliance, key, entries = load(evidence)
    first, second = approved(entries)
    entries[first], entries[second] = entries[second], entries[first]
    save(evidence, appliance, key, entries)
    run = audit(evidence)
    assert run.code == 1
    messages = run.messages("journal")
    assert "out of order" in messages or "chain break" in messages
    seqs = {f["seq"] for f in run.findings("journal")}
    assert {entries[first].record.seq, entries[second].record.seq} & seqs


def test_truncated_journal_is_named(evidence: Copy) -> None:
    appliance, key, entries = load(evidence)
    cut = approved(entries)[1]  # drop the second approval and everything after it
    save(evidence, appliance, key, entries[:cut])
    run = audit(evidence)
    assert run.code == 1
    assert "does not end with its own journal_export" in run.messages("journal")
    lost = entries[cut].record.seq
    assert any(f["seq"] == lost for f in run.findings("receipt")), run.messages()
    assert "0 approvals of this request" in run.messages("broadcast")


# -- approvals ----------------------------------------------------------------------------


def test_approval_replaced_by_another_officers_is_named(evidence: Copy) -> None:
    appliance, key, entries = load(evidence)
    at = approved(entries)[0]
    approvals = dict(entries[at].record.details["approvals"])
    one, two = sorted(approvals)
    approvals[one] = approvals[two]  # officer two's signature filed as officer one's
    entries[at] = with_details(entries[at], approvals=approvals)
    save(evidence, appliance, key, entries)
    run = audit(evidence)
    seq = entries[at].record.seq
    assert run.code == 1
    ceremony = run.findings("ceremony")
    assert any(
        f["seq"] == seq and f"approval by {one} does not count: bad signature" in f["message"]
        for f in ceremony
    ), run.messages()
    assert any(f["seq"] == seq and "1 valid approval(s)" in f["message"] for f in ceremony)


def test_approval_of_another_request_is_named(evidence: Copy) -> None:
    appliance, key, entries = load(evidence)
    first, second = approved(entries)
    entries[first] = with_details(
        entries[first], approvals=entries[second].record.details["approvals"]
    )
    save(evidence, appliance, key, entries)
    run = audit(evidence)
    seq = entries[first].record.seq
    assert run.code == 1
    bad = [
        f for f in run.findings("ceremony") if f["seq"] == seq and "bad signature" in f["message"]
    ]
    assert len(bad) == 2, run.messages()


# -- policies -----------------------------------------------------------------------------


def test_policy_edited_after_the_fact_is_named(evidence: Copy) -> None:
    path = evidence.bundle / "policies" / "0001.cbor"
    signed = SignedPolicy.from_bytes(path.read_bytes())
    looser = Policy.from_plain({**signed.policy.to_plain(), "per_tx_limit": 21_000_000 * 10**8})
    path.write_bytes(SignedPolicy(looser, signed.signatures).to_bytes())
    run = audit(evidence)
    assert run.code == 1
    finding = next(f for f in run.findings("policy") if "changed after the fact" in f["message"])
    assert finding["file"] == "0001.cbor" and finding["seq"] is not None


def test_policy_signed_by_others_is_named(evidence: Copy) -> None:
    path = evidence.bundle / "policies" / "0001.cbor"
    policy = SignedPolicy.from_bytes(path.read_bytes()).policy
    forger = secret("forger")
    forged = {
        fingerprint_of(PrivateKey(forger).public_key.format()): ecdsa.sign(
            forger, policy_signing_digest(policy)
        )
    }
    path.write_bytes(SignedPolicy(policy, forged).to_bytes())
    run = audit(evidence)
    assert run.code == 1
    assert "0 valid administrator signature(s), needs 2" in run.messages("policy")


def test_unexplained_policy_file_is_named(evidence: Copy) -> None:
    path = evidence.bundle / "policies"
    signed = SignedPolicy.from_bytes((path / "0001.cbor").read_bytes())
    extra = Policy.from_plain(
        {**signed.policy.to_plain(), "version": 2, "previous_hash": signed.policy.hash()}
    )
    (path / "0002.cbor").write_bytes(SignedPolicy(extra, signed.signatures).to_bytes())
    run = audit(evidence)
    assert run.code == 1
    assert any(
        f["file"] == "0002.cbor" and "not named by any" in f["message"]
        for f in run.findings("policy")
    )


# -- transcripts and receipts -------------------------------------------------------------


def test_missing_transcript_is_named(evidence: Copy) -> None:
    _, _, entries = load(evidence)
    record = entries[approved(entries)[0]].record
    name = record.subjects["transcript"].hex()
    (evidence.bundle / "transcripts" / f"{name}.cbor").unlink()
    run = audit(evidence)
    assert run.code == 1
    assert any(
        f["seq"] == record.seq and f"transcript {name} is missing" in f["message"]
        for f in run.findings("ceremony")
    )


def test_altered_transcript_is_named(evidence: Copy) -> None:
    import cbor2

    _, _, entries = load(evidence)
    record = entries[approved(entries)[0]].record
    path = evidence.bundle / "transcripts" / f"{record.subjects['transcript'].hex()}.cbor"
    plain = cbor2.loads(path.read_bytes())
    plain["outputs"][0]["amount"] += 1
    path.write_bytes(cbor2.dumps(plain, canonical=True))
    run = audit(evidence)
    assert run.code == 1
    assert any(
        f["seq"] == record.seq and "was altered" in f["message"] for f in run.findings("ceremony")
    )


def test_receipt_not_in_the_journal_is_named(evidence: Copy) -> None:
    document = evidence.coordinator_json()
    receipt = document["requests"][0]["receipts"][0]
    entry = with_details(Entry.from_bytes(bytes.fromhex(receipt["entry"])), fee=1)
    receipt["entry"] = entry.to_bytes().hex()
    evidence.write_coordinator(document)
    run = audit(evidence)
    assert run.code == 1
    messages = run.messages("receipt")
    assert "does not verify under the pinned audit key" in messages
    assert f"seq {entry.record.seq} is not in the appliance's journal" in messages


def test_request_hash_that_does_not_recompute_is_named(evidence: Copy) -> None:
    document = evidence.coordinator_json()
    request = document["requests"][1]
    request["request_hash"] = "00" * 32
    evidence.write_coordinator(document)
    run = audit(evidence)
    assert run.code == 1
    assert any(
        f["request_id"] == request["request_id"] and "does not recompute" in f["message"]
        for f in run.findings("request")
    )


# -- broadcasts and the chain -------------------------------------------------------------


def add_rogue_broadcast(evidence: Copy) -> str:
    """A broadcast no ceremony approved (the change of the first payment sent elsewhere)
    added to the coordinator evidence; its txid."""
    document = evidence.coordinator_json()
    first = Transaction.parse(bytes.fromhex(document["broadcasts"][0]["raw"]))
    coin = first.outputs[-1]  # the change of b1 is a wallet coin; spend it elsewhere
    rogue = Transaction(
        2,
        [TxIn(OutPoint(first.txid, len(first.outputs) - 1), witness=[bytes(71), bytes(33)])],
        [TxOut(coin.value - 1000, payee(99))],
    )
    document["broadcasts"].append(
        {
            **document["broadcasts"][0],
            "raw": rogue.serialize().hex(),
            "txid": rogue.txid_hex,
            "wtxid": rogue.wtxid_hex,
            "state": "sent",
            "block_hash": None,
            "height": None,
        }
    )
    evidence.write_coordinator(document)
    return rogue.txid_hex


def test_broadcast_no_ceremony_approved_is_named(evidence: Copy) -> None:
    rogue_txid = add_rogue_broadcast(evidence)
    run = audit(evidence)
    assert run.code == 1
    assert any(
        f["txid"] == rogue_txid and "no ceremony approved it" in f["message"]
        for f in run.findings("broadcast")
    )


def test_signed_transaction_replaced_is_named(evidence: Copy) -> None:
    document = evidence.coordinator_json()
    broadcast = document["broadcasts"][0]
    tx = Transaction.parse(bytes.fromhex(broadcast["raw"]))
    tx.outputs[0].value -= 10_000  # someone takes a cut after signing
    broadcast["raw"] = tx.serialize().hex()
    evidence.write_coordinator(document)
    run = audit(evidence, chain=True)
    assert run.code == 1
    assert any(
        f["txid"] == tx.txid_hex and "no ceremony approved it" in f["message"]
        for f in run.findings("broadcast")
    ), run.messages()
    assert "are not those of its raw bytes" in run.messages("broadcast")
    # the chain holds the approved transaction; the coordinator's record holds another
    chain = run.messages("chain")
    assert broadcast["txid"] in chain and "is the transaction approved in the journal" in chain
    assert (
        f"broadcast record of request {broadcast['request_id']} holds another "
        f"transaction ({tx.txid_hex})" in chain
    )


def test_outflow_without_a_ceremony_on_chain_is_named(evidence: Copy) -> None:
    document = evidence.coordinator_json()
    removed = document["broadcasts"].pop(1)
    document["requests"] = [r for r in document["requests"] if r["txid"] != removed["txid"]]
    evidence.write_coordinator(document)
    run = audit(evidence, chain=True)
    assert run.code == 1
    outflow = next(f for f in run.findings("chain") if f["txid"] == removed["txid"])
    # the journal approved it; the coordinator kept neither request nor broadcast
    assert "is the transaction approved in the journal" in outflow["message"]
    assert "holds neither its request nor a broadcast record" in outflow["message"]
    assert "not in the coordinator evidence" in run.messages("ceremony")


def test_birth_height_in_the_evidence_neither_stops_nor_moves_the_walk(evidence: Copy) -> None:
    document = evidence.coordinator_json()
    document["wallets"][0]["birth_height"] = 10**9  # once this switched the walk off
    evidence.write_coordinator(document)
    run = audit(evidence, chain=True)
    assert run.code == 1
    chain = run.report["chain"]
    assert chain["start"] == 0 and chain["start_source"].startswith("block 0")
    assert chain["first_wallet_height"] is not None and len(chain["outflows"]) == 2
    assert all(o["broadcast"] == o["txid"] for o in chain["outflows"])
    assert "claims birth height 1000000000, but its output" in run.messages("chain")
    assert "claims birth height 1000000000, but its broadcast" in run.messages("broadcast")


def test_bare_journal_export_reports_what_is_missing(evidence: Copy) -> None:
    run = cli(
        "replay",
        "--journal",
        str(evidence.bundle / "journal.cbor"),
        "--coordinator-export",
        str(evidence.coordinator),
    )
    assert run.code == 1
    assert "(version 1, hash" in run.out and "is not in the bundle" in run.out
    assert "transcript" in run.out and "is missing from the bundle" in run.out


# -- unusable input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "content", "expected"),
    [
        ("journal.cbor", b"\xa1garbage", "journal.cbor"),
        ("policies/0001.cbor", b"not cbor", "0001.cbor: not a signed policy"),
        ("transcripts/" + "ab" * 32 + ".cbor", b"\xff\xff", "not a CBOR transcript"),
        ("coordinator", b"{not json", "not JSON"),
        (
            "coordinator",
            b'{"type": "coldstation-coordinator-evidence", "version": 1}',
            "missing field 'appliances'",
        ),
    ],
)
def test_malformed_files_exit_2_with_one_line(
    evidence: Copy, target: str, content: bytes, expected: str
) -> None:
    path = evidence.coordinator if target == "coordinator" else evidence.bundle / target
    path.write_bytes(content)
    run = audit(evidence)
    assert run.code == 2 and expected in run.err, run.err
    assert run.err.count("\n") == 1 and "Traceback" not in run.err


def test_unusable_arguments_exit_2(evidence: Copy, tmp_path: Path) -> None:
    run = audit(evidence, "--chain", "http://127.0.0.1:1")
    assert run.code == 2 and "--chain and --cookie go together" in run.err
    run = cli(
        "replay",
        "--journal",
        str(tmp_path / "nowhere"),
        "--coordinator-export",
        str(evidence.coordinator),
    )
    assert run.code == 2 and "not an audit bundle" in run.err
    run = audit(evidence, "--journal", str(evidence.bundle))
    assert run.code == 2 and "both bundles of appliance" in run.err


# -- verify-receipt -----------------------------------------------------------------------


def test_verify_receipt(evidence: Copy) -> None:
    export = evidence.source.root / "export"
    run = cli("verify-receipt", str(export / "wallet.receipt"))
    assert run.code == 0 and "signature verifies" in run.out and "named in the receipt" in run.out
    run = cli("verify-receipt", str(export / "receipt.ur"))
    assert run.code == 0 and "wallet_exported" in run.out
    key = evidence.coordinator_json()["appliances"][0]["audit_key"]
    signed = str(evidence.source.signed["b1"])
    run = cli("verify-receipt", signed, "--audit-key", key)
    assert run.code == 0 and "signing_decision approved" in run.out
    other = PrivateKey(secret("someone else")).public_key.format().hex()
    run = cli("verify-receipt", signed, "--audit-key", other)
    assert run.code == 1 and "DOES NOT VERIFY" in run.out
    run = cli("verify-receipt", signed)
    assert run.code == 2 and "give --audit-key" in run.err
    run = cli("verify-receipt", str(evidence.coordinator))
    assert run.code == 2 and "neither a receipt nor a PSBT" in run.err
