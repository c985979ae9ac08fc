"""An address is never handed out twice (issue 17).

Reported: with two keys in the pool, the third ``wallet address --note "customer 44"``
returned customer 43's address with exit 0, dropped the note, and every later batch sent
its change there. Here each way to get a second use of an address is tried: a third
address, a batch whose change would need one, a pool extended from another appliance; and
a bip32 (ranged) wallet hands out fresh receive and change addresses without end.
"""

from __future__ import annotations

import json

from online_coordinator.store import Store
from tests.coordinator.conftest import Desk
from tests.coordinator.softappliance import SoftAppliance
from tests.coordinator.test_flow import BTC, create, csv_for, payee


def _issued(store: Store) -> list[tuple[str, str | None]]:
    rows = store.all("SELECT address, note FROM addresses WHERE state != 'fresh' ORDER BY id")
    return [(r["address"], r["note"]) for r in rows]


def test_an_exhausted_pool_refuses_instead_of_reusing_and_keeps_every_note(desk: Desk) -> None:
    desk.import_soft("treasury", SoftAppliance("cold-1", pool=2))
    first = desk.ok("wallet", "address", "treasury", "--note", "customer 43").split()[0]
    second = desk.run("wallet", "address", "treasury", "--note", "customer 44")
    assert second.code == 0 and second.out.split()[0] != first
    assert "1 fresh address" not in second.err and "0 fresh address(es) left" in second.err
    third = desk.run("wallet", "address", "treasury", "--note", "customer 45")
    assert third.code == 2 and third.out == ""
    assert "no fresh receive address left" in third.err and "wallet add-keys" in third.err
    issued = _issued(desk.store())
    assert [note for _, note in issued] == ["customer 43", "customer 44"]
    assert len({address for address, _ in issued}) == 2
    warnings = json.loads(desk.ok("status", "--json"))["address_warnings"]
    assert [(w["wallet"], w["fresh_addresses"]) for w in warnings] == [("treasury", 0)]


def test_a_batch_that_needs_change_is_refused_when_no_fresh_address_is_left(desk: Desk) -> None:
    desk.import_soft("treasury", SoftAppliance("cold-1", pool=1))
    address = desk.ok("wallet", "address", "treasury").split()[0]
    desk.fund(address, BTC, 2)
    desk.ok("sync")
    csv = desk.write("b1.csv", csv_for((payee(1), "0.3", "INV-1")))
    refused = desk.run(
        "batch", "create", "treasury", csv, "--label", "b1", "--purpose", "p",
        "--out", str(desk.tmp / "requests"),
    )  # fmt: skip
    assert refused.code == 2 and "no fresh change address left" in refused.err
    store = desk.store()
    assert store.all("SELECT * FROM batches") == []
    assert {r["state"] for r in store.all("SELECT state FROM utxos")} == {"available"}
    assert not (desk.tmp / "requests").exists() or not any((desk.tmp / "requests").iterdir())


def test_added_keys_extend_the_pool_and_only_the_wallets_own_appliance_may_add(
    desk: Desk,
) -> None:
    appliance = SoftAppliance("cold-1", pool=3)
    descriptor, receipt = appliance.export(position=0)
    desk.ok(
        "wallet", "import", "treasury", "--export",
        desk.write("k0.desc", descriptor), desk.write("k0.receipt", receipt),
    )  # fmt: skip
    first = desk.ok("wallet", "address", "treasury").split()[0]
    assert desk.run("wallet", "address", "treasury").code == 2
    stranger = SoftAppliance("cold-2")
    other_desc, other_receipt = stranger.export()
    refused = desk.run(
        "wallet", "add-keys", "treasury", "--export",
        desk.write("x.desc", other_desc), desk.write("x.receipt", other_receipt),
    )  # fmt: skip
    assert refused.code == 2 and "from one appliance" in refused.err
    again = desk.run(
        "wallet", "add-keys", "treasury", "--export",
        desk.write("k0b.desc", descriptor), desk.write("k0b.receipt", receipt),
    )  # fmt: skip
    assert again.code == 2 and "already in wallet treasury" in again.err
    more = []
    for position in (1, 2):
        desc, rec = appliance.export(position=position)
        more += [
            "--export",
            desk.write(f"k{position}.desc", desc),
            desk.write(f"k{position}.r", rec),
        ]
    assert "3 descriptor(s)" in desk.ok("wallet", "add-keys", "treasury", *more)
    second = desk.ok("wallet", "address", "treasury").split()[0]
    assert second != first
    assert len({a for a, _ in _issued(desk.store())}) == 2


def test_a_bip32_wallet_hands_out_fresh_receive_and_change_addresses(desk: Desk) -> None:
    desk.import_soft("treasury", SoftAppliance("cold-1", bip32=True))
    receive = [desk.ok("wallet", "address", "treasury").split()[0] for _ in range(25)]
    assert len(set(receive)) == 25
    desk.fund(receive[0], BTC, 3)
    desk.ok("sync")
    for n in range(3):
        create(desk, f"b{n}", [(payee(n), "0.1", f"INV-{n}")])
    store = desk.store()
    change = store.all(
        "SELECT address, change, idx FROM addresses WHERE state != 'fresh' AND change = 1"
    )
    assert [r["idx"] for r in change] == [0, 1, 2]
    assert not {r["address"] for r in change} & set(receive)
    assert json.loads(desk.ok("status", "--json"))["address_warnings"] == []


def test_status_and_wallet_show_read_as_tables_and_as_json_with_a_flag(desk: Desk) -> None:
    """Issue 18: both were JSON only."""
    desk.import_soft("treasury", SoftAppliance("cold-1", pool=2))
    address = desk.ok("wallet", "address", "treasury", "--note", "customer 7").split()[0]
    desk.fund(address, BTC, 2)
    desk.ok("sync")
    shown = desk.ok("wallet", "show", "treasury")
    assert "available  2      2 BTC" in shown
    assert address in shown and "customer 7" in shown and "receive" in shown
    assert json.loads(desk.ok("wallet", "show", "treasury", "--json"))["wallet"] == "treasury"
    status = desk.ok("status")
    assert status.startswith("node: ok") and "no batches" in status
    assert "warning: wallet treasury has 1 fresh address(es) left" in status
    assert json.loads(desk.ok("status", "--json"))["batches"] == []
