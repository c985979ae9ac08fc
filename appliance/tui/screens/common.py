"""What every screen shares: how values are written, the navigation keys, running blocking
HSM and camera work off the UI thread, and the dialog that collects officers' PINs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.dom import DOMNode
from textual.screen import ModalScreen, Screen
from textual.suggester import SuggestFromList
from textual.widgets import Header, Input, Label, Static

from appliance.appliance import Appliance
from appliance.tui.engine import guarded
from shared.bitcoin.amount import COIN
from shared.ui.widgets import KeysFooter  # re-exported: the screens import it from here

T = TypeVar("T")

# -- how values are written ------------------------------------------------------------------


def btc(sats: int) -> str:
    """Exact BTC with all eight decimals: integer arithmetic, never a float near money."""
    sign = "-" if sats < 0 else ""
    whole, frac = divmod(abs(int(sats)), COIN)
    return f"{sign}{whole}.{frac:08d} BTC"


def btc_or_unknown(sats: int | None) -> str:
    """An amount the PSBT may not let the engine know (the request is then refused)."""
    return "unknown" if sats is None else btc(sats)


def when(timestamp: int | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%d %H:%M UTC")


def until(timestamp: int, now: int) -> str:
    """How long until ``timestamp``, in words an officer reads at a glance."""
    left = int(timestamp) - int(now)
    if left <= 0:
        return "expired"
    hours, rest = divmod(left, 3600)
    return f"in {hours} h {rest // 60} min" if hours else f"in {max(1, rest // 60)} min"


def hex_text(value: Any) -> str:
    return value.hex() if isinstance(value, bytes | bytearray) else str(value)


#: Word groups per line: two groups (at most 41 characters) fit beside a label at 80x24.
HASH_GROUPS_PER_LINE = 2


def hash_word_lines(words: str | None, indent: int) -> str:
    """The request hash words (``a b c d / e f g h / ...``) two groups to a line, so a
    narrow terminal never breaks a group in two (issue 18); later lines are indented by
    ``indent`` to sit under the first."""
    if not words:
        return "-"
    groups = words.split(" / ")
    lines = [
        " / ".join(groups[i : i + HASH_GROUPS_PER_LINE])
        for i in range(0, len(groups), HASH_GROUPS_PER_LINE)
    ]
    return ("\n" + " " * indent).join(lines)


def grouped(text: str, size: int = 4) -> str:
    """Long hex and addresses in groups of four, the way officers compare them aloud."""
    return " ".join(text[i : i + size] for i in range(0, len(text), size))


# -- screens -------------------------------------------------------------------------------


class NavScreen(Screen[None]):
    """A top-level screen. The navigation keys live here and nowhere in a ceremony, so an
    officer cannot wander off half-way through a review or an approval."""

    NAME: ClassVar[str] = ""
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("h", "go('home')", "Home"),
        Binding("s", "go('sign')", "Sign"),
        Binding("k", "go('keys')", "Keys"),
        Binding("o", "go('officers')", "Officers"),
        Binding("p", "go('policy')", "Policy"),
        Binding("j", "go('journal')", "Journal"),
    ]

    def __init__(self, appliance: Appliance) -> None:
        super().__init__()
        self.appliance = appliance

    def compose_chrome(self) -> ComposeResult:
        yield Header()
        yield KeysFooter()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # the screen you are on is not a place to go
        return not (action == "go" and parameters == (self.NAME,))

    async def action_go(self, name: str) -> None:
        await self.app.run_action(f"go('{name}')")


def go_home(node: DOMNode) -> None:
    """Leave a ceremony: back to the home screen, everything above it closed."""
    node.app.call_later(node.app.run_action, "go('home')")


async def off_thread(job: Callable[[], T]) -> T:
    """Await an HSM or ceremony call run in a thread, from a ``@work`` coroutine.

    PKCS#11 logins and signatures take long enough to freeze the screen; the Hsm lock keeps
    the module single-threaded. A ceremony then reads top to bottom (dialog, call, outcome)
    with ``await self.app.push_screen_wait(...)`` and this. A failure is raised as
    :class:`EngineError`, one sentence for the officers, never another exception.
    """
    return await asyncio.to_thread(guarded, job)


class PresentOfficers(ModalScreen[list[tuple[str, str]] | None]):
    """Each officer in turn types their token label and PIN (masked) at the appliance.

    The PINs leave this dialog only in the list handed to the ceremony; the inputs are
    cleared as soon as each officer is done, so the next officer never sees a length.
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self, purpose: str, count: int, labels: Iterable[str], role: str = "Officer"
    ) -> None:
        super().__init__()
        self.purpose = purpose
        self.count = count
        self.labels = sorted(labels)
        self.role = role
        self.presented: list[tuple[str, str]] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.purpose, classes="dialog-title")
            yield Label("", id="who")
            yield Input(
                placeholder="token label",
                id="label",
                suggester=SuggestFromList(self.labels, case_sensitive=True),
            )
            yield Input(placeholder="PIN", password=True, id="pin")
            yield Label("", id="problem", classes="error")
            yield Static(f"tokens: {', '.join(self.labels)}", classes="hint")
        yield KeysFooter()

    def on_mount(self) -> None:
        self._ask()

    def _ask(self) -> None:
        number = len(self.presented) + 1
        self.query_one("#who", Label).update(f"{self.role} {number} of {self.count}")
        self.query_one("#label", Input).value = ""
        self.query_one("#pin", Input).value = ""
        self.query_one("#label", Input).focus()

    def _problem(self, text: str) -> None:
        self.query_one("#problem", Label).update(text)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        label = self.query_one("#label", Input).value.strip()
        if event.input.id == "label":
            self.query_one("#pin", Input).focus()
            return
        pin = self.query_one("#pin", Input).value
        if not label or not pin:
            self._problem("type the token label and the PIN")
            return
        if any(label == seen for seen, _ in self.presented):
            self._problem(f"{label} has already been presented: the next officer, please")
            self._ask()
            return
        self.presented.append((label, pin))
        self._problem("")
        if len(self.presented) == self.count:
            self.query_one("#pin", Input).value = ""
            self.dismiss(self.presented)
        else:
            self._ask()

    def action_cancel(self) -> None:
        self.presented.clear()
        self.dismiss(None)


class AskReason(ModalScreen[str | None]):
    """Why the officers stop a ceremony: the reason goes into the journal with the refusal."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Back")]

    def __init__(self, question: str, default: str) -> None:
        super().__init__()
        self.question = question
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, classes="dialog-title")
            yield Input(value=self.default, id="reason")
            yield Static("Enter confirms; Escape goes back.", classes="hint")
        yield KeysFooter()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or self.default)

    def action_cancel(self) -> None:
        self.dismiss(None)
