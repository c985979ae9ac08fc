"""The architecture, checked: dependencies point inward.

``shared/`` is the core both programs use; the appliance and the coordinator never import
each other; and the core's pure part does no I/O (no files, processes, sockets, clocks,
cameras or screens) so every rule in it can be tested and replayed byte for byte. The
import graph is checked by import-linter's contracts (``pyproject.toml``, run here on the
real tree and on a copy with a forbidden import added); this file's own AST checks add what
an import graph cannot see (``open()``, and stdlib I/O such as ``os`` and ``time``). The few
``shared/`` modules that may do I/O (``shared/adapters/``, ``shared/ui/``, the audit's
worker processes and spool) are named here: adding I/O anywhere else fails this test.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("shared", "appliance", "online_coordinator")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PROGRAMS = ("appliance", "online_coordinator")
#: Modules that do I/O, and would make the core impure.
IO_MODULES = {
    "os",
    "subprocess",
    "socket",
    "sqlite3",
    "pathlib",
    "shutil",
    "tempfile",
    "multiprocessing",
    "concurrent",
    "threading",
    "cv2",
    "http",
    "urllib",
    "pkcs11",
    "textual",
    "sys",
    "time",
    "asyncio",
    "select",
    "signal",
}
#: The adapters that live in shared/ because both programs use them, and what they may use.
SHARED_EDGE = {
    "shared/adapters/camera.py": {"cv2", "os", "pathlib", "time"},
    "shared/adapters/console.py": {"os", "sys", "time"},  # ProgressLine: at most once a second
    "shared/adapters/channel.py": {"cv2"},
    "shared/adapters/decoders.py": {"cv2"},
    "shared/adapters/scan.py": {"time"},
    "shared/adapters/video.py": {"cv2", "os", "pathlib"},
    "shared/ui/show_qr.py": {"textual"},
    "shared/ui/widgets.py": {"textual"},
    "shared/audit/workers.py": {"concurrent", "multiprocessing"},
    "shared/audit/spool.py": {"tempfile"},
    "shared/audit/report.py": {"time"},  # the report's "generated at" line
}


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """Top-level names of every absolute import in the file (inside functions too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _calls_open(path: Path) -> bool:
    return any(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open"
        for node in ast.walk(ast.parse(path.read_text()))
    )


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("program", PROGRAMS)
def test_the_programs_never_import_each_other(program):
    other = next(p for p in PROGRAMS if p != program)
    offenders = [_rel(p) for p in _modules(program) if other in _imports(p)]
    assert not offenders, f"{program} imports {other}: {offenders}"


def test_the_core_imports_neither_program_nor_the_tests():
    offenders = {_rel(p): sorted(_imports(p) & {*PROGRAMS, "tests"}) for p in _modules("shared")}
    assert not {k: v for k, v in offenders.items() if v}


def test_the_pure_core_does_no_io():
    impure = {}
    for path in _modules("shared"):
        allowed = SHARED_EDGE.get(_rel(path), set())
        used = (_imports(path) & IO_MODULES) - allowed
        if used or (_calls_open(path) and _rel(path) not in SHARED_EDGE):
            impure[_rel(path)] = sorted(used) or ["open()"]
    assert not impure, f"I/O in shared/'s pure core (move it to an adapter): {impure}"


def test_every_named_adapter_exists():
    """A stale allowance would let I/O back in under an old name."""
    assert [name for name in SHARED_EDGE if not (ROOT / name).exists()] == []


def test_the_checks_see_an_offender(tmp_path):
    """The detectors themselves: an import inside a function and a bare open() are found."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def f():\n    import socket\n    from online_coordinator import x\n    return open('f')\n"
    )
    assert {"socket", "online_coordinator"} <= _imports(sample)
    assert _calls_open(sample)


# -- the import contracts (import-linter) ----------------------------------------------------


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports over the packages in ``tree``, importable from there and nowhere else."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [str(LINT_IMPORTS), "--no-cache", "--config", "pyproject.toml"]
    return subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, timeout=120)


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {contract["id"]: contract for contract in config["contracts"]}


def test_the_import_contracts_hold():
    run = _lint_imports(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_shared_module_is_pure_core_or_a_named_edge():
    """A new module of shared/ is checked as pure core unless it joins the adapters or UI."""
    children = {
        f"shared.{path.stem}"
        for path in (ROOT / "shared").iterdir()
        if (path.suffix == ".py" and path.stem != "__init__") or (path / "__init__.py").is_file()
    }
    core = set(_contracts()["pure-core"]["source_modules"])
    assert children - {"shared.adapters", "shared.ui"} == core


@pytest.mark.parametrize(
    ("module", "line", "contract", "offence"),
    [
        ("shared/psbt/model.py", "import cv2", "pure-core", "shared.psbt.model -> cv2"),
        (
            "shared/review.py",
            "from shared.ui import widgets",
            "pure-core",
            "shared.review -> shared.ui.widgets",
        ),
        (
            "online_coordinator/store.py",
            "from online_coordinator.commands import common",
            "coordinator-domain",
            "online_coordinator.store -> online_coordinator.commands.common",
        ),
        (
            "appliance/hsm.py",
            "from appliance.tui import engine",
            "appliance-domain",
            "appliance.hsm -> appliance.tui.engine",
        ),
        (
            "appliance/hsm.py",
            "import online_coordinator",
            "programs-independent",
            "appliance.hsm -> online_coordinator",
        ),
    ],
)
def test_a_forbidden_import_breaks_its_contract(tmp_path, module, line, contract, offence):
    """The contracts are not vacuous: one forbidden line in a copy of the tree breaks them
    (the offence named is the added line, so the copy is what was checked)."""
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with (tmp_path / module).open("a") as source:
        source.write(f"\n{line}  # added by the test\n")
    run = _lint_imports(tmp_path)
    assert run.returncode == 1, run.stdout
    broken = run.stdout.split("Broken contracts")[1]
    assert _contracts()[contract]["name"] in " ".join(broken.split())
    assert offence in run.stdout
