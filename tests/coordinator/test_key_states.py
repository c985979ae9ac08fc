"""Key states the stations vouch for (online_coordinator/key_states.py): a suspended or
archived key gets no address and a deposit to it alerts; every receipt that should not
count is refused with its reason."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from online_coordinator.exit_codes import ExitCode
from shared.bitcoin.address import Network, address_to_script
from shared.psbt.model import Psbt
from tests.coordinator.conftest import Desk, Result
from tests.coordinator.softappliance import SoftAppliance
from tests.coordinator.test_flow import BTC, create, csv_for, payee

#: Key states run on both stores: they add a table and read it on every address issued.
BOTH_STORES = frozenset({"test_a_suspended_pool_key_gets_no_address_and_a_deposit_alerts"})


def _key_state(desk: Desk, appliance: SoftAppliance, event: str, position: int = 0) -> Result:
    """``wallet key-state`` with the appliance's receipt of ``event`` for one pool key."""
    receipt = appliance.key_state(event, position)
    return desk.run("wallet", "key-state", desk.write(f"{len(appliance.entries)}.rcpt", receipt))


def _addresses(desk: Desk, appliance: SoftAppliance, position: int) -> set[str]:
    """Every address the coordinator derived for one key of the pool."""
    with desk.store() as store:
        rows = store.all(
            "SELECT a.address FROM addresses a JOIN descriptors d ON d.id = a.descriptor_id "
            "WHERE d.position = ?",
            position,
        )
    return {r["address"] for r in rows}


def test_a_suspended_pool_key_gets_no_address_and_a_deposit_alerts(desk: Desk) -> None:
    appliance = SoftAppliance("cold-1", pool=3)
    desk.import_soft("treasury", appliance)
    early = desk.ok("wallet", "address", "treasury").split()[0]  # key-0's, handed out before
    assert early in _addresses(desk, appliance, 0)

    done = _key_state(desk, appliance, "key_suspended", 0)
    assert done.code == 0, done.err
    assert "key key-0 on appliance cold-1 is suspended" in done.out and "treasury" in done.out
    issued = {desk.ok("wallet", "address", "treasury").split()[0] for _ in range(2)}
    assert not issued & _addresses(desk, appliance, 0)  # the pool skips the suspended key

    desk.fund(early, BTC)  # someone pays the address handed out before the suspension
    synced = desk.run("sync")
    assert synced.code == ExitCode.ALERT
    assert "deposit to an inactive key: 1 BTC to " + early in synced.out
    assert "key key-0 on appliance cold-1 is suspended" in synced.out
    assert desk.run("sync").code == 0  # raised once
    desk.fund(sorted(issued)[0], BTC)  # a deposit to an active key: no alert
    assert desk.run("sync").code == 0
    with desk.store() as store:
        alerts = store.all("SELECT message FROM events WHERE kind = 'deposit_to_inactive_key'")
    assert len(alerts) == 1


def test_a_reactivation_restores_the_key_and_a_stale_receipt_changes_nothing(
    desk: Desk,
) -> None:
    appliance = SoftAppliance("cold-1", pool=1)
    desk.import_soft("treasury", appliance)
    suspended = appliance.key_state("key_suspended")
    assert desk.run("wallet", "key-state", desk.write("s.receipt", suspended)).code == 0
    refused = desk.run("wallet", "address", "treasury")
    assert "issues no address" in refused.err and "key-0" in refused.err
    assert _key_state(desk, appliance, "key_reactivated").code == 0
    address = desk.ok("wallet", "address", "treasury").split()[0]

    stale = desk.run("wallet", "key-state", desk.write("again.receipt", suspended))
    assert stale.code == 0 and "a newer receipt for the key stays in force" in stale.out
    desk.fund(address, BTC)
    assert desk.run("sync").code == 0  # active: no alert


def test_a_multisig_with_a_suspended_member_issues_no_address(desk: Desk) -> None:
    a, b = SoftAppliance("cold-a", bip32=True), SoftAppliance("cold-b", bip32=True)
    out = desk.ok("wallet", "multisig", "vault", "--threshold", "2", *desk.export_args(a, b))
    descriptor = next(line for line in out.splitlines() if line.startswith("wsh("))
    for appliance in (a, b):
        pin = desk.write(f"{appliance.appliance_id}.pin", appliance.pin(descriptor))
        desk.ok("wallet", "confirm-pin", "vault", pin)
    desk.ok("wallet", "address", "vault")  # ranged: it has more
    assert _key_state(desk, b, "key_suspended").code == 0
    refused = desk.run("wallet", "address", "vault")
    assert refused.code != 0 and "key key-0 on appliance cold-b is suspended" in refused.err


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda a, o: o.key_state("key_suspended"), "does not verify under appliance 'cold-1'"),
        (lambda a, o: a.key_state("key_suspended", quorum=False), "names no quorum"),
        (lambda a, o: a.key_state("key_suspended", officers=1), "has 1 officer(s), the quorum"),
        (lambda a, o: a.key_state("key_suspended", 7), "no wallet here holds key 'key-7'"),
        (lambda a, o: a.pin(str(a.descriptor)), "not a key suspension, reactivation or archive"),
        (lambda a, o: b"\x00" * 40, "not an appliance receipt"),
    ],
    ids=["forged", "no-quorum", "one-officer", "unknown-key", "other-record", "garbage"],
)
def test_key_state_receipts_that_do_not_count_are_refused(
    desk: Desk, make: Callable[[SoftAppliance, SoftAppliance], bytes], reason: str
) -> None:
    appliance = SoftAppliance("cold-1", pool=1)
    desk.import_soft("treasury", appliance)
    impostor = SoftAppliance("cold-1", seed="impostor", pool=1)  # same id, other audit key
    refused = desk.run("wallet", "key-state", desk.write("r.receipt", make(appliance, impostor)))
    assert refused.code != 0 and reason in refused.err, refused.err
    assert len(refused.err.strip().splitlines()) == 1
    assert desk.ok("wallet", "address", "treasury")  # nothing changed


def test_a_receipt_from_an_appliance_never_imported_is_refused(desk: Desk) -> None:
    desk.import_soft("treasury", SoftAppliance("cold-1", pool=1))
    stranger = SoftAppliance("cold-9", pool=1)
    refused = _key_state(desk, stranger, "key_suspended")
    assert refused.code != 0 and "appliance 'cold-9' is not known" in refused.err


def test_a_coin_paid_after_the_suspension_alerts_when_the_receipt_arrives(desk: Desk) -> None:
    """The receipt crosses the air gap after the station suspended the key: a coin paid in
    between, already synced, alerts when the receipt is recorded (once)."""
    appliance = SoftAppliance("cold-1", pool=3)
    desk.import_soft("treasury", appliance)
    early = desk.ok("wallet", "address", "treasury").split()[0]  # key-0, given to a customer
    suspended = appliance.key_state("key_suspended", 0)  # the station suspends key-0 now
    time.sleep(1.01 - time.time() % 1)  # records are timed to the second: pay in the next
    desk.fund(early, BTC)  # the customer pays afterwards
    desk.ok("sync")  # the receipt is still on its way
    recorded = _key_state_file(desk, suspended)
    assert recorded.code == ExitCode.ALERT and "ALERT: deposit to an inactive key" in recorded.out
    with desk.store() as store:
        alerts = store.all("SELECT message FROM events WHERE kind = 'deposit_to_inactive_key'")
    assert len(alerts) == 1 and early in alerts[0]["message"]
    assert desk.run("sync").code == 0  # not raised again


def _key_state_file(desk: Desk, receipt: bytes) -> Result:
    return desk.run("wallet", "key-state", desk.write(f"r{len(receipt)}.rcpt", receipt))


def test_batches_never_spend_a_suspended_key_s_coins(desk: Desk) -> None:
    """The station refuses an input on a suspended key (suspended_key): selection leaves
    those coins out, and change goes to an active key."""
    appliance = SoftAppliance("cold-1", pool=3)
    desk.import_soft("treasury", appliance)
    early = desk.ok("wallet", "address", "treasury").split()[0]  # key-0
    desk.fund(early, 2 * BTC)
    desk.ok("sync")
    assert _key_state(desk, appliance, "key_suspended", 0).code == 0
    active = desk.ok("wallet", "address", "treasury").split()[0]  # key-1
    desk.fund(active, BTC)
    desk.ok("sync")
    request = Psbt.parse(create(desk, "b1", [(payee(1), "0.5", "INV-1")]).read_bytes())
    spent = {i.witness_utxo.script_pubkey for i in request.inputs}
    assert spent == {address_to_script(active, Network.REGTEST)}
    key0 = {address_to_script(a, Network.REGTEST) for a in _addresses(desk, appliance, 0)}
    assert not key0 & {o.script_pubkey for o in request.unsigned_tx.outputs}  # no change to key-0
    too_much = _batch(desk, "treasury", "b2", (payee(2), "1.5", "I-2"))
    assert too_much.code == 2 and "insufficient funds" in too_much.err  # key-0's 2 BTC stay


def test_a_multisig_quorum_still_moves_coins_away_from_a_suspended_member(desk: Desk) -> None:
    """2-of-3 with one member suspended: no receive address (deposits there would wait on
    the suspended key's station), but the two others still sign, so its coins are spent
    and change may return to it."""
    a, b, c = (SoftAppliance(f"cold-{n}", bip32=True) for n in "abc")
    out = desk.ok("wallet", "multisig", "vault", "--threshold", "2", *desk.export_args(a, b, c))
    descriptor = next(line for line in out.splitlines() if line.startswith("wsh("))
    for appliance in (a, b, c):
        pin = desk.write(f"{appliance.appliance_id}.pin", appliance.pin(descriptor))
        desk.ok("wallet", "confirm-pin", "vault", pin)
    desk.fund(desk.ok("wallet", "address", "vault").split()[0], BTC)
    desk.ok("sync")
    assert _key_state(desk, c, "key_suspended").code == 0
    assert "issues no address" in desk.run("wallet", "address", "vault").err
    made = _batch(desk, "vault", "m1", (payee(1), "0.3", "INV-1"))
    assert made.code == 0, made.err
    assert _key_state(desk, b, "key_suspended").code == 0  # now below the quorum
    refused = _batch(desk, "vault", "m2", (payee(2), "0.1", "INV-2"))
    assert refused.code == 2 and "insufficient funds" in refused.err, refused.err


def _batch(desk: Desk, wallet: str, label: str, *rows: tuple[str, str, str]) -> Result:
    """``batch create`` of ``rows`` from ``wallet``, whatever it answers."""
    csv = desk.write(f"{label}.csv", csv_for(*rows))
    out = str(desk.tmp / label)
    return desk.run(
        "batch", "create", wallet, csv, "--label", label, "--purpose", "p", "--out", out
    )
