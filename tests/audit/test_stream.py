"""The journal read as a stream (issue 14): the same verdicts as reading it whole.

A year's journal is replayed entry by entry (:mod:`shared.audit.journal_stream`), and a
signing record names its inputs by digest. Each shortcut is held here to what it replaces:
the streaming chain check to ``verify_journal`` on tampered journals, the export reader to
``parse_export`` and the entry parser to ``Entry.from_bytes`` on every single-byte change,
the worker processes to the in-process read; and an export far over the old 16 MiB cap is
replayed.
"""

from __future__ import annotations

import dataclasses
import hashlib

import cbor2
import pytest
from coincurve import PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.audit import journal_stream
from shared.audit.evidence import EvidenceError, parse_bundle, parse_coordinator
from shared.audit.journal_replay import ApplianceReplay
from shared.audit.journal_stream import (
    CheckedEntry,
    EntryProblem,
    JournalExport,
    parse_entry,
    read_entries,
)
from shared.audit.model import Report
from shared.audit.replay import replay
from shared.audit.workers import Workers
from shared.bitcoin import ecdsa
from shared.bitcoin.tx import OutPoint
from shared.journal import (
    GENESIS,
    MAX_RECORD_BYTES,
    Entry,
    JournalError,
    Record,
    StreamVerifier,
    export_journal,
    next_record,
    outpoints_digest,
    parse_export,
    seal,
    verify_journal,
)
from shared.policy import Policy, evaluate
from tests.audit.conftest import SoftCold, SoftDesk, SoftWallet, payee, soft_ceremony

SECRET = hashlib.sha256(b"stream test audit key").digest()
KEY = PrivateKey(SECRET).public_key.format()
OTHER = hashlib.sha256(b"stream test other key").digest()
APP = "cold-s"


def chain(n: int, details: dict | None = None, start: Entry | None = None) -> list[Entry]:
    entries: list[Entry] = []
    previous = start
    first = start.record.seq + 1 if start is not None else 0
    for i in range(first, first + n):
        record = next_record(
            previous,
            time=1_700_000_000 + 60 * i,
            appliance_id=APP,
            event="signing_decision" if i % 2 else "activation",
            subjects={"request": hashlib.sha256(b"r%d" % i).digest()},
            decision="approved" if i % 2 else None,
            details=details or {"note": f"n{i}"},
        )
        previous = seal(record, lambda d: ecdsa.sign(SECRET, d))
        entries.append(previous)
    return entries


def resign(record: Record, secret: bytes = SECRET, **changes: object) -> Entry:
    changed = Record(
        **{**{f.name: getattr(record, f.name) for f in dataclasses.fields(Record)}, **changes}
    )
    return seal(changed, lambda d: ecdsa.sign(secret, d))


BASE = chain(8)


# -- the chain, one entry at a time -------------------------------------------------------


def _tamper(entries: list[Entry], op: str, i: int, j: int) -> list[Entry]:
    out = list(entries)
    if not out:
        return out
    i, j = i % len(out), j % len(out)
    record = out[i].record
    if op == "delete":
        del out[i]
    elif op == "duplicate":
        out.insert(j, out[i])
    elif op == "swap":
        out[i], out[j] = out[j], out[i]
    elif op == "alter":
        out[i] = resign(record, details={"note": "edited"})
    elif op == "foreign":
        out[i] = resign(record, OTHER)
    elif op == "seq":
        out[i] = resign(record, seq=record.seq + j - 3 if record.seq + j >= 3 else j)
    elif op == "relink":  # point at any record, later ones included
        out[i] = resign(record, prev_hash=out[j].record.hash())
    elif op == "appliance":
        out[i] = resign(record, appliance_id="cold-x")
    elif op == "time":
        out[i] = resign(record, time=record.time - 10_000)
    elif op == "truncate":
        out = out[:i]
    elif op == "jump":
        out[i] = resign(record, seq=record.seq + 5000)
    return out


def _streamed(entries: list[Entry], **kw: object) -> object:
    """The chain check fed one entry at a time, as the audit replay feeds it."""
    verifier = StreamVerifier(
        KEY,
        kw.get("appliance_id"),  # type: ignore[arg-type]
        kw.get("start_prev_hash", GENESIS),  # type: ignore[arg-type]
        kw.get("start_seq", 0),
    )  # type: ignore[arg-type]
    for entry in entries:
        verifier.add(entry.record, entry.verify(KEY))
    return verifier.finish(
        kw.get("expected_length"),  # type: ignore[arg-type]
        kw.get("expected_head"),
    )  # type: ignore[arg-type]


OPS = st.sampled_from(
    [
        "delete",
        "duplicate",
        "swap",
        "alter",
        "foreign",
        "seq",
        "relink",
        "appliance",
        "time",
        "truncate",
        "jump",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(st.tuples(OPS, st.integers(0, 20), st.integers(0, 20)), max_size=4),
    length=st.booleans(),
)
def test_the_streamed_chain_check_finds_every_tampering(ops, length) -> None:
    """Against the head the auditor holds, anything but the genuine journal is named, even
    records re-signed by the audit key itself (a cut or rewritten chain is internally
    valid: only a head recorded elsewhere shows it), and the genuine one passes."""
    entries = list(BASE)
    for op, i, j in ops:
        entries = _tamper(entries, op, i, j)
    kw: dict[str, object] = {"expected_head": BASE[-1].record.hash()}
    if length:
        kw["expected_length"] = len(BASE)
    report = _streamed(entries, **kw)
    assert report == verify_journal(entries, KEY, **kw)  # type: ignore[arg-type]
    if entries == BASE:
        assert report.findings == [] and report.length == len(BASE)  # type: ignore[attr-defined]
    else:
        assert report.findings, ops  # type: ignore[attr-defined]


def test_streaming_chain_check_from_a_later_start_and_its_refusals() -> None:
    later = chain(3, start=BASE[-1])
    start = {"start_prev_hash": BASE[-1].record.hash(), "start_seq": 8}
    assert _streamed(later, **start).findings == []  # type: ignore[attr-defined]
    gap = _streamed(later[1:], **start).findings  # type: ignore[attr-defined]
    assert "record seq 8 is missing" in [f.problem for f in gap]
    for bad, message in (
        ({"expected_length": -1}, "outside"),
        ({"expected_length": True}, "integer"),
        ({"expected_head": b"short"}, "32 bytes"),
        ({"start_seq": -1}, "outside"),
    ):
        with pytest.raises(JournalError, match=message):
            _streamed(BASE, **bad)
    with pytest.raises(JournalError, match="audit key"):
        StreamVerifier(b"\x02" + bytes(32))


# -- the export, its frame and its entries ------------------------------------------------

EXPORT = export_journal(BASE[:3], APP, KEY)


def _outcome_whole(data: bytes) -> object:
    try:
        appliance, key, entries = parse_export(data)
    except JournalError as exc:
        return ("error", str(exc))
    return appliance, key, [e.to_bytes() for e in entries]


def _outcome_streaming(data: bytes) -> object:
    try:
        export = JournalExport.from_bytes(data)
    except JournalError as exc:
        return ("error", str(exc))
    blobs = []
    for item in read_entries(export):
        if isinstance(item, EntryProblem):
            return ("error", f"entry at position {item.position}: {item.message}")
        blobs.append(item.entry.to_bytes())
    return export.appliance_id, export.audit_key, blobs


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_single_byte_change_reads_as_parse_export_reads_it(data) -> None:
    pos = data.draw(st.integers(0, len(EXPORT) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != EXPORT[pos]))
    mutated = EXPORT[:pos] + bytes([value]) + EXPORT[pos + 1 :]
    assert _outcome_streaming(mutated) == _outcome_whole(mutated)


@pytest.mark.parametrize("cut", [1, 10, 200, len(EXPORT) - 1])
def test_a_cut_or_lengthened_export_reads_as_parse_export_reads_it(cut: int) -> None:
    for mutated in (EXPORT[:cut], EXPORT + b"\x00", b"\x00" * cut):
        assert _outcome_streaming(mutated) == _outcome_whole(mutated)


BLOBS = [e.to_bytes() for e in BASE[:4]]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_entry_parser_is_entry_from_bytes(data) -> None:
    blob = data.draw(st.sampled_from(BLOBS))
    pos = data.draw(st.integers(0, len(blob) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != blob[pos]))
    mutated = blob[:pos] + bytes([value]) + blob[pos + 1 :]
    try:
        expected: object = Entry.from_bytes(mutated)
    except JournalError as exc:
        expected = str(exc)
    try:
        got: object = parse_entry(mutated)
    except JournalError as exc:
        got = str(exc)
    assert got == expected
    if isinstance(got, Entry):  # the same record, hashed the same
        assert got.record.hash() == expected.record.hash()  # type: ignore[union-attr]
        assert got.to_bytes() == expected.to_bytes() == mutated  # type: ignore[union-attr]


def _entry_bytes(record_plain: dict, sig: bytes) -> bytes:
    """An entry written with cbor2's default (insertion) key order: canonical only when
    every map was built in canonical order."""
    return cbor2.dumps({"sig": sig, "record": record_plain})


@pytest.mark.parametrize(
    "change",
    [
        lambda p: p,  # canonical order: the same bytes as the station writes
        lambda p: dict(reversed(list(p.items()))),  # the record's keys out of order
        lambda p: {**p, "details": dict(reversed(list(p["details"].items())))},
        lambda p: {**p, "details": {**p["details"], "é": 1}},  # a key that is not ASCII
        lambda p: {**p, "details": {**p["details"], "zz": {"b": 1, "a": 2}}},  # nested order
        lambda p: {**p, "details": {**p["details"], "zz": {"a": 1, "bb": 2, "c": 3}}},
        lambda p: {**p, "details": {**p["details"], "n": [1, {"y": b"", "x": True}]}},
        lambda p: {**p, "details": {**p["details"], "f": 1.5}},
        lambda p: {**p, "details": {**p["details"], "big": 2**64}},
        lambda p: {**p, "subjects": {"zz": b"1", "a": b"2"}},
    ],
)
def test_the_entry_parser_holds_any_map_order_to_canonical_form(change) -> None:  # type: ignore[no-untyped-def]
    """The fast parser proves an entry canonical by its maps' key order; whatever order
    (or key, or value) it is given, it reads the bytes as Entry.from_bytes does."""
    entry = BASE[3]
    plain = change(entry.record.to_plain())
    blob = _entry_bytes(plain, entry.signature)
    try:
        expected: object = Entry.from_bytes(blob)
    except JournalError as exc:
        expected = str(exc)
    try:
        got: object = parse_entry(blob)
    except JournalError as exc:
        got = str(exc)
    assert got == expected
    if isinstance(got, Entry):
        assert got.record.hash() == expected.record.hash()  # type: ignore[union-attr]


def test_an_oversized_entry_is_refused_unread() -> None:
    plain = {
        "type": "coldstation-journal",
        "version": 1,
        "appliance": APP,
        "audit_key": KEY,
        "entries": [BLOBS[0], b"\x00" * (MAX_RECORD_BYTES + 1024)],
    }
    from shared import canonical

    data = canonical.encode(plain)
    assert _outcome_streaming(data) == _outcome_whole(data)
    assert "exceeds the" in str(_outcome_whole(data))


def test_worker_processes_read_what_this_process_reads(monkeypatch) -> None:
    entries = chain(40)
    entries[17] = resign(entries[17].record, OTHER)  # one signature fails, read all the same
    export = JournalExport.from_bytes(export_journal(entries, APP, KEY))
    monkeypatch.setattr(journal_stream, "PARALLEL_FROM", 10)
    monkeypatch.setattr(journal_stream, "CHUNK", 7)
    here = list(read_entries(export))
    with Workers(3) as workers:
        pooled = list(read_entries(export, workers))
    assert pooled == here
    assert [c.signed for c in here if isinstance(c, CheckedEntry)].count(False) == 1
    blobs = [e.to_bytes() for e in entries]
    blobs[23] = blobs[23][:-1]  # a damaged entry ends the read where it is
    plain = {
        "type": "coldstation-journal",
        "version": 1,
        "appliance": APP,
        "audit_key": KEY,
        "entries": blobs,
    }
    from shared import canonical

    damaged = JournalExport.from_bytes(canonical.encode(plain))
    with Workers(2) as workers:
        pooled = list(read_entries(damaged, workers))
    assert isinstance(pooled[-1], EntryProblem) and pooled[-1].position == 23
    assert len(pooled) == 24 and pooled == list(read_entries(damaged))


# -- a journal far over the old export cap ------------------------------------------------


def test_an_export_over_16_mib_is_replayed() -> None:
    cold = SoftCold("cold-big")
    filler = {"note": "x" * 4000}
    big = {f"k{i}": ["y" * 4000] * 6 for i in range(1)}
    for _ in range(680):
        cold.record("export", details={**filler, **big})
    journal, policies, transcripts = cold.bundle()
    assert len(journal) > 16 * 1024 * 1024
    bundle = parse_bundle(cold.id, journal, policies, transcripts)
    result = ApplianceReplay(bundle, cold.audit_pubkey).run()
    assert result.status.records == len(cold.entries) and result.status.journal_ok
    assert [f.message for f in result.findings] == []


# -- inputs named by digest ---------------------------------------------------------------


def _conflict(cold: SoftCold, desk: SoftDesk, wallet: SoftWallet, *, listed: bool) -> int:
    """Two approvals spending one coin; the station's review refused the second as a
    conflicting spend, its subverted judgement approved it anyway. Returns its seq."""
    cold.list_outpoints = listed
    coin = desk.coin(wallet, 300_000)
    first = desk.request(wallet, [coin], [(payee(1), 50_000)], created=cold.clock)
    response, _ = cold.sign(first)
    desk.respond(response)
    again = desk.request(wallet, [coin], [(payee(2), 60_000)], created=cold.clock)

    def approve(plain: dict, policy: Policy) -> dict:
        from shared.audit import transcript as tr

        plain["refusals"] = []
        plain["decision"] = tr.decision_plain(evaluate(policy, tr.facts(plain)))
        plain["approved_for_signing"] = True
        return plain

    response, entry = cold.sign(again, judge=approve)
    assert entry.record.decision == "approved"
    desk.respond(response)
    return entry.record.seq


def _run(cold: SoftCold, desk: SoftDesk) -> Report:
    return replay(
        [parse_bundle(cold.id, *cold.bundle())],
        parse_coordinator("desk.json", desk.evidence_bytes()),
    )


@pytest.mark.parametrize("listed", [True, False], ids=["outpoints", "outpoints_sha256"])
def test_a_coin_signed_twice_is_named_in_either_record_form(listed: bool) -> None:
    cold, desk = SoftCold("cold-1"), SoftDesk()
    wallet = desk.import_single("treasury", cold)
    soft_ceremony(desk, wallet, [cold], 0)
    seq = _conflict(cold, desk, wallet, listed=listed)
    found = [f for f in _run(cold, desk).findings if f.seq == seq]
    assert any(
        "was already signed in" in f.message and "does not replace it" in f.message for f in found
    ), found
    record = cold.entries[seq].record
    assert ("outpoints" in record.details) is listed
    assert ("outpoints_sha256" in record.details) is not listed


def test_mixed_forms_share_one_history() -> None:
    cold, desk = SoftCold("cold-1"), SoftDesk()
    wallet = desk.import_single("treasury", cold)
    coin = desk.coin(wallet, 300_000)
    cold.list_outpoints = True  # the coin is first signed by an older station
    response, _ = cold.sign(desk.request(wallet, [coin], [(payee(1), 50_000)], created=cold.clock))
    desk.respond(response)
    cold.list_outpoints = False
    request = desk.request(wallet, [coin], [(payee(2), 60_000)], created=cold.clock)
    assert cold.sign(request)[1].record.decision == "refused"  # the station refuses it
    seq = _conflict(cold, desk, wallet, listed=False)
    text = "\n".join(str(f) for f in _run(cold, desk).findings)
    assert f"seq {seq}" in text and "was already signed in" in text


def _resigned_last(cold: SoftCold, **details: object) -> int:
    """The insider re-signs the last record with ``details`` changed (None deletes)."""
    entry = cold.entries.pop()
    cold.clock -= 1
    changed = {k: v for k, v in {**entry.record.details, **details}.items() if v is not None}
    return cold.record(
        "signing_decision",
        decision=entry.record.decision,
        actors=entry.record.actors,
        subjects=entry.record.subjects,
        details=changed,
    ).record.seq


def _one_approval() -> tuple[SoftCold, SoftDesk]:
    cold, desk = SoftCold("cold-1"), SoftDesk()
    wallet = desk.import_single("treasury", cold)
    soft_ceremony(desk, wallet, [cold], 0, broadcast=False)
    return cold, desk


def _ceremony_messages(cold: SoftCold, desk: SoftDesk, seq: int) -> str:
    return "\n".join(
        f.message for f in _run(cold, desk).findings if f.check == "ceremony" and f.seq == seq
    )


def test_a_digest_the_transcript_does_not_match_is_named() -> None:
    cold, desk = _one_approval()
    other = outpoints_digest([OutPoint(b"\x01" * 32, 0)]).hex()
    seq = _resigned_last(cold, outpoints_sha256=other)
    assert (
        "the transcript's inputs do not hash to the record's outpoints_sha256"
        in _ceremony_messages(cold, desk, seq)
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"inputs": 2}, "the record names 2 inputs, the transcript shows 1"),
        ({"inputs": None}, "the record names None inputs, the transcript shows 1"),
        ({"outpoints_sha256": "zz"}, "its outpoints_sha256 is not a SHA-256 in hex"),
        (
            {"outpoints": ["00" * 32 + ":7"]},
            "the outpoints it lists do not hash to its outpoints_sha256",
        ),
    ],
)
def test_a_record_whose_inputs_disagree_is_named(change: dict, expected: str) -> None:
    cold, desk = _one_approval()
    seq = _resigned_last(cold, **change)
    assert expected in _ceremony_messages(cold, desk, seq)


def test_inputs_named_only_in_a_missing_transcript_are_named() -> None:
    cold, desk = _one_approval()
    seq = len(cold.entries) - 1
    subject = cold.entries[seq].record.subjects["transcript"]
    journal, policies, transcripts = cold.bundle()
    del transcripts[f"{subject.hex()}.cbor"]
    report = replay(
        [parse_bundle(cold.id, journal, policies, transcripts)],
        parse_coordinator("desk.json", desk.evidence_bytes()),
    )
    text = "\n".join(f.message for f in report.findings if f.seq == seq)
    assert "is missing from the bundle" in text
    assert (
        "its inputs are named only in its transcript (outpoints_sha256), which is "
        "missing or unreadable" in text
    )


# -- what the replay holds ----------------------------------------------------------------


def test_receipts_are_read_as_the_journal_entries_they_are(single_desk) -> None:
    from shared.audit.facts import ReceiptFacts

    cold, desk = single_desk
    evidence = parse_coordinator("desk.json", desk.evidence_bytes())
    report = replay([parse_bundle(cold.id, *cold.bundle())], evidence)
    assert report.ok, [str(f) for f in report.findings]
    receipts = [r for q in evidence.requests for r in q.receipts]
    assert receipts
    by_seq = {e.record.seq: e for e in cold.entries}
    for receipt in receipts:  # what the checks read of it is what the entry says
        entry = by_seq[receipt.entry.seq]
        assert receipt.entry == ReceiptFacts.of(entry)
        assert receipt.digest == hashlib.sha256(entry.to_bytes()).digest()
    assert all(len(c.transcript or {}) == 3 for c in report.ceremonies)  # kept slim


@pytest.fixture
def single_desk() -> tuple[SoftCold, SoftDesk]:
    cold, desk = SoftCold("cold-1"), SoftDesk()
    wallet = desk.import_single("treasury", cold)
    for n in range(3):
        soft_ceremony(desk, wallet, [cold], n)
    return cold, desk


def test_an_unread_malformed_transcript_still_makes_the_bundle_unusable(single_desk) -> None:
    cold, desk = single_desk
    journal, policies, transcripts = cold.bundle()
    transcripts["ab" * 32 + ".cbor"] = b"\xff\xff"
    with pytest.raises(EvidenceError, match="not a CBOR transcript"):
        replay(
            [parse_bundle(cold.id, journal, policies, transcripts)],
            parse_coordinator("desk.json", desk.evidence_bytes()),
        )


def test_a_damaged_entry_makes_the_bundle_unusable_naming_its_position(single_desk) -> None:
    cold, desk = single_desk
    journal, policies, transcripts = cold.bundle()
    blob = cold.entries[5].to_bytes()
    damaged = journal.replace(blob, b"\xa3" + blob[1:])  # a map of three: not an entry
    assert damaged != journal
    with pytest.raises(EvidenceError, match=r"cold-1/journal.cbor: entry at position 5: "):
        replay(
            [parse_bundle(cold.id, damaged, policies, transcripts)],
            parse_coordinator("desk.json", desk.evidence_bytes()),
        )


def test_workers_give_the_same_report(monkeypatch, tmp_path) -> None:
    """The coordinator evidence and the journal read by worker processes (in chunks, each
    signing decision judged ahead under the policy then in force) give the report a replay
    in this process gives, findings included, across a policy change."""
    from online_coordinator.audit_files import read_bundle
    from shared.audit import evidence as evidence_module
    from shared.audit.report import to_json
    from shared.policy import fingerprint_of
    from tests.audit.conftest import pubkey

    cold, desk = SoftCold("cold-1"), SoftDesk()
    wallet = desk.import_single("treasury", cold)
    for n in range(10):
        if n == 6:  # officer 2 is revoked halfway: approvals by them no longer count
            revoked = fingerprint_of(pubkey(cold.officer_keys[2]))
            cold.install(
                officers=[
                    {**o.to_plain(), "active": o.fingerprint != revoked}
                    for o in cold.policy.officers
                ]
            )
        soft_ceremony(desk, wallet, [cold], n, broadcast=n % 4 != 3)
    seq = _conflict(cold, desk, wallet, listed=False)  # a coin signed twice
    request = desk.request(
        wallet, [desk.coin(wallet, 150_000)], [(payee(30), 50_000)], created=cold.clock
    )
    desk.respond(cold.sign(request, approvers=(1, 2))[0])  # one approval by the revoked
    soft_ceremony(desk, wallet, [cold], 20)
    wrong = _resigned_last(cold, outpoints_sha256="00" * 32)  # a digest that does not match
    desk.requests[2]["txid"] = "00" * 32
    bundle = cold.write_bundle(tmp_path / "bundle")
    transcripts = sorted((bundle / "transcripts").iterdir())
    transcripts[0].write_bytes(transcripts[0].read_bytes() + b"\x00")  # altered
    transcripts[1].unlink()  # missing
    data = desk.evidence_bytes()

    def report(workers: Workers | None) -> str:
        evidence = parse_coordinator("desk.json", data, workers)
        return to_json(replay([read_bundle(bundle)], evidence, workers=workers))

    alone = report(None)
    for module in (evidence_module, journal_stream):
        monkeypatch.setattr(module, "PARALLEL_FROM", 2)
        monkeypatch.setattr(module, "CHUNK", 3)
    ahead = ApplianceReplay._ahead
    used: list[bool] = []

    def counted(self, *args):  # type: ignore[no-untyped-def]
        found = ahead(self, *args)
        used.append(found is not None)
        return found

    monkeypatch.setattr(ApplianceReplay, "_ahead", counted)
    with Workers(2) as workers:
        assert report(workers) == alone
        assert workers._pool is not None  # the workers did the reading
    assert used.count(True) >= len(used) - 2, used  # nearly every decision judged ahead
    for expected in (
        f"seq {seq}",
        f"seq {wrong}",
        "txid field 00",
        "was altered",
        "is missing from the bundle",
        "does not count: revoked",
    ):
        assert expected in alone, expected
