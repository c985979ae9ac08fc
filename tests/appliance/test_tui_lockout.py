"""The TUI's lockout reset, on a real demo appliance: administrators present their tokens in
the dialog, the ceremony runs off the UI thread, and the signed reset waits in ``pending/``
for the next activation (``Appliance.reset_lockout``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.appliance import Appliance
from appliance.hsm import module_path
from appliance.tui.app import ColdstationApp
from appliance.tui.screens.officers import OfficersScreen
from tests.tui.test_tui import (
    ADMIN_PINS,
    OFFICER_PINS,
    SMALL,
    cli,
    open_appliance,
    run,
    settle,
    type_text,
)


def saying_app(appliance: Appliance) -> tuple[ColdstationApp, list[str]]:
    """The app, and what it tells the officers (notifications are not shown under Pilot)."""
    app = ColdstationApp(appliance)
    said: list[str] = []
    shown = app.notify

    def notify(message: str, **kwargs: Any) -> None:
        said.append(message)
        shown(message, **kwargs)

    app.notify = notify  # type: ignore[method-assign]
    return app, said


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    if not Path(module_path()).exists():
        pytest.skip("SoftHSM2 (libsofthsm2.so) is not installed")
    previous = os.environ.get("SOFTHSM2_CONF")
    state = tmp_path_factory.mktemp("tui-lockout") / "appliance"
    cli(
        state,
        "init",
        "--demo",
        "--network",
        "regtest",
        pins=[*OFFICER_PINS.values(), *ADMIN_PINS.values()],
    )
    opened = open_appliance(state)
    yield opened
    opened.close()
    opened.hsm.logout_all()
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous


async def present(pilot: Any, people: list[tuple[str, str]]) -> None:
    for label, pin in people:
        await type_text(pilot, label)
        await pilot.press("enter")
        await type_text(pilot, pin)
        await pilot.press("enter")
    await settle(pilot)


def test_administrators_reset_a_lockout_from_the_officers_screen(appliance: Appliance) -> None:
    from textual.widgets import DataTable

    app, said = saying_app(appliance)

    async def body(pilot: Any) -> None:
        await pilot.press("o")
        await pilot.pause()
        assert isinstance(pilot.app.screen, OfficersScreen)
        table = pilot.app.screen.query_one("#officers", DataTable)
        table.move_cursor(row=table.get_row_index("officer-3"))
        await pilot.pause()

        await pilot.press("l")
        await pilot.pause()
        await present(pilot, [("admin-1", ADMIN_PINS["admin-1"]), ("admin-2", "0000")])
        assert "admin-2" in said[-1] and "PIN" in said[-1]  # refused, said why
        assert appliance.state.pending() == []  # nothing stored

        await pilot.press("l")  # the cursor stayed on officer-3 through the refusal
        await pilot.pause()
        await present(pilot, list(ADMIN_PINS.items()))
        assert said[-1].startswith("officer-3 may try its PIN again")
        assert len(appliance.state.pending()) == 1  # journaled at the next activation
        told = len(said)

        await pilot.press("l")
        await pilot.pause()
        await pilot.press("escape")  # the administrators change their minds: nothing happens
        await settle(pilot)
        assert isinstance(pilot.app.screen, OfficersScreen)
        assert len(appliance.state.pending()) == 1 and len(said) == told

    run(app, SMALL, body)
