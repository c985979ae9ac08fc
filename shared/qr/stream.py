"""One UR as an endless series of terminal half-block QR frames at a single QR version.

The frames the animated-QR screen (:mod:`shared.ui.show_qr`) shows; kept apart from the
screen so the rule (one version for the whole stream, so the camera keeps its focus, DESIGN
7) is pure and testable without a terminal.
"""

from __future__ import annotations

from shared.qr.frames import QUIET_ZONE, FrameError, FrameRenderer, symbol_size, version_for
from shared.ur.ur import UR, UREncoder, upper

SEQ_MARGIN = 6
"""Characters kept free for the part number to grow (up to 10**7 frames) at one version."""


class QrStream:
    """One UR as an endless series of half-block frames at a single QR version."""

    def __init__(self, ur: UR, fragment_len: int) -> None:
        self.fragment_len = fragment_len
        self.encoder = UREncoder(ur, fragment_len)
        self._first: str | None = upper(self.encoder.next_part())
        margin = 0 if self.encoder.is_single_part else SEQ_MARGIN
        self.renderer = self._renderer(len(self._first) + margin)
        self.shown = 0

    @staticmethod
    def _renderer(length: int) -> FrameRenderer:
        return FrameRenderer(version_for(length), canvas=None, module_size=1)

    @property
    def version(self) -> int:
        return self.renderer.version

    @property
    def parts(self) -> int:
        return self.encoder.seq_len

    @property
    def modules(self) -> int:
        """Modules per side including the quiet zone: columns, and twice the rows."""
        return symbol_size(self.version) + 2 * QUIET_ZONE

    def fits(self, width: int, height: int) -> bool:
        return self.modules <= width and (self.modules + 1) // 2 <= height

    def next_frame(self) -> tuple[str, str]:
        """(part text, half-block rendering) of the next frame."""
        text, self._first = self._first or upper(self.encoder.next_part()), None
        try:
            art = self.renderer.text(text)
        except FrameError:  # the part number outgrew the margin: one version up, once
            self.renderer = self._renderer(len(text) + SEQ_MARGIN)
            art = self.renderer.text(text)
        self.shown += 1
        return text, art
