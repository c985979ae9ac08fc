"""Officers and administrators on TPM tokens (tpm2-pkcs11 over the swtpm emulator), beside
SoftHSM2 ones, in one station: a second real PKCS#11 module, P-256 approval keys, the
token's own PIN lockout, token identities, and the auditors' replay of P-256 approvals.

The signing token stays on SoftHSM2 (a TPM has no secp256k1). Every ceremony runs through
the command line in a fresh process, PINs through a descriptor, as in production.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.hsm import Hsm
from appliance.profiles import TPM2, profile_for
from shared.approval_keys import P256, SECP256K1
from shared.audit.change import ChangeDeriver
from shared.audit.evidence import parse_bundle
from shared.audit.journal_replay import ApplianceReplay
from shared.psbt import Psbt, extract, finalize
from tests.appliance.conftest import TokenSpec, new_token_spec
from tests.appliance.test_ceremonies_cli import run
from tests.appliance.test_enrolment import plan_text
from tests.appliance.test_signing_cli import request
from tests.kernel import verify_all
from tests.tpm_stack import MODULE as TPM_MODULE
from tests.tpm_stack import TpmStack, tpm_tools_missing

pytestmark = pytest.mark.skipif(tpm_tools_missing() is not None, reason=str(tpm_tools_missing()))


@pytest.fixture(scope="module")
def tpm(tmp_path_factory) -> Iterator[TpmStack]:
    """A private TPM for this module, its environment applied to this process and its
    children (the module reads it when loaded)."""
    with TpmStack(tmp_path_factory.mktemp("tpm")) as stack:
        stack.apply()
        yield stack


@pytest.fixture(scope="module")
def tpm_hsm(tpm: TpmStack) -> Hsm:
    return Hsm(TPM_MODULE)


def make_tpm_tokens(tpm_hsm: Hsm, *names: str) -> list[TokenSpec]:
    """TPM tokens made through the PKCS#11 API (C_InitToken on the empty slot)."""
    specs = [new_token_spec(name) for name in names]
    for spec in specs:
        tpm_hsm.init_token(spec.label, spec.so_pin, spec.user_pin)
    return specs


@pytest.fixture(scope="module")
def station(hsm, tpm, tpm_hsm, tmp_path_factory) -> dict:
    """Signing token on SoftHSM2; officers: one SoftHSM2, two TPM; administrators: one
    TPM, one SoftHSM2. Then a signing key and its wallet export."""
    soft = [new_token_spec(n) for n in ("signing", "soft-officer", "soft-admin")]
    for spec in soft:
        hsm.init_token(spec.label, spec.so_pin, spec.user_pin)
    hsm.rescan()
    tpm_officers = make_tpm_tokens(tpm_hsm, "tpm-officer-a", "tpm-officer-b")
    (tpm_admin,) = make_tpm_tokens(tpm_hsm, "tpm-admin")
    signing, soft_officer, soft_admin = soft
    officers = [soft_officer, *tpm_officers]
    admins = [tpm_admin, soft_admin]
    modules = {s.label: TPM_MODULE for s in [*tpm_officers, tpm_admin]}
    text = plan_text(signing.label, [o.label for o in officers], [a.label for a in admins])
    for label, module in modules.items():  # the TPM tokens are in the other module
        text = text.replace(
            f'module = "{hsm.path}"\nlabel = "{label}"', f'module = "{module}"\nlabel = "{label}"'
        )
    root = tmp_path_factory.mktemp("tpm-station")
    plan = root / "plan.toml"
    plan.write_text(text)
    state = root / "appliance"
    pins = [signing.so_pin] + [t.user_pin for t in [*officers, *admins]]
    done = run(state, "init", "--plan", str(plan), pins=pins)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    pair = officers[:2]  # one SoftHSM2 officer, one TPM officer
    args = ["--officers", ",".join(o.label for o in pair)]
    two = [o.user_pin for o in pair]
    assert run(state, "keygen", "hot-1", *args, pins=two).returncode == 0
    export = run(state, "export-wallet", "hot-1", "--out", str(root / "export"), *args, pins=two)
    assert export.returncode == 0, export.stderr
    keys = json.loads(run(state, "status").stdout)["keys"]
    pubkey = bytes.fromhex(next(k["public_key"] for k in keys if k["label"] == "hot-1"))
    return {
        "state": state,
        "info": info,
        "officers": officers,
        "admins": admins,
        "pubkey": pubkey,
        "args": args,
        "pins": two,
    }


def records(state: Path) -> list:
    """The journal's records, read straight from the file (no PIN, no station logic)."""
    from appliance.journal_store import read_payloads
    from shared.journal import Entry

    return [Entry.from_bytes(raw).record for raw in read_payloads(state / "journal.log")]


def test_the_tpm_profile_is_chosen_for_the_tpm_module(tpm):
    assert profile_for(TPM_MODULE) is TPM2
    assert TPM2.approval_curves == (P256,) and not TPM2.wrap_unwrap


def test_tpm_officers_enrol_with_p256_keys_and_pinned_identities(station):
    status = json.loads(run(station["state"], "status").stdout)
    assert status["usable"], status["problems"]
    tpm_token = status["enrolled_tokens"][station["officers"][1].label]
    assert (tpm_token["module"], tpm_token["manufacturer"], tpm_token["algorithm"]) == (
        TPM_MODULE,
        "IBM",
        P256,
    )
    signed = (station["state"] / "policies" / "0001.cbor").read_bytes()
    from shared.policy import SignedPolicy

    policy = SignedPolicy.from_bytes(signed).policy
    curves = {o.fingerprint: o.algorithm for o in (*policy.officers, *policy.administrators)}
    labels = {**station["info"]["officers"], **station["info"]["administrators"]}
    for token in (*station["officers"], *station["admins"]):
        expected = P256 if token.label.startswith("tpm-") else SECP256K1
        assert curves[labels[token.label]] == expected, token.label


def test_one_softhsm_officer_and_one_tpm_officer_sign_and_core_accepts(station, tmp_path):
    data, spent = request(station["pubkey"])
    source, signed = tmp_path / "req.psbt", tmp_path / "signed.psbt"
    source.write_bytes(data)
    done = run(
        station["state"],
        "sign",
        "--in",
        str(source),
        *station["args"],
        "--out",
        str(signed),
        pins=station["pins"],
    )
    assert done.returncode == 0, done.stderr
    tx = extract(finalize(Psbt.parse(signed.read_bytes())).psbt)
    assert verify_all(tx, spent) == [True]


def test_the_audit_replay_verifies_the_p256_approvals(station, tmp_path):
    data, _ = request(station["pubkey"])
    source = tmp_path / "req.psbt"
    source.write_bytes(data)
    signed = tmp_path / "signed.psbt"
    args = ["sign", "--in", str(source), *station["args"], "--out", str(signed)]
    assert run(station["state"], *args, pins=station["pins"]).returncode == 0
    bundle = tmp_path / "bundle"
    exported = run(
        station["state"],
        "journal",
        "export",
        "--out",
        str(tmp_path / "j.cbor"),
        "--evidence",
        str(bundle),
        *station["args"],
        pins=station["pins"],
    )
    assert exported.returncode == 0, exported.stderr
    policies = {p.name: p.read_bytes() for p in (bundle / "policies").glob("*.cbor")}
    transcripts = {p.stem: p.read_bytes() for p in (bundle / "transcripts").glob("*.cbor")}
    parsed = parse_bundle(
        str(bundle), (bundle / "journal.cbor").read_bytes(), policies, transcripts
    )
    result = ApplianceReplay(parsed, parsed.audit_key, {}, ChangeDeriver(0)).run()
    assert [f.message for f in result.findings] == []
    approved = [c for c in result.ceremonies if c.decision == "approved"]
    tpm_officer = station["info"]["officers"][station["officers"][1].label]
    assert approved and all(tpm_officer in c.approvals for c in approved)


def test_a_tpm_token_locks_its_pin_and_both_lockouts_are_journaled(station, tpm):
    """Three wrong PINs on one TPM officer: the station counts them, the TPM locks every
    token it holds (CKR_PIN_LOCKED); after the TPM's owner clears it and administrators
    reset the counters, the next activation journals what happened."""
    state, (soft, tpm_a, tpm_b) = station["state"], station["officers"]
    for attempt in range(3):
        wrong = run(
            state,
            "keygen",
            f"k{attempt}",
            "--officers",
            f"{soft.label},{tpm_a.label}",
            pins=[soft.user_pin, f"bad-{attempt}"],
        )
        assert wrong.returncode != 0 and "refused the PIN" in wrong.stderr, wrong.stderr
    fourth = run(
        state,
        "keygen",
        "k4",
        "--officers",
        f"{soft.label},{tpm_a.label}",
        pins=[soft.user_pin, tpm_a.user_pin],
    )
    assert "locked out" in fourth.stderr
    # the TPM's own lockout: the other TPM officer's right PIN is refused by the TPM too
    other = run(
        state,
        "keygen",
        "k5",
        "--officers",
        f"{soft.label},{tpm_b.label}",
        pins=[soft.user_pin, tpm_b.user_pin],
    )
    assert other.returncode != 0 and "has locked its user PIN" in other.stderr, other.stderr
    tpm.clear_lockout()
    admins = station["admins"]
    for locked in (tpm_a, tpm_b):
        reset = run(
            state,
            "reset-lockout",
            locked.label,
            "--admins",
            ",".join(a.label for a in admins),
            pins=[a.user_pin for a in admins],
        )
        assert reset.returncode == 0, reset.stderr
    again = run(
        state,
        "keygen",
        "k6",
        "--officers",
        f"{soft.label},{tpm_b.label}",
        pins=[soft.user_pin, tpm_b.user_pin],
    )
    assert again.returncode == 0, again.stderr
    events = records(state)
    statuses = [r for r in events if r.event == "pin_status"]
    assert statuses, "the failures reached no pin_status record"
    reported = {t["serial"]: t for r in statuses for t in r.details["tokens"]}
    assert any(k.endswith(f"/{tpm_a.label}") for k in reported), reported
    assert any(r.event == "pin_lockout" for r in events)  # the administrators' resets


def test_a_tpm_token_presenting_another_identity_is_refused(station, hsm, tpm_hsm):
    """The identity journaled at enrolment is what the token must present: a TPM whose
    firmware changed (or another TPM model under the officer's label) is refused before
    its PIN is tried."""
    from dataclasses import replace

    from appliance.appliance import Appliance
    from appliance.officers import OfficerError, unlock
    from appliance.tokens import Modules, TokenDirectory

    (_, tpm_a, _) = station["officers"]
    with Appliance(station["state"], hsm, Modules(hsm, tpm_hsm)) as appliance:
        tokens = appliance.tokens()
        enrolled = tokens.enrolled[tpm_a.label]
        assert enrolled.module == TPM_MODULE and enrolled.manufacturer == "IBM"
        assert tokens.find(tpm_a.label).check_identity() == enrolled
        for changed in ({"firmware": "1.0"}, {"model": "Other TPM"}, {"serial": "1234"}):
            forged = {**tokens.enrolled, tpm_a.label: replace(enrolled, **changed)}
            directory = TokenDirectory(tokens.modules, forged, hsm.path)
            before = appliance.guard.totals()
            with pytest.raises(OfficerError, match="not the token enrolled"):
                unlock(directory, appliance.guard, tpm_a.label, tpm_a.user_pin)
            assert appliance.guard.totals() == before  # no PIN attempt was made


def test_a_curve_the_module_lacks_is_refused_before_any_token_changes(hsm, tpm_hsm, tmp_path):
    """secp256k1 asked of a TPM officer: refused before a PIN is asked or the signing
    token is touched, so the plan can be fixed and run again on the same tokens."""
    from appliance.initialise import EnrolmentPlan, enrol
    from appliance.station import CeremonyError

    signing, soft, admin = (new_token_spec(n) for n in ("signing", "soft-officer", "admin"))
    for spec in (signing, soft, admin):
        hsm.init_token(spec.label, spec.so_pin, spec.user_pin)
    hsm.rescan()
    (tpm_officer,) = make_tpm_tokens(tpm_hsm, "tpm-k1")
    text = plan_text(signing.label, [soft.label, tpm_officer.label], [admin.label])
    text = text.replace(
        f'module = "{hsm.path}"\nlabel = "{tpm_officer.label}"',
        f'module = "{TPM_MODULE}"\nlabel = "{tpm_officer.label}"\nalgorithm = "secp256k1"',
    )
    asked: list[str] = []
    with pytest.raises(CeremonyError, match="cannot generate secp256k1"):
        enrol(tmp_path / "st", EnrolmentPlan.from_toml(text), lambda p: asked.append(p) or "x")
    assert asked == [] and not (tmp_path / "st").exists()
    with hsm.token(label=signing.label).open(user_pin=signing.user_pin):
        pass  # the vendor's PINs still open the signing token
