"""End to end over a real video file: render -> channel -> .avi -> VideoCapture -> decode.

This is the path a scanner takes, with OpenCV's real ``VideoCapture`` in place of a camera
(DESIGN 7): every text with at least one clean capture must come back, and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from shared.adapters.camera import CameraError, FrameSource
from shared.adapters.channel import Channel
from shared.adapters.decoders import default_decoder
from shared.adapters.video import VideoWriteError, write_video
from shared.qr.frames import FrameRenderer

CHANNEL = "loss=0.1,blur=1.0,noise=4,tilt=8,scale=0.7,glare=0.2,blend=0.1,brightness=-20,seed=3"
FPS = 10.0
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def texts() -> list[str]:
    out = []
    for seq in range(1, 21):
        body = "".join(ALPHABET[(seq * 5 + i * 11) % 26] for i in range(150 + 13 * seq))
        out.append(f"UR:CRYPTO-PSBT/{seq}-20/{body}")
    return out


def test_texts_survive_channel_and_video_file(tmp_path: Path) -> None:
    payloads = texts()
    renderer = FrameRenderer.for_texts(payloads)
    captured = list(Channel(CHANNEL).process(renderer.image(text) for text in payloads))
    path = tmp_path / "scan.avi"
    assert write_video((c.image for c in captured), path, FPS) == len(captured)

    decoder = default_decoder()
    decoded: set[str] = set()
    with FrameSource(path) as source:
        assert source.fps == FPS
        assert source.frame_count == len(captured)
        frames = 0
        for frame in source:
            assert frame.shape == (720, 1280, 3)
            decoded.update(decoder.decode(frame))
            frames += 1
    assert frames == len(captured)
    assert source.closed

    # this seed drops two frames and blends one with its predecessor: the test must see both
    assert len(captured) < len(payloads)
    assert any(c.blended_with is not None for c in captured)
    delivered = {payloads[c.index] for c in captured if c.blended_with is None}
    assert len(delivered) >= 15
    assert delivered <= decoded <= set(payloads)


def test_gray_frames_and_gray_reading(tmp_path: Path) -> None:
    renderer = FrameRenderer(version=5, canvas=(320, 240))
    images = [renderer.image(f"UR:BYTES/{i}") for i in range(5)]
    path = tmp_path / "gray.avi"
    assert write_video(images, path, fps=7) == 5
    with FrameSource(str(path), gray=True) as source:
        frames = list(source)
        assert source.fps == 7
    assert [f.shape for f in frames] == [(240, 320)] * 5
    assert (
        max(int(np.abs(f.astype(int) - i).max()) for f, i in zip(frames, images, strict=True)) < 40
    )
    decoder = default_decoder()
    assert [decoder.decode(f) for f in frames] == [[f"UR:BYTES/{i}"] for i in range(5)]


def test_video_writer_errors(tmp_path: Path) -> None:
    frame = np.zeros((48, 64), np.uint8)
    with pytest.raises(VideoWriteError, match="no directory"):
        write_video([frame], tmp_path / "missing" / "x.avi", 10)
    with pytest.raises(VideoWriteError, match="codec"):
        write_video([frame], tmp_path / "x.avi", 10, fourcc="ZZZZ")
    with pytest.raises(VideoWriteError, match="frame 1 is 32x48"):
        write_video([frame, frame[:, :32]], tmp_path / "x.avi", 10)
    with pytest.raises(VideoWriteError, match="frame 0"):
        write_video([frame.astype(float)], tmp_path / "x.avi", 10)
    with pytest.raises(VideoWriteError, match="fps"):
        write_video([frame], tmp_path / "x.avi", 0)
    assert write_video([], tmp_path / "none.avi", 10) == 0


def test_frame_source_errors(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="does not exist"):
        FrameSource(tmp_path / "absent.avi")
    with pytest.raises(CameraError, match="does not exist"):
        FrameSource(tmp_path)
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"not a video" * 100)
    with pytest.raises(CameraError, match="cannot open"):
        FrameSource(junk)
    with pytest.raises(CameraError, match="cannot open camera"):
        FrameSource(99)
    with pytest.raises(CameraError, match="camera index or a path"):
        FrameSource(1.5)  # type: ignore[arg-type]


def test_frame_source_close_and_spec(tmp_path: Path) -> None:
    path = tmp_path / "one.avi"
    write_video([np.full((32, 32), 255, np.uint8)] * 2, path, 5)
    source = FrameSource.from_spec(str(path))
    assert not source.is_device and source.frame_count == 2
    assert source.read() is not None
    source.close()
    source.close()
    assert source.closed
    with pytest.raises(CameraError, match="closed"):
        source.read()
    with pytest.raises(CameraError, match="cannot open camera 98"):
        FrameSource.from_spec("98")


class FakeCapture:
    """A capture that opened but knows neither its frame rate nor its length."""

    def __init__(self, source: object) -> None:
        self.released = False
        self.frames = [np.zeros((8, 8, 3), np.uint8)]

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return True

    def get(self, prop: int) -> float:
        return 0.0

    def read(self) -> tuple[bool, np.ndarray | None]:
        return (True, self.frames.pop()) if self.frames else (False, None)

    def release(self) -> None:
        self.released = True


def test_default_fps_and_unknown_length(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shared.adapters.camera as camera

    monkeypatch.setattr(camera.cv2, "VideoCapture", FakeCapture)
    path = tmp_path / "any.avi"
    path.write_bytes(b"")
    with FrameSource(path, default_fps=12.5) as source:
        assert source.fps == 12.5
        assert source.frame_count is None
        assert len(list(source)) == 1
        capture = source._capture
    assert capture.released


class StoppingCamera(FakeCapture):
    """A camera that delivers one frame, then nothing (unplugged mid-scan)."""

    def set(self, prop: int, value: float) -> bool:
        return True


def test_a_camera_that_stops_is_the_scanners_own_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one scan loop raises the caller's error type: the coordinator used to let the
    camera's OSError through, which its exit codes report as a disk failure (status 5)."""
    import shared.adapters.camera as camera
    from online_coordinator.exit_codes import CommandError, ExitCode
    from online_coordinator.transport import receive
    from shared.adapters.scan import scan_source

    monkeypatch.setattr(camera.cv2, "VideoCapture", StoppingCamera)
    monkeypatch.setattr(camera, "DEVICE_RETRY_DELAY", 0.0)
    with pytest.raises(LookupError, match="camera 0 stopped delivering frames"):
        scan_source(0, error=LookupError)
    with pytest.raises(CommandError, match="camera 0 stopped") as raised:
        receive("camera:0")
    assert raised.value.code is ExitCode.USAGE


def test_the_scan_loop_stops_on_timeout_and_cancel() -> None:
    from shared.adapters.receiver import QrReceiver
    from shared.adapters.scan import scan_frames

    def blank() -> Iterator[np.ndarray]:
        while True:  # a camera pointed at nothing, for ever
            yield np.full((64, 64), 255, np.uint8)

    receiver = QrReceiver()
    scan_frames(receiver, blank(), live=True, timeout_s=0.0)
    assert receiver.frames_seen == 1 and not receiver.is_complete
    calls = iter([False, False, True])
    receiver = QrReceiver()
    seen: list[str] = []
    scan_frames(
        receiver,
        blank(),
        live=False,
        cancelled=lambda: next(calls),
        on_progress=lambda progress, _: seen.append(str(progress)),
        progress_every_s=0.0,
    )
    assert receiver.frames_seen == 2
    assert seen == ["1 frames, waiting for a code", "2 frames, waiting for a code"]
