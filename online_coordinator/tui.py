"""Show an unsigned signing request to the appliance's camera as an animated QR.

The air gap is crossed only by QR codes: the coordinator shows the request (the PSBT as
``ur:crypto-psbt``) on its own terminal, the appliance's camera reads it. A terminal screen
needs no display server and no video file, and it is the very screen the appliance uses to
give the signed PSBT back (:class:`shared.ui.show_qr.ShowQrScreen`; the coordinator may not
import ``appliance``), so the officers learn one screen and its keys. Beside the QR stand the
request hash words, which the officers compare with the appliance's review before approving:
what the appliance read is what the coordinator meant to send.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import App

from shared.request import hash_words
from shared.ui.show_qr import ShowQrScreen
from shared.ur.registry import encode_psbt
from shared.ur.ur import UR


def request_aside(request_hash: bytes) -> Text:
    """The hash words in the appliance review's label and colour, one group of four a line
    (narrow enough to stand beside the QR at 80x24, and compared a group at a time)."""
    text = Text("Request hash words\n", style="bold")
    for group in hash_words(request_hash).split(" / "):
        text.append(f"{group}\n", style="bold cyan")
    text.append("\ncompare with the\nappliance's review;\nEnter once scanned", style="dim")
    return text


class RequestQrApp(App[int]):
    """Nothing but the animated QR of one request; Enter or Escape ends it with 0."""

    TITLE = "Coldstation coordinator"

    def __init__(self, label: str, psbt: bytes, request_hash: bytes) -> None:
        """The UR and the hash words are made here, so a bad PSBT or hash fails before the
        terminal is taken over."""
        super().__init__()
        self.ur = UR("crypto-psbt", encode_psbt(psbt))
        self.title_text = f"Signing request {label}"
        self.aside = request_aside(request_hash)

    def on_mount(self) -> None:
        self.push_screen(ShowQrScreen(self.ur, self.title_text, aside=self.aside), self._done)

    def _done(self, _: None) -> None:
        self.exit(0)


def show_request(label: str, psbt: bytes, request_hash: bytes) -> int:
    """Show the request until an officer presses Enter or Escape; 0, or the app's error code."""
    app = RequestQrApp(label, psbt, request_hash)
    app.run()
    return app.return_code or 0
