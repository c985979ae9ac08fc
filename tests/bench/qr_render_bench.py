"""Benchmark the QR transport: encoder choice, decode time, and the preset fragment sizes.

Sections (all by default, or name some on the command line):

* ``render``: qrcode vs segno encode time at a fixed version, ECC L, for alphanumeric
  UR-like texts of 100/400/800/1700 characters, matrix to numpy included; segno also with
  a fixed mask; then one full 720p fast-preset frame. Chose the library in
  ``shared/qr/frames.py``.
* ``decode``: per-frame decode time of zxing-cpp and pyzbar on a 720p fast-preset frame,
  clean and through the moderate channel, and on a frame with no code.
* ``presets``: decode rate (zxing then pyzbar) of 400/600/800-byte fragments and of the
  robust candidates through several channels. Chose the presets in
  ``shared/qr/presets.py``.
* ``mask``: decode rate with segno's best mask vs a fixed mask near the breaking point.

Parts are synthetic: a ``UR:CRYPTO-OUTPUT/seq-len/`` header and random letters up to the
worst-case part length for the fragment size (``part_text_len``), which is what sets the
QR version. Prints figures only; nothing asserts on time.

    python tests/bench/qr_render_bench.py [render] [decode] [presets] [mask] [--frames N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import string
import time
from collections.abc import Callable

import numpy as np
import qrcode
import segno
from qrcode.constants import ERROR_CORRECT_L

from shared.adapters.channel import Channel
from shared.adapters.decoders import PyzbarDecoder, QrDecoder, ZxingDecoder
from shared.qr.frames import FrameRenderer, version_for
from shared.qr.presets import FAST, Preset, part_text_len

MODERATE = "blur=1.0,noise=4,tilt=5"
CHANNELS = (
    MODERATE,
    MODERATE + ",scale=0.7",
    "blur=2.0,noise=4,tilt=5,scale=0.7",
    "blur=3.0,noise=8,tilt=15,scale=0.6,glare=0.3",
)
SECTIONS = ["render", "decode", "presets", "mask"]
SWEEP = ((400, "L"), (600, "L"), (800, "L"), (30, "L"), (60, "L"), (60, "M"), (80, "M"), (120, "L"))


def synthetic_parts(length: int, count: int, seed: int = 7) -> list[str]:
    rnd = random.Random(seed)
    parts = []
    for seq in range(1, count + 1):
        head = f"UR:CRYPTO-OUTPUT/{seq}-{count}/"
        body = "".join(rnd.choice(string.ascii_uppercase) for _ in range(length - len(head)))
        parts.append(head + body)
    return parts


def time_ms(func: Callable[[], object], reps: int) -> tuple[float, float]:
    """(mean, median) milliseconds per call."""
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        func()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.fmean(samples), statistics.median(samples)


def segno_matrix(text: str, version: int, mask: int | None) -> np.ndarray:
    qr = segno.make_qr(text, version=version, error="L", boost_error=False, mask=mask)
    return np.array(qr.matrix, dtype=np.uint8)


def qrcode_matrix(text: str, version: int) -> np.ndarray:
    qr = qrcode.QRCode(version=version, error_correction=ERROR_CORRECT_L, border=0)
    qr.add_data(text)
    qr.make(fit=False)
    return np.array(qr.get_matrix(), dtype=np.uint8)


def bench_render(reps: int) -> None:
    print(f"== render: encode + matrix to numpy, ECC L, fixed version, mean of {reps} (ms)")
    print(f"{'chars':>6} {'ver':>4} {'segno':>8} {'segno m0':>9} {'qrcode':>8}")
    for length in (100, 400, 800, 1700):
        text = synthetic_parts(length, 1)[0]
        version = version_for(length)
        seg, _ = time_ms(lambda t=text, v=version: segno_matrix(t, v, None), reps)
        seg0, _ = time_ms(lambda t=text, v=version: segno_matrix(t, v, 0), reps)
        qrc, _ = time_ms(lambda t=text, v=version: qrcode_matrix(t, v), reps)
        print(f"{length:>6} {version:>4} {seg:>8.1f} {seg0:>9.1f} {qrc:>8.1f}")
    renderer = FAST.renderer()
    text = synthetic_parts(part_text_len(FAST.max_fragment_len), 1)[0]
    mean, _ = time_ms(lambda: renderer.image(text), reps)
    print(
        f"fast preset 720p frame (version {renderer.version}, {renderer.module_size} px "
        f"modules, {len(text)} chars): {mean:.1f} ms"
    )
    masked = FrameRenderer(renderer.version, module_size=renderer.module_size, mask=0)
    mean, _ = time_ms(lambda: masked.image(text), reps)
    print(f"  same with mask 0: {mean:.1f} ms")


def bench_decode(frames: int) -> None:
    renderer = FAST.renderer()
    texts = synthetic_parts(part_text_len(FAST.max_fragment_len), 10)
    clean = [renderer.image(t) for t in texts]
    channel = Channel(MODERATE + ",seed=1")
    noisy = [channel.transform(clean[i % len(clean)], i) for i in range(frames)]
    blank = [channel.transform(np.full_like(clean[0], 255), i) for i in range(10)]
    print(f"== decode: 720p fast-preset frame (version {renderer.version}), ms per frame")
    print(
        f"   channel {MODERATE} costs "
        f"{time_ms(lambda: channel.transform(clean[0], 3), 20)[0]:.1f} ms per frame"
    )
    decoders: list[tuple[str, QrDecoder]] = [
        ("zxing-cpp", ZxingDecoder()),
        ("pyzbar", PyzbarDecoder()),
    ]
    for name, decoder in decoders:
        for label, images in (("clean", clean), ("moderate", noisy), ("no code", blank)):
            samples, ok = [], 0
            for i in range(frames):
                image = images[i % len(images)]
                start = time.perf_counter()
                found = decoder.decode(image)
                samples.append((time.perf_counter() - start) * 1000)
                ok += found == [texts[i % len(texts)]]
            rate = "" if label == "no code" else f"  decoded {ok}/{frames}"
            print(
                f"   {name:<10} {label:<9} mean {statistics.fmean(samples):5.1f}  "
                f"median {statistics.median(samples):5.1f}{rate}"
            )


def decode_rate(
    renderer: FrameRenderer,
    texts: list[str],
    spec: str,
    frames: int,
    decoders: tuple[QrDecoder, QrDecoder],
) -> tuple[float, float]:
    """(zxing alone, zxing then pyzbar) fraction of frames decoded to the right text."""
    channel = Channel(spec + ",seed=3")
    first = chained = 0
    images = [renderer.image(t) for t in texts]
    for i in range(frames):
        captured = channel.transform(images[i % len(images)], i)
        want = [texts[i % len(texts)]]
        found = decoders[0].decode(captured)
        first += found == want
        chained += (found or decoders[1].decode(captured)) == want
    return first / frames, chained / frames


def bench_presets(frames: int) -> None:
    decoders = (ZxingDecoder(), PyzbarDecoder())
    print(f"== presets: decode rate at 720p, {frames} frames per cell (zxing / zxing+pyzbar)")
    for fragment, ecc in SWEEP:
        preset = Preset("sweep", fragment, 10, ecc=ecc)
        renderer = preset.renderer()
        texts = synthetic_parts(part_text_len(fragment), 10)
        print(
            f"{fragment:>4} B  ECC {ecc}  version {renderer.version:>2}  "
            f"module {renderer.module_size:>2} px"
        )
        for spec in CHANNELS:
            zxing, chain = decode_rate(renderer, texts, spec, frames, decoders)
            print(f"     {spec:<45} {zxing:6.0%} / {chain:4.0%}")


def bench_mask(frames: int) -> None:
    decoders = (ZxingDecoder(), PyzbarDecoder())
    texts = synthetic_parts(part_text_len(FAST.max_fragment_len), 30)
    print(f"== mask: fast preset near its limit, {frames} frames (zxing / zxing+pyzbar)")
    for spec in ("blur=2.0,noise=5,tilt=8,scale=0.62", "blur=1.6,noise=5,tilt=8,scale=0.55"):
        for mask in (None, 0, 3):
            base = FAST.renderer()
            renderer = FrameRenderer(base.version, module_size=base.module_size, mask=mask)
            zxing, chain = decode_rate(renderer, texts, spec, frames, decoders)
            label = "best" if mask is None else str(mask)
            print(f"   {spec:<40} mask {label:<4} {zxing:6.0%} / {chain:4.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sections", nargs="*", help=f"any of {', '.join(SECTIONS)} (all)")
    parser.add_argument("--frames", type=int, default=100, help="frames per measurement")
    args = parser.parse_args()
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    args.sections = args.sections or SECTIONS
    if "render" in args.sections:
        bench_render(20)
    if "decode" in args.sections:
        bench_decode(args.frames)
    if "presets" in args.sections:
        bench_presets(args.frames)
    if "mask" in args.sections:
        bench_mask(args.frames)


if __name__ == "__main__":
    main()
