"""Render text payloads (UR parts) as QR frames: images for a screen, half blocks for a terminal.

Why a fixed version (DESIGN 7): the operator frames the code once and the camera settles
its focus and exposure on it; a code whose version changes from frame to frame (a shorter
last fragment, a short single-part UR) changes its module size and extent under them. So
a whole stream uses one QR version, chosen for its longest part (:func:`version_for`),
and shorter parts are padded by the encoder to the same size.
ECC level L by default (DESIGN 3): the fountain code already tolerates lost frames, so
capacity is worth more than per-frame redundancy.

Why segno: measured with ``tests/bench/qr_render_bench.py render`` (2-core machine shared
with other jobs, alphanumeric UR-like text, fixed version, ECC L, matrix to numpy; mean
of 20 runs, ms)::

    chars  version   segno (best mask)  segno (mask 0)  qrcode 8.2 (best mask)
      100        4          5.3             1.3                 8.5
      400       11         24.1             4.6                29.0
      800       16         43.8            12.3                56.6
     1700       24         80.2            26.0               121.1

segno was faster than qrcode at every size in three runs (by 3-40 %), needs no Pillow,
and makes a fixed mask cheap: evaluating the eight masks is about three quarters of the
cost, so a sender that must keep up with a high frame rate at a large version can pass
``mask=`` (the mask only shapes the module pattern; every reader handles all eight).
The default keeps the standard's best-mask choice. A whole 720p fast-preset frame
(version 17) takes about 45 ms, 12 ms with a fixed mask.

Images are numpy ``uint8`` grayscale (0 dark, 255 light), scaled by an integer module
size so every module is a crisp square of pixels, with a 4-module white quiet zone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import segno

QUIET_ZONE = 4
ECC_LEVELS = ("L", "M", "Q", "H")
CANVAS_720P = (1280, 720)

# Data codewords per version 1..40 for each ECC level (ISO/IEC 18004:2015 Table 7).
_DATA_CODEWORDS = {
    "L": (
        19,
        34,
        55,
        80,
        108,
        136,
        156,
        194,
        232,
        274,
        324,
        370,
        428,
        461,
        523,
        589,
        647,
        721,
        795,
        861,
        932,
        1006,
        1094,
        1174,
        1276,
        1370,
        1468,
        1531,
        1631,
        1735,
        1843,
        1955,
        2071,
        2191,
        2306,
        2434,
        2566,
        2702,
        2812,
        2956,
    ),
    "M": (
        16,
        28,
        44,
        64,
        86,
        108,
        124,
        154,
        182,
        216,
        254,
        290,
        334,
        365,
        415,
        453,
        507,
        563,
        627,
        669,
        714,
        782,
        860,
        914,
        1000,
        1062,
        1128,
        1193,
        1267,
        1373,
        1455,
        1541,
        1631,
        1725,
        1812,
        1914,
        1992,
        2102,
        2216,
        2334,
    ),
    "Q": (
        13,
        22,
        34,
        48,
        62,
        76,
        88,
        110,
        132,
        154,
        180,
        206,
        244,
        261,
        295,
        325,
        367,
        397,
        445,
        485,
        512,
        568,
        614,
        664,
        718,
        754,
        808,
        871,
        911,
        985,
        1033,
        1115,
        1171,
        1231,
        1286,
        1354,
        1426,
        1502,
        1582,
        1666,
    ),
    "H": (
        9,
        16,
        26,
        36,
        46,
        60,
        66,
        86,
        100,
        122,
        140,
        158,
        180,
        197,
        223,
        253,
        283,
        313,
        341,
        385,
        406,
        442,
        464,
        514,
        538,
        596,
        628,
        661,
        701,
        745,
        793,
        845,
        901,
        961,
        986,
        1054,
        1096,
        1142,
        1222,
        1276,
    ),
}

# Terminal glyphs indexed by (top dark) + 2 * (bottom dark).
_HALF_BLOCKS = np.array([" ", "\u2580", "\u2584", "\u2588"])
HALF_BLOCK_STYLE = "#000000 on #ffffff"
"""Style for the half-block text: glyphs are the dark modules, so draw black on white."""


class FrameError(ValueError):
    """A payload that does not fit the stream's QR version, or bad rendering parameters."""


def normalize_ecc(ecc: str) -> str:
    """Return ``ecc`` as one of ``L M Q H``; raise :class:`FrameError` otherwise."""
    level = ecc.upper() if isinstance(ecc, str) else ""
    if level not in ECC_LEVELS:
        raise FrameError(f"ECC level must be one of {', '.join(ECC_LEVELS)}, got {ecc!r}")
    return level


def _check_version(version: int) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= 40:
        raise FrameError(f"QR version must be an integer 1..40, got {version!r}")
    return version


def symbol_size(version: int) -> int:
    """Modules per side of a QR symbol of ``version``, without quiet zone."""
    return 17 + 4 * _check_version(version)


def capacity(version: int, ecc: str = "L", *, alphanumeric: bool = True) -> int:
    """Characters (alphanumeric mode) or bytes (byte mode) one segment can hold."""
    data_bits = _DATA_CODEWORDS[normalize_ecc(ecc)][_check_version(version) - 1] * 8
    if alphanumeric:
        count_bits = 9 if version < 10 else 11 if version < 27 else 13
        bits = data_bits - 4 - count_bits
        return bits // 11 * 2 + (1 if bits % 11 >= 6 else 0)
    count_bits = 8 if version < 10 else 16
    return (data_bits - 4 - count_bits) // 8


def version_for(max_text_len: int, ecc: str = "L", *, alphanumeric: bool = True) -> int:
    """Smallest QR version whose capacity holds ``max_text_len`` characters.

    Alphanumeric mode by default (uppercase UR parts); pass ``alphanumeric=False`` for
    byte-mode payloads.
    """
    if max_text_len < 0:
        raise FrameError(f"text length must be >= 0, got {max_text_len}")
    for version in range(1, 41):
        if capacity(version, ecc, alphanumeric=alphanumeric) >= max_text_len:
            return version
    mode = "alphanumeric" if alphanumeric else "byte"
    raise FrameError(f"{max_text_len} characters exceed QR version 40-{ecc} in {mode} mode")


def qr_matrix(text: str, version: int, ecc: str = "L", *, mask: int | None = None) -> np.ndarray:
    """Modules of ``text`` at exactly ``version``: 2-D ``bool`` array, True = dark, no border."""
    level = normalize_ecc(ecc)
    try:
        qr = segno.make_qr(
            text, version=_check_version(version), error=level, boost_error=False, mask=mask
        )
    except segno.DataOverflowError as exc:
        raise FrameError(f"{len(text)} characters do not fit QR version {version}-{level}") from exc
    except ValueError as exc:
        raise FrameError(str(exc)) from exc
    return np.array(qr.matrix, dtype=np.uint8).astype(bool)


def add_quiet_zone(matrix: np.ndarray, quiet_zone: int = QUIET_ZONE) -> np.ndarray:
    """Pad a module matrix with ``quiet_zone`` light modules on every side."""
    return np.pad(matrix, quiet_zone, constant_values=False)


def matrix_to_image(
    matrix: np.ndarray, module_size: int, quiet_zone: int = QUIET_ZONE
) -> np.ndarray:
    """Grayscale ``uint8`` image: dark modules 0, light 255, each ``module_size`` px square."""
    if module_size < 1:
        raise FrameError(f"module size must be >= 1 pixel, got {module_size}")
    modules = add_quiet_zone(matrix, quiet_zone)
    image = np.where(modules, np.uint8(0), np.uint8(255))
    return np.repeat(np.repeat(image, module_size, axis=0), module_size, axis=1)


def place_on_canvas(image: np.ndarray, size: tuple[int, int] = CANVAS_720P) -> np.ndarray:
    """Centre a grayscale ``image`` on a white canvas of ``size`` = (width, height)."""
    width, height = size
    rows, cols = image.shape[:2]
    if rows > height or cols > width:
        raise FrameError(f"a {cols}x{rows} image does not fit a {width}x{height} canvas")
    canvas = np.full((height, width), 255, dtype=np.uint8)
    top, left = (height - rows) // 2, (width - cols) // 2
    canvas[top : top + rows, left : left + cols] = image
    return canvas


def module_size_for(
    version: int, size: tuple[int, int] = CANVAS_720P, quiet_zone: int = QUIET_ZONE
) -> int:
    """Largest integer module size that fits ``version`` (with quiet zone) on the canvas."""
    modules = symbol_size(version) + 2 * quiet_zone
    module_size = min(size) // modules
    if module_size < 1:
        raise FrameError(f"QR version {version} does not fit a {size[0]}x{size[1]} canvas")
    return module_size


def half_blocks(matrix: np.ndarray, quiet_zone: int = QUIET_ZONE) -> str:
    """Terminal text: one column and two rows of modules per character, lines joined by \\n.

    Glyphs are the dark modules (upper half, lower half, full block, space); show the text
    with :data:`HALF_BLOCK_STYLE` (black on white) so the quiet zone is white too.
    """
    modules = add_quiet_zone(matrix, quiet_zone)
    if modules.shape[0] % 2:
        modules = np.pad(modules, ((0, 1), (0, 0)), constant_values=False)
    codes = modules[0::2].astype(np.uint8) + 2 * modules[1::2].astype(np.uint8)
    return "\n".join("".join(row) for row in _HALF_BLOCKS[codes])


@dataclass(frozen=True)
class FrameRenderer:
    """Renders every part of one stream at the same version, ECC, module size and canvas.

    ``module_size`` None picks the largest that fits ``canvas``; ``canvas`` None returns
    the bare code (with quiet zone) instead of a full screen frame.
    """

    version: int
    ecc: str = "L"
    module_size: int | None = None
    canvas: tuple[int, int] | None = CANVAS_720P
    quiet_zone: int = QUIET_ZONE
    mask: int | None = None

    def __post_init__(self) -> None:
        _check_version(self.version)
        object.__setattr__(self, "ecc", normalize_ecc(self.ecc))
        if self.module_size is None:
            if self.canvas is None:
                raise FrameError("module_size is required when there is no canvas")
            size = module_size_for(self.version, self.canvas, self.quiet_zone)
            object.__setattr__(self, "module_size", size)
        elif self.canvas is not None and self.module_size > module_size_for(
            self.version, self.canvas, self.quiet_zone
        ):
            raise FrameError(
                f"module size {self.module_size} at version {self.version} "
                f"does not fit a {self.canvas[0]}x{self.canvas[1]} canvas"
            )

    @classmethod
    def for_texts(cls, texts: Iterable[str], ecc: str = "L", **kwargs: object) -> FrameRenderer:
        """A renderer whose version fits the longest of ``texts``."""
        texts = list(texts)
        alphanumeric = all(_is_alphanumeric(t) for t in texts)
        lengths = (len(t) if alphanumeric else len(t.encode()) for t in texts)
        longest = max(lengths, default=0)
        version = version_for(longest, ecc, alphanumeric=alphanumeric)
        return cls(version=version, ecc=ecc, **kwargs)  # type: ignore[arg-type]

    def matrix(self, text: str) -> np.ndarray:
        return qr_matrix(text, self.version, self.ecc, mask=self.mask)

    def image(self, text: str) -> np.ndarray:
        """The frame for ``text``: grayscale uint8, on the canvas when one is set."""
        assert self.module_size is not None  # set in __post_init__
        image = matrix_to_image(self.matrix(text), self.module_size, self.quiet_zone)
        return image if self.canvas is None else place_on_canvas(image, self.canvas)

    def text(self, text: str) -> str:
        """The half-block terminal rendering of ``text``."""
        return half_blocks(self.matrix(text), self.quiet_zone)


_ALPHANUMERIC = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")


def _is_alphanumeric(text: str) -> bool:
    return all(ch in _ALPHANUMERIC for ch in text)
