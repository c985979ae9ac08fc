"""The QR channel end to end: payloads of 200 B, 4 KB and 35 KB through the channel
simulator and a real video file read back by OpenCV, and a receiver that shrugs off junk.
"""

from __future__ import annotations

import base64
import random

import pytest

from online_coordinator.cli import main
from shared.adapters.channel import Channel, parse_channel_spec
from shared.adapters.receiver import QrReceiver
from shared.psbt import Psbt
from shared.qr.frames import FrameRenderer
from shared.qr.presets import FAST, ROBUST
from shared.ur import bbqr
from shared.ur.registry import encode_bytes
from shared.ur.ur import UR, UREncoder
from tests.vectors import load_json

CHANNEL = "loss=0.1,blur=1.0,noise=4,tilt=5,blend=0.05,seed=3"


@pytest.mark.parametrize(
    ("size", "preset"), [(200, "fast"), (4_000, "fast"), (35_000, "fast"), (4_000, "robust")]
)
def test_payload_survives_simulator_and_video_file(tmp_path, size, preset, capsys):
    payload = random.Random(size).randbytes(size)
    source, video, out = tmp_path / "in.bin", tmp_path / "v.avi", tmp_path / "out.bin"
    source.write_bytes(payload)
    assert (
        main(
            [
                "qr",
                "video",
                str(source),
                "--type",
                "bytes",
                "--preset",
                preset,
                "--fountain",
                "coldstation",
                "--channel",
                CHANNEL,
                "--out",
                str(video),
            ]
        )
        == 0
    )
    assert main(["qr", "scan", "--video", str(video), "-o", str(out)]) == 0
    assert out.read_bytes() == payload
    assert "received ur:bytes" in capsys.readouterr().err


def test_psbt_round_trip_through_video_is_validated(tmp_path):
    psbt_text = load_json("psbt/bip174_vectors.json")["role_tests"]["signer_1"]["result"]
    source, video, out = tmp_path / "p.b64", tmp_path / "p.avi", tmp_path / "p.psbt"
    source.write_text(psbt_text["base64"])
    assert main(["qr", "video", str(source), "--out", str(video), "--max-fragment", "200"]) == 0
    assert main(["qr", "scan", "--video", str(video), "-o", str(out)]) == 0
    assert Psbt.parse(out.read_bytes()).to_base64() == psbt_text["base64"]


def test_scan_of_a_video_without_enough_parts_fails_cleanly(tmp_path, capsys):
    source, video = tmp_path / "in.bin", tmp_path / "v.avi"
    source.write_bytes(random.Random(1).randbytes(20_000))
    assert (
        main(
            ["qr", "video", str(source), "--type", "bytes", "--cycles", "0.5", "--out", str(video)]
        )
        == 0
    )
    assert main(["qr", "scan", "--video", str(video), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "incomplete after" in err and "parts known" in err


def _frames(texts, renderer=None):
    renderer = renderer or FrameRenderer(version=FAST.qr_version(), module_size=4)
    return [renderer.image(t.upper()) for t in texts]


def test_receiver_ignores_junk_and_foreign_parts_and_still_completes():
    payload = random.Random(5).randbytes(6_000)
    ours = UREncoder(UR("bytes", encode_bytes(payload)), 500)
    other = UREncoder(UR("bytes", encode_bytes(b"another message entirely" * 50)), 500)
    texts = [ours.next_part() for _ in range(ours.seq_len + 5)]
    hostile = [
        "hello, this is not a UR",
        "ur:crypto-psbt/hdcxjsgmlubtlntl",  # bad bytewords
        other.next_part(),  # a part of another message mid-stream
        "ur:bytes/1-3/lpadaxcfaxcywenbpljkhdcahkadaemejtswhhylkepmykhhtsytsnoyoyaxaedsuttyd",
        *bbqr.split(b"a complete one-part BBQr text file", "U", "2"),  # other protocol
    ]
    stream = texts[:3] + hostile + texts[3:]
    receiver = QrReceiver()
    renderer = FrameRenderer(version=25, module_size=4)
    blank = renderer.image("X") * 0 + 255
    for image in [blank, *(_frames(stream, renderer))]:
        receiver.feed(image)
        if receiver.is_complete:
            break
    assert receiver.result is not None
    assert receiver.result.cbor == encode_bytes(payload)
    assert sum(receiver.rejections.values()) >= 4
    reasons = " | ".join(receiver.rejections)
    assert "not a UR" in reasons
    assert "UR transfer is in progress; BBQR text ignored" in reasons


def test_receiver_progress_counts_parts_and_estimates_time():
    payload = random.Random(6).randbytes(8_000)
    encoder = UREncoder(UR("bytes", encode_bytes(payload)), 400)
    receiver = QrReceiver(fps=10)
    assert "waiting" in str(receiver.progress())
    for second, text in enumerate(encoder.next_part() for _ in range(5)):
        receiver.feed_text(text, now=float(second))
    progress = receiver.progress(now=4.0)
    assert progress.fragments_total == encoder.seq_len
    assert progress.fragments_known == 5
    assert progress.estimated_parts_left >= encoder.seq_len - 5
    # one new part a second so far: the estimate is the parts left, in seconds
    assert progress.estimated_seconds_left == pytest.approx(progress.estimated_parts_left)
    assert f"5/{encoder.seq_len} parts known" in str(progress)


def test_receiver_takes_a_coldcard_bbqr_psbt_stream():
    psbt_b64 = load_json("psbt/bip174_vectors.json")["role_tests"]["updater"]["result"]["base64"]
    raw = base64.b64decode(psbt_b64)
    parts = bbqr.split(raw, "P", "Z", max_chars=300)
    assert len(parts) > 1
    receiver = QrReceiver()
    channel = Channel(parse_channel_spec("blur=0.8,noise=3,seed=2"))
    renderer = FrameRenderer.for_texts(parts, module_size=5)
    for image in channel.apply(renderer.image(p) for p in reversed(parts)):
        receiver.feed(image)
    assert receiver.result is not None and receiver.result.ur_type == "crypto-psbt"
    from shared.ur.payload import cbor_to_file

    assert cbor_to_file("crypto-psbt", receiver.result.cbor) == raw


def test_robust_preset_decodes_through_a_weak_camera():
    payload = random.Random(9).randbytes(1_500)
    encoder = UREncoder(
        UR("bytes", encode_bytes(payload)), ROBUST.max_fragment_len, degree_floor=True
    )
    renderer = ROBUST.renderer()
    weak = Channel(parse_channel_spec("loss=0.1,blur=2.5,noise=7,tilt=12,scale=0.6,glare=0.3"))
    receiver = QrReceiver(fps=ROBUST.fps)
    frames = (renderer.image(encoder.next_part().upper()) for _ in range(4 * encoder.seq_len))
    for image in weak.apply(frames):
        receiver.feed(image)
        if receiver.is_complete:
            break
    assert receiver.result is not None and receiver.result.cbor == encode_bytes(payload)
