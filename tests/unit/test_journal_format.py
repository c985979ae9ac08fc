"""Journal record format, chain and verification: every tamper case is found and named."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from coincurve import PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import canonical
from shared.bitcoin import ecdsa
from shared.journal import (
    EVENTS,
    GENESIS,
    Entry,
    JournalError,
    Record,
    export_journal,
    next_record,
    parse_export,
    seal,
    verify_journal,
)

AUDIT_SECRET = hashlib.sha256(b"coldstation test audit key").digest()
AUDIT_PUB = PrivateKey(AUDIT_SECRET).public_key.format()
OTHER_SECRET = hashlib.sha256(b"some other key").digest()
OTHER_PUB = PrivateKey(OTHER_SECRET).public_key.format()
APP = "cold-01"
FP_A = "0123456789abcdef"
FP_B = "fedcba9876543210"


def signer(secret: bytes = AUDIT_SECRET):
    return lambda digest: ecdsa.sign(secret, digest)


def build(n: int, start: Entry | None = None, t0: int = 1_700_000_000) -> list[Entry]:
    entries: list[Entry] = []
    previous = start
    for i in range(n):
        record = next_record(
            previous,
            time=t0 + 60 * i,
            appliance_id=APP,
            event="signing_decision" if i % 2 else "activation",
            actors=(FP_A, FP_B),
            subjects={"request": hashlib.sha256(f"req{i}".encode()).digest()},
            decision="approved" if i % 2 else None,
            details={"outputs": [1, 2], "note": f"n{i}", "flag": True, "raw": b"\x00"},
        )
        previous = seal(record, signer(), audit_pubkey=AUDIT_PUB)
        entries.append(previous)
    return entries


def problems(entries, **kw) -> list[tuple[int, int | None, str]]:
    report = verify_journal(entries, AUDIT_PUB, **kw)
    return [(f.position, f.seq, f.problem) for f in report.findings]


def resign(record: Record, secret: bytes = AUDIT_SECRET) -> Entry:
    return seal(record, signer(secret))


# -- format -------------------------------------------------------------------------------


def test_genesis_record_and_chain_links():
    entries = build(3)
    assert entries[0].record.seq == 0
    assert entries[0].record.prev_hash == GENESIS
    assert entries[1].record.prev_hash == entries[0].record.hash()
    assert entries[2].record.seq == 2
    report = verify_journal(entries, AUDIT_PUB)
    assert report.ok
    assert report.head == entries[2].record.hash()
    assert report.last_seq == 2
    assert report.length == 3


def test_record_hash_is_sha256_of_canonical_plain():
    record = build(1)[0].record
    expected = hashlib.sha256(canonical.encode(record.to_plain())).digest()
    assert record.hash() == expected
    assert record.to_plain()["type"] == "coldstation-journal-record"


def test_entry_round_trip_is_byte_exact():
    for entry in build(4):
        data = entry.to_bytes()
        again = Entry.from_bytes(data)
        assert again == entry
        assert again.to_bytes() == data
        assert again.record.hash() == entry.record.hash()


def test_details_are_copied_so_caller_edits_cannot_change_a_signed_record():
    details = {"items": [1, 2]}
    record = next_record(None, time=1, appliance_id=APP, event="backup", details=details)
    before = record.hash()
    details["items"].append(3)
    assert record.hash() == before


@pytest.mark.parametrize("event", sorted(EVENTS))
def test_every_documented_event_is_accepted(event):
    record = next_record(None, time=1, appliance_id=APP, event=event)
    assert Record.from_plain(record.to_plain()) == record


def test_unknown_event_refused_on_write_and_read():
    with pytest.raises(JournalError, match="unknown journal event 'coffee_break'"):
        next_record(None, time=1, appliance_id=APP, event="coffee_break")
    plain = build(1)[0].record.to_plain()
    plain["event"] = "coffee_break"
    with pytest.raises(JournalError, match="unknown journal event"):
        Record.from_plain(plain)


def _plain_with(**changes):
    plain = build(1)[0].record.to_plain()
    plain.update(changes)
    return plain


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"seq": -1}, "seq -1 is outside"),
        ({"seq": True}, "seq must be an integer"),
        ({"seq": "0"}, "seq must be an integer"),
        ({"prev_hash": b"\x00" * 31}, "prev_hash must be 32 bytes"),
        ({"prev_hash": "00" * 32}, "prev_hash must be 32 bytes"),
        ({"time": 2**41}, "time .* is outside"),
        ({"appliance": ""}, "appliance id must be 1"),
        ({"appliance": "a\nb"}, "control characters"),
        ({"actors": ["Alice Smith"]}, "not a key fingerprint"),
        ({"actors": [FP_A, FP_A]}, "same fingerprint twice"),
        ({"actors": FP_A}, "actors must be a list"),
        ({"subjects": {"request": "hash"}}, "subject 'request' must be"),
        ({"subjects": {"Bad Name": b"x"}}, "not a short lowercase identifier"),
        ({"subjects": [b"x"]}, "subjects must be a map"),
        ({"decision": "maybe"}, "decision must be"),
        ({"details": {"x": 1.5}}, "unsupported type float"),
        ({"details": {"x": None}}, "unsupported type NoneType"),
        ({"details": {"x": "y" * 5000}}, "longer than"),
        ({"details": {"x": [[[[[[1]]]]]]}}, "nested deeper"),
        ({"details": []}, "details must be a map"),
        ({"type": "coldstation-policy"}, "record type"),
        ({"format": 2}, "unsupported record format"),
        ({"extra": 1}, "unknown field 'extra'"),
    ],
)
def test_hostile_record_fields_raise_named_errors(changes, message):
    with pytest.raises(JournalError, match=message):
        Record.from_plain(_plain_with(**changes))


def test_missing_record_field_is_named():
    plain = build(1)[0].record.to_plain()
    del plain["time"]
    with pytest.raises(JournalError, match="missing field 'time'"):
        Record.from_plain(plain)


def test_oversized_record_refused():
    with pytest.raises(JournalError, match="over the"):
        next_record(
            None,
            time=1,
            appliance_id=APP,
            event="export",
            details={f"k{i}": "x" * 4000 for i in range(10)},
        )


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff", b"\xa0", canonical.encode([1, 2]), b"\x00" * 100_000],
)
def test_garbage_entry_bytes_raise_journal_error(data):
    with pytest.raises(JournalError):
        Entry.from_bytes(data)


def test_non_canonical_entry_refused():
    entry = build(1)[0]
    plain = {"record": entry.record.to_plain(), "sig": entry.signature}
    import cbor2

    loose = cbor2.dumps(plain)  # insertion order, not canonical key order
    assert loose != entry.to_bytes()
    with pytest.raises(JournalError, match="not in canonical form"):
        Entry.from_bytes(loose)


def test_high_s_or_non_der_signature_refused():
    entry = build(1)[0]
    with pytest.raises(JournalError, match="strict low-S DER"):
        Entry(entry.record, b"\x30" + bytes([entry.signature[1] + 1]) + entry.signature[2:])
    # flip S to n - S: same signature mathematically, but the high-S twin
    sig = entry.signature
    len_r = sig[3]
    s = int.from_bytes(sig[6 + len_r :], "big")
    high = (ecdsa.CURVE_ORDER - s).to_bytes(33, "big")
    body = sig[2 : 4 + len_r] + b"\x02\x21" + high
    with pytest.raises(JournalError, match="strict low-S DER"):
        Entry(entry.record, b"\x30" + bytes([len(body)]) + body)


def test_next_record_refuses_clock_going_backwards_and_foreign_appliance():
    first = build(1)[0]
    with pytest.raises(JournalError, match="before seq 0"):
        next_record(first, time=first.record.time - 1, appliance_id=APP, event="backup")
    with pytest.raises(JournalError, match="does not match"):
        next_record(first, time=first.record.time, appliance_id="cold-02", event="backup")


def test_seal_checks_the_signature_when_the_key_is_given():
    record = next_record(None, time=1, appliance_id=APP, event="token_init")
    with pytest.raises(JournalError, match="does not verify"):
        seal(record, signer(OTHER_SECRET), audit_pubkey=AUDIT_PUB)


# -- tamper detection ---------------------------------------------------------------------


def test_edited_record_is_named_by_signature_and_next_link():
    entries = build(5)
    edited = dataclasses.replace(entries[2].record, decision="refused")
    entries[2] = Entry(edited, entries[2].signature)
    found = problems(entries)
    assert (2, 2) in [(p, s) for p, s, m in found if "signature does not verify" in m]
    assert (3, 3) in [(p, s) for p, s, m in found if "chain break" in m]
    assert all(pos in (2, 3) for pos, _, _ in found)


def test_edited_last_record_is_named_by_its_signature():
    entries = build(3)
    entries[2] = Entry(dataclasses.replace(entries[2].record, time=1), entries[2].signature)
    found = problems(entries)
    assert [(p, s) for p, s, _ in found] == [(2, 2), (2, 2)]  # signature and clock


def test_deleted_record_is_named_as_gap_and_chain_break():
    entries = build(5)
    del entries[2]
    found = problems(entries)
    messages = {m for _, _, m in found}
    assert (2, 2, "record seq 2 is missing") in found
    assert (2, 3, "seq 3 follows seq 1: expected seq 2") in found
    assert any(p == 2 and s == 3 and "chain break" in m for p, s, m in found)
    assert not any("signature" in m for m in messages)


def test_reordered_records_are_named():
    entries = build(5)
    entries[1], entries[2] = entries[2], entries[1]
    found = problems(entries)
    assert any(p == 1 and s == 2 and "expected seq 1" in m for p, s, m in found)
    assert any(p == 2 and s == 1 and "out of order" in m for p, s, m in found)
    link = [m for p, s, m in found if p == 1 and "chain break" in m]
    assert link and "links to seq 1 at position 2" in link[0]


def test_duplicated_record_is_named():
    entries = build(4)
    entries.insert(2, entries[1])
    found = problems(entries)
    assert (2, 1, "duplicate of the record at position 1") in found


def test_forked_record_with_reused_seq_is_named():
    entries = build(3)
    fork = dataclasses.replace(entries[1].record, details={"note": "other"})
    entries.insert(2, resign(fork))
    found = problems(entries)
    assert any(p == 2 and s == 1 and "different record with seq 1" in m for p, s, m in found)


def test_record_signed_by_another_key_is_named():
    entries = build(4)
    entries[1] = resign(entries[1].record, OTHER_SECRET)
    found = problems(entries)
    assert found == [
        (
            1,
            1,
            "signature does not verify under the audit key "
            "(record altered or signed by another key)",
        )
    ]


def test_whole_journal_under_another_key_fails_every_entry():
    entries = build(3)
    report = verify_journal(entries, OTHER_PUB)
    assert [f.seq for f in report.findings] == [0, 1, 2]


def test_rebuilt_chain_after_edit_still_fails_without_the_audit_key():
    entries = build(4)
    forged: list[Entry] = entries[:1]
    for e in entries[1:]:
        record = dataclasses.replace(e.record, prev_hash=forged[-1].record.hash())
        forged.append(resign(record, OTHER_SECRET))
    found = problems(forged)
    assert [s for _, s, m in found if "signature" in m] == [1, 2, 3]


def test_truncation_needs_and_uses_expected_length():
    entries = build(6)
    truncated = entries[:4]
    assert verify_journal(truncated, AUDIT_PUB).ok  # undetectable from the entries alone
    found = problems(truncated, expected_length=6)
    assert found == [(4, 4, "journal ends at seq 3, expected head at seq 5 (truncated)")]


def test_truncation_against_expected_head():
    entries = build(6)
    head = entries[-1].record.hash()
    assert verify_journal(entries, AUDIT_PUB, expected_head=head).ok
    found = problems(entries[:4], expected_head=head)
    assert len(found) == 1
    assert found[0][:2] == (4, 4)
    assert found[0][2].startswith("journal ends at seq 3, head ")
    assert "truncated" in found[0][2]


def test_extra_records_past_expected_head_are_named():
    entries = build(5)
    found = problems(entries, expected_head=entries[2].record.hash(), expected_length=3)
    assert (3, 3, "journal continues to seq 4, expected head at seq 2") in found
    assert any(p == 3 and "past the expected head at seq 2" in m for p, _, m in found)


def test_empty_journal_against_expected_length():
    found = problems([], expected_length=2)
    assert found == [(0, 0, "journal is empty, expected head at seq 1 (truncated)")]
    assert verify_journal([], AUDIT_PUB).head == GENESIS


def test_segment_continues_from_previous_ceremony_head():
    entries = build(6)
    first, second = entries[:3], entries[3:]
    head = verify_journal(first, AUDIT_PUB).head
    assert verify_journal(second, AUDIT_PUB, start_prev_hash=head, start_seq=3).ok
    found = problems(second)  # wrong start: named at position 0
    assert any(p == 0 and s == 3 and "expected seq 0" in m for p, s, m in found)
    assert any(p == 0 and "the start hash" in m for p, _, m in found)


def test_foreign_appliance_record_is_named():
    entries = build(2)
    record = next_record(entries[-1], time=2_000_000_000, appliance_id=APP, event="backup")
    record = dataclasses.replace(record, appliance_id="cold-99")
    entries.append(resign(record))
    found = problems(entries)
    assert found == [(2, 2, "appliance 'cold-99' is not 'cold-01'")]


def test_bad_audit_key_argument_raises():
    with pytest.raises(JournalError, match="audit key"):
        verify_journal(build(1), b"\x02" + b"\x00" * 32)


# -- export -------------------------------------------------------------------------------


def test_export_round_trip():
    entries = build(4)
    data = export_journal(entries, APP, AUDIT_PUB)
    plain = canonical.decode(data)
    assert plain["type"] == "coldstation-journal"
    assert plain["version"] == 1
    appliance, key, parsed = parse_export(data)
    assert (appliance, key, parsed) == (APP, AUDIT_PUB, entries)
    assert export_journal(parsed, appliance, key) == data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"type": "coldstation-policy"}, "document type"),
        ({"version": 2}, "unsupported journal export version"),
        ({"version": True}, "unsupported journal export version"),
        ({"audit_key": b"\x02" * 32}, "33-byte"),
        ({"audit_key": b"\x02" + b"\x00" * 32}, "not a point"),
        ({"appliance": 7}, "appliance id must be text"),
        ({"entries": {"a": 1}}, "entries must be a list"),
        ({"entries": [b"junk"]}, "entry at position 0"),
        ({"entries": ["text"]}, "entry at position 0: entry must be bytes"),
        ({"more": 1}, "unknown field 'more'"),
    ],
)
def test_hostile_export_documents(change, message):
    plain = canonical.decode(export_journal(build(1), APP, AUDIT_PUB))
    plain.update(change)
    with pytest.raises(JournalError, match=message):
        parse_export(canonical.encode(plain))


def test_export_size_cap(monkeypatch):
    """The byte cap is far above any real journal (the caps that bind are per record), so
    the check is exercised with a lowered cap: the document is refused before decoding."""
    monkeypatch.setattr("shared.journal.MAX_EXPORT_BYTES", 1024)
    with pytest.raises(JournalError, match="limit"):
        parse_export(b"\x00" * 1025)


# -- property: any single-byte change is caught -------------------------------------------

ENTRIES = build(4)
BLOBS = [e.to_bytes() for e in ENTRIES]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_single_byte_change_is_refused_or_reported(data):
    index = data.draw(st.integers(0, len(BLOBS) - 1))
    blob = BLOBS[index]
    pos = data.draw(st.integers(0, len(blob) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != blob[pos]))
    mutated = blob[:pos] + bytes([value]) + blob[pos + 1 :]
    try:
        entry = Entry.from_bytes(mutated)
    except JournalError:
        return
    entries = list(ENTRIES)
    entries[index] = entry
    report = verify_journal(entries, AUDIT_PUB)
    assert not report.ok
    assert any(f.position == index for f in report.findings)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_any_single_byte_change_to_an_export_is_refused_or_reported(data):
    export = export_journal(ENTRIES, APP, AUDIT_PUB)
    pos = data.draw(st.integers(0, len(export) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != export[pos]))
    mutated = export[:pos] + bytes([value]) + export[pos + 1 :]
    try:
        appliance, key, entries = parse_export(mutated)
    except JournalError:
        return
    # the auditor trusts nothing in the header: it checks against what the header claims
    report = verify_journal(entries, key, appliance_id=appliance, expected_length=len(ENTRIES))
    assert not report.ok


def test_huge_details_refused_with_journal_error():
    huge = {f"k{i}": ["x" * 4000] * 200 for i in range(2)}
    with pytest.raises(JournalError, match="over the record limit"):
        next_record(None, time=1, appliance_id=APP, event="export", details=huge)


def test_seq_below_start_is_named_and_non_entries_refused():
    entries = build(2)
    found = problems(entries, start_seq=5)
    assert any(p == 0 and "seq 0 is before start 5" in m for p, _, m in found)
    with pytest.raises(JournalError, match="Entry objects"):
        verify_journal([b"raw bytes"], AUDIT_PUB)  # type: ignore[list-item]


def test_seq_jump_far_beyond_journal_is_one_finding():
    entries = build(2)
    jumped = dataclasses.replace(entries[1].record, seq=10**9)
    entries[1] = resign(jumped)
    found = problems(entries)
    assert any("far more records missing" in m for _, _, m in found)
    assert len(found) < 10
