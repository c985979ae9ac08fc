"""A request as animated-QR frames for a web page's canvas.

The page draws each frame's modules itself, one square of whole device pixels per module
(so a phone's or webcam's camera sees sharp edges at any screen density), from the module
matrices made here with the same UR encoder, preset versions and QR code as every other
Coldstation screen (``shared.ur``, ``shared.qr``): one QR version for the whole stream (the
camera keeps its focus), two fountain cycles, so a frame lost once is made good by the
mixed parts of the second cycle. A COLDCARD Q cosigner reads BBQr instead (same version,
the parts in order, looped by the page).
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from shared.qr.frames import add_quiet_zone, qr_matrix
from shared.qr.presets import PRESETS
from shared.ur.bbqr import BBQrError, split_series
from shared.ur.registry import encode_psbt
from shared.ur.ur import UR, UREncoder, upper

#: How many fountain cycles the page loops over.
CYCLES = 2.0
#: ``ur`` for Sparrow, Keystone, SeedSigner and the station; ``bbqr`` for a COLDCARD Q.
FRAMINGS = ("ur", "bbqr")


def request_frames(psbt: bytes, preset_name: str, framing: str = "ur") -> dict[str, Any]:
    """The frames of ``psbt`` at preset ``preset_name`` (``fast`` or ``robust``), framed as
    ``ur:crypto-psbt`` (``ur``) or as BBQr for a COLDCARD Q (``bbqr``: its parts once, in
    order, since BBQr has no fountain): each frame's modules, quiet zone included, row by
    row, one bit per module (1 = dark), packed big-endian and base64-encoded."""
    preset = PRESETS.get(preset_name)
    if preset is None:
        raise ValueError(f"unknown QR preset {preset_name!r} (known: {', '.join(PRESETS)})")
    if framing not in FRAMINGS:
        raise ValueError(f"unknown framing {framing!r} (known: {', '.join(FRAMINGS)})")
    preset = preset.with_overrides(ur_type="crypto-psbt")
    version = preset.qr_version()
    if framing == "bbqr":
        try:
            texts = list(split_series(psbt, "P", min_version=version, max_version=version).parts)
        except BBQrError as exc:
            raise ValueError(f"BBQr: {exc}") from None
        count = len(texts)
    else:
        encoder = UREncoder(UR("crypto-psbt", encode_psbt(psbt)), preset.max_fragment_len)
        texts, count = [upper(part) for part in encoder.cycle_parts(CYCLES)], encoder.seq_len
    frames = []
    for text in texts:
        matrix = add_quiet_zone(qr_matrix(text, version, preset.ecc, mask=preset.mask))
        frames.append(base64.b64encode(np.packbits(matrix.ravel()).tobytes()).decode("ascii"))
    return {
        "preset": preset.name,
        "framing": framing,
        "version": version,
        "modules": int(matrix.shape[0]),
        "fps": preset.fps,
        "parts": count,
        "frames": frames,
    }


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, read before anything is decoded (a
    small file can decode to gigapixels); None for anything that is not a baseline or
    progressive JPEG. Written here: OpenCV decodes whole images only, and no imaging
    library is a dependency of the coordinator."""
    if not data.startswith(b"\xff\xd8"):
        return None
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        if marker in _SOF and at + 9 <= len(data):
            height = int.from_bytes(data[at + 5 : at + 7], "big")
            width = int.from_bytes(data[at + 7 : at + 9], "big")
            return width, height
        if length < 2:
            return None
        at += 2 + length
    return None


#: Start-of-frame markers (SOF0..SOF15 but DHT, JPG and DAC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
