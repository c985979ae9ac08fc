"""A request as animated-QR frames for a web page's canvas.

The page draws each frame's modules itself, one square of whole device pixels per module
(so a phone's or webcam's camera sees sharp edges at any screen density), from the module
matrices made here with the same UR encoder, preset versions and QR code as every other
Coldstation screen (``shared.ur``, ``shared.qr``): one QR version for the whole stream (the
camera keeps its focus), two fountain cycles, so a frame lost once is made good by the
mixed parts of the second cycle.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from shared.qr.frames import add_quiet_zone, qr_matrix
from shared.qr.presets import PRESETS
from shared.ur.registry import encode_psbt
from shared.ur.ur import UR, UREncoder, upper

#: How many fountain cycles the page loops over.
CYCLES = 2.0


def request_frames(psbt: bytes, preset_name: str) -> dict[str, Any]:
    """The frames of ``ur:crypto-psbt`` for ``psbt`` at preset ``preset_name`` (``fast``
    or ``robust``): each frame's modules, quiet zone included, row by row, one bit per
    module (1 = dark), packed big-endian and base64-encoded."""
    preset = PRESETS.get(preset_name)
    if preset is None:
        raise ValueError(f"unknown QR preset {preset_name!r} (known: {', '.join(PRESETS)})")
    preset = preset.with_overrides(ur_type="crypto-psbt")
    encoder = UREncoder(UR("crypto-psbt", encode_psbt(psbt)), preset.max_fragment_len)
    version = preset.qr_version()
    frames = []
    for part in encoder.cycle_parts(CYCLES):
        matrix = add_quiet_zone(qr_matrix(upper(part), version, preset.ecc, mask=preset.mask))
        frames.append(base64.b64encode(np.packbits(matrix.ravel()).tobytes()).decode("ascii"))
    return {
        "preset": preset.name,
        "version": version,
        "modules": int(matrix.shape[0]),
        "fps": preset.fps,
        "parts": encoder.seq_len,
        "frames": frames,
    }
