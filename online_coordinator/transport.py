"""How payloads cross the air gap on the coordinator's side: files, UR text, video, camera.

A *source* is one of

* ``camera:N``: OpenCV device N, scanned live;
* a video file (``.avi``, ``.mp4``, ``.mkv``, ``.mov``): scanned frame by frame;
* a text file of UR parts (``ur:...`` lines, any order, junk lines ignored);
* any other file: the payload itself (a PSBT in binary/base64/hex, a descriptor, a receipt).

Every path ends in the same validated payload bytes (:func:`shared.ur.payload.cbor_to_file`),
so the commands do not care how a payload arrived.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from online_coordinator.commands.common import CommandError, read_limited
from shared.ur.payload import PayloadError, cbor_to_file
from shared.ur.ur import UR, URDecoder, UREncoder

if TYPE_CHECKING:  # OpenCV and numpy load only when a camera or video is used
    from shared.qr.receiver import QrReceiver

VIDEO_SUFFIXES = frozenset({".avi", ".mp4", ".mkv", ".mov"})
UR_TEXT_PART_BYTES = 200


@dataclass(frozen=True)
class Payload:
    data: bytes
    ur_type: str | None  # None when the file held the payload itself
    how: str  # for the record: "file", "ur text", "video", "camera"


def receive(source: str, *, timeout: float = 120.0) -> Payload:
    """The payload from ``source`` (see the module docstring); errors are CommandError."""
    if source.startswith("camera:"):
        index = source.removeprefix("camera:")
        if not index.isdigit():
            raise CommandError(f"{source}: use camera:N with a device number")
        return _scan(int(index), timeout, "camera")
    if Path(source).suffix.lower() in VIDEO_SUFFIXES:
        return _scan(source, timeout, "video")
    data = read_limited(source)
    if _is_ur_text(data):
        return _ur_text(source, data)
    return Payload(data, None, "file")


def _is_ur_text(data: bytes) -> bool:
    """ASCII text with at least one ``ur:`` line (other lines are ignored as junk)."""
    if not data.isascii():
        return False
    return any(line.strip().lower().startswith(b"ur:") for line in data.splitlines())


def _ur_text(source: str, data: bytes) -> Payload:
    decoder = URDecoder()
    for line in data.decode("utf-8", "replace").splitlines():
        if line.strip():
            decoder.receive(line.strip())
        if decoder.is_complete:
            break
    result = decoder.result
    if result is None:
        raise CommandError(f"{source}: the UR parts are incomplete ({decoder.progress})")
    return Payload(_to_file(source, result.type, result.cbor), result.type, "ur text")


def _to_file(source: str, ur_type: str, cbor: bytes) -> bytes:
    try:
        return cbor_to_file(ur_type, cbor)
    except PayloadError as exc:
        raise CommandError(f"{source}: {exc}") from exc


def _scan(device: int | str, timeout: float, how: str) -> Payload:
    from shared.qr.camera import CameraError, FrameSource
    from shared.qr.receiver import QrReceiver

    try:
        source = FrameSource(device)
    except CameraError as exc:
        raise CommandError(str(exc)) from exc
    with source:
        receiver = QrReceiver(fps=source.fps)
        scan_frames(receiver, iter(source), timeout, live=how == "camera")
    result = receiver.result
    if result is None:
        reasons = "; ".join(f"{n}x {r}" for r, n in receiver.rejections.most_common(3))
        detail = f" (rejected: {reasons})" if reasons else ""
        raise CommandError(
            f"{device}: incomplete after {receiver.frames_seen} frames: "
            f"{receiver.progress()}{detail}"
        )
    return Payload(_to_file(str(device), result.ur_type, result.cbor), result.ur_type, how)


def scan_frames(receiver: QrReceiver, frames: Iterator[Any], timeout: float, live: bool) -> None:
    """Feed frames until the transfer completes or ``timeout`` passes; progress on stderr."""
    started = time.monotonic()
    last_report = started
    for image in frames:
        now = time.monotonic()
        receiver.feed(image, now - started if live else None)
        if receiver.is_complete or now - started > timeout:
            return
        if live and now - last_report > 1.0:
            print(receiver.progress(now - started), file=sys.stderr)
            last_report = now


def ur_parts(
    ur_type: str, cbor: bytes, max_fragment: int = UR_TEXT_PART_BYTES, cycles: float = 1.0
) -> list[str]:
    """UR parts for a text file: one full cycle of fragments (decodable without loss)."""
    encoder = UREncoder(UR(ur_type, cbor), max_fragment)
    count = max(1, int(encoder.seq_len * cycles))
    return [encoder.next_part() for _ in range(count)]


def write_qr_video(
    ur_type: str, cbor: bytes, path: Path, preset: str = "fast", cycles: float = 3.0
) -> int:
    """An animated-QR video of the payload, as a screen would show it; frames written."""
    from shared.qr.presets import preset_by_name
    from shared.qr.video import VideoWriteError, write_video

    chosen = preset_by_name(preset).with_overrides(ur_type=ur_type)
    encoder = UREncoder(UR(ur_type, cbor), chosen.max_fragment_len)
    renderer = chosen.renderer()
    count = max(1, int(encoder.seq_len * cycles))
    frames = (renderer.image(encoder.next_part().upper()) for _ in range(count))
    try:
        return write_video(frames, str(path), chosen.fps)
    except (VideoWriteError, OSError) as exc:
        raise CommandError(f"{path}: {exc}") from exc
