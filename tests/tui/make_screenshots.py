"""Write docs/screens/*.svg: every appliance screen at 80x24 (and Home, Review and the QR at
160x50), on a fresh demo appliance. Rerun after changing a screen:

    .venv/bin/python -m tests.tui.make_screenshots [OUT_DIR]    (from the repository root)

Review, approvals and the QR show a real review of the valid request from
``tests.adversarial.psbts``; approvals and signing are played by the tests' stand-in engine
(see tests/tui/test_tui.py) until the real engine signs for the demo appliance's keys.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from appliance.tui.app import ColdstationApp
from tests.tui.test_tui import (
    LARGE,
    SMALL,
    StandInSession,
    make_appliance,
    open_appliance,
    refused_case,
    settle,
    type_text,
    valid_case,
)

Shot = Callable[[Any, Path, str], Awaitable[None]]


async def save(pilot: Any, out: Path, name: str) -> None:
    await pilot.pause(0.3)
    pilot.app.save_screenshot(f"{name}.svg", str(out))
    print(out / f"{name}.svg")


async def navigation(pilot: Any, out: Path, suffix: str) -> None:
    await save(pilot, out, f"home{suffix}")
    if suffix:
        return
    for key, name in (
        ("k", "keys"),
        ("o", "officers"),
        ("p", "policy"),
        ("j", "journal"),
        ("s", "scan"),
    ):
        await pilot.press(key)
        await save(pilot, out, name)
    await pilot.press("escape")
    await pilot.press("k", "down", "u")  # suspend the treasury key: officers present
    await pilot.pause()
    await type_text(pilot, "officer-1")
    await pilot.press("enter")
    await type_text(pilot, "1111")
    await save(pilot, out, "officer-pins")


async def signing(pilot: Any, out: Path, suffix: str) -> None:
    app = pilot.app
    app.scanned(b"psbt\xff")
    await settle(pilot)
    await save(pilot, out, f"review{suffix}")
    if not suffix:
        await pilot.press("a")
        await pilot.pause()
        await type_text(pilot, "officer-1")
        await pilot.press("enter")
        await type_text(pilot, "1111")
        await pilot.press("enter")
        await settle(pilot)
        await save(pilot, out, "approvals")
        await type_text(pilot, "officer-2")
        await pilot.press("enter")
        await type_text(pilot, "2222")
        await pilot.press("enter")
        await settle(pilot)
    else:
        await pilot.press("a")
        for label, pin in (("officer-1", "1111"), ("officer-2", "2222")):
            await pilot.pause()
            await type_text(pilot, label)
            await pilot.press("enter")
            await type_text(pilot, pin)
            await pilot.press("enter")
            await settle(pilot)
    await pilot.press("s")
    await settle(pilot)
    await pilot.press("space")  # hold one frame for the picture
    await save(pilot, out, f"show-qr{suffix}")


async def refused(pilot: Any, out: Path, suffix: str) -> None:
    pilot.app.scanned(b"psbt\xff")
    await settle(pilot)
    await save(pilot, out, f"review-refused{suffix}")


def shoot(app: ColdstationApp, size: tuple[int, int], shot: Shot, out: Path, suffix: str) -> None:
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await shot(pilot, out, suffix)

    asyncio.run(main())


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).parents[2] / "docs" / "screens"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "appliance"
        info = make_appliance(state)
        with open_appliance(state) as appliance:
            officers = info["officers"]

            def app(case: Any | None = None) -> ColdstationApp:
                if case is None:
                    return ColdstationApp(appliance)
                session = StandInSession(case, officers)
                return ColdstationApp(appliance, session_factory=lambda _a: session)

            for size, suffix in ((SMALL, ""), (LARGE, "-160x50")):
                shoot(app(), size, navigation, out, suffix)
                shoot(app(valid_case()), size, signing, out, suffix)
            shoot(app(refused_case()), SMALL, refused, out, "")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
