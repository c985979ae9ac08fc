"""The image build script, checked against a clean checkout without building (issue 18:
`make test-image` failed on a fresh clone because `install` wrote into etc/coldstation/,
a folder only the developer's working tree had; git keeps no empty folder)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "image-build" / "build.sh"
_INSTALL = re.compile(
    r'^\s*install\s+(?P<flags>(?:-\S+\s+(?:\S+\s+)?)*)"\$HERE/[^"]+"\s+"\$ROOT/(?P<dest>[^"]+)"'
)


def _folders_a_clean_checkout_has() -> set[str]:
    files = subprocess.run(
        ["git", "ls-files", "image-build/rootfs"], cwd=ROOT, capture_output=True, text=True,
        check=True,
    ).stdout.split()  # fmt: skip
    folders = set()
    for name in files:
        parts = Path(name).relative_to("image-build/rootfs").parts[:-1]
        folders |= {"/".join(parts[: i + 1]) for i in range(len(parts))}
    return folders


def test_every_file_the_script_installs_lands_in_a_folder_that_exists():
    folders = _folders_a_clean_checkout_has()
    lines = SCRIPT.read_text().splitlines()
    # rootfs/ itself is copied folder by folder ($f); the named files are what can miss one
    installs = [m for line in lines if (m := _INSTALL.match(line)) and "$" not in m["dest"]]
    assert installs, "the pattern no longer finds the script's install lines"
    for match in installs:
        parent = str(Path(match["dest"]).parent)
        makes_parent = "-D" in match["flags"].split()
        assert makes_parent or parent in folders, (
            f"build.sh installs $ROOT/{match['dest']} but nothing creates {parent}/ on a "
            "clean checkout: use install -D"
        )


def _name(requirement: str) -> str:
    """A requirement's distribution name, normalised as PEP 503 does."""
    name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_image_lock_pins_every_runtime_dependency():
    """A dependency added to pyproject.toml without regenerating the lock (`wheels.py
    lock`) would be missing from the station: `cryptography` once was."""
    import tomllib

    wanted = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lock = (ROOT / "image-build" / "requirements.lock").read_text()
    pinned = {_name(m) for m in re.findall(r"^([A-Za-z0-9_.-]+)==", lock, re.MULTILINE)}
    missing = sorted({_name(r) for r in wanted} - pinned)
    assert not missing, f"image-build/requirements.lock lacks {missing}: run wheels.py lock"
