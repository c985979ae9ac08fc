"""The chain walk against a real node: the local regtest (blocks validated by Bitcoin Core's
consensus code through libbitcoinkernel) behind its JSON-RPC server, ``coldstation-audit``
reading it with a cookie, as an auditor reads their own node.

The wallet is funded on chain, one approved payment confirms, then its change is spent with
the station's key outside any ceremony (a stolen-key outflow, with a valid signature). The
coordinator evidence claims a birth height far above the tip.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.bitcoin.tx import Transaction
from shared.psbt.roles import extract, finalize
from shared.psbt.signer import sign_psbt
from tests.audit.conftest import SoftCold, SoftDesk, payee, run_audit, write_evidence


@dataclass
class OnChain:
    args: list[str]
    funded_at: int
    paid_at: int
    stolen_at: int
    tip: int
    payment: Transaction
    stolen: Transaction


@pytest.fixture
def on_chain(tmp_path: Path) -> Iterator[OnChain]:
    from online_coordinator.regtest.node import RegtestNode
    from online_coordinator.regtest.server import start_in_thread

    node = RegtestNode(tmp_path / "regtest")
    server = start_in_thread(node)
    try:
        cold, desk = SoftCold("cold-1"), SoftDesk()
        wallet = desk.import_single("treasury", cold)
        wallet.birth_height = 1_000_000  # the lie: far above the tip
        node.mine(3)
        txid = node.fund([(wallet.descriptor.derive(0).script_pubkey, 300_000)])
        node.mine(1)
        funded_at = node.height()
        coin = Transaction.parse(node.raw_transaction(txid))
        request = desk.request(wallet, [coin], [(payee(1), 100_000)], created=cold.clock)
        response, entry = cold.sign(request)
        assert entry.record.decision == "approved", entry.record.details["refusals"]
        desk.respond(response)
        payment = desk.broadcast([response])
        node.send(payment.serialize())
        node.mine(1)
        paid_at = node.height()
        desk.broadcasts[-1].update(
            state="confirmed", height=paid_at, block_hash=node.block_hash(paid_at)
        )
        node.mine(2)
        # the key signs outside any ceremony: no journal record, no coordinator record
        theft = desk.request(wallet, [payment], [(payee(66), 150_000)], created=cold.clock)
        desk.requests.pop()
        stolen = extract(finalize(sign_psbt(theft, [cold.key])[0]).psbt)
        node.send(stolen.serialize())
        node.mine(1)
        stolen_at = node.height()
        node.mine(1)
        cookie = ["--chain", server.url, "--cookie", str(server.cookie_path)]
        args = [*write_evidence(tmp_path, [cold], desk), *cookie]
        yield OnChain(args, funded_at, paid_at, stolen_at, node.height(), payment, stolen)
    finally:
        server.shutdown()
        node.close()


def test_default_walk_covers_the_whole_chain_whatever_the_birth_height(
    on_chain: OnChain, tmp_path: Path
) -> None:
    run = run_audit(*on_chain.args, reports=tmp_path)
    assert run.code == 1, run.err
    chain = run.report["chain"]
    assert (chain["start"], chain["tip"]) == (0, on_chain.tip)
    assert chain["first_wallet_height"] == on_chain.funded_at
    outflows = {o["txid"]: o for o in chain["outflows"]}
    assert outflows[on_chain.payment.txid_hex]["broadcast"] == on_chain.payment.txid_hex
    assert outflows[on_chain.stolen.txid_hex]["broadcast"] is None
    text = run.messages("chain")
    assert f"outflow without an approved ceremony at height {on_chain.stolen_at}" in text
    assert (
        f"claims birth height 1000000, but its output {on_chain.payment.inputs[0].prevout} "
        f"on chain is at height {on_chain.funded_at}" in text
    )


def test_from_height_after_the_funding_still_sees_the_theft(
    on_chain: OnChain, tmp_path: Path
) -> None:
    start = on_chain.paid_at + 1  # the payment's change was created before the walk
    run = run_audit(*on_chain.args, "--from-height", str(start), reports=tmp_path)
    assert run.report["chain"]["start"] == start
    (theft,) = [f for f in run.report["findings"] if f["txid"] == on_chain.stolen.txid_hex]
    assert (
        f"outflow without an approved ceremony at height {on_chain.stolen_at}" in theft["message"]
    )
    assert "created before the walk started" in theft["message"]
