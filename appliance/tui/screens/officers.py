"""Officers: who may approve and who administers, as the installed policy names them, with
each approval key's curve, the identity each token was enrolled with (manufacturer, model,
serial, firmware: a token presenting another is refused), the appliance's own PIN attempt
counters and what the token itself reports; administrators reset a locked-out token here
(the ``reset-lockout`` ceremony)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from appliance.officers import token_lockout
from appliance.tui.engine import EngineError
from appliance.tui.screens.common import NavScreen, PresentOfficers, off_thread


class OfficersScreen(NavScreen):
    NAME: ClassVar[str] = "officers"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("l", "reset_lockout", "Reset lockout"),
    ]

    def compose(self) -> ComposeResult:
        yield from self.compose_chrome()
        with Vertical(id="officers-screen"):
            yield Static(id="quorum", classes="panel")
            table: DataTable[str | Text] = DataTable(
                id="officers", classes="panel", cursor_type="row", zebra_stripes=True
            )
            table.border_title = "Officers and administrators"
            yield table

    def on_mount(self) -> None:
        self.query_one("#quorum").border_title = "Quorum"
        self.reload()
        self.query_one("#officers", DataTable).focus()

    def reload(self) -> None:
        """The table afresh, the cursor kept on its row: after a refused reset the
        administrators retry on the token they chose, not on the first one."""
        table = self.query_one("#officers", DataTable)
        if not table.columns:
            table.add_columns(
                "role", "token", "fingerprint", "key", "status", "PIN tries left", "enrolled token"
            )
        row = table.cursor_row
        table.clear()
        config = self.appliance.config
        try:
            policy = self.appliance.policy()
        except Exception as exc:  # show the problem instead of the table
            self.query_one("#quorum", Static).update(Text(str(exc), style="bold red"))
            return
        self.query_one("#quorum", Static).update(
            f"{policy.approval_quorum} of {sum(o.active for o in policy.officers)} active "
            f"approvers sign a request · {policy.admin_quorum} of "
            f"{len(policy.administrators)} administrators sign a policy (version "
            f"{policy.version})"
        )
        tokens = {**config.officer_tokens, **config.admin_tokens}
        enrolled = self.appliance.journal.enrolled
        for officer in (*policy.officers, *policy.administrators):
            label = tokens.get(officer.fingerprint, "?")
            status = Text("active", "green") if officer.active else Text("revoked", "bold red")
            enrolment = enrolled.get(officer.fingerprint)
            identity = enrolment.identity if enrolment is not None else None
            shown = (
                f"{identity['manufacturer']} {identity['model']} #{identity['serial']} "
                f"fw {identity['firmware']}"
                if identity
                else "not recorded"
            )
            table.add_row(
                officer.role,
                label,
                officer.fingerprint,
                officer.algorithm,
                status,
                self._tries_left(label),
                shown,
                key=label,
            )
        if table.row_count:
            table.move_cursor(row=min(row, table.row_count - 1))

    def _tries_left(self, label: str) -> Text:
        """The station's count of attempts left, and the token's own report where it has one."""
        try:
            found = self.appliance.tokens().find(label)
        except Exception:  # an absent token (or one not enrolled as presented) is shown
            return Text("token absent", "dim")
        left = self.appliance.guard.remaining(found.counter_key)
        said = token_lockout(found)
        text = f"{left} (token: {said})" if said else str(left)
        return Text(text, "bold red" if left == 0 or said == "locked" else "")

    def action_reset_lockout(self) -> None:
        table = self.query_one("#officers", DataTable)
        if not table.row_count:
            return
        label = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        self.reset_lockout(label, self.appliance.policy().admin_quorum)

    @work(group="ceremony")
    async def reset_lockout(self, label: str, quorum: int) -> None:
        """The administrators present their tokens and sign the reset of ``label``'s lockout."""
        admins = await self.app.push_screen_wait(
            PresentOfficers(
                f"Reset the PIN lockout of {label}: {quorum} administrators present their tokens",
                quorum,
                self.appliance.config.admin_tokens.values(),
                role="Administrator",
            )
        )
        if not admins:
            return
        try:
            await off_thread(lambda: self.appliance.reset_lockout(admins, label))
        except EngineError as exc:
            self.notify(str(exc), title="Refused", severity="error", timeout=10)
            self.reload()
            return
        self.notify(
            f"{label} may try its PIN again; the reset is journaled at the next activation."
        )
        self.reload()
