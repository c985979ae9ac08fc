"""Enrolling the custodian's own tokens (`init --plan`): each token by module plus label or
serial, PINs asked for and never on a command line, token identities journaled and pinned,
approval keys on the curve each officer's token offers.

The tokens are SoftHSM2 tokens made beforehand through the PKCS#11 API, as a custodian's
vendor tools would make them; tests/appliance/test_tpm_tokens.py does the same with TPM
officer tokens (tpm2-pkcs11 over swtpm).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from appliance.appliance import Appliance
from appliance.hsm import Hsm, module_path
from appliance.initialise import EnrolmentPlan, PlanError, enrol
from appliance.officers import OfficerError, unlock
from appliance.station import CeremonyError
from appliance.tokens import TokenDirectory, TokenIdentity, TokenIdentityError
from shared.approval_keys import P256, SECP256K1
from tests.appliance.conftest import TokenSpec
from tests.appliance.test_ceremonies_cli import run

EXE = str(Path(sys.executable).with_name("coldstation-appliance"))


def plan_text(signing: str, officers: list[str], admins: list[str], **extra: str) -> str:
    """A plan naming tokens by label; ``extra`` maps a label to one more TOML line."""
    module = module_path()
    lines = ['network = "regtest"', "quorum = 2", "admin_quorum = 1", ""]
    lines += ["[signing]", f'module = "{module}"', f'label = "{signing}"', ""]
    for table, labels in (("officers", officers), ("administrators", admins)):
        for label in labels:
            lines += [f"[[{table}]]", f'module = "{module}"', f'label = "{label}"']
            lines += [extra[label]] if label in extra else []
            lines.append("")
    return "\n".join(lines)


# -- the plan ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda t: t.replace('network = "regtest"', 'network = "moon"'), "network must be"),
        (lambda t: t.replace("quorum = 2", "quorum = 5", 1), "quorum 5 needs between 1 and 3"),
        (lambda t: t.replace("quorum = 2", 'quorum = "2"', 1), "quorum must be a whole number"),
        (lambda t: t + "\npins = 1\n", "unknown field 'pins'"),
        (lambda t: t.replace('label = "s"', 'label = "s"\nserial = "1"'), "exactly one of"),
        (lambda t: t.replace('label = "s"', 'label = "s"\npin = "1234"'), "unknown field 'pin'"),
        (lambda t: t.replace('label = "s"', 'label = "s"\nalgorithm = "p256"'), "'algorithm'"),
        (lambda t: t.replace('label = "o1"', 'label = "o1"\nalgorithm = "rsa"'), "algorithm must"),
        (lambda t: t.replace("[[administrators]]", "[[admins]]"), "unknown field 'admins'"),
        (lambda t: t.replace('label = "o1"', 'label = ""'), "non-empty text"),
        (lambda t: t.replace("[signing]", "[signing"), "not TOML"),
    ],
)
def test_a_bad_plan_is_refused_naming_the_field(mangle, message):
    text = mangle(plan_text("s", ["o1", "o2", "o3"], ["a1"]))
    with pytest.raises(PlanError, match=message) as caught:
        EnrolmentPlan.from_toml(text, "plan.toml")
    assert str(caught.value).startswith("plan.toml")
    assert "\n" not in str(caught.value)


def test_a_plan_file_that_is_not_text_is_refused(tmp_path):
    path = tmp_path / "plan.toml"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(PlanError, match="not UTF-8"):
        EnrolmentPlan.from_file(path)
    with pytest.raises(PlanError, match="cannot read"):
        EnrolmentPlan.from_file(tmp_path / "absent.toml")


# -- enrolment on real tokens --------------------------------------------------------------


@pytest.fixture
def custodian_tokens(make_tokens) -> dict[str, TokenSpec]:
    """Tokens as the vendor's tools leave them: initialised, PINs set, nothing on them."""
    specs = make_tokens("signing", "officer-a", "officer-b", "officer-c", "admin-a")
    return dict(zip(("signing", "o1", "o2", "o3", "a1"), specs, strict=True))


def _pins(tokens: dict[str, TokenSpec]):
    """pin_for(prompt): the PIN the prompt asks for, and a log of the prompts."""
    asked: list[str] = []
    by_label = {spec.label: spec for spec in tokens.values()}

    def pin_for(prompt: str) -> str:
        asked.append(prompt)
        label = prompt.split("'")[1]
        spec = by_label[label]
        return spec.so_pin if "security officer" in prompt else spec.user_pin

    return pin_for, asked


def _plan(tokens: dict[str, TokenSpec], **extra: str) -> EnrolmentPlan:
    labels = {k: v.label for k, v in tokens.items()}
    extra_lines = {labels[k]: v for k, v in extra.items()}
    text = plan_text(
        labels["signing"], [labels["o1"], labels["o2"], labels["o3"]], [labels["a1"]], **extra_lines
    )
    return EnrolmentPlan.from_toml(text)


def test_enrolment_pins_identities_and_curves(hsm, custodian_tokens, tmp_path):
    pin_for, asked = _pins(custodian_tokens)
    plan = _plan(custodian_tokens, o2='algorithm = "p256"', a1='algorithm = "p256"')
    result = enrol(tmp_path / "station", plan, pin_for)
    assert len(asked) == 5 and "security officer" in asked[0]
    with Appliance(tmp_path / "station", hsm) as appliance:
        appliance.require_usable()
        policy = appliance.policy()
        curves = {o.fingerprint: o.algorithm for o in (*policy.officers, *policy.administrators)}
        assert sorted(curves.values()) == sorted([SECP256K1, P256, SECP256K1, P256])
        enrolled = appliance.journal.enrolled
        for fingerprint, enrolment in enrolled.items():
            assert enrolment.algorithm == curves[fingerprint]
            identity = enrolment.identity
            assert identity is not None and identity["manufacturer"] == "SoftHSM project"
            token = hsm.token(label=enrolment.token)
            assert identity == TokenIdentity.read(token, hsm.path).to_plain()
        assert result.officer_labels == [custodian_tokens[k].label for k in ("o1", "o2", "o3")]
        # the signing token's PINs were replaced: the vendor's SO PIN opens it no more
        spec = custodian_tokens["signing"]
        with pytest.raises(Exception, match="refused the SO PIN"):
            hsm.so_set_pins(hsm.token(label=spec.label), spec.so_pin, spec.so_pin, None)
        # a P-256 officer and a secp256k1 officer activate the station together
        o1, o2 = custodian_tokens["o1"], custodian_tokens["o2"]
        with appliance.activated([(o1.label, o1.user_pin), (o2.label, o2.user_pin)]) as act:
            assert len(act.actors) == 2


def test_a_token_presenting_another_identity_is_refused_before_its_pin(
    hsm, custodian_tokens, tmp_path
):
    pin_for, _ = _pins(custodian_tokens)
    enrol(tmp_path / "station", _plan(custodian_tokens), pin_for)
    o1 = custodian_tokens["o1"]
    with Appliance(tmp_path / "station", hsm) as appliance:
        tokens = appliance.tokens()
        enrolled = tokens.enrolled[o1.label]
        for changed in ({"firmware": "9.9"}, {"model": "Look-alike"}, {"manufacturer": "Evil"}):
            forged = dict(tokens.enrolled, **{o1.label: replace(enrolled, **changed)})
            directory = TokenDirectory(tokens.modules, forged, hsm.path)
            with pytest.raises(TokenIdentityError, match="not the token enrolled"):
                directory.find(o1.label).check_identity()
            before = appliance.guard.failures(enrolled.serial)
            with pytest.raises(OfficerError, match="not the token enrolled"):
                unlock(directory, appliance.guard, o1.label, o1.user_pin)
            assert appliance.guard.failures(enrolled.serial) == before  # no PIN was tried
        # a token with the enrolled label but another serial is not the enrolled one
        forged = dict(tokens.enrolled, **{o1.label: replace(enrolled, serial="0000")})
        with pytest.raises(OfficerError, match=r"serial .* \(enrolled '0000'\)"):
            unlock(TokenDirectory(tokens.modules, forged, hsm.path), appliance.guard, o1.label, "x")


def test_enrolment_refuses_a_used_signing_token_and_duplicate_tokens(
    hsm, custodian_tokens, tmp_path
):
    pin_for, _ = _pins(custodian_tokens)
    labels = {k: v.label for k, v in custodian_tokens.items()}
    twice = plan_text(labels["signing"], [labels["o1"], labels["o1"], labels["o2"]], [labels["a1"]])
    with pytest.raises(CeremonyError, match="named twice"):
        enrol(tmp_path / "twice", EnrolmentPlan.from_toml(twice), pin_for)
    missing = plan_text(labels["signing"], [labels["o1"], "no-such-token", labels["o2"]], ["a"])
    with pytest.raises(CeremonyError, match="no-such-token"):
        enrol(tmp_path / "missing", EnrolmentPlan.from_toml(missing), pin_for)
    enrol(tmp_path / "first", _plan(custodian_tokens), pin_for)
    with pytest.raises(Exception, match="not empty"):
        enrol(tmp_path / "first", _plan(custodian_tokens), pin_for)
    with pytest.raises(CeremonyError, match="already holds a Coldstation audit key"):
        enrol(tmp_path / "second", _plan(custodian_tokens), pin_for)
    assert not (tmp_path / "second").exists()


def test_no_pin_on_any_command_line_or_environment_during_enrolment(
    hsm, custodian_tokens, tmp_path
):
    """The whole `init --plan` in a child process, PINs through a descriptor, while a
    watcher reads every process's command line and environment as fast as it can."""
    labels = {k: v.label for k, v in custodian_tokens.items()}
    plan = tmp_path / "plan.toml"
    plan.write_text(
        plan_text(labels["signing"], [labels["o1"], labels["o2"], labels["o3"]], [labels["a1"]])
    )
    order = ("signing", "o1", "o2", "o3", "a1")
    pins = [custodian_tokens["signing"].so_pin] + [custodian_tokens[k].user_pin for k in order[1:]]
    secrets_seen = _watch_processes(pins)
    try:
        done = run(tmp_path / "st", "init", "--plan", str(plan), pins=pins)
    finally:
        scanned = secrets_seen.stop()
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert list(info["officers"]) == [labels["o1"], labels["o2"], labels["o3"]]
    assert scanned.scans > 10, "the watcher must have looked while the ceremony ran"
    assert scanned.found == [], scanned.found
    for pin in pins:
        assert pin not in done.stdout and pin not in done.stderr


class _Watcher:
    def __init__(self, secrets: list[str]) -> None:
        self.secrets = [s.encode() for s in secrets]
        self.found: list[str] = []
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                for name in ("cmdline", "environ"):
                    try:
                        data = Path(f"/proc/{pid}/{name}").read_bytes()
                    except OSError:
                        continue
                    for secret in self.secrets:
                        if secret in data:
                            self.found.append(f"pid {pid} {name}")
            self.scans += 1
            time.sleep(0.005)

    def stop(self) -> _Watcher:
        self._stop.set()
        self._thread.join()
        return self


def _watch_processes(secrets: list[str]) -> _Watcher:
    return _Watcher(secrets)


def test_hsm_loads_another_module_beside_softhsm(hsm):
    """Modules are loaded once each; an unknown path fails with the path in the message."""
    with pytest.raises(Exception, match=r"cannot load PKCS#11 module /nonexistent\.so"):
        Hsm("/nonexistent.so")


def test_the_state_medium_cannot_choose_the_signing_module(hsm, custodian_tokens, tmp_path):
    """appliance.json names the module; the journal's token_init names the one the signing
    token was initialised through. Another library (here SoftHSM2 itself under another
    path, standing in for a PIN-capturing wrapper) stops the station before any PIN."""
    import shutil

    pin_for, _ = _pins(custodian_tokens)
    state = tmp_path / "station"
    enrol(state, _plan(custodian_tokens), pin_for)
    wrapper = tmp_path / "libwrapper.so"
    shutil.copy(module_path(), wrapper)
    config = json.loads((state / "appliance.json").read_text())
    config["signing_module"] = str(wrapper)
    (state / "appliance.json").write_text(json.dumps(config))
    with Appliance(state) as appliance:
        assert any("no PIN is sent to another library" in p for p in appliance.problems)
        o1, o2 = custodian_tokens["o1"], custodian_tokens["o2"]
        presented = [(o1.label, o1.user_pin), (o2.label, o2.user_pin)]
        for recovering in (False, True):
            with (
                pytest.raises(Exception, match="no PIN is sent to another library"),
                appliance.activated(presented, recovering=recovering),
            ):
                pass
        assert appliance.guard.totals() == {}  # no officer token was even tried


def test_a_label_no_enrolment_names_is_refused_before_its_pin(hsm, custodian_tokens, tmp_path):
    pin_for, _ = _pins(custodian_tokens)
    state = tmp_path / "station"
    enrol(state, _plan(custodian_tokens), pin_for)
    (stranger,) = [s for s in hsm_tokens(hsm, "stranger")]
    with Appliance(state, hsm) as appliance:
        with pytest.raises(OfficerError, match="is not enrolled at this station"):
            unlock(appliance.tokens(), appliance.guard, stranger.label, stranger.user_pin)
        assert appliance.guard.totals() == {}


def hsm_tokens(hsm, *names: str) -> list[TokenSpec]:
    from tests.appliance.conftest import new_token_spec

    specs = [new_token_spec(n) for n in names]
    for spec in specs:
        hsm.init_token(spec.label, spec.so_pin, spec.user_pin)
    hsm.rescan()
    return specs


def test_a_plan_beyond_what_slip39_and_a_record_hold_is_refused_before_any_token():
    many = plan_text("s", [f"o{i}" for i in range(17)], ["a1"])
    with pytest.raises(PlanError, match="1 to 16 officers"):
        EnrolmentPlan.from_toml(many)
    crowd = plan_text("s", [f"o{i}" for i in range(16)], [f"a{i}" for i in range(49)])
    with pytest.raises(PlanError, match="at most 64"):
        EnrolmentPlan.from_toml(crowd)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (b"total\x00VICTIM  ", "total?VICTIM"),  # a NUL can never forge a counter key
        (b"   ", "-"),
        (b"\x1b[31mred", "?[31mred"),
        ("SoftHSM project", "SoftHSM project"),
    ],
)
def test_token_info_is_made_printable(raw, shown):
    from appliance.hsm import token_text

    assert token_text(raw) == shown
