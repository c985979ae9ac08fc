"""Write frames to a video file with OpenCV ``VideoWriter``.

This module and :mod:`shared.qr.camera` are the only I/O in ``shared/`` (see there for
why): tests and benchmarks record simulated screen-to-camera captures as video and play
them back through the real ``VideoCapture`` path, and an operator can record what a
scanner saw to replay a failed scan.

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

import os
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

DEFAULT_FOURCC = "MJPG"
DEFAULT_QUALITY = 95
"""JPEG quality 0-100: high enough that compression does not eat QR modules."""


class VideoWriteError(OSError):
    """The video writer cannot open the file or codec, or a frame does not fit the video."""


def write_video(frames: Iterable[np.ndarray], path: str | os.PathLike[str], fps: float, *,
                fourcc: str = DEFAULT_FOURCC, quality: int = DEFAULT_QUALITY) -> int:
    """Write ``frames`` (all the same size, ``uint8`` gray or BGR) and return how many.

    The writer opens on the first frame, whose size sets the video's; an empty iterable
    writes nothing and returns 0.
    """
    if not (isinstance(fps, int | float) and 0 < fps <= 1000):
        raise VideoWriteError(f"fps must be in (0, 1000], got {fps!r}")
    if len(fourcc) != 4:
        raise VideoWriteError(f"fourcc must be 4 characters, got {fourcc!r}")
    writer: cv2.VideoWriter | None = None
    size: tuple[int, int] | None = None
    count = 0
    try:
        for frame in frames:
            bgr = _to_bgr(frame, count)
            if writer is None:
                size = (bgr.shape[1], bgr.shape[0])
                writer = _open(Path(path), fourcc, fps, size, quality)
            elif (bgr.shape[1], bgr.shape[0]) != size:
                raise VideoWriteError(f"frame {count} is {bgr.shape[1]}x{bgr.shape[0]}, "
                                      f"the video is {size[0]}x{size[1]}")
            writer.write(bgr)
            count += 1
    finally:
        if writer is not None:
            writer.release()
    return count


def _open(path: Path, fourcc: str, fps: float, size: tuple[int, int],
          quality: int) -> cv2.VideoWriter:
    if not path.parent.is_dir():
        raise VideoWriteError(f"cannot write video {str(path)!r}: "
                              f"no directory {str(path.parent)!r}")
    builtin = fourcc.upper() == "MJPG" and path.suffix.lower() == ".avi"
    api = cv2.CAP_OPENCV_MJPEG if builtin else cv2.CAP_ANY
    writer = cv2.VideoWriter(str(path), api, cv2.VideoWriter_fourcc(*fourcc), float(fps), size)
    if not writer.isOpened():
        writer.release()
        raise VideoWriteError(f"cannot open video writer for {str(path)!r} with codec "
                              f"{fourcc} at {size[0]}x{size[1]}")
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
