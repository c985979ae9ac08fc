"""An insider with the state medium (and no PIN), or a quorum without administrators, against
the rebuilt appliance that "believes only what it signed" (issue 12).

Everything goes through the real ``coldstation-appliance`` CLI in subprocesses, on real
SoftHSM2 tokens. One station is built once per module (init, keys, a pinned wallet, a
policy with an address book and a 0.001 BTC limit, one signed request); each test works on
a copy of its state directory (``shutil.copytree``: in demo mode the token store lives
inside it, so a copy is an independent station). Attacks are what someone holding the
medium can do: plant, edit, delete or roll back files, plus plain python-pkcs11 on the
token files where the threat model says SoftHSM2 lets them (and where a colluding quorum
could, with its own PINs).

Each attack must be refused or detected, with nothing signed, and the message naming the
file or record. Tests marked ``xfail(strict=True)`` are attacks the appliance does not stop
yet (``BUG``: contradicts its own design; ``WEAKNESS``: a gap in the design); each reason
says what happens instead. The clock test uses libfaketime (``apt-get install faketime``).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cbor2
import pkcs11
import pytest
import shamir_mnemonic
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from appliance import checkpoint as checkpoint_module
from appliance.appliance import so_pin_for
from appliance.backup import new_kek_shares
from appliance.hsm import Hsm, token_serial
from appliance.officers import OfficerError, PinGuard, unlock
from appliance.tokens import single_module
from shared import canonical
from shared.bitcoin import ecdsa
from shared.bitcoin.descriptor import Descriptor
from shared.bitcoin.script import p2wpkh_script
from shared.bitcoin.tx import SEQUENCE_RBF, OutPoint, Transaction, TxIn, TxOut
from shared.policy import Policy, SignedPolicy, policy_signing_digest
from shared.psbt import Psbt
from shared.request import RequestMetadata, attach_request, read_request
from tests.appliance.conftest import softhsm_available
from tests.appliance.medium_tools import (
    ADMINS,
    CRASH_AFTER_PENDING_RECORD,
    KEK_LABEL,
    OFFICERS,
    PAYEE,
    PINS,
    SIGNING,
    STRANGER,
    TWO,
    approval_sign,
    build_request,
    checkpoint_seq,
    clone,
    decisions,
    drop_last_frame,
    edit_record,
    entries,
    events,
    flip_bit,
    foreign_key,
    login_fails,
    officers_args,
    ok,
    payee_script,
    pins_of,
    read_share_objects,
    replay_findings,
    run,
    run_watching_proc,
    said,
    secret_keys,
    sign,
    token_dir,
    token_library,
    wsh_multi,
)

pytestmark = pytest.mark.skipif(not softhsm_available(), reason="SoftHSM2 is not installed")

COIN = 100_000_000
ROLLED_BACK = re.compile(r"holds its head at seq \d+|is not the one .* anchored")


# -- the station ------------------------------------------------------------------------------


@dataclass
class Base:
    root: Path
    state: Path
    info: dict  # what init printed (officer and administrator fingerprints)
    keys: dict[str, bytes]  # label -> public key, from the journal
    v2: Policy  # installed: address book (PAYEE only, required), 0.001 BTC per transaction
    alt_v2: SignedPolicy  # validly signed by both administrators, never installed
    next_v3: SignedPolicy  # the next version, validly signed, never installed
    r1: bytes  # a request the station approved and signed (the last two records)
    before_r1: Path  # journal.log, checkpoint.cbor and the signing token's files before it
    proc: dict  # what /proc showed while init ran


def admin_signed(lib, policy: Policy) -> SignedPolicy:
    digest = policy_signing_digest(policy)
    return SignedPolicy(policy, dict(approval_sign(lib, a, PINS[a], digest) for a in ADMINS))


def key_of(state: Path, label: str) -> bytes:
    for entry in entries(state):
        if (
            entry.record.event in ("key_generated", "restore")
            and entry.record.details.get("label") == label
        ):
            return entry.record.subjects["public_key"]
    raise LookupError(label)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    root = tmp_path_factory.mktemp("medium")
    state = root / "station"
    everyone = [*OFFICERS, *ADMINS]
    done, proc = run_watching_proc(
        state,
        "init",
        "--demo",
        "--network",
        "regtest",
        pins=pins_of(*everyone),
        secrets_=pins_of(*everyone),
    )
    info = json.loads(ok(done).stdout)
    two, pins = officers_args(*TWO), pins_of(*TWO)
    ok(run(state, "keygen", "hot", *two, pins=pins))
    ok(run(state, "export-wallet", "hot", "--out", str(root / "hot"), *two, pins=pins))
    ok(run(state, "keygen", "arch", *two, pins=pins))
    ok(run(state, "export-wallet", "arch", "--out", str(root / "arch"), *two, pins=pins))
    ok(run(state, "archive", "arch", *two, pins=pins))
    v1 = SignedPolicy.from_bytes((state / "policies" / "0001.cbor").read_bytes()).policy
    v2 = replace(
        v1,
        version=2,
        previous_hash=v1.hash(),
        address_book=((PAYEE, "payroll"),),
        require_address_book=True,
        per_tx_limit=100_000,
    )
    alt = replace(
        v2,
        require_address_book=False,
        per_tx_limit=10 * COIN,
        address_book=((STRANGER, "reserve"),),
    )
    v3 = replace(
        v2, version=3, previous_hash=v2.hash(), require_address_book=False, per_tx_limit=10 * COIN
    )
    with token_library(state) as lib:
        signed_v2, alt_v2, next_v3 = (admin_signed(lib, p) for p in (v2, alt, v3))
    (root / "v2.cbor").write_bytes(signed_v2.to_bytes())
    ok(run(state, "policy", "install", str(root / "v2.cbor"), *two, pins=pins))
    keys = {label: key_of(state, label) for label in ("coldstation-audit", "hot", "arch")}
    before = root / "before-r1"
    before.mkdir()
    for name in ("journal.log", "checkpoint.cbor"):
        shutil.copy2(state / name, before / name)
    shutil.copytree(token_dir(state, SIGNING), before / "signing-token")
    r1 = build_request(keys["hot"])
    done, out = sign(state, root, r1, "r1")
    assert ok(done) and out.exists()
    assert decisions(state)[-1].record.decision == "approved"
    return Base(root, state, info, keys, v2, alt_v2, next_v3, r1, before, proc)


def station(base: Base, tmp_path: Path, name: str = "st") -> Path:
    return clone(base.state, tmp_path / name)


def status(state: Path) -> tuple[int, dict]:
    done = run(state, "status")
    return done.returncode, json.loads(done.stdout)


def approved_count(state: Path) -> int:
    return sum(1 for e in decisions(state) if e.record.decision == "approved")


def attempt(
    state: Path, tmp: Path, data: bytes, name: str, *labels: str, env: dict[str, str] | None = None
):
    """``sign`` through the CLI; returns (result, output path, what existed before)."""
    before = (approved_count(state), sorted((state / "signed").glob("*.psbt")))
    done, out = sign(state, tmp, data, name, *labels, env=env)
    return done, out, before


def assert_nothing_signed(done, out: Path, state: Path, before) -> None:
    """Refused (exit 1, no traceback): no output file, no new signed PSBT kept on the
    medium, no new approved record."""
    approved, files = before
    assert done.returncode == 1, said(done)
    assert "Traceback" not in done.stderr
    assert not out.exists()
    assert sorted((state / "signed").glob("*.psbt")) == files
    assert approved_count(state) == approved


def lock_out(state: Path, label: str = "officer-3") -> None:
    """Three wrong PINs on an officer token, through the appliance's own PinGuard."""
    appliance_id = json.loads((state / "appliance.json").read_text())["appliance_id"]
    with token_library(state):
        hsm = Hsm()
        guard = PinGuard(hsm, SIGNING, appliance_id)
        for n in range(3):
            with pytest.raises(OfficerError, match="refused the PIN"):
                unlock(single_module(hsm), guard, label, f"wrong-{n}")
        assert guard.is_locked_out(token_serial(hsm.token(label=label)))
        hsm.logout_all()


# -- 1. files that no longer exist --------------------------------------------------------------


def test_planted_legacy_files_have_no_effect(base, tmp_path):
    """keys.json reviving the archived key, wallets.json adding a 1-of-2 with an attacker
    key, pin-guard.json resetting PIN counters: the journal and the token decide."""
    st = station(base, tmp_path)
    hot, arch, mallory = base.keys["hot"], base.keys["arch"], foreign_key()
    trap = wsh_multi(1, hot, mallory)
    (st / "keys.json").write_text(
        json.dumps(
            {
                "keys": [
                    {
                        "label": label,
                        "public_key": key.hex(),
                        "state": "active",
                        "key_id": "00" * 16,
                        "backup_model": "non-extractable",
                        "created": "2020-01-01T00:00:00+00:00",
                    }
                    for label, key in (("hot", hot), ("arch", arch))
                ]
            }
        )
    )
    (st / "wallets.json").write_text(json.dumps({"descriptors": [f"wpkh({hot.hex()})", str(trap)]}))
    lock_out(st)
    (st / "pin-guard.json").write_text(json.dumps({"failures": {}, "counts": {}}))

    code, report = status(st)
    assert code == 0 and report["usable"]
    assert {k["label"]: k["state"] for k in report["keys"]}["arch"] == "archived"
    assert str(trap) not in report["pinned_wallets"]
    assert len(report["pinned_wallets"]) == 2  # wpkh(hot) and wpkh(arch), by their exports

    # 9.99 BTC to the 1-of-2 (the "CHANGE, back to our wallet"), spending a coin of
    # the archived key as well: not change, over the limit, not in the address book, and the
    # archived key does not sign
    data = _two_input_request(hot, arch, pay_to=trap.derive(0).script_pubkey)
    done, out, before = attempt(st, tmp_path, data, "trap")
    assert_nothing_signed(done, out, st, before)
    for code_ in ("suspended_key", "address_book", "limits"):
        assert code_ in done.stderr, done.stderr
    record = decisions(st)[-1].record
    assert record.decision == "refused"
    transcript = cbor2.loads(
        (st / "transcripts" / f"{record.subjects['transcript'].hex()}.cbor").read_bytes()
    )
    paid = transcript["outputs"][0]
    assert paid["is_change"] is False and paid["amount"] == 999_000_000

    locked = run(
        st,
        "keygen",
        "x",
        *officers_args("officer-1", "officer-3"),
        pins=pins_of("officer-1", "officer-3"),
    )
    assert locked.returncode == 1 and "locked out" in locked.stderr, said(locked)
    assert "keygen" not in [e.record.details.get("ceremony") for e in entries(st)[-3:]]


def _two_input_request(hot: bytes, arch: bytes, pay_to: bytes) -> bytes:
    """Coins of the hot and the archived key; 9.99 BTC to ``pay_to``, the rest to hot."""
    funding = [
        Transaction(
            inputs=[TxIn(OutPoint(os.urandom(32), 0), b"\x51")],
            outputs=[TxOut(5 * COIN + 1_000_000, p2wpkh_script(key))],
        )
        for key in (hot, arch)
    ]
    spend = Transaction(
        inputs=[TxIn(OutPoint(f.txid, 0), sequence=SEQUENCE_RBF) for f in funding],
        outputs=[
            TxOut(999_000_000, pay_to),
            TxOut(10 * COIN + 2_000_000 - 999_000_000 - 5_000, p2wpkh_script(hot)),
        ],
    )
    psbt = Psbt.from_unsigned_tx(spend)
    for index, f in enumerate(funding):
        psbt.inputs[index].set(0x00, f.serialize())
        psbt.inputs[index].set(0x01, f.outputs[0].serialize())
    now = int(time.time())
    meta = RequestMetadata(
        request_id=os.urandom(16),
        batch_id="b",
        requester="ops-mallory",
        created=now - 5,
        expiry=now + 1800,
        purpose="x",
        network="regtest",
    )
    return attach_request(psbt, meta).serialize()


# -- 2. policies -----------------------------------------------------------------------------


def test_planted_policy_files_are_ignored(base, tmp_path):
    """An admin-signed but never installed 0003.cbor (no address book, 10 BTC limit) and an
    unsigned 0004.cbor: the journal installed version 2, and version 2 it stays."""
    st = station(base, tmp_path)
    (st / "policies" / "0003.cbor").write_bytes(base.next_v3.to_bytes())
    v4 = replace(base.next_v3.policy, version=4, previous_hash=base.next_v3.policy.hash())
    (st / "policies" / "0004.cbor").write_bytes(SignedPolicy(v4, {}).to_bytes())
    shown = ok(run(st, "policy", "show", "--json"))
    policy = json.loads(shown.stdout)
    assert policy["version"] == 2 and policy["per_tx_limit"] == 100_000
    assert policy["require_address_book"] is True
    data = build_request(base.keys["hot"], to=payee_script(STRANGER))
    done, out, before = attempt(st, tmp_path, data, "stranger")
    assert_nothing_signed(done, out, st, before)
    assert "address_book" in done.stderr and STRANGER in done.stderr


@pytest.mark.parametrize("how", ["replaced", "edited", "deleted"])
def test_installed_policy_file_tampering_stops_the_station(base, tmp_path, how):
    """The file the journal's policy_installed record names is replaced by another validly
    signed version 2, edited, or deleted (an older policy must never come back)."""
    st = station(base, tmp_path)
    path = st / "policies" / "0002.cbor"
    if how == "replaced":
        path.write_bytes(base.alt_v2.to_bytes())
    elif how == "edited":
        data = path.read_bytes()
        assert data.count(b"payroll") == 1
        path.write_bytes(data.replace(b"payroll", b"payrolL"))
    else:
        path.unlink()
    seq = next(
        e.record.seq
        for e in entries(st)
        if e.record.event == "policy_installed" and e.record.details["version"] == 2
    )
    # under the planted (alt) or an older (v1) policy this payment would be signed
    data = build_request(base.keys["hot"], to=payee_script(STRANGER))
    done, out, before = attempt(st, tmp_path, data, "stranger")
    assert_nothing_signed(done, out, st, before)
    assert "0002.cbor" in done.stderr and f"seq {seq}" in done.stderr, done.stderr
    assert ("missing" if how == "deleted" else "replaced or edited") in done.stderr
    keygen = run(st, "keygen", "x", *officers_args(*TWO), pins=pins_of(*TWO))
    assert keygen.returncode == 1 and "0002.cbor" in keygen.stderr


def test_status_names_a_missing_policy_file(base, tmp_path):
    st = station(base, tmp_path)
    (st / "policies" / "0002.cbor").unlink()
    code, report = status(st)
    assert code == 1 and not report["usable"]
    assert any("0002.cbor" in p for p in report["problems"])


@pytest.fixture(scope="module")
def revoked(base: Base, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A copy of the station where policy version 3 revoked officer-3 (re-keying the
    activation PIN); before that, the three officers read their shares off their tokens with
    plain python-pkcs11 (a colluding quorum keeps copies)."""
    root = tmp_path_factory.mktemp("revoked")
    st = clone(base.state, root / "st")
    with token_library(st) as lib:
        old = {label: read_share_objects(lib, label, PINS[label]) for label in OFFICERS}
        assert all(len(shares) == 1 for shares in old.values())
        secret = shamir_mnemonic.combine_mnemonics([old["officer-1"][0], old["officer-3"][0]])
        old_pin = secret.hex()
        usable_before = not login_fails(lib, SIGNING, user_pin=old_pin)
        three = base.info["officers"]["officer-3"]
        v3 = replace(
            base.v2,
            version=3,
            previous_hash=base.v2.hash(),
            officers=tuple(replace(o, active=o.fingerprint != three) for o in base.v2.officers),
        )
        signed_v3 = admin_signed(lib, v3)
        v4 = replace(
            v3,
            version=4,
            previous_hash=v3.hash(),
            officers=base.v2.officers,
            require_address_book=False,
        )
        signed_v4 = admin_signed(lib, v4)  # reinstates officer-3: signed, never installed
    (root / "v3.cbor").write_bytes(signed_v3.to_bytes())
    before = root / "before"
    before.mkdir()
    for name in ("journal.log", "checkpoint.cbor"):
        shutil.copy2(st / name, before / name)
    ok(
        run(
            st, "policy", "install", str(root / "v3.cbor"), *officers_args(*TWO), pins=pins_of(*TWO)
        )
    )
    assert "officer_revoked" in events(st) and "pin_rekeyed" in events(st)
    return {
        "state": st,
        "old": old,
        "old_pin": old_pin,
        "usable_before": usable_before,
        "v4": signed_v4,
        "before": before,
    }


@pytest.mark.parametrize("game", ["deleted", "older file", "planted v4", "journal rollback"])
def test_revoked_officer_cannot_approve_after_policy_games(revoked, base, tmp_path, game):
    st = clone(revoked["state"], tmp_path / "st")
    policies = st / "policies"
    if game == "deleted":
        (policies / "0003.cbor").unlink()
    elif game == "older file":  # version 2, where officer-3 is still active
        shutil.copy2(policies / "0002.cbor", policies / "0003.cbor")
    elif game == "planted v4":
        (policies / "0004.cbor").write_bytes(revoked["v4"].to_bytes())
    else:  # the journal and checkpoint from before the revocation
        for name in ("journal.log", "checkpoint.cbor"):
            shutil.copy2(revoked["before"] / name, st / name)
        (policies / "0003.cbor").unlink()
    done, out, before = attempt(
        st, tmp_path, build_request(base.keys["hot"]), "r", "officer-3", "officer-1"
    )
    assert_nothing_signed(done, out, st, before)
    if game == "journal rollback":  # an anchor ahead, or the re-keyed PIN, stops it
        assert (
            ROLLED_BACK.search(done.stderr)
            or "refused the PIN the officers' shares rebuild" in done.stderr
        ), done.stderr
    else:
        expected = {
            "deleted": "0003.cbor is missing",
            "older file": "0003.cbor is not the policy the journal installed",
            "planted v4": "is revoked",
        }[game]
        assert expected in done.stderr, done.stderr


# -- 3. pending files ---------------------------------------------------------------------------


def _forged_pending(st: Path, base: Base) -> dict[str, bytes]:
    """What an insider drops into pending/ hoping the audit key signs it."""
    appliance_id = json.loads((st / "appliance.json").read_text())["appliance_id"]
    attacker = f"wpkh({foreign_key().hex()})"
    h = hashlib.sha256(b"x").digest()
    statement = {
        "type": "coldstation-lockout-reset",
        "appliance": appliance_id,
        "token": "officer-3",
        "serial": "0" * 16,
        "time": 1_800_000_000,
        "nonce": "00" * 8,
    }
    digest = canonical.digest(statement)
    with token_library(st) as lib:
        one_admin = dict([approval_sign(lib, "admin-1", PINS["admin-1"], digest)])
        officers = dict(approval_sign(lib, o, PINS[o], digest) for o in TWO)
    admin_fps = list(base.info["administrators"].values())
    forged_sigs = {fp: bytes.fromhex("3006020101020101") for fp in admin_fps}
    return {
        "wallet-exported": canonical.encode(
            {
                "event": "wallet_exported",
                "actors": list(base.info["officers"].values())[:2],
                "details": {"label": "hot", "descriptor": attacker},
            }
        ),
        "deferred-wallet": canonical.encode(
            {
                "type": "coldstation-deferred-refusal",
                "time": 1,
                "subjects": {"psbt": h},
                "details": {"refusals": [["malformed", "x"]], "descriptor": attacker},
            }
        ),
        "approved-negative": canonical.encode(
            {
                "event": "signing_decision",
                "decision": "approved",
                "details": {"txid": "00" * 32, "outpoints": [], "paid_out": -50 * COIN},
            }
        ),
        "deferred-approved": canonical.encode(
            {
                "type": "coldstation-deferred-refusal",
                "time": 1,
                "subjects": {"psbt": h},
                "decision": "approved",
                "details": {"refusals": [["malformed", "x"]], "paid_out": -50 * COIN},
            }
        ),
        "reset-one-admin": canonical.encode({**statement, "signatures": one_admin}),
        "reset-forged": canonical.encode({**statement, "signatures": forged_sigs}),
        "reset-by-officers": canonical.encode({**statement, "signatures": officers}),
        "reset-other-station": canonical.encode(
            {**statement, "appliance": "cs-000000000000", "signatures": one_admin}
        ),
        "garbage": os.urandom(300),
        "not-canonical": cbor2.dumps(
            {"type": "coldstation-deferred-refusal", "time": 1}, canonical=False
        )
        + b"\x00",
        "huge": b"\xa0" + bytes(70_000),
    }


def test_forged_pending_files_are_rejected_never_journaled(base, tmp_path):
    """Every forgery is moved to pending/rejected/ and never journaled; the one thing an
    insider can get signed is a well-formed refusal in the fixed schema, which is journaled
    as a refusal marked deferred, with no actors, amounts or approvals."""
    st = station(base, tmp_path)
    forged = _forged_pending(st, base)
    pending = st / "pending"
    pending.mkdir(exist_ok=True)
    for name, data in forged.items():
        (pending / f"000000000001-{name}.cbor").write_bytes(data)
    (pending / "000000000002-well-formed.cbor").write_bytes(
        canonical.encode(
            {
                "type": "coldstation-deferred-refusal",
                "time": 1,
                "subjects": {"psbt": hashlib.sha256(b"x").digest()},
                "details": {"refusals": [["malformed", "whatever the insider writes"]]},
            }
        )
    )
    before = entries(st)
    ok(run(st, "keygen", "after", *officers_args(*TWO), pins=pins_of(*TWO)))
    # the base's earlier wrong PINs reach the journal at this first activation (pin_status)
    added = [e for e in entries(st)[len(before) :] if e.record.event != "pin_status"]
    assert [e.record.event for e in added] == [
        "activation",
        "signing_decision",
        "intent",
        "key_generated",
    ]
    refusal = added[1].record
    assert refusal.decision == "refused" and refusal.actors == ()
    assert refusal.details["deferred"] is True
    assert not {"paid_out", "approvals", "outpoints", "descriptor"} & set(refusal.details)
    rejected = sorted(p.name for p in (pending / "rejected").iterdir())
    assert rejected == sorted(f"000000000001-{name}.cbor" for name in forged)
    assert not list(pending.glob("*.cbor"))
    _code, report = status(st)
    assert report["pinned_wallets"] == status(base.state)[1]["pinned_wallets"]
    assert all(e.record.event != "pin_lockout" for e in entries(st))
    assert [d.record.decision for d in decisions(st)] == ["approved", "refused"]
    verify = run(st, "journal", "verify")
    assert verify.returncode == 0 and verify.stdout.strip().endswith("OK"), said(verify)


def test_a_forged_refusal_cannot_burn_a_genuine_request_id(base, tmp_path):
    """A forged, well-formed deferred refusal naming a request id is journaled (pending
    files are evidence) but binds no id: the genuine request is then signed, not refused as
    `replayed` (an insider who sees request ids on the medium cannot block requests)."""
    st = station(base, tmp_path)
    request_id = os.urandom(16)
    (st / "pending").mkdir(exist_ok=True)
    (st / "pending" / "000000000001-burn.cbor").write_bytes(
        canonical.encode(
            {
                "type": "coldstation-deferred-refusal",
                "time": 1,
                "subjects": {"psbt": hashlib.sha256(b"x").digest()},
                "details": {"refusals": [["malformed", "x"]], "request_id": request_id},
            }
        )
    )
    ok(run(st, "keygen", "after", *officers_args(*TWO), pins=pins_of(*TWO)))
    assert any(d.record.details.get("deferred") for d in decisions(st))  # journaled
    done, out = sign(st, tmp_path, build_request(base.keys["hot"], request_id=request_id), "r")
    assert done.returncode == 0 and out.exists(), said(done)
    again, _ = sign(st, tmp_path, build_request(base.keys["hot"], request_id=request_id), "r2")
    assert again.returncode == 1 and "replayed" in again.stderr, said(again)  # approved: bound
    # the auditors fold request ids as the station does: the approval is no replay
    findings = replay_findings(st, tmp_path, pins_of(*TWO))
    assert not [f for f in findings if "already presented" in f], findings


def test_a_rejected_pending_file_is_named_to_the_operator(base, tmp_path):
    st = station(base, tmp_path)
    (st / "pending").mkdir(exist_ok=True)
    (st / "pending" / "000000000001-garbage.cbor").write_bytes(b"garbage")
    done = ok(run(st, "keygen", "after", *officers_args(*TWO), pins=pins_of(*TWO)))
    assert "000000000001-garbage.cbor" in said(done)


def test_a_pending_entry_that_is_not_a_file_is_rejected(base, tmp_path):
    st = station(base, tmp_path)
    (st / "pending" / "000000000001-dir.cbor").mkdir(parents=True)
    done = run(st, "keygen", "after", *officers_args(*TWO), pins=pins_of(*TWO))
    assert done.returncode == 0, said(done)


def test_a_deferred_refusal_is_journaled_once_even_after_a_crash(base, tmp_path):
    """A genuine refusal waits in pending/ (no officer could open the token); the next
    activation journals it and is killed before deleting the file; the one after must
    recognise it and not journal it again."""
    st = station(base, tmp_path)
    expired = build_request(base.keys["hot"], expiry_delta=-5)
    (tmp_path / "expired.psbt").write_bytes(expired)
    waiting = run(
        st,
        "sign",
        "--in",
        str(tmp_path / "expired.psbt"),
        "--officers",
        "nosuch-1,nosuch-2",
        "--out",
        str(tmp_path / "x"),
        pins=["1234", "5678"],
    )
    assert waiting.returncode == 1 and "nosuch-1" in waiting.stderr, said(waiting)
    [pending] = list((st / "pending").glob("*.cbor"))
    digest = hashlib.sha256(pending.read_bytes()).digest()

    crashed = run(
        st,
        "keygen",
        "k1",
        *officers_args(*TWO),
        pins=pins_of(*TWO),
        program=CRASH_AFTER_PENDING_RECORD,
    )
    assert crashed.returncode == 137, said(crashed)
    assert pending.exists()
    journaled = [e for e in decisions(st) if e.record.details.get("pending") == digest]
    assert len(journaled) == 1 and journaled[0].record.details["deferred"] is True

    ok(run(st, "keygen", "k2", *officers_args(*TWO), pins=pins_of(*TWO)))
    assert not pending.exists()
    assert len([e for e in decisions(st) if e.record.details.get("pending") == digest]) == 1
    assert "expired" in [c for c, _ in journaled[0].record.details["refusals"]]
    assert ok(run(st, "journal", "verify")).stdout.strip().endswith("OK")


# -- 4. the journal -----------------------------------------------------------------------------


def _resign_r1(base: Base, st: Path, tmp_path: Path, name: str = "again"):
    done, out, before = attempt(st, tmp_path, base.r1, name)
    return done, out, before


def test_boundary_truncation_refuses_re_signing_then_recovery_names_the_loss(base, tmp_path):
    """The last frame (R1's approval) is cut off at a frame boundary: nothing in the file is
    damaged, but the tokens' anchors are ahead of it. Re-signing R1 is refused; the
    administrators' recovery journals what was lost and the station works again."""
    st = station(base, tmp_path)
    covered = checkpoint_seq(st)
    if covered is not None and covered >= len(entries(st)) - 1:
        (st / "checkpoint.cbor").unlink()  # that case is the xfail below
    lost = drop_last_frame(st)
    done, out, before = _resign_r1(base, st, tmp_path)
    assert_nothing_signed(done, out, st, before)
    assert f"the journal ends at seq {lost - 1}, but" in done.stderr, done.stderr
    assert f"holds its head at seq {lost}" in done.stderr

    short = run(
        st,
        "journal",
        "recover",
        *officers_args(*TWO),
        "--admins",
        "admin-1",
        pins=pins_of(*TWO, "admin-1"),
    )
    assert short.returncode == 1 and "needs 2 administrators" in short.stderr, said(short)
    recovered = ok(
        run(
            st,
            "journal",
            "recover",
            *officers_args(*TWO),
            "--admins",
            ",".join(ADMINS),
            pins=pins_of(*TWO, *ADMINS),
        )
    )
    assert f"records up to seq {lost} journaled as lost" in recovered.stdout
    record = entries(st)[-1].record
    assert record.event == "journal_recovered" and record.details["lost_through"] == lost
    assert set(base.info["administrators"].values()) <= set(record.details["admin_signatures"])
    ok(run(st, "keygen", "after", *officers_args(*TWO), pins=pins_of(*TWO)))
    assert ok(run(st, "journal", "verify")).stdout.strip().endswith("OK")


@pytest.mark.xfail(
    strict=True,
    reason="WEAKNESS: recovery forgets the lost records' history "
    "(request ids, signed outpoints, daily totals): after `journal recover` "
    "the request approved in the lost record is signed a second time",
)
def test_after_recovery_a_request_approved_in_a_lost_record_is_still_refused(base, tmp_path):
    st = station(base, tmp_path)
    (st / "checkpoint.cbor").unlink()
    drop_last_frame(st)
    ok(
        run(
            st,
            "journal",
            "recover",
            *officers_args(*TWO),
            "--admins",
            ",".join(ADMINS),
            pins=pins_of(*TWO, *ADMINS),
        )
    )
    done, out, before = _resign_r1(base, st, tmp_path)
    assert_nothing_signed(done, out, st, before)


def test_recovery_works_when_the_checkpoint_covers_the_truncated_tail(base, tmp_path):
    st = station(base, tmp_path)
    (st / "checkpoint.cbor").unlink()
    drop_last_frame(st)
    ok(
        run(
            st,
            "journal",
            "recover",
            *officers_args(*TWO),
            "--admins",
            ",".join(ADMINS),
            pins=pins_of(*TWO, *ADMINS),
        )
    )  # forces a checkpoint at the new head
    assert checkpoint_seq(st) == len(entries(st)) - 1
    lost = drop_last_frame(st)
    again = run(
        st,
        "journal",
        "recover",
        *officers_args(*TWO),
        "--admins",
        ",".join(ADMINS),
        pins=pins_of(*TWO, *ADMINS),
    )
    assert again.returncode == 0 and f"seq {lost}" in again.stdout, said(again)


def test_a_bit_flipped_in_the_last_frame_stops_the_station(base, tmp_path):
    st = station(base, tmp_path)
    last = len(entries(st)) - 1
    flip_bit(st, last, where=40)
    code, report = status(st)
    assert code == 1 and not report["usable"]
    assert any(
        "journal.log" in p and f"frame {last}" in p and "CRC" in p for p in report["problems"]
    ), report["problems"]
    done, out, _before = _resign_r1(base, st, tmp_path)
    assert done.returncode == 1 and not out.exists()
    assert "station is stopped" in done.stderr and "journal.log" in done.stderr
    covered = checkpoint_seq(st)
    recovered = run(
        st,
        "journal",
        "recover",
        *officers_args(*TWO),
        "--admins",
        ",".join(ADMINS),
        pins=pins_of(*TWO, *ADMINS),
    )
    if covered is not None and covered >= last:
        pytest.skip("the checkpoint covers the last frame: see the truncation xfail")
    ok(recovered)
    record = entries(st)[-1].record
    assert record.event == "journal_recovered" and record.details["quarantine"]
    assert (st / record.details["quarantine"]).exists()
    assert record.details["lost_through"] == last


@pytest.mark.parametrize("checkpoint", ["kept", "deleted"])
def test_an_empty_journal_stops_the_station(base, tmp_path, checkpoint):
    st = station(base, tmp_path)
    (st / "journal.log").write_bytes(b"")
    if checkpoint == "deleted":
        (st / "checkpoint.cbor").unlink()
    code, report = status(st)
    assert code == 1 and not report["usable"] and report["problems"]
    assert any("journal" in p for p in report["problems"]), report["problems"]
    done = run(st, "keygen", "x", *officers_args(*TWO), pins=pins_of(*TWO))
    assert done.returncode == 1 and "station is stopped" in done.stderr, said(done)
    assert (st / "journal.log").read_bytes() == b""


def test_start_over_refuses_to_wipe_a_station_whose_journal_was_emptied(base, tmp_path):
    st = station(base, tmp_path)
    (st / "journal.log").write_bytes(b"")
    (st / "checkpoint.cbor").unlink()
    signing_files = token_dir(st, SIGNING)
    done = run(st, "init", "--demo", "--start-over", pins=["n1n1", "n2n2", "n3n3", "a1a1", "a2a2"])
    assert signing_files.exists(), "the signing token (with key 'hot') was wiped"
    assert done.returncode != 0


@pytest.mark.parametrize("checkpoint", ["current", "matching older"])
def test_an_older_journal_copy_refuses_re_signing(base, tmp_path, checkpoint):
    st = station(base, tmp_path)
    shutil.copy2(base.before_r1 / "journal.log", st / "journal.log")
    if checkpoint == "matching older":
        shutil.copy2(base.before_r1 / "checkpoint.cbor", st / "checkpoint.cbor")
    older = len(entries(st)) - 1  # the copy's last seq
    done, out, before = _resign_r1(base, st, tmp_path)
    assert_nothing_signed(done, out, st, before)
    head = len(entries(base.state)) - 1
    assert older < head
    assert f"the journal ends at seq {older}, but" in done.stderr, done.stderr
    assert f"holds its head at seq {head}" in done.stderr


@pytest.mark.xfail(
    strict=True,
    reason="WEAKNESS (SoftHSM2: token files on the medium): officer "
    "tokens anchor the head they saw *before* the ceremony's own records, so if "
    "the signing token's files are rolled back with journal.log, no officer "
    "anchor is ahead and the last approved request is signed a second time",
)
def test_officer_anchors_catch_a_rollback_of_the_last_ceremony(base, tmp_path):
    st = station(base, tmp_path)
    for name in ("journal.log", "checkpoint.cbor"):
        shutil.copy2(base.before_r1 / name, st / name)
    target = token_dir(st, SIGNING)
    shutil.rmtree(target)
    shutil.copytree(base.before_r1 / "signing-token", target)
    done, out, _ = _resign_r1(base, st, tmp_path)
    assert done.returncode == 1 and not out.exists(), said(done)


def test_a_damaged_or_deleted_checkpoint_only_costs_time(base, tmp_path):
    st = station(base, tmp_path)
    path = st / "checkpoint.cbor"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    code, report = status(st)
    assert code == 0 and report["usable"], report
    assert any("checkpoint not used" in n for n in report["notes"])
    path.unlink()
    code, report = status(st)
    assert code == 0 and report["usable"] and report["journal_length"] == len(entries(st))
    done, out = sign(st, tmp_path, build_request(base.keys["hot"]), "fresh")
    assert ok(done) and out.exists()


@pytest.mark.parametrize(
    "field, value",
    [("seq", 1.5), ("offset", -1), ("last_offset", 2**70), ("last_sha256", "text"), ("head", None)],
)
def test_a_checkpoint_with_hostile_field_types_only_costs_time(base, tmp_path, field, value):
    st = station(base, tmp_path)
    path = st / "checkpoint.cbor"
    plain = cbor2.loads(path.read_bytes())
    plain["checkpoint"][field] = value
    path.write_bytes(cbor2.dumps(plain))
    code, report = status(st)
    assert code == 0 and report["usable"], report
    assert any("checkpoint not used" in n for n in report["notes"]), report["notes"]


def test_an_oversized_checkpoint_is_refused_without_being_read_whole(base, tmp_path, monkeypatch):
    """A checkpoint file padded past the bound is named, and only the bound is read."""
    st = station(base, tmp_path)
    path = st / "checkpoint.cbor"
    genuine = path.read_bytes()
    monkeypatch.setattr(checkpoint_module, "MAX_CHECKPOINT_BYTES", len(genuine) - 1)
    with pytest.raises(checkpoint_module.CheckpointError, match="is larger than"):
        checkpoint_module.read_checkpoint(path, b"", "any")  # refused before any key is used
    monkeypatch.setattr(checkpoint_module, "MAX_CHECKPOINT_BYTES", len(genuine))
    with pytest.raises(checkpoint_module.CheckpointError, match=r"appliance|signature"):
        checkpoint_module.read_checkpoint(path, b"", "any")  # at the bound: read, then judged


def test_an_edited_record_after_the_checkpoint_stops_the_station(base, tmp_path):
    st = station(base, tmp_path)
    index = next(i for i, e in enumerate(entries(st)) if e.record.event == "key_archived")
    assert (checkpoint_seq(st) or -1) < index
    edit_record(st, index, b"\x64arch", b"\x64hot_")  # CRC fixed up: only the signature can tell
    code, report = status(st)
    assert code == 1
    assert any(
        f"record at position {index} does not verify" in p and "journal.log" in p
        for p in report["problems"]
    ), report["problems"]
    done, out, _before = _resign_r1(base, st, tmp_path)
    assert done.returncode == 1 and not out.exists() and "station is stopped" in done.stderr


def test_recovery_does_not_discard_valid_records_after_an_edited_one(base, tmp_path):
    st = station(base, tmp_path)
    index = next(i for i, e in enumerate(entries(st)) if e.record.event == "key_archived")
    edit_record(st, index, b"\x64arch", b"\x64hot_")
    length = len(entries(st))
    done = run(
        st,
        "journal",
        "recover",
        *officers_args(*TWO),
        "--admins",
        ",".join(ADMINS),
        pins=pins_of(*TWO, *ADMINS),
    )
    assert done.returncode == 1 and "restore" in done.stderr, said(done)
    assert len(entries(st)) == length


def test_an_edited_record_before_the_checkpoint_is_named_by_verify_and_blocks_the_export(
    base, tmp_path
):
    """Opening reads only the checkpoint's last frame and what follows (its cost does not
    grow with the journal); an edit further back changes no decision (they come from the
    signed checkpoint) and is named by `journal verify`, which every ceremony starts with,
    and by the export, which refuses to hand such a journal to the auditors."""
    st = station(base, tmp_path)
    seq = checkpoint_seq(st)
    assert seq is not None and seq >= 3
    edit_record(st, 3, b"officer-", b"officeR-")
    verify = run(st, "journal", "verify")
    assert verify.returncode == 1 and "seq 3" in said(verify), said(verify)
    export = run(
        st,
        "journal",
        "export",
        "--out",
        str(tmp_path / "j.cbor"),
        *officers_args(*TWO),
        pins=pins_of(*TWO),
    )
    assert export.returncode == 1 and "does not verify" in export.stderr, said(export)
    assert not (tmp_path / "j.cbor").exists()


# -- 5. time ---------------------------------------------------------------------------------


def _faketime_env(offset: str) -> dict[str, str]:
    found = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
    if not found:
        pytest.skip("libfaketime is not installed (apt-get install -y faketime)")
    return {**os.environ, "LD_PRELOAD": found[0], "FAKETIME": offset}


def test_a_clock_behind_the_journal_refuses_to_sign(base, tmp_path):
    """The station clock set back a day (libfaketime, real CLI): a fresh daily allowance is
    what it would give; the station refuses to review or sign at all."""
    st = station(base, tmp_path)
    last = entries(st)[-1].record
    env = _faketime_env("-1d")
    done, out, before = attempt(st, tmp_path, build_request(base.keys["hot"]), "late", env=env)
    assert_nothing_signed(done, out, st, before)
    assert "behind the journal's last record" in done.stderr
    assert f"seq {last.seq}" in done.stderr and str(last.time) in done.stderr
    keygen = run(st, "keygen", "x", *officers_args(*TWO), pins=pins_of(*TWO), env=env)
    assert keygen.returncode == 1 and "behind the journal" in keygen.stderr


@pytest.mark.parametrize(
    ("name", "kwargs", "fragment"),
    [
        ("ten years ahead", {"created_delta": 10 * 365 * 86400}, "future_request"),
        ("locktime beyond the tip", {"locktime": 800_001, "tip_height": 800_000}, "timelock"),
        ("locktime without a tip", {"locktime": 800_000}, "timelock"),
        ("relative lock", {"sequence": 10}, "relative lock"),
    ],
)
def test_time_and_lock_attacks_are_refused(base, tmp_path, name, kwargs, fragment):
    st = station(base, tmp_path)
    data = build_request(base.keys["hot"], **kwargs)
    done, out, before = attempt(st, tmp_path, data, "r")
    assert_nothing_signed(done, out, st, before)
    assert "nothing signed" in done.stderr and fragment in done.stderr, done.stderr
    record = decisions(st)[-1].record
    assert record.decision == "refused"
    assert record.details["request_id"] == read_request(Psbt.from_text(data)).request_id


def test_the_headless_review_shows_the_locktime(base, tmp_path):
    st = station(base, tmp_path)
    data = build_request(base.keys["hot"], locktime=800_000, tip_height=800_000)
    done, out = sign(st, tmp_path, data, "r")
    assert ok(done) and out.exists()
    assert "800000" in done.stdout and "locktime" in done.stdout.lower()


# -- 6. pin-wallet ----------------------------------------------------------------------------


def test_pin_wallet_abuses_are_refused(base, tmp_path):
    st = station(base, tmp_path)
    hot, arch, audit = base.keys["hot"], base.keys["arch"], base.keys["coldstation-audit"]
    mallory = foreign_key()
    two, admins = officers_args(*TWO), ["--admins", ",".join(ADMINS)]
    with_admins = pins_of(*ADMINS, *TWO)
    pinned = status(st)[1]["pinned_wallets"]

    def pin(descriptor: Descriptor | str, *extra: str, pins: list[str]):
        return run(st, "pin-wallet", str(descriptor), *two, *extra, pins=pins)

    trap = wsh_multi(1, hot, mallory)
    for extra, pins in (((), pins_of(*TWO)), (admins, with_admins)):
        done = pin(trap, *extra, pins=pins)
        assert (
            done.returncode == 1
            and "1-of-2" in done.stderr
            and "can spend without this station" in done.stderr
        ), said(done)
    done = pin(f"wpkh({audit.hex()})", *admins, pins=with_admins)
    assert done.returncode == 1 and "audit key" in done.stderr, said(done)
    done = pin(wsh_multi(2, hot, arch), *admins, pins=with_admins)
    assert done.returncode == 1 and "two of this station's keys" in done.stderr, said(done)
    done = pin(f"sh(wpkh({hot.hex()}))", pins=pins_of(*TWO))  # officers alone, own key
    assert done.returncode == 1 and "needs 2 administrators" in done.stderr, said(done)
    assert status(st)[1]["pinned_wallets"] == pinned

    partner = wsh_multi(2, hot, mallory)  # this station's signature is required: pinnable
    ok(pin(partner, *admins, pins=with_admins))
    record = entries(st)[-1].record
    assert record.event == "wallet_pinned" and record.details["authorised_by"] == "administrators"
    noadmin = run(st, "unpin-wallet", str(partner), *two, pins=pins_of(*TWO))
    assert noadmin.returncode == 2 and "--admins" in noadmin.stderr
    one = run(
        st, "unpin-wallet", str(partner), *two, "--admins", "admin-1", pins=pins_of("admin-1", *TWO)
    )
    assert one.returncode == 1 and "needs 2 administrators" in one.stderr, said(one)
    assert str(partner) in status(st)[1]["pinned_wallets"]

    ok(run(st, "suspend", "hot", *two, pins=pins_of(*TWO)))
    done = pin(wsh_multi(2, hot, foreign_key("carol")), *admins, pins=with_admins)
    assert done.returncode == 1 and "'hot' is suspended" in done.stderr, said(done)


# -- 7. a revoked officer's share after the re-key ----------------------------------------------


def test_revoked_officers_old_shares_rebuild_a_pin_the_token_refuses(revoked):
    """Before the revocation the old shares opened the token (a colluding quorum, plain
    python-pkcs11); after it, the PIN and the SO PIN they rebuild are refused."""
    assert revoked["usable_before"], "control: the old shares did rebuild the old PIN"
    old, old_pin = revoked["old"], revoked["old_pin"]
    st = revoked["state"]
    rekey = next(e for e in entries(st) if e.record.event == "pin_rekeyed").record.details
    with token_library(st) as lib:
        assert login_fails(lib, SIGNING, user_pin=old_pin)
        assert login_fails(lib, SIGNING, so_pin=so_pin_for(old_pin))
        for pair in (("officer-2", "officer-3"), ("officer-1", "officer-2")):
            pin = shamir_mnemonic.combine_mnemonics([old[o][0] for o in pair]).hex()
            assert login_fails(lib, SIGNING, user_pin=pin)
        new = {
            o: [
                s
                for s in read_share_objects(lib, o, PINS[o])
                if shamir_mnemonic.Share.from_mnemonic(s).identifier == rekey["share_identifier"]
            ]
            for o in TWO
        }
        assert all(len(shares) == 1 for shares in new.values())
        with pytest.raises(shamir_mnemonic.MnemonicError):
            shamir_mnemonic.combine_mnemonics([old["officer-3"][0], new["officer-1"][0]])
        new_pin = shamir_mnemonic.combine_mnemonics([new[o][0] for o in TWO]).hex()
        assert not login_fails(lib, SIGNING, user_pin=new_pin)  # control: the new one opens


# -- 8. no secret on a command line -------------------------------------------------------------


def test_no_pin_in_any_process_cmdline_or_environment_during_init(base):
    proc = base.proc
    assert proc["saw_cli"] >= 2, "the polling never saw the init process"
    assert proc["leaks"] == []
    assert "softhsm2-util" not in proc["programs"]


# -- 9. the backup KEK ------------------------------------------------------------------------


def test_no_kek_in_the_signing_token_after_backup_or_restore(base, tmp_path):
    st = station(base, tmp_path, "a")
    target = clone(base.state, tmp_path / "b")
    two, pins = officers_args(*TWO), pins_of(*TWO)
    shares, other = new_kek_shares(2, 3), new_kek_shares(2, 3)
    ok(run(st, "keygen", "bk", "--backup-model", "wrap-with-trusted", *two, pins=pins))

    def no_kek(state: Path) -> None:
        with token_library(state) as lib:
            assert secret_keys(lib) == []

    blob = tmp_path / "bk.blob"
    short = run(
        st, "backup", "bk", "--out", str(blob), "--kek-shares", "1", *two, pins=[*pins, shares[0]]
    )
    assert short.returncode == 1 and "fewer shares than the threshold" in short.stderr
    no_kek(st)
    ok(
        run(
            st,
            "backup",
            "bk",
            "--out",
            str(blob),
            "--kek-shares",
            "2",
            *two,
            pins=[*pins, *shares[:2]],
        )
    )
    assert blob.exists()
    no_kek(st)
    public_key = key_of(st, "bk").hex()
    wrong = run(
        target,
        "restore",
        str(blob),
        "--label",
        "bk",
        "--public-key",
        public_key,
        "--kek-shares",
        "2",
        *two,
        pins=[*pins, *other[:2]],
    )
    assert wrong.returncode == 1, said(wrong)
    no_kek(target)
    ok(
        run(
            target,
            "restore",
            str(blob),
            "--label",
            "bk",
            "--public-key",
            public_key,
            "--kek-shares",
            "2",
            *two,
            pins=[*pins, *shares[1:]],
        )
    )
    no_kek(target)

    # a KEK left behind (a crash, or planted through a PIN-less session) dies at the next open
    with token_library(target) as lib:
        with lib.get_token(token_label=SIGNING).open(rw=True) as session:
            session.create_object(
                {
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.KEY_TYPE: KeyType.AES,
                    Attribute.TOKEN: True,
                    Attribute.PRIVATE: False,
                    Attribute.LABEL: KEK_LABEL,
                    Attribute.VALUE: os.urandom(32),
                }
            )
        assert secret_keys(lib) == [KEK_LABEL]
    code, report = status(target)
    assert code == 0 and any("destroyed 1 backup KEK" in n for n in report["notes"]), report
    no_kek(target)


# -- more: the state medium and a quorum without administrators --------------------------------


def test_editing_the_appliance_id_does_not_reset_pin_lockouts(base, tmp_path):
    """The PIN counters are kept per appliance id: the journal's, never appliance.json's.
    An edited id stops the station, naming the file; put back, the lockout is still there."""
    st = station(base, tmp_path)
    lock_out(st)
    original = (st / "appliance.json").read_text()
    config = json.loads(original)
    config["appliance_id"] = "cs-000000000000"
    (st / "appliance.json").write_text(json.dumps(config))
    code, report = status(st)
    assert code == 1 and any("appliance.json" in p for p in report["problems"])
    done = run(
        st,
        "keygen",
        "x",
        *officers_args("officer-1", "officer-3"),
        pins=pins_of("officer-1", "officer-3"),
    )
    assert done.returncode == 1 and "station is stopped" in done.stderr, said(done)
    (st / "appliance.json").write_text(original)
    again = run(
        st,
        "keygen",
        "x",
        *officers_args("officer-1", "officer-3"),
        pins=pins_of("officer-1", "officer-3"),
    )
    assert again.returncode == 1 and "locked out" in again.stderr, said(again)


def test_signing_token_label_swapped_in_appliance_json_is_named(base, tmp_path):
    st = station(base, tmp_path)
    config = json.loads((st / "appliance.json").read_text())
    config["signing_token"] = "officer-2"
    (st / "appliance.json").write_text(json.dumps(config))
    done = run(st, "status")
    assert done.returncode == 1 and "signing token" in said(done), said(done)
    assert not json.loads(done.stdout)["usable"]
    keygen = run(st, "keygen", "x", *officers_args(*TWO), pins=pins_of(*TWO))
    assert keygen.returncode == 1 and "station is stopped" in keygen.stderr, said(keygen)


@pytest.mark.xfail(
    strict=True,
    reason="WEAKNESS: a quorum of officers without administrators "
    "reads its shares off its own tokens, rebuilds the activation PIN with plain "
    "python-pkcs11 and has the station's key sign any digest: no review, no "
    "policy, no journal record (issue 12 says a rogue quorum stays bound by the "
    "policy; only revoked officers were fixed)",
)
def test_a_quorum_without_administrators_cannot_sign_outside_the_ceremony(base, tmp_path):
    st = station(base, tmp_path)
    length = len(entries(st))
    digest = hashlib.sha256(b"50 BTC to mallory, no policy, no journal").digest()
    with token_library(st) as lib:
        shares = [read_share_objects(lib, o, PINS[o])[0] for o in TWO]
        pin = shamir_mnemonic.combine_mnemonics(shares).hex()
        try:
            session = lib.get_token(token_label=SIGNING).open(user_pin=pin)
        except pkcs11.exceptions.PKCS11Error:
            return  # the shares alone no longer open the token
        with session:
            key = next(
                session.get_objects(
                    {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: "hot"}
                )
            )
            der = ecdsa.der_from_raw(key.sign(digest, mechanism=Mechanism.ECDSA))
    assert len(entries(st)) == length  # nothing was journaled either way
    assert not ecdsa.verify(base.keys["hot"], der, digest), "signed outside any ceremony"


def test_rejected_pending_files_never_leave_the_medium(base, tmp_path):
    st = station(base, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (st / "pending").mkdir(exist_ok=True)
    (st / "pending" / "rejected").symlink_to(outside)
    (st / "pending" / "000000000001-payload.cbor").write_bytes(b"#!/bin/sh\necho owned\n")
    run(st, "keygen", "after", *officers_args(*TWO), pins=pins_of(*TWO))
    assert not (outside / "000000000001-payload.cbor").exists()
