"""Write frames, or a UR as an animated QR, to a video file with OpenCV ``VideoWriter``.

An adapter (:mod:`shared.adapters`): tests and benchmarks record simulated screen-to-camera
captures as video and play them back through the real ``VideoCapture`` path, the
coordinator writes a request as the video a screen would show, and an operator can record
what a scanner saw to replay a failed scan.

Codec: Motion-JPEG in an ``.avi`` container, written by OpenCV's own MJPEG backend
(``CAP_OPENCV_MJPEG``, always built in) and read back through FFmpeg by ``VideoCapture``.
Every frame is a key frame (no inter-frame smearing of QR modules). Checked here with
opencv-python-headless 5.0: the FFmpeg MJPG writer ignores the quality setting (errors
up to 78 gray levels on a QR frame) and rounds odd sizes down to even; the built-in one
honours quality (95: at most 7 levels) and keeps the exact size. Other codecs and
containers go to whatever backend OpenCV picks. Frames are written as 8-bit BGR;
grayscale frames are converted.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from shared.adapters.channel import Channel
    from shared.qr.presets import Preset
    from shared.ur.ur import UREncoder

DEFAULT_FOURCC = "MJPG"
DEFAULT_QUALITY = 95
"""JPEG quality 0-100: high enough that compression does not eat QR modules."""


class VideoWriteError(OSError):
    """The video writer cannot open the file or codec, or a frame does not fit the video."""


def write_video(
    frames: Iterable[np.ndarray],
    path: str | os.PathLike[str],
    fps: float,
    *,
    fourcc: str = DEFAULT_FOURCC,
    quality: int = DEFAULT_QUALITY,
) -> int:
    """Write ``frames`` (all the same size, ``uint8`` gray or BGR) and return how many.

    The writer opens on the first frame, whose size sets the video's; an empty iterable
    writes nothing and returns 0.
    """
    if not (isinstance(fps, int | float) and 0 < fps <= 1000):
        raise VideoWriteError(f"fps must be in (0, 1000], got {fps!r}")
    if len(fourcc) != 4:
        raise VideoWriteError(f"fourcc must be 4 characters, got {fourcc!r}")
    writer: cv2.VideoWriter | None = None
    size = (0, 0)  # the first frame's, set when it opens the writer
    count = 0
    try:
        for frame in frames:
            bgr = _to_bgr(frame, count)
            if writer is None:
                size = (bgr.shape[1], bgr.shape[0])
                writer = _open(Path(path), fourcc, fps, size, quality)
            elif (bgr.shape[1], bgr.shape[0]) != size:
                raise VideoWriteError(
                    f"frame {count} is {bgr.shape[1]}x{bgr.shape[0]}, "
                    f"the video is {size[0]}x{size[1]}"
                )
            writer.write(bgr)
            count += 1
    finally:
        if writer is not None:
            writer.release()
    return count


def write_ur_video(
    encoder: UREncoder,
    preset: Preset,
    path: str | os.PathLike[str],
    *,
    cycles: float,
    error: type[Exception],
    channel: Channel | None = None,
) -> int:
    """``encoder``'s parts as the animated QR a screen shows with ``preset``, ``cycles``
    times seqLen frames (optionally through a simulated ``channel``); frames written.

    The one writer of a payload's QR video, for every command that writes one; a failure
    raises ``error`` (the caller's one-line error type) naming the path.
    """
    texts = (part.upper() for part in encoder.cycle_parts(cycles))
    return _write_texts(texts, preset, path, error, channel)


def write_bbqr_video(
    parts: Sequence[str],
    preset: Preset,
    path: str | os.PathLike[str],
    *,
    cycles: float,
    error: type[Exception],
    channel: Channel | None = None,
) -> int:
    """BBQr ``parts`` (shared.ur.bbqr: cut to fit ``preset``'s QR version) as the animated
    QR a COLDCARD Q reads, shown ``cycles`` times over (at least once); frames written."""
    texts = (part for _ in range(max(1, math.ceil(cycles))) for part in parts)
    return _write_texts(texts, preset, path, error, channel)


def _write_texts(
    texts: Iterable[str],
    preset: Preset,
    path: str | os.PathLike[str],
    error: type[Exception],
    channel: Channel | None,
) -> int:
    renderer = preset.renderer()
    frames: Iterable[np.ndarray] = (renderer.image(text) for text in texts)
    if channel is not None:
        frames = channel.apply(frames)
    try:
        return write_video(frames, path, preset.fps)
    except (OSError, ValueError) as exc:  # VideoWriteError, or a text the version cannot hold
        raise error(f"{os.fspath(path)}: {exc}") from exc


def _open(
    path: Path, fourcc: str, fps: float, size: tuple[int, int], quality: int
) -> cv2.VideoWriter:
    if not path.parent.is_dir():
        raise VideoWriteError(
            f"cannot write video {str(path)!r}: no directory {str(path.parent)!r}"
        )
    builtin = fourcc.upper() == "MJPG" and path.suffix.lower() == ".avi"
    api = cv2.CAP_OPENCV_MJPEG if builtin else cv2.CAP_ANY
    writer = cv2.VideoWriter(str(path), api, cv2.VideoWriter.fourcc(*fourcc), float(fps), size)
    if not writer.isOpened():
        writer.release()
        raise VideoWriteError(
            f"cannot open video writer for {str(path)!r} with codec {fourcc} at {size[0]}x{size[1]}"
        )
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, float(quality))
    return writer


def _to_bgr(frame: np.ndarray, index: int) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        raise VideoWriteError(f"frame {index} is not a uint8 image")
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return np.ascontiguousarray(frame)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    raise VideoWriteError(f"frame {index} has shape {frame.shape}; expected gray, BGR or BGRA")
