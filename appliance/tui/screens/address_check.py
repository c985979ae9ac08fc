"""Address check: is this address one of our wallets', and which (issue 18; COLDCARD's
address explorer). An officer types or pastes the address a customer is about to be given;
the station re-derives its pinned wallets (ranged ones to ``ADDRESS_CHECK_DEPTH`` on each
branch) and says the wallet, branch, index and key, or that it is not ours."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from appliance.appliance import Appliance
from appliance.station import ADDRESS_CHECK_DEPTH
from appliance.tui.engine import EngineError
from appliance.tui.screens.common import KeysFooter, off_thread


class AddressCheckScreen(ModalScreen[None]):
    """Type an address, Enter: the verdict below it; Escape closes."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Close")]

    def __init__(self, appliance: Appliance) -> None:
        super().__init__()
        self.appliance = appliance

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static("Address check: is it ours?", classes="dialog-title")
            yield Input(placeholder="address", id="address")
            yield Static("", id="verdict")
            yield Static(
                f"ranged wallets: indexes 0..{ADDRESS_CHECK_DEPTH} of each branch", classes="hint"
            )
        yield KeysFooter()

    def on_mount(self) -> None:
        self.query_one("#address", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip():
            self.check(event.value.strip())

    @work(exclusive=True)
    async def check(self, address: str) -> None:
        verdict = self.query_one("#verdict", Static)
        verdict.update("checking…")
        try:
            found = await off_thread(lambda: self.appliance.address_owner(address))
        except EngineError as exc:
            verdict.update(Text(str(exc), style="bold red"))
            return
        if found is None:
            verdict.update(
                Text(
                    f"NOT OURS: {address} is not an address of this station's wallets",
                    style="bold red",
                )
            )
            return
        key = found.our_key
        model = "bip32 seed" if key.account is not None else "hsm key"
        verdict.update(
            Text(
                f"OURS: {found.describe()} · key {key.label} ({model}, {key.state})",
                style="bold green",
            )
        )

    def action_close(self) -> None:
        self.dismiss(None)
