"""Debian's headless Chromium, driven by Selenium through Debian's chromedriver: pages as
people see and print them. Nothing is downloaded (Selenium's own driver manager is never
reached: both paths are given). Tests that need it skip, saying why, where either is
missing (``make test`` installs both: the Makefile's APT_PACKAGES)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def require_chromium() -> None:
    """Skip the calling test, naming what is missing, unless both programs are here."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    if missing:
        pytest.skip(f"headless browser tests need Debian's chromium and chromium-driver: {missing}")


@contextmanager
def chromium(width: int, height: int = 900, camera: Path | None = None) -> Iterator[Any]:
    """A headless Chromium window of ``width`` x ``height`` CSS pixels; with ``camera``,
    its webcam is Chromium's fake capture device playing that Y4M file in a loop (and the
    page's camera permission is granted)."""
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    if camera is not None:
        options.add_argument("--use-fake-device-for-media-stream")
        options.add_argument("--use-fake-ui-for-media-stream")
        options.add_argument(f"--use-file-for-fake-video-capture={camera}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def qr_y4m(texts: list[str], path: Path, *, size: tuple[int, int] = (640, 480)) -> Path:
    """A Y4M video (what Chromium's fake camera plays) of each text as a QR code, black on
    white, 4 pixels a module, centred, one text per frame at 5 frames a second."""
    import numpy as np

    from shared.qr.frames import add_quiet_zone, qr_matrix, version_for

    width, height = size
    version = version_for(max(len(t) for t in texts))
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F5:1 Ip A1:1 C420jpeg\n".encode())
        for text in texts:
            modules = add_quiet_zone(qr_matrix(text, version))
            image = np.kron(np.where(modules, 16, 235).astype(np.uint8), np.ones((4, 4), np.uint8))
            luma = np.full((height, width), 235, np.uint8)
            top, left = (height - image.shape[0]) // 2, (width - image.shape[1]) // 2
            luma[top : top + image.shape[0], left : left + image.shape[1]] = image
            chroma = np.full((height // 2) * (width // 2), 128, np.uint8).tobytes()
            out.write(b"FRAME\n" + luma.tobytes() + chroma + chroma)
    return path
