"""Show QR: a UR as an animated QR code in terminal half blocks, for a camera to read.

The one animated-QR screen of both programs: the appliance shows the signed PSBT to the
coordinator, the coordinator shows the unsigned signing request to the appliance. It lives
in ``shared/ui`` because neither program may import the other, and brings its own CSS
(:attr:`ShowQrScreen.DEFAULT_CSS`) so it looks the same in either app.

Black glyphs on a white field (:data:`HALF_BLOCK_STYLE`), one QR version for the whole
stream so the camera keeps its focus (DESIGN 7), fountain parts after the first cycle (the
UR encoder's own behaviour). Density (bytes per frame) and speed (frames per second) are
changed live with keys: the officer sees whether the coordinator's camera keeps up. The
first density is the largest that fits the window, so 80x24 works and a big screen is used.
The frames themselves come from :class:`shared.qr.stream.QrStream` (pure, no terminal).
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Center, Horizontal, Middle
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Static

from shared.qr.frames import HALF_BLOCK_STYLE
from shared.qr.stream import QrStream
from shared.ui.widgets import KeysFooter
from shared.ur.ur import UR

FRAGMENT_STEPS = (10, 20, 30, 40, 60, 80, 100, 150, 200, 300, 400, 600, 800)
FPS_STEPS = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0)
#: 10 frames a second: tests/bench/terminal_qr_bench.py renders this screen's frames as a
#: 30 fps rolling-shutter camera sees them, at 80x24, 120x40 and the station's 1080p
#: console; every frame is still read up to 20 fps there, and 30 fps loses half of them.
#: 10 doubles what 5 gave (a 60-payout request: 24 s instead of 47 s at 80x24) and leaves
#: each frame three camera samples, a margin for slower webcams, jitter and focus; the
#: officer raises it with ``>`` when the camera keeps up.
DEFAULT_FPS = 10.0


def _step(steps: tuple, current: float, direction: int) -> float:
    index = min(range(len(steps)), key=lambda i: abs(steps[i] - current))
    return steps[max(0, min(len(steps) - 1, index + direction))]


class ShowQrScreen(Screen[None]):
    """Dismissed with Escape or Enter when the other side has scanned it."""

    # Scoped to this screen (Textual prefixes the screen's type), so an app's own CSS can
    # still override a rule. The status keeps to two lines: at 80x24 the QR needs the rest.
    DEFAULT_CSS = """
    #qr-row { align-vertical: middle; }
    /* Black modules on a white field, the field larger than the quiet zone */
    #qr-area { background: #ffffff; width: 1fr; height: 1fr; }
    #qr { width: auto; height: auto; }
    #qr-aside { width: auto; max-width: 40%; height: auto; padding: 0 1; }
    #qr-status { height: auto; max-height: 2; padding: 0 1; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("plus,equals_sign", "density(1)", "Denser", key_display="+"),
        Binding("minus", "density(-1)", "Sparser", key_display="-"),
        Binding("greater_than_sign,full_stop", "speed(1)", "Faster", key_display=">"),
        Binding("less_than_sign,comma", "speed(-1)", "Slower", key_display="<"),
        Binding("space", "pause", "Pause"),
        Binding("escape,enter", "done", "Done"),
    ]

    def __init__(self, ur: UR, title: str, note: str = "", aside: str | Text = "") -> None:
        """``note`` is a dim line under the status, cut off when the window is small.
        ``aside`` stands beside the QR, where it has room at 80x24: what officers must read
        in full there, such as the request hash words to compare with another screen."""
        super().__init__()
        self.ur = ur
        self.title_text = title
        self.note = note
        self.aside = aside
        self.fps = DEFAULT_FPS
        self.stream = QrStream(ur, FRAGMENT_STEPS[0])
        self.density_chosen = False
        self.part_text = ""
        self.frame_text = ""
        self.paused = False
        self._timer: Timer | None = None
        self._fitted_for = (0, 0)

    def compose(self) -> ComposeResult:
        with Horizontal(id="qr-row"):
            with Middle(id="qr-area"), Center():
                yield Static(id="qr")
            if self.aside:
                yield Static(self.aside, id="qr-aside")
        yield Static(id="qr-status")
        yield KeysFooter()

    def on_mount(self) -> None:
        self._timer = self.set_interval(1 / self.fps, self.advance)
        self.call_after_refresh(self.fit)

    def on_resize(self) -> None:
        self.call_after_refresh(self.fit)

    def available(self) -> tuple[int, int]:
        size = self.query_one("#qr-area").content_size
        return size.width, size.height

    def fit(self) -> None:
        """The densest stream that fits the window, unless the officer chose one."""
        self._fitted_for = self.available()
        if not self.density_chosen:
            width, height = self._fitted_for
            best = self.stream
            for step in FRAGMENT_STEPS:
                candidate = QrStream(self.ur, step)
                if not candidate.fits(width, height):
                    break
                best = candidate
                if candidate.parts == 1:
                    break  # denser cannot help a one-part message
            if best.fragment_len != self.stream.fragment_len or not self.stream.shown:
                self.stream = best
        self.advance()
        self.call_after_refresh(self._refit)

    def _refit(self) -> None:
        """Fit again if the stream no longer fits: the status under the QR takes its height
        only once filled, so the first fit may have measured a taller area."""
        if self.density_chosen or self.available() == self._fitted_for:
            return
        if not self.stream.fits(*self.available()):
            self.fit()

    def advance(self) -> None:
        self.part_text, self.frame_text = self.stream.next_frame()
        self.query_one("#qr", Static).update(
            Text(self.frame_text, style=HALF_BLOCK_STYLE, no_wrap=True)
        )
        self.query_one("#qr-status", Static).update(self.status())

    def status(self) -> Text:
        s = self.stream
        seq = self.part_text.split("/")[1].split("-")[0] if s.parts > 1 else "1"
        text = Text(f"{self.title_text} ", style="bold")
        text.append(
            f"· part {seq} · message in {s.parts} part(s) · {s.fragment_len} B/frame"
            f" · {self.fps:g} fps · QR v{s.version}"
        )
        if self.paused:
            text.append(" · PAUSED", style="bold yellow")
        if not s.fits(*self.available()):
            text.append(" · too big for this window: press - or enlarge it", style="bold red")
        if self.note:
            text.append(f"\n{self.note}", style="dim")
        return text

    def action_density(self, direction: int) -> None:
        step = int(_step(FRAGMENT_STEPS, self.stream.fragment_len, direction))
        self.density_chosen = True
        if step != self.stream.fragment_len:
            self.stream = QrStream(self.ur, step)
        self.advance()

    def action_speed(self, direction: int) -> None:
        self.fps = _step(FPS_STEPS, self.fps, direction)
        if self._timer is not None:
            self._timer.stop()
            self._timer = self.set_interval(1 / self.fps, self.advance, pause=self.paused)
        self.query_one("#qr-status", Static).update(self.status())

    def action_pause(self) -> None:
        if self._timer is None:
            return
        self.paused = not self.paused
        if self.paused:
            self._timer.pause()
        else:
            self._timer.resume()
        self.query_one("#qr-status", Static).update(self.status())

    def action_done(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self.dismiss(None)
