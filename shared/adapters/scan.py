"""The one "scan until complete" loop: frames from a camera or a video file into a receiver.

Every scanner (the coordinator's ``receive`` and ``qr scan``, the appliance's ``sign`` and
its TUI's scan screen) reads frames the same way: a camera's frames are stamped with the
wall clock (its estimate of the time left is real), a video file's with its frame rate;
the loop ends when the transfer completes, the frames run out, ``timeout_s`` passes or the
caller cancels. Each caller passes its own error type, so a camera that cannot be opened
or stops is that program's one-line error and not an OSError mistaken for a disk failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from shared.adapters.camera import CameraError, FrameSource, Source
from shared.adapters.receiver import QrReceiver, ScanProgress

if TYPE_CHECKING:
    from shared.adapters.channel import Channel

#: Told the progress and a copy of the rejection counts (safe to hand to another thread).
ProgressCallback = Callable[[ScanProgress, dict[str, int]], None]


def scan_frames(
    receiver: QrReceiver,
    frames: Iterable[Any],
    *,
    live: bool,
    timeout_s: float | None = None,
    on_progress: ProgressCallback | None = None,
    progress_every_s: float = 1.0,
    cancelled: Callable[[], bool] | None = None,
) -> None:
    """Feed ``frames`` until the transfer completes, they run out, ``timeout_s`` has passed
    (checked after each frame, so one is always read) or ``cancelled()`` says so (checked
    before each frame).

    ``live`` frames (a camera) are stamped with the seconds since the start, others by
    the receiver from its frame rate; ``on_progress`` is called at most every
    ``progress_every_s`` seconds.
    """
    started = last_report = time.monotonic()
    for image in frames:
        if cancelled is not None and cancelled():
            return
        now = time.monotonic()
        stamp = now - started if live else None
        receiver.feed(image, stamp)
        if receiver.is_complete or (timeout_s is not None and now - started >= timeout_s):
            return
        if on_progress is not None and now - last_report >= progress_every_s:
            on_progress(receiver.progress(stamp), dict(receiver.rejections))
            last_report = now


def scan_source(
    source: Source,
    *,
    error: type[Exception],
    expected_types: list[str] | None = None,
    timeout_s: float | None = None,
    channel: Channel | None = None,
    on_progress: ProgressCallback | None = None,
    progress_every_s: float = 1.0,
    cancelled: Callable[[], bool] | None = None,
) -> QrReceiver:
    """Open a camera (an index) or a video file (a path) and scan it with :func:`scan_frames`
    (through a simulated ``channel`` if given); the receiver, complete or not.

    A source that cannot be opened, or a camera that stops, raises ``error``.
    """
    try:
        with FrameSource(source) as frames:
            receiver = QrReceiver(expected_types=expected_types, fps=frames.fps)
            images: Iterable[Any] = frames if channel is None else channel.apply(frames)
            scan_frames(
                receiver,
                images,
                live=frames.is_device,
                timeout_s=timeout_s,
                on_progress=on_progress,
                progress_every_s=progress_every_s,
                cancelled=cancelled,
            )
    except CameraError as exc:
        raise error(str(exc)) from exc
    return receiver


def incomplete_message(receiver: QrReceiver) -> str:
    """Why a scan gave nothing: frames read, parts known, the commonest rejections."""
    reasons = "; ".join(f"{n}x {r}" for r, n in receiver.rejections.most_common(3))
    detail = f" (rejected: {reasons})" if reasons else ""
    return f"incomplete after {receiver.frames_seen} frames: {receiver.progress()}{detail}"
