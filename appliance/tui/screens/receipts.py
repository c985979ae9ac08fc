"""Wallet exports, pin and key-state receipts as animated QR, for the coordinator's camera.

A receipt is the signed journal entry itself (``ur:bytes``), exactly what ``export-wallet``,
``pin-wallet`` and ``suspend|reactivate|archive`` write to ``receipt.ur``; a wallet export
also shows its descriptor as ``ur:crypto-output`` first. Both come from the journal's
verified records, so showing them again needs no officer and journals nothing: the
coordinator checks every receipt against the audit key it pinned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import App

from shared.bitcoin.descriptor import Descriptor, DescriptorError
from shared.journal import Entry
from shared.ur.registry import encode_bytes, encode_crypto_output
from shared.ur.ur import UR

if TYPE_CHECKING:  # the QR screen (segno and what it loads) is imported when first shown,
    from shared.ui.show_qr import ShowQrScreen  # as home's: the TUI starts faster

#: Records whose entry is a receipt the coordinator imports, and what each is.
RECEIPT_EVENTS = {
    "wallet_exported": "Wallet export receipt",
    "wallet_pinned": "Wallet pin receipt",
    "key_suspended": "Key suspended receipt",
    "key_reactivated": "Key reactivated receipt",
    "key_archived": "Key archived receipt",
}


def receipt_screens(entry: Entry) -> list[ShowQrScreen]:
    """The QR screens of a receipt record, in the order the coordinator reads them (the
    wallet, then its receipt); ValueError when the record is no receipt or its descriptor
    does not parse."""
    from shared.ui.show_qr import ShowQrScreen

    record = entry.record
    if record.event not in RECEIPT_EVENTS:
        raise ValueError(
            f"journal record {record.seq} is {record.event}: only wallet exports, pins and "
            "key states have receipts to show"
        )
    screens = []
    text = record.details.get("descriptor")
    if record.event == "wallet_exported" and isinstance(text, str):
        try:
            descriptor = Descriptor.parse(text, require_checksum=False)
        except DescriptorError as exc:
            raise ValueError(f"journal record {record.seq}: its descriptor: {exc}") from exc
        screens.append(
            ShowQrScreen(
                UR("crypto-output", encode_crypto_output(descriptor)),
                f"Wallet {record.details.get('label', '')} (1 of 2): the descriptor",
                "coordinator: wallet import NAME --export camera:0 camera:0 (this, then receipt)",
                text,
            )
        )
    step = f"({len(screens) + 1} of {len(screens) + 1})" if screens else ""
    label = record.details.get("label")
    key = f" for key {label}" if record.event.startswith("key_") and label else ""
    screens.append(
        ShowQrScreen(
            UR("bytes", encode_bytes(entry.to_bytes())),
            f"{RECEIPT_EVENTS[record.event]}{key} {step}".strip(),
            f"journal record {record.seq}, signed by the audit key · nothing new is journaled"
            + (" · coordinator: wallet key-state camera:0" if key else ""),
        )
    )
    return screens


async def show_receipt(app: App[object], entry: Entry) -> None:
    """Each screen of :func:`receipt_screens` in turn (from a ``@work`` coroutine)."""
    for screen in receipt_screens(entry):
        await app.push_screen_wait(screen)
