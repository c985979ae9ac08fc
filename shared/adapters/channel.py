"""Screen-to-camera channel simulator, so tests and benchmarks meet a camera's defects.

Why: the QR transport is only as good as what a real camera captures from a real screen
(DESIGN 7), and that cannot run in CI. This applies the defects that matter, in the
physical order, to frames as shown on the screen:

1. screen: a frame is *dropped* (never captured) with probability ``loss``, or *blended*
   with the previous shown frame (the display changed during the exposure) with
   probability ``blend``, the previous frame weighing 25-75 %;
2. optics: the shown frame appears at ``scale`` of the captured frame, turned by ``tilt``
   degrees about its vertical axis (perspective), with mid-gray surroundings, then
   Gaussian ``blur`` (sigma in pixels);
3. light and sensor: ``brightness`` offset (gray levels), a bright elliptical ``glare``
   highlight (0..1, its peak fraction of the way to white) at a random place, and Gaussian
   sensor ``noise`` (sigma in gray levels).

Deterministic: frame ``i`` draws from its own ``numpy`` Generators seeded by ``(seed, i,
stage)``, one for the screen events and one for the camera, so a frame's defects do not
depend on which other frames were processed, and :meth:`Channel.transform` of frame ``i``
equals what :meth:`Channel.process` captures for it (unless it was blended). All work is
OpenCV or vectorised numpy, a few ms per 720p frame.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields

import cv2
import numpy as np

SURROUND_GRAY = 96
"""Gray level of what the camera sees around the screen when the frame is scaled down."""
BLEND_WEIGHT = (0.25, 0.75)
"""Range of the previous frame's weight in a blended frame."""
_SCREEN, _CAMERA = 0, 1  # separate random streams, so transform(i) == frame i of process


@dataclass(frozen=True)
class ChannelSpec:
    """Channel parameters; the defaults are a perfect channel."""

    loss: float = 0.0
    blur: float = 0.0
    noise: float = 0.0
    tilt: float = 0.0
    scale: float = 1.0
    glare: float = 0.0
    blend: float = 0.0
    brightness: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name, low, high in _RANGES:
            value = getattr(self, name)
            if not (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
                and low <= value <= high
            ):
                raise ValueError(f"channel {name}={value!r}: must be a number in [{low}, {high}]")
        if self.scale <= 0:
            raise ValueError(f"channel scale={self.scale!r}: must be > 0")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"channel seed={self.seed!r}: must be an integer >= 0")

    def __str__(self) -> str:
        """The spec string that :func:`parse_channel_spec` turns back into this spec."""
        return ",".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))


_RANGES = (
    ("loss", 0.0, 1.0),
    ("blur", 0.0, 50.0),
    ("noise", 0.0, 255.0),
    ("tilt", -80.0, 80.0),
    ("scale", 0.0, 4.0),
    ("glare", 0.0, 1.0),
    ("blend", 0.0, 1.0),
    ("brightness", -255.0, 255.0),
)
_KEYS = tuple(f.name for f in fields(ChannelSpec))


def parse_channel_spec(text: str) -> ChannelSpec:
    """Parse ``"loss=0.1,blur=1.0,noise=4,tilt=8,scale=0.7,glare=0.2,blend=0.1,seed=1"``.

    Keys may come in any order and be omitted (defaults: a perfect channel); unknown or
    repeated keys and bad values raise ValueError naming the key.
    """
    values: dict[str, float | int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, raw = (s.strip() for s in item.partition("="))
        if key not in _KEYS:
            raise ValueError(f"unknown channel key {key!r} (known: {', '.join(_KEYS)})")
        if not sep or not raw:
            raise ValueError(f"channel key {key!r} has no value")
        if key in values:
            raise ValueError(f"channel key {key!r} given twice")
        values[key] = _parse_value(key, raw)
    return ChannelSpec(**values)  # type: ignore[arg-type]


def _parse_value(key: str, raw: str) -> float | int:
    try:
        return int(raw) if key == "seed" else float(raw)
    except ValueError:
        kind = "an integer" if key == "seed" else "a number"
        raise ValueError(f"channel {key}={raw!r}: not {kind}") from None


@dataclass(frozen=True)
class CapturedFrame:
    """One captured frame: which shown frame it is, and which earlier one bled into it."""

    index: int
    image: np.ndarray
    blended_with: int | None = None


class Channel:
    """Applies a :class:`ChannelSpec` to frames (grayscale or BGR ``uint8``)."""

    def __init__(self, spec: ChannelSpec | str | None = None) -> None:
        if spec is None:
            spec = ChannelSpec()
        elif isinstance(spec, str):
            spec = parse_channel_spec(spec)
        self.spec = spec
        self._homographies: dict[tuple[int, int], np.ndarray | None] = {}

    def process(self, frames: Iterable[np.ndarray]) -> Iterator[CapturedFrame]:
        """Captured frames in order; dropped frames are missing, blends say so."""
        previous: np.ndarray | None = None
        for index, frame in enumerate(frames):
            rng = self._rng(index, _SCREEN)
            dropped = rng.random() < self.spec.loss
            mixed = previous is not None and rng.random() < self.spec.blend
            partner, previous = (previous if mixed else None), frame
            if dropped:
                continue
            shown = frame
            if partner is not None:
                weight = rng.uniform(*BLEND_WEIGHT)
                shown = cv2.addWeighted(frame, 1.0 - weight, partner, weight, 0.0)
            yield CapturedFrame(
                index,
                self._capture(shown, self._rng(index, _CAMERA)),
                None if partner is None else index - 1,
            )

    def apply(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Just the captured images of :meth:`process`."""
        return (captured.image for captured in self.process(frames))

    def transform(self, image: np.ndarray, index: int = 0) -> np.ndarray:
        """Optics, light and sensor effects on one frame (no loss, no blending)."""
        return self._capture(image, self._rng(index, _CAMERA))

    def _rng(self, index: int, stage: int) -> np.random.Generator:
        return np.random.default_rng([self.spec.seed, index, stage])

    def _capture(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        spec = self.spec
        out = self._warp(image)
        if spec.blur > 0:
            out = cv2.GaussianBlur(out, (0, 0), spec.blur)
        if spec.brightness:
            out = cv2.add(out, (float(spec.brightness),) * 3 + (0.0,))
        if spec.glare:
            out = add_glare(out, spec.glare, rng)
        if spec.noise:
            out = add_noise(out, spec.noise, rng)
        return out

    def _warp(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        key = (width, height)
        if key not in self._homographies:
            self._homographies[key] = view_homography(
                width, height, self.spec.scale, self.spec.tilt
            )
        matrix = self._homographies[key]
        if matrix is None:
            return image
        return cv2.warpPerspective(
            image,
            matrix,
            (width, height),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(SURROUND_GRAY,) * 3,
        )


def view_homography(width: int, height: int, scale: float, tilt: float) -> np.ndarray | None:
    """Homography from shown to captured frame, or None when it is the identity.

    The screen is scaled by ``scale`` about the centre and turned ``tilt`` degrees about
    its vertical axis, seen by a pinhole camera whose focal length is the frame width.
    """
    if scale == 1.0 and tilt == 0.0:
        return None
    cx, cy, focal = width / 2, height / 2, float(width)
    theta = math.radians(tilt)
    src, dst = [], []
    for x, y in ((0, 0), (width, 0), (width, height), (0, height)):
        dx, dy = (x - cx) * scale, (y - cy) * scale
        depth = focal + dx * math.sin(theta)
        src.append((x, y))
        dst.append((cx + focal * dx * math.cos(theta) / depth, cy + focal * dy / depth))
    return cv2.getPerspectiveTransform(
        np.array(src, dtype=np.float32), np.array(dst, dtype=np.float32)
    )


def glare_mask(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A soft bright ellipse (float32, peak 1.0) at a random place, orientation and size."""
    height, width = shape[:2]
    return cv2.resize(
        _small_glare(height, width, rng), (width, height), interpolation=cv2.INTER_LINEAR
    )


def _small_glare(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """The glare on a 1/8 grid: a highlight has no fine detail, so it is resized up."""
    small_h, small_w = max(2, height // 8), max(2, width // 8)
    cx, cy = rng.uniform(0.2, 0.8) * small_w, rng.uniform(0.2, 0.8) * small_h
    axis_a = rng.uniform(0.10, 0.25) * small_w
    axis_b = axis_a * rng.uniform(0.3, 0.8)
    angle = rng.uniform(0.0, math.pi)
    ys, xs = np.mgrid[0:small_h, 0:small_w].astype(np.float32)
    xs -= cx
    ys -= cy
    cos, sin = math.cos(angle), math.sin(angle)
    u, v = (xs * cos + ys * sin) / axis_a, (-xs * sin + ys * cos) / axis_b
    return np.exp(-0.5 * (u * u + v * v) ** 2).astype(np.float32)  # flat top, soft edge


def add_glare(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Move each pixel ``strength * mask`` of the way to white (saturating uint8 arithmetic)."""
    height, width = image.shape[:2]
    small = np.clip(_small_glare(height, width, rng) * (255.0 * strength), 0, 255)
    mask = cv2.resize(small.astype(np.uint8), (width, height), interpolation=cv2.INTER_LINEAR)
    if image.ndim == 3:
        mask = cv2.merge([mask] * image.shape[2])
    headroom = cv2.bitwise_not(image)
    return cv2.add(image, cv2.multiply(headroom, mask, scale=1 / 255))


def add_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Add Gaussian noise of ``sigma`` gray levels, saturating at 0 and 255.

    OpenCV's generator is about five times faster than numpy's for a 720p frame; it is
    per thread and seeded here from the frame's own Generator, so results stay
    deterministic.
    """
    noise = np.empty(image.shape, dtype=np.int16)
    cv2.setRNGSeed(int(rng.integers(0, 2**31 - 1)))
    # OpenCV's stub types mean and stddev as arrays; the C++ API takes a Scalar, which a
    # float is (a 0-d array would not be the same Scalar for a colour frame).
    cv2.randn(noise, 0.0, float(sigma))  # type: ignore[call-overload]
    return cv2.add(image, noise, dtype=cv2.CV_8U)
