"""The dead-code check that `make test` runs (vulture, configured in pyproject.toml), tried.

`make test` runs vulture over the tree; these tests show the check would see a helper
nobody calls, and that the framework hooks the configuration names (Textual's compose and
on_*, http.server's do_*) do not hide one: a real finding is not drowned in noise.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _vulture(tmp_path: Path, source: str) -> str:
    """vulture's report on one module, with the project's own settings."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["vulture"]
    module = tmp_path / "sample.py"
    module.write_text(source)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "vulture",
            str(module),
            "--min-confidence",
            str(config["min_confidence"]),
            "--ignore-names",
            ",".join(config["ignore_names"]),
            "--ignore-decorators",
            ",".join(config["ignore_decorators"]),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout


def test_a_helper_nobody_calls_is_reported(tmp_path):
    report = _vulture(
        tmp_path,
        "def used():\n    return 1\n\n\ndef forgotten():\n    return 2\n\n\nprint(used())\n",
    )
    assert "unused function 'forgotten'" in report
    assert "'used'" not in report


def test_framework_hooks_are_not_reported_but_a_dead_method_beside_them_is(tmp_path):
    report = _vulture(
        tmp_path,
        "class Screen:\n"
        "    BINDINGS = []\n"
        "    def compose(self):\n        return []\n"
        "    def on_mount(self):\n        pass\n"
        "    def action_back(self):\n        pass\n"
        "    def stale_helper(self):\n        pass\n\n\n"
        "print(Screen())\n",
    )
    assert "stale_helper" in report
    assert not any(name in report for name in ("compose", "on_mount", "action_back", "BINDINGS"))
