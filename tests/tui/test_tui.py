"""The appliance TUI driven by Textual's Pilot, on a real demo appliance (SoftHSM2 tokens,
created through the CLI in a subprocess, then opened in this process).

The signing ceremony runs twice: end to end through the real engine
(``appliance.signing``) on a request paying from the appliance's own HSM key, and, for the
review's breadth (labels, cosigners, attacks), on reviews of ``tests.adversarial.psbts``
with :class:`StandInSession` answering for the engine (those wallets' keys are not this
appliance's).

Each test runs its app with ``asyncio.run`` so no pytest plugin or configuration is needed.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from appliance import softhsm
from appliance.appliance import Appliance
from appliance.hsm import Hsm, module_path
from appliance.keystore import KeyState
from appliance.officers import OfficerError
from appliance.station import CeremonyError
from appliance.tui.app import ColdstationApp
from appliance.tui.screens.approvals import ApprovalsScreen
from appliance.tui.screens.home import HomeScreen
from appliance.tui.screens.journal import JournalScreen
from appliance.tui.screens.keys import KeysScreen
from appliance.tui.screens.officers import OfficersScreen
from appliance.tui.screens.policy import PolicyScreen
from appliance.tui.screens.review import ReviewScreen
from appliance.tui.screens.scan import ScanScreen
from shared.adapters.receiver import QrReceiver
from shared.adapters.video import write_video
from shared.bitcoin.address import Network, address_to_script, network_by_name
from shared.bitcoin.script import p2wpkh_script
from shared.bitcoin.tx import SEQUENCE_RBF, OutPoint, Transaction, TxIn, TxOut
from shared.journal import Entry, audit_key_fingerprint
from shared.psbt import Psbt
from shared.qr.frames import FrameRenderer
from shared.request import RequestMetadata, attach_request, read_receipts
from shared.ui.show_qr import ShowQrScreen
from shared.ur.registry import decode_psbt, encode_psbt
from shared.ur.ur import UR, UREncoder, upper
from tests.coordinator.softappliance import strip_receipts

EXE = str(Path(sys.executable).with_name("coldstation-appliance"))
OFFICER_PINS = {"officer-1": "1111", "officer-2": "2222", "officer-3": "3333"}
ADMIN_PINS = {"admin-1": "ad11", "admin-2": "ad22"}
SMALL, LARGE = (80, 24), (160, 50)


# -- a real appliance -------------------------------------------------------------------------


def cli(state: Path, *args: str, pins: list[str] = ()) -> str:
    read, write = os.pipe()
    os.write(write, "".join(f"{p}\n" for p in pins).encode())
    os.close(write)
    try:
        done = subprocess.run(
            [EXE, "--state", str(state), "--pin-fd", str(read), *args],
            pass_fds=(read,),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(read)
    assert done.returncode == 0, done.stderr
    return done.stdout


def make_appliance(state: Path) -> dict[str, Any]:
    """init --demo; a treasury key exported as the wallet; a second key, suspended."""
    info = json.loads(
        cli(
            state,
            "init",
            "--demo",
            "--network",
            "regtest",
            pins=[*OFFICER_PINS.values(), *ADMIN_PINS.values()],
        )
    )
    two = ["--officers", "officer-1,officer-2"]
    pins = [OFFICER_PINS["officer-1"], OFFICER_PINS["officer-2"]]
    cli(state, "keygen", "treasury", *two, pins=pins)
    cli(state, "export-wallet", "treasury", "--out", str(state.parent / "export"), *two, pins=pins)
    cli(state, "keygen", "ops-hot", *two, pins=pins)
    cli(state, "suspend", "ops-hot", *two, pins=pins)
    return info


def open_appliance(state: Path) -> Appliance:
    """Point SoftHSM2 at this state's tokens and re-initialise the (shared) PKCS#11 library."""
    softhsm.configure(state)
    hsm = Hsm()
    hsm.rescan()
    return Appliance(state, hsm)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Appliance, dict[str, Any]]:
    if not Path(module_path()).exists():
        pytest.skip("SoftHSM2 (libsofthsm2.so) is not installed")
    previous = os.environ.get("SOFTHSM2_CONF")
    state = tmp_path_factory.mktemp("tui") / "appliance"
    info = make_appliance(state)
    appliance = open_appliance(state)
    yield appliance, info
    appliance.close()
    appliance.hsm.logout_all()
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous


@pytest.fixture
def appliance(made: tuple[Appliance, dict[str, Any]]) -> Appliance:
    return made[0]


# -- a stand-in for the signing engine, over real reviews -------------------------------------


@dataclass(frozen=True)
class Approvals:
    approved: tuple[str, ...]
    needed: int
    rejected: tuple[tuple[str, str], ...] = ()

    @property
    def complete(self) -> bool:
        return len(self.approved) >= self.needed


@dataclass(frozen=True)
class Signed:
    psbt_bytes: bytes
    receipt_seq: int


@dataclass
class StandInSession:
    """``SigningSession``'s answers for a real Review of a real PSBT; approvals by label."""

    case: Any
    officers: dict[str, str]  # token label -> fingerprint
    needed: int = 2
    review: Any = None
    loaded: list[bytes] = field(default_factory=list)
    approved: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def load(self, data: bytes) -> Any:
        self.loaded.append(data)
        self.review = self.case.review()
        return self.review

    def approve(self, officer_label: str, pin: str) -> Approvals:
        if OFFICER_PINS.get(officer_label) != pin:
            raise OfficerError(f"token {officer_label!r} refused the PIN")
        fingerprint = self.officers[officer_label]
        if fingerprint in self.approved:
            raise CeremonyError(f"officer {fingerprint} has already approved")
        self.approved.append(fingerprint)
        return self.approval_state()

    def approval_state(self) -> Approvals:
        return Approvals(tuple(self.approved), self.needed)

    def sign(self) -> Signed:
        return Signed(self.case.psbt.serialize(), 42)

    def refuse(self, reason: str) -> None:
        self.refused.append(reason)


def valid_case() -> Any:
    from tests.adversarial.psbts import Scenario

    return Scenario().build()


def refused_case() -> Any:
    from tests.adversarial.psbts import variant

    return variant("change_to_foreign_address")


# -- helpers ----------------------------------------------------------------------------------

_SVG_TEXT = re.compile(r'<text[^>]*clip-path="url\(#[^)]*-line-(\d+)\)"[^>]*>(.*?)</text>', re.S)


def screen_text(app: ColdstationApp) -> str:
    """What the terminal shows, line by line (from the app's own SVG screenshot)."""
    lines: dict[int, str] = defaultdict(str)
    for number, text in _SVG_TEXT.findall(app.export_screenshot()):
        lines[int(number)] += html.unescape(text).replace("\xa0", " ")
    return "\n".join(lines[n] for n in sorted(lines))


def run(app: ColdstationApp, size: tuple[int, int], body: Callable[[Any], Awaitable[None]]) -> None:
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await body(pilot)

    asyncio.run(main())


def alnum(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.lower())


async def settle(pilot: Any, rounds: int = 4) -> None:
    """Let thread workers finish and their call_from_thread callbacks run."""
    for _ in range(rounds):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


async def type_text(pilot: Any, text: str) -> None:
    """Text into the focused field, as a terminal paste (a key press costs ~65 ms in Pilot)."""
    from textual import events

    pilot.app.focused.post_message(events.Paste(text))
    await pilot.pause()


def frame_image(art: str, scale: int = 4) -> np.ndarray:
    """A half-block frame back to a grayscale image, the way a camera would see it."""
    rows: list[list[bool]] = []
    for line in art.split("\n"):
        rows.append([ch in "▀█" for ch in line])
        rows.append([ch in "▄█" for ch in line])
    image = np.where(np.array(rows, dtype=bool), np.uint8(0), np.uint8(255))
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


# -- home and navigation ----------------------------------------------------------------------


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "160x50"])
def test_home_shows_the_real_appliance(appliance: Appliance, size: tuple[int, int]) -> None:
    async def body(pilot: Any) -> None:
        assert isinstance(pilot.app.screen, HomeScreen)
        text = screen_text(pilot.app)
        assert appliance.config.appliance_id in text
        assert "version 1 · 2 of 3 officers approve" in text
        assert f"{len(appliance.recorder.store)} records" in text
        assert "wpkh(" in text  # the pinned wallet
        for label, state in (
            ("coldstation-audit", "active"),
            ("treasury", "active"),
            ("ops-hot", "suspended"),
        ):
            assert re.search(rf"{label}\s+{state}", text), text
        assert "TORN" not in text
        assert "Keys" in text.splitlines()[-1]  # the footer shows the navigation keys
        assert "Quit" in text.splitlines()[-1]  # and how to leave (issue 18)
        # issue 18: what ops ask the officers to compare, and the station's clock
        assert f"fingerprint {audit_key_fingerprint(appliance.journal.audit_key)}" in text
        assert re.search(r"Clock\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", text), text

    run(ColdstationApp(appliance), size, body)


def test_home_checks_whether_an_address_is_ours(appliance: Appliance) -> None:
    """Issue 18: an address check on the station (COLDCARD's address explorer)."""
    from appliance.tui.screens.address_check import AddressCheckScreen
    from shared.bitcoin.address import script_to_address

    network = network_by_name(appliance.policy().network)
    ours = script_to_address(
        p2wpkh_script(appliance.keystore.info("treasury").public_key_bytes), network
    )
    stranger = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"

    async def body(pilot: Any) -> None:
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(pilot.app.screen, AddressCheckScreen)
        for address, expected in (
            (ours, "OURS: wallet"),
            (stranger, "NOT OURS"),
            ("bc1qnonsense", "is not a regtest address"),
        ):
            pilot.app.screen.query_one("#address").value = address
            await pilot.press("enter")
            await settle(pilot)
            assert expected in screen_text(pilot.app), screen_text(pilot.app)
        assert "key treasury (hsm key, active)" not in screen_text(pilot.app)  # last: garbage
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(pilot.app.screen, HomeScreen)

    run(ColdstationApp(appliance), SMALL, body)


def test_navigation_by_keys_and_palette(appliance: Appliance) -> None:
    async def body(pilot: Any) -> None:
        app = pilot.app
        for key, screen in (
            ("k", KeysScreen),
            ("o", OfficersScreen),
            ("p", PolicyScreen),
            ("j", JournalScreen),
            ("h", HomeScreen),
            ("s", ScanScreen),
        ):
            await pilot.press(key)
            await pilot.pause()
            assert type(app.screen) is screen, key
        await pilot.press("escape")  # cancelling the scan hands nothing on
        await pilot.pause()
        assert type(app.screen) is HomeScreen and len(app.screen_stack) == 1
        titles = {command.title for command in app.get_system_commands(app.screen)}
        assert {"Sign", "Keys", "Officers", "Policy", "Journal"} <= titles
        await pilot.press("p")
        await pilot.pause()
        policy = screen_text(app)
        assert "Approvals needed" in policy and "200 sat/vB" in policy
        await pilot.press("o")
        await pilot.pause()
        officers = screen_text(app)
        assert "officer-3" in officers and "admin-2" in officers

    run(ColdstationApp(appliance), SMALL, body)


def test_run_says_why_a_state_directory_cannot_open(tmp_path: Path, capsys: Any) -> None:
    from appliance.tui.app import run as run_tui

    assert run_tui(tmp_path / "nothing-here") == 2
    assert "holds no appliance" in capsys.readouterr().err


def test_an_engine_fault_is_reported_not_fatal(appliance: Appliance) -> None:
    class Broken:
        review = None

        def load(self, data: bytes) -> Any:
            raise KeyError("a bug in the engine")

    app = ColdstationApp(appliance, session_factory=lambda _a: Broken())

    async def body(pilot: Any) -> None:
        app.scanned(b"psbt\xff")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)  # still running, nothing half-shown

    run(app, SMALL, body)


# -- journal ----------------------------------------------------------------------------------


def test_journal_filters_by_event_and_request_and_verifies(appliance: Appliance) -> None:
    from textual.widgets import DataTable, Input, Select

    total = len(appliance.recorder.store)

    async def body(pilot: Any) -> None:
        await pilot.press("j")
        await pilot.pause()
        screen = pilot.app.screen
        table = screen.query_one("#rows", DataTable)
        assert table.row_count == total
        screen.query_one("#event", Select).value = "officer_enrolled"
        await pilot.pause()
        assert table.row_count == 5  # three approvers, two administrators
        screen.query_one("#event", Select).value = "activation"
        await pilot.pause()
        actors = str(table.get_row_at(0)[4])  # issue 18: named, not counted
        assert re.fullmatch(r"officer-\d(, officer-\d)+", actors), actors
        screen.query_one("#event", Select).clear()
        await pilot.pause()
        assert table.row_count == total
        await pilot.press("r")  # the request-id filter
        await type_text(pilot, "ffff")
        await pilot.pause()
        assert screen.query_one("#request", Input).value == "ffff"
        assert table.row_count == 0  # no signing records carry that id
        await pilot.press("enter", "v")
        await settle(pilot)
        assert f"{total} records verified" in screen_text(pilot.app)
        screen.query_one("#request", Input).value = ""
        await pilot.pause()
        await pilot.press("enter")  # the newest record, in full
        await pilot.pause()
        assert "Journal record" in screen_text(pilot.app)

    run(ColdstationApp(appliance), SMALL, body)


# -- keys: a real ceremony with officers' PINs ---------------------------------------------------


def test_keys_reactivate_and_suspend_with_officer_pins(appliance: Appliance) -> None:
    from textual.widgets import DataTable

    async def present(pilot: Any, officers: list[tuple[str, str]]) -> None:
        for label, pin in officers:
            await type_text(pilot, label)
            await pilot.press("enter")
            await type_text(pilot, pin)
            await pilot.press("enter")
        await settle(pilot)

    async def body(pilot: Any) -> None:
        await pilot.press("k")
        await pilot.pause()
        table = pilot.app.screen.query_one("#keys", DataTable)
        table.move_cursor(row=table.get_row_index("ops-hot"))
        await pilot.pause()
        length = len(appliance.recorder.store)
        await pilot.press("r")
        await pilot.pause()
        await present(pilot, [("officer-1", "1111"), ("officer-3", "3333")])
        assert appliance.keystore.info("ops-hot").state is KeyState.ACTIVE
        store = appliance.recorder.store
        added = [Entry.from_bytes(store.entry(i)).record.event for i in range(length, len(store))]
        # earlier wrong PINs (other tests on this station) are journaled at the activation
        assert [e for e in added if e != "pin_status"] == ["activation", "key_reactivated"]
        assert appliance.recorder.last().record.event == "key_reactivated"

        await pilot.press("u")
        await pilot.pause()
        await present(pilot, [("officer-2", "2222"), ("officer-3", "0000")])  # a wrong PIN
        assert appliance.keystore.info("ops-hot").state is KeyState.ACTIVE
        assert "Refused" in screen_text(pilot.app)  # said on screen; the app goes on
        await pilot.press("u")
        await pilot.pause()
        await present(pilot, [("officer-2", "2222"), ("officer-3", "3333")])
        assert appliance.keystore.info("ops-hot").state is KeyState.SUSPENDED
        assert appliance.recorder.last().record.event == "key_suspended"

    run(ColdstationApp(appliance), SMALL, body)


# -- the animated QR ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "160x50"])
def test_animated_qr_decodes_and_keys_change_density_and_speed(
    appliance: Appliance, size: tuple[int, int]
) -> None:
    from textual.widgets import Static

    psbt = valid_case().psbt.serialize()
    screen = ShowQrScreen(UR("crypto-psbt", encode_psbt(psbt)), "Signed PSBT")

    async def body(pilot: Any) -> None:
        app = pilot.app
        await app.push_screen(screen)
        await pilot.pause(0.1)
        width, height = screen.available()
        assert screen.stream.fits(width, height)  # the first density fits the window
        assert set(screen.frame_text) <= set(" ▀▄█\n")
        qr = screen.query_one("#qr", Static)
        assert str(qr.visual) == screen.frame_text  # what is on screen is the frame
        first = screen.frame_text
        await pilot.pause(0.5)  # 10 fps: several frames later
        assert screen.frame_text != first and screen.stream.shown >= 3

        fragment, fps = screen.stream.fragment_len, screen.fps
        await pilot.press("minus")
        assert screen.stream.fragment_len < fragment
        await pilot.press("plus", "plus")
        assert screen.stream.fragment_len > fragment
        await pilot.press("greater_than_sign")
        assert screen.fps > fps
        await pilot.press("less_than_sign", "less_than_sign")
        assert screen.fps < fps
        await pilot.press("minus")
        await pilot.press("space")  # paused: frames are stepped by hand below
        assert screen.paused

        receiver = QrReceiver(expected_types=["crypto-psbt"])
        versions = set()
        for _ in range(20 * screen.stream.parts):
            screen.advance()
            versions.add(screen.stream.version)
            receiver.feed(frame_image(screen.frame_text))
            if receiver.is_complete:
                break
        assert receiver.result is not None and decode_psbt(receiver.result.cbor) == psbt
        assert len(versions) == 1  # one QR version for the whole stream

    run(ColdstationApp(appliance), size, body)


# -- scan, review, approvals, sign -----------------------------------------------------------------


def write_request_video(path: Path, psbt: bytes, fragment_len: int = 150) -> int:
    encoder = UREncoder(UR("crypto-psbt", encode_psbt(psbt)), fragment_len)
    parts = [upper(encoder.next_part()) for _ in range(2 * encoder.seq_len)]
    renderer = FrameRenderer.for_texts(parts, canvas=(640, 480))
    return write_video((renderer.image(part) for part in parts), path, fps=10)


def test_scan_from_video_hands_the_psbt_to_the_review(
    made: tuple[Appliance, dict[str, Any]], tmp_path: Path
) -> None:
    appliance, info = made
    case = valid_case()
    psbt = case.psbt.serialize()
    video = tmp_path / "request.avi"
    assert write_request_video(video, psbt) > 0
    session = StandInSession(case, info["officers"])
    app = ColdstationApp(appliance, camera=str(video), session_factory=lambda _a: session)

    async def body(pilot: Any) -> None:
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, ScanScreen)
        await pilot.press("enter")  # the source field holds the video's path
        await settle(pilot)
        assert session.loaded == [psbt]  # the payload, byte for byte, handed on
        assert isinstance(app.screen, ReviewScreen)
        text = screen_text(app)
        assert "Policy checks passed" in text
        assert "Exchange hot wallet" in text and "0.00400000 BTC" in text

    run(app, SMALL, body)


def test_scan_of_a_missing_file_says_so_and_stays(appliance: Appliance, tmp_path: Path) -> None:
    app = ColdstationApp(appliance, camera=str(tmp_path / "no-such.avi"))

    async def body(pilot: Any) -> None:
        await pilot.press("s")
        await pilot.pause()
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ScanScreen)
        assert "does not exist" in screen_text(app)

    run(app, SMALL, body)


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "160x50"])
def test_review_shows_what_is_signed(
    made: tuple[Appliance, dict[str, Any]], size: tuple[int, int]
) -> None:
    appliance, info = made
    case = valid_case()
    review = case.review()
    session = StandInSession(case, info["officers"])
    app = ColdstationApp(appliance, session_factory=lambda _a: session)

    async def body(pilot: Any) -> None:
        app.scanned(case.psbt.serialize())
        await settle(pilot)
        assert isinstance(app.screen, ReviewScreen)
        full = ""
        for _ in range(12):  # page through the review as an officer would
            full += screen_text(app)
            await pilot.press("pagedown")
            await pilot.pause()
        flat = alnum(full)  # addresses and hashes are grouped and wrap inside the panels
        for out in review.outputs:
            assert alnum(out.address) in flat  # every address, in full
        assert "Exchange hot wallet" in full and "Supplier GmbH" in full
        assert "CHANGE, back to our wallet" in full
        assert "0.00650000 BTC" in full  # paid out
        assert "0.00003000 BTC = 3000 sat" in full  # the fee
        assert "11.9 sat/vB" in full
        assert review.request.requester in full
        assert review.request_hash.hex() in flat
        # issue 18: every group of four words whole on one line, even at 80 columns
        for group in review.hash_words.split(" / "):
            assert group in full, group
        assert "regtest" in full

    run(app, size, body)


def test_a_payment_to_another_wallet_of_ours_is_named_as_such() -> None:
    """An output a pinned wallet derives that is not this request's change (another key of
    a key pool, a vault the policy does not name internal) is a payment: the officers read
    whose key it is and that it counts as paid out, not a bare NOT IN THE ADDRESS BOOK."""
    from types import SimpleNamespace

    from appliance.tui.engine import OutputLine
    from appliance.tui.screens.review import outputs_text

    lines = [
        OutputLine(0, 150_000_000, "bcrt1qours", "p2wpkh", None, False, "wallet 2", "pool-2"),
        OutputLine(1, 1_000, "bcrt1qtheirs", "p2wpkh", None, False, None, None),
        OutputLine(2, 5_000, "bcrt1qchange", "p2wpkh", None, True, "wallet 1", "pool-1"),
    ]
    text = outputs_text(SimpleNamespace(outputs=lines)).plain
    assert "our key pool-2" in text and "counted as paid out" in text
    assert text.count("NOT IN THE ADDRESS BOOK") == 2 and text.count("our key") == 1
    assert "CHANGE, back to our wallet" in text


def test_refused_request_says_why_and_cannot_be_approved(
    made: tuple[Appliance, dict[str, Any]],
) -> None:
    appliance, info = made
    session = StandInSession(refused_case(), info["officers"])
    app = ColdstationApp(appliance, session_factory=lambda _a: session)

    async def body(pilot: Any) -> None:
        app.scanned(b"psbt\xff")
        await settle(pilot)
        text = screen_text(app)
        assert "REFUSED: this request will not be signed" in text
        assert alnum("its script does not derive from the pinned wallet") in alnum(text)
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(app.screen, ReviewScreen)  # no way on to the approvals
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)

    run(app, SMALL, body)


def _refusal_variants() -> list[str]:
    from tests.adversarial.psbts import VARIANTS

    return sorted(VARIANTS)


@pytest.mark.parametrize("name", _refusal_variants())
def test_each_refusal_class_is_shown_and_blocks_approval(
    made: tuple[Appliance, dict[str, Any]], name: str
) -> None:
    """Every DESIGN 4 refusal class, from a real review of a real adversarial PSBT: the
    officers read why on the review screen, and there is no way on to the approvals."""
    from tests.adversarial.psbts import variant

    appliance, info = made
    case = variant(name)
    session = StandInSession(case, info["officers"])
    app = ColdstationApp(appliance, session_factory=lambda _a: session)

    async def body(pilot: Any) -> None:
        app.scanned(b"psbt\xff")
        await settle(pilot)
        text = alnum(screen_text(app))
        assert alnum("REFUSED: this request will not be signed") in text
        first = session.review.refusals[0].message
        assert alnum(first)[:40] in text, f"{name}: {first!r} not on screen"
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(app.screen, ReviewScreen)
        assert session.approved == []

    run(app, LARGE, body)


def test_approvals_officer_by_officer_then_sign_shows_the_qr(
    made: tuple[Appliance, dict[str, Any]],
) -> None:
    from textual.widgets import Input

    appliance, info = made
    case = valid_case()
    session = StandInSession(case, info["officers"])
    app = ColdstationApp(appliance, session_factory=lambda _a: session)

    async def officer(pilot: Any, label: str, pin: str) -> None:
        await type_text(pilot, label)
        await pilot.press("enter")
        await type_text(pilot, pin)
        await pilot.press("enter")
        await settle(pilot)

    async def body(pilot: Any) -> None:
        app.scanned(case.psbt.serialize())
        await settle(pilot)
        await pilot.press("a")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ApprovalsScreen)
        assert screen.query_one("#pin", Input).password  # PINs are masked
        assert "0 of 2 approvals; 2 more needed" in screen_text(app)
        await officer(pilot, "officer-1", "1111")
        assert "1 of 2 approvals; 1 more needed" in screen_text(app)
        await officer(pilot, "officer-1", "1111")  # the same officer twice
        assert "already approved" in screen_text(app)
        await officer(pilot, "officer-2", "9999")  # a wrong PIN
        assert "refused the PIN" in screen_text(app)
        assert "1 of 2 approvals" in screen_text(app)
        # the retry goes into the masked PIN field, never the clear-text label field
        assert app.focused is screen.query_one("#pin", Input)
        assert screen.query_one("#label", Input).value == "officer-2"
        assert screen.query_one("#pin", Input).value == ""
        await type_text(pilot, "2222")
        await pilot.press("enter")
        await settle(pilot)
        assert "Quorum reached" in screen_text(app)
        await pilot.press("s")
        await settle(pilot)
        qr = app.screen
        assert isinstance(qr, ShowQrScreen)
        assert qr.ur.type == "crypto-psbt"
        assert decode_psbt(qr.ur.cbor) == case.psbt.serialize()
        assert "journal record 42" in screen_text(app)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen) and len(app.screen_stack) == 1

    run(app, SMALL, body)


def test_refusing_at_review_tells_the_engine(made: tuple[Appliance, dict[str, Any]]) -> None:
    appliance, info = made
    session = StandInSession(valid_case(), info["officers"])
    app = ColdstationApp(appliance, session_factory=lambda _a: session)

    async def body(pilot: Any) -> None:
        app.scanned(b"psbt\xff")
        await settle(pilot)
        await pilot.press("r")
        await pilot.pause()
        await pilot.press("enter")  # the default reason
        await settle(pilot)
        assert session.refused == ["officers declined at review"]
        assert isinstance(app.screen, HomeScreen)

    run(app, SMALL, body)


def test_escape_is_labelled_as_what_it_does(made: tuple[Appliance, dict[str, Any]]) -> None:
    """Issue 18: the footer said "Leave" where escape refused the request. An approvable
    request shows "Refuse & leave" (and escape asks for the reason); a refused one, "Leave"."""
    appliance, info = made
    session = StandInSession(valid_case(), info["officers"])
    app = ColdstationApp(appliance, session_factory=lambda _a: session)

    async def body(pilot: Any) -> None:
        app.scanned(b"psbt\xff")
        await settle(pilot)
        footer = screen_text(app).splitlines()[-1]
        assert "Refuse & leave" in footer and " Leave" not in footer.replace("& leave", "")
        await pilot.press("escape")
        await pilot.pause()
        assert "Refuse this request?" in screen_text(app)
        await pilot.press("enter")
        await settle(pilot)
        assert session.refused == ["officers declined at review"]

    run(app, SMALL, body)

    refused = StandInSession(refused_case(), info["officers"])
    app = ColdstationApp(appliance, session_factory=lambda _a: refused)

    async def leave(pilot: Any) -> None:
        app.scanned(b"psbt\xff")
        await settle(pilot)
        footer = screen_text(app).splitlines()[-1]
        assert "Leave" in footer and "Refuse" not in footer
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen) and refused.refused == []

    run(app, SMALL, leave)


# -- the real engine, end to end ----------------------------------------------------------------


def own_request(
    pubkey: bytes, requester: str, network: str = "regtest", request_id: bytes | None = None
) -> bytes:
    """A request paying 0.004 BTC from a coin of ``pubkey``, change back to it."""
    ours = p2wpkh_script(pubkey)
    funding = Transaction(
        inputs=[TxIn(OutPoint(os.urandom(32), 0), b"\x51")], outputs=[TxOut(1_000_000, ours)]
    )
    payee = address_to_script("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080", Network.REGTEST)
    spend = Transaction(
        inputs=[TxIn(OutPoint(funding.txid, 0), sequence=SEQUENCE_RBF)],
        outputs=[TxOut(400_000, payee), TxOut(598_000, ours)],
    )
    psbt = Psbt.from_unsigned_tx(spend)
    psbt.inputs[0].set(0x00, funding.serialize())
    psbt.inputs[0].set(0x01, funding.outputs[0].serialize())
    now = int(time.time())
    meta = RequestMetadata(
        request_id=request_id or os.urandom(16),
        batch_id="batch-tui",
        requester=requester,
        created=now - 10,
        expiry=now + 1800,
        purpose="tui payouts",
        network=network,
    )
    return attach_request(psbt, meta).serialize()


def scanned_psbt(qr: ShowQrScreen) -> bytes:
    """The PSBT a camera reads off the paused screen, frame by frame (at most 20 cycles)."""
    return decode_psbt(scanned_payload(qr, "crypto-psbt"))


def scanned_payload(qr: ShowQrScreen, ur_type: str) -> bytes:
    """The CBOR payload a camera reads off the paused screen, frame by frame."""
    qr.action_pause()
    receiver = QrReceiver(expected_types=[ur_type])
    for _ in range(20 * qr.stream.parts):
        qr.advance()
        receiver.feed(frame_image(qr.frame_text))
        if receiver.is_complete:
            break
    assert receiver.result is not None and receiver.result.ur_type == ur_type
    return receiver.result.cbor


def test_real_engine_review_approvals_sign_and_qr(made: tuple[Appliance, dict[str, Any]]) -> None:
    from textual.widgets import DataTable

    appliance, info = made
    pubkey = appliance.keystore.info("treasury").public_key_bytes
    requester = info["officers"]["officer-3"]  # an officer asks: their approval cannot count
    request_id = os.urandom(16)
    data = own_request(pubkey, requester, request_id=request_id)
    app = ColdstationApp(appliance)  # the default engine: appliance.signing

    async def officer(pilot: Any, label: str, pin: str) -> str:
        await type_text(pilot, label)
        await pilot.press("enter")
        await type_text(pilot, pin)
        await pilot.press("enter")
        await settle(pilot)
        return screen_text(app)

    async def body(pilot: Any) -> None:
        app.scanned(data)
        await settle(pilot)
        assert isinstance(app.screen, ReviewScreen)
        text = screen_text(app)
        assert "Policy checks passed" in text and "CHANGE, back to our wallet" in text
        await pilot.press("a")
        await pilot.pause()
        assert "does not count" in await officer(pilot, "officer-3", "3333")
        assert "0 of 2 approvals" in screen_text(app)
        assert "1 of 2 approvals" in await officer(pilot, "officer-1", "1111")
        assert "already approved" in await officer(pilot, "officer-1", "1111")
        assert "Quorum reached" in await officer(pilot, "officer-2", "2222")
        await pilot.press("s")
        await settle(pilot)
        qr = app.screen
        assert isinstance(qr, ShowQrScreen)
        signed = Psbt.parse(scanned_psbt(qr))
        assert pubkey in signed.inputs[0].partial_sigs  # signed inside the HSM
        assert len(read_receipts(signed)) == 1
        last = appliance.recorder.last().record
        assert (last.event, last.decision) == ("signing_decision", "approved")

        await pilot.press("enter")  # the coordinator has it: home, then the journal
        await pilot.pause()
        await pilot.press("j", "r")
        await pilot.pause()
        await type_text(pilot, request_id.hex()[:10])
        table = app.screen.query_one("#rows", DataTable)
        assert table.row_count == 1  # this request's signing decision, nothing else
        assert table.get_row_at(0)[2:4] == ["signing_decision", "approved"]
        # issue 18: the signed QR again from home, after its screen was left: no approval
        length = len(appliance.recorder.store)
        await pilot.press("escape", "h")
        await pilot.pause()
        await pilot.press("l")
        await settle(pilot)
        again = app.screen
        assert isinstance(again, ShowQrScreen) and "again" in screen_text(app)
        assert Psbt.parse(scanned_psbt(again)).serialize() == signed.serialize()
        assert len(appliance.recorder.store) == length  # nothing journaled, nothing signed

    run(app, SMALL, body)
    # someone with the medium swaps the kept copy (no receipt) or deletes it: home's "last
    # signed" refuses it instead of showing a PSBT the journal does not vouch for
    from appliance.signing import last_signed

    found = last_signed(appliance)
    assert found is not None
    kept = Psbt.parse(found.psbt_bytes)
    path = appliance.state.signed_path(kept.unsigned_tx.txid_hex)
    original = path.read_bytes()
    try:
        path.write_bytes(strip_receipts(kept).serialize())
        assert last_signed(appliance) is None
        path.unlink()
        assert last_signed(appliance) is None
    finally:
        path.write_bytes(original)
    assert last_signed(appliance) is not None


def test_an_officers_refusal_before_any_token_opened_says_it_is_pending(
    made: tuple[Appliance, dict[str, Any]],
) -> None:
    """Issue 18: the toast said "in the journal" while home showed the refusal pending."""
    appliance, _info = made
    pubkey = appliance.keystore.info("treasury").public_key_bytes
    app = ColdstationApp(appliance)
    before = len(appliance.state.pending())

    async def body(pilot: Any) -> None:
        app.scanned(own_request(pubkey, "ops-alice"))
        await settle(pilot)
        await pilot.press("r")
        await pilot.pause()
        await pilot.press("enter")
        await settle(pilot)
        said = [n.message for n in app._notifications]
        assert any("waits as a pending record" in m for m in said), said
        assert not any("is in the journal" in m for m in said), said
        assert len(appliance.state.pending()) == before + 1

    run(app, SMALL, body)
    appliance.flush_pending([("officer-1", "1111"), ("officer-2", "2222")])  # as home's w does


def test_a_refusal_waits_for_officers_who_write_it_from_home(
    made: tuple[Appliance, dict[str, Any]],
) -> None:
    appliance, _info = made
    pubkey = appliance.keystore.info("treasury").public_key_bytes
    app = ColdstationApp(appliance)

    async def body(pilot: Any) -> None:
        app.scanned(own_request(pubkey, "ops-alice", network="mainnet"))
        await settle(pilot)
        assert "REFUSED" in screen_text(app) and "network" in screen_text(app)
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        assert "1 record(s) wait for the next activation" in screen_text(app)
        length = len(appliance.recorder.store)
        await pilot.press("w")
        await pilot.pause()
        for label, pin in (("officer-1", "1111"), ("officer-2", "2222")):
            await type_text(pilot, label)
            await pilot.press("enter")
            await type_text(pilot, pin)
            await pilot.press("enter")
        await settle(pilot)
        assert not appliance.state.pending()
        decisions = [
            e.record
            for e in appliance.recorder.entries()[length:]
            if e.record.event == "signing_decision"
        ]
        assert [r.decision for r in decisions] == ["refused"]
        assert "wait for the next activation" not in screen_text(app)

    run(app, SMALL, body)


# -- receipts as QR ----------------------------------------------------------------------------


async def until(pilot: Any, ready: Callable[[], bool], seconds: float = 60) -> None:
    """Pause until ``ready()`` (a worker waiting on a screen never completes, so
    :func:`settle` cannot be used), failing after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not ready():
        assert time.monotonic() < deadline, f"not ready: {pilot.app.screen}"
        await pilot.pause(0.05)


def test_keys_export_wallet_shows_the_descriptor_then_its_receipt(appliance: Appliance) -> None:
    """Issue 18: the wallet export as QR, for a coordinator that scans it (camera:0): the
    export ceremony runs with two officers, then the descriptor and the new receipt are
    shown, each decoded here from the frames as a camera would read them."""
    from textual.widgets import DataTable

    from shared.ur.registry import decode_bytes, decode_crypto_output

    async def body(pilot: Any) -> None:
        await pilot.press("k")
        await pilot.pause()
        table = pilot.app.screen.query_one("#keys", DataTable)
        table.move_cursor(row=table.get_row_index("treasury"))
        await pilot.pause()
        await pilot.press("e")
        await pilot.pause()
        for label, pin in (("officer-1", "1111"), ("officer-2", "2222")):
            await type_text(pilot, label)
            await pilot.press("enter")
            await type_text(pilot, pin)
            await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, ShowQrScreen))
        receipt = appliance.recorder.last()
        assert receipt.record.event == "wallet_exported"
        descriptor = decode_crypto_output(scanned_payload(pilot.app.screen, "crypto-output"))
        assert str(descriptor).split("#")[0] == receipt.record.details["descriptor"].split("#")[0]
        first = pilot.app.screen
        await pilot.press("enter")
        await until(pilot, lambda: pilot.app.screen is not first)
        assert isinstance(pilot.app.screen, ShowQrScreen)
        assert "receipt" in pilot.app.screen.title_text
        shown = decode_bytes(scanned_payload(pilot.app.screen, "bytes"))
        assert shown == receipt.to_bytes() and Entry.from_bytes(shown).verify(
            appliance.journal.audit_key
        )
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, KeysScreen))

    run(ColdstationApp(appliance), SMALL, body)


def test_journal_shows_a_receipt_again_and_nothing_else(appliance: Appliance) -> None:
    """``q`` on a wallet_exported record shows its descriptor and receipt (no officer,
    nothing journaled); on any other record it says which records have receipts."""
    from textual.widgets import DataTable

    from shared.ur.registry import decode_bytes

    async def body(pilot: Any) -> None:
        await pilot.press("j")
        await pilot.pause()
        screen = pilot.app.screen
        table = screen.query_one("#rows", DataTable)
        exported = next(e for e in screen.entries if e.record.event == "wallet_exported")
        other = next(e for e in screen.entries if e.record.event == "key_generated")
        length = len(appliance.recorder.store)
        table.move_cursor(row=table.get_row_index(str(other.record.seq)))
        await pilot.press("q")
        await pilot.pause()
        assert pilot.app.screen is screen
        said = [n.message for n in pilot.app._notifications]
        assert any("only they have receipts" in message for message in said), said
        table.move_cursor(row=table.get_row_index(str(exported.record.seq)))
        await pilot.press("q")
        await until(pilot, lambda: isinstance(pilot.app.screen, ShowQrScreen))
        await pilot.press("enter")
        await until(pilot, lambda: "receipt" in getattr(pilot.app.screen, "title_text", ""))
        assert decode_bytes(scanned_payload(pilot.app.screen, "bytes")) == exported.to_bytes()
        await pilot.press("enter")
        await until(pilot, lambda: pilot.app.screen is screen)
        assert len(appliance.recorder.store) == length  # shown again: nothing journaled

    run(ColdstationApp(appliance), SMALL, body)


def test_the_tui_starts_without_loading_the_qr_encoder() -> None:
    """The QR screens (segno, and the urllib, email and xml it loads) are imported when a QR
    is first shown, not at start: the cold start to Home has a 1.5 s budget (sign_bench)."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, appliance.appliance, appliance.tui.app; "
            "print(sorted(m for m in ('segno', 'shared.ui.show_qr') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[]", done.stdout
