"""The architecture, checked: dependencies point inward.

``shared/`` is the core both programs use; the appliance and the coordinator never import
each other; and the core's pure part does no I/O (no files, processes, sockets, clocks,
cameras or screens) so every rule in it can be tested and replayed byte for byte. The few
``shared/`` modules that are adapters (the camera, the QR screen, the audit's worker
processes and spool) are named here: adding I/O anywhere else fails this test.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = ("appliance", "online_coordinator")
#: Modules that do I/O, and would make the core impure.
IO_MODULES = {"os", "subprocess", "socket", "sqlite3", "pathlib", "shutil", "tempfile",
              "multiprocessing", "concurrent", "threading", "cv2", "http", "urllib",
              "pkcs11", "textual", "sys", "time", "asyncio", "select", "signal"}  # fmt: skip
#: The adapters that live in shared/ because both programs use them, and what they may use.
SHARED_EDGE = {
    "shared/qr/camera.py": {"cv2", "os", "pathlib", "time"},
    "shared/qr/channel.py": {"cv2"},
    "shared/qr/decoders.py": {"cv2"},
    "shared/qr/video.py": {"cv2", "os", "pathlib"},
    "shared/qr/show.py": {"textual"},
    "shared/tui.py": {"textual"},
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
    return any(isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
               and node.func.id == "open"
               for node in ast.walk(ast.parse(path.read_text())))  # fmt: skip


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("program", PROGRAMS)
def test_the_programs_never_import_each_other(program):
    other = next(p for p in PROGRAMS if p != program)
    offenders = [_rel(p) for p in _modules(program) if other in _imports(p)]
    assert not offenders, f"{program} imports {other}: {offenders}"


def test_the_core_imports_neither_program_nor_the_tests():
    offenders = {_rel(p): sorted(_imports(p) & {*PROGRAMS, "tests"})
                 for p in _modules("shared")}  # fmt: skip
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
    sample.write_text("def f():\n    import socket\n    from online_coordinator import x\n"
                      "    return open('f')\n")  # fmt: skip
    assert {"socket", "online_coordinator"} <= _imports(sample)
    assert _calls_open(sample)
