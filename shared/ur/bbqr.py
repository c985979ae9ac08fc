"""BBQr ("Better Bitcoin QR", Coinkite): the animated-QR framing COLDCARD Q speaks.

UR is not the only multi-QR format Coldstation meets: COLDCARD Q (and Sparrow, Nunchuk
talking to it) send PSBTs and transactions as BBQr. The format is simple and has no
checksum, so the receiver's discipline is what keeps it safe; this module is that
discipline, with no I/O and no QR imaging.

Each QR holds ``B$`` + encoding + file type + total parts (2 base-36 digits) + part index
(2 base-36 digits), then data (spec: github.com/coinkite/BBQr, BBQr.md):

* encodings: ``H`` upper-case hex, ``2`` RFC 4648 base32 without padding, ``Z`` raw
  deflate (zlib ``wbits=-10``: 1 KiB window, no header) of the whole file, then base32;
* file types: ``P`` PSBT, ``T`` transaction, ``J`` JSON, ``C`` CBOR, ``U`` UTF-8 text,
  ``B`` binary, ``X`` executable, and ``R``/``S``/``E`` (Key Teleport, assigned in
  Coinkite's reference implementation);
* every part but the last has the same length and decodes to whole bytes (hex: even
  length; base32: a multiple of 8 characters); at most 1295 (``ZZ``) parts.

Splitting: the fewest parts that fit the largest allowed QR version (or ``max_chars``),
then, by default, the data spread evenly over them (the spec advises against a small last
"runt" part) and the lowest QR version that holds a part. ``balance=False`` fills every part
but the last to the chosen version's capacity, as Coinkite's reference splitter does.
``Z`` falls back to ``2`` when compression would not make the data smaller, as the spec
recommends. Capacities are QR alphanumeric mode at error-correction level L.

Joining (:class:`BBQrJoiner`): parts in any order, duplicates ignored; a part that is
malformed, belongs to another series (type, encoding, count or part length differ) or
contradicts one already held is refused with :class:`BBQrError` and the joiner keeps what
it had. Decoded and decompressed sizes are capped (10 MiB by default), so a decompression
bomb is refused rather than expanded. The whole ``Z`` file is inflated in one call, so zlib
does not hold a sender to the 1 KiB window (a stream made with a larger one still decodes);
the cap, not the window, bounds memory here.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

HEADER = "B$"
HEADER_LEN = 8
MAX_PARTS = 1295
ENCODINGS = {"H": "hex", "2": "base32", "Z": "zlib-compressed base32"}
FILE_TYPES = {
    "P": "PSBT",
    "T": "transaction",
    "J": "JSON",
    "C": "CBOR",
    "U": "Unicode text",
    "B": "binary",
    "X": "executable",
    "R": "Key Teleport receive",
    "S": "Key Teleport send",
    "E": "Key Teleport PSBT",
}
DEFAULT_MAX_SIZE = 10 * 1024 * 1024
ZLIB_WBITS = -10
#: Alphanumeric characters a QR code holds at error-correction level L, versions 1..40.
QR_ALNUM_CAPACITY_L = (
    25,
    47,
    77,
    114,
    154,
    195,
    224,
    279,
    335,
    395,
    468,
    535,
    619,
    667,
    758,
    854,
    938,
    1046,
    1153,
    1249,
    1352,
    1460,
    1588,
    1704,
    1853,
    1990,
    2132,
    2223,
    2369,
    2520,
    2677,
    2840,
    3009,
    3183,
    3351,
    3537,
    3729,
    3927,
    4087,
    4296,
)
_UNIT = {"H": 2, "2": 8, "Z": 8}
_BASE36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_HEX = re.compile(r"[0-9A-F]*")
_BASE32 = re.compile(r"[A-Z2-7]*")
_BASE32_TAILS = {0, 2, 4, 5, 7}  # characters in a final group that end on a byte boundary


#: The BBQr file type of each UR type Coldstation writes as BBQr too (a COLDCARD Q reads
#: only QR and BBQr): PSBTs as ``P``, journal receipts as binary ``B``, descriptors as text.
FILE_TYPE_FOR_UR = {
    "crypto-psbt": "P",
    "psbt": "P",
    "bytes": "B",
    "crypto-output": "U",
    "output-descriptor": "U",
}


class BBQrError(ValueError):
    """A BBQr part or series that is malformed, inconsistent, or too large."""


# -- encoding -------------------------------------------------------------------------------


def qr_capacity(version: int) -> int:
    """Alphanumeric characters a QR of ``version`` holds at ECC level L."""
    if type(version) is not int or not 1 <= version <= 40:
        raise BBQrError(f"QR version must be 1..40, not {version!r}")
    return QR_ALNUM_CAPACITY_L[version - 1]


def _base36(n: int) -> str:
    return _BASE36[n // 36] + _BASE36[n % 36]


def _compress(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, ZLIB_WBITS)
    return compressor.compress(data) + compressor.flush()


def encode_data(data: bytes, encoding: str) -> tuple[str, str]:
    """(encoding actually used, text): ``Z`` becomes ``2`` if compressing does not help."""
    if encoding not in ENCODINGS:
        raise BBQrError(f"unknown BBQr encoding {encoding!r} (H, 2 or Z)")
    if encoding == "H":
        return "H", data.hex().upper()
    if encoding == "Z":
        compressed = _compress(data)
        if len(compressed) < len(data):
            return "Z", _b32(compressed)
        encoding = "2"
    return encoding, _b32(data)


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=")


# -- splitting --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BBQrSeries:
    """A split file: the QR texts and the QR version that holds each of them."""

    parts: tuple[str, ...]
    encoding: str
    file_type: str
    #: Lowest QR version holding every part (None if ``max_chars`` exceeds version 40).
    version: int | None


def _per_part(length: int, unit: int, count: int) -> int:
    if count == 1:
        return length
    share = -(-length // count)
    return -(-share // unit) * unit


def _min_count(length: int, unit: int, capacity: int, min_split: int, max_split: int) -> int:
    for count in range(min_split, max_split + 1):
        per = _per_part(length, unit, count)
        if per <= capacity and (count == 1 or (count - 1) * per < length):
            return count
    raise BBQrError(
        f"{length} encoded characters do not fit {min_split}..{max_split} parts of at most "
        f"{capacity} characters"
    )


def _capacities(max_chars: int | None, min_version: int, max_version: int) -> list[int]:
    """Payload characters per part for each candidate (one candidate with ``max_chars``)."""
    if max_chars is not None:
        if type(max_chars) is not int or max_chars < HEADER_LEN + 8:
            raise BBQrError(f"max_chars must be an integer of at least {HEADER_LEN + 8}")
        return [max_chars - HEADER_LEN]
    qr_capacity(min_version)  # both must be 1..40; a max below the min lowers the min
    qr_capacity(max_version)
    low = min(min_version, max_version)
    return [qr_capacity(v) - HEADER_LEN for v in range(low, max_version + 1)]


def _version_for(chars: int, min_version: int) -> int | None:
    versions = range(max(1, min(min_version, 40)), 41)
    return next((v for v in versions if qr_capacity(v) >= chars), None)


def _check_split_args(data: bytes, file_type: str, min_split: int, max_split: int) -> None:
    if not isinstance(data, bytes | bytearray):
        raise BBQrError(f"BBQr data must be bytes, not {type(data).__name__}")
    if file_type not in FILE_TYPES:
        raise BBQrError(f"unknown BBQr file type {file_type!r} ({', '.join(FILE_TYPES)})")
    if not (type(min_split) is int and type(max_split) is int):
        raise BBQrError("min_split and max_split must be integers")
    if not 1 <= min_split <= max_split <= MAX_PARTS:
        raise BBQrError(f"need 1 <= min_split <= max_split <= {MAX_PARTS}")


def split_series(
    data: bytes,
    file_type: str,
    encoding: str = "Z",
    *,
    max_chars: int | None = None,
    min_version: int = 5,
    max_version: int = 40,
    min_split: int = 1,
    max_split: int = MAX_PARTS,
    balance: bool = True,
) -> BBQrSeries:
    """Split ``data`` into BBQr texts (see the module docstring for the rules)."""
    _check_split_args(data, file_type, min_split, max_split)
    encoding, text = encode_data(bytes(data), encoding)
    unit = _UNIT[encoding]
    capacities = _capacities(max_chars, min_version, max_version)
    count = _min_count(len(text), unit, max(capacities), min_split, max_split)
    per = _per_part(len(text), unit, count)
    if not balance and count > 1:
        fitting = next(c for c in capacities if c - c % unit >= per)
        per = fitting - fitting % unit
    first_version = min(min_version, max_version) if max_chars is None else 1
    version = _version_for(per + HEADER_LEN, first_version)
    prefix = f"{HEADER}{encoding}{file_type}{_base36(count)}"
    parts = tuple(f"{prefix}{_base36(i)}{text[i * per : (i + 1) * per]}" for i in range(count))
    return BBQrSeries(parts, encoding, file_type, version)


def split(
    data: bytes,
    file_type: str,
    encoding: str = "Z",
    *,
    max_chars: int | None = None,
    min_version: int = 5,
    max_version: int = 40,
    min_split: int = 1,
    max_split: int = MAX_PARTS,
    balance: bool = True,
) -> list[str]:
    """The QR texts of :func:`split_series`."""
    series = split_series(
        data,
        file_type,
        encoding,
        max_chars=max_chars,
        min_version=min_version,
        max_version=max_version,
        min_split=min_split,
        max_split=max_split,
        balance=balance,
    )
    return list(series.parts)


# -- parsing one part -------------------------------------------------------------------------


@dataclass(frozen=True)
class BBQrPart:
    """One scanned QR: its header fields and (still encoded) payload."""

    encoding: str
    file_type: str
    total: int
    index: int
    payload: str

    @property
    def series(self) -> tuple[str, str, int]:
        return self.encoding, self.file_type, self.total


def is_bbqr(text: str) -> bool:
    """Whether ``text`` claims to be a BBQr part (to route a scan: BBQr, UR or bare)."""
    return isinstance(text, str) and text.lstrip().startswith(HEADER)


def _base36_field(text: str, what: str) -> int:
    if len(text) != 2 or any(c not in _BASE36 for c in text):
        raise BBQrError(f"BBQr {what} {text!r} is not two base-36 digits (0-9, A-Z)")
    return int(text, 36)


def _check_payload(payload: str, encoding: str) -> None:
    if encoding == "H":
        if not _HEX.fullmatch(payload):
            raise BBQrError("BBQr hex part has characters other than 0-9 and A-F")
        if len(payload) % 2:
            raise BBQrError("BBQr hex part has an odd number of digits")
        return
    if not _BASE32.fullmatch(payload):
        raise BBQrError("BBQr base32 part has characters other than A-Z and 2-7")
    if len(payload) % 8 not in _BASE32_TAILS:
        raise BBQrError(f"BBQr base32 part of {len(payload)} characters is not whole bytes")


def parse_part(text: str) -> BBQrPart:
    """Check one QR's text and split it into header fields and payload."""
    if not isinstance(text, str):
        raise BBQrError(f"BBQr part must be text, not {type(text).__name__}")
    text = text.strip()
    if not text.startswith(HEADER):
        raise BBQrError("not a BBQr part: it does not start with 'B$'")
    if len(text) < HEADER_LEN:
        raise BBQrError(f"BBQr header is {len(text)} characters, expected {HEADER_LEN}")
    encoding, file_type = text[2], text[3]
    if encoding not in ENCODINGS:
        raise BBQrError(f"unknown BBQr encoding {encoding!r} (H, 2 or Z)")
    if file_type not in FILE_TYPES:
        raise BBQrError(f"unknown BBQr file type {file_type!r}")
    total = _base36_field(text[4:6], "part count")
    index = _base36_field(text[6:8], "part index")
    if total == 0:
        raise BBQrError("BBQr part count is 0")
    if index >= total:
        raise BBQrError(f"BBQr part index {index} is out of range for {total} parts")
    payload = text[HEADER_LEN:].upper()
    _check_payload(payload, encoding)
    return BBQrPart(encoding, file_type, total, index, payload)


def _decode_payload(payload: str, encoding: str) -> bytes:
    try:
        if encoding == "H":
            return bytes.fromhex(payload)
        return base64.b32decode(payload + "=" * (-len(payload) % 8))
    except (ValueError, binascii.Error) as exc:
        raise BBQrError(f"BBQr payload does not decode: {exc}") from None


def _decoded_size(payload: str, encoding: str) -> int:
    return len(payload) // 2 if encoding == "H" else len(payload) * 5 // 8


def _decompress(data: bytes, max_size: int) -> bytes:
    inflater = zlib.decompressobj(ZLIB_WBITS)
    try:
        out = inflater.decompress(data, max_size + 1)
    except zlib.error as exc:
        raise BBQrError(f"BBQr Z data does not decompress (wbits=-10): {exc}") from None
    if len(out) > max_size:
        raise BBQrError(f"BBQr Z data decompresses to more than {max_size} bytes")
    if not inflater.eof:
        raise BBQrError("BBQr Z data is truncated (compressed stream does not end)")
    if inflater.unused_data:
        raise BBQrError(f"{len(inflater.unused_data)} bytes after the BBQr compressed stream")
    return out


# -- joining --------------------------------------------------------------------------------


class BBQrJoiner:
    """Collect the parts of one BBQr series, in any order, and decode it when complete."""

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        if type(max_size) is not int or max_size < 1:
            raise BBQrError("max_size must be a positive integer")
        self.max_size = max_size
        self.reset()

    def reset(self) -> None:
        """Forget every part (to start a new series)."""
        self._series: tuple[str, str, int] | None = None
        self._payloads: dict[int, str] = {}
        self._data: dict[int, bytes] = {}
        self._full_length: int | None = None  # characters in every part but the last
        self._held = 0  # decoded bytes held
        self._result: tuple[str, bytes] | None = None

    # -- state ---------------------------------------------------------------------------

    @property
    def total(self) -> int | None:
        return self._series[2] if self._series else None

    @property
    def file_type(self) -> str | None:
        return self._series[1] if self._series else None

    @property
    def encoding(self) -> str | None:
        return self._series[0] if self._series else None

    @property
    def received(self) -> int:
        return len(self._payloads)

    @property
    def missing(self) -> list[int]:
        return [i for i in range(self.total or 0) if i not in self._payloads]

    @property
    def complete(self) -> bool:
        return self._result is not None

    def result(self) -> tuple[str, bytes]:
        """(file type, data) of the completed series."""
        if self._result is None:
            raise BBQrError(f"BBQr series incomplete: missing parts {self.missing[:10]}")
        return self._result

    # -- adding parts --------------------------------------------------------------------

    def add(self, text: str) -> tuple[str, bytes] | None:
        """Take one scanned QR; (file type, data) once the series is complete, else None.

        A bad part raises BBQrError and leaves the joiner as it was, except when the
        complete series fails to decompress: then the joiner is reset.
        """
        part = parse_part(text)
        if self._series is not None and part.series != self._series:
            raise BBQrError(
                f"part is from another series ({part.encoding}{part.file_type}, "
                f"{part.total} parts) than the one being received "
                f"({self._series[0]}{self._series[1]}, {self._series[2]} parts)"
            )
        held = self._payloads.get(part.index)
        if held is not None:
            if held != part.payload:
                raise BBQrError(f"part {part.index} differs from the copy already received")
            return self._result
        self._check_length(part)
        self._check_budget(part)
        data = _decode_payload(part.payload, part.encoding)
        self._series = part.series
        self._payloads[part.index] = part.payload
        self._data[part.index] = data
        self._held += len(data)
        if part.index != part.total - 1:
            self._full_length = len(part.payload)
        if len(self._payloads) == part.total:
            self._result = self._finish(part)
        return self._result

    def _check_length(self, part: BBQrPart) -> None:
        """Every part but the last has one length, in whole units; the last is no longer."""
        last = part.total - 1
        if part.total > 1 and not part.payload:
            raise BBQrError(f"part {part.index} of a {part.total}-part series is empty")
        if part.index != last and len(part.payload) % _UNIT[part.encoding]:
            raise BBQrError(f"part {part.index} is not a whole number of encoding units")
        full = self._full_length
        if part.index != last:
            if full is not None and len(part.payload) != full:
                raise BBQrError(
                    f"part {part.index} has {len(part.payload)} characters, the other "
                    f"parts have {full}"
                )
            tail = self._payloads.get(last)
            if tail is not None and len(tail) > len(part.payload):
                raise BBQrError(f"part {part.index} is shorter than the last part")
        elif full is not None and len(part.payload) > full:
            raise BBQrError(f"last part has {len(part.payload)} characters, more than {full}")

    def _check_budget(self, part: BBQrPart) -> None:
        if self._held + _decoded_size(part.payload, part.encoding) > self.max_size:
            raise BBQrError(f"BBQr series is larger than the {self.max_size}-byte limit")

    def _finish(self, part: BBQrPart) -> tuple[str, bytes]:
        data = b"".join(self._data[i] for i in range(part.total))
        if part.encoding == "Z":
            try:
                data = _decompress(data, self.max_size)
            except BBQrError:
                self.reset()
                raise
        return part.file_type, data


def join(parts: Iterable[str], max_size: int = DEFAULT_MAX_SIZE) -> tuple[str, bytes]:
    """(file type, data) from a complete set of parts (any order, duplicates allowed)."""
    joiner = BBQrJoiner(max_size)
    for text in parts:
        joiner.add(text)
    return joiner.result()
