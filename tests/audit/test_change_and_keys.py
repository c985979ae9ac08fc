"""Change re-derived from the journal-pinned descriptors, and keys judged by their journaled
states (issue 12, item 9).

The station here is subverted the way issue 12 found it could be: its wallet file, its key
registry or its code says one thing, its signed journal another. Every record is genuinely
signed by the audit key and every transcript is self-consistent (the station's own
evaluator agrees with it), so only re-deriving from the journal finds the problem.
"""

from __future__ import annotations

import base64

import pytest

from shared.audit import transcript as tr
from shared.audit.evidence import parse_bundle, parse_coordinator
from shared.audit.keys import KeyBook
from shared.audit.model import Report
from shared.audit.replay import replay
from shared.bitcoin.address import network_by_name, script_to_address
from shared.bitcoin.descriptor import Descriptor
from shared.journal import next_record
from shared.policy import Policy, evaluate
from shared.psbt import Psbt
from tests.audit.conftest import SoftCold, SoftDesk, SoftWallet, payee, pubkey, secret

BTC = 100_000_000


def run(colds: list[SoftCold], desk: SoftDesk) -> Report:
    bundles = [parse_bundle(c.id, *c.bundle()) for c in colds]
    return replay(bundles, parse_coordinator("desk.json", desk.evidence_bytes()))


def messages(report: Report, check: str | None = None) -> str:
    return "\n".join(str(f) for f in report.findings if check is None or f.check == check)


def attacker_wallet(cold: SoftCold) -> Descriptor:
    """A 1-of-2 with the station's key and an attacker's: it "holds one of our keys"."""
    keys = f"{cold.pubkey.hex()},{pubkey(secret('attacker')).hex()}"
    return Descriptor.parse(f"wsh(sortedmulti(1,{keys}))", require_checksum=False)


def calls_change(*indexes: int):
    """A station that calls outputs ``indexes`` change, and re-judges itself accordingly
    (so the transcript, its decision and the record all agree with one another)."""

    def judge(plain: dict, policy: Policy) -> dict:
        for i in indexes:
            plain["outputs"][i]["is_change"] = True
        plain["paid_to_others"] = sum(o["amount"] for o in plain["outputs"] if not o["is_change"])
        decision = evaluate(policy, tr.facts(plain))
        plain["decision"] = tr.decision_plain(decision)
        plain["refusals"] = [] if decision.approved else [["limits", "over"]]
        plain["approved_for_signing"] = decision.approved
        return plain

    return judge


def pay(
    desk: SoftDesk,
    wallet: SoftWallet,
    cold: SoftCold,
    script: bytes,
    amount: int,
    coin_value: int,
    judge=None,
    height: int | None = None,
):
    coin = desk.coin(wallet, coin_value)
    request = desk.request(wallet, [coin], [(script, amount)], created=cold.clock)
    response, entry = cold.sign(request, judge=judge)
    assert entry.record.decision == "approved", entry.record.details["refusals"]
    desk.respond(response)
    desk.broadcast([response], height=height)
    return entry


def address(script: bytes) -> str:
    return script_to_address(script, network_by_name("regtest"))


# -- change -------------------------------------------------------------------------------


def test_change_to_a_wallet_the_journal_never_pinned_is_a_payment() -> None:
    """Issue 12: a descriptor appended to wallets.json made 9.99 BTC to an attacker
    "CHANGE", signed past a 0.001 BTC limit, and the replay found nothing."""
    cold, desk = SoftCold("cold-1", per_tx_limit=100_000), SoftDesk()
    wallet = desk.import_single("treasury", cold)
    attacker = attacker_wallet(cold)
    cold.descriptors.append(attacker)  # wallets.json edited: no journal record
    to_attacker = attacker.derive(0).script_pubkey
    entry = pay(desk, wallet, cold, to_attacker, 999_000_000, 10 * BTC, calls_change(0))
    report = run([cold], desk)
    seq = entry.record.seq
    text = messages(report, "ceremony")
    assert (
        f"seq {seq}: output 0 (999000000 sat to {address(to_attacker)}) is called change "
        "in the transcript, but no descriptor the journal had pinned derives its script: it "
        "is a payment" in text
    )
    assert (
        f"seq {seq}: approved, but with change re-derived from the journal-pinned "
        "descriptors (999000000 sat paid out, 0 sat already approved that day) the policy "
        "in force refuses it: per_tx_limit" in text
    )
    ceremony = next(c for c in report.ceremonies if c.seq == seq)
    assert (ceremony.paid_out, ceremony.paid_out_rederived) == (0, 999_000_000)
    # the station's own evaluator agrees with its transcript: only the re-derivation speaks
    assert ceremony.policy_verdict == "approved"


def test_change_to_another_pinned_wallet_is_a_payment() -> None:
    """Issue 12: two officers pinned a 1-of-2 with a foreign key; outputs to it counted as
    change. Pinned in the journal it is, but the inputs do not spend from it and the
    policy does not call it internal."""
    cold, desk = SoftCold("cold-1", per_tx_limit=100_000), SoftDesk()
    wallet = desk.import_single("treasury", cold)
    attacker = attacker_wallet(cold)
    cold.pin(attacker, "wallet_pinned")
    to_attacker = attacker.derive(0).script_pubkey
    entry = pay(desk, wallet, cold, to_attacker, 50_000_000, BTC, calls_change(0))
    text = messages(run([cold], desk), "ceremony")
    assert (
        f"seq {entry.record.seq}: output 0 (50000000 sat to {address(to_attacker)}) is "
        f"called change in the transcript, but it pays pinned wallet {attacker}, which is "
        "neither the wallet its inputs spend from nor an internal wallet of the policy in "
        "force (version 1): it is a payment" in text
    )
    assert "per_tx_limit" in text


def test_a_wallet_the_policy_names_internal_is_change() -> None:
    cold, desk = SoftCold("cold-1", per_tx_limit=100_000), SoftDesk()
    if "internal_wallets" not in Policy.__dataclass_fields__:
        pytest.skip("the policy has no internal_wallets field yet")
    wallet = desk.import_single("treasury", cold)
    reserve = attacker_wallet(cold)  # the administrators declare it theirs
    cold.pin(reserve, "wallet_pinned")
    cold.install(internal_wallets=[str(reserve)])
    entry = pay(desk, wallet, cold, reserve.derive(0).script_pubkey, 50_000_000, BTC)
    report = run([cold], desk)
    assert report.ok, messages(report)
    ceremony = next(c for c in report.ceremonies if c.seq == entry.record.seq)
    assert ceremony.paid_out_rederived == 0 and ceremony.paid_out == 0


def test_daily_limit_is_counted_with_re_derived_change() -> None:
    """A payment hidden as change lowers the station's daily total; the next, honest
    ceremony then fits a limit it does not fit."""
    cold, desk = SoftCold("cold-1", per_tx_limit=2 * BTC, per_day_limit=BTC), SoftDesk()
    wallet = desk.import_single("treasury", cold)
    hidden = attacker_wallet(cold).derive(0).script_pubkey
    cold.descriptors.append(attacker_wallet(cold))
    pay(desk, wallet, cold, hidden, 80_000_000, BTC, calls_change(0))
    honest = pay(desk, wallet, cold, payee(1), 50_000_000, BTC)
    text = messages(run([cold], desk), "ceremony")
    seq = honest.record.seq
    assert (
        f"seq {seq}: the evaluator was told 0 sat were already approved that day; the "
        "journal says 80000000" in text
    )
    assert (
        f"seq {seq}: approved, but with change re-derived from the journal-pinned "
        "descriptors (50000000 sat paid out, 80000000 sat already approved that day) the "
        "policy in force refuses it: per_day_limit" in text
    )


def test_an_unpinned_wallet_does_not_count_as_pinned_by_a_deferred_receipt() -> None:
    """A forged pending file became a signed wallet_exported record; marked deferred, it
    pins nothing, so inputs from that wallet are foreign."""
    cold, desk = SoftCold("cold-1"), SoftDesk()
    desk.import_single("treasury", cold)
    rogue = attacker_wallet(cold)
    entry = cold.record(
        "wallet_exported",
        details={"descriptor": str(rogue), "deferred": True, "audit_key": cold.audit_pubkey.hex()},
    )
    cold.descriptors.append(rogue)
    wallet = SoftWallet("rogue", rogue, [])
    coin = desk.coin(wallet, BTC)
    request = desk.request(wallet, [coin], [(payee(3), 10_000)], created=cold.clock)
    response, signed = cold.sign(request)
    desk.respond(response)
    desk.wallets.append(wallet)
    text = messages(run([cold], desk))
    assert (
        f"seq {entry.record.seq}: deferred record breaks the refusal-only contract: it "
        "records wallet_exported/None; only refusals may wait; it carries descriptor" in text
    )
    assert (
        f"seq {signed.record.seq}: input 0 spends a script that no descriptor pinned in "
        f"the journal at seq {signed.record.seq} derives: the station must refuse it" in text
    )


def test_honest_multisig_change_back_to_the_vault_is_change() -> None:
    a, b, desk = SoftCold("cold-a"), SoftCold("cold-b"), SoftDesk()
    vault = desk.multisig("vault", 2, [a, b], [pubkey(secret("hardware wallet"))])
    coin = desk.coin(vault, BTC)
    request = desk.request(vault, [coin], [(payee(5), 10_000)], created=a.clock)
    responses = []
    for cold in (a, b):
        response, _ = cold.sign(request)
        desk.respond(response)
        responses.append(response)
    desk.broadcast(responses, height=300)
    report = run([a, b], desk)
    assert report.ok, messages(report)
    assert [c.paid_out_rederived for c in report.ceremonies] == [10_000, 10_000]


# -- keys ---------------------------------------------------------------------------------


def _signed_while(state_records: list[tuple[str, str]]) -> tuple[SoftCold, SoftDesk, int]:
    """The journal records ``state_records`` (event, label); the station's key registry on
    disk still says active, so it signs. Returns the approval's seq."""
    cold, desk = SoftCold("cold-1"), SoftDesk()
    wallet = desk.import_single("treasury", cold)
    for event, label in state_records:
        cold.record(event, actors=cold.activating, details={"label": label})
    entry = pay(desk, wallet, cold, payee(1), 10_000, 150_000, height=210)
    return cold, desk, entry.record.seq


@pytest.mark.parametrize(
    ("records", "state"),
    [
        ([("key_suspended", "treasury")], "suspended"),
        ([("key_archived", "treasury")], "archived"),
        ([("key_suspended", "treasury"), ("key_archived", "treasury")], "archived"),
    ],
)
def test_signatures_by_a_key_not_active_at_that_seq_are_flagged(records, state) -> None:
    cold, desk, seq = _signed_while(records)
    report = run([cold], desk)
    since = seq - 1  # the state record right before the ceremony
    key = f"key 'treasury' ({cold.pubkey.hex()[:16]}…)"
    said = f"signed by {key}, which was {state} at seq {seq} (since seq {since})"
    assert f"seq {seq}: input 0 is {said}" in messages(report, "ceremony")
    response = next(f for f in report.findings if f.message.startswith("response 0: input 0"))
    assert response.seq == seq and said in response.message
    broadcast = messages(report, "broadcast")
    assert f"the broadcast transaction is {said} (approval at seq {seq})" in broadcast


def test_a_forged_reactivation_of_an_archived_key_does_not_clear_it() -> None:
    cold, desk, seq = _signed_while([("key_archived", "treasury"), ("key_reactivated", "treasury")])
    report = run([cold], desk)
    assert (
        f"seq {seq - 1}: key_reactivated: key 'treasury' cannot go from archived to active "
        "(state kept as archived)" in messages(report, "journal")
    )
    assert f"which was archived at seq {seq} (since seq {seq - 2})" in messages(report, "ceremony")


def test_a_key_suspended_then_reactivated_signs_cleanly() -> None:
    cold, desk, _ = _signed_while([("key_suspended", "treasury"), ("key_reactivated", "treasury")])
    report = run([cold], desk)
    assert report.ok, messages(report)


def test_a_signature_before_the_key_was_suspended_stays_clean() -> None:
    cold, desk = SoftCold("cold-1"), SoftDesk()
    wallet = desk.import_single("treasury", cold)
    pay(desk, wallet, cold, payee(1), 10_000, 150_000, height=210)
    cold.record("key_suspended", actors=cold.activating, details={"label": "treasury"})
    report = run([cold], desk)
    assert report.ok, messages(report)


def test_key_book_names_the_audit_key_and_unknown_keys() -> None:
    cold = SoftCold("cold-1")
    book = KeyBook(cold.audit_pubkey)
    for entry in cold.entries:
        if entry.record.event in ("key_generated", "restore"):
            assert book.apply(entry.record) is None
    now = book.snapshot()
    assert "the station's audit key" in book.signing_problem(cold.audit_pubkey, now, 9)
    stranger = pubkey(secret("stranger"))
    assert "no key_generated or restore record" in book.signing_problem(stranger, now, 9)
    assert book.signing_problem(cold.pubkey, now, 9) is None
    later = next_record(
        cold.entries[-1],
        time=cold.clock,
        appliance_id=cold.id,
        event="key_generated",
        subjects={"public_key": stranger},
        details={"label": "later"},
    )
    assert book.apply(later) is None
    assert "registered only at seq" in book.signing_problem(stranger, now, 9)
    again = next_record(
        cold.entries[-1],
        time=cold.clock,
        appliance_id=cold.id,
        event="restore",
        subjects={"public_key": stranger},
        details={"label": "later"},
    )
    assert "already registered" in book.apply(again)
    unknown = next_record(
        cold.entries[-1],
        time=cold.clock,
        appliance_id=cold.id,
        event="key_suspended",
        details={"label": "nobody"},
    )
    assert "which no key_generated or restore record registered" in book.apply(unknown)


def test_request_psbt_is_what_binds_the_re_derivation() -> None:
    """A request whose hash does not recompute is not used to re-derive change (its
    amounts could be anything): the recorded amounts count, and a note says so."""
    cold, desk = SoftCold("cold-1"), SoftDesk()
    wallet = desk.import_single("treasury", cold)
    pay(desk, wallet, cold, payee(1), 10_000, 150_000, height=210)
    psbt = Psbt.parse(base64.b64decode(desk.requests[0]["unsigned_psbt"]))
    psbt.inputs[0].set(0x05, b"\x51")  # a witness script: outside the request hash
    desk.requests[0]["unsigned_psbt"] = psbt.to_base64()
    report = run([cold], desk)
    assert report.ok, messages(report)
    psbt.unsigned_tx.outputs[0].value += 1  # now the hash no longer recomputes
    desk.requests[0]["unsigned_psbt"] = Psbt.from_unsigned_tx(psbt.unsigned_tx).to_base64()
    report = run([cold], desk)
    assert "could not have their change re-derived" in " ".join(report.notes)
    assert report.ceremonies[0].paid_out_rederived is None


# -- bip32-seed keys: the chain sees children, the journal registers the account ------------


def test_an_appliance_account_xpub_maps_each_child_to_its_appliance_and_account():
    """A bip32-seed key's wallet is signed by children of the account the journal
    registers: the index must attribute each child (receive and change) to the appliance
    and stand it for the account, so key-state checks apply; an outsider's xpub is not
    attributed."""
    from types import SimpleNamespace

    from shared.audit.evidence import Member, WalletEvidence
    from shared.audit.wallets import build_index
    from shared.bitcoin.address import Network
    from shared.key_models import account_from_seed

    _, account = account_from_seed(bytes(range(32)), Network.REGTEST)
    _, other = account_from_seed(bytes(range(1, 33)), Network.REGTEST)
    ours, theirs = account.descriptor(), other.descriptor()
    member = Member("cs-1", str(ours.keys[0]), "appliance", None, None)
    outsider = Member(None, str(theirs.keys[0]), "external", None, None)
    wallets = [
        WalletEvidence("t", "regtest", "single", None, 0, (ours,), (member,)),
        WalletEvidence("x", "regtest", "single", None, 0, (theirs,), (outsider,)),
    ]
    index = build_index(SimpleNamespace(highest_hint=7, wallets=wallets))
    for change in (False, True):
        child = ours.derive(7, change).keys[0][0]
        assert index.appliance_keys[child] == "cs-1"
        assert index.accounts[child] == account.public_key
    assert index.appliance_keys[account.public_key] == "cs-1"
    stranger = theirs.derive(7).keys[0][0]
    assert stranger not in index.appliance_keys and stranger not in index.accounts

    # the same account written with other depth/child-number bytes is the same key, as the
    # station's Account.holds judges it: its children are still this appliance's
    from dataclasses import replace as with_fields

    twin = with_fields(account.xpub, child_number=account.xpub.child_number ^ 1)
    twin_member = Member("cs-1", f"{twin}/<0;1>/*", "appliance", None, None)
    wallet = WalletEvidence("t", "regtest", "single", None, 0, (ours,), (twin_member,))
    index = build_index(SimpleNamespace(highest_hint=7, wallets=[wallet]))
    assert index.appliance_keys[ours.derive(7).keys[0][0]] == "cs-1"


def test_the_audit_rederives_a_key_pools_change_as_the_station_does() -> None:
    """A key pool's change to its next key is change for the auditors too, when both keys
    are the station's by its journal; a vault's coins sent to a single-key wallet, or a
    pool spend to a pinned key the journal never registered, are paid out."""
    from shared.audit.change import ChangeDeriver
    from tests.adversarial.psbts import (
        OUR_WPKH,
        POOL_2,
        POOL_KEY_2,
        WPKH_DESCRIPTOR,
        WSH_DESCRIPTOR,
        Scenario,
    )
    from tests.adversarial.psbts import pubkey as our_pubkey

    pinned = [str(WPKH_DESCRIPTOR), str(WSH_DESCRIPTOR), str(POOL_2)]
    own = frozenset({our_pubkey(OUR_WPKH), our_pubkey(POOL_KEY_2)})
    deriver = ChangeDeriver(10)
    pool = Scenario(change_to=POOL_2).build().psbt
    derived = deriver.rederive(pool, pinned, (), own)
    assert derived.outputs[2].is_change and derived.outputs[2].wallet == str(POOL_2)
    assert derived.paid_out == 650_000
    stranger = deriver.rederive(pool, pinned, (), own - {our_pubkey(POOL_KEY_2)})
    assert not stranger.outputs[2].is_change  # pinned, but no key_generated registers it
    vault = deriver.rederive(Scenario(kind="wsh", change_to=POOL_2).build().psbt, pinned, (), own)
    assert not vault.outputs[2].is_change and vault.outputs[2].wallet == str(POOL_2)


def test_a_forged_single_key_pin_is_no_pool_change_for_the_auditors() -> None:
    """A station running other code journals a wallet_exported of a stranger's key (the
    record meets the contract: officers, quorum, audit key) and calls a pool spend to it
    change: the auditors re-derive a payment, past the limit (found by attacking the pool
    rule: before the key check the replay was silent)."""
    cold, desk = SoftCold("cold-1", per_tx_limit=100_000), SoftDesk()
    wallet = desk.import_single("treasury", cold)
    attacker = Descriptor.parse(f"wpkh({pubkey(secret('attacker')).hex()})", require_checksum=False)
    cold.pin(attacker, "wallet_exported")  # the subverted code writes the export record
    cold.descriptors.remove(attacker)  # SoftCold's own review would refuse a foreign key
    to_attacker = attacker.derive(0).script_pubkey
    entry = pay(desk, wallet, cold, to_attacker, 50_000_000, BTC, calls_change(0))
    report = run([cold], desk)
    ceremony = next(c for c in report.ceremonies if c.seq == entry.record.seq)
    assert ceremony.paid_out_rederived == 50_000_000
    assert "per_tx_limit" in messages(report), messages(report)


def test_station_and_auditors_agree_on_a_pool_spend_to_an_accounts_receive_address() -> None:
    """From an hsm-key wallet to a bip32-seed account's receive address: a payment for the
    station (a ranged account is no pool key) and for the auditors alike."""
    from shared.audit.change import ChangeDeriver
    from shared.key_models import account_from_seed
    from shared.review import OurKey, PinnedWallet, review
    from tests.adversarial.psbts import NETWORK, OUR_WPKH, WPKH_DESCRIPTOR, Scenario
    from tests.adversarial.psbts import pubkey as our_pubkey
    from tests.adversarial.psbts import secret as our_secret

    _, account = account_from_seed(our_secret("bip32 seed of this station"), NETWORK)
    descriptor = account.descriptor()
    wallet = PinnedWallet(
        (WPKH_DESCRIPTOR, descriptor),
        (
            OurKey(our_pubkey(OUR_WPKH), "pool-1"),
            OurKey(account.public_key, "seed", account=account),
        ),
    )
    case = Scenario(change_to=descriptor).build()
    station = review(case.psbt, wallet, case.policy, **case.context()).outputs[2].is_change
    own = frozenset({our_pubkey(OUR_WPKH), account.public_key})
    pinned = [str(WPKH_DESCRIPTOR), str(descriptor)]
    auditors = ChangeDeriver(10).rederive(case.psbt, pinned, (), own).outputs[2].is_change
    assert station is False and auditors is False
