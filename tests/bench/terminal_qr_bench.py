"""Benchmark: the animated QR on the screens people use, as a camera sees it (issue 18).

The show-QR screen draws half blocks in a terminal; this renders exactly those frames
(``shared.qr.stream.QrStream``, the density the screen itself picks for the window) onto
the pixels of a text console (8x16 font: a module is 8x8 pixels), for:

* an **80x24** terminal window, the camera filling its view with the window;
* a **120x40** terminal window, likewise;
* the station's **1080p console** (240x67 cells at 8x16: the whole 1920x1080 monitor in
  the camera's view).

The camera (1280x720 at 29.97 frames per second, on its own clock) has a rolling shutter,
as phone and laptop cameras do: its rows are read out one after another over 25 ms, each
exposed for 1/60 s, so a frame change during the readout tears the sample (the rows above
show one frame, the rows below the next: unreadable), and a change during a row's exposure
blends the two frames in that row, weighted by time. Each sample then goes through the
channel simulator's optics (slight tilt, blur, sensor noise) and the receiver (zxing-cpp,
pyzbar) until the UR decoder completes. Effective throughput is the message size over the time
from the first frame shown to the sample that completed it.

Message: 4,700 bytes (as ``ur:bytes``), the size of a 60-payout signing request. Each screen is
run at the densest fragment that fits and one step sparser, at several frame rates.
Prints figures only: the screen's default speed (``shared.ui.show_qr.DEFAULT_FPS``) is
chosen from this table.

    python -m tests.bench.terminal_qr_bench [--fps 5,10,15,20,30] [--message 4700]
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass

import cv2
import numpy as np

from shared.adapters.channel import Channel, ChannelSpec
from shared.adapters.receiver import QrReceiver
from shared.qr.stream import QrStream
from shared.ui.show_qr import DEFAULT_FPS, FRAGMENT_STEPS
from shared.ur.registry import encode_bytes
from shared.ur.ur import UR

CELL_W, CELL_H = 8, 16  # a VGA text font: a half block is 8x8 pixels
CAMERA = (1280, 720)
CAMERA_FPS = 29.97  # a camera's clock is not the screen's: samples drift across frames
CAMERA_PHASE_S = 0.013  # the first sample, after the first frame is shown
EXPOSURE_S = 1 / 60
READOUT_S = 0.025  # top row to bottom row of one sample (rolling shutter)
#: Rows the screen keeps for itself under the QR: the status (two lines) and the footer.
CHROME_ROWS = 3
OPTICS = ChannelSpec(blur=0.8, noise=3.0, tilt=4.0, scale=0.92, seed=7)
GLYPHS = {" ": (0, 0), "▀": (1, 0), "▄": (0, 1), "█": (1, 1)}  # (top dark, bottom dark)


@dataclass(frozen=True)
class Screen:
    name: str
    cols: int
    rows: int

    def stream(self, ur: UR, step: int = 0) -> QrStream | None:
        """The densest stream that fits (as the screen's own fit), ``step`` steps sparser."""
        fitting = [f for f in FRAGMENT_STEPS if QrStream(ur, f).fits(*self.area())]
        if len(fitting) <= step:
            return None
        return QrStream(ur, fitting[-1 - step])

    def area(self) -> tuple[int, int]:
        return self.cols, self.rows - CHROME_ROWS


SCREENS = (
    Screen("80x24 terminal", 80, 24),
    Screen("120x40 terminal", 120, 40),
    Screen("1080p console", 240, 67),
)


def screen_image(art: str, screen: Screen) -> np.ndarray:
    """The terminal's pixels: black half blocks on white, the QR centred in its area."""
    lines = art.split("\n")
    dark = np.zeros((2 * len(lines), max(len(line) for line in lines)), dtype=np.uint8)
    for y, line in enumerate(lines):
        for x, glyph in enumerate(line):
            top, bottom = GLYPHS.get(glyph, (0, 0))
            dark[2 * y, x], dark[2 * y + 1, x] = top, bottom
    modules = np.where(dark == 1, 0, 255).astype(np.uint8)
    pixels = np.kron(modules, np.ones((CELL_H // 2, CELL_W), dtype=np.uint8))
    canvas = np.full((screen.rows * CELL_H, screen.cols * CELL_W), 255, dtype=np.uint8)
    width, height = screen.area()
    top = ((height * CELL_H) - pixels.shape[0]) // 2
    left = ((width * CELL_W) - pixels.shape[1]) // 2
    canvas[top : top + pixels.shape[0], left : left + pixels.shape[1]] = pixels
    return canvas


def in_camera(image: np.ndarray) -> np.ndarray:
    """The screen filling the camera's view (aspect kept, mid-gray around it)."""
    height, width = image.shape
    scale = min(CAMERA[0] / width, CAMERA[1] / height)
    size = (round(width * scale), round(height * scale))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    frame = np.full((CAMERA[1], CAMERA[0]), 96, dtype=np.uint8)
    top, left = (CAMERA[1] - size[1]) // 2, (CAMERA[0] - size[0]) // 2
    frame[top : top + size[1], left : left + size[0]] = resized
    return frame


@dataclass
class Result:
    version: int
    fragment: int
    frames_shown: int
    seconds: float
    readable: float  # share of camera samples in which a QR was read
    complete: bool


def exposed(shown: list[np.ndarray], start: float, frame_s: float) -> np.ndarray:
    """One camera sample: each row band from the frame on screen while it was exposed,
    rows whose exposure spans a frame change blended by time (rolling shutter)."""
    height = shown[0].shape[0]
    rows = np.arange(height)
    begin = start + rows / height * READOUT_S  # when each row's exposure starts
    first = (begin / frame_s).astype(int)
    change = (first + 1) * frame_s  # the next frame change after the row's start
    weight = np.clip((change - begin) / EXPOSURE_S, 0.0, 1.0)  # share of the first frame
    image = np.empty_like(shown[0], dtype=np.float32)
    for index in np.unique(first):
        band = first == index
        current, following = shown[index], shown[min(index + 1, len(shown) - 1)]
        w = weight[band][:, None]
        image[band] = w * current[band] + (1 - w) * following[band]
    return image.astype(np.uint8)


def run(screen: Screen, stream: QrStream, fps: float, limit_cycles: int = 4) -> Result:
    """Show frames at ``fps`` and sample them with the camera until the message is in."""
    optics = Channel(OPTICS)
    receiver = QrReceiver()
    shown: list[np.ndarray] = []
    frame_s = 1 / fps
    max_frames = limit_cycles * stream.parts + 20
    sample, samples, readable = 0, 0, 0
    while True:
        start = CAMERA_PHASE_S + sample / CAMERA_FPS
        end = start + READOUT_S + EXPOSURE_S
        last = int(end / frame_s) + 1
        if last >= max_frames:
            return Result(stream.version, stream.fragment_len, last, end, readable / samples, False)
        while len(shown) <= last:
            shown.append(in_camera(screen_image(stream.next_frame()[1], screen)))
        image = exposed(shown, start, frame_s)
        texts = receiver.feed(optics.transform(image, sample), timestamp=end)
        samples += 1
        readable += bool(texts)
        if receiver.is_complete:
            frames, share = int(end / frame_s) + 1, readable / samples
            return Result(stream.version, stream.fragment_len, frames, end, share, True)
        sample += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fps", default="5,10,15,20,30")
    parser.add_argument("--message", type=int, default=4_700)
    args = parser.parse_args()
    ur = UR("bytes", encode_bytes(os.urandom(args.message)))
    rates = [float(r) for r in args.fps.split(",")]
    print(
        f"Animated QR from the show-QR screen's own frames, sampled by a {CAMERA[0]}x"
        f"{CAMERA[1]} camera at {CAMERA_FPS:g} fps ({EXPOSURE_S * 1000:.0f} ms exposure, "
        f"optics {OPTICS}); message {args.message:,} B; screen default {DEFAULT_FPS:g} fps"
    )
    print(
        f"  {'screen':16} {'QR':>4} {'B/frame':>7} {'fps':>5} {'frames':>7} {'seconds':>8} "
        f"{'KB/s':>6} {'read %':>6}"
    )
    started = time.perf_counter()
    for screen in SCREENS:
        for step in (0, 1):
            for fps in rates:
                stream = screen.stream(ur, step)
                if stream is None:
                    continue
                result = run(screen, stream, fps)
                rate = args.message / result.seconds / 1000 if result.complete else 0.0
                seconds = f"{result.seconds:8.1f}" if result.complete else "  failed"
                print(
                    f"  {screen.name:16} v{result.version:<3} {result.fragment:>7} {fps:>5g} "
                    f"{result.frames_shown:>7} {seconds} {rate:>6.2f} "
                    f"{result.readable * 100:>6.0f}",
                    flush=True,
                )
    print(f"  ({math.ceil(time.perf_counter() - started)} s to run)")


if __name__ == "__main__":
    main()
