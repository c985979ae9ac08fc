"""Review: what you see is what you sign. Every figure here comes from the engine's review
of the scanned bytes (never from what the coordinator claims): each output with amount,
full address and address-book label, change proven ours, totals, fee and fee rate, network,
inputs and their owners, the request and its hash in hex and in words. A refused request
says why at the top, in the engine's words, and offers no way to approve."""

from __future__ import annotations

import time
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Header, Static

from appliance.appliance import Appliance
from appliance.tui.engine import Ceremony, EngineError, ReviewView
from appliance.tui.screens.common import (
    AskReason,
    KeysFooter,
    btc,
    btc_or_unknown,
    go_home,
    grouped,
    hash_word_lines,
    hex_text,
    off_thread,
    until,
    when,
)


def verdict_text(view: ReviewView, quorum: int) -> Text:
    if view.refusals:
        text = Text("REFUSED: this request will not be signed\n", style="bold")
        for code, message in view.refusals:
            text.append(f"• {message}", style="bold")
            text.append(f"  ({code})\n", style="dim")
        text.rstrip()
        return text
    return Text(
        f"Policy checks passed. Read every line below; {quorum} officers must "
        "approve before the appliance signs."
    )


def _rows(rows: list[tuple[str, str, str]], width: int = 12) -> Text:
    text = Text()
    for name, value, style in rows:
        text.append(f"{name:<{width}}", style="bold")
        text.append(f"{value}\n", style=style)
    text.rstrip()
    return text


def request_text(view: ReviewView, now: int) -> Text:
    request = view.request
    if request is None:
        return Text("no valid request metadata in this PSBT", style="bold red")
    return _rows(
        [
            ("Request id", request.request_id, ""),
            ("Requester", request.requester, "bold"),
            ("Purpose", request.purpose or "-", ""),
            ("Batch", f"{request.batch_id} ({request.kind})", ""),
            ("Network", view.network or "unknown", "bold"),
            ("Created", when(request.created), ""),
            ("Expires", f"{when(request.expiry)} ({until(request.expiry, now)})", ""),
            ("Txid", view.txid or "-", "dim"),
        ]
    )


def outputs_text(view: ReviewView) -> Text:
    text = Text()
    for out in view.outputs:
        text.append(f"#{out.index:<3}", style="bold")
        text.append(f"{btc(out.amount_sat):>20}  ", style="bold")
        if out.is_change:
            text.append("CHANGE, back to our wallet", style="bold green")
            text.append(f" (re-derived: {out.change_path})" if out.change_path else "", style="dim")
        elif out.label:
            text.append(f"{out.label}", style="bold cyan")
            text.append(" (address book)", style="dim")
        else:
            text.append("NOT IN THE ADDRESS BOOK", style="bold yellow")
        text.append(f"  {out.script_type}\n", style="dim")
        if not out.is_change and out.our_key:
            text.append(
                f"     our key {out.our_key} (another wallet): counted as paid out\n",
                style="yellow",
            )
        text.append(f"     {grouped(out.address)}\n")
    text.rstrip()
    return text


def totals_text(view: ReviewView) -> Text:
    rate = (
        "unknown" if view.fee_rate_sat_per_vb is None else f"{view.fee_rate_sat_per_vb:.1f} sat/vB"
    )
    fee = view.fee_sat
    return _rows(
        [
            ("Paid out", btc_or_unknown(view.paid_out_sat), "bold"),
            ("Change", btc_or_unknown(view.change_sat), ""),
            ("Total out", btc_or_unknown(view.total_out_sat), ""),
            ("Total in", btc_or_unknown(view.total_in_sat), ""),
            ("Fee", btc_or_unknown(fee) + ("" if fee is None else f" = {fee} sat"), "bold"),
            ("Fee rate", f"{rate} over about {view.vsize} vB", ""),
            (
                "Locks",
                view.locks or "unknown",
                "bold" if "relative lock" in view.locks and not view.locks.startswith("no") else "",
            ),
        ]
    )


def inputs_text(view: ReviewView) -> Text:
    text = Text()
    for txin in view.inputs:
        text.append(f"#{txin.index:<3}", style="bold")
        text.append(f"{btc_or_unknown(txin.amount_sat):>20}  ")
        text.append(
            f"{txin.owner}\n", style="bold" if txin.owner.startswith("ours") else "bold red"
        )
        text.append(f"     {txin.outpoint}\n", style="dim")
    text.rstrip()
    return text


def hash_text(view: ReviewView) -> Text:
    if view.request_hash is None:
        return Text("no request hash: nothing can be approved", style="bold red")
    text = Text()
    text.append("hex    ", style="bold")
    text.append(f"{grouped(hex_text(view.request_hash))}\n")
    text.append("words  ", style="bold")
    text.append(hash_word_lines(view.hash_words, len("words  ")), style="bold cyan")
    return text


class ReviewScreen(Screen[None]):
    """One scanned request. ``a`` goes on to the approvals; ``r`` refuses (journaled)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "approve", "Approve"),
        Binding("r", "refuse", "Refuse"),
        # one key, two meanings, each labelled as what it does (issue 18: "Leave" refused)
        Binding("escape", "refuse_and_leave", "Refuse & leave"),
        Binding("escape", "leave", "Leave"),
    ]

    def __init__(self, appliance: Appliance, ceremony: Ceremony, review: ReviewView) -> None:
        super().__init__()
        self.appliance = appliance
        self.ceremony = ceremony
        self.review = review

    def compose(self) -> ComposeResult:
        review = self.review
        quorum = self.appliance.policy().approval_quorum
        refused = not review.approved_for_signing
        yield Header()
        with VerticalScroll(id="review"):
            yield Static(
                verdict_text(review, quorum), id="decision", classes="alarm" if refused else "good"
            )
            yield self._panel("outputs", f"Outputs ({len(review.outputs)})", outputs_text(review))
            yield self._panel("totals", "Totals and fee", totals_text(review))
            now = review.judged_at if review.judged_at is not None else int(time.time())
            yield self._panel("request", "Request", request_text(review, now))
            yield self._panel("hash", "Request hash: the officers approve this", hash_text(review))
            yield self._panel("inputs", f"Inputs ({len(review.inputs)})", inputs_text(review))
        yield KeysFooter()

    @staticmethod
    def _panel(name: str, title: str, body: Text) -> Static:
        panel = Static(body, id=name, classes="panel")
        panel.border_title = title
        return panel

    def on_mount(self) -> None:
        self.app.sub_title = "review: what you see is what you sign"
        self.query_one("#review").focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Approve and refuse only an approvable request; plain leave only a refused one
        (the engine journaled that refusal when it reviewed)."""
        if action in ("approve", "refuse", "refuse_and_leave"):
            return bool(self.review.approved_for_signing)
        if action == "leave":
            return not self.review.approved_for_signing
        return True

    def action_approve(self) -> None:
        from appliance.tui.screens.approvals import ApprovalsScreen

        self.app.push_screen(ApprovalsScreen(self.appliance, self.ceremony, self.review))

    def action_refuse(self) -> None:
        self.refuse()

    def action_refuse_and_leave(self) -> None:
        self.refuse()  # leaving an approvable request is refusing it

    def action_leave(self) -> None:
        go_home(self)

    @work(group="ceremony")
    async def refuse(self) -> None:
        """Ask why, tell the engine (which journals it), and go home."""
        reason = await self.app.push_screen_wait(
            AskReason(
                "Refuse this request? The reason goes into the journal.",
                "officers declined at review",
            )
        )
        if reason is None:
            return
        pending = len(self.appliance.state.pending())
        try:
            await off_thread(lambda: self.ceremony.refuse(reason))
        except EngineError as exc:
            self.notify(
                str(exc), title="Could not record the refusal", severity="error", timeout=10
            )
            return
        if len(self.appliance.state.pending()) > pending:  # no officer had opened the token
            self.notify(
                "Request refused. The refusal waits as a pending record: officers write it "
                "into the journal with w on the home screen."
            )
        else:
            self.notify("Request refused; the refusal is in the journal.")
        go_home(self)
