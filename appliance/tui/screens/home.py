"""Home: who this appliance is, what it signs with and under which rules, and whether its
journal is intact, read from the live state each time the screen comes back."""

from __future__ import annotations

import time
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from appliance.appliance import Appliance
from appliance.keystore import KeyInfo, KeyState
from appliance.tui.engine import EngineError, pinned_wallets
from appliance.tui.screens.common import NavScreen, PresentOfficers, off_thread, when
from shared.journal import audit_key_fingerprint
from shared.policy import SignedPolicy

STATE_STYLE = {
    KeyState.ACTIVE: "bold green",
    KeyState.SUSPENDED: "bold yellow",
    KeyState.ARCHIVED: "dim",
}


def key_state_text(info: KeyInfo) -> Text:
    return Text(str(info.state), style=STATE_STYLE.get(info.state, ""))


def fill_keys(table: DataTable, keys: list[KeyInfo]) -> None:
    """The keys, one row each (row key = label), in the registry's order."""
    if not table.columns:
        table.add_columns("label", "state", "backup", "origin", "created")
    table.clear()
    for info in keys:
        table.add_row(
            info.label,
            key_state_text(info),
            str(info.backup_model),
            info.origin,
            info.created[:16].replace("T", " "),
            key=info.label,
        )


class HomeScreen(NavScreen):
    """The appliance at a glance; anything that stops the station is the first thing shown."""

    NAME: ClassVar[str] = "home"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("w", "write_pending", "Write pending"),
        Binding("l", "last_signed", "Last QR"),
        Binding("a", "address_check", "Address"),
    ]

    def compose(self) -> ComposeResult:
        yield from self.compose_chrome()
        with VerticalScroll(id="home"):
            yield Static(id="torn", classes="alarm")
            yield Static(id="identity", classes="panel")
            keys: DataTable[str | Text] = DataTable(
                id="keys", classes="panel", cursor_type="row", zebra_stripes=True
            )
            keys.border_title = "Keys"
            yield keys

    def on_mount(self) -> None:
        self.query_one("#identity").border_title = "Appliance"
        self.refresh_facts()

    def on_screen_resume(self) -> None:
        self.refresh_facts()

    def refresh_facts(self) -> None:
        appliance = self.appliance
        self.app.sub_title = appliance.config.appliance_id
        alarm = self.query_one("#torn", Static)
        alarm.display = bool(appliance.problems)
        if appliance.problems:
            alarm.update(
                Text(
                    "STATION STOPPED: nothing is signed until the administrators run "
                    "`journal recover` (or the cause below is fixed).\n"
                    + "\n".join(appliance.problems),
                    style="bold",
                )
            )
        self.query_one("#identity", Static).update(self._identity())
        fill_keys(self.query_one("#keys", DataTable), appliance.keystore.key_infos())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "write_pending":
            return bool(self.appliance.state.pending())
        return super().check_action(action, parameters)

    def action_address_check(self) -> None:
        from appliance.tui.screens.address_check import AddressCheckScreen

        self.app.push_screen(AddressCheckScreen(self.appliance))

    def action_last_signed(self) -> None:
        """The newest signed PSBT again, from the station's checked copy (no approval)."""
        from appliance.signing import last_signed
        from shared.ui.show_qr import ShowQrScreen
        from shared.ur.registry import encode_psbt
        from shared.ur.ur import UR

        try:
            result = last_signed(self.appliance)
        except Exception as exc:  # a damaged journal or medium: say so, do not crash
            self.notify(f"cannot show it again: {exc}", severity="error", timeout=10)
            return
        if result is None:
            self.notify(
                "No signed PSBT to show again: none was approved recently, or the station's "
                "copy does not match its journal record.",
                severity="warning",
                timeout=10,
            )
            return
        ur = UR("crypto-psbt", encode_psbt(result.psbt_bytes))
        note = f"shown again: journal record {result.receipt_seq} · no new approval"
        self.app.push_screen(ShowQrScreen(ur, "Signed PSBT (again)", note))

    def action_write_pending(self) -> None:
        self.write_pending(self.appliance.policy().approval_quorum)

    @work(group="ceremony")
    async def write_pending(self, quorum: int) -> None:
        """Refusals decided while the token was locked, and lockout resets, wait for an
        activation to be signed into the journal; officers present to write them now."""
        appliance = self.appliance
        officers = await self.app.push_screen_wait(
            PresentOfficers(
                f"Write pending records: {quorum} officers present their tokens",
                quorum,
                appliance.config.officer_tokens.values(),
            )
        )
        if not officers:
            return
        try:
            count = await off_thread(lambda: appliance.flush_pending(officers))
        except EngineError as exc:
            self.notify(str(exc), title="Refused", severity="error", timeout=10)
            return
        self.notify(f"{count} pending record(s) written to the journal.")
        self.refresh_facts()

    def _clock(self) -> Text:
        """The station's UTC time; red when it is behind the journal (nothing signs then)."""
        now = int(time.time())
        shown = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
        if now < self.appliance.journal.last_time:
            return Text(f"{shown}: BEHIND the journal's last record, set it right", "bold red")
        return Text(shown)

    def _identity(self) -> Text:
        appliance = self.appliance
        config = appliance.config
        signed = policy_or_none(appliance)
        last = appliance.recorder.last()
        length = len(appliance.recorder.store)
        wallets = pinned_wallets(appliance)
        lines = Text()

        def line(name: str, value: str | Text, style: str = "") -> None:
            lines.append(f"{name:<10}", style="bold")
            lines.append(value if isinstance(value, Text) else Text(value, style=style))
            lines.append("\n")

        line(
            "Id",
            f"{config.appliance_id} · {config.network}"
            + (" · demo tokens (SoftHSM2)" if config.demo else ""),
        )
        audit = appliance.journal.audit_key
        line(
            "Audit key",
            f"fingerprint {audit_key_fingerprint(audit)} (ops compare it on wallet import)"
            if audit
            else "none yet",
        )
        line("Clock", self._clock())
        if signed is None:
            line("Policy", "none installed: no ceremony can run", "bold red")
        else:
            policy = signed.policy
            active = sum(o.active for o in policy.officers)
            line(
                "Policy",
                f"version {policy.version} · {policy.approval_quorum} of {active} "
                f"officers approve · hash {policy.hash().hex()[:16]}",
            )
        if not wallets:
            line("Wallet", "none pinned yet", "dim")
        for number, wallet in enumerate(wallets, start=1):
            line("Wallet" if number == 1 else "", wallet)
        if last is None:
            line("Journal", "empty")
        else:
            record = last.record
            line(
                "Journal",
                f"{length} records · head {record.hash().hex()[:16]} · "
                f"last {record.event} {when(record.time)}",
            )
        overdue = appliance.journal.overdue_backups(int(time.time()))
        if overdue:
            names = ", ".join(f"{e.label} ({e.blob.hex()[:8]})" for e in overdue[:3])
            more = f" and {len(overdue) - 3} more" if len(overdue) > 3 else ""
            line(
                "Backups",
                f"test restore overdue: {names}{more} (backup-test)",
                "bold yellow",
            )
        pending = len(appliance.state.pending())
        if pending:
            line(
                "Pending",
                f"{pending} record(s) wait for the next activation (w writes them)",
                "bold yellow",
            )
        lines.rstrip()
        return lines


def policy_or_none(appliance: Appliance) -> SignedPolicy | None:
    """The policy in force, or None when there is none or its file does not verify (the
    problem itself is shown in the alarm panel)."""
    try:
        return appliance.signed_policy()
    except Exception:  # a screen must not crash on a damaged station
        return None
