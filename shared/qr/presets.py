"""Transport presets: how many payload bytes per QR frame, how fast, how big the modules.

Why presets: the sender cannot see the receiver's camera, so the operator picks one of
two known-good settings (DESIGN 7) and adjusts it if needed (:meth:`Preset.with_overrides`):

* ``fast``: phones and desktop webcams: 800 bytes of payload per part at 20 fps, 5-pixel
  modules at 720p, QR mask fixed so the sender renders a frame in about 17 ms.
* ``robust``: weak or fixed-focus cameras: 60 bytes per part at 3 fps, 13-pixel modules.

Measured with ``tests/bench/qr_render_bench.py presets`` at 720p, 100 frames per cell,
decode rate with zxing-cpp (pyzbar as fallback changed no cell)::

    fragment ECC ver  module | moderate  +scale 0.7 | blur 2 scale 0.7 | heavy
      400 B   L   17    7 px |   100 %     100 %    |      100 %       |   0 %
      600 B   L   21    6 px |   100 %     100 %    |       11 %       |   0 %
      800 B   L   24    5 px |   100 %     100 %    |        0 %       |   0 %
       30 B   L    6   14 px |   100 %     100 %    |      100 %       | 100 %
       60 B   L    7   13 px |   100 %     100 %    |      100 %       | 100 %
       60 B   M    8   12 px |   100 %     100 %    |      100 %       |  91 %
       80 B   M    9   11 px |   100 %     100 %    |      100 %       |  43 %
      120 B   L    9   11 px |   100 %     100 %    |      100 %       |  22 %

    moderate = blur=1.0,noise=4,tilt=5     heavy = blur=3,noise=8,tilt=15,scale=0.6,glare=0.3

``fast`` is sized by throughput (``tests/bench/qr_bench.py``): the issue's target is 10 KB/s
effective at 10 % frame loss. End to end through the simulator (moderate optics, 10 % loss,
35 KB payload, Coldstation's fountain modes): 400 B at 10 fps gives 3.3 KB/s, 800 B at
15 fps 10.3 KB/s, 800 B at 20 fps 13.7 KB/s (12.1 KB/s with 20 % blended captures and
glare), 1000 B at 15 fps 13.5 KB/s. 800 B / 20 fps keeps a margin with a version (24) that
still decodes every moderate-channel frame; a best-mask render (81 ms) could not keep 20
fps on one core, mask 0 (17 ms) can, with the same decode results. For a softer or farther
camera, override toward 400 B / 10 fps (``with_overrides``, ``--max-fragment``, ``--fps``),
or use ``robust``. For weak cameras module size matters more than ECC: 60 B at ECC L
(version 7) beats 60 B at ECC M (version 8), so ``robust`` stays at ECC L (DESIGN 3).

Versions are derived from the fragment length for the worst-case UR part text (see
:func:`part_text_len`), so every part of a stream, however long it runs, fits the same
QR version.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from shared.qr.frames import CANVAS_720P, FrameRenderer, module_size_for, normalize_ecc, version_for

DEFAULT_UR_TYPE = "crypto-output"
"""Longest type name Coldstation writes (``crypto-psbt`` is 2 characters shorter)."""


def part_text_len(fragment_len: int, ur_type: str = DEFAULT_UR_TYPE) -> int:
    """Longest text of a multi-part UR carrying ``fragment_len`` bytes per fragment.

    ``ur:<type>/<seqNum>-<seqLen>/<bytewords>``: both numbers up to 2**32-1 (10 digits);
    the bytewords (2 letters a byte, minimal style) carry the CBOR part
    ``[seqNum, seqLen, messageLen, checksum, fragment]`` (at most 24 bytes besides the
    fragment) and a 4-byte CRC32 (BCR-2020-005, BCR-2024-001).
    """
    if fragment_len < 1:
        raise ValueError(f"fragment length must be >= 1 byte, got {fragment_len}")
    prefix = len("ur:") + len(ur_type) + len("/") + 10 + len("-") + 10 + len("/")
    return prefix + 2 * (24 + fragment_len + 4)


@dataclass(frozen=True)
class Preset:
    """QR transport settings. ``version``/``module_size`` None: derived (see methods).

    ``mask`` None lets the encoder pick the best QR mask (the standard's way); a fixed mask
    renders about 3.5 times faster (a fast-preset frame: 45 ms vs 12 ms) for a sender that
    cannot keep up. Measured near the fast preset's limit, 400 distinct parts: best mask
    0 failures, mask 0 one failure; lost frames are what the fountain code absorbs.
    """

    name: str
    max_fragment_len: int
    fps: float
    module_size: int | None = None
    ecc: str = "L"
    version: int | None = None
    ur_type: str = DEFAULT_UR_TYPE
    mask: int | None = None

    def __post_init__(self) -> None:
        if self.max_fragment_len < 1:
            raise ValueError(f"preset {self.name}: max_fragment_len must be >= 1")
        if not 0 < self.fps <= 60:
            raise ValueError(f"preset {self.name}: fps must be in (0, 60], got {self.fps}")
        if self.module_size is not None and self.module_size < 1:
            raise ValueError(f"preset {self.name}: module_size must be >= 1")
        object.__setattr__(self, "ecc", normalize_ecc(self.ecc))
        needed = self.min_version()
        if self.version is not None and self.version < needed:
            raise ValueError(
                f"preset {self.name}: version {self.version} cannot hold "
                f"{self.max_fragment_len}-byte fragments (needs {needed})"
            )

    def min_version(self) -> int:
        """Smallest version that holds the longest part text for this fragment length."""
        return version_for(part_text_len(self.max_fragment_len, self.ur_type), self.ecc)

    def qr_version(self) -> int:
        """The stream's QR version: the preset's own, else the smallest that fits."""
        return self.version if self.version is not None else self.min_version()

    def renderer(self, canvas: tuple[int, int] | None = CANVAS_720P) -> FrameRenderer:
        """A :class:`FrameRenderer` for this preset; module size capped to fit ``canvas``."""
        version = self.qr_version()
        size = self.module_size
        if canvas is not None:
            fit = module_size_for(version, canvas)
            size = fit if size is None else min(size, fit)
        return FrameRenderer(
            version=version, ecc=self.ecc, module_size=size, canvas=canvas, mask=self.mask
        )

    def with_overrides(self, **changes: object) -> Preset:
        """A copy with some fields changed; an explicit version is dropped when the
        fragment length or ECC changes and no version is given, so it is re-derived."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown preset field(s): {', '.join(sorted(unknown))}")
        if "version" not in changes and {"max_fragment_len", "ecc", "ur_type"} & set(changes):
            changes["version"] = None
        return replace(self, **changes)  # type: ignore[arg-type]


FAST = Preset(name="fast", max_fragment_len=800, fps=20.0, module_size=5, ecc="L", mask=0)
ROBUST = Preset(name="robust", max_fragment_len=60, fps=3.0, module_size=13, ecc="L")
PRESETS = {preset.name: preset for preset in (FAST, ROBUST)}


def preset_by_name(name: str) -> Preset:
    """The preset called ``name`` (case-insensitive); ValueError lists the known ones."""
    try:
        return PRESETS[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown QR preset {name!r} (known: {', '.join(PRESETS)})") from None
