"""Debian's headless Chromium, driven by Selenium through Debian's chromedriver: pages as
people see and print them. Nothing is downloaded (Selenium's own driver manager is never
reached: both paths are given). Tests that need it skip, saying why, where either is
missing (``make test`` installs both: the Makefile's APT_PACKAGES)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
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
def chromium(width: int, height: int = 900) -> Iterator[Any]:
    """A headless Chromium window of ``width`` x ``height`` CSS pixels."""
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
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
