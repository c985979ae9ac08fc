"""Approvals: officer by officer, each types their token label and PIN; their token signs
the request hash. The screen shows the engine's tally: who counts, who does not and why
(the same officer twice, the requester approving their own request), and how many are
still needed. When the quorum is reached, ``s`` signs and the signed PSBT is shown as QR."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.suggester import SuggestFromList
from textual.widgets import Header, Input, Static

from appliance.appliance import Appliance
from appliance.tui.engine import Ceremony, EngineError, ReviewView
from appliance.tui.screens.common import KeysFooter, btc_or_unknown, hash_word_lines, off_thread
from shared.ui.show_qr import ShowQrScreen
from shared.ur.registry import encode_psbt
from shared.ur.ur import UR

if TYPE_CHECKING:  # the engine itself loads only when a ceremony starts
    from appliance.signing import ApprovalState, SignedResult


def summary_text(review: ReviewView) -> Text:
    paid = [o for o in review.outputs if not o.is_change]
    request = review.request.request_id if review.request else "-"
    text = Text()
    text.append(
        f"Pays {btc_or_unknown(review.paid_out_sat)} to {len(paid)} output(s), fee "
        f"{btc_or_unknown(review.fee_sat)} · request {request[:16]}\n"
    )
    text.append("Request hash words: ", style="bold")
    label = len("Request hash words: ")
    text.append(hash_word_lines(review.hash_words, label), style="bold cyan")
    return text


def tally_text(state: ApprovalState | None, needed: int, names: dict[str, str]) -> Text:
    """The engine's ApprovalState in words; ``state`` None before anyone approved."""
    approved = tuple(state.approved) if state is not None else ()
    rejected = tuple(state.rejected) if state is not None else ()
    needed = state.needed if state is not None else needed
    text = Text()
    for fingerprint in approved:
        text.append("✓ ", style="bold green")
        text.append(f"{names.get(fingerprint, 'officer')} ({fingerprint})\n")
    for fingerprint, reason in rejected:
        text.append("✗ ", style="bold red")
        text.append(
            f"{names.get(fingerprint, 'officer')} ({fingerprint}) does not count: {reason}\n"
        )
    left = max(0, needed - len(approved))
    if state is not None and state.complete:
        text.append(
            f"Quorum reached: {len(approved)} of {needed}. Press s to sign.", style="bold green"
        )
    else:
        text.append(f"{len(approved)} of {needed} approvals; {left} more needed.", style="bold")
    return text


class ApprovalsScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "sign", "Sign"),
        Binding("escape", "back", "Back to review"),
    ]

    def __init__(self, appliance: Appliance, ceremony: Ceremony, review: ReviewView) -> None:
        super().__init__()
        self.appliance = appliance
        self.ceremony = ceremony
        self.review = review
        self.state: ApprovalState | None = None
        self.busy = False
        self.names = {**appliance.config.officer_tokens, **appliance.config.admin_tokens}

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="approvals"):
            yield Static(summary_text(self.review), id="summary", classes="panel")
            yield Static(id="tally", classes="panel")
            with Vertical(id="form", classes="panel"):
                yield Input(
                    placeholder="token label",
                    id="label",
                    suggester=SuggestFromList(
                        sorted(self.appliance.config.officer_tokens.values())
                    ),
                )
                yield Input(placeholder="PIN", password=True, id="pin")
                yield Static("", id="problem", classes="error")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.app.sub_title = "approvals"
        self.query_one("#summary").border_title = "You approve this request"
        self.query_one("#tally").border_title = "Approvals"
        self.query_one("#form").border_title = "Next officer: token label, then PIN"
        try:
            self.state = self.ceremony.approval_state()
        except EngineError:
            self.state = None  # no tally yet is shown as none
        self.show_state()

    def on_screen_resume(self) -> None:
        self.show_state()

    @property
    def complete(self) -> bool:
        return bool(self.state is not None and self.state.complete)

    def show_state(self) -> None:
        quorum = self.appliance.policy().approval_quorum
        self.query_one("#tally", Static).update(tally_text(self.state, quorum, self.names))
        form = self.query_one("#form")
        form.display = not self.complete
        if self.complete:
            self.set_focus(None)
        else:
            self.query_one("#label", Input).focus()
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "sign":
            return self.complete and not self.busy
        return True

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "label":
            self.query_one("#pin", Input).focus()
            return
        label = self.query_one("#label", Input).value.strip()
        pin = self.query_one("#pin", Input).value
        self.query_one("#pin", Input).value = ""
        if not label or not pin:
            self.problem("type the token label, Enter, then the PIN")
            return
        if self.busy:
            return
        self.busy = True
        self.problem(f"{label}: checking the token…")
        self.check_approval(label, pin)

    @work(group="ceremony")
    async def check_approval(self, label: str, pin: str) -> None:
        """The officer's token signs the request hash; the engine says whether it counts."""
        try:
            state = await off_thread(lambda: self.ceremony.approve(label, pin))
        except EngineError as exc:
            self.rejected(str(exc))
            return
        self.approved(state)

    def problem(self, text: str) -> None:
        self.query_one("#problem", Static).update(text)

    def approved(self, state: ApprovalState) -> None:
        self.busy = False
        self.state = state
        self.query_one("#label", Input).value = ""
        self.problem("")
        self.show_state()

    def rejected(self, message: str) -> None:
        """After a wrong PIN the label stays and focus goes to the (cleared, masked) PIN
        field: the officer retries by typing the PIN again at once, and must never type it
        into the label field, which shows it in clear. Any other refusal (an unknown or
        revoked token, an officer approving twice) is about the token: start over there."""
        self.busy = False
        self.problem(message)
        label = self.query_one("#label", Input)
        if "refused the PIN" in message and label.value.strip():
            self.query_one("#pin", Input).focus()
            return
        label.value = ""
        label.focus()

    def action_back(self) -> None:
        self.dismiss(None)

    def action_sign(self) -> None:
        if not self.complete or self.busy:
            return
        self.busy = True
        self.refresh_bindings()
        self.notify("Signing inside the HSM…")
        self.sign_request()

    @work(group="ceremony")
    async def sign_request(self) -> None:
        try:
            result = await off_thread(self.ceremony.sign)
        except EngineError as exc:
            self.sign_failed(str(exc))
            return
        self.signed(result)

    def sign_failed(self, message: str) -> None:
        """Nothing was signed; the engine may have dropped the approvals, so ask it again."""
        self.busy = False
        self.notify(message, title="Not signed", severity="error", timeout=15)
        self.problem(f"Not signed: {message}")
        try:
            self.state = self.ceremony.approval_state()
        except EngineError:
            self.state = None
        self.show_state()

    def signed(self, result: SignedResult) -> None:
        try:
            ur = UR("crypto-psbt", encode_psbt(result.psbt_bytes))
        except ValueError as exc:
            self.sign_failed(f"the engine returned no PSBT: {exc}")
            return
        note = f"receipt: journal record {result.receipt_seq} · Enter once the coordinator has it"
        app = self.app

        async def show() -> None:
            await app.run_action("go('home')")
            await app.push_screen(ShowQrScreen(ur, "Signed PSBT", note))

        app.call_later(show)
