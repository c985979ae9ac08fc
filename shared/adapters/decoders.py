"""QR decoders behind one interface: camera frame in, texts out, never an exception.

Why two libraries: zxing-cpp is fast (a few ms a 720p frame) and copes with blur and
perspective; OpenCV's own detector misses blurred frames (DESIGN 7). pyzbar (libzbar)
is ten times slower and, through the simulated channel, never read a frame zxing-cpp
missed (0 of 200 random channels), but it does read very low-contrast frames (8 gray
levels between dark and light) that zxing-cpp 3.1 gives up on; so :class:`ChainDecoder`
asks it only for frames zxing found nothing in.

Why no exceptions: a scanner loop feeds every camera frame, and a corrupt or odd-sized
frame must cost one empty result, not the ceremony. Nothing here trusts the decoded
text; the UR layer validates it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

MIN_SIDE = 21
"""Smaller images cannot hold a version-1 QR code (21 modules)."""
MAX_SIDE = 8192
"""Larger images are refused (returned as no result) rather than spending seconds on them."""


@runtime_checkable
class QrDecoder(Protocol):
    """Finds QR codes in a grayscale (H, W) or BGR/BGRA (H, W, 3|4) ``uint8`` image."""

    def decode(self, image: Any) -> list[str]:
        """Texts of the QR codes found, in reading order; [] for anything undecodable."""
        ...


class DecoderUnavailableError(RuntimeError):
    """A decoder's native library is missing (e.g. libzbar0 not installed)."""


def to_gray(image: Any) -> np.ndarray | None:
    """A C-contiguous grayscale ``uint8`` array of ``image``, or None if it is not an image."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        return None
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        gray = image
    elif image.ndim == 3 and image.shape[2] in (3, 4):
        import cv2  # loaded with the first colour frame, not when a screen that scans starts

        code = cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        if not _plausible_size(image.shape[:2]):
            return None
        gray = cv2.cvtColor(np.ascontiguousarray(image), code)
    else:
        return None
    if not _plausible_size(gray.shape):
        return None
    return np.ascontiguousarray(gray)


def _plausible_size(shape: tuple[int, ...]) -> bool:
    return all(MIN_SIDE <= side <= MAX_SIDE for side in shape[:2])


def _unique(texts: list[str]) -> list[str]:
    return list(dict.fromkeys(texts))


class ZxingDecoder:
    """zxing-cpp, QR codes only (no Micro QR / rMQR).

    Defaults tuned for camera frames of our own screens (measured on a 720p fast-preset
    frame, clean / through blur 1, noise 4, tilt 5): rotation on (a phone held sideways is
    common; off saved nothing, 1.9 / 3.5 ms against 2.0 / 3.1 ms), downscale on (off saved
    0.4 ms on clean frames and nothing through the channel), inversion off (we always
    show dark on light; on, it costs about 1 ms more a frame: 2.9 / 4.4 ms). The
    binarizer stays zxing's LocalAverage, which copes with glare gradients.
    """

    def __init__(
        self, *, try_rotate: bool = True, try_downscale: bool = True, try_invert: bool = False
    ) -> None:
        import zxingcpp

        self._zxing = zxingcpp
        self._try_rotate = try_rotate
        self._try_downscale = try_downscale
        self._try_invert = try_invert

    def decode(self, image: Any) -> list[str]:
        gray = to_gray(image)
        if gray is None:
            return []
        try:
            # built per call, not kept on the decoder: one held until interpreter exit is
            # reported by nanobind as a leaked object
            qr_only = self._zxing.BarcodeFormats(self._zxing.BarcodeFormat.QRCode)
            found = self._zxing.read_barcodes(
                gray,
                formats=qr_only,
                try_rotate=self._try_rotate,
                try_downscale=self._try_downscale,
                try_invert=self._try_invert,
            )
        except Exception:  # a native decoder must never take the scan loop down
            return []
        return _unique([code.text for code in found if code.valid and code.text])


class PyzbarDecoder:
    """pyzbar over libzbar, QR symbols only; zbar returns bytes, decoded UTF-8 or latin-1."""

    def __init__(self) -> None:
        try:
            from pyzbar import pyzbar
        except (ImportError, OSError) as exc:  # pyzbar raises ImportError without libzbar
            raise DecoderUnavailableError(f"pyzbar cannot load libzbar: {exc}") from exc
        self._pyzbar = pyzbar
        self._symbols = [pyzbar.ZBarSymbol.QRCODE]

    def decode(self, image: Any) -> list[str]:
        gray = to_gray(image)
        if gray is None:
            return []
        try:
            found = self._pyzbar.decode(gray, symbols=self._symbols)
        except Exception:  # a native decoder must never take the scan loop down
            return []
        return _unique([text for code in found if (text := bytes_to_text(code.data))])


def bytes_to_text(data: bytes) -> str:
    """UTF-8 when valid, else latin-1 (which maps every byte, so it never fails)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


class ChainDecoder:
    """Asks each decoder in turn and returns the first non-empty result."""

    def __init__(self, decoders: Sequence[QrDecoder]) -> None:
        if not decoders:
            raise ValueError("ChainDecoder needs at least one decoder")
        self.decoders = tuple(decoders)

    def decode(self, image: Any) -> list[str]:
        for decoder in self.decoders:
            try:
                texts = decoder.decode(image)
            except Exception:  # a third-party decoder broke its contract; try the next
                continue
            if texts:
                return texts
        return []


def default_decoder() -> ChainDecoder:
    """zxing-cpp, then pyzbar when libzbar is installed (DESIGN 7)."""
    decoders: list[QrDecoder] = [ZxingDecoder()]
    with contextlib.suppress(DecoderUnavailableError):
        decoders.append(PyzbarDecoder())
    return ChainDecoder(decoders)
