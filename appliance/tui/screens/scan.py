"""Scan: the coordinator's animated QR in through the camera (or a recorded video), out as
the PSBT bytes handed to the review. Capture and decode run in a thread worker; the screen
shows parts known / parts needed and the time left, never a made-up percentage."""

from __future__ import annotations

from functools import partial
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Header, Input, ProgressBar, Static
from textual.worker import get_current_worker

from appliance.tui.screens.common import KeysFooter
from shared.adapters.receiver import QrReceiver, Received, ScanProgress
from shared.ur.registry import decode_psbt

PSBT_TYPES = ["crypto-psbt", "psbt"]
PROGRESS_EVERY = 0.1  # seconds between progress updates sent to the UI thread


def progress_text(progress: ScanProgress, rejections: dict[str, int]) -> str:
    lines = [
        str(progress),
        f"{progress.frames_seen} frames read, {progress.frames_with_code} with a code",
    ]
    if rejections:
        reason, count = max(rejections.items(), key=lambda item: item[1])
        lines.append(f"{sum(rejections.values())} codes ignored; most often: {reason} ({count})")
    return "\n".join(lines)


class ScanScreen(Screen[bytes | None]):
    """Dismissed with the scanned PSBT bytes; Escape cancels (nothing is handed on)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, source: str = "0") -> None:
        super().__init__()
        self.source = source
        self.scanning = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="scan", classes="panel"):
            yield Static(
                "Hold the coordinator's animated QR in front of the camera.\n"
                "Camera number or video file, then Enter:"
            )
            yield Input(value=self.source, id="source")
            yield ProgressBar(id="bar", show_eta=False, show_percentage=False)
            yield Static("", id="progress")
            yield Static("", id="problem", classes="error")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.query_one("#scan").border_title = "Scan a signing request"
        self.query_one("#bar", ProgressBar).display = False  # until the first part arrives
        self.query_one("#source", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.scanning:
            return
        spec = event.value.strip()
        if not spec:
            self.query_one("#problem", Static).update("name a camera number or a video file")
            return
        self.scanning = True
        self.query_one("#problem", Static).update("")
        self.query_one("#progress", Static).update(f"opening {spec}…")
        self.capture(spec)

    def action_cancel(self) -> None:
        self.workers.cancel_group(self, "scan")
        self.dismiss(None)

    # -- the worker thread ------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="scan", exit_on_error=False)
    def capture(self, spec: str) -> None:
        """Read frames until the transfer completes, the video ends, or Escape."""
        from shared.adapters.camera import CameraError, parse_source  # OpenCV loads on the
        from shared.adapters.scan import scan_source  # first scan, not at start

        worker = get_current_worker()
        receiver: QrReceiver | None = None
        try:
            receiver = scan_source(
                parse_source(spec),
                error=CameraError,
                expected_types=PSBT_TYPES,
                on_progress=partial(self.app.call_from_thread, self.show_progress),
                progress_every_s=PROGRESS_EVERY,
                cancelled=lambda: worker.is_cancelled,
            )
        except Exception as exc:  # a camera or decoder fault is shown, not fatal
            if not worker.is_cancelled:
                self.app.call_from_thread(self.failed, str(exc) or type(exc).__name__)
            return
        if worker.is_cancelled:
            return
        if receiver is None or receiver.result is None:
            seen = receiver.progress() if receiver else None
            self.app.call_from_thread(
                self.failed,
                f"the video ended before the transfer completed ({seen or 'no frames'})",
            )
            return
        self.app.call_from_thread(
            self.show_progress, receiver.progress(), dict(receiver.rejections)
        )
        self.app.call_from_thread(self.received, receiver.result)

    # -- back on the UI thread --------------------------------------------------------------

    def show_progress(self, progress: ScanProgress, rejections: dict[str, int]) -> None:
        if not self.is_attached:
            return
        bar = self.query_one("#bar", ProgressBar)
        if progress.fragments_total:
            bar.display = True
            bar.update(
                total=progress.fragments_known + progress.estimated_parts_left,
                progress=progress.fragments_known,
            )
        self.query_one("#progress", Static).update(progress_text(progress, rejections))

    def failed(self, message: str) -> None:
        self.scanning = False
        if self.is_attached:
            self.query_one("#problem", Static).update(f"{message}\nEnter tries again.")

    def received(self, result: Received) -> None:
        try:
            psbt = decode_psbt(result.cbor)
        except ValueError as exc:
            self.failed(f"the code decoded, but it is not a PSBT: {exc}")
            return
        self.scanning = False
        self.dismiss(psbt)
