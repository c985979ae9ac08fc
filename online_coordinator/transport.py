"""How payloads cross the air gap on the coordinator's side: files, UR text, video, camera.

A *source* is one of

* ``camera:N``: OpenCV device N, scanned live;
* a video file (``.avi``, ``.mp4``, ``.mkv``, ``.mov``): scanned frame by frame;
* a text file of UR parts (``ur:...`` lines, any order, junk lines ignored);
* any other file: the payload itself (a PSBT in binary/base64/hex, a descriptor, a receipt).

Every path ends in the same validated payload bytes (:func:`shared.ur.payload.cbor_to_file`),
so the commands do not care how a payload arrived.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from online_coordinator.exit_codes import CommandError
from shared.psbt import MAX_PSBT_SIZE, Psbt, PsbtError
from shared.ur.bbqr import FILE_TYPE_FOR_UR, BBQrError, BBQrSeries, split_series
from shared.ur.payload import PayloadError, cbor_to_file
from shared.ur.ur import UR, URDecoder, UREncoder

if TYPE_CHECKING:  # OpenCV and numpy load only when a camera or video is used
    from shared.adapters.receiver import ScanProgress

VIDEO_SUFFIXES = frozenset({".avi", ".mp4", ".mkv", ".mov"})
UR_TEXT_PART_BYTES = 200
#: Text encodings (base64, hex) of a payload are at most about twice its binary size.
MAX_INPUT_BYTES = 2 * MAX_PSBT_SIZE + 4096


@dataclass(frozen=True)
class Payload:
    data: bytes
    ur_type: str | None  # None when the file held the payload itself
    how: str  # for the record: "file", "ur text", "video", "camera"


def receive(
    source: str, *, timeout: float = 120.0, expected: Sequence[str] | None = None
) -> Payload:
    """The payload from ``source`` (see the module docstring); errors are CommandError.
    ``expected``: the UR types a camera or video scan accepts; parts of any other type are
    passed over (the station's previous screen, still in view, is not taken for this one)."""
    if source.startswith("camera:"):
        index = source.removeprefix("camera:")
        if not index.isdigit():
            raise CommandError(f"{source}: use camera:N with a device number")
        return _scan(int(index), timeout, "camera", expected)
    if Path(source).suffix.lower() in VIDEO_SUFFIXES:
        return _scan(source, timeout, "video", expected)
    data = read_limited(source)
    if _is_ur_text(data):
        return _ur_text(source, data)
    return Payload(data, None, "file")


def read_limited(source: str, limit: int = MAX_INPUT_BYTES) -> bytes:
    """Read a file or ``-`` (stdin), refusing anything over ``limit`` before reading it all."""
    try:
        if source == "-":
            data = sys.stdin.buffer.read(limit + 1)
        else:
            path = Path(source)
            if path.stat().st_size > limit:
                raise CommandError(f"{source}: larger than the {limit}-byte input limit")
            data = path.read_bytes()
    except OSError as exc:
        raise CommandError(f"{source}: {exc.strerror or exc}") from exc
    if len(data) > limit:
        raise CommandError(f"{source}: larger than the {limit}-byte input limit")
    return data


def _is_ur_text(data: bytes) -> bool:
    """ASCII text with at least one ``ur:`` line (other lines are ignored as junk)."""
    if not data.isascii():
        return False
    return any(line.strip().lower().startswith(b"ur:") for line in data.splitlines())


def _ur_text(source: str, data: bytes) -> Payload:
    decoder = URDecoder()
    for line in data.decode("utf-8", "replace").splitlines():
        if line.strip():
            decoder.receive(line.strip())
        if decoder.is_complete:
            break
    result = decoder.result
    if result is None:
        raise CommandError(f"{source}: the UR parts are incomplete ({decoder.progress})")
    return Payload(_to_file(source, result.type, result.cbor), result.type, "ur text")


def _to_file(source: str, ur_type: str, cbor: bytes) -> bytes:
    try:
        return cbor_to_file(ur_type, cbor)
    except PayloadError as exc:
        raise CommandError(f"{source}: {exc}") from exc


def _scan(
    device: int | str, timeout: float, how: str, expected: Sequence[str] | None = None
) -> Payload:
    from shared.adapters.scan import incomplete_message, scan_source

    live = how == "camera"
    receiver = scan_source(
        device,
        error=CommandError,
        expected_types=None if expected is None else list(expected),
        timeout_s=timeout,
        on_progress=print_progress if live else None,
    )
    result = receiver.result
    if result is None:
        raise CommandError(f"{device}: {incomplete_message(receiver)}")
    return Payload(_to_file(str(device), result.ur_type, result.cbor), result.ur_type, how)


def print_progress(progress: ScanProgress, rejections: dict[str, int]) -> None:
    """A live scan's progress, on stderr (stdout may be the payload)."""
    print(progress, file=sys.stderr)


def ur_parts(
    ur_type: str, cbor: bytes, max_fragment: int = UR_TEXT_PART_BYTES, cycles: float = 1.0
) -> list[str]:
    """UR parts for a text file: one full cycle of fragments (decodable without loss)."""
    return UREncoder(UR(ur_type, cbor), max_fragment).cycle_parts(cycles)


def bbqr_series(ur_type: str, data: bytes, version: int) -> BBQrSeries:
    """A payload file as BBQr parts that each fit a QR of ``version`` (zlib-compressed
    base32, COLDCARD's default); a PSBT given as base64 text is sent as its bytes."""
    file_type = FILE_TYPE_FOR_UR.get(ur_type)
    if file_type is None:
        raise CommandError(f"BBQr carries PSBTs, receipts and descriptors, not ur:{ur_type}")
    if file_type == "P":
        try:
            data = Psbt.from_text(data).serialize()
        except PsbtError as exc:
            raise CommandError(f"not a PSBT: {exc}") from exc
    try:
        return split_series(data, file_type, min_version=version, max_version=version)
    except BBQrError as exc:
        raise CommandError(f"BBQr: {exc}") from exc


def write_bbqr(
    ur_type: str, data: bytes, text_path: Path, video_path: Path | None, preset: str = "fast"
) -> list[Path]:
    """A payload as BBQr parts, one per line in ``text_path``, and as a video (shown three
    times over) when ``video_path`` is given: for a COLDCARD Q cosigner."""
    from shared.qr.presets import preset_by_name

    chosen = preset_by_name(preset)
    series = bbqr_series(ur_type, data, chosen.qr_version())
    text_path.write_text("\n".join(series.parts) + "\n")
    if video_path is None:
        return [text_path]
    from shared.adapters.video import write_bbqr_video

    write_bbqr_video(series.parts, chosen, video_path, cycles=3, error=CommandError)
    return [text_path, video_path]


def write_qr_video(
    ur_type: str, cbor: bytes, path: Path, preset: str = "fast", cycles: float = 3.0
) -> int:
    """An animated-QR video of the payload, as a screen would show it; frames written."""
    from shared.adapters.video import write_ur_video
    from shared.qr.presets import preset_by_name

    chosen = preset_by_name(preset).with_overrides(ur_type=ur_type)
    encoder = UREncoder(UR(ur_type, cbor), chosen.max_fragment_len)
    return write_ur_video(encoder, chosen, path, cycles=cycles, error=CommandError)
