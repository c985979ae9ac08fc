"""Where the chain walk starts, what birth heights may claim, and lost broadcast records.

The auditor's node is a ``FakeNode`` standing in for Bitcoin Core's RPC behind the real
``coldstation-audit`` command line (evidence files, argument parsing, the block walk and the
reports all real). Layout of every chain here (heights):

    10  the funding transactions (the wallet's first coins)
    12  the two approved payments (the coordinator's broadcasts, recorded at height 12)
    14  a rogue spend of payment 0's change, signed by nobody's ceremony
    15  tip
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from online_coordinator import audit_cli
from shared.audit.chain import ChainScanner
from shared.audit.evidence import parse_bundle, parse_coordinator
from shared.audit.replay import replay
from shared.audit.wallets import build_index
from shared.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from shared.psbt.roles import extract, finalize
from shared.psbt.signer import sign_psbt
from tests.audit.conftest import (
    FakeNode,
    SoftCold,
    SoftDesk,
    SoftWallet,
    payee,
    run_audit,
    write_evidence,
)

TIP = 15


@dataclass
class World:
    cold: SoftCold
    desk: SoftDesk
    wallet: SoftWallet
    coins: list[Transaction]
    payments: list[Transaction]
    rogue: Transaction

    def node(self, extra: dict[int, list[Transaction]] | None = None) -> FakeNode:
        blocks = {10: self.coins, 12: self.payments, 14: [self.rogue], **(extra or {})}
        return FakeNode(TIP, blocks)


def world(birth_height: int = 0) -> World:
    cold, desk = SoftCold("cold-1"), SoftDesk()
    wallet = desk.import_single("treasury", cold)
    wallet.birth_height = birth_height
    coins, payments = [], []
    for n in range(2):
        coin = desk.coin(wallet, 150_000)
        request = desk.request(wallet, [coin], [(payee(n), 50_000)], created=cold.clock)
        response, entry = cold.sign(request)
        assert entry.record.decision == "approved"
        desk.respond(response)
        payments.append(desk.broadcast([response], height=12))
        coins.append(coin)
    # the change of payment 0 (output 1) leaves with a witness that reveals our key
    rogue = Transaction(
        2,
        [TxIn(OutPoint(payments[0].txid, 1), witness=[bytes(71), cold.pubkey])],
        [TxOut(90_000, payee(66))],
    )
    return World(cold, desk, wallet, coins, payments, rogue)


def replay_with_chain(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    w: World,
    *extra: str,
    node: FakeNode | None = None,
) -> tuple:
    node = node or w.node()
    monkeypatch.setattr(audit_cli, "BitcoinCoreRPC", node)
    cookie = tmp_path / ".cookie"
    cookie.write_text("__cookie__:0123abcd")
    args = write_evidence(tmp_path, [w.cold], w.desk)
    run = run_audit(
        *args,
        "--chain",
        "http://127.0.0.1:18443",
        "--cookie",
        str(cookie),
        *extra,
        reports=tmp_path,
    )
    return run, node


# -- where the walk starts ----------------------------------------------------------------


def test_default_walk_starts_at_block_0_and_finds_the_rogue_outflow(tmp_path, monkeypatch) -> None:
    w = world()
    run, node = replay_with_chain(tmp_path, monkeypatch, w)
    assert run.code == 1, run.err
    assert node.asked == list(range(TIP + 1))  # every block, from 0
    chain = run.report["chain"]
    assert (chain["start"], chain["tip"]) == (0, TIP)
    assert chain["start_source"] == "block 0 (default: the whole chain)"
    assert chain["first_wallet_height"] == 10
    assert [o["txid"] for o in chain["outflows"]] == [p.txid_hex for p in w.payments] + [
        w.rogue.txid_hex
    ]
    assert [o["broadcast"] for o in chain["outflows"]][:2] == [p.txid_hex for p in w.payments]
    rogue = [f for f in run.report["findings"] if f["txid"] == w.rogue.txid_hex]
    assert len(rogue) == 1 and rogue[0]["check"] == "chain"
    assert rogue[0]["message"].startswith("outflow without an approved ceremony at height 14")
    assert (
        "chain walked 0..15 (block 0 (default: the whole chain)); first block paying or "
        "spending a wallet: 10" in run.out
    )


def test_from_height_is_the_auditors_choice_and_coins_from_before_it_are_still_seen(
    tmp_path, monkeypatch
) -> None:
    w = world()
    run, node = replay_with_chain(tmp_path, monkeypatch, w, "--from-height", "13")
    assert node.asked == [13, 14, 15]
    chain = run.report["chain"]
    assert chain["start"] == 13 and chain["start_source"] == "--from-height (the auditor's choice)"
    # the rogue spends a coin created at height 12, before the walk: its witness reveals it
    (rogue,) = [f for f in run.report["findings"] if f["txid"] == w.rogue.txid_hex]
    spent = f"{w.payments[0].txid_hex}:1"
    assert f"spending {spent} (created before the walk started: {spent})" in rogue["message"]
    assert "outflow without an approved ceremony at height 14" in rogue["message"]
    assert any("blocks before 13 were not walked" in n for n in run.report["notes"])
    assert run.report["inputs"]["chain walk from"] == "block 13 (--from-height)"


def test_birth_height_above_the_tip_neither_stops_nor_moves_the_walk(tmp_path, monkeypatch) -> None:
    """One integer in the unsigned evidence used to switch the walk off."""
    w = world(birth_height=1_000_000)
    run, node = replay_with_chain(tmp_path, monkeypatch, w)
    assert node.asked == list(range(TIP + 1))
    assert run.report["chain"]["start"] == 0
    chain = run.messages("chain")
    assert f"tx {w.rogue.txid_hex}: outflow without an approved ceremony at height 14" in chain
    assert (
        "wallet treasury claims birth height 1000000, but its output "
        f"{w.coins[0].txid_hex}:0 on chain is at height 10" in chain
    )
    broadcast = run.messages("broadcast")
    assert (
        "wallet treasury claims birth height 1000000, but its broadcast "
        f"{w.payments[0].txid_hex} is at height 12" in broadcast
    )


def test_a_birth_height_that_hides_nothing_is_not_a_finding(tmp_path, monkeypatch) -> None:
    w = world(birth_height=10)
    w.rogue = Transaction(2, [TxIn(OutPoint(bytes(32), 0))], [TxOut(1, payee(1))])  # not ours
    run, _ = replay_with_chain(tmp_path, monkeypatch, w)
    assert run.code == 0, run.messages()
    assert "OK: every check holds" in run.out


def test_birth_height_lie_is_found_from_the_evidence_alone() -> None:
    w = world(birth_height=13)  # both broadcasts are recorded at height 12
    report = replay(
        [parse_bundle(w.cold.id, *w.cold.bundle())],
        parse_coordinator("desk.json", w.desk.evidence_bytes()),
    )
    found = [f for f in report.findings if "claims birth height 13" in f.message]
    assert [f.check for f in found] == ["broadcast"]
    assert found[0].txid == w.payments[0].txid_hex


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--from-height", "16"], "--from-height 16 is not a height of the node (0..15)"),
        (["--from-height", "-1"], "a block height is 0 or more"),
        (["--from-height", "ten"], "'ten' is not a block height"),
    ],
)
def test_unusable_start_heights_exit_2(tmp_path, monkeypatch, extra, expected) -> None:
    run, _ = replay_with_chain(tmp_path, monkeypatch, world(), *extra)
    assert run.code == 2 and expected in run.err, run.err


def test_from_height_needs_the_chain(tmp_path) -> None:
    w = world()
    run = run_audit(*write_evidence(tmp_path, [w.cold], w.desk), "--from-height", "3")
    assert run.code == 2 and "--from-height needs --chain and --cookie" in run.err


# -- outflows the coordinator never recorded sending (issue 13) ---------------------------


def test_lost_broadcast_record_of_an_approved_ceremony_is_named_as_such(
    tmp_path, monkeypatch
) -> None:
    w = world()
    w.desk.broadcasts.pop(1)  # the node took it, the reply was lost: no broadcast record
    row = next(r for r in w.desk.requests if r["txid"] == w.payments[1].txid_hex)
    row["state"] = "signed"
    approval = next(
        e.record.seq
        for e in w.cold.entries
        if e.record.event == "signing_decision"
        and e.record.details["txid"] == w.payments[1].txid_hex
    )
    run, _ = replay_with_chain(tmp_path, monkeypatch, w)
    (lost,) = [f for f in run.report["findings"] if f["txid"] == w.payments[1].txid_hex]
    assert lost["check"] == "chain" and lost["request_id"] == row["request_id"]
    message = lost["message"]
    assert "outflow without an approved ceremony" not in message
    assert (
        f"is the transaction approved in the journal (cold-1 seq {approval}); only the "
        f"coordinator's broadcast record is missing (its request {row['request_id']} is "
        "recorded as 'signed')" in message
    )
    assert "Lower severity than an unapproved outflow" in message
    outflow = next(
        o for o in run.report["chain"]["outflows"] if o["txid"] == w.payments[1].txid_hex
    )
    assert outflow["broadcast"] is None and outflow["approved_by"] == [f"cold-1 seq {approval}"]
    assert "the coordinator&#x27;s broadcast record is missing" in run.html
    # the rogue outflow beside it keeps the alarming wording
    assert "outflow without an approved ceremony at height 14" in run.messages("chain")


def test_an_unapproved_request_on_chain_keeps_the_alarming_wording() -> None:
    """A request the coordinator holds, signed with the key outside any ceremony."""
    w = world()
    coin = w.desk.coin(w.wallet, 150_000)
    request = w.desk.request(w.wallet, [coin], [(payee(9), 50_000)], created=w.cold.clock)
    signed, _ = sign_psbt(request, [w.cold.key])
    stolen = extract(finalize(signed).psbt)
    index = build_index(parse_coordinator("desk", w.desk.evidence_bytes()))
    scanner = ChainScanner(index.scripts, 0)
    node = FakeNode(3, {1: [coin], 2: [stolen]})
    for height, block in enumerate(node.blocks):
        scanner.add_block(height, block, block.hash_hex)
    report = replay(
        [parse_bundle(w.cold.id, *w.cold.bundle())],
        parse_coordinator("desk", w.desk.evidence_bytes()),
        scanner,
    )
    (found,) = [f for f in report.findings if f.txid == stolen.txid_hex]
    assert found.message.startswith("outflow without an approved ceremony at height 2")
    assert "never recorded as broadcast, and no journal given approves it" in found.message


def test_broadcast_record_holding_other_bytes_is_not_called_a_lost_record(
    tmp_path, monkeypatch
) -> None:
    w = world()
    record = w.desk.broadcasts[1]
    cut = Transaction.parse(bytes.fromhex(record["raw"]))
    cut.outputs[0].value -= 10_000  # someone takes a cut after signing
    record.update(raw=cut.serialize().hex(), txid=cut.txid_hex, wtxid=cut.wtxid_hex)
    run, _ = replay_with_chain(tmp_path, monkeypatch, w)
    (chain,) = [
        f
        for f in run.report["findings"]
        if f["check"] == "chain" and f["txid"] == w.payments[1].txid_hex
    ]
    assert f"holds another transaction ({cut.txid_hex})" in chain["message"]
    assert "Lower severity" not in chain["message"]
    assert "no ceremony approved it" in run.messages("broadcast")
