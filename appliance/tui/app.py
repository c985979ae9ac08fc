"""The Textual application and :func:`run`, the entry for ``coldstation-appliance`` with no
ceremony named.

Navigation: Home is the base screen; Keys, Officers, Policy and Journal open over it, one at
a time, from single keys shown in the Footer and in the command palette (Ctrl+P). A signing
ceremony (Scan -> Review -> Approvals -> Show QR) has no navigation keys at all: it ends by
signing or by a journaled refusal, then returns Home.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen

from appliance.appliance import Appliance
from appliance.tui.engine import Ceremony, EngineError, SessionFactory, describe
from appliance.tui.screens.common import NavScreen, off_thread
from appliance.tui.screens.home import HomeScreen
from appliance.tui.screens.journal import JournalScreen
from appliance.tui.screens.keys import KeysScreen
from appliance.tui.screens.officers import OfficersScreen
from appliance.tui.screens.policy import PolicyScreen
from appliance.tui.screens.review import ReviewScreen
from appliance.tui.screens.scan import ScanScreen

NAVIGATION: dict[str, type[NavScreen]] = {
    "home": HomeScreen,
    "keys": KeysScreen,
    "officers": OfficersScreen,
    "policy": PolicyScreen,
    "journal": JournalScreen,
}


class ColdstationApp(App[None]):
    """The cold station's screens over one open :class:`Appliance` (owned by the caller)."""

    CSS_PATH = "app.tcss"
    TITLE = "Coldstation"
    # Textual declares it `ClassVar[...] | None`, which a type checker reads as an instance
    # variable; a ClassVar here would contradict that, so ruff's ClassVar rule yields
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]  # noqa: RUF012
    #: Textual's own ctrl+q, shown in the footer (issue 18: officers did not find it)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit", priority=True, key_display="^q")
    ]

    def __init__(
        self,
        appliance: Appliance,
        *,
        camera: str = "0",
        session_factory: SessionFactory | None = None,
    ) -> None:
        super().__init__()
        self.appliance = appliance
        self.camera = camera
        self.session_factory = session_factory
        self.ceremony: Ceremony | None = None

    def get_default_screen(self) -> Screen[Any]:
        return HomeScreen(self.appliance)

    # -- navigation -----------------------------------------------------------------------

    async def action_go(self, name: str) -> None:
        """Open a top-level screen over Home (``sign`` starts a ceremony with the scan)."""
        if name == "sign":
            await self._home()
            await self.push_screen(ScanScreen(self.camera), self.scanned)
            return
        target = NAVIGATION[name]
        if type(self.screen) is target:
            return
        await self._home()
        if target is not HomeScreen:
            await self.push_screen(target(self.appliance))

    async def _home(self) -> None:
        while len(self.screen_stack) > 1:
            await self.pop_screen()

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The palette lists the screen's own keys too, so every binding can be found."""
        yield from super().get_system_commands(screen)
        seen: set[str] = set()
        for key, active in screen.active_bindings.items():
            binding = active.binding
            if active.node is not screen or not binding.show or not active.enabled:
                continue
            if not binding.description or binding.description in seen:
                continue
            seen.add(binding.description)
            help_text = f"key {binding.key_display or key}"
            yield SystemCommand(
                binding.description, help_text, partial(screen.run_action, binding.action)
            )

    # -- the signing ceremony ---------------------------------------------------------------

    def scanned(self, psbt: bytes | None) -> None:
        """The scan screen hands over the PSBT bytes: the engine reviews them."""
        if psbt is None:
            return
        try:
            ceremony = Ceremony(self.appliance, self.session_factory)
        except EngineError as exc:
            self.notify(str(exc), title="Cannot review", severity="error", timeout=15)
            return
        self.ceremony = ceremony
        self.notify(f"Scanned {len(psbt)} bytes; reviewing…")
        self.review(ceremony, psbt)

    @work(group="ceremony")
    async def review(self, ceremony: Ceremony, psbt: bytes) -> None:
        """The engine reviews the bytes off the UI thread; the review screen shows its view."""
        try:
            review = await off_thread(lambda: ceremony.load(psbt))
        except EngineError as exc:
            self.notify(str(exc), title="Refused", severity="error", timeout=15)
            return
        await self.push_screen(ReviewScreen(self.appliance, ceremony, review))


def run(state_dir: Path, *, camera: str = "0") -> int:
    """Open the appliance in ``state_dir`` and run the TUI until the officers quit.

    ``camera`` is the default scan source: a camera index or a video file. Returns the
    process exit status (2 when the appliance cannot be opened, as the CLI does).
    """
    try:
        appliance = Appliance(Path(state_dir))
    except Exception as exc:  # say why in one line, as the CLI does
        print(f"error: {describe(exc)}", file=sys.stderr)
        return 2
    with appliance:
        ColdstationApp(appliance, camera=camera).run()
    return 0
