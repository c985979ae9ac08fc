"""The README and the runbooks, followed literally (issue 18: "every command block of the
runbooks and README runs in a test against a fresh state").

One team's first week, in a fresh folder: demo stations (SoftHSM2 tokens), stations
enrolled from a plan (tokens made beforehand, as docs/hardware.md has a trial station do),
a coordinator on a local regtest node, and a PostgreSQL store. Each step takes its command
line *from the docs* (found by its beginning in a named doc, so a renamed option or a
reworded line fails here), fills in only what a reader fills in (a placeholder, a file an
earlier step wrote, `regtest` for `mainnet`), and runs it for real, with PINs through
``--pin-fd`` as the runbooks say scripted runs do. Its exit code is checked, and so is
what it printed where the docs say what to read.

The last check is coverage: every command line the docs show either ran here or is listed
in ``NOT_RUN`` with the reason (a camera, or a screen: the TUI and the QR window are
driven by Textual's Pilot in tests/tui). Servers (``serve``, ``watch``) run in the
background until they answer. ``tests/unit/test_docs_commands.py`` still parses every
variant of every line.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from appliance.hsm import DEFAULT_MODULE
from shared.bitcoin.address import Network, script_to_address
from shared.requester import enrolment_json
from tests.appliance.test_crash_ceremonies import SPARE, token_script
from tests.docs import ROOT, DocCommand, blocks, commands, first_alternatives, variants
from tests.passkeys import SoftPasskey
from tests.postgres import fresh_database, postgres_server

KEY_CEREMONY = "docs/runbooks/key-ceremony.md"
SIGNING = "docs/runbooks/signing-ceremony.md"
AUDIT = "docs/runbooks/audit-replay.md"
WEB = "docs/runbooks/web.md"
README = "README.md"

OFFICERS = {"officer-1": "1111", "officer-2": "2222", "officer-3": "3333"}
ADMINS = {"admin-1": "ad11", "admin-2": "ad22"}
PINS = {**OFFICERS, **ADMINS}
ALICE = SoftPasskey("alice")

#: Lines the docs show that this test does not run, and why. Each must still be a line of
#: the docs (a stale entry fails), and each is parsed by tests/unit/test_docs_commands.py.
NOT_RUN = {
    (README, "$A sign --camera 0"): "needs a camera (the scan loop is tested on videos)",
    (SIGNING, "A sign --camera 0"): "needs a camera (the scan loop is tested on videos)",
    (SIGNING, "C batch import B-2025-07-01 camera:0"): "needs a camera",
    (README, "$A   "): "the TUI: tests/tui drives every screen with Textual's Pilot",
    (README, "$C batch show"): "an animated QR window: tests/tui",
    (SIGNING, "C batch show"): "an animated QR window: tests/tui",
}


class Runbook:
    """Runs the docs' command lines in ``root`` (the coordinator's default state folder
    is ``root/coldstation-coordinator``; ``STATE_DIR`` is ``root/station``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.station = root / "station"
        self.coordinator = root / "coldstation-coordinator"
        self.documented = commands()
        self.ran: set[DocCommand] = set()
        self.facts: dict[str, str] = {}  # what earlier steps printed that later ones need
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        bin_dir = str(Path(sys.executable).parent)
        self.env["PATH"] = f"{bin_dir}{os.pathsep}{self.env.get('PATH', '')}"

    def find(self, doc: str, start: str) -> DocCommand:
        """The doc's line that starts with ``start``; of several, the first not yet run."""
        found = [c for c in self.documented if c.doc == doc and c.text.startswith(start)]
        assert found, f"{doc}: no command line starts with {start!r}"
        return next((c for c in found if c not in self.ran), found[0])

    def block(self, doc: str, first_line: str) -> str:
        """A code block of the doc that is not a command (a CSV, a TOML snippet)."""
        found = [b for b in blocks((ROOT / doc).read_text()) if b and b[0] == first_line]
        assert len(found) == 1, f"{doc}: {len(found)} blocks start with {first_line!r}"
        return "\n".join(found[0]) + "\n"

    def run(
        self,
        doc: str,
        start: str,
        *,
        optional: bool = False,
        edits: dict[str, str] | None = None,
        pins: Sequence[str] = (),
        exit_code: int = 0,
        stdin: str | None = None,
        station: Path | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> str:
        """Run the documented line; ``optional`` puts its ``[...]`` parts in, ``edits``
        fill placeholders (each must occur in the line), ``station`` is another station's
        folder, ``env`` more environment. Returns what it printed (and, for an expected
        failure, its error too)."""
        command = self.find(doc, start)
        text = variants(command.text)[-1 if optional else 0]
        for old, new in (edits or {}).items():
            assert old in text, f"{doc}: {old!r} is not in {text!r}"
            text = text.replace(old, new)
        words = command.words(first_alternatives(text))
        assert words, text
        done = self._spawn(words, pins, stdin, station, cwd, env)
        self.ran.add(command)
        output = done.stdout + done.stderr
        assert done.returncode == exit_code, f"{doc}: {text}\n  exit {done.returncode}\n{output}"
        return done.stdout if exit_code == 0 else output

    def start(self, doc: str, start: str, edits: dict[str, str]) -> subprocess.Popen[str]:
        """A documented line that runs until stopped (a server), started in the background."""
        command = self.find(doc, start)
        text = variants(command.text)[-1]
        for old, new in edits.items():
            assert old in text, f"{doc}: {old!r} is not in {text!r}"
            text = text.replace(old, new)
        words = command.words(first_alternatives(text))
        assert words, text
        self.ran.add(command)
        return subprocess.Popen(
            self._argv(words, None, None),
            cwd=self.root,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def shell(self, argv: list[str], pins: Sequence[str] = (), exit_code: int | None = 0) -> str:
        """A glue step the docs describe in words (mine a block, pay a faucet); any exit
        code is accepted with ``exit_code=None``."""
        done = self._spawn(argv, pins, None, None, None, None)
        if exit_code is not None:
            assert done.returncode == exit_code, f"{argv}\n{done.stdout}{done.stderr}"
        return done.stdout

    def _argv(self, words: list[str], pin_fd: int | None, station: Path | None) -> list[str]:
        program, rest = words[0], list(words[1:])
        if "--state" in rest[:1]:
            rest = rest[2:]  # STATE_DIR, COORD_DIR, /var/lib/coldstation: ours instead
        if program == "coldstation-appliance":
            rest = [
                "--state",
                str(station or self.station),
                *(["--pin-fd", str(pin_fd)] if pin_fd else []),
                *rest,
            ]
        elif program == "coldstation-coordinator" and "--state" in words[1:2]:
            rest = ["--state", str(self.coordinator), *rest]
        for option in ("--password-fd", "--approvals"):  # FD: the pipe this test made
            if option in rest and pin_fd:
                rest[rest.index(option) + 1] = str(pin_fd)
        return [program, *rest]

    def _spawn(
        self,
        words: list[str],
        pins: Sequence[str],
        stdin: str | None,
        station: Path | None,
        cwd: Path | None,
        env: dict[str, str] | None,
    ) -> subprocess.CompletedProcess[str]:
        read, write = os.pipe()
        argv = self._argv(words, read if pins else None, station)
        os.write(write, "".join(f"{pin}\n" for pin in pins).encode())
        os.close(write)
        try:
            return subprocess.run(
                argv,
                start_new_session=True,  # no terminal: a password prompt reads stdin
                cwd=cwd or self.root,
                env={**self.env, **(env or {})},
                input=stdin,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
                pass_fds=(read,) if pins else (),
            )
        finally:
            os.close(read)


def pins_of(*names: str) -> list[str]:
    return [PINS[name] for name in names]


@pytest.fixture
def book(tmp_path: Path) -> Iterator[Runbook]:
    book = Runbook(tmp_path)
    yield book
    if (tmp_path / "rt").exists():
        subprocess.run(
            ["coldstation-coordinator", "regtest", "stop", "--datadir", str(tmp_path / "rt")],
            env=book.env,
            capture_output=True,
            check=False,
            timeout=60,
        )


def test_the_first_week_follows_the_docs(book: Runbook) -> None:
    key_ceremony(book)
    custodian_tokens(book)
    coordinator_setup(book)
    signing(book)
    audit(book)
    multisig(book)
    vault(book)
    lockouts(book)
    requester(book)
    backups(book)
    key_states(book)
    journal(book)
    policy(book)
    web(book)
    completion(book)
    covered(book)


def completion(book: Runbook) -> None:
    """README: the completion line, in bash, as a shell reads it."""
    line = next(
        text
        for block in blocks((ROOT / README).read_text())
        for text in block
        if text.startswith('eval "$(coldstation-coordinator --print-completion bash)"')
    )
    script = line.split("   #")[0] + "\ncomplete -p coldstation-coordinator\n"
    done = subprocess.run(
        ["bash", "-c", script],
        env=book.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and "coldstation-coordinator" in done.stdout, done.stderr


def covered(book: Runbook) -> None:
    """Every command line of the docs ran above, or NOT_RUN says why not."""
    skipped = {
        (c.doc, c.text)
        for c in book.documented
        for (doc, start) in NOT_RUN
        if c.doc == doc and c.text.startswith(start)
    }
    for doc, start in NOT_RUN:
        assert any(d == doc and text.startswith(start) for d, text in skipped), (
            f"NOT_RUN: {doc}: no line starts with {start!r}"
        )
    left = [
        f"{c.doc}: {c.text}"
        for c in book.documented
        if c not in book.ran and (c.doc, c.text) not in skipped
    ]
    assert not left, "documented, never run here:\n" + "\n".join(left)


def key_ceremony(book: Runbook) -> None:
    """docs/runbooks/key-ceremony.md sections 1 to 3: a station, a key, its backup, the
    export the coordinator imports."""
    init = json.loads(
        book.run(
            KEY_CEREMONY,
            "A init --demo",
            edits={"--network mainnet": "--network regtest"},
            pins=list(PINS.values()),
        )
    )
    assert set(init["officers"]) == set(OFFICERS) and set(init["administrators"]) == set(ADMINS)
    book.facts["appliance_id"] = init["appliance_id"]
    book.facts["audit_public_key"] = init["audit_public_key"]
    book.facts.update(init["officers"])
    keygen = book.run(
        KEY_CEREMONY,
        "A keygen treasury-1",
        optional=True,
        edits={"non-extractable|wrap-with-trusted": "wrap-with-trusted"},
        pins=pins_of("officer-1", "officer-2"),
    )
    book.facts["public_key"] = keygen.split()[2]
    shares = re.findall(r"^custodian \d: (.+)$", book.run(KEY_CEREMONY, "A kek new-shares"), re.M)
    assert len(shares) == 3
    book.facts["kek_shares"] = "\n".join(shares)
    others = book.run(README, "$A kek new-shares")  # a fresh KEK each time: other words
    assert others.count("custodian ") == 3 and shares[0] not in others
    backup = book.run(
        KEY_CEREMONY,
        "A backup treasury-1",
        pins=[*pins_of("officer-1", "officer-2"), shares[0], shares[2]],
    )
    assert "wrapped to treasury-1.blob" in backup and (book.root / "treasury-1.blob").is_file()
    export = book.run(
        KEY_CEREMONY, "A export-wallet treasury-1", pins=pins_of("officer-1", "officer-3")
    )
    assert "wallet exported to export" in export


def coordinator_setup(book: Runbook) -> None:
    """README, the coordinator: a node, the wallet imported and compared, a key pool, coins."""
    node = json.loads(
        book.shell(
            ["coldstation-coordinator", "regtest", "start", "--datadir", "rt", "--port", "0"]
        )
    )
    book.facts["node_url"], book.facts["cookie"] = node["url"], node["cookie"]
    book.run(README, "$C init --regtest rt")
    elsewhere = book.root / "mainnet-desk"
    elsewhere.mkdir()
    refused = book.run(  # the mainnet line, pointed at a regtest node by mistake
        README,
        "$C init --network mainnet",
        edits={
            "http://127.0.0.1:8332": book.facts["node_url"],
            "~/.bitcoin/.cookie": book.facts["cookie"],
        },
        cwd=elsewhere,
        exit_code=2,
    )
    assert "is on chain 'regtest'" in refused and "init wrote nothing" in refused, refused
    assert not (elsewhere / "coldstation-coordinator" / "coordinator.toml").exists()
    imported = book.run(
        KEY_CEREMONY,
        "coldstation-coordinator wallet import treasury",
        edits={"wallet.ur": "export/wallet.ur", "receipt.ur": "export/receipt.ur"},
    )
    status = json.loads(book.run(AUDIT, "coldstation-appliance --state STATE_DIR status"))
    # the runbook: compare the fingerprint the import prints with the station's status
    assert f"audit key fingerprint {status['audit_key_fingerprint']}" in imported, imported
    for key in ("treasury-2", "treasury-3", "treasury-4", "treasury-5"):  # a key pool
        export = new_key(book, key).name
        book.run(
            README,
            "$C wallet add-keys treasury",
            edits={"w2.ur": f"{export}/wallet.ur", "r2.ur": f"{export}/receipt.ur"},
        )
    address = book.run(README, "$C wallet address treasury").split()[0]
    book.facts["deposit_address"] = address
    for _ in range(3):
        book.shell(["coldstation-coordinator", "regtest", "fund", address, "2"])
    book.shell(["coldstation-coordinator", "regtest", "mine", "1"])
    book.run(README, "$C sync")
    assert "customer 42" in book.run(README, "$C wallet show treasury")
    shown = json.loads(book.run(README, "$C wallet show treasury", optional=True))
    assert shown["coins"]["available"]["count"] == 3, shown
    book.run(README, "$C wallet reconcile treasury")
    book.run(README, "$C wallet export treasury")
    assert (book.root / "for-others" / "bitcoin-core.json").is_file()


def payees(count: int) -> list[str]:
    """Regtest addresses of keys nobody holds (the runbook's are mainnet)."""
    return [
        script_to_address(
            b"\x00\x14" + hashlib.sha256(f"runbook payee {n}".encode()).digest()[:20],
            Network.REGTEST,
        )
        for n in range(count)
    ]


def signing(book: Runbook) -> None:
    """docs/runbooks/signing-ceremony.md: before the batch, the payout file, the request,
    a signed output that never arrived, broadcast, a fee bump, confirmations, a cancel."""
    book.run(SIGNING, "C sync")
    book.run(SIGNING, "C status")
    book.run(SIGNING, "C wallet reconcile treasury")
    csv = book.block(SIGNING, "address,amount,reference")
    for documented, ours in zip(re.findall(r"^(bc1q\w+),", csv, re.M), payees(2), strict=True):
        csv = csv.replace(documented, ours)
    (book.root / "payouts.csv").write_text(csv)
    created = book.run(SIGNING, "C batch create treasury", optional=True)
    assert "request hash" in created and (book.root / "req" / "B-2025-07-01.avi").is_file()
    book.run(README, "$C batch export B-2025-07-01", optional=True)
    assert (book.root / "req" / "B-2025-07-01.bbqr.txt").is_file()
    request = {"request.psbt": "req/B-2025-07-01.psbt"}
    signed = book.run(
        SIGNING, "A sign --in request.psbt", edits=request, pins=pins_of("officer-1", "officer-2")
    )
    (book.root / "signed.psbt").unlink()  # the output never reached the coordinator
    book.run(SIGNING, "C batch reshow-request B-2025-07-01")
    again = book.run(
        README, "$A sign --in request.psbt", edits=request, pins=pins_of("officer-1", "officer-2")
    )
    assert "signed 1 input(s)" in signed and "signed PSBT shown again" in again, again
    # the key pool's change goes to the pool's next key: change, not a payment (key-ceremony 2)
    assert "[change (ours)]" in signed and "(another wallet)" not in signed, signed
    book.run(README, "$C batch import B-2025-07-01 signed.psbt")
    sent = book.run(SIGNING, "C batch broadcast B-2025-07-01")
    assert "broadcast" in sent
    book.run(README, "$C batch broadcast B-2025-07-01")  # a rerun sends nothing twice
    book.run(README, "$C status [B-2025-07-01]")
    book.run(README, "$C status [B-2025-07-01]", optional=True)
    bump = book.run(SIGNING, "C batch bump B-2025-07-01")
    bumped = re.search(r"wrote (req/B-2025-07-01-bump\d+\.psbt)", bump)
    assert bumped, bump
    book.run(
        SIGNING,
        "A sign --in request.psbt",
        edits={"request.psbt": bumped[1], "signed.psbt": "signed-bump.psbt"},
        pins=pins_of("officer-1", "officer-2"),
    )
    book.run(
        README,
        "$C batch import B-2025-07-01 signed.psbt",
        edits={"signed.psbt": "signed-bump.psbt"},
    )
    book.run(SIGNING, "C batch broadcast B-2025-07-01")
    book.run(README, "$C batch bump B-2025-07-01", edits={"--fee-rate 12": "--fee-rate 20"})
    book.shell(["coldstation-coordinator", "regtest", "mine", "6"])
    book.run(SIGNING, "C sync")
    final = book.run(SIGNING, "C status B-2025-07-01")
    assert "final" in final or "confirmed" in final, final
    for label, start in (("B-2025-07-02", "C batch cancel"), ("B-2025-07-03", "$C batch cancel")):
        book.run(README, "$C batch create treasury", edits={"B-2025-07-01": label})
        doc = README if start.startswith("$") else SIGNING
        cancelled = book.run(doc, start, edits={"B-2025-07-01": label})
        assert f"batch {label} cancelled" in cancelled


def audit(book: Runbook) -> None:
    """docs/runbooks/audit-replay.md: the evidence out of both programs, the replay, the
    receipts."""
    appliance_id = book.facts["appliance_id"]
    book.run(
        AUDIT,
        "coldstation-appliance --state STATE_DIR journal export",
        edits={"<appliance-id>": appliance_id},
        pins=pins_of("officer-1", "officer-2"),
    )
    book.run(
        README,
        "$A journal export",
        edits={"--officers ...": "--officers officer-2,officer-3"},
        pins=pins_of("officer-2", "officer-3"),
    )
    book.run(README, "$C export --out coordinator-evidence.json")
    book.run(AUDIT, "coldstation-coordinator --state COORD_DIR export")
    book.run(
        AUDIT,
        "coldstation-audit replay --journal bundle-cs-141fb914a515/",
        edits={"cs-141fb914a515": appliance_id},
    )
    assert "ceremon" in (book.root / "report.html").read_text()
    book.run(
        README,
        "coldstation-audit replay --journal bundle-A/",
        edits={"bundle-A/": "bundle/"},
    )
    book.run(
        AUDIT,
        "coldstation-audit replay --journal bundle-.../",
        edits={
            "bundle-.../": f"bundle-{appliance_id}/",
            "http://127.0.0.1:8332": book.facts["node_url"],
            "~/.bitcoin/.cookie": book.facts["cookie"],
        },
    )
    status = json.loads(book.run(README, "$A status"))
    audit_key = book.facts["audit_public_key"]
    assert (
        status["audit_key_fingerprint"] == hashlib.sha256(bytes.fromhex(audit_key)).hexdigest()[:16]
    )
    book.run(
        AUDIT,
        "coldstation-audit verify-receipt signed.psbt",
        edits={"02088659...3b5c": audit_key},
    )
    book.run(AUDIT, "coldstation-audit verify-receipt export/receipt.ur")
    book.run(README, "coldstation-audit verify-receipt signed.psbt", edits={"HEX": audit_key})
    book.run(
        README,
        "coldstation-audit verify-receipt receipt.ur",
        edits={"receipt.ur": "export-treasury-2/receipt.ur"},
    )


def demo_station(book: Runbook, name: str) -> Path:
    """Another demo station by README's init line (on regtest); its folder."""
    station = book.root / name
    book.run(
        README,
        "$A init --demo",
        edits={"--network mainnet": "--network regtest"},
        pins=list(PINS.values()),
        station=station,
    )
    return station


def new_key(book: Runbook, label: str, station: Path | None = None) -> Path:
    """README's keygen and export-wallet lines for another key; its export folder."""
    book.run(
        README,
        "$A keygen treasury-1",
        edits={"treasury-1": label},
        pins=pins_of("officer-1", "officer-2"),
        station=station,
    )
    book.run(
        README,
        "$A export-wallet treasury-1",
        edits={"treasury-1": label, "export/": f"export-{label}/"},
        pins=pins_of("officer-1", "officer-3"),
        station=station,
    )
    return book.root / f"export-{label}"


def multisig(book: Runbook) -> None:
    """README: a multisig from two exports, pinned on the station, confirmed, unpinned;
    an address checked on the station."""
    station_b = demo_station(book, "station-b")
    new_key(book, "vault-a")
    new_key(book, "vault-b", station_b)
    new_key(book, "ops-b", station_b)
    book.run(
        README,
        "$C wallet import treasury",
        edits={
            "treasury": "ops-b",
            "wallet.ur": "export-ops-b/wallet.ur",
            "receipt.ur": "export-ops-b/receipt.ur",
        },
    )
    book.run(
        README,
        "$C wallet multisig treasury-2of3",
        edits={
            "A.desc": "export-vault-a/wallet.descriptor",
            "A.receipt": "export-vault-a/wallet.receipt",
            "B.desc": "export-vault-b/wallet.descriptor",
            "B.receipt": "export-vault-b/wallet.receipt",
        },
    )
    descriptor = (book.root / "wallet.descriptor").read_text().strip()
    for station in (book.station, station_b):
        book.run(
            README,
            "$A pin-wallet",
            optional=True,  # a wallet with another station's key: administrators too
            edits={"wsh(sortedmulti(2,...))": descriptor},
            pins=pins_of("admin-1", "admin-2", "officer-1", "officer-2"),  # admins asked first
            station=station,
        )
        book.run(
            README, "$C wallet confirm-pin treasury-2of3", edits={"receipt.ur": "pin/receipt.ur"}
        )
    book.run(
        README,
        "coldstation-audit verify-receipt receipt.ur",
        edits={"receipt.ur": "pin/receipt.ur"},
    )
    checked = book.run(README, "$A address-check", edits={"bc1q...": book.facts["deposit_address"]})
    assert "treasury-1" in checked, checked
    book.run(
        README,
        "$A unpin-wallet",
        edits={"wsh(...)": descriptor, "--officers ...": "--officers officer-1,officer-2"},
        pins=pins_of("admin-1", "admin-2", "officer-1", "officer-2"),
    )


def vault(book: Runbook) -> None:
    """key-ceremony section 6: a 2-of-2 of both stations' keys that the policy names as the
    custodian's own wallet, pinned by officers alone, confirmed at the coordinator."""
    station_b = book.root / "station-b"
    new_key(book, "vault2-a")
    new_key(book, "vault2-b", station_b)
    book.run(
        KEY_CEREMONY,
        "coldstation-coordinator wallet multisig vault",
        edits={"A/": "export-vault2-a/", "B/": "export-vault2-b/"},
    )
    descriptor = (book.root / "vault.descriptor").read_text().strip()
    quoted = {'"$(cat vault.descriptor)"': f"'{descriptor}'"}
    book.run(KEY_CEREMONY, "A policy draft --internal-wallet", edits=quoted)
    sign_and_install(book)
    book.run(KEY_CEREMONY, "A pin-wallet", edits=quoted, pins=pins_of("officer-1", "officer-2"))
    book.run(KEY_CEREMONY, "coldstation-coordinator wallet confirm-pin vault")
    book.run(  # station B's policy does not name it: its administrators authorise the pin
        README,
        "$A pin-wallet",
        optional=True,
        edits={"wsh(sortedmulti(2,...))": descriptor},
        pins=pins_of("admin-1", "admin-2", "officer-1", "officer-2"),
        station=station_b,
    )
    book.run(KEY_CEREMONY, "coldstation-coordinator wallet confirm-pin vault")
    assert book.run(README, "$C wallet address treasury", edits={"treasury": "vault"})


def lockouts(book: Runbook) -> None:
    """Three wrong PINs lock a token; administrators reset it (key-ceremony, lockouts)."""
    for officer in ("officer-3", "officer-1"):
        for _ in range(3):
            book.shell(
                [
                    "coldstation-appliance",
                    "journal",
                    "export",
                    "--out",
                    "x.cbor",
                    "--officers",
                    f"{officer},officer-2",
                ],
                pins=["9999", PINS["officer-2"]],
                exit_code=None,
            )
    book.run(README, "$A reset-lockout officer-3", pins=pins_of("admin-1", "admin-2"))
    book.run(KEY_CEREMONY, "A reset-lockout officer-1", pins=pins_of("admin-1", "admin-2"))


def requester(book: Runbook) -> None:
    """A requester's passkey in the policy (key-ceremony, policy changes), then a batch the
    requester attests (signing-ceremony, section 2) and the station signs."""
    (book.root / "alice.requester.json").write_text(enrolment_json(ALICE.requester()))
    book.run(
        KEY_CEREMONY,
        "A policy draft --add-requester",
        edits={"0f8afed15e34d918": book.facts["officer-3"]},
    )
    sign_and_install(book)
    config = book.coordinator / "coordinator.toml"
    config.write_text(config.read_text().replace('requester = "ops"', 'requester = "alice"'))
    created = book.run(SIGNING, "C batch create treasury", edits={"B-2025-07-01": "B-2025-07-04"})
    digest = bytes.fromhex(re.search(r"request hash ([0-9a-f]{64})", created)[1])
    assertion = ALICE.assert_(digest).to_webauthn_json()
    (book.root / "alice-assertion.json").write_text(json.dumps(assertion))
    book.run(SIGNING, "C batch attest B-2025-07-01", edits={"B-2025-07-01": "B-2025-07-04"})
    again = ALICE.assert_(digest).to_webauthn_json()  # a second assertion replaces the first
    (book.root / "alice-assertion.json").write_text(json.dumps(again))
    book.run(README, "$C batch attest B-2025-07-01", edits={"B-2025-07-01": "B-2025-07-04"})
    # "Export or show the request after attesting."
    book.run(README, "$C batch export B-2025-07-01", edits={"B-2025-07-01": "B-2025-07-04"})
    files = {"request.psbt": "req/B-2025-07-04.psbt", "signed.psbt": "signed-4.psbt"}
    officers = pins_of("officer-1", "officer-2")
    review = book.run(SIGNING, "A sign --in request.psbt", edits=files, pins=officers)
    assert "alice (passkey verified)" in review, review
    (book.root / "signed-4.psbt").unlink()  # lost on the way back: the request again
    book.run(README, "$C batch reshow-request B-2025-07-01", edits={"B-2025-07-01": "B-2025-07-04"})
    shown = book.run(SIGNING, "A sign --in request.psbt", edits=files, pins=officers)
    assert "signed PSBT shown again" in shown, shown
    book.run(
        README,
        "$C batch import B-2025-07-01",
        edits={"B-2025-07-01": "B-2025-07-04", "signed.psbt": "signed-4.psbt"},
    )
    book.run(README, "$C batch broadcast B-2025-07-01", edits={"B-2025-07-01": "B-2025-07-04"})
    book.run(KEY_CEREMONY, "A policy draft --revoke-requester alice")
    sign_and_install(book)


def sign_and_install(book: Runbook) -> None:
    """The administrators sign draft.cbor, then the officers install it."""
    book.run(KEY_CEREMONY, "A policy sign draft.cbor", pins=pins_of("admin-1", "admin-2"))
    book.run(KEY_CEREMONY, "A policy install signed.cbor", pins=pins_of("officer-1", "officer-2"))


def key_states(book: Runbook) -> None:
    """Key states (key-ceremony), and the receipt the coordinator records (web.md)."""
    officers = pins_of("officer-1", "officer-2")
    book.run(KEY_CEREMONY, "A suspend treasury-1", pins=officers)
    book.run(WEB, "C wallet key-state DIR/key.receipt", edits={"DIR/": "receipt/"})
    book.run(
        README, "$C wallet key-state key.receipt", edits={"key.receipt": "receipt/key.receipt"}
    )
    book.run(KEY_CEREMONY, "A reactivate treasury-1", pins=officers)
    book.run(
        README,
        "$A suspend|reactivate|archive",
        edits={"--officers ...": "--officers officer-1,officer-2"},
        pins=officers,
    )
    book.run(KEY_CEREMONY, "A archive treasury-1", pins=officers)


def backups(book: Runbook) -> None:
    """The backup register and a test restore on a spare token (key-ceremony 3e), and a
    backup restored as a key again (README)."""
    shares = book.facts["kek_shares"].splitlines()
    officers = pins_of("officer-1", "officer-2")
    book.run(KEY_CEREMONY, "A backup-store treasury-1.blob", pins=officers)
    label, so_pin, user_pin = SPARE
    token_script(book.station, f"hsm.init_token({label!r}, {so_pin!r}, {user_pin!r})")
    tested = book.run(
        KEY_CEREMONY,
        "A backup-test treasury-1.blob",
        edits={"spare-1": label},
        pins=[*officers, so_pin, user_pin, shares[1], shares[2]],
    )
    assert "proven" in tested
    register = json.loads(book.run(KEY_CEREMONY, "A backups"))
    assert [(b["bag"], b["last_test"]) for b in register] == [("TEB-000123", "ok")], register
    book.run(
        README,
        "$A backup treasury-1",
        edits={"--officers ...": "--officers officer-1,officer-2"},
        pins=[*officers, shares[0], shares[1]],
    )
    restored = book.run(  # on the other station: a replacement for a lost one
        README,
        "$A restore t.blob",
        edits={"HEX": book.facts["public_key"], "--officers ...": "--officers officer-1,officer-2"},
        pins=[*officers, shares[0], shares[1]],
        station=book.root / "station-b",
    )
    assert "key treasury-1 restored and proven" in restored
    station_e = demo_station(book, "station-e")  # a second replacement, by the runbook's line
    book.run(
        KEY_CEREMONY,
        "A restore treasury-1.blob",
        edits={"03a4e0...d000": book.facts["public_key"]},
        pins=[*officers, shares[1], shares[2]],
        station=station_e,
    )


def journal(book: Runbook) -> None:
    """A journal verified, cut and recovered, lost and restored from its export
    (key-ceremony, sections 11 and 12; README)."""
    officers, admins = pins_of("officer-1", "officer-2"), pins_of("admin-1", "admin-2")
    assert "OK" in book.run(README, "$A journal verify")
    log = book.station / "journal.log"
    for doc, start in ((KEY_CEREMONY, "A journal recover"), (README, "$A journal recover")):
        log.write_bytes(log.read_bytes()[:-7])  # a torn write: the last record cut
        stopped = book.run(README, "$A status", exit_code=1)
        assert '"usable": false' in stopped, stopped
        book.run(
            doc,
            start,
            edits={
                "--officers ...": "--officers officer-1,officer-2",
                "--admins ...": "--admins admin-1,admin-2",
            }
            if doc == README
            else {},
            pins=[*officers, *admins],
        )
    exports = (
        (README, "$A journal export", {"--officers ...": "--officers officer-1,officer-2"}),
        (KEY_CEREMONY, "A journal export", {}),
    )
    restores = ((KEY_CEREMONY, "A journal restore"), (README, "$A journal restore"))
    for (doc, start), (export_doc, export, edits) in zip(restores, exports, strict=True):
        book.run(export_doc, export, optional=True, edits=edits, pins=officers)
        log.unlink()
        restored = book.run(doc, start)
        kept = re.search(r"the old files are kept as (.+)\)$", restored.strip())
        assert kept, restored
        assert all((book.station / name).is_file() for name in kept[1].split(", ")), restored
    assert "OK" in book.run(README, "$A journal verify")


def policy(book: Runbook) -> None:
    """Policy changes shown, signed and installed (README; key-ceremony, policy changes),
    the last revoking officer-3."""
    shown = book.run(KEY_CEREMONY, "A policy show")
    assert "approval quorum: 2 of 3 active officers" in shown, shown
    payee = payees(1)[0]
    book.run(README, "$A policy draft", edits={"ADDR=LABEL": f"{payee}=Supplier-B"})
    book.run(README, "$A policy sign draft.cbor", pins=pins_of("admin-1", "admin-2"))
    book.run(README, "$A policy install signed.cbor", pins=pins_of("officer-1", "officer-2"))
    book.run(
        KEY_CEREMONY,
        "A policy draft --set per_tx_limit_btc=1",
        edits={"bc1q...": payees(2)[1], "0f8afed15e34d918": book.facts["officer-3"]},
    )
    sign_and_install(book)
    assert "Supplier-A" in book.run(KEY_CEREMONY, "A policy show")


def web(book: Runbook) -> None:
    """docs/runbooks/web.md: users, the site, the monitor, the store moved to PostgreSQL."""
    password = "correct horse battery"
    book.run(WEB, "C user add alice", stdin=f"{password}\n{password}\n")
    book.run(WEB, "C user add olga", pins=[password])
    book.run(README, "$C user add alice", edits={"alice": "bob"}, stdin=f"{password}\n{password}\n")
    assert "0 passkey(s) of alice revoked" in book.run(WEB, "C user revoke-passkey alice")
    book.run(WEB, "C user disable alice")
    book.run(WEB, "C user enable alice")
    book.run(WEB, "C user password alice", stdin=f"{password}!\n{password}!\n")

    port = free_port()
    for doc, start in ((WEB, "C serve"), (README, "$C serve")):
        server = book.start(doc, start, {"8080": str(port)} if doc == WEB else {})
        try:
            page = fetch(f"http://127.0.0.1:{port if doc == WEB else 8080}/login")
            assert "password" in page.lower(), page[:200]
        finally:
            server.terminate()
            server.wait(30)

    secret = book.root / "webhook.secret"
    secret.write_text("s" * 48 + "\n")
    secret.chmod(0o600)  # web.md: "mode 600"
    hook, hook_url = webhook_receiver()
    metrics_port = free_port()
    watches = (
        (
            WEB,
            "C watch --webhook",
            {
                "https://alerts.custodian.example/coldstation": hook_url,
                "/etc/coldstation/webhook.secret": str(secret),
                "9464": str(metrics_port),
            },
        ),
        (
            README,
            "$C watch --webhook",
            {"https://alerts.example/hook": hook_url, "hook.secret": str(secret)},
        ),
    )
    try:
        for doc, start, edits in watches:
            monitor = book.start(doc, start, edits)
            try:
                line = first_line(monitor, timeout_s=120)
                assert line.startswith("tip ") and "delivered" in line, line
                if doc == WEB:
                    metrics = fetch(f"http://127.0.0.1:{metrics_port}/metrics")
                    assert "coldstation_node_up 1.0" in metrics, metrics
            finally:
                monitor.terminate()
                monitor.wait(30)
    finally:
        hook.shutdown()
    book.run(WEB, "C watch --rounds 1")

    with postgres_server() as server_url:
        url = fresh_database(server_url, "runbook")
        moved = book.root / "pg"
        (moved / "coldstation-coordinator").mkdir(parents=True)
        config = (book.coordinator / "coordinator.toml").read_text()
        database = book.block(WEB, "[database]").replace(
            "postgresql://coldstation@db.internal/coldstation?sslmode=verify-full", url
        )
        (moved / "coldstation-coordinator" / "coordinator.toml").write_text(
            config + "\n" + database
        )
        backup = book.root / "backup"
        backup.mkdir()
        shutil.copy(book.coordinator / "coordinator.sqlite", backup / "coordinator.sqlite")
        imported = book.run(
            WEB, "C store import-sqlite", edits={"/backup/": f"{backup}/"}, cwd=moved
        )
        assert "every table read back equal" in imported, imported
        book.run(
            README,
            "$C store import-sqlite",
            edits={"/backup/": f"{backup}/"},
            cwd=moved,
            exit_code=2,
        )
        assert "treasury" in book.run(README, "$C wallet show treasury", cwd=moved)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fetch(url: str, attempts: int = 100) -> str:
    """GET ``url``, retrying while the server starts (up to about 20 s)."""
    for _ in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                return reply.read().decode()
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing answered at {url}")


def first_line(process: subprocess.Popen[str], timeout_s: float) -> str:
    """The first line a background program prints, or a failure naming what it said."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    if not ready:
        raise AssertionError(f"no output in {timeout_s} s")
    return process.stdout.readline()


def webhook_receiver() -> tuple[ThreadingHTTPServer, str]:
    """A local endpoint that takes every alert POSTed to it."""

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://localhost:{server.server_address[1]}/hook"


def custodian_tokens(book: Runbook) -> None:
    """``init --plan``: tokens made beforehand, as docs/hardware.md has a trial station do
    with SoftHSM2 (its own token store, named by ``SOFTHSM2_CONF``), enrolled by a plan."""
    for doc, start, name in (
        (KEY_CEREMONY, "A init --plan", "plan-c"),
        (README, "$A init --plan", "plan-d"),
    ):
        store = book.root / f"{name}-tokens"
        (store / "tokens").mkdir(parents=True)
        conf = store / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {store / 'tokens'}\nobjectstore.backend = file\n")
        env = {"SOFTHSM2_CONF": str(conf)}
        labels = [f"{name}-signing", *(f"{name}-{who}" for who in PINS)]
        pins = ["so-pin-1234", *PINS.values()]  # the signing token's SO PIN, then each user's
        made = subprocess.run(
            [sys.executable, "-c", MAKE_TOKENS, *labels],
            input="\n".join(pins) + "\n",
            env={**book.env, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert made.returncode == 0, made.stderr
        module = DEFAULT_MODULE
        plan = ['network = "regtest"', "quorum = 2", "admin_quorum = 2"]
        plan += ["[signing]", f'module = "{module}"', f'label = "{labels[0]}"']
        for label in labels[1:]:
            table = "administrators" if "admin" in label else "officers"
            plan += [f"[[{table}]]", f'module = "{module}"', f'label = "{label}"']
        (book.root / "plan.toml").write_text("\n".join(plan) + "\n")
        station = book.root / name
        enrolled = json.loads(book.run(doc, start, pins=pins, station=station, env=env))
        assert list(enrolled["officers"]) == labels[1:4], enrolled


#: Initialises one SoftHSM2 token per label (argv) through the PKCS#11 API, the first as
#: the signing token (SO PIN only), the others with the user PIN; PINs from stdin.
MAKE_TOKENS = """
import sys
from appliance.hsm import Hsm
hsm = Hsm()
labels = sys.argv[1:]
so_pin = sys.stdin.readline().strip()
hsm.init_token(labels[0], so_pin, None)
for label in labels[1:]:
    pin = sys.stdin.readline().strip()
    hsm.init_token(label, pin + "-so", pin)
"""
