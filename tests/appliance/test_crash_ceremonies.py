"""Kill every ceremony right after each of its irreversible effects, then run it again.

The rule (DESIGN 9, issue 12): intent is journaled before any effect that cannot be taken
back, so a crash at any instant leaves a state that a rerun completes, with nothing lost
and nothing done twice. Each ceremony runs under tests/appliance/crashpoint.py, which makes
the process die right after its N-th effect (journal append, token object, key pair, KEK,
PIN change, share, file on the medium), for N = 1, 2, ... until the ceremony finishes
without dying. After each crash the same command is run again, plainly; then the
ceremony's effect must be there exactly once, the station usable, no backup KEK left in
the signing token, the journal intact, and its replay by the auditors' code clean.

A crash-free station is cloned for every case: in demo mode its SoftHSM2 tokens live in
its state directory, so a copy is an independent station.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared import canonical
from shared.psbt import Psbt, extract, finalize
from shared.request import read_receipts
from shared.station import StationState, transcript_outpoints
from tests.appliance.conftest import softhsm_available
from tests.appliance.medium_tools import replay_findings
from tests.appliance.test_ceremonies_cli import ADMIN_PINS, OFFICER_PINS, run
from tests.appliance.test_signing_cli import request
from tests.kernel import verify_all

ROOT = Path(__file__).resolve().parents[2]
TWO = ["--officers", "officer-1,officer-2"]
TWO_PINS = ["1111", "2222"]
ADMINS = ["--admins", "admin-1,admin-2"]
KILLED = 137

pytestmark = pytest.mark.skipif(not softhsm_available(), reason="SoftHSM2 is not installed")


def crash(
    state: Path, limit: int, *args: str, pins: list[str], fail: bool = False
) -> subprocess.CompletedProcess:
    """The CLI, dying right after its ``limit``-th effect (with ``fail``: that effect
    raises OSError instead; see crashpoint.py)."""
    read, write = os.pipe()
    os.write(write, "".join(f"{p}\n" for p in pins).encode())
    os.close(write)
    try:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.appliance.crashpoint",
                str(limit),
                *(["--fail"] if fail else []),
                "--",
                "--state",
                str(state),
                "--pin-fd",
                str(read),
                *args,
            ],
            pass_fds=(read,),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=ROOT,
        )
    finally:
        os.close(read)


def events(state: Path) -> list:
    """The journal's records, read straight from the file (no PIN, no station logic, and
    no lock: another thread's subprocess may briefly hold a copy of a locked descriptor)."""
    from appliance.journal_store import read_payloads
    from shared.journal import Entry

    path = state / "journal.log"
    if not path.exists():  # a crash before init created it
        return []
    return [Entry.from_bytes(raw).record for raw in read_payloads(path)]


SPARE = ("spare-token", "spare-so-9876", "spare-user-5432")  # label, SO PIN, user PIN


def token_script(state: Path, code: str) -> str:
    """Run ``code`` against the station's SoftHSM2 store in a fresh process (``hsm``)."""
    prelude = (
        "import sys\nfrom pathlib import Path\nfrom appliance import softhsm\n"
        "from appliance.hsm import Hsm\nsofthsm.configure(Path(sys.argv[1]))\nhsm = Hsm()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", prelude + code, str(state)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def spare_objects(state: Path) -> list[str]:
    """Every object on the spare token, as (class, label), seen with its user PIN."""
    label, _, user = SPARE
    return json.loads(
        token_script(
            state,
            "import json\nfrom pkcs11 import Attribute\n"
            f"t = hsm.token(label={label!r})\n"
            f"with t.open(user_pin={user!r}) as s:\n"
            "    print(json.dumps(sorted(f'{o[Attribute.CLASS]}:{o[Attribute.LABEL]}' "
            "for o in s.get_objects())))",
        )
    )


def kek_left(state: Path) -> bool:
    """Is a backup KEK in the signing token? Asked without a PIN, in a fresh process."""
    code = (
        "import sys\nfrom pathlib import Path\nfrom appliance import softhsm\n"
        "from appliance.hsm import Hsm\nfrom appliance.backup import kek_present\n"
        "softhsm.configure(Path(sys.argv[1]))\n"
        "print(kek_present(Hsm(), 'coldstation-signing'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(state)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return done.stdout.strip() == "True"


@dataclass
class Ceremony:
    args: Callable[[dict], list[str]]
    pins: Callable[[dict], list[str]]
    done: Callable[[Path, dict], None]  # the effect is there exactly once (cheap: the file)
    works: Callable[[Path, dict], None]  # and the station acts on it (slower: more CLI runs)
    on: str = "a"  # which base station
    kek: bool = False  # the ceremony puts the backup KEK in the token


# -- the stations -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict:
    """Two crash-free stations and everything the ceremonies below need."""
    root = tmp_path_factory.mktemp("crash")
    a, b = root / "a", root / "b"
    for state in (a, b):
        done = run(state, "init", "--demo", pins=[*OFFICER_PINS.values(), *ADMIN_PINS.values()])
        assert done.returncode == 0, done.stderr
    for label, model in (("k1", "non-extractable"), ("w", "wrap-with-trusted")):
        done = run(a, "keygen", label, "--backup-model", model, *TWO, pins=TWO_PINS)
        assert done.returncode == 0, done.stderr
    assert (
        run(a, "export-wallet", "k1", "--out", str(root / "export"), *TWO, pins=TWO_PINS).returncode
        == 0
    )
    status = json.loads(run(a, "status").stdout)
    keys = {k["label"]: k["public_key"] for k in status["keys"]}
    shares = [
        line.split(":", 1)[1].strip()
        for line in run(a, "kek", "new-shares", "--shares", "2,3").stdout.splitlines()
    ]
    blob = root / "w.blob"
    done = run(
        a,
        "backup",
        "w",
        "--out",
        str(blob),
        "--kek-shares",
        "2",
        *TWO,
        pins=[*TWO_PINS, *shares[:2]],
    )
    assert done.returncode == 0, done.stderr
    draft, signed = root / "draft.cbor", root / "signed.cbor"
    officer_3 = next(
        fp for fp, label in status["appliance"]["officer_tokens"].items() if label == "officer-3"
    )
    assert run(a, "policy", "draft", "--revoke", officer_3, "-o", str(draft)).returncode == 0
    assert (
        run(
            a,
            "policy",
            "sign",
            str(draft),
            *ADMINS,
            "-o",
            str(signed),
            pins=list(ADMIN_PINS.values()),
        ).returncode
        == 0
    )
    for attempt in range(3):  # officer-3 locked out on B, for the lockout reset
        run(b, "keygen", "x", "--officers", "officer-1,officer-3", pins=["1111", f"bad{attempt}"])
    token_script(a, f"hsm.init_token({SPARE[0]!r}, {SPARE[1]!r}, {SPARE[2]!r})")
    req = root / "request.psbt"
    data, spent = request(bytes.fromhex(keys["k1"]))
    req.write_bytes(data)
    multisig = f"wsh(multi(2,{keys['k1']},{_point()}))"  # k1 and a cosigner's key
    return {
        "a": a,
        "b": b,
        "keys": keys,
        "shares": shares,
        "blob": blob,
        "signed": signed,
        "request": req,
        "spent": spent,
        "multisig": multisig,
        "root": root,
    }


def _point() -> str:
    from coincurve import PrivateKey

    return PrivateKey(b"\x07" * 32).public_key.format().hex()


def _count(state: Path, event: str, **details: object) -> int:
    return sum(
        1
        for r in events(state)
        if r.event == event and all(r.details.get(k) == v for k, v in details.items())
    )


# -- what "done exactly once" means for each ceremony -------------------------------------


def _keygen_done(state: Path, _: dict) -> None:
    assert _count(state, "key_generated", label="k9") == 1


def _keygen_works(state: Path, _: dict) -> None:
    again = run(state, "keygen", "k9", *TWO, pins=TWO_PINS)
    assert again.returncode == 1 and "already exists" in again.stderr
    out = state.parent / "k9-export"
    assert run(state, "export-wallet", "k9", "--out", str(out), *TWO, pins=TWO_PINS).returncode == 0


def _seed_done(state: Path, _: dict) -> None:
    records = [r for r in events(state) if r.event == "key_generated"]
    seeds = [r for r in records if r.details.get("label") == "s9"]
    assert len(seeds) == 1 and seeds[0].details["key_model"] == "bip32-seed"


def _seed_works(state: Path, _: dict) -> None:
    """The rerun adopted the seed the crash left (or made it once): the export names the
    journaled account, and the key signs (tests/appliance/test_bip32_keys.py)."""
    record = next(
        r for r in events(state) if r.event == "key_generated" and r.details.get("label") == "s9"
    )
    out = state.parent / "s9-export"
    assert run(state, "export-wallet", "s9", "--out", str(out), *TWO, pins=TWO_PINS).returncode == 0
    assert record.details["xpub"] in (out / "wallet.descriptor").read_text()


def _backup_done(state: Path, ctx: dict) -> None:
    """The base's own backup and this one; a crash after the record but before the blob
    reached the file makes the rerun wrap (and journal) again: the same blob, since AES key
    wrap is deterministic under one KEK."""
    assert 2 <= _count(state, "backup", label="w") <= 3
    assert (state.parent / "again.blob").read_bytes() == ctx["blob"].read_bytes()


def _nothing_more(state: Path, ctx: dict) -> None:
    """The cheap check says it all."""


def _restore_done(state: Path, ctx: dict) -> None:
    records = [r for r in events(state) if r.event == "restore"]
    assert len(records) == 1
    assert records[0].subjects["public_key"].hex() == ctx["keys"]["w"]


def _restore_works(state: Path, ctx: dict) -> None:
    keys = {k["label"]: k["public_key"] for k in json.loads(run(state, "status").stdout)["keys"]}
    assert keys["w"] == ctx["keys"]["w"]


def _rekey_done(state: Path, _: dict) -> None:
    assert _count(state, "pin_rekeyed") == 1
    assert _count(state, "policy_installed") == 2


def _rekey_works(state: Path, _: dict) -> None:
    ok = run(state, "keygen", "after", *TWO, pins=TWO_PINS)
    assert ok.returncode == 0, ok.stderr
    revoked = run(
        state, "keygen", "nope", "--officers", "officer-1,officer-3", pins=["1111", "3333"]
    )
    assert revoked.returncode == 1 and "revoked" in revoked.stderr


def _reset_done(state: Path, _: dict) -> None:
    """The reset waits in pending/ for the next activation: officer-3 takes part in one."""
    label = f"after-{len(events(state))}"
    ok = run(state, "keygen", label, "--officers", "officer-1,officer-3", pins=["1111", "3333"])
    assert ok.returncode == 0, ok.stderr
    assert 1 <= _count(state, "pin_lockout") <= 2  # one per reset the admins signed


def _backup_test_done(state: Path, ctx: dict) -> None:
    """A crash after the result was journaled makes the rerun test again: one or two."""
    results = [r.details["result"] for r in events(state) if r.event == "backup_tested"]
    assert 1 <= len(results) <= 2 and set(results) == {"ok"}, results


def _backup_test_works(state: Path, ctx: dict) -> None:
    """Nothing is left on the spare token: no KEK, no restored key (the rerun cleared
    whatever the crash left), and the key registry never heard of it."""
    assert spare_objects(state) == []
    keys = [k["label"] for k in json.loads(run(state, "status").stdout)["keys"]]
    assert sorted(keys) == ["coldstation-audit", "k1", "w"]


def _pin_done(state: Path, ctx: dict) -> None:
    records = [r for r in events(state) if r.event == "wallet_pinned"]
    assert len(records) == 1 and records[0].details["authorised_by"] == "administrators"


def _pin_works(state: Path, ctx: dict) -> None:
    status = json.loads(run(state, "status").stdout)
    assert len(status["pinned_wallets"]) == 2


def _sign_done(state: Path, ctx: dict) -> None:
    approvals = [
        r for r in events(state) if r.event == "signing_decision" and r.decision == "approved"
    ]
    assert len(approvals) == 1, "one approval, whatever the crash"


def _sign_works(state: Path, ctx: dict) -> None:
    signed = Psbt.parse((state.parent / "signed.psbt").read_bytes())
    assert len(read_receipts(signed)) == 1
    assert verify_all(extract(finalize(signed).psbt), ctx["spent"]) == [True]
    again = run(
        state,
        "sign",
        "--in",
        str(ctx["request"]),
        "--out",
        str(state.parent / "third.psbt"),
        *TWO,
        pins=TWO_PINS,
    )
    assert again.returncode == 0 and "shown again" in again.stdout, again.stderr


def _suspend_done(state: Path, _: dict) -> None:
    assert _count(state, "key_suspended", label="k1") == 1


def _suspend_works(state: Path, _: dict) -> None:
    keys = {k["label"]: k["state"] for k in json.loads(run(state, "status").stdout)["keys"]}
    assert keys["k1"] == "suspended"


CEREMONIES: dict[str, Ceremony] = {
    "keygen": Ceremony(
        lambda c: ["keygen", "k9", *TWO], lambda c: TWO_PINS, _keygen_done, _keygen_works
    ),
    "keygen-bip32": Ceremony(
        lambda c: ["keygen", "s9", "--key-model", "bip32-seed", *TWO],
        lambda c: TWO_PINS,
        _seed_done,
        _seed_works,
    ),
    "backup": Ceremony(
        lambda c: [
            "backup",
            "w",
            "--out",
            str(c["state"].parent / "again.blob"),
            "--kek-shares",
            "2",
            *TWO,
        ],
        lambda c: [*TWO_PINS, *c["shares"][1:]],
        _backup_done,
        _nothing_more,
        kek=True,
    ),
    "restore": Ceremony(
        lambda c: [
            "restore",
            str(c["blob"]),
            "--label",
            "w",
            "--public-key",
            c["keys"]["w"],
            "--kek-shares",
            "2",
            *TWO,
        ],
        lambda c: [*TWO_PINS, *c["shares"][:2]],
        _restore_done,
        _restore_works,
        on="b",
        kek=True,
    ),
    "backup-test": Ceremony(
        lambda c: ["backup-test", str(c["blob"]), "--token", SPARE[0], *TWO],
        lambda c: [*TWO_PINS, SPARE[1], SPARE[2], *c["shares"][1:]],
        _backup_test_done,
        _backup_test_works,
    ),
    "policy-install-rekey": Ceremony(
        lambda c: ["policy", "install", str(c["signed"]), *TWO],
        lambda c: TWO_PINS,
        _rekey_done,
        _rekey_works,
    ),
    "reset-lockout": Ceremony(
        lambda c: ["reset-lockout", "officer-3", *ADMINS],
        lambda c: list(ADMIN_PINS.values()),
        _reset_done,
        _nothing_more,
        on="b",
    ),
    "pin-wallet": Ceremony(
        lambda c: ["pin-wallet", c["multisig"], *ADMINS, *TWO],
        lambda c: [*ADMIN_PINS.values(), *TWO_PINS],
        _pin_done,
        _pin_works,
    ),
    "sign": Ceremony(
        lambda c: [
            "sign",
            "--in",
            str(c["request"]),
            "--out",
            str(c["state"].parent / "signed.psbt"),
            *TWO,
        ],
        lambda c: TWO_PINS,
        _sign_done,
        _sign_works,
    ),
    "suspend": Ceremony(
        lambda c: ["suspend", "k1", *TWO], lambda c: TWO_PINS, _suspend_done, _suspend_works
    ),
}


def _fold(state: Path) -> StationState:
    """The journal folded with the station's own rules, read straight from the file (an
    approval's inputs from the transcript it names, as the station reads them)."""
    folded = StationState()
    for record in events(state):
        inputs = None
        if record.event == "signing_decision" and record.decision == "approved":
            name = record.subjects["transcript"].hex()
            plain = canonical.decode(
                (state / "transcripts" / f"{name}.cbor").read_bytes(), max_size=1 << 26
            )
            inputs = transcript_outpoints(plain)
        folded.apply(record, record.hash(), inputs)
    return folded


def _crash_and_rerun(bases: dict, ceremony: Ceremony, limit: int, case: Path, deep: bool) -> str:
    """One crash point: die after effect ``limit``, rerun, check; returns where it died."""
    state = case / "station"
    shutil.copytree(bases[ceremony.on], state, symlinks=True)
    ctx = {**bases, "state": state}
    args, pins = ceremony.args(ctx), ceremony.pins(ctx)
    died = crash(state, limit, *args, pins=pins)
    assert died.returncode == KILLED, f"crash point {limit}: {died.stderr}"
    where = died.stderr.strip().splitlines()[-1]
    kek = ceremony.kek and kek_left(state)  # a crash may leave it; the next open destroys it
    rerun = run(state, *args, pins=pins)
    completed = rerun.returncode == 0 or "already" in rerun.stderr
    assert completed, f"crash after effect {limit} ({where}): {rerun.stderr}"
    if ceremony.kek:
        assert not kek_left(state), f"after {where}: a KEK is left in the token"
    assert not _fold(state).intents, f"after {where}: an intent is left open"
    ceremony.done(state, ctx)
    if deep:  # the slower checks on a sample of the crash points
        status = json.loads(run(state, "status").stdout)
        assert status["usable"], (where, status["problems"])
        ceremony.works(state, ctx)
        assert replay_findings(state, case, TWO_PINS) == [], where
    shutil.rmtree(case)
    return where + (" (KEK left, then destroyed)" if kek else "")


@pytest.mark.parametrize("name", list(CEREMONIES))
def test_a_crash_after_any_effect_is_completed_by_a_rerun(bases, name, tmp_path):
    ceremony = CEREMONIES[name]
    whole = tmp_path / "whole" / "station"
    shutil.copytree(bases[ceremony.on], whole, symlinks=True)
    ctx = {**bases, "state": whole}
    counted = crash(whole, 0, *ceremony.args(ctx), pins=ceremony.pins(ctx))
    assert counted.returncode == 0, f"{name}: the uninterrupted run failed: {counted.stderr}"
    effects = int(counted.stderr.strip().splitlines()[-1].split()[1])
    assert effects >= 3, f"{name}: only {effects} effects: the harness found nothing"
    ceremony.done(whole, ctx)
    ceremony.works(whole, ctx)
    assert replay_findings(whole, tmp_path / "whole", TWO_PINS) == []
    with ThreadPoolExecutor(max_workers=2) as pool:  # each point is its own processes
        points = list(
            pool.map(
                lambda n: _crash_and_rerun(bases, ceremony, n, tmp_path / f"n{n}", n % 4 == 0),
                range(1, effects + 1),
            )
        )
    if ceremony.kek:
        assert any("KEK left" in p for p in points), f"{name}: no crash caught the KEK"
    print(
        f"\n{name}: {effects} crash points, each completed by a rerun: "
        + "; ".join(
            f"{n}: {p.split()[-1] if 'KEK' not in p else p}" for n, p in enumerate(points, 1)
        )
    )


def _init_point(limit: int, state: Path, pins: list[str]) -> None:
    """Init dies after effect ``limit``; the half-made station refuses everything but a
    start-over, which then succeeds (or, once init_completed is journaled, is refused)."""
    died = crash(state, limit, "init", "--demo", pins=pins)
    assert died.returncode == KILLED, died.stderr
    half_made = (state / "appliance.json").exists() and not _fold(state).init_complete
    if limit % 4 == 1 and half_made:  # a sample, for time
        refused = run(state, "keygen", "k", *TWO, pins=TWO_PINS)
        assert refused.returncode == 1, refused.stderr
        assert "start-over" in refused.stderr or "initialis" in refused.stderr
        again = run(state, "init", "--demo", pins=pins)
        assert again.returncode == 1 and "--start-over" in again.stderr
    started = run(state, "init", "--demo", "--start-over", pins=pins)
    if started.returncode == 1 and "already holds an appliance" in started.stderr:
        assert _fold(state).init_complete, f"crash {limit}: refused to start over"
    else:  # init_completed was journaled: the station is whole, never wiped
        assert started.returncode == 0, f"init after crash {limit}: {started.stderr}"
    assert _fold(state).init_complete
    if limit % 4 == 0:
        status = json.loads(run(state, "status").stdout)
        assert status["usable"], status["problems"]
    shutil.rmtree(state)


def test_a_failed_init_removes_what_it_made_and_a_plain_rerun_works(tmp_path):
    """An error init can see (the medium full, a token pulled) at effects across the
    ceremony: one line naming the station it removed, nothing left half-made, and ``init``
    runs again without ``--start-over``; after init_completed the station is kept whole."""
    pins = [*OFFICER_PINS.values(), *ADMIN_PINS.values()]
    counted = crash(tmp_path / "count", 0, "init", "--demo", pins=pins)
    effects = int(counted.stderr.strip().splitlines()[-1].split()[1])
    for limit in (1, effects // 3, 2 * effects // 3, effects - 1, effects):
        state = tmp_path / f"fail-{limit}"
        failed = crash(state, limit, "init", "--demo", pins=pins, fail=True)
        assert failed.returncode == 1, failed.stderr
        lines = failed.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in failed.stderr, failed.stderr
        if state.exists() and _fold(state).init_complete:  # failed after it was whole
            assert json.loads(run(state, "status").stdout)["usable"]
            continue
        assert "No space left on device" in lines[0] and "were removed" in lines[0]
        assert re.search(r"station cs-[0-9a-f]{12} ", lines[0])
        assert not state.exists()
        again = run(state, "init", "--demo", pins=pins)
        assert again.returncode == 0, again.stderr
        assert (
            json.loads(again.stdout)["appliance_id"]
            == json.loads((state / "appliance.json").read_text())["appliance_id"]
        )


def test_a_crash_during_init_leaves_a_station_that_refuses_until_started_over(tmp_path):
    pins = [*OFFICER_PINS.values(), *ADMIN_PINS.values()]
    whole = tmp_path / "whole"
    counted = crash(whole, 0, "init", "--demo", pins=pins)
    assert counted.returncode == 0, counted.stderr
    effects = int(counted.stderr.strip().splitlines()[-1].split()[1])
    assert effects >= 10
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(
            pool.map(lambda n: _init_point(n, tmp_path / f"init-{n}", pins), range(1, effects + 1))
        )
    finished = run(whole, "init", "--demo", "--start-over", pins=pins)
    assert finished.returncode == 1 and "already holds an appliance" in finished.stderr
