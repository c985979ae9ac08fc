"""A spend is matched to our broadcast by wtxid, txid, or (for a malleated txid) by the same
inputs, outputs and locktime; anything else is not ours (REQUIREMENTS 38)."""

from __future__ import annotations

from pathlib import Path

from online_coordinator.store import Store
from online_coordinator.sync import matching_broadcast
from shared.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut

PAYEE = b"\x00\x14" + bytes(20)


def tx(script_sig: bytes = b"", value: int = 50_000, locktime: int = 100) -> Transaction:
    return Transaction(
        2,
        [TxIn(OutPoint(bytes(range(32)), 1), script_sig, 0xFFFFFFFD)],
        [TxOut(value, PAYEE)],
        locktime,
    )


def store_with(tmp_path: Path, sent: Transaction) -> Store:
    store = Store.open(tmp_path / "db.sqlite")
    db = store.db
    db.execute(
        "INSERT INTO wallets (id, name, network, kind, created) "
        "VALUES (1, 'w', 'regtest', 'single', 0)"
    )
    db.execute(
        "INSERT INTO batches (id, wallet_id, label, csv_sha256, purpose, state, created) "
        "VALUES (1, 1, 'b', x'00', 'p', 'broadcast', 0)"
    )
    db.execute(
        "INSERT INTO requests (id, batch_id, request_id, kind, unsigned_psbt, "
        "request_hash, txid, fee, fee_rate, created, expiry, state) VALUES (1, 1, x'01', "
        "'payment', x'00', x'00', ?, 1, 1, 0, 1, 'broadcast')",
        (sent.txid_hex,),
    )
    db.execute(
        "INSERT INTO broadcasts (request_id, txid, wtxid, raw, first_sent, last_sent, "
        "state) VALUES (1, ?, ?, ?, 0, 0, 'sent')",
        (sent.txid_hex, sent.wtxid_hex, sent.serialize()),
    )
    return store


def outpoints(t: Transaction) -> list[tuple[str, int]]:
    return [(i.prevout.txid_hex, i.prevout.vout) for i in t.inputs]


def test_a_malleated_txid_is_still_our_broadcast(tmp_path: Path) -> None:
    ours = tx(b"\x00\x51")
    malleated = tx(b"\x00\x00\x51")  # same payment, different scriptSig bytes: another txid
    assert malleated.txid_hex != ours.txid_hex
    with store_with(tmp_path, ours) as store:
        assert matching_broadcast(store, ours, outpoints(ours)) is not None
        found = matching_broadcast(store, malleated, outpoints(malleated))
        assert found is not None and found["txid"] == ours.txid_hex


def test_a_different_payment_from_the_same_coins_is_not_ours(tmp_path: Path) -> None:
    ours = tx(b"\x51")
    with store_with(tmp_path, ours) as store:
        for other in (tx(b"\x51", value=49_000), tx(b"\x51", locktime=101)):
            assert matching_broadcast(store, other, outpoints(other)) is None
