"""QR transport: render UR parts as QR frames, decode camera frames, simulate the channel.

``frames`` renders a stream at one fixed QR version (images and terminal half blocks),
``presets`` holds the ``fast`` and ``robust`` transport settings, ``decoders`` reads QR
codes (zxing-cpp, then pyzbar), ``channel`` simulates a screen-to-camera channel for tests
and benchmarks. ``camera`` (OpenCV ``VideoCapture``) and ``video`` (``VideoWriter``) are
the only I/O in ``shared/``; like ``decoders`` and ``channel`` they import OpenCV, so they
are not re-exported here: a screen that only shows half blocks does not load it.
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
