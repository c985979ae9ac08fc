"""The regtest node against Bitcoin Core's consensus code (libbitcoinkernel), no mocks.

Every block the node mines is validated by the kernel; these tests drive the node the
way the coordinator does (fund, spend, replace, reorg, restart) and check both the
answers and that the kernel agrees.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time

import pytest
from coincurve import PrivateKey

from online_coordinator.regtest import NodeError, RegtestNode
from online_coordinator.regtest.faucet import FAUCET_SCRIPT
from online_coordinator.regtest.faucet import sign as faucet_sign
from shared.bitcoin import ecdsa
from shared.bitcoin.address import Network
from shared.bitcoin.block import Block
from shared.bitcoin.encoding import hash160
from shared.bitcoin.script import p2wpkh_script
from shared.bitcoin.sighash import SIGHASH_ALL, SighashCache, p2wpkh_script_code
from shared.bitcoin.tx import SEQUENCE_RBF, OutPoint, Transaction, TxIn, TxOut

pytestmark = pytest.mark.kernel

REGTEST_GENESIS = "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"
NO_RBF = 0xFFFFFFFE
COIN_VALUE = 1_000_000


class Key:
    """A P2WPKH key the test controls, signing with the shared BIP-143 and ECDSA code."""

    def __init__(self, label: str) -> None:
        self.secret = hashlib.sha256(label.encode()).digest()
        self.pubkey = PrivateKey(self.secret).public_key.format()
        self.script = p2wpkh_script(self.pubkey)

    def spend(
        self,
        coins: list[tuple[OutPoint, int]],
        outputs: list[tuple[bytes, int]],
        sequence: int = SEQUENCE_RBF,
        locktime: int = 0,
    ) -> Transaction:
        tx = Transaction(
            version=2,
            inputs=[TxIn(outpoint, sequence=sequence) for outpoint, _ in coins],
            outputs=[TxOut(value, script) for script, value in outputs],
            locktime=locktime,
        )
        cache = SighashCache(tx)
        code = p2wpkh_script_code(hash160(self.pubkey))
        for i, (_, amount) in enumerate(coins):
            digest = cache.segwit_v0(i, code, amount, SIGHASH_ALL)
            tx.inputs[i].witness = [ecdsa.sign(self.secret, digest) + b"\x01", self.pubkey]
        return tx


ALICE = Key("alice")
BOB = Key("bob")


@pytest.fixture
def node(tmp_path):
    with RegtestNode(tmp_path / "node") as regtest:
        yield regtest


def _funded_coin(node: RegtestNode, key: Key, value: int = COIN_VALUE) -> tuple[OutPoint, int]:
    """A confirmed coin of ``value`` paying ``key``."""
    txid = node.fund([(key.script, value)])
    node.mine(1)
    (utxo,) = [u for u in node.scan({key.script}) if u.txid == txid]
    return OutPoint.from_hex(utxo.txid, utxo.vout), utxo.value


# -- a fresh node -----------------------------------------------------------------------


def test_fresh_node_has_101_blocks_and_a_spendable_faucet(node):
    assert node.network is Network.REGTEST
    assert node.height() == 101
    assert node.block_hash(0) == REGTEST_GENESIS
    coinbases = node.scan({FAUCET_SCRIPT})
    assert [u.height for u in coinbases] == list(range(1, 102))
    assert all(u.coinbase and u.value == 50 * 100_000_000 for u in coinbases)
    txid = node.fund([(ALICE.script, COIN_VALUE)])
    assert node.mempool() == [txid]
    assert node.test_accept(node.raw_transaction(txid)).reason == "txn-already-in-mempool"


def test_blocks_are_served_raw_and_chained(node):
    tip = Block.parse(node.block(node.best_hash()))
    assert tip.hash_hex == node.best_hash()
    assert tip.header.prev_hash[::-1].hex() == node.block_hash(100)
    assert tip.compute_merkle_root() == tip.header.merkle_root
    assert node.block_height(node.best_hash()) == 101
    assert node.block_height("00" * 32) is None
    with pytest.raises(NodeError) as missing:
        node.block("00" * 32)
    assert (missing.value.code, missing.value.reason) == (-5, "Block not found")
    with pytest.raises(NodeError) as out_of_range:
        node.block_hash(102)
    assert (out_of_range.value.code, out_of_range.value.reason) == (-8, "Block height out of range")
    with pytest.raises(NodeError) as bad_hex:
        node.block("zz")
    assert bad_hex.value.code == -8


# -- funding, scanning, spending --------------------------------------------------------


def test_fund_mine_scan_and_transaction_lookups(node):
    txid = node.fund([(ALICE.script, 70_000), (BOB.script, 80_000)])
    raw = node.raw_transaction(txid)
    assert node.transaction_block(txid) is None
    (block_hash,) = node.mine(1)
    assert node.mempool() == []
    assert node.transaction_block(txid) == block_hash
    assert node.raw_transaction(txid) == raw
    assert node.raw_transaction(txid, block_hash) == raw
    (utxo,) = node.scan({ALICE.script})
    assert (utxo.txid, utxo.value, utxo.height, utxo.coinbase) == (txid, 70_000, 102, False)
    assert {u.value for u in node.scan({ALICE.script, BOB.script})} == {70_000, 80_000}
    with pytest.raises(NodeError) as missing:
        node.raw_transaction("11" * 32)
    assert missing.value.code == -5
    with pytest.raises(NodeError) as confirmed:
        node.send(raw)
    assert confirmed.value.code == -27
    assert confirmed.value.reason == "Transaction outputs already in utxo set"  # Core v28+
    assert node.test_accept(raw).reason == "txn-already-known"


def test_spend_is_accepted_and_resending_returns_the_txid(node):
    coin = _funded_coin(node, ALICE)
    spend = ALICE.spend([coin], [(BOB.script, COIN_VALUE - 1_000)])
    result = node.test_accept(spend.serialize())
    assert result.allowed and result.reason is None
    assert (result.txid, result.fee, result.vsize) == (spend.txid_hex, 1_000, spend.vsize())
    assert node.send(spend.serialize()) == spend.txid_hex
    assert node.send(spend.serialize()) == spend.txid_hex
    assert node.mempool() == [spend.txid_hex]


def test_double_spend_of_a_non_signalling_tx_is_a_mempool_conflict(node):
    coin = _funded_coin(node, ALICE)
    node.send(ALICE.spend([coin], [(BOB.script, COIN_VALUE - 1_000)], NO_RBF).serialize())
    rival = ALICE.spend([coin], [(ALICE.script, COIN_VALUE - 50_000)])
    assert node.test_accept(rival.serialize()).reason == "txn-mempool-conflict"
    with pytest.raises(NodeError) as refused:
        node.send(rival.serialize())
    assert (refused.value.code, refused.value.reason) == (-26, "txn-mempool-conflict")


def test_rbf_replacement_needs_more_fee_and_evicts_the_original(node):
    coin = _funded_coin(node, ALICE)
    original = ALICE.spend([coin], [(BOB.script, COIN_VALUE - 1_000)])
    node.send(original.serialize())
    child = BOB.spend([(OutPoint(original.txid, 0), COIN_VALUE - 1_000)], [(BOB.script, 990_000)])
    node.send(child.serialize())
    same_fee = ALICE.spend([coin], [(ALICE.script, COIN_VALUE - 1_000)])
    assert node.test_accept(same_fee.serialize()).reason == "insufficient fee"
    replacement = ALICE.spend([coin], [(BOB.script, COIN_VALUE - 20_000)])
    assert node.send(replacement.serialize()) == replacement.txid_hex
    assert node.mempool() == [replacement.txid_hex]  # the original and its child are gone
    with pytest.raises(NodeError):
        node.raw_transaction(original.txid_hex)
    (block_hash,) = node.mine(1)
    assert node.transaction_block(replacement.txid_hex) == block_hash


def test_unconfirmed_chain_is_mined_in_dependency_order(node):
    coin = _funded_coin(node, ALICE)
    parent = ALICE.spend([coin], [(BOB.script, COIN_VALUE - 1_000)])
    child = BOB.spend([(OutPoint(parent.txid, 0), COIN_VALUE - 1_000)], [(ALICE.script, 990_000)])
    node.send(parent.serialize())
    node.send(child.serialize())
    funding = node.fund([(BOB.script, 5_000)])
    (block_hash,) = node.mine(1)
    block = Block.parse(node.block(block_hash))
    txids = [tx.txid_hex for tx in block.transactions[1:]]
    assert txids.index(parent.txid_hex) < txids.index(child.txid_hex)
    assert set(txids) == {parent.txid_hex, child.txid_hex, funding}
    assert block.transactions[0].outputs[0].value == 50 * 100_000_000 + 1_000 + 9_000 + (
        _fee_of(node, funding)
    )


def _fee_of(node: RegtestNode, txid: str) -> int:
    tx = Transaction.parse(node.raw_transaction(txid))
    spent = 0
    for txin in tx.inputs:
        source = Transaction.parse(node.raw_transaction(txin.prevout.txid_hex))
        spent += source.outputs[txin.prevout.vout].value
    return spent - sum(out.value for out in tx.outputs)


def test_policy_refusals_carry_cores_reasons(node):
    coin = _funded_coin(node, ALICE)
    cases = {
        "bad-txns-in-belowout": ALICE.spend([coin], [(BOB.script, COIN_VALUE + 1)]),
        "min relay fee not met": ALICE.spend([coin], [(BOB.script, COIN_VALUE - 50)]),
        "dust": ALICE.spend([coin], [(BOB.script, 293), (ALICE.script, COIN_VALUE - 5_000)]),
        "non-final": ALICE.spend([coin], [(BOB.script, 900_000)], locktime=node.height() + 5),
        "bad-txns-inputs-missingorspent": ALICE.spend(
            [(OutPoint(b"\x42" * 32, 0), COIN_VALUE)], [(BOB.script, 900_000)]
        ),
    }
    for reason, tx in cases.items():
        assert node.test_accept(tx.serialize()).reason == reason
        with pytest.raises(NodeError) as refused:
            node.send(tx.serialize())
        assert refused.value.reason == reason
        assert refused.value.code == (-25 if reason.startswith("bad-txns-inputs") else -26)
    assert node.mempool() == []


def test_immature_coinbase_cannot_be_spent(node):
    newest = max(node.scan({FAUCET_SCRIPT}), key=lambda u: u.height)
    tx = Transaction(
        inputs=[TxIn(OutPoint.from_hex(newest.txid, newest.vout), sequence=SEQUENCE_RBF)],
        outputs=[TxOut(newest.value - 10_000, ALICE.script)],
    )
    faucet_sign(tx, [newest.value])
    assert node.test_accept(tx.serialize()).reason == "bad-txns-premature-spend-of-coinbase"


def test_forged_signature_is_refused_by_mempool_and_by_the_kernel(node):
    coin = _funded_coin(node, ALICE)
    forged = ALICE.spend([coin], [(BOB.script, COIN_VALUE - 1_000)])
    forged.inputs[0].witness = [_sign_other(forged, coin[1]), ALICE.pubkey]
    result = node.test_accept(forged.serialize())
    assert not result.allowed
    assert result.reason.startswith("mandatory-script-verify-flag-failed")
    height, tip = node.height(), node.best_hash()
    with pytest.raises(NodeError) as rejected:
        node._mine_block([forged])
    assert "script-verify-flag-failed" in rejected.value.reason
    assert (node.height(), node.best_hash()) == (height, tip)
    honest = ALICE.spend([coin], [(BOB.script, COIN_VALUE - 1_000)])
    node.send(honest.serialize())
    node.mine(1)
    assert node.transaction_block(honest.txid_hex) == node.best_hash()


def _sign_other(tx: Transaction, amount: int) -> bytes:
    """A valid-looking signature by the wrong key (Bob's) for Alice's input."""
    digest = SighashCache(tx).segwit_v0(0, p2wpkh_script_code(hash160(ALICE.pubkey)), amount, 1)
    return ecdsa.sign(BOB.secret, digest) + b"\x01"


def test_kernel_rejects_a_block_that_overspends(node):
    coin = _funded_coin(node, ALICE)
    overspend = ALICE.spend([coin], [(BOB.script, COIN_VALUE + 1)])
    with pytest.raises(NodeError) as rejected:
        node._mine_block([overspend])
    assert "bad-txns-in-belowout" in rejected.value.reason


# -- reorgs -----------------------------------------------------------------------------


def test_reorg_drops_transactions_unless_kept(node):
    coin = _funded_coin(node, ALICE)
    spend = ALICE.spend([coin], [(BOB.script, COIN_VALUE - 1_000)])
    node.send(spend.serialize())
    (old_block,) = node.mine(1)
    height = node.height()
    assert [u.txid for u in node.scan({BOB.script})] == [spend.txid_hex]

    new_blocks = node.reorg(1)
    assert len(new_blocks) == 2 and node.best_hash() == new_blocks[-1]
    assert node.height() == height + 1
    assert node.block_height(old_block) is None
    assert Block.parse(node.block(old_block)).hash_hex == old_block  # stale, still stored
    assert node.mempool() == []
    assert node.transaction_block(spend.txid_hex) is None
    with pytest.raises(NodeError):
        node.raw_transaction(spend.txid_hex)
    assert node.scan({BOB.script}) == []
    assert [OutPoint.from_hex(u.txid, u.vout) for u in node.scan({ALICE.script})] == [coin[0]]

    node.send(spend.serialize())  # the coordinator re-broadcasts
    node.mine(1)
    node.reorg(1, keep_transactions=True, extra_blocks=2)
    assert node.mempool() == [spend.txid_hex]
    node.mine(1)
    assert node.transaction_block(spend.txid_hex) == node.best_hash()


def test_deep_reorg_drops_dependent_mempool_transactions(node):
    funding = node.fund([(ALICE.script, COIN_VALUE)])
    node.mine(1)
    spend = ALICE.spend(
        [(OutPoint.from_hex(funding, 0), COIN_VALUE)], [(BOB.script, COIN_VALUE - 1_000)]
    )
    node.send(spend.serialize())
    node.reorg(3)
    assert node.mempool() == []  # its parent vanished with the block
    assert node.scan({ALICE.script}) == []
    with pytest.raises(NodeError) as bad_depth:
        node.reorg(0)
    assert bad_depth.value.code == -8


# -- restart, garbage, threads ----------------------------------------------------------


def test_reopen_restores_chain_utxos_and_mempool(tmp_path):
    datadir = tmp_path / "node"
    with RegtestNode(datadir) as first:
        coin = _funded_coin(first, ALICE)
        pending = ALICE.spend([coin], [(BOB.script, COIN_VALUE - 1_000)])
        first.send(pending.serialize())
        state = (first.height(), first.best_hash(), first.scan({ALICE.script, FAUCET_SCRIPT}))
    with pytest.raises(NodeError, match="closed"):
        first.height()
    with RegtestNode(datadir) as second:
        assert (second.height(), second.best_hash()) == state[:2]
        assert second.scan({ALICE.script, FAUCET_SCRIPT}) == state[2]
        assert second.mempool() == [pending.txid_hex]
        second.mine(1)
        assert second.transaction_block(pending.txid_hex) == second.best_hash()


def test_test_accept_never_raises_on_garbage(node):
    coin = _funded_coin(node, ALICE)
    valid = ALICE.spend([coin], [(BOB.script, COIN_VALUE - 1_000)]).serialize()
    rng = random.Random(7)
    samples = [b"", b"\x00", b"\x02\x00\x00\x00\x00\x01", valid[:-1], valid + b"\x00"]
    samples += [rng.randbytes(rng.randrange(1, 300)) for _ in range(200)]
    samples += [_flip(valid, rng) for _ in range(200)]
    for raw in samples:
        result = node.test_accept(raw)
        assert result.allowed is False and result.reason
    assert node.test_accept(b"\x01\x02").reason == "TX decode failed"
    with pytest.raises(NodeError) as undecodable:
        node.send(b"\x01\x02")
    assert (undecodable.value.code, undecodable.value.reason) == (-22, "TX decode failed")


def _flip(raw: bytes, rng: random.Random) -> bytes:
    """``raw`` with one byte changed (never to its old value)."""
    data = bytearray(raw)
    i = rng.randrange(len(data))
    data[i] ^= rng.randrange(1, 256)
    return bytes(data)


def test_scan_is_fast_with_ten_thousand_results(node):
    for batch in range(4):
        node.fund([(ALICE.script, 1_000 + batch)] * 2_500)
    node.mine(1)
    start = time.perf_counter()
    found = node.scan({ALICE.script})
    elapsed = time.perf_counter() - start
    assert len(found) == 10_000
    assert elapsed < 0.5


def test_concurrent_callers_are_serialised(node):
    errors: list[BaseException] = []

    def worker(key: Key) -> None:
        try:
            for _ in range(5):
                node.fund([(key.script, 10_000)])
                node.scan({key.script})
                node.mine(1)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(Key(f"t{i}"),)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert node.height() == 121
    assert all(len(node.scan({Key(f"t{i}").script})) == 5 for i in range(4))


def test_fee_estimate_is_set_by_the_test(node):
    assert node.estimate_fee(6) is None
    node.set_fee_estimate(2_500)
    assert node.estimate_fee(1) == 2_500
    with pytest.raises(NodeError) as bad_target:
        node.estimate_fee(0)
    assert bad_target.value.code == -8
