"""Policy: the installed, administrator-signed rules, in units officers use (BTC, sat/vB,
hours), with the address book whose labels the review screen shows."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from appliance.tui.screens.common import NavScreen, btc, grouped
from appliance.tui.screens.home import policy_or_none
from shared.policy import SignedPolicy


def policy_text(signed: SignedPolicy) -> Text:
    """The policy document as labelled lines."""
    policy = signed.policy
    text = Text()

    def line(name: str, value: str) -> None:
        text.append(f"{name:<22}", style="bold")
        text.append(f"{value}\n")

    line("Version", f"{policy.version} · {policy.network} · appliance {policy.appliance_id}")
    line("Hash", grouped(policy.hash().hex()[:32]) + " …")
    line(
        "Previous",
        "none (first policy)"
        if policy.previous_hash is None
        else grouped(policy.previous_hash.hex()[:32]) + " …",
    )
    line("Signed by", f"{len(signed.signatures)} administrators ({policy.admin_quorum} needed)")
    line(
        "Approvals needed",
        f"{policy.approval_quorum} of {sum(o.active for o in policy.officers)} active officers",
    )
    line("Per transaction", btc(policy.per_tx_limit))
    line("Per UTC day", btc(policy.per_day_limit))
    line("Fee rate ceiling", f"{policy.fee_rate_ceiling / 1000:g} sat/vB")
    line("Largest fee", btc(policy.max_fee))
    line("Request lifetime", f"at most {policy.request_ttl_max / 3600:g} h")
    line("Script types", ", ".join(str(t.value) for t in policy.allowed_script_types))
    line(
        "Address book",
        "required for every payment"
        if policy.require_address_book
        else "labels only (payments elsewhere allowed)",
    )
    text.rstrip()
    return text


def book_text(signed: SignedPolicy) -> Text:
    book = signed.policy.address_book
    if not book:
        return Text("empty", style="dim")
    text = Text()
    for address, label in book:
        text.append(f"{label}\n", style="bold")
        text.append(f"  {grouped(address)}\n")
    text.rstrip()
    return text


class PolicyScreen(NavScreen):
    NAME: ClassVar[str] = "policy"

    def compose(self) -> ComposeResult:
        yield from self.compose_chrome()
        with VerticalScroll(id="policy-screen"):
            yield Static(id="policy", classes="panel")
            yield Static(id="book", classes="panel")

    def on_mount(self) -> None:
        policy, book = self.query_one("#policy", Static), self.query_one("#book", Static)
        signed = policy_or_none(self.appliance)
        if signed is None:
            policy.border_title = "Policy"
            policy.update(Text("No policy installed: no ceremony can run.", "bold red"))
            book.display = False
            return
        policy.border_title = f"Installed policy, version {signed.policy.version}"
        policy.update(policy_text(signed))
        book.border_title = f"Address book ({len(signed.policy.address_book)})"
        book.update(book_text(signed))
        self.query_one("#policy-screen").focus()
