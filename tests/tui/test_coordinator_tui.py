"""The coordinator's request QR (``online_coordinator.tui``) driven by Textual's Pilot.

It is the appliance's own animated-QR screen (``shared.ui.show_qr``), so these tests check what
the coordinator adds: the frames carry exactly the unsigned PSBT, the request hash words
stand in full beside the QR at 80x24 as at 160x50, and Enter or Escape ends with 0.

Each test runs its app with ``asyncio.run`` so no pytest plugin or configuration is needed.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import re
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.app import App
from textual.widgets import Static

from online_coordinator import tui
from online_coordinator.tui import RequestQrApp, show_request
from shared.bitcoin.tx import SEQUENCE_RBF, OutPoint, Transaction, TxIn, TxOut
from shared.psbt.model import Psbt
from shared.request import RequestError, hash_words
from shared.ui.show_qr import ShowQrScreen
from shared.ur.registry import RegistryError, decode_psbt, encode_psbt
from shared.ur.ur import UR, URDecoder

SMALL, LARGE = (80, 24), (160, 50)
SIZES = pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "160x50"])
PAYEE = bytes.fromhex("0014" + "75" * 20)  # a P2WPKH output script
_SVG_TEXT = re.compile(r'<text[^>]*clip-path="url\(#[^)]*-line-(\d+)\)"[^>]*>(.*?)</text>', re.S)


def request_psbt(inputs: int = 8) -> bytes:
    """An unsigned request spending ``inputs`` coins, each with its full previous transaction
    (about 1 kB), so the QR takes several frames even at 160x50."""
    funding = [
        Transaction(
            inputs=[TxIn(OutPoint(bytes([n]) * 32, n), b"\x51")],
            outputs=[TxOut(100_000 + n, PAYEE), TxOut(5_000, PAYEE)],
        )
        for n in range(inputs)
    ]
    spend = Transaction(
        inputs=[TxIn(OutPoint(f.txid, 0), sequence=SEQUENCE_RBF) for f in funding],
        outputs=[TxOut(700_000, PAYEE)],
    )
    psbt = Psbt.from_unsigned_tx(spend)
    for record, prev in zip(psbt.inputs, funding, strict=True):
        record.set(0x00, prev.serialize())
    return psbt.serialize()


PSBT = request_psbt()
REQUEST_HASH = hashlib.sha256(PSBT).digest()  # any 32 bytes: the screen only shows them


def screen_text(app: App[Any]) -> str:
    """What the terminal shows, line by line (from the app's own SVG screenshot)."""
    lines: dict[int, str] = defaultdict(str)
    for number, text in _SVG_TEXT.findall(app.export_screenshot()):
        lines[int(number)] += html.unescape(text).replace("\xa0", " ")
    return "\n".join(lines[n] for n in sorted(lines))


def run(app: RequestQrApp, size: tuple[int, int], body: Callable[[Any], Awaitable[None]]) -> None:
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await pilot.pause(0.2)
            await body(pilot)

    asyncio.run(main())


@SIZES
def test_frames_decode_to_the_request_and_enter_exits_with_0(size: tuple[int, int]) -> None:
    app = RequestQrApp("batch-7", PSBT, REQUEST_HASH)

    async def body(pilot: Any) -> None:
        screen = app.screen
        assert isinstance(screen, ShowQrScreen)
        assert screen.title_text == "Signing request batch-7"
        assert screen.stream.fits(*screen.available())  # the first density fits the window
        assert screen.stream.parts > 1  # a real fountain stream, not one frame
        await pilot.press("space")  # paused: every frame below is stepped and fed
        decoder = URDecoder(expected_types=["crypto-psbt"])
        for _ in range(20 * screen.stream.parts):
            assert str(screen.query_one("#qr", Static).visual) == screen.frame_text
            decoder.receive(screen.part_text)
            if decoder.is_complete:
                break
            screen.advance()
        assert decoder.result is not None and decode_psbt(decoder.result.cbor) == PSBT
        await pilot.press("enter")

    run(app, size, body)
    assert app.return_value == 0 and app.return_code == 0


@SIZES
def test_the_hash_words_stand_in_full_beside_the_qr(size: tuple[int, int]) -> None:
    app = RequestQrApp("batch-7", PSBT, REQUEST_HASH)

    async def body(pilot: Any) -> None:
        screen = app.screen
        assert hash_words(REQUEST_HASH) in str(screen.aside).replace("\n", " / ")
        shown = screen_text(app)
        for group in hash_words(REQUEST_HASH).split(" / "):
            assert group in shown  # each group of four on one line, none cut off
        assert "Signing request batch-7" in shown
        aside, area = screen.query_one("#qr-aside"), screen.query_one("#qr-area")
        assert aside.region.x >= area.region.right  # beside the QR, not over it

    run(app, size, body)


def test_escape_exits_with_0() -> None:
    app = RequestQrApp("batch-7", PSBT, REQUEST_HASH)

    async def body(pilot: Any) -> None:
        await pilot.press("escape")

    run(app, SMALL, body)
    assert app.return_value == 0 and app.return_code == 0


@pytest.mark.parametrize("size", [(80, 25), (100, 27), (120, 31), (160, 51)], ids=str)
def test_the_first_density_fits_once_the_status_is_filled(size: tuple[int, int]) -> None:
    """The shared screen as the appliance pushes it (with a note under the status): the
    status takes its second line after the first fit, so at odd heights the screen must fit
    again rather than warn that its own choice is too big."""
    ur = UR("crypto-psbt", encode_psbt(PSBT))
    screen = ShowQrScreen(ur, "Signed PSBT", "receipt: journal record 7 · Enter once scanned")

    async def main() -> None:
        app: App[None] = App()
        async with app.run_test(size=size) as pilot:
            await app.push_screen(screen)
            for _ in range(30):  # the second fit lands after a layout pass; slower under load
                await pilot.pause(0.1)
                if screen.stream.fits(*screen.available()):
                    break
            assert screen.stream.fits(*screen.available())
            assert "too big" not in str(screen.status())

    asyncio.run(main())


def test_a_bad_request_fails_before_the_terminal_is_taken() -> None:
    with pytest.raises(RegistryError):
        RequestQrApp("batch-7", b"not a psbt", REQUEST_HASH)
    with pytest.raises(RequestError):
        RequestQrApp("batch-7", PSBT, REQUEST_HASH[:16])


def test_show_request_returns_0_when_the_officer_is_done(monkeypatch: Any) -> None:
    original = RequestQrApp.run

    async def officer(pilot: Any) -> None:
        await pilot.pause(0.2)
        await pilot.press("enter")

    def headless(self: RequestQrApp, **_: Any) -> Any:
        return original(self, headless=True, size=SMALL, auto_pilot=officer)

    monkeypatch.setattr(tui.RequestQrApp, "run", headless)
    assert show_request("batch-7", PSBT, REQUEST_HASH) == 0
