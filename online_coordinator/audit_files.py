"""Reading the auditors' inputs from files: a station's bundle folder (or bare journal
export) and the coordinator's evidence, for ``coldstation-audit replay`` and the web's
audit page alike. Every file is size-checked before it is read; a year's bundle holds
some 100,000 transcripts, each read only when its record is replayed."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from online_coordinator.exit_codes import CommandError
from online_coordinator.transport import read_limited
from shared.audit.evidence import (
    ApplianceBundle,
    CoordinatorEvidence,
    open_bundle,
    open_coordinator,
    parse_coordinator,
)
from shared.audit.workers import Workers

#: The coordinator's evidence is one JSON document, read as a stream: a year of 100,000
#: requests is some 0.5 GB of it.
MAX_COORDINATOR_BYTES = 4 * 1024 * 1024 * 1024
MAX_FILE_BYTES = 16 * 1024 * 1024


def _read(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    return read_limited(str(path), limit)


def _folder(path: Path) -> dict[str, bytes]:
    if not path.is_dir():
        return {}
    return {p.name: _read(p) for p in sorted(path.glob("*.cbor")) if p.is_file()}


def _opener(path: Path) -> Callable[[], BinaryIO]:
    """Opens ``path`` afresh for each pass over the journal (its frame, then its entries)."""

    def open_journal() -> BinaryIO:
        try:
            return path.open("rb")
        except OSError as exc:
            raise CommandError(f"{path}: {exc.strerror or exc}") from exc

    return open_journal


def read_bundle(path: Path) -> ApplianceBundle:
    """A bundle folder, or a bare journal export (then policies and transcripts are absent,
    which the replay reports). The journal is read as the replay goes, each transcript when
    its record is replayed."""
    if path.is_file():
        return open_bundle(str(path), _opener(path), {}, (), _no_transcript, journal_name="")
    journal = path / "journal.cbor"
    if not journal.is_file():
        raise CommandError(f"{path}: not an audit bundle (no journal.cbor)")
    transcripts = path / "transcripts"
    names = (
        sorted(p.name for p in transcripts.glob("*.cbor") if p.is_file())
        if transcripts.is_dir()
        else []
    )
    return open_bundle(
        str(path),
        _opener(journal),
        _folder(path / "policies"),
        names,
        _Files(transcripts),
        portable=True,
    )


class _Files:
    """Reads a file of ``folder`` by name, as :func:`read_limited` does (a file over the
    limit is refused before it is read), with no more system calls than needed: a year's
    bundle holds some 100,000 transcripts, each read when its record is replayed."""

    def __init__(self, folder: Path) -> None:
        self.prefix = os.path.join(folder, "")

    def __call__(self, name: str) -> bytes:
        path = self.prefix + name
        try:
            with open(path, "rb") as file:
                if os.fstat(file.fileno()).st_size > MAX_FILE_BYTES:
                    raise CommandError(f"{path}: larger than the {MAX_FILE_BYTES}-byte input limit")
                data = file.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise CommandError(f"{path}: {exc.strerror or exc}") from exc
        if len(data) > MAX_FILE_BYTES:
            raise CommandError(f"{path}: larger than the {MAX_FILE_BYTES}-byte input limit")
        return data


def _no_transcript(name: str) -> bytes:
    raise CommandError(f"no transcript {name}")  # a bare export names no transcript file


def read_coordinator(path: Path, workers: Workers | None = None) -> CoordinatorEvidence:
    """The coordinator's evidence, read as a stream (see
    :func:`shared.audit.evidence.open_coordinator`); from stdin (``-``), read whole."""
    source = str(path)
    if source == "-":
        return parse_coordinator(source, _read(path, MAX_COORDINATOR_BYTES), workers)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CommandError(f"{source}: {exc.strerror or exc}") from exc
    if size > MAX_COORDINATOR_BYTES:
        raise CommandError(f"{source}: larger than the {MAX_COORDINATOR_BYTES}-byte input limit")
    return open_coordinator(source, _opener(path), workers)
