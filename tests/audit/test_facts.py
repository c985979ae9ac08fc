"""The coordinator evidence read once, as facts (issue 14): the same answers as before.

The requests' PSBTs are decoded where the evidence is parsed, and what the checks ask of
them is derived there (:mod:`shared.audit.facts`); the document is read as a stream; a
broadcast's signatures are checked against its request's signature hashes with the
responses' verified signatures counting as verified; the report is written as it is made.
Each shortcut is held here to what it replaces: the facts to the computations the checks
made from the PSBTs (kept here as reference implementations), the streamed document to
the whole-document parse on every single-byte change, the report writer to ``json.dumps``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.audit import evidence as evidence_module
from shared.audit import facts
from shared.audit.change import ChangeDeriver, OutputChange, Rederived, canonical_descriptor
from shared.audit.evidence import EvidenceError, open_coordinator, parse_coordinator
from shared.audit.facts import Failed, ReadOnlyPsbt, value
from shared.audit.report import dumps, to_json, to_plain
from shared.audit.spool import Spool
from shared.audit.workers import Workers
from shared.bitcoin import ecdsa
from shared.bitcoin.script import ScriptError, iter_ops
from shared.bitcoin.sighash import SIGHASH_ALL, SighashCache
from shared.bitcoin.tx import Transaction
from shared.psbt import Psbt, PsbtError
from shared.psbt.scripts import SpendKind, spend_info
from shared.request import read_request, request_hash
from tests.audit.conftest import SoftCold, SoftDesk, payee, pubkey, secret, soft_ceremony

# -- the evidence the tests read ----------------------------------------------------------


def _desk() -> tuple[list[SoftCold], SoftDesk]:
    """Single-key and multisig ceremonies (one with an external key), a refusal, a
    response for the request's transaction and one that is not broadcast."""
    a, b, desk = SoftCold("cold-a"), SoftCold("cold-b"), SoftDesk()
    treasury = desk.import_single("treasury", a)
    vault = desk.multisig("vault", 2, [a, b], [pubkey(secret("hardware wallet"))])
    for n in range(3):
        soft_ceremony(desk, treasury, [a], n, broadcast=n != 1)
    for n in range(2):
        soft_ceremony(desk, vault, [a, b], 10 + n)
    request = desk.request(
        treasury, [desk.coin(treasury, 9 * 10**9)], [(payee(40), 8 * 10**9)], created=a.clock
    )
    assert a.sign(request)[1].record.decision == "refused"
    return [a, b], desk


COLDS, DESK = _desk()
DOCUMENT = DESK.evidence()
DATA = DESK.evidence_bytes()


def _psbts(row: dict) -> tuple[Psbt, list[Psbt]]:
    return (
        Psbt.parse(base64.b64decode(row["unsigned_psbt"])),
        [Psbt.parse(base64.b64decode(r)) for r in row["responses"]],
    )


# -- reference implementations: what the checks computed from the PSBTs -------------------


def _rederive_reference(
    deriver: ChangeDeriver, psbt: Psbt, pinned: tuple[str, ...], internal: tuple[str, ...]
) -> Rederived:
    """ChangeDeriver.rederive as it read the PSBT itself."""

    def hinted(origins: object) -> list[int]:
        return [o.path[-1] for o in origins if o.path and o.path[-1] < 2**31]  # type: ignore

    internal_set = {c for c in (canonical_descriptor(t) for t in internal) if c}
    input_wallets: set[str] = set()
    foreign = []
    for i, node in enumerate(psbt.inputs):
        try:
            utxo = psbt.input_utxo(i)
        except (IndexError, ValueError):
            utxo = None
        found = (
            []
            if utxo is None
            else deriver.wallet_of(
                utxo.script_pubkey, pinned, hinted(node.bip32_derivations.values())
            )
        )
        if not found:
            foreign.append(i)
        input_wallets.update(found)
    outputs = []
    for j, out in enumerate(psbt.unsigned_tx.outputs):
        hints = psbt.outputs[j].bip32_derivations.values() if j < len(psbt.outputs) else ()
        found = deriver.wallet_of(out.script_pubkey, pinned, hinted(hints))
        change = [w for w in found if w in input_wallets or w in internal_set]
        wallet = change[0] if change else (found[0] if found else None)
        outputs.append(OutputChange(j, out.value, out.script_pubkey, wallet, bool(change)))
    return Rederived(tuple(outputs), frozenset(input_wallets), tuple(foreign))


def _signers_reference(psbt: Psbt, tx: Transaction) -> tuple[set[bytes], list[tuple[int, str]]]:
    """The broadcast check as it verified every signature of the transaction itself."""
    cache = SighashCache(psbt.unsigned_tx)

    def verifies(info, pubkey_: bytes, sig: bytes) -> bool:  # type: ignore[no-untyped-def]
        if len(sig) < 9 or sig[-1] != SIGHASH_ALL:
            return False
        return ecdsa.verify(pubkey_, sig[:-1], info.digest(cache, SIGHASH_ALL))

    signers: set[bytes] = set()
    problems = []
    for i in range(len(tx.inputs)):
        try:
            info = spend_info(psbt, i)
            txin = tx.inputs[i]
            items = (
                list(txin.witness)
                if info.segwit
                else [d or b"" for _, d in iter_ops(txin.script_sig)]
            )
            if info.kind is not SpendKind.MULTISIG:
                if len(items) < 2 or not info.may_sign(items[-1]):
                    keys, problem = set(), "no signature by the input's key"
                elif verifies(info, items[-1], items[-2]):
                    keys, problem = {items[-1]}, None
                else:
                    keys, problem = set(), "the signature does not verify"
            else:
                has_script = info.witness_script is not None or info.redeem_script is not None
                sigs = items[1:-1] if has_script else items[1:]
                keys = {k for s in sigs for k in info.keys if verifies(info, k, s)}
                problem = (
                    None
                    if len(keys) >= info.threshold
                    else f"{len(keys)} valid signature(s), {info.threshold} required"
                )
        except (PsbtError, ScriptError, IndexError) as exc:
            keys, problem = set(), str(exc)
        if problem:
            problems.append((i, problem))
        signers |= keys
    return signers, problems


# -- the facts are what the checks computed from the PSBTs --------------------------------


def _evidence(data: bytes = DATA, workers: Workers | None = None):  # type: ignore[no-untyped-def]
    return parse_coordinator("desk.json", data, workers)


def test_request_facts_are_what_the_psbts_say() -> None:
    evidence = _evidence()
    rows = DOCUMENT["requests"]
    assert len(evidence.requests) == len(rows)
    for row, request in zip(rows, evidence.requests, strict=True):
        psbt, responses = _psbts(row)
        tx = psbt.unsigned_tx
        unsigned = tx.serialize(include_witness=False)
        assert request.unsigned == hashlib.sha256(unsigned).digest() == request.psbt_hash
        assert request.psbt_hash == hashlib.sha256(tx.serialize()).digest()
        assert request.unsigned_txid == tx.txid_hex
        assert request.input_scripts == tuple(u.script_pubkey for u in psbt.input_utxos())
        assert request.spent_scripts == request.input_scripts
        assert request.shown == (
            [str(i.prevout) for i in tx.inputs],
            [(o.script_pubkey, o.value) for o in tx.outputs],
            psbt.fee(),
        )
        meta = read_request(psbt)
        assert request.recomputed == facts.Recomputed(
            meta.request_id.hex(), request_hash(psbt, meta), None
        )
        for number, response in enumerate(responses):
            checked = request.responses[number]
            assert checked.same is (
                response.unsigned_tx.serialize(include_witness=False) == unsigned
            )
            assert checked.signers == tuple(
                (i, tuple(sorted(n.partial_sigs)))
                for i, n in enumerate(response.inputs)
                if n.partial_sigs
            )
            cache = SighashCache(response.unsigned_tx)
            for partial in value(checked.partial):
                info = spend_info(response, partial.input_index)
                assert partial.script == info.utxo.script_pubkey
                assert partial.keys == tuple(
                    (k, info.may_sign(k)) for k in response.inputs[partial.input_index].partial_sigs
                )
                for key, sig in response.inputs[partial.input_index].partial_sigs.items():
                    assert ecdsa.verify(key, sig[:-1], info.digest(cache, sig[-1]))
    assert evidence.highest_hint == -1  # the test wallets give no derivation hints


def test_the_change_facts_rederive_as_the_psbt_did() -> None:
    evidence = _evidence()
    pinned = (*(str(c.descriptor) for c in COLDS), str(DESK.wallets[1].descriptor))
    for row in DOCUMENT["requests"]:
        psbt, _ = _psbts(row)
        for pins, internal in ((pinned, ()), (pinned[:1], ()), (pinned, pinned[1:]), ((), ())):
            ours, theirs = ChangeDeriver(0), ChangeDeriver(0)
            expected = _rederive_reference(theirs, psbt, pins, internal)
            assert ours.rederive(psbt, pins, internal) == expected
            change = evidence.verified[bytes.fromhex(row["request_hash"])]
            assert ChangeDeriver(0).rederive_facts(change, pins, internal) == expected


def test_spend_facts_and_signature_hashes_are_spend_info_s() -> None:
    for row in DOCUMENT["requests"]:
        psbt, _ = _psbts(row)
        cache = SighashCache(psbt.unsigned_tx)
        memo = facts._Sighashes(psbt.unsigned_tx)
        for i, spend in enumerate(facts._spends(psbt, memo)):
            info = spend_info(psbt, i)
            assert isinstance(spend, facts.SpendFacts)
            assert (spend.kind, spend.segwit, spend.keys, spend.threshold, spend.key_hash) == (
                info.kind,
                info.segwit,
                info.keys,
                info.threshold,
                info.key_hash,
            )
            assert spend.digest == info.digest(cache, SIGHASH_ALL)
            for hash_type in (0x01, 0x02, 0x03, 0x81, 0x83):
                for _ in range(2):  # computed, then remembered
                    assert info.digest(memo, hash_type) == info.digest(cache, hash_type)
            for key in (*info.keys, pubkey(secret("anyone")), COLDS[0].pubkey):
                assert spend.may_sign(key) is info.may_sign(key)


def test_a_read_only_psbt_is_a_psbt() -> None:
    for row in DOCUMENT["requests"]:
        raw = base64.b64decode(row["unsigned_psbt"])
        ours, theirs = ReadOnlyPsbt.parse(raw), Psbt.parse(raw)
        assert ours == theirs and ours.unsigned_tx == theirs.unsigned_tx
        assert ours.unsigned_tx is ours.unsigned_tx  # assembled once
        assert ours.fee() == theirs.fee() and ours.serialize() == raw


def _tampered_broadcasts() -> list[tuple[str, bytes]]:
    """Each broadcast as sent, and with each signature (and key) damaged in turn."""
    out = []
    for broadcast in DOCUMENT["broadcasts"]:
        raw = bytes.fromhex(broadcast["raw"])
        out.append((broadcast["request_id"], raw))
        tx = Transaction.parse(raw)
        for item in range(len(tx.inputs[0].witness)):
            witness = list(tx.inputs[0].witness)
            if not witness[item]:
                continue
            damaged = bytearray(witness[item])
            damaged[len(damaged) // 2] ^= 1
            witness[item] = bytes(damaged)
            inputs = [dataclasses.replace(tx.inputs[0], witness=witness), *tx.inputs[1:]]
            out.append(
                (
                    broadcast["request_id"],
                    Transaction(tx.version, inputs, tx.outputs, tx.locktime).serialize(),
                )
            )
    return out


@pytest.mark.parametrize("cached", [True, False], ids=["verified-cache", "no-cache"])
def test_broadcast_signatures_are_checked_as_the_transaction_s_own(cached: bool) -> None:
    """The responses' verified partial signatures count as verified: never otherwise than
    verifying them again would."""
    rows = {r["request_id"]: r for r in DOCUMENT["requests"]}
    checked = 0
    for request_id, raw in _tampered_broadcasts():
        row = rows[request_id]
        psbt, responses = _psbts(row)
        _, _, _, signing = facts.request_facts(
            ("b", request_id, "payment", None, bytes.fromhex(row["request_hash"]), "t", 0, "s"),
            (),
            ReadOnlyPsbt.parse(psbt.serialize()),
            [ReadOnlyPsbt.parse(r.serialize()) for r in responses],
        )
        if not cached:
            signing = signing._replace(verified=frozenset())
        else:
            assert signing.verified  # the responses' signatures are there
        tx = Transaction.parse(raw)
        broadcast = facts.broadcast_facts(0, (request_id, "", "", "sent", None, None), tx)
        keys, problems = value(facts.match(signing, broadcast).signed)
        expected_keys, expected_problems = _signers_reference(psbt, tx)
        assert (set(keys), list(problems)) == (expected_keys, expected_problems)
        checked += 1
    assert checked > len(DOCUMENT["broadcasts"])


# -- the document read as a stream --------------------------------------------------------


def _outcome(evidence_or_error: object) -> object:
    """What a parse gives, in comparable form (an error as its message)."""
    if isinstance(evidence_or_error, Exception):
        return ("error", type(evidence_or_error).__name__, str(evidence_or_error))
    evidence = evidence_or_error
    return (
        evidence.source,
        dict(evidence.appliances),
        evidence.wallets,
        list(evidence.requests),
        list(evidence.broadcasts),
        evidence.alerts,
        {k: evidence.verified[k] for k in evidence.verified},
        evidence.highest_hint,
        dict(evidence.matched),
        str(evidence.receipt_error),
    )


def _streamed(data: bytes, workers: Workers | None = None) -> object:
    try:
        return _outcome(parse_coordinator("desk.json", data, workers))
    except EvidenceError as exc:
        return _outcome(exc)


def _whole(data: bytes) -> object:
    """The document parsed whole, as every document was before the stream."""
    try:
        return _outcome(evidence_module._whole("desk.json", lambda: io.BytesIO(data), Workers(0)))
    except EvidenceError as exc:
        return _outcome(exc)


def test_the_streamed_document_is_the_whole_document() -> None:
    assert _streamed(DATA) == _whole(DATA)
    # laid out otherwise (indented by two, unsorted, on one line): parsed whole, the same
    for other in (
        json.dumps(DOCUMENT, indent=2, sort_keys=True),
        json.dumps(DOCUMENT),
        json.dumps(DOCUMENT, indent=1),
    ):
        assert _streamed(other.encode()) == _streamed(DATA)


SMALL = DESK.evidence()
SMALL["requests"], SMALL["broadcasts"] = SMALL["requests"][:2], SMALL["broadcasts"][:2]
SMALL_DATA = (json.dumps(SMALL, indent=1, sort_keys=True) + "\n").encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_single_byte_change_reads_as_the_whole_document_reads(data) -> None:
    """Every position of the document, every kind of byte: the streamed read gives what
    the whole-document read gives, facts or the first error."""
    pos = data.draw(st.integers(0, len(SMALL_DATA) - 1))
    value_ = data.draw(st.sampled_from(b'\n {}[],:"\\0aZ\xff') | st.integers(0, 255))
    mutated = SMALL_DATA[:pos] + bytes([value_]) + SMALL_DATA[pos + 1 :]
    assert _streamed(mutated) == _whole(mutated)


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.replace(b'"kind": "payment",', b'"kind": "payment",\n   "kind": "payment",', 1),
        lambda d: d.replace(b"\n  },\n  {\n", b"\n  },\n\n  {\n", 1),
        lambda d: d.replace(b'"receipts": [\n    {', b'"receipts": [\n  {', 1),
        lambda d: d.replace(b'"fee": ', b'"fee": 1e3, "x": ', 1),
        lambda d: d[:-1],
        lambda d: d + b" ",
        lambda d: d[: len(d) // 2],
        lambda d: b"\xef\xbb\xbf" + d,
        lambda d: d.replace(b'"state": "', b'"state": "\xff', 1),
        lambda d: d.replace(b'"batch": "b1"', b'"batch": ' + b"[" * 300 + b"]" * 300, 1),
    ],
)
def test_odd_documents_read_as_the_whole_document_reads(edit) -> None:  # type: ignore[no-untyped-def]
    mutated = edit(DATA)
    assert mutated != DATA
    assert _streamed(mutated) == _whole(mutated)


def test_workers_read_the_document_as_this_process_does(monkeypatch) -> None:
    monkeypatch.setattr(evidence_module, "PARALLEL_FROM", 2)
    monkeypatch.setattr(evidence_module, "CHUNK", 2)
    bad = DATA.replace(b'"fee": 500', b'"fee": "x"', 1)
    with Workers(2) as workers:
        for data in (DATA, bad, DATA[:-100]):
            assert _streamed(data, workers) == _streamed(data) == _whole(data)


def test_a_document_is_read_in_blocks(monkeypatch) -> None:
    monkeypatch.setattr(evidence_module, "_BLOCK", 7)  # patterns cut across blocks
    assert _streamed(DATA) == _whole(DATA)


def test_a_document_that_needs_long_reads_is_parsed_whole(monkeypatch) -> None:
    monkeypatch.setattr(evidence_module, "_SPAN", 64)  # no element fits: read it whole
    monkeypatch.setattr(evidence_module, "_BLOCK", 16)
    whole = []
    monkeypatch.setattr(evidence_module, "_whole", lambda *a: whole.append(1) or _WHOLE(*a))
    streamed = _streamed(DATA)
    assert whole == [1]  # the stream gave up, and the document was parsed whole
    assert streamed == _whole(DATA)


_WHOLE = evidence_module._whole


def test_a_stream_is_opened_afresh_for_the_whole_document() -> None:
    opened = []

    def open_stream() -> io.BytesIO:
        opened.append(1)
        return io.BytesIO(json.dumps(DOCUMENT).encode())

    open_coordinator("desk.json", open_stream)
    assert len(opened) == 2  # the stream, then the document whole


# -- the spool, the report ----------------------------------------------------------------


def test_a_spool_gives_back_what_it_kept() -> None:
    spool = Spool()
    kept = [{"n": n, "data": bytes(n)} for n in range(300)] + [Failed(ValueError("x"))]
    for item in kept:
        spool.append(item)
    assert list(spool) == kept and len(spool) == len(kept)
    assert spool[17] == kept[17] and spool[len(kept) - 1] == kept[-1]
    with pytest.raises(IndexError):
        spool[len(kept)]
    spool.close()


PLAIN_SHOWN = st.fixed_dictionaries(
    {},
    optional={
        "inputs": st.one_of(
            st.none(),
            st.integers(),
            st.lists(
                st.one_of(
                    st.integers(),
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "outpoint": st.sampled_from(["a:0", "b:1", 5]),
                            "key": st.binary(max_size=2),
                        },
                    ),
                ),
                max_size=3,
            ),
            st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
        ),
        "outputs": st.one_of(
            st.none(),
            st.lists(
                st.one_of(
                    st.text(max_size=1),
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "script": st.sampled_from([b"s", b"t", "s"]),
                            "amount": st.sampled_from([1, 2, "1"]),
                        },
                    ),
                ),
                max_size=3,
            ),
        ),
        "fee": st.sampled_from([None, 1, 2, "1"]),
    },
)


@settings(max_examples=300, deadline=None)
@given(
    plain=PLAIN_SHOWN,
    outpoints=st.sampled_from([[], ["a:0"], ["a:0", "b:1"]]),
    outputs=st.sampled_from([[], [(b"s", 1)], [(b"s", 1), (b"t", 2)]]),
    fee=st.sampled_from([None, 1, 2]),
)
def test_what_a_ceremony_keeps_of_its_transcript_compares_as_it_did(
    plain, outpoints, outputs, fee
) -> None:
    from shared.audit import transcript as tr

    kept = tr.compare_kept(tr.shown(plain), outpoints, outputs, fee)
    assert kept == tr.compare_shown(tr.shown_transaction(plain), outpoints, outputs, fee)


def test_a_failed_value_raises_its_error_where_it_is_used() -> None:
    failed = facts.derive(lambda: Psbt.parse(b"nope"))
    assert isinstance(failed, Failed)
    with pytest.raises(PsbtError, match="magic"):
        value(failed)
    assert facts.derive(lambda: 3) == 3


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.text(max_size=8)
    | st.floats(allow_nan=False),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value_=JSON_VALUES)
def test_the_report_writer_is_json_dumps(value_) -> None:
    assert dumps(value_) == json.dumps(value_, indent=1, sort_keys=True)


def test_the_report_is_json_dumps_of_its_map() -> None:
    from shared.audit.evidence import parse_bundle
    from shared.audit.replay import replay

    document = DESK.evidence()
    document["requests"][0]["txid"] = "00" * 32
    evidence = _evidence(json.dumps(document, indent=1, sort_keys=True).encode())
    report = replay([parse_bundle(c.id, *c.bundle()) for c in COLDS], evidence)
    assert report.findings and report.ceremonies and report.broadcasts
    inputs = {"bundle 1": "x\u202e", "generated": "now"}
    assert (
        to_json(report, inputs)
        == json.dumps(to_plain(report, inputs), indent=1, sort_keys=True) + "\n"
    )
