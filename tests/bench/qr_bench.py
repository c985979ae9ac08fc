"""Benchmark: the animated-QR channel per preset, from fountain statistics to bytes/second.

For each preset and 0/10/30 % frame loss it prints:

1. frames shown / seqLen until complete, median of many part-level trials, for the
   reference peeling decoder on the standard stream and for Coldstation (GF(2)
   elimination, degree-floor sender);
2. per-frame decode time of a 720p frame through a moderate camera channel, for
   zxing-cpp and pyzbar;
3. the end-to-end run: every shown frame is rendered, passed through the channel simulator
   (moderate optics plus the frame loss), decoded by the receiver (zxing-cpp, then
   pyzbar) and fed to the UR decoder until the payload is complete. Effective throughput is
   payload / (frames shown / fps), and counts only where the receiver's per-frame processing
   keeps up with the frame rate on one core.

    python tests/bench/qr_bench.py [--trials 100] [--quick]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time

from shared.adapters.channel import Channel, parse_channel_spec
from shared.adapters.decoders import PyzbarDecoder, ZxingDecoder
from shared.adapters.receiver import QrReceiver
from shared.qr.presets import PRESETS, Preset
from shared.ur.fountain import FountainEncoder
from shared.ur.registry import encode_bytes
from shared.ur.ur import UR, UREncoder
from tests.bench.fountain_bench import Stream, frames_needed

LOSSES = (0.0, 0.1, 0.3)
MODERATE = "blur=1.0,noise=4,tilt=5"
PAYLOAD = {"fast": 35_000, "robust": 4_000}  # a large batch PSBT; a small one
TARGET_KBPS = 10.0  # fast preset at 10 % loss


def fountain_ratios(preset: Preset, payload_len: int, loss: float, trials: int) -> dict:
    """Median frames shown / seqLen: reference vs Coldstation, for this preset's seqLen."""
    results: dict[str, list[float]] = {"reference": [], "coldstation": []}
    for t in range(trials):
        message = random.Random(t).randbytes(payload_len)
        standard = Stream(FountainEncoder(message, preset.max_fragment_len))
        floor = Stream(FountainEncoder(message, preset.max_fragment_len, degree_floor=True))
        seq_len = standard[0].seq_len
        results["reference"].append(frames_needed(standard, "peel", loss, t + 1) / seq_len)
        results["coldstation"].append(frames_needed(floor, "gf2", loss, t + 1) / seq_len)
    return {k: statistics.median(v) for k, v in results.items()}


def decode_times(preset: Preset, samples: int = 20) -> dict[str, float]:
    """Median ms per 720p frame through the moderate channel, per decoder."""
    encoder = UREncoder(
        UR("bytes", encode_bytes(os.urandom(PAYLOAD[preset.name]))), preset.max_fragment_len
    )
    renderer = preset.renderer()
    channel = Channel(parse_channel_spec(MODERATE))
    frames = [
        channel.transform(renderer.image(encoder.next_part().upper()), i) for i in range(samples)
    ]
    times = {}
    for name, decoder in (("zxing-cpp", ZxingDecoder()), ("pyzbar", PyzbarDecoder())):
        spent = []
        for frame in frames:
            start = time.perf_counter()
            found = decoder.decode(frame)
            spent.append(time.perf_counter() - start)
            assert found, f"{name} missed a moderate-channel frame"
        times[name] = 1000 * statistics.median(spent)
    return times


def render_time(preset: Preset, samples: int = 10) -> float:
    """Median ms for the sender to render one 720p frame of this preset."""
    encoder = UREncoder(
        UR("bytes", encode_bytes(os.urandom(PAYLOAD[preset.name]))), preset.max_fragment_len
    )
    renderer = preset.renderer()
    spent = []
    for _ in range(samples):
        text = encoder.next_part().upper()
        start = time.perf_counter()
        renderer.image(text)
        spent.append(time.perf_counter() - start)
    return 1000 * statistics.median(spent)


def end_to_end(preset: Preset, loss: float, seed: int = 7) -> tuple[int, int, float]:
    """(frames shown, seqLen, receiver ms per frame) for one full run through images."""
    payload = random.Random(seed).randbytes(PAYLOAD[preset.name])
    encoder = UREncoder(
        UR("bytes", encode_bytes(payload)), preset.max_fragment_len, degree_floor=True
    )
    renderer = preset.renderer()
    channel = Channel(parse_channel_spec(f"{MODERATE},loss={loss},seed={seed}"))
    receiver = QrReceiver(fps=preset.fps)
    shown, busy = 0, 0.0
    texts = (encoder.next_part().upper() for _ in range(20 * encoder.seq_len))
    for captured in channel.process(renderer.image(t) for t in texts):
        shown = captured.index + 1
        start = time.perf_counter()
        receiver.feed(captured.image)
        busy += time.perf_counter() - start
        if receiver.is_complete:
            break
    assert receiver.result is not None and receiver.result.cbor == encode_bytes(payload)
    return shown, encoder.seq_len, 1000 * busy / max(1, receiver.frames_seen)


def run(trials: int, presets: list[Preset]) -> None:
    for preset in presets:
        size = PAYLOAD[preset.name]
        print(
            f"\n== preset {preset.name}: {preset.max_fragment_len} B/part, {preset.fps:g} fps, "
            f"QR version {preset.qr_version()}, payload {size:,} B =="
        )
        times = decode_times(preset)
        render = render_time(preset)
        sender = "keeps up" if render / 1000 < 1 / preset.fps else "too slow for live display"
        print(
            "decode per 720p frame (moderate channel): "
            + ", ".join(f"{k} {v:.1f} ms" for k, v in times.items())
            + f"; sender render {render:.1f} ms ({sender} at {preset.fps:g} fps)"
        )
        print(
            f"{'loss':>5}  {'ref peel':>9}  {'ours':>7}  {'e2e frames':>10}  "
            f"{'rx ms/frame':>11}  {'effective':>12}"
        )
        for loss in LOSSES:
            ratios = fountain_ratios(preset, size, loss, trials)
            shown, seq_len, per_frame = end_to_end(preset, loss)
            keeps_up = per_frame / 1000 < 1 / preset.fps
            rate = size / (shown / preset.fps) / 1000
            verdict = f"{rate:7.1f} KB/s" if keeps_up else "  (too slow)"
            print(
                f"{loss:>5.0%}  {ratios['reference']:>8.3f}x  {ratios['coldstation']:>6.3f}x  "
                f"{shown:>4} / {seq_len:<4}  {per_frame:>11.1f}  {verdict:>12}"
            )
        if preset.name == "fast":
            print(f"target: fast preset at 10 % loss >= {TARGET_KBPS:g} KB/s effective")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--preset", choices=sorted(PRESETS), action="append")
    args = parser.parse_args()
    run(args.trials, [PRESETS[name] for name in (args.preset or sorted(PRESETS))])


if __name__ == "__main__":
    main()
