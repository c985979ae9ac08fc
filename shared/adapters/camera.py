"""Camera and video-file frame source over OpenCV ``VideoCapture``.

An adapter (:mod:`shared.adapters`): both programs scan QR codes, and the tests drive the
very same path with generated videos (DESIGN 7).

A device index opens a camera; a path opens a video file, read as fast as it decodes.
Reads block in OpenCV until a frame arrives, so iterating never spins.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from shared.closing import Closing

DEFAULT_FPS = 30.0
"""Reported when the capture does not know its frame rate (many webcams, some files)."""
DEVICE_READ_RETRIES = 3
"""Consecutive failed reads from a camera before it counts as gone."""
DEVICE_RETRY_DELAY = 0.05


class CameraError(OSError):
    """The camera or video file cannot be opened, or a camera stopped delivering frames."""


Source = int | str | os.PathLike[str]


def parse_source(spec: str) -> Source:
    """What an operator typed: ``"0"`` (all digits) is a camera index, anything else a path."""
    return int(spec) if spec.strip().isdigit() else spec


class FrameSource(Closing):
    """Frames (BGR ``uint8`` arrays, or grayscale with ``gray=True``) from a camera or file.

    Use as a context manager, or call :meth:`close`; iteration ends at the end of a
    file and raises :class:`CameraError` when a camera stops delivering frames.
    ``width``/``height`` request a camera resolution (ignored for files).
    """

    def __init__(
        self,
        source: Source,
        *,
        default_fps: float = DEFAULT_FPS,
        gray: bool = False,
        width: int | None = None,
        height: int | None = None,
    ) -> None:
        self.source = source
        self.is_device = isinstance(source, int) and not isinstance(source, bool)
        self.gray = gray
        capture = self._open(source)
        self._capture: cv2.VideoCapture | None = capture
        if self.is_device:
            _request_size(capture, width, height)
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and np.isfinite(fps) and 0 < fps <= 1000 else default_fps

    @classmethod
    def from_spec(cls, spec: str, **kwargs: object) -> FrameSource:
        """``"0"`` (all digits) is a camera index, anything else a file path."""
        return cls(parse_source(spec), **kwargs)  # type: ignore[arg-type]

    def _open(self, source: Source) -> cv2.VideoCapture:
        if self.is_device and isinstance(source, int):  # is_device: an int, not a bool
            capture = cv2.VideoCapture(source)
            what = f"camera {source}"
        elif isinstance(source, str | os.PathLike):
            path = Path(source)
            if not path.is_file():
                raise CameraError(f"video file {str(path)!r} does not exist or is not a file")
            capture = cv2.VideoCapture(str(path))
            what = f"video file {str(path)!r}"
        else:
            raise CameraError(f"frame source must be a camera index or a path, got {source!r}")
        if not capture.isOpened():
            capture.release()
            raise CameraError(f"cannot open {what} (OpenCV VideoCapture refused it)")
        return capture

    @property
    def frame_count(self) -> int | None:
        """Frames in a video file when the container says; None for cameras or unknown."""
        if self.is_device or self._capture is None:
            return None
        count = self._capture.get(cv2.CAP_PROP_FRAME_COUNT)
        return int(count) if count and np.isfinite(count) and count > 0 else None

    @property
    def closed(self) -> bool:
        return self._capture is None

    def read(self) -> np.ndarray | None:
        """The next frame; None at the end of a file. Raises CameraError for a lost camera."""
        if self._capture is None:
            raise CameraError("frame source is closed")
        for attempt in range(DEVICE_READ_RETRIES if self.is_device else 1):
            ok, frame = self._capture.read()
            if ok and frame is not None:
                return self._convert(frame)
            if self.is_device and attempt + 1 < DEVICE_READ_RETRIES:
                time.sleep(DEVICE_RETRY_DELAY)
        if self.is_device:
            raise CameraError(f"camera {self.source} stopped delivering frames")
        return None

    def _convert(self, frame: np.ndarray) -> np.ndarray:
        if self.gray and frame.ndim == 3:
            return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        return frame

    def __iter__(self) -> Iterator[np.ndarray]:
        while (frame := self.read()) is not None:
            yield frame

    def close(self) -> None:
        """Release the capture (idempotent)."""
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def __del__(self) -> None:
        capture = getattr(self, "_capture", None)
        if capture is not None:
            capture.release()


def _request_size(capture: cv2.VideoCapture, width: int | None, height: int | None) -> None:
    """Ask a camera for a resolution; it may pick the nearest it supports, or ignore it."""
    if width:
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
    if height:
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
