"""QR transport, the pure part: render UR parts as QR frames, and the transport presets.

``frames`` renders a stream at one fixed QR version (images and terminal half blocks),
``stream`` turns one UR into the endless half-block frames an animated-QR screen shows,
``presets`` holds the ``fast`` and ``robust`` transport settings. Reading QR codes (the
camera, video files, decoders, the receiver, the channel simulator) is I/O or loads
OpenCV, so it lives in :mod:`shared.adapters`; the Textual screen is in :mod:`shared.ui`.
"""

from shared.qr.frames import (
    CANVAS_720P,
    HALF_BLOCK_STYLE,
    FrameError,
    FrameRenderer,
    capacity,
    half_blocks,
    place_on_canvas,
    qr_matrix,
    version_for,
)
from shared.qr.presets import FAST, PRESETS, ROBUST, Preset, part_text_len, preset_by_name

__all__ = [
    "CANVAS_720P",
    "FAST",
    "HALF_BLOCK_STYLE",
    "PRESETS",
    "ROBUST",
    "FrameError",
    "FrameRenderer",
    "Preset",
    "capacity",
    "half_blocks",
    "part_text_len",
    "place_on_canvas",
    "preset_by_name",
    "qr_matrix",
    "version_for",
]
