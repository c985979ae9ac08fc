"""Journal: every record, newest first, narrowed by event or by request id; Enter shows a
record in full, ``v`` re-verifies the whole chain and every signature (as the auditors will),
``q`` shows a wallet export's or pin's receipt as animated QR again."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Select, Static

from appliance.appliance import Appliance
from appliance.tui.engine import EngineError
from appliance.tui.screens.common import KeysFooter, NavScreen, hex_text, off_thread, when
from appliance.tui.screens.receipts import RECEIPT_EVENTS, receipt_screens, show_receipt
from shared.journal import Entry, Record


def request_ids(record: Record) -> list[str]:
    """Hex ids a record can be found by: the request id and the request hash."""
    found = [hex_text(record.details["request_id"])] if "request_id" in record.details else []
    if "request" in record.subjects:
        found.append(record.subjects["request"].hex())
    return found


def matches(record: Record, event: str | None, request: str) -> bool:
    if event is not None and record.event != event:
        return False
    wanted = request.strip().lower()
    return not wanted or any(rid.startswith(wanted) for rid in request_ids(record))


def plain(value: Any, indent: str = "") -> str:
    """A record's details as indented lines; bytes in hex."""
    if isinstance(value, dict):
        return "".join(f"\n{indent}{k}: {plain(v, indent + '  ')}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "".join(f"\n{indent}- {plain(v, indent + '  ')}" for v in value)
    return hex_text(value)


class RecordScreen(ModalScreen[None]):
    """One record in full: nothing abbreviated, bytes in hex."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,enter", "dismiss", "Close")]

    def __init__(self, record: Record) -> None:
        super().__init__()
        self.record = record

    def compose(self) -> ComposeResult:
        r = self.record
        body = Text()
        for name, value in (
            ("seq", r.seq),
            ("time", when(r.time)),
            ("event", r.event),
            ("decision", r.decision or "-"),
            ("hash", r.hash().hex()),
            ("prev_hash", r.prev_hash.hex()),
            ("actors", ", ".join(r.actors) or "-"),
        ):
            body.append(f"{name:<10}", style="bold")
            body.append(f"{value}\n")
        body.append("subjects", style="bold")
        body.append(plain(r.subjects, "  ") + "\n")
        body.append("details", style="bold")
        body.append(plain(r.details, "  "))
        with VerticalScroll(classes="dialog wide"):
            yield Static(f"Journal record {r.seq}", classes="dialog-title")
            yield Static(body)
        yield KeysFooter()


class JournalScreen(NavScreen):
    NAME: ClassVar[str] = "journal"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("v", "verify", "Verify"),
        Binding("q", "receipt", "Receipt QR"),
        # Screen.action_focus (Textual's own) takes a selector
        Binding("e", "focus('#event')", "Event"),
        Binding("r", "focus('#request')", "Request"),
        Binding("escape", "focus('#rows')", "Rows", show=False),
    ]

    def __init__(self, appliance: Appliance) -> None:
        super().__init__(appliance)
        self.entries: list[Entry] = []

    def compose(self) -> ComposeResult:
        yield from self.compose_chrome()
        with Vertical(id="journal-screen"):
            with Horizontal(id="filters"):
                yield Select[str]([], prompt="all events", id="event")
                yield Input(placeholder="request id (hex prefix)", id="request")
            yield DataTable(id="rows", cursor_type="row", zebra_stripes=True)
            yield Static(id="verdict")

    def on_mount(self) -> None:
        table = self.query_one("#rows", DataTable)
        table.add_columns("seq", "time", "event", "decision", "actors", "request")
        self.reload()
        table.focus()

    def reload(self) -> None:
        self.entries = self.appliance.recorder.entries()
        events = sorted({e.record.event for e in self.entries})
        self.query_one("#event", Select).set_options((event, event) for event in events)
        self.apply_filter()

    def current_event(self) -> str | None:
        value = self.query_one("#event", Select).value
        return value if isinstance(value, str) else None

    def actor_names(self, actors: tuple[str, ...] | list[str]) -> str:
        """Who acted, by the token each enrolled with (the fingerprint when unknown): an
        approval reads ``officer-1, officer-3``, not a count."""
        enrolled = self.appliance.journal.enrolled
        names = [enrolled[a].token if a in enrolled else a[:8] for a in actors]
        return ", ".join(names) or "-"

    def apply_filter(self) -> None:
        table = self.query_one("#rows", DataTable)
        table.clear()
        event, request = self.current_event(), self.query_one("#request", Input).value
        for entry in reversed(self.entries):
            r = entry.record
            if matches(r, event, request):
                ids = request_ids(r)
                table.add_row(
                    str(r.seq),
                    when(r.time)[:16],
                    r.event,
                    r.decision or "",
                    self.actor_names(r.actors),
                    ids[0][:16] if ids else "",
                    key=str(r.seq),
                )
        shown = table.row_count
        table.border_title = f"{shown} of {len(self.entries)} records"

    def on_select_changed(self, _event: Select.Changed) -> None:
        self.apply_filter()

    def on_input_changed(self, _event: Input.Changed) -> None:
        self.apply_filter()

    def on_input_submitted(self, _event: Input.Submitted) -> None:
        self.query_one("#rows", DataTable).focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        seq = int(str(event.row_key.value))
        record = next(e.record for e in self.entries if e.record.seq == seq)
        self.app.push_screen(RecordScreen(record))

    def selected_entry(self) -> Entry | None:
        table = self.query_one("#rows", DataTable)
        if not table.row_count:
            return None
        seq = int(str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value))
        return next((e for e in self.entries if e.record.seq == seq), None)

    def action_receipt(self) -> None:
        """The selected wallet export, pin or key state as the QR the coordinator scans (no
        officer: the entry is already signed)."""
        entry = self.selected_entry()
        if entry is None or entry.record.event not in RECEIPT_EVENTS:
            self.notify(
                f"Select a {', '.join(RECEIPT_EVENTS)} record: only they have receipts.",
                severity="warning",
            )
            return
        try:
            receipt_screens(entry)  # a descriptor that does not parse is said here
        except ValueError as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return
        self.show(entry)

    @work(group="receipt")
    async def show(self, entry: Entry) -> None:
        await show_receipt(self.app, entry)

    def action_verify(self) -> None:
        verdict = self.query_one("#verdict", Static)
        verdict.set_classes("")
        verdict.update("verifying the chain and every signature…")
        self.verify(verdict)

    @work(group="verify")
    async def verify(self, verdict: Static) -> None:
        try:
            problems = await off_thread(self.appliance.verify_journal)
        except EngineError as exc:
            verdict.set_classes("alarm")
            verdict.update(f"verification could not run: {exc}")
            return
        self.reload()
        length = len(self.entries)
        if problems:
            verdict.set_classes("alarm")
            verdict.update(
                f"{len(problems)} PROBLEM(S) in {length} records: " + "; ".join(problems)
            )
        else:
            verdict.set_classes("good")
            verdict.update(f"{length} records verified: chain and audit signatures OK")
