"""The cold-station image tests (issue 8).

Tests marked ``image`` build the OS image (as root, minutes each) and boot it under
``qemu-system-x86_64``; they run only with ``COLDSTATION_IMAGE_TESTS=1`` (``make
test-image``), so ``make test`` does not build images. The other tests here (the
self-check against fake /sys trees, the module and manifest helpers) always run.

Environment:
  COLDSTATION_IMAGE_TESTS=1     run the ``image`` tests
  COLDSTATION_IMAGE_DIR=DIR     use this finished build (its manifest.json) instead of
                                building one; COLDSTATION_IMAGE_DIR_B likewise for the
                                second build of the reproducibility test
  COLDSTATION_IMAGE_WORK=DIR    where the test builds go (default: pytest's tmp dir)
  COLDSTATION_QEMU_ACCEL        tcg (default: software emulation) or kvm
  COLDSTATION_QEMU_SMP          guest CPUs (default 1)
  COLDSTATION_BOOT_TIMEOUT      seconds per boot (default 1200)
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "image-build" / "build.sh"
ENABLED = os.environ.get("COLDSTATION_IMAGE_TESTS") == "1"
TIMINGS: dict[str, float] = {}


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "image: builds and boots the cold-station OS image (root, qemu, minutes); "
        "runs only with COLDSTATION_IMAGE_TESTS=1 (make test-image)",
    )


def pytest_collection_modifyitems(config, items):
    if ENABLED:
        return
    skip = pytest.mark.skip(
        reason="image test: set COLDSTATION_IMAGE_TESTS=1 (make test-image) "
        "to build and boot the OS image; needs root, debootstrap, qemu"
    )
    for item in items:
        if item.get_closest_marker("image") is not None:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.section("cold-station image timings")
        for name, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{name}: {seconds:.0f} s")


@pytest.fixture(scope="session")
def image_timings() -> dict[str, float]:
    """Name -> seconds, printed at the end of the run (builds, boots)."""
    return TIMINGS


def _work(tmp_path_factory) -> Path:
    base = os.environ.get("COLDSTATION_IMAGE_WORK")
    if base:
        Path(base).mkdir(parents=True, exist_ok=True)
        return Path(base)
    return tmp_path_factory.mktemp("image")


def build_image(out: Path, name: str) -> Path:
    """Run image-build/build.sh into ``out``; the build log is out/build.log."""
    if os.geteuid() != 0:
        pytest.fail("the image build needs root (debootstrap, chroot, mounts)")
    started = time.monotonic()
    env = dict(os.environ, COLDSTATION_IMAGE_OUT=str(out))
    done = subprocess.run(
        ["bash", str(BUILD)], env=env, capture_output=True, text=True, timeout=3 * 3600, check=False
    )
    TIMINGS[name] = time.monotonic() - started
    if done.returncode != 0:
        pytest.fail(
            f"image build failed ({done.returncode}):\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}"
        )
    return out


def _built(variable: str, tmp_path_factory, subdir: str, name: str) -> Path:
    given = os.environ.get(variable)
    if given:
        if not (Path(given) / "manifest.json").is_file():
            pytest.fail(f"{variable}={given} has no manifest.json")
        return Path(given)
    return build_image(_work(tmp_path_factory) / subdir, name)


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    """A finished build: coldstation.img, filesystem.squashfs, rootfs.tar.zst, manifest."""
    return _built("COLDSTATION_IMAGE_DIR", tmp_path_factory, "build-a", "build 1")


@pytest.fixture(scope="session")
def second_image_dir(image_dir, tmp_path_factory) -> Path:
    """A second build of the same checkout, right after the first (reproducibility)."""
    return _built("COLDSTATION_IMAGE_DIR_B", tmp_path_factory, "build-b", "build 2")


@pytest.fixture(scope="session")
def rootfs(image_dir, tmp_path_factory) -> Path:
    """The image's root filesystem, unpacked from rootfs.tar.zst (owners kept: root)."""
    root = _work(tmp_path_factory) / "rootfs"
    if root.exists():
        subprocess.run(["rm", "-rf", str(root)], check=True)
    root.mkdir(parents=True)
    subprocess.run(
        [
            "tar",
            "--zstd",
            "-xf",
            str(image_dir / "rootfs.tar.zst"),
            "-C",
            str(root),
            "--numeric-owner",
        ],
        check=True,
    )
    return root
