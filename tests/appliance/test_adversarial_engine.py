"""The adversarial PSBT suite through the REAL signing engine on a REAL SoftHSM2 appliance.

A demo appliance is created by the command line (as an operator would), then opened in this
process. The scenario's two wallet keys (tests.adversarial.psbts.OUR_SECRETS) are imported
into its signing token as sensitive, non-extractable secp256k1 objects, the scenario's
policy settings are installed as the appliance's next policy (signed by two administrators),
and both scenario descriptors are pinned. Then every adversarial request goes through
``SigningSession.load``: it must be refused, nothing may be signed (no approval, no signing,
no partial signature of ours), and exactly one ``signing_decision`` record with decision
``refused`` must reach the journal for it. A valid request, approved by two officers and
signed inside the token, proves the fixture can sign at all.

Test-only: production keys are generated inside the HSM, never imported.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from coincurve import PublicKey
from pkcs11 import Attribute, KeyType, ObjectClass

from appliance import softhsm
from appliance.appliance import Appliance
from appliance.hsm import Hsm
from appliance.keystore import BackupModel, KeyState, private_key_template, secp256k1_params
from appliance.signing import SigningError, SigningSession
from shared.bitcoin.sighash import SIGHASH_ALL, SighashCache
from shared.journal import Entry
from shared.psbt import Psbt, extract, finalize
from shared.psbt.scripts import spend_info
from shared.request import read_receipts
from tests.adversarial.psbts import (
    ACCEPTED,
    OUR_SECRETS,
    VARIANTS,
    WPKH_DESCRIPTOR,
    WPKH_LABEL,
    WSH_DESCRIPTOR,
    WSH_LABEL,
    Case,
    Scenario,
    make_policy,
    pubkey,
    secret,
    variant,
)
from tests.appliance.conftest import softhsm_available
from tests.appliance.test_ceremonies_cli import ADMIN_PINS, OFFICER_PINS, run
from tests.kernel import verify_all

TWO = [("officer-1", OFFICER_PINS["officer-1"]), ("officer-2", OFFICER_PINS["officer-2"])]
ADMINS = list(ADMIN_PINS.items())
LABELS = {
    pubkey("coldstation hsm wallet-key-1"): WPKH_LABEL,
    pubkey("coldstation hsm wallet-key-2"): WSH_LABEL,
}

#: Variants whose attack lives in the appliance's own journal, not in the PSBT: the engine
#: derives seen request ids, signed outpoints and the day's total from its journal
#: (shared.station.History), so the scenario's injected context has no effect here.
#: Covered by tests/unit/test_review.py (review with that context) and, through the engine
#: and a real journal, by tests/appliance/test_signing_cli.py (replayed request, conflicting
#: spend of a signed coin, daily total over the limit).
JOURNAL_DERIVED = {
    "replayed_request_id": "seen request ids come from the appliance's journal",
    "conflicting_spend": "signed outpoints come from the appliance's journal",
    "daily_limit_exceeded": "the day's total comes from the appliance's journal",
}
#: Key-state variants change the appliance's keys (archiving is irreversible): see the last test.
KEY_STATE = {"suspended_key": KeyState.SUSPENDED, "archived_key": KeyState.ARCHIVED}
REFUSED = [name for name in VARIANTS if name not in JOURNAL_DERIVED and name not in KEY_STATE]


def test_variant_partition_is_complete():
    assert set(JOURNAL_DERIVED) <= set(VARIANTS) and set(KEY_STATE) <= set(VARIANTS)
    assert len(REFUSED) + len(JOURNAL_DERIVED) + len(KEY_STATE) == len(VARIANTS)


# -- the appliance ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    if not softhsm_available():
        pytest.skip("SoftHSM2 (libsofthsm2.so) is not installed")
    state = tmp_path_factory.mktemp("engine") / "appliance"
    done = run(
        state,
        "init",
        "--demo",
        "--network",
        "regtest",
        pins=[*OFFICER_PINS.values(), *ADMIN_PINS.values()],
    )
    assert done.returncode == 0, done.stderr
    previous = os.environ.get("SOFTHSM2_CONF")
    # The PKCS#11 library may already be loaded in this process on another module's token
    # store (tests/appliance/conftest.py): point SoftHSM2 at this appliance and re-initialise.
    softhsm.configure(state)
    hsm = Hsm()
    hsm.rescan()
    appliance = Appliance(state, hsm)
    try:
        _import_scenario_keys(appliance)
        _install_scenario_policy(appliance, internal=(str(WSH_DESCRIPTOR),))
        appliance.pin_wallet(TWO, WPKH_DESCRIPTOR, ADMINS)  # the station's own key: admins
        appliance.pin_wallet(TWO, WSH_DESCRIPTOR)  # 2-of-3 others could spend: the policy
        _install_scenario_policy(appliance, internal=())  # still pinned; no longer internal
        assert not appliance.state.pending()
        yield appliance
    finally:
        appliance.close()
        hsm.logout_all()
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous


def _import_scenario_keys(appliance: Appliance) -> None:
    """Test-only: the scenario's software keys as secp256k1 private objects in the token."""
    with appliance.activated(TWO):
        session = appliance.keystore.session()
        for public_key, label in LABELS.items():
            key_id = secrets.token_bytes(16)
            template = {
                Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                Attribute.KEY_TYPE: KeyType.EC,
                Attribute.EC_PARAMS: secp256k1_params(),
                Attribute.VALUE: OUR_SECRETS[public_key],
                Attribute.ID: key_id,
                Attribute.LABEL: label,
                **private_key_template(BackupModel.NON_EXTRACTABLE),
            }
            with appliance.hsm.lock:
                session.create_object(template)
            # keys exist for the station only through the journal: record them as restored
            appliance.record(
                "restore",
                subjects={"public_key": public_key},
                details={
                    "label": label,
                    "key_id": key_id.hex(),
                    "backup_model": BackupModel.NON_EXTRACTABLE.value,
                },
            )


def _install_scenario_policy(appliance: Appliance, internal: tuple[str, ...]) -> None:
    """The scenario's rules as the next version of the appliance's own policy."""
    current, scenario = appliance.policy(), make_policy()
    rules = (
        "address_book",
        "require_address_book",
        "per_tx_limit",
        "per_day_limit",
        "fee_rate_ceiling",
        "max_fee",
        "allowed_script_types",
        "request_ttl_max",
    )
    policy = replace(
        current,
        version=current.version + 1,
        previous_hash=current.hash(),
        internal_wallets=internal,
        **{name: getattr(scenario, name) for name in rules},
    )
    appliance.install_policy(TWO, appliance.sign_policy(ADMINS, policy))
    assert appliance.policy() == policy


# -- helpers ------------------------------------------------------------------------------


def _decisions(appliance: Appliance) -> list[Entry]:
    return [e for e in appliance.recorder.entries() if e.record.event == "signing_decision"]


def _base(name: str) -> Scenario:
    """A request id of its own per case: refused requests count as seen (no retries). The
    station refuses to judge with a clock behind its journal, so requests are dated now."""
    now = int(time.time()) + 60
    return Scenario(
        request_id=secret(f"engine request {name}")[:16],
        now=now,
        created=now - 60,
        expiry=now + 1800,
    )


def _assert_refused_once(appliance: Appliance, case: Case | None, data: bytes) -> Entry:
    """Load through the engine; refused, nothing signed, exactly one refused record."""
    before = _decisions(appliance)
    assert not appliance.state.pending()
    now = case.scenario.now if case is not None else None
    session = SigningSession(appliance, now=now)
    result = session.load(data)
    if case is None:
        assert result is None  # not a PSBT at all
    else:
        assert result is not None
        assert not result.approved_for_signing
        codes = [r.code for r in result.refusals]
        assert set(case.expected) <= set(codes), (case.name, codes)
        # nothing of ours is signed in what the engine holds
        assert session.psbt is not None
        for inp in session.psbt.inputs:
            assert not set(inp.partial_sigs) & set(OUR_SECRETS)
    with pytest.raises(SigningError):
        session.approve(*TWO[0])
    with pytest.raises(SigningError):
        session.sign()
    assert not appliance.keystore.unlocked
    # decided while the token was locked: deferred, then written at the next activation
    assert _decisions(appliance) == before
    assert len(appliance.state.pending()) == 1
    assert appliance.flush_pending(TWO) == 1
    assert not appliance.state.pending() and not appliance.keystore.unlocked
    after = _decisions(appliance)
    assert after[: len(before)] == before
    new = after[len(before) :]
    assert [e.record.decision for e in new] == ["refused"]
    record = new[0].record
    if case is not None:
        assert [code for code, _ in record.details["refusals"]] == codes
        if case.meta is not None and not case.scenario.second_request:
            assert record.details["request_id"] == case.meta.request_id
        assert "signatures" not in record.details
    return new[0]


# -- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", REFUSED)
def test_adversarial_request_is_refused_with_one_record(station, name):
    case = variant(name, _base(name))
    _assert_refused_once(station, case, case.psbt.serialize())


def test_bytes_that_are_not_a_psbt_are_refused_with_one_record(station):
    entry = _assert_refused_once(station, None, b"psbt\xff\x00 this is not one")
    assert [code for code, _ in entry.record.details["refusals"]] == ["malformed"]


# -- the engine does sign a valid request -------------------------------------------------


@pytest.mark.parametrize("name", ["valid", "cosigned"])
def test_valid_request_is_signed_inside_the_token(station, name):
    base = replace(_base(name), input_amounts=(610_000, 520_000))  # coins of its own
    case = base.build(name) if name == "valid" else ACCEPTED[name](base).build(name)
    before = _decisions(station)
    session = SigningSession(station, now=case.scenario.now)
    result = session.load(case.psbt.serialize())
    assert result is not None and result.approved_for_signing, result and result.refusals
    for label, pin in TWO:
        state = session.approve(label, pin)
    assert state.complete
    signed = session.sign()
    assert not station.keystore.unlocked
    psbt = Psbt.parse(signed.psbt_bytes)
    cache = SighashCache(psbt.unsigned_tx)
    assert signed.signatures == len(case.scenario.input_amounts)
    for index in range(signed.signatures):
        ours = set(psbt.inputs[index].partial_sigs) & set(OUR_SECRETS)
        assert len(ours) == 1
        key = ours.pop()
        sig = psbt.inputs[index].partial_sigs[key]
        digest = spend_info(psbt, index).digest(cache, SIGHASH_ALL)
        assert sig[-1] == SIGHASH_ALL
        assert PublicKey(key).verify(sig[:-1], digest, hasher=None)
    assert len(read_receipts(psbt)) == 1
    assert verify_all(extract(finalize(psbt).psbt), case.spent()) == [True, True]
    new = _decisions(station)[len(before) :]
    assert [e.record.decision for e in new] == ["approved"]
    assert new[0].record.seq == signed.receipt_seq


# -- key states (last: archiving cannot be undone) ----------------------------------------


@pytest.mark.parametrize("name", list(KEY_STATE))
def test_key_state_variant_is_refused_with_one_record(station, name):
    state = KEY_STATE[name]
    for label in LABELS.values():
        station.set_key_state(TWO, label, state)
    try:
        case = variant(name, _base(name))
        _assert_refused_once(station, case, case.psbt.serialize())
    finally:
        if state is KeyState.SUSPENDED:
            for label in LABELS.values():
                station.set_key_state(TWO, label, KeyState.ACTIVE)
    assert station.verify_journal() == []
