"""Where the official test vectors live: ``$COLDSTATION_VECTORS`` or ``../shared/vectors``.

They are read in place and never copied into the repository; tests that need them skip,
saying why, when the folder is absent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

_DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "vectors"


def vectors_dir() -> Path:
    return Path(os.environ.get("COLDSTATION_VECTORS", _DEFAULT))


def load_json(relative: str) -> Any:
    """Load one vector file, or skip the calling test with a clear reason."""
    path = vectors_dir() / relative
    if not path.is_file():
        pytest.skip(f"official vectors not found at {path} (set COLDSTATION_VECTORS)")
    return json.loads(path.read_text())


def load_json_or_empty(relative: str) -> Any:
    """For parametrisation at collection time: None when the file is absent."""
    path = vectors_dir() / relative
    return json.loads(path.read_text()) if path.is_file() else None


def cases(relative: str, section: str, ident: str = "description") -> list[Any]:
    """pytest params for one section of a vector file; one skipped param when absent."""
    data = load_json_or_empty(relative)
    if data is None:
        where = vectors_dir() / relative
        reason = f"official vectors not found at {where} (set COLDSTATION_VECTORS)"
        return [pytest.param(None, marks=pytest.mark.skip(reason=reason), id="vectors-absent")]
    entries = data[section]
    return [
        pytest.param(
            entry,
            id=f"{section}[{i}]"
            + (f" {entry[ident][:60]}" if isinstance(entry, dict) and ident in entry else ""),
        )
        for i, entry in enumerate(entries)
    ]
