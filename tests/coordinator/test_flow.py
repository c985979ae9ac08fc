"""The coordinator end to end on the local regtest: fund, batch, sign, broadcast, confirm;
reorg re-broadcast; fee bump; tampering; unknown outflows; multisig."""

from __future__ import annotations

import json
from pathlib import Path

from online_coordinator.regtest.node import RegtestNode
from shared.bitcoin.address import Network, address_to_script, script_to_address
from shared.bitcoin.bip32 import ExtendedKey, KeyOrigin, parse_path
from shared.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from shared.psbt.model import Psbt
from shared.psbt.roles import extract, finalize
from shared.psbt.signer import sign_psbt
from shared.request import read_request
from tests.coordinator.conftest import Desk
from tests.coordinator.softappliance import SoftAppliance, pubkey, secret
from tests.kernel import verify_all

#: Run on SQLite and PostgreSQL (tests/coordinator/conftest.py): the flows that write most
#: kinds of rows; the rest check rules that do not depend on the store.
BOTH_STORES = frozenset(
    {
        "test_fund_batch_sign_broadcast_confirm",
        "test_reorg_rebroadcasts_the_same_bytes_and_pays_once",
        "test_fee_bump_is_a_new_request_and_pays_once",
        "test_outflow_without_a_request_raises_an_alert",
        "test_two_of_three_multisig_with_an_external_cosigner",
        "test_reconciliation_is_clean_on_seeded_data_and_flags_discrepancies",
    }
)

BTC = 100_000_000


def payee(n: int) -> str:
    """A regtest P2WPKH address of a key nobody in the test controls."""
    return script_to_address(b"\x00\x14" + secret(f"payee {n}")[:20], Network.REGTEST) or ""


def csv_for(*rows: tuple[str, str, str]) -> str:
    return "address,amount,reference\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows)


def funded_single(desk: Desk, appliance: SoftAppliance, coins: int = 3, sats: int = BTC) -> str:
    desk.import_soft("treasury", appliance)
    address = desk.ok("wallet", "address", "treasury").split()[0]
    desk.fund(address, sats, coins)
    desk.ok("sync")
    return address


def create(desk: Desk, label: str, rows: list[tuple[str, str, str]], *extra: str) -> Path:
    csv = desk.write(f"{label}.csv", csv_for(*rows))
    out = desk.tmp / "requests"
    desk.ok(
        "batch",
        "create",
        "treasury",
        csv,
        "--label",
        label,
        "--purpose",
        "supplier payouts",
        "--out",
        str(out),
        *extra,
    )
    return out / f"{label}.psbt"


def sign_and_import(desk: Desk, label: str, request: Path, *appliances: SoftAppliance) -> None:
    for number, appliance in enumerate(appliances):
        signed = desk.write(f"{label}.signed{number}.psbt", appliance.sign(request.read_bytes()))
        desk.ok("batch", "import", label, signed)


def status(desk: Desk, label: str) -> dict:
    result = desk.run("status", label, "--json")
    return json.loads(result.out)["batches"][0]


def paid_to(node: RegtestNode, address: str) -> list:
    return node.scan({address_to_script(address, Network.REGTEST)})


def test_fund_batch_sign_broadcast_confirm(desk: Desk) -> None:
    appliance = SoftAppliance("cold-1")
    funded_single(desk, appliance)
    request = create(desk, "b1", [(payee(1), "0.5", "INV-1"), (payee(2), "0.25", "INV-2")])
    psbt = Psbt.parse(request.read_bytes())
    assert all(inp.non_witness_utxo and inp.witness_utxo for inp in psbt.inputs)
    assert read_request(psbt).network == "regtest"
    assert all(txin.sequence == 0xFFFFFFFD for txin in psbt.unsigned_tx.inputs)
    sign_and_import(desk, "b1", request, appliance)
    desk.ok("batch", "broadcast", "b1")
    sent = status(desk, "b1")
    assert sent["state"] == "in_mempool" and sent["txid"] in desk.node.mempool()
    raw = desk.node.raw_transaction(sent["txid"])
    tx = Transaction.parse(raw)
    assert all(
        verify_all(
            tx,
            [
                i.non_witness_utxo.outputs[t.prevout.vout]
                for i, t in zip(psbt.inputs, tx.inputs, strict=True)
            ],
        )
    )
    desk.node.mine(1)
    desk.ok("sync")
    assert status(desk, "b1")["confirmations"] == 1
    assert status(desk, "b1")["state"] == "confirmed"
    desk.node.mine(5)
    desk.ok("sync")
    final = status(desk, "b1")
    assert final["state"] == "final" and final["confirmations"] == 6
    assert [u.value for u in paid_to(desk.node, payee(1))] == [BTC // 2]


def test_reorg_rebroadcasts_the_same_bytes_and_pays_once(desk: Desk) -> None:
    appliance = SoftAppliance("cold-1")
    funded_single(desk, appliance)
    request = create(desk, "b1", [(payee(1), "0.5", "INV-1")])
    sign_and_import(desk, "b1", request, appliance)
    desk.ok("batch", "broadcast", "b1")
    txid = status(desk, "b1")["txid"]
    raw = desk.node.raw_transaction(txid)
    desk.node.mine(1)
    desk.ok("sync")
    assert status(desk, "b1")["confirmations"] == 1
    desk.node.reorg(1)  # the block with our payout is gone, and the node forgot the tx
    assert txid not in desk.node.mempool() and desk.node.transaction_block(txid) is None
    out = desk.ok("sync")
    assert "1 re-sent" in out
    assert desk.node.raw_transaction(txid) == raw  # exactly the same bytes
    desk.node.mine(1)
    desk.ok("sync")
    assert status(desk, "b1")["sends"] == 2
    assert len(paid_to(desk.node, payee(1))) == 1
    with desk.store() as store:
        assert store.one("SELECT COUNT(*) AS n FROM broadcasts")["n"] == 1
        assert store.one("SELECT COUNT(*) AS n FROM requests")["n"] == 1


def test_fee_bump_is_a_new_request_and_pays_once(desk: Desk) -> None:
    appliance = SoftAppliance("cold-1")
    funded_single(desk, appliance)
    request = create(desk, "b1", [(payee(1), "0.5", "INV-1")], "--fee-rate", "1")
    sign_and_import(desk, "b1", request, appliance)
    desk.ok("batch", "broadcast", "b1")
    first = status(desk, "b1")["txid"]
    out = desk.ok("batch", "bump", "b1", "--fee-rate", "5", "--out", str(desk.tmp / "bump"))
    bump = next((desk.tmp / "bump").glob("b1-bump*.psbt"))
    meta = read_request(Psbt.parse(bump.read_bytes()))
    assert meta.kind == "replacement" and meta.replaces[0][::-1].hex() == first
    assert "request" in out
    sign_and_import(desk, "b1", bump, appliance)
    desk.ok("batch", "broadcast", "b1")
    second = status(desk, "b1")["txid"]
    assert second != first and second in desk.node.mempool() and first not in desk.node.mempool()
    desk.node.mine(1)
    report = desk.ok("sync")
    assert "0 re-sent" in report  # the replaced transaction is never re-sent
    assert len(paid_to(desk.node, payee(1))) == 1


def test_fee_bump_is_held_to_the_configured_cap_as_asked_and_as_paid(desk: Desk) -> None:
    """The cap a new batch obeys holds for a bump too, including when BIP-125 (the original
    fee plus 1 sat/vB) makes the replacement pay more than the rate asked for."""
    config = desk.state / "coordinator.toml"
    config.write_text(
        config.read_text().replace("max_fee_rate_sat_per_vb = 100", "max_fee_rate_sat_per_vb = 5.5")
    )
    appliance = SoftAppliance("cold-1")
    funded_single(desk, appliance)
    request = create(desk, "b1", [(payee(1), "0.5", "INV-1")], "--fee-rate", "5")
    sign_and_import(desk, "b1", request, appliance)
    desk.ok("batch", "broadcast", "b1")
    out = desk.tmp / "bump"
    # 5.5 sat/vB is within the cap, but the replacement must pay 5 + 1 sat/vB at least.
    for rate, message in (
        ("6", "--fee-rate is over the configured cap 5.5 sat/vB"),
        ("5.5", "over the configured cap 5.5 sat/vB"),
    ):
        refused = desk.run("batch", "bump", "b1", "--fee-rate", rate, "--out", str(out))
        assert refused.code == 2 and message in refused.err, refused.err
        assert len(refused.err.strip().splitlines()) == 1 and "Traceback" not in refused.err
    assert not out.exists()
    with desk.store() as store:
        assert store.one("SELECT COUNT(*) AS n FROM requests")["n"] == 1
        assert store.one("SELECT COUNT(*) AS n FROM events WHERE kind = 'fee_bump'")["n"] == 0
    config.write_text(
        config.read_text().replace("max_fee_rate_sat_per_vb = 5.5", "max_fee_rate_sat_per_vb = 6")
    )
    desk.ok("batch", "bump", "b1", "--fee-rate", "5.5", "--out", str(out))  # 6 sat/vB: allowed


def test_signed_transaction_altered_after_signing_is_refused(desk: Desk) -> None:
    appliance = SoftAppliance("cold-1")
    funded_single(desk, appliance)
    request = create(desk, "b1", [(payee(1), "0.5", "INV-1")])
    signed = Psbt.parse(appliance.sign(request.read_bytes()))
    tx = signed.unsigned_tx
    tx.outputs[0].value -= 1000  # someone takes a cut after signing
    forged = Psbt.from_unsigned_tx(tx)
    for src, dst in zip(signed.inputs, forged.inputs, strict=True):
        for key, value in src.raw_records().items():
            dst.set_record(key, value)
    for key, value in signed.globals.raw_records().items():
        if key[0] != 0x00:
            forged.globals.set_record(key, value)
    result = desk.run("batch", "import", "b1", desk.write("forged.psbt", forged.serialize()))
    assert result.code == 2 and "answers no request" in result.err
    result = desk.run("batch", "broadcast", "b1")
    assert result.code == 2 and desk.node.mempool() == []


def test_receipt_for_another_request_or_refusal_is_refused(desk: Desk) -> None:
    appliance = SoftAppliance("cold-1")
    funded_single(desk, appliance)
    request = create(desk, "b1", [(payee(1), "0.5", "INV-1")])
    refused = appliance.sign(request.read_bytes(), decision="refused")
    result = desk.run("batch", "import", "b1", desk.write("refused.psbt", refused))
    assert result.code == 2 and "not an approval" in result.err
    impostor = SoftAppliance("cold-1", seed="impostor")  # same id, another audit key
    result = desk.run(
        "batch", "import", "b1", desk.write("impostor.psbt", impostor.sign(request.read_bytes()))
    )
    assert result.code == 2 and "pinned audit key" in result.err


def steal(desk: Desk, appliance: SoftAppliance, address: str) -> str:
    """Spend the wallet's coin with its key directly, as a thief with the key would."""
    coin = paid_to(desk.node, address)[0]
    prev = Transaction.parse(desk.node.raw_transaction(coin.txid))
    spend = Transaction(
        2,
        [TxIn(OutPoint.from_hex(coin.txid, coin.vout))],
        [TxOut(coin.value - 1000, address_to_script(payee(9), Network.REGTEST))],
    )
    psbt = Psbt.from_unsigned_tx(spend)
    psbt.inputs[0].set(0x00, prev.serialize())
    signed, count = sign_psbt(psbt, [appliance.key])
    assert count == 1
    desk.node.send(extract(finalize(signed).psbt).serialize())
    desk.node.mine(1)
    return coin.txid


def test_outflow_without_a_request_raises_an_alert(desk: Desk) -> None:
    appliance = SoftAppliance("cold-1")
    address = funded_single(desk, appliance, coins=1)
    stolen = steal(desk, appliance, address)
    result = desk.run("sync")
    assert result.code == 3 and "outflow without a signed request" in result.out
    alerts = json.loads(desk.run("status", "--json").out)["alerts"]
    assert alerts and stolen in alerts[0]["message"]
    assert desk.run("status").code == 3  # open until someone says what was done
    desk.ok("acknowledge", str(alerts[0]["id"]), "--note", "key compromise protocol started")
    assert desk.run("status").code == 0


def test_coin_received_and_stolen_between_two_syncs_raises_an_alert(desk: Desk) -> None:
    appliance = SoftAppliance("cold-1")
    desk.import_soft("treasury", appliance)
    address = desk.ok("wallet", "address", "treasury").split()[0]
    desk.fund(address, BTC)  # no sync: the coordinator never saw this coin in its UTXO scan
    steal(desk, appliance, address)
    result = desk.run("sync")
    assert result.code == 3 and "outflow without a signed request" in result.out


def test_two_of_three_multisig_with_an_external_cosigner(desk: Desk) -> None:
    """The hardware wallet's xpub makes the wallet ranged: change goes to a fresh address
    (a multisig of three fixed keys has one address, and an address is never reused)."""
    a, b = SoftAppliance("cold-a"), SoftAppliance("cold-b")
    master = ExtendedKey.from_seed(secret("hardware wallet seed"), Network.TESTNET)
    path = "m/48h/1h/0h/2h"
    origin = KeyOrigin(master.fingerprint, parse_path(path)).format("h")
    external = f"[{origin}]{master.derive_path(path).neuter()}/<0;1>/*"
    exports = desk.export_args(a, b)
    out = desk.ok(
        "wallet", "multisig", "treasury", "--threshold", "2", *exports, "--cosigner", external
    )
    descriptor = next(line for line in out.splitlines() if line.startswith("wsh("))
    assert descriptor.startswith("wsh(sortedmulti(2,")
    refused = desk.run("wallet", "address", "treasury")
    assert refused.code == 2 and "not pinned yet" in refused.err
    for appliance in (a, b):
        desk.ok(
            "wallet",
            "confirm-pin",
            "treasury",
            desk.write(f"{appliance.appliance_id}.pin", appliance.pin(descriptor)),
        )
    address = desk.ok("wallet", "address", "treasury").split()[0]
    desk.fund(address, BTC, 2)
    desk.ok("sync")
    request = create(desk, "m1", [(payee(1), "0.3", "INV-1")])
    sign_and_import(desk, "m1", request, a)
    assert status(desk, "m1")["state"] == "awaiting_signatures"
    sign_and_import(desk, "m1", request, b)
    desk.ok("batch", "broadcast", "m1")
    desk.node.mine(1)
    desk.ok("sync")
    assert status(desk, "m1")["confirmations"] == 1


def test_reconciliation_is_clean_on_seeded_data_and_flags_discrepancies(desk: Desk) -> None:
    appliance = SoftAppliance("cold-1")
    funded_single(desk, appliance, coins=3)
    clean = json.loads(desk.ok("wallet", "reconcile", "treasury"))
    assert clean["addresses"] >= 1
    assert clean["orphan_addresses"] == clean["unknown_outputs"] == clean["missing_outputs"] == []
    address = desk.ok("wallet", "address", "treasury").split()[0]
    desk.fund(address, BTC)  # arrives on chain, not yet synced: an unknown output
    with desk.store() as store:  # and an inventory row no descriptor derives
        store.db.execute("UPDATE addresses SET address = ? WHERE id = 1", (payee(7),))
    result = desk.run("wallet", "reconcile", "treasury")
    report = json.loads(result.out)
    assert result.code == 1 and report["orphan_addresses"] == [payee(7)]
    assert len(report["unknown_outputs"]) == 1


def test_a_cosigner_response_with_only_partial_signatures_is_accepted(desk: Desk) -> None:
    """Another wallet's response may carry nothing but its partial signatures: no UTXOs,
    scripts or Coldstation fields (issue 17). The request the coordinator built supplies
    the rest; the signatures are still checked against it. (bip32 appliance keys: the
    wallet is ranged, so change has a fresh address.)"""
    a, b = SoftAppliance("cold-a", bip32=True), SoftAppliance("cold-b", bip32=True)
    external_secret = secret("hardware wallet key")
    exports = desk.export_args(a, b)
    out = desk.ok(
        "wallet",
        "multisig",
        "treasury",
        "--threshold",
        "2",
        *exports,
        "--cosigner",
        pubkey(external_secret).hex(),
    )
    descriptor = next(line for line in out.splitlines() if line.startswith("wsh("))
    for appliance in (a, b):
        pin = desk.write(f"{appliance.appliance_id}.pin", appliance.pin(descriptor))
        desk.ok("wallet", "confirm-pin", "treasury", pin)
    desk.fund(desk.ok("wallet", "address", "treasury").split()[0], BTC, 1)
    desk.ok("sync")
    request = create(desk, "x1", [(payee(3), "0.2", "INV-9")])
    signed, added = sign_psbt(Psbt.parse(request.read_bytes()), [external_secret])
    assert added == len(signed.inputs)
    stripped = Psbt.from_unsigned_tx(signed.unsigned_tx)
    for mine, theirs in zip(stripped.inputs, signed.inputs, strict=True):
        for key, sig in theirs.partial_sigs.items():
            mine.set(0x02, sig, key)
    bad = Psbt.parse(stripped.serialize())
    key, sig = next(iter(bad.inputs[0].partial_sigs.items()))
    bad.inputs[0].set(0x02, sig[:-2] + bytes([sig[-2] ^ 1, sig[-1]]), key)
    refused = desk.run("batch", "import", "x1", desk.write("x1.bad.psbt", bad.serialize()))
    assert refused.code == 2 and "does not verify" in refused.err, refused.err
    desk.ok("batch", "import", "x1", desk.write("x1.ext.psbt", stripped.serialize()))
    assert status(desk, "x1")["state"] == "awaiting_signatures"
    sign_and_import(desk, "x1", request, a)
    desk.ok("batch", "broadcast", "x1")
