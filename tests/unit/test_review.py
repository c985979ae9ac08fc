"""The appliance's review: what officers see, what the policy judges, every refusal."""

from __future__ import annotations

import dataclasses
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import canonical
from shared.bitcoin.address import script_to_address
from shared.bitcoin.amount import MAX_MONEY
from shared.bitcoin.bip32 import KeyOrigin
from shared.bitcoin.descriptor import Descriptor
from shared.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from shared.journal import next_record
from shared.psbt import Psbt, extract, finalize
from shared.psbt.signer import sign_psbt
from shared.request import read_request, request_hash
from shared.review import (
    REFUSAL_CODES,
    OurKey,
    PinnedWallet,
    ReviewError,
    inputs_to_sign,
    review,
)
from tests.adversarial.psbts import (
    ACCEPTED,
    COSIGNER_ACCOUNT,
    COSIGNER_ORIGIN,
    LABELS,
    NETWORK,
    OUR_SECRETS,
    OUR_WPKH,
    OUR_WSH,
    PARTNER,
    POOL_2,
    POOL_KEY_2,
    VARIANTS,
    WPKH_DESCRIPTOR,
    WSH_DESCRIPTOR,
    Case,
    Scenario,
    cosigner_secret,
    make_wallet,
    pubkey,
    secret,
    variant,
)
from tests.kernel import verify_all

KINDS = ("wpkh", "wsh")


def signed_final(case: Case) -> Transaction:
    """Sign with our (software stand-in) keys and the cosigner, finalize and extract."""
    origins = [o for inp in case.psbt.inputs for o in inp.bip32_derivations.values()]
    cosigner = [k for o in origins if (k := cosigner_secret(o)) is not None]
    signed, _ = sign_psbt(case.psbt, [*OUR_SECRETS.values(), *cosigner])
    result = finalize(signed)
    assert result.complete, result.problems
    return extract(result.psbt)


def with_72_byte_signatures(tx: Transaction) -> Transaction:
    """The same transaction with every signature padded to 72 bytes (the worst case)."""
    padded = Transaction(tx.version, [], tx.outputs, tx.locktime)
    for txin in tx.inputs:
        witness = [
            item + bytes(72 - len(item)) if 70 <= len(item) <= 72 else item for item in txin.witness
        ]
        padded.inputs.append(TxIn(txin.prevout, txin.script_sig, txin.sequence, witness))
    return padded


# -- the valid request --------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_valid_request_shows_the_right_numbers(kind):
    case = Scenario(kind=kind).build()
    r = case.review()
    assert r.refusals == () and r.decision is not None and r.decision.approved
    assert r.approved_for_signing

    funding = case.funding[0]
    tx = case.psbt.unsigned_tx
    total_in = sum(funding.outputs[i].value for i in range(2))
    assert total_in == 1_100_000 == r.total_in
    assert r.total_out == sum(o.value for o in tx.outputs) == 1_097_000
    assert r.fee == total_in - r.total_out == 3_000
    assert r.paid_to_others == 650_000

    final = signed_final(case)
    assert verify_all(final, case.spent()) == [True, True]
    worst = with_72_byte_signatures(final)
    assert r.vsize == worst.vsize() == {"wpkh": 252, "wsh": 337}[kind]
    assert final.vsize() <= r.vsize <= final.vsize() + 1
    assert r.fee_rate == -(-3_000 * 1000 // r.vsize)  # sat/kvB, rounded up
    assert r.fee_rate == {"wpkh": 11_905, "wsh": 8_903}[kind]

    change = WPKH_DESCRIPTOR.derive(0) if kind == "wpkh" else WSH_DESCRIPTOR.derive(3, change=True)
    shown = [(o.index, o.amount, o.label, o.is_change, o.address) for o in r.outputs]
    assert shown == [
        (0, 400_000, "Exchange hot wallet", False, addr(tx.outputs[0].script_pubkey)),
        (1, 250_000, "Supplier GmbH", False, addr(tx.outputs[1].script_pubkey)),
        (2, 447_000, None, True, change.address(NETWORK)),
    ]
    assert [o.label for o in r.outputs[:2]] == [LABELS[o.script_pubkey] for o in tx.outputs[:2]]
    assert r.outputs[2].wallet is not None and r.outputs[2].wallet.change == (kind == "wsh")
    assert r.outputs[0].reference == secret("payee reference 0")

    label = {"wpkh": "wallet-key-1", "wsh": "wallet-key-2"}[kind]
    assert [(i.owner, i.key.label, i.amount) for i in r.inputs] == [
        ("ours", label, 600_000),
        ("ours", label, 500_000),
    ]
    assert r.network == "regtest" and r.request == read_request(case.psbt)
    assert r.request_hash == request_hash(case.psbt, case.meta)
    assert r.hash_words is not None and len(r.hash_words.split()) == 32 + 7
    assert r.txid == tx.txid


def addr(script: bytes) -> str:
    text = script_to_address(script, NETWORK)
    assert text is not None
    return text


@pytest.mark.parametrize("kind", KINDS)
def test_inputs_to_sign_names_our_key_for_every_input(kind):
    case = Scenario(kind=kind).build()
    key = pubkey("coldstation hsm wallet-key-1" if kind == "wpkh" else OUR_WSH)
    assert inputs_to_sign(case.review()) == [(0, key), (1, key)]
    with pytest.raises(ReviewError, match="signing refused: sighash"):
        inputs_to_sign(variant("sighash_none_field", Scenario(kind=kind)).review())


def test_cosigned_wsh_request_passes_and_keeps_cosigner_signatures_visible():
    r = variant("cosigned").review()
    assert r.approved_for_signing
    assert all(len(i.signed_by) == 1 for i in r.inputs)


# -- every attack -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", list(VARIANTS))
def test_each_variant_is_refused_with_exactly_its_codes(name, kind):
    case = variant(name, Scenario(kind=kind))
    r = case.review()
    assert r.refusal_codes == case.expected, [str(x) for x in r.refusals]
    assert not r.approved_for_signing
    for refusal in r.refusals:
        assert refusal.code in REFUSAL_CODES and refusal.message
    ranks = [REFUSAL_CODES.index(x.code) for x in r.refusals]
    assert ranks == sorted(ranks)
    with pytest.raises(ReviewError):
        inputs_to_sign(r)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", list(ACCEPTED))
def test_declared_or_harmless_lookalikes_pass(name, kind):
    r = variant(name, Scenario(kind=kind)).review()
    assert r.refusals == () and r.approved_for_signing


def test_each_variant_differs_from_the_valid_scenario_only_as_named():
    base = Scenario()
    for name, (change, _) in VARIANTS.items():
        diff = {
            f.name
            for f in dataclasses.fields(Scenario)
            if getattr(change(base), f.name) != getattr(base, f.name)
        }
        allowed = {
            "per_tx_limit_exceeded": {"payments", "input_amounts"},
            "off_address_book": {"payments"},
            "future_created": {"created", "expiry"},
            "locktime_beyond_tip": {"locktime", "tip_height"},
            "time_based_locktime": {"locktime", "tip_height"},
        }.get(name)
        assert len(diff) == 1 or diff == allowed or {"kind", "cosigner_signs"} < diff, (name, diff)


def test_messages_name_the_index_and_the_numbers():
    messages = {
        name: " | ".join(str(x) for x in variant(name).review().refusals)
        for name in (
            "change_to_foreign_address",
            "witness_utxo_amount_mismatch",
            "foreign_input",
            "per_tx_limit_exceeded",
            "expired_request",
        )
    }
    assert "output 2 (447000 sat to bcrt1" in messages["change_to_foreign_address"]
    assert "input 0" in messages["witness_utxo_amount_mismatch"]
    assert "500000 sat" in messages["witness_utxo_amount_mismatch"]
    assert "600000 sat" in messages["witness_utxo_amount_mismatch"]
    assert (
        "input 2 spends" in messages["foreign_input"] and "80000 sat" in messages["foreign_input"]
    )
    assert "2000001 sat, limit 2000000 sat" in messages["per_tx_limit_exceeded"]
    assert "expired at" in messages["expired_request"]


# -- boundaries ---------------------------------------------------------------------------

PAID = 650_000
LABEL_EXCHANGE, LABEL_SUPPLIER = list(LABELS)


def codes(scenario: Scenario) -> tuple[str, ...]:
    return scenario.build().review().refusal_codes


@pytest.mark.parametrize(
    "field, at_limit, over, code",
    [
        ("per_tx_limit", PAID, PAID - 1, "limits"),
        ("max_fee", 3_000, 2_999, "fee"),
        ("request_ttl_max", 1860, 1859, "expired"),
    ],
)
def test_policy_limits_at_the_boundary(field, at_limit, over, code):
    assert codes(Scenario(policy_changes=((field, at_limit),))) == ()
    assert codes(Scenario(policy_changes=((field, over),))) == (code,)


def test_daily_limit_at_the_boundary():
    assert codes(Scenario(spent_today_before=5_000_000 - PAID)) == ()
    assert codes(Scenario(spent_today_before=5_000_000 - PAID + 1)) == ("limits",)


def test_per_tx_limit_by_payment_amount_plus_and_minus_one_sat():
    limit = 2_000_000
    for paid, expected in ((limit - 1, ()), (limit, ()), (limit + 1, ("limits",))):
        extra = paid - PAID
        s = Scenario(
            payments=((LABEL_EXCHANGE, 400_000 + extra), (LABEL_SUPPLIER, 250_000)),
            input_amounts=(600_000 + extra, 500_000),
        )
        assert codes(s) == expected, paid


@pytest.mark.parametrize("kind", KINDS)
def test_fee_rate_ceiling_at_the_boundary(kind):
    r = Scenario(kind=kind).build().review()
    exact = r.fee_rate  # the smallest ceiling the fee rate fits under
    assert codes(Scenario(kind=kind, policy_changes=(("fee_rate_ceiling", exact),))) == ()
    over = Scenario(kind=kind, policy_changes=(("fee_rate_ceiling", exact - 1),))
    assert codes(over) == ("fee_rate",)


def test_expiry_at_the_boundary():
    s = Scenario()
    assert codes(dataclasses.replace(s, now=s.expiry)) == ()
    assert codes(dataclasses.replace(s, now=s.expiry + 1)) == ("expired",)


# -- the wallet: hints locate, derivation decides ------------------------------------------


def test_match_rederives_and_never_trusts_the_hint():
    wallet = make_wallet()
    at_7 = WSH_DESCRIPTOR.derive(7)
    at_8 = WSH_DESCRIPTOR.derive(8)
    found = wallet.match(at_7.script_pubkey, dict((k, o) for k, o in at_7.keys))
    assert found is not None and (found.index, found.change, found.position) == (7, False, 1)
    assert found.our_key.pubkey == pubkey(OUR_WSH)
    assert wallet.match(at_7.script_pubkey, dict(at_8.keys)) is None  # hint says 8: no
    assert wallet.match(at_7.script_pubkey) is None  # ranged: needs a hint
    change = WSH_DESCRIPTOR.derive(3, change=True)
    found = wallet.match(change.script_pubkey, dict(change.keys))
    assert found is not None and found.change and found.index == 3
    wpkh = WPKH_DESCRIPTOR.derive(0).script_pubkey
    assert wallet.match(wpkh) is not None  # non-ranged: no hint needed
    assert wallet.match(bytes(22)) is None


def test_hint_pointing_at_another_index_makes_the_input_foreign():
    case = Scenario(kind="wsh").build()
    inp = case.psbt.inputs[0]
    for key, origin in inp.bip32_derivations.items():
        if origin.path:
            inp.set(
                0x06,
                KeyOrigin(origin.fingerprint, [*origin.path[:-1], 9]).to_psbt_bytes(),
                keydata=key,
            )
    assert case.review().refusal_codes == ("foreign_input",)


def test_change_without_hints_counts_as_a_payment_to_an_unknown_address():
    """Fail closed: unprovable change is money leaving, judged by the address book."""
    case = Scenario(kind="wsh").build()
    case.psbt.outputs[2].keep_only(set())
    r = case.review()
    assert not r.outputs[2].is_change
    assert r.refusal_codes == ("address_book",)


def pool_wallet() -> PinnedWallet:
    """A key pool's two single-key wallets and a vault, each with one key of this station."""
    return PinnedWallet(
        (WPKH_DESCRIPTOR, WSH_DESCRIPTOR, POOL_2),
        (
            OurKey(pubkey(OUR_WPKH), "pool-1"),
            OurKey(pubkey(OUR_WSH), "vault"),
            OurKey(pubkey(POOL_KEY_2), "pool-2"),
        ),
    )


def test_a_key_pools_change_to_its_next_key_is_change():
    """The coordinator sends an hsm-key pool's change to the pool's next key (one address
    per key): both wallets are this station's key alone, so it is change, not paid out."""
    case = Scenario(change_to=POOL_2).build()
    r = review(case.psbt, pool_wallet(), case.policy, **case.context())
    assert r.refusal_codes == (), r.refusals
    assert r.outputs[2].is_change and r.outputs[2].wallet.our_key.label == "pool-2"
    assert r.paid_out == 650_000  # the two payments, not the change


def test_a_vaults_coins_sent_to_a_single_key_wallet_are_a_payment():
    """From a wallet with other keys (a 2-of-3 vault), a single-key wallet of ours is not
    change: moving coins out of the vault stays under the limits and the address book."""
    case = Scenario(kind="wsh", change_to=POOL_2).build()
    r = review(case.psbt, pool_wallet(), case.policy, **case.context())
    assert not r.outputs[2].is_change
    assert "address_book" in r.refusal_codes


def _wsh_wallet(text: str) -> PinnedWallet:
    return PinnedWallet(
        (Descriptor.parse(text, require_checksum=False),),
        (OurKey(pubkey(OUR_WSH), "wallet-key-2"),),
    )


@pytest.mark.parametrize(
    "threshold, cosigner",
    [
        (1, f"[{COSIGNER_ORIGIN}]{COSIGNER_ACCOUNT.to_base58()}/<0;1>/*"),  # changed M
        (2, f"[{COSIGNER_ORIGIN}]{COSIGNER_ACCOUNT.derive_child(5).to_base58()}/<0;1>/*"),
    ],
)
def test_a_swapped_xpub_or_changed_threshold_makes_everything_foreign(threshold, cosigner):
    """REQUIREMENTS 28: a PSBT built for another descriptor than the pinned one is not ours."""
    wallet = _wsh_wallet(
        f"wsh(sortedmulti({threshold},{pubkey(OUR_WSH).hex()},{cosigner},{pubkey(PARTNER).hex()}))"
    )
    case = Scenario(kind="wsh").build()
    r = review(case.psbt, wallet, case.policy, **case.context())
    assert r.refusal_codes == ("foreign_input", "change_not_ours", "address_book")
    assert [i.owner for i in r.inputs] == ["foreign", "foreign"]


def test_pinned_wallet_refuses_descriptors_without_exactly_one_of_our_keys():
    ours = OurKey(pubkey(OUR_WSH), "k2")
    with pytest.raises(ReviewError, match="holds 0 of this appliance's keys"):
        PinnedWallet((WPKH_DESCRIPTOR,), (ours,))
    both = Descriptor.parse(
        f"wsh(sortedmulti(2,{pubkey(OUR_WSH).hex()},{pubkey(PARTNER).hex()}))",
        require_checksum=False,
    )
    with pytest.raises(ReviewError, match="holds 2"):
        PinnedWallet((both,), (ours, OurKey(pubkey(PARTNER), "k3")))
    with pytest.raises(ReviewError, match="twice"):
        PinnedWallet((WSH_DESCRIPTOR,), (ours, ours))
    with pytest.raises(ReviewError, match="key state"):
        OurKey(pubkey(OUR_WSH), "k2", "destroyed")
    with pytest.raises(ReviewError, match="at least one"):
        PinnedWallet((), (ours,))


# -- hostile structure --------------------------------------------------------------------


def test_a_mainnet_xpub_in_a_regtest_psbt_is_a_network_refusal():
    case = Scenario(kind="wsh").build()
    ((xpub, origin),) = case.psbt.xpubs.items()
    case.psbt.globals.delete(0x01, xpub)
    mainnet = (0x0488B21E).to_bytes(4, "big") + xpub[4:]
    case.psbt.globals.set(0x01, origin.to_psbt_bytes(), mainnet)
    assert case.review().refusal_codes == ("network",)


def test_outputs_exceeding_inputs_are_malformed_and_not_judged():
    case = Scenario(fee=-1).build()
    r = case.review()
    assert r.refusal_codes == ("malformed",) and r.fee == -1 and r.decision is None
    assert "outputs total 1100001 sat but inputs total only 1100000 sat" in r.refusals[0].message


@pytest.mark.parametrize("amounts", [(2**63 - 1, 2**63 - 1), (-1, 5), (MAX_MONEY, MAX_MONEY)])
def test_impossible_output_amounts_are_malformed_and_still_transcribed(amounts):
    case = Scenario().build()
    tx = case.psbt.unsigned_tx
    tx.outputs[0].value, tx.outputs[1].value = amounts
    psbt = Psbt.from_unsigned_tx(tx)
    for src, dst in zip(case.psbt.inputs, psbt.inputs, strict=True):
        for key, value in src.raw_records().items():
            dst.set_record(key, value)
    r = twin_review(psbt, case)
    assert r.refusal_codes[0] == "malformed" and r.fee is None and r.decision is None
    assert r.total_out is None and not r.approved_for_signing
    canonical.encode(r.to_plain())


def test_previous_transaction_that_is_not_the_one_spent_is_malformed():
    case = Scenario().build()
    other = Transaction(2, [TxIn(OutPoint(bytes(32), 0))], [TxOut(10**9, b"\x51")])
    case.psbt.inputs[0].set(0x00, other.serialize())
    r = case.review()
    assert "malformed" in r.refusal_codes and r.total_in is None and r.request_hash is None


def test_our_wsh_input_without_its_witness_script_is_malformed():
    case = Scenario(kind="wsh").build()
    case.psbt.inputs[1].delete(0x05)
    r = case.review()
    assert r.refusal_codes == ("malformed",)
    assert "input 1" in r.refusals[0].message


def test_finalized_input_and_odd_sighash_values_are_refused():
    case = Scenario().build()
    case.psbt.inputs[0].set(0x08, b"\x00")
    case.psbt.inputs[1].set(0x03, (0x1234).to_bytes(4, "little"))
    assert case.review().refusal_codes == ("malformed", "sighash")


def test_duplicate_inputs_and_missing_maps_are_malformed():
    case = Scenario().build()
    tx = case.psbt.unsigned_tx
    tx.inputs[1] = TxIn(tx.inputs[0].prevout, b"", tx.inputs[0].sequence)
    twin = Psbt.from_unsigned_tx(tx)
    for src, dst in zip(case.psbt.inputs, twin.inputs, strict=True):
        for key, value in src.raw_records().items():
            dst.set_record(key, value)
    assert "malformed" in twin_review(twin, case).refusal_codes
    short = Psbt.parse(case.psbt.serialize())
    short.outputs.pop()
    r = twin_review(short, case)
    assert r.refusal_codes == ("malformed",) and r.outputs == ()


def twin_review(psbt: Psbt, case: Case):
    return review(psbt, case.wallet, case.policy, **case.context())


def test_bad_arguments_raise_review_error():
    case = Scenario().build()
    ctx = case.context()
    with pytest.raises(ReviewError):
        review(case.psbt.serialize(), case.wallet, case.policy, **ctx)
    with pytest.raises(ReviewError):
        review(case.psbt, case.wallet, case.policy, **{**ctx, "now": -1})
    with pytest.raises(ReviewError):
        review(case.psbt, case.wallet, case.policy, **{**ctx, "spent_today_before": True})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_psbts_never_crash_the_review(data):
    """Any PSBT that still parses after a byte flip is reviewed, never raised on."""
    case = VALID_CASES[data.draw(st.sampled_from(KINDS))]
    raw = bytearray(case.psbt.serialize())
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    try:
        psbt = Psbt.parse(bytes(raw))
    except ValueError:
        return
    r = review(psbt, case.wallet, case.policy, **case.context())
    canonical.encode(r.to_plain())
    assert r.approved_for_signing == (not r.refusals and r.decision is not None)


VALID_CASES = {kind: Scenario(kind=kind, cosigner_signs=kind == "wsh").build() for kind in KINDS}


# -- transcript ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["valid", "change_to_foreign_address", "missing_request"])
def test_transcript_is_canonical_and_matches_the_transaction(name):
    case = Scenario().build() if name == "valid" else variant(name)
    r = case.review()
    plain = r.to_plain()
    encoded = canonical.encode(plain)
    assert canonical.decode(encoded) == plain
    assert r.transcript_hash() == canonical.digest(plain)
    tx = case.psbt.unsigned_tx
    assert [(o["script"], o["amount"]) for o in plain["outputs"]] == [
        (o.script_pubkey, o.value) for o in tx.outputs
    ]
    assert [i["outpoint"] for i in plain["inputs"]] == [str(i.prevout) for i in tx.inputs]
    assert plain["refusals"] == [[x.code, x.message] for x in r.refusals]
    assert plain["approved_for_signing"] is (name == "valid")
    # The journal accepts the transcript as a record's details, even nested one level.
    next_record(
        None,
        time=1,
        appliance_id="cold-01",
        event="signing_decision",
        details={"transcript": plain},
    )
    if r.decision is not None:
        assert plain["decision"]["checks"] == dict(r.decision.checks)
    assert case.review().to_plain() == plain  # deterministic


# -- size ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_one_hundred_inputs_review_quickly(kind):
    case = Scenario(kind=kind, input_amounts=(20_000,) * 100, cosigner_signs=kind == "wsh").build()
    start = time.perf_counter()
    r = case.review()
    elapsed = time.perf_counter() - start
    print(
        f"\n{kind}: 100-input review in {elapsed * 1000:.1f} ms "
        f"({len(case.psbt.serialize())} byte PSBT, {r.vsize} vB)"
    )
    assert r.approved_for_signing
    worst = with_72_byte_signatures(signed_final(case))
    assert r.vsize == worst.vsize()
