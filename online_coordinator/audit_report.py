"""The audit replay of a station's bundle against this coordinator's evidence (the web's
report page, issue 19).

An auditor uploads what the station exported (``journal export`` / ``audit-bundle``): the
bundle folder packed as a tar or zip archive, or the bare journal export. It is unpacked into
a private temporary folder by this module, not by ``extractall``: plain files and folders
only (no link, device or pipe is ever made, so no filter has to be trusted: Python
3.11.7's ``data`` filter can be walked past with a chain of symlinks, CVE-2025-4517), no
absolute name or ``..``, each name written once, encrypted or exotic zip members refused,
and the member count (read from a zip's end record before its directory is parsed) and
the bytes actually written bounded as they grow, so no archive can fill the disk or the
memory. Then it is replayed
exactly as ``coldstation-audit replay --journal BUNDLE --coordinator-export FILE`` would,
with the coordinator's evidence taken from this store as ``evidence.json`` exports it.

This is a quick look for the team. The audit of record is the one auditors run on their
own machine from the exported files: a report made by the server under audit proves
nothing about that server.
"""

from __future__ import annotations

import io
import lzma
import tarfile
import tempfile
import time
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import IO

from online_coordinator.audit_files import read_bundle, read_coordinator
from online_coordinator.evidence import export_evidence
from online_coordinator.exit_codes import CommandError
from online_coordinator.store import Store
from shared.audit.evidence import EvidenceError
from shared.audit.model import Report
from shared.audit.replay import replay

#: Bounds on what an uploaded archive may unpack to.
MAX_MEMBERS = 250_000
MAX_UNPACKED_BYTES = 2 * 1024**3
BUNDLE_JOURNAL = "journal.cbor"
ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)


class UploadError(ValueError):
    """An uploaded bundle that cannot be replayed (one line, naming what is wrong)."""


def replay_upload(store: Store, name: str, data: bytes) -> tuple[Report, dict[str, str]]:
    """The report of the uploaded bundle ``data`` (file ``name``) against this store's
    evidence, and the inputs the report names."""
    with tempfile.TemporaryDirectory(prefix="coldstation-audit-") as folder:
        root = Path(folder)
        try:
            bundle = unpack(data, root / "bundle")
            evidence = root / "coordinator-evidence.json"
            evidence.write_bytes(export_evidence(store))
            report = replay([read_bundle(bundle)], read_coordinator(evidence))
        except (CommandError, EvidenceError, UploadError) as exc:  # of files never named
            shown = str(exc).replace(f"{root}/bundle/", "").replace(str(root), name)
            raise UploadError(shown) from None
    inputs = {
        "bundle": f"{name} (uploaded, {len(data)} bytes)",
        "coordinator evidence": "this coordinator's store, at the time of the replay",
        "chain": "not checked (run coldstation-audit replay --chain)",
        "generated": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "made by": "the coordinator's web page: a quick look, not the audit of record",
    }
    return report, inputs


def unpack(data: bytes, into: Path) -> Path:
    """The bundle folder (or bare journal export) in ``data``, written under ``into``."""
    into.mkdir(mode=0o700)
    if _is_zip(data):
        _unzip(data, into)
    elif _is_tar(data):
        _untar(data, into)
    else:  # a bare journal export: the replay says policies and transcripts are absent
        path = into / BUNDLE_JOURNAL
        path.write_bytes(data)
        return path
    return _bundle_root(into)


class _Unpacked:
    """Where each member goes, and how much has gone: plain files and folders only (a
    bundle holds no link, device or pipe), each name inside the folder, each written once,
    the count and the bytes written bounded as they grow."""

    def __init__(self, into: Path) -> None:
        self.into, self.members, self.written = into, 0, 0

    def place(self, name: str, folder: bool) -> Path:
        self.members += 1
        if self.members > MAX_MEMBERS:
            raise UploadError(f"the archive holds more than {MAX_MEMBERS} files")
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts or "\\" in name or "\x00" in name:
            raise UploadError(f"the archive names {name[:120]!r}: refused")
        target = self.into.joinpath(*[p for p in path.parts if p not in ("", ".")])
        if folder:
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def write(self, target: Path, source: IO[bytes]) -> None:
        with target.open("xb") as out:  # a name given twice is refused, never overwritten
            while chunk := source.read(1 << 20):
                self.written += len(chunk)
                if self.written > MAX_UNPACKED_BYTES:
                    raise UploadError(f"the archive unpacks to over {MAX_UNPACKED_BYTES} bytes")
                out.write(chunk)


def _is_tar(data: bytes) -> bool:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*"):
            return True
    except (tarfile.TarError, EOFError, OSError):
        return False


def _untar(data: bytes, into: Path) -> None:
    unpacked = _Unpacked(into)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            for member in archive:  # one header at a time: the count is checked as it grows
                if not (member.isfile() or member.isdir()):
                    raise UploadError(
                        f"the archive holds {member.name[:120]!r}, which is neither a file nor "
                        "a folder: refused"
                    )
                target = unpacked.place(member.name, member.isdir())
                source = archive.extractfile(member)
                if source is not None:
                    unpacked.write(target, source)
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as exc:
        raise UploadError(f"the tar archive does not unpack: {exc}") from None


def _is_zip(data: bytes) -> bool:
    return data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06"


def _unzip(data: bytes, into: Path) -> None:
    entries = _zip_entries(data)
    if entries > MAX_MEMBERS:  # before zipfile reads its whole central directory
        raise UploadError(f"the zip archive lists {entries} files, over the {MAX_MEMBERS} limit")
    unpacked = _Unpacked(into)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.infolist():
                if member.flag_bits & 0x1:
                    raise UploadError(f"the zip archive encrypts {member.filename[:120]!r}")
                if member.compress_type not in ZIP_METHODS:
                    raise UploadError(
                        f"the zip archive compresses {member.filename[:120]!r} with method "
                        f"{member.compress_type}: store, deflate, bzip2 or lzma only"
                    )
                target = unpacked.place(member.filename, member.is_dir())
                if not member.is_dir():
                    with archive.open(member) as source:
                        unpacked.write(target, source)
    except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError) as exc:
        raise UploadError(f"the zip archive does not unpack: {exc}") from None
    except (RuntimeError, NotImplementedError, ValueError) as exc:  # zipfile's other refusals
        if isinstance(exc, UploadError):
            raise
        raise UploadError(f"the zip archive does not unpack: {exc}") from None


def _zip_entries(data: bytes) -> int:
    """The entry count the zip's end record declares (zip64 too), read before zipfile
    builds an object per entry; the end record not found: 0 (zipfile then refuses it)."""
    at = data.rfind(b"PK\x05\x06", max(0, len(data) - 65_557))
    if at < 0 or at + 22 > len(data):
        return 0
    entries = int.from_bytes(data[at + 10 : at + 12], "little")
    locator = at - 20
    if entries == 0xFFFF and locator >= 0 and data[locator : locator + 4] == b"PK\x06\x07":
        record = int.from_bytes(data[locator + 8 : locator + 16], "little")
        if data[record : record + 4] == b"PK\x06\x06":
            entries = int.from_bytes(data[record + 32 : record + 40], "little")
    return entries


def _bundle_root(into: Path) -> Path:
    """The unpacked folder holding ``journal.cbor``: the archive's root, or its one folder."""
    if (into / BUNDLE_JOURNAL).is_file():
        return into
    folders = [p for p in into.iterdir() if p.is_dir()]
    if len(folders) == 1 and (folders[0] / BUNDLE_JOURNAL).is_file():
        return folders[0]
    raise UploadError(
        f"the archive holds no {BUNDLE_JOURNAL} at its root or in its one folder: pack the "
        "bundle folder the station exported"
    )
