"""Keys: every key in the signing token with its lifecycle state; suspending or reactivating
one is the ``suspend``/``reactivate`` ceremony, with M officers presenting their tokens;
``e`` exports a key's wallet (the ``export-wallet`` ceremony) and shows its descriptor and
receipt as animated QR for the coordinator."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from appliance.keystore import AUDIT_KEY_LABEL, KeyState
from appliance.tui.engine import EngineError
from appliance.tui.screens.common import NavScreen, PresentOfficers, off_thread
from appliance.tui.screens.home import fill_keys
from appliance.tui.screens.receipts import show_receipt

VERBS = {KeyState.SUSPENDED: "suspend", KeyState.ACTIVE: "reactivate"}


class KeysScreen(NavScreen):
    NAME: ClassVar[str] = "keys"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("u", "change_state('suspended')", "Suspend"),
        Binding("r", "change_state('active')", "Reactivate"),
        Binding("e", "export_wallet", "Export wallet"),
    ]

    def compose(self) -> ComposeResult:
        yield from self.compose_chrome()
        with Vertical(id="keys-screen"):
            table: DataTable[str | Text] = DataTable(
                id="keys", classes="panel", cursor_type="row", zebra_stripes=True
            )
            table.border_title = "Keys in the signing token"
            yield table
            yield Static(id="key-detail", classes="panel")
            yield Static(id="key-problem", classes="error")

    def on_mount(self) -> None:
        self.query_one("#key-detail").border_title = "Selected key"
        self.reload()
        self.query_one("#keys", DataTable).focus()

    def reload(self) -> None:
        table = self.query_one("#keys", DataTable)
        row = table.cursor_row
        fill_keys(table, self.appliance.keystore.key_infos())
        if table.row_count:
            table.move_cursor(row=min(row, table.row_count - 1))
        self._show_detail()

    def selected_label(self) -> str | None:
        table = self.query_one("#keys", DataTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        label = self.selected_label()
        detail = self.query_one("#key-detail", Static)
        if label is None:
            detail.update("no keys yet: generate one with `coldstation-appliance keygen`")
            return
        info = self.appliance.keystore.info(label)
        text = Text()
        text.append(f"{info.label}", style="bold")
        text.append(f" · {info.key_model} · {info.state} · {info.backup_model} · {info.origin}\n")
        if info.xpub:
            text.append(f"account    [{info.key_origin}]{info.xpub}\n")
            text.append(
                "           fresh addresses from this account; the seed stays in the HSM,\n"
            )
            text.append(
                "           read into station memory only while a ceremony signs\n", style="dim"
            )
        text.append(f"public key {info.public_key}\nkey id     {info.key_id}")
        if label == AUDIT_KEY_LABEL:
            text.append("\nsigns the journal: it is never suspended", style="dim")
        detail.update(text)

    def action_change_state(self, state: str) -> None:
        target = KeyState(state)
        label = self.selected_label()
        if label is None:
            return
        if label == AUDIT_KEY_LABEL:
            self.notify(
                "The audit key signs every journal record; it cannot be suspended.",
                severity="error",
            )
            return
        info = self.appliance.keystore.info(label)
        if info.state is target:
            self.notify(f"{label} is already {target}.", severity="warning")
            return
        try:
            policy = self.appliance.policy()
        except Exception as exc:  # no policy: say so, do not crash
            self.notify(str(exc), severity="error")
            return
        self.change_state(label, target, policy.approval_quorum)

    @work(group="ceremony")
    async def change_state(self, label: str, target: KeyState, quorum: int) -> None:
        """M officers present their tokens, then the ceremony runs off the UI thread."""
        verb = VERBS[target].capitalize()
        officers = await self.app.push_screen_wait(
            PresentOfficers(
                f"{verb} key {label}: {quorum} officers present their tokens",
                quorum,
                self.appliance.config.officer_tokens.values(),
            )
        )
        if not officers:
            return
        problem = self.query_one("#key-problem", Static)
        problem.update(f"{verb} {label}: activating the signing token…")
        try:
            entry = await off_thread(lambda: self.appliance.set_key_state(officers, label, target))
        except EngineError as exc:
            problem.update(f"Refused: {exc}")
            self.notify(str(exc), title="Refused", severity="error", timeout=10)
            self.reload()
            return
        problem.update("")
        self.notify(f"Key {label} is now {target} (journal seq {entry.record.seq}).")
        self.reload()

    def action_export_wallet(self) -> None:
        label = self.selected_label()
        if label is None:
            return
        if label == AUDIT_KEY_LABEL:
            self.notify("The audit key signs the journal; it has no wallet.", severity="error")
            return
        try:
            quorum = self.appliance.policy().approval_quorum
        except Exception as exc:  # no policy: say so, do not crash
            self.notify(str(exc), severity="error")
            return
        self.export_wallet(label, quorum)

    @work(group="ceremony")
    async def export_wallet(self, label: str, quorum: int) -> None:
        """M officers present their tokens; the receipt is journaled, then shown as QR."""
        officers = await self.app.push_screen_wait(
            PresentOfficers(
                f"Export the wallet of {label}: {quorum} officers present their tokens",
                quorum,
                self.appliance.config.officer_tokens.values(),
            )
        )
        if not officers:
            return
        problem = self.query_one("#key-problem", Static)
        problem.update(f"Export {label}: activating the signing token…")
        try:
            _, receipt = await off_thread(lambda: self.appliance.export_wallet(officers, label))
        except EngineError as exc:
            problem.update(f"Refused: {exc}")
            self.notify(str(exc), title="Refused", severity="error", timeout=10)
            return
        problem.update("")
        self.notify(f"Wallet of {label} exported (journal seq {receipt.record.seq}).")
        await show_receipt(self.app, receipt)
