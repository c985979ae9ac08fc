"""Request metadata and receipts in PSBT proprietary fields; the request hash and its words."""

from __future__ import annotations

import contextlib
import dataclasses

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import canonical
from shared.bitcoin import ecdsa
from shared.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from shared.journal import next_record, seal
from shared.psbt import Psbt
from shared.request import (
    SUBTYPE_RECEIPT,
    SUBTYPE_REQUEST,
    RequestError,
    RequestMetadata,
    attach_receipt,
    attach_request,
    hash_words,
    proprietary_keydata,
    read_receipts,
    read_request,
    request_hash,
    spent_outputs,
)
from shared.ur.bytewords import WORDS
from tests.adversarial.psbts import (
    NOW,
    OTHER_TXID,
    Scenario,
    secret,
)

REQUEST_KEY = b"\xfc\x0bcoldstation\x00"


def meta(**changes) -> RequestMetadata:
    fields = dict(
        request_id=secret("rid")[:16],
        batch_id="batch-1",
        requester="0123456789abcdef",
        created=NOW - 60,
        expiry=NOW + 600,
        purpose="payouts",
        network="regtest",
        kind="payment",
        replaces=(),
        references={0: secret("ref 0"), 1: secret("ref 1")},
    )
    fields.update(changes)
    return RequestMetadata(**fields)


def plain(**changes) -> dict:
    out = meta().to_plain()
    out.update(changes)
    return out


def bare_psbt(kind: str = "wpkh") -> Psbt:
    """A built scenario's PSBT without request metadata."""
    return Scenario(kind=kind, request=False).build().psbt


# -- metadata -----------------------------------------------------------------------------


def test_metadata_round_trips_through_canonical_cbor():
    m = meta()
    assert RequestMetadata.from_bytes(m.to_bytes()) == m
    assert m.to_bytes() == canonical.encode(m.to_plain())
    assert m.reference_for(1) == secret("ref 1") and m.reference_for(5) is None
    r = meta(kind="replacement", replaces=(OTHER_TXID,))
    again = RequestMetadata.from_bytes(r.to_bytes())
    assert again == r and again.replaces == (OTHER_TXID,)
    assert "replaces" not in m.to_plain() and r.to_plain()["replaces"] == [OTHER_TXID]


def test_references_given_as_mapping_or_pairs_are_the_same():
    pairs = meta(references=((1, secret("ref 1")), (0, secret("ref 0"))))
    assert pairs == meta()
    assert pairs.references == ((0, secret("ref 0")), (1, secret("ref 1")))


@pytest.mark.parametrize(
    "changes, problem",
    [
        (dict(request_id=b"\x00" * 15), "request_id"),
        (dict(request_id="00" * 16), "request_id"),
        (dict(batch_id=""), "batch_id"),
        (dict(batch_id="x" * 65), "batch_id"),
        (dict(requester="ann\nAPPROVED"), "control characters"),
        (dict(purpose="pay\x1b[2J"), "control characters"),
        (dict(created=True), "created"),
        (dict(created=-1), "created"),
        (dict(expiry=NOW - 60), "expiry"),
        (dict(expiry=2**41), "expiry"),
        (dict(network="litecoin"), "network"),
        (dict(kind="collaborative"), "kind"),
        (dict(replaces=(OTHER_TXID,)), "payment request cannot list"),
        (dict(kind="replacement"), "replacement must list"),
        (dict(kind="replacement", replaces=(OTHER_TXID, OTHER_TXID)), "twice"),
        (dict(kind="replacement", replaces=(OTHER_TXID[:31],)), "replaced txid"),
        (dict(references={-1: secret("x")}), "reference output index"),
        (dict(references={True: secret("x")}), "reference output index"),
        (dict(references={"0": secret("x")}), "reference output index"),
        (dict(references={0: secret("x")[:31]}), "reference of output 0"),
        (dict(references=[(0, secret("a")), (0, secret("b"))]), "twice"),
        (dict(references="none"), "references"),
    ],
)
def test_hostile_metadata_is_refused(changes, problem):
    with pytest.raises(RequestError, match=problem):
        meta(**changes)


@pytest.mark.parametrize(
    "mutate, problem",
    [
        (lambda p: p.pop("purpose"), "missing field 'purpose'"),
        (lambda p: p.update(payee_name="Alice"), "unknown field"),
        (lambda p: p.update({7: 1}), "unknown field"),
        (lambda p: p.update(format=2), "format"),
        (lambda p: p.update(format=True), "format"),
        (lambda p: p.update(replaces=[]), "only for, replacement"),
        (lambda p: p.update(kind="replacement"), "only for, replacement"),
        (lambda p: p.update(references=[[0, secret("x")]]), "references"),
    ],
)
def test_hostile_plain_metadata_is_refused(mutate, problem):
    p = plain()
    mutate(p)
    with pytest.raises(RequestError, match=problem):
        RequestMetadata.from_bytes(canonical.encode(p))


@pytest.mark.parametrize(
    "data, problem",
    [
        (b"", "not CBOR"),
        (b"\xff", "not CBOR"),
        (cbor2.dumps([1, 2]), "must be a map"),
        (cbor2.dumps(plain(), canonical=False), "canonical"),
        (canonical.encode(plain())[:-3], "not CBOR"),
        (b"\x5a" + (2**21).to_bytes(4, "big") + bytes(2**21), "limit"),
    ],
)
def test_undecodable_metadata_is_refused(data, problem):
    with pytest.raises(RequestError, match=problem):
        RequestMetadata.from_bytes(data)


def test_non_canonical_key_order_is_refused():
    """Two encodings of one request would give two hashes for one approval: refuse."""
    p = plain()
    reordered = cbor2.dumps(dict(reversed(list(p.items()))))
    assert reordered != canonical.encode(p)
    with pytest.raises(RequestError, match="canonical"):
        RequestMetadata.from_bytes(reordered)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_ever_raise_request_error(data):
    with contextlib.suppress(RequestError):
        RequestMetadata.from_bytes(data)


# -- proprietary records ------------------------------------------------------------------


def test_request_key_layout_and_psbt_round_trip():
    assert proprietary_keydata(SUBTYPE_REQUEST) == REQUEST_KEY[1:]
    psbt = attach_request(bare_psbt(), meta())
    assert REQUEST_KEY in psbt.globals.proprietary
    again = Psbt.parse(psbt.serialize())
    assert read_request(again) == meta()


def test_attach_returns_a_copy_and_refuses_a_second_request():
    original = bare_psbt()
    before = original.serialize()
    attached = attach_request(original, meta())
    assert original.serialize() == before
    with pytest.raises(RequestError, match="already carries request"):
        attach_request(attached, meta())


def test_read_request_refuses_none_two_and_extra_key_data():
    psbt = bare_psbt()
    with pytest.raises(RequestError, match="no Coldstation request"):
        read_request(psbt)
    two = attach_request(psbt, meta())
    two.globals.set(0xFC, meta().to_bytes(), proprietary_keydata(SUBTYPE_REQUEST, b"x"))
    with pytest.raises(RequestError, match="2 request records"):
        read_request(two)
    odd = bare_psbt()
    odd.globals.set(0xFC, meta().to_bytes(), proprietary_keydata(SUBTYPE_REQUEST, b"x"))
    with pytest.raises(RequestError, match="after the subtype"):
        read_request(odd)


def test_read_request_refuses_garbage_and_ignores_other_vendors():
    psbt = bare_psbt()
    psbt.globals.set(0xFC, b"\x01\x02", b"\x06vendor\x00")
    psbt.globals.set(0xFC, b"not cbor", proprietary_keydata(SUBTYPE_REQUEST))
    with pytest.raises(RequestError, match="not CBOR"):
        read_request(psbt)
    psbt.globals.set(0xFC, meta().to_bytes(), proprietary_keydata(SUBTYPE_REQUEST))
    assert read_request(psbt) == meta()


# -- receipts -----------------------------------------------------------------------------

AUDIT_SECRET = secret("appliance audit key")


def entry_bytes(appliance: str, time: int = NOW) -> bytes:
    record = next_record(
        None,
        time=time,
        appliance_id=appliance,
        event="signing_decision",
        subjects={"request": secret("a request hash")},
        decision="approved",
    )
    return seal(record, lambda digest: ecdsa.sign(AUDIT_SECRET, digest)).to_bytes()


def test_receipts_keyed_per_appliance():
    psbt = attach_request(bare_psbt("wsh"), meta())
    first = attach_receipt(psbt, entry_bytes("cold-02"))
    both = attach_receipt(first, entry_bytes("cold-01"))
    assert read_receipts(psbt) == []
    assert read_receipts(first) == [entry_bytes("cold-02")]
    assert read_receipts(Psbt.parse(both.serialize())) == [
        entry_bytes("cold-01"),
        entry_bytes("cold-02"),
    ]
    key = b"\xfc" + proprietary_keydata(SUBTYPE_RECEIPT, b"cold-01")
    assert both.globals.proprietary[key] == entry_bytes("cold-01")
    assert read_request(both) == meta()


def test_receipt_refusals():
    psbt = attach_receipt(bare_psbt(), entry_bytes("cold-01"))
    with pytest.raises(RequestError, match="already carries a receipt"):
        attach_receipt(psbt, entry_bytes("cold-01", NOW + 5))
    with pytest.raises(RequestError, match="not a journal entry"):
        attach_receipt(psbt, b"\xa0")
    forged = bare_psbt()
    forged.globals.set(
        0xFC, entry_bytes("cold-01"), proprietary_keydata(SUBTYPE_RECEIPT, b"cold-09")
    )
    with pytest.raises(RequestError, match="filed under"):
        read_receipts(forged)
    garbage = bare_psbt()
    garbage.globals.set(0xFC, b"junk", proprietary_keydata(SUBTYPE_RECEIPT, b"cold-01"))
    with pytest.raises(RequestError, match="not a journal entry"):
        read_receipts(garbage)


# -- request hash -------------------------------------------------------------------------


def _hash(scenario: Scenario, m: RequestMetadata | None = None) -> bytes:
    case = scenario.build()
    return request_hash(case.psbt, m or case.meta)


def _with_tx(psbt: Psbt, change) -> Psbt:
    """The same PSBT records around a modified unsigned transaction."""
    tx = psbt.unsigned_tx
    change(tx)
    out = Psbt.from_unsigned_tx(tx)
    for src, dst in zip([*psbt.inputs, *psbt.outputs], [*out.inputs, *out.outputs], strict=True):
        for key, value in src.raw_records().items():
            dst.set_record(key, value)
    return out


def test_request_hash_commits_to_transaction_utxos_and_metadata():
    case = Scenario().build()
    base = request_hash(case.psbt, case.meta)
    assert len(base) == 32
    tx_changes = [
        lambda tx: setattr(tx.outputs[0], "value", tx.outputs[0].value - 1),
        lambda tx: setattr(tx.outputs[1], "script_pubkey", tx.outputs[0].script_pubkey),
        lambda tx: tx.outputs.reverse(),
        lambda tx: setattr(tx.inputs[0], "sequence", 0xFFFFFFFE),
        lambda tx: tx.inputs.reverse(),
        lambda tx: setattr(tx, "locktime", 1),
        lambda tx: setattr(tx, "version", 1),
    ]
    hashes = {base}
    for change in tx_changes:
        psbt = _with_tx(case.psbt, change)
        if change is tx_changes[4]:
            psbt.inputs.reverse()
        hashes.add(request_hash(psbt, case.meta))
    assert len(hashes) == 1 + len(tx_changes)
    # A different coin (funding amount) is a different UTXO: the hash moves.
    assert _hash(Scenario(input_amounts=(600_001, 500_000))) != base
    meta_changes = dict(
        request_id=secret("other")[:16],
        batch_id="batch-2",
        requester="someone-else",
        created=case.meta.created - 1,
        expiry=case.meta.expiry + 1,
        purpose="other",
        network="testnet",
        references={0: secret("other ref")},
    )
    for name, value in meta_changes.items():
        assert request_hash(case.psbt, dataclasses.replace(case.meta, **{name: value})) != base
    replacement = dataclasses.replace(case.meta, kind="replacement", replaces=(OTHER_TXID,))
    assert request_hash(case.psbt, replacement) != base


def test_request_hash_covers_the_spent_outputs():
    case = Scenario().build()
    spent = spent_outputs(case.psbt)
    scripts = [out.script_pubkey for out in case.funding[0].outputs]
    assert spent == [TxOut(600_000, scripts[0]).serialize(), TxOut(500_000, scripts[1]).serialize()]


def test_request_hash_ignores_signatures_hints_and_other_records():
    plain_case = Scenario(kind="wsh").build()
    base = request_hash(plain_case.psbt, plain_case.meta)
    cosigned = Scenario(kind="wsh", cosigner_signs=True).build()
    assert cosigned.psbt.inputs[0].partial_sigs
    assert request_hash(cosigned.psbt, cosigned.meta) == base
    stripped = Psbt.parse(plain_case.psbt.serialize())
    for m in [*stripped.inputs, *stripped.outputs]:
        m.keep_only({0x00})
    stripped.globals.delete(0x01, next(iter(stripped.xpubs)))
    assert not stripped.inputs[0].bip32_derivations and not stripped.xpubs
    assert request_hash(stripped, plain_case.meta) == base
    extra = attach_receipt(plain_case.psbt, entry_bytes("cold-01"))
    extra.globals.set(0xFC, b"anything", b"\x06vendor\x05")
    extra.inputs[0].set(0xFC, b"x", b"\x06vendor\x00")
    extra.inputs[0].set(0x03, (1).to_bytes(4, "little"))
    assert request_hash(extra, plain_case.meta) == base


def test_request_hash_needs_every_full_previous_transaction():
    case = Scenario().build()
    case.psbt.inputs[1].delete(0x00)
    with pytest.raises(RequestError, match="input 1 has no full previous transaction"):
        request_hash(case.psbt, case.meta)
    wrong = Scenario().build()
    other = Transaction(2, [TxIn(OutPoint(bytes(32), 0))], [TxOut(1, b"\x51")])
    wrong.psbt.inputs[0].set(0x00, other.serialize())
    with pytest.raises(RequestError, match="input 0: previous transaction"):
        request_hash(wrong.psbt, wrong.meta)


def test_hash_words_are_bytewords_in_groups_of_four():
    digest = bytes(range(32))
    text = hash_words(digest)
    groups = text.split(" / ")
    assert len(groups) == 8 and all(len(g.split(" ")) == 4 for g in groups)
    words = [w for g in groups for w in g.split(" ")]
    assert bytes(WORDS.index(w) for w in words) == digest
    assert words[:3] == ["able", "acid", "also"]
    with pytest.raises(RequestError):
        hash_words(digest[:31])
