"""``qr video | scan``: animated QR through a real video file or camera.

``qr video`` renders a payload's UR parts as an animated-QR video (the screen side);
``qr scan`` reads frames through OpenCV ``VideoCapture`` (a file or a camera), decodes them
and writes the payload (the camera side). ``--channel`` applies the channel simulator, so
the whole path can be exercised and measured without a camera.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from online_coordinator.commands.common import CommandError, read_limited, write_output
from online_coordinator.commands.ur import FOUNTAIN_HELP, make_encoder
from online_coordinator.transport import bbqr_series, print_progress
from shared.qr.presets import PRESETS, Preset, preset_by_name
from shared.ur.payload import cbor_to_file
from shared.ur.registry import REGISTRY

if TYPE_CHECKING:  # OpenCV loads only when a video is written or scanned
    from shared.adapters.channel import Channel


def register(commands: Any) -> None:
    group = commands.add_parser("qr", help="animated QR video out, camera or video scan in")
    sub = group.add_subparsers(dest="qr_command", required=True, metavar="ACTION")

    video = sub.add_parser("video", help="write a payload as an animated-QR video")
    video.add_argument("file", help="payload file (PSBT, descriptor text, bytes), or -")
    video.add_argument("--out", required=True, help="video file to write (.avi, MJPG)")
    video.add_argument("--preset", default="fast", choices=sorted(PRESETS))
    video.add_argument("--type", default="crypto-psbt", choices=sorted(REGISTRY))
    video.add_argument("--max-fragment", type=int, help="override the preset's bytes per part")
    video.add_argument("--fps", type=float, help="override the preset's frame rate")
    video.add_argument(
        "--cycles",
        type=float,
        default=2.0,
        help="frames to write, in multiples of seqLen (default 2)",
    )
    video.add_argument(
        "--fountain", choices=["standard", "coldstation"], default="standard", help=FOUNTAIN_HELP
    )
    video.add_argument("--channel", help="simulate a camera, e.g. loss=0.1,blur=1.0,noise=4")
    video.add_argument(
        "--bbqr",
        action="store_true",
        help="BBQr parts instead of UR (COLDCARD Q); zlib-compressed, cut to the preset's "
        "QR version; --type names the payload (crypto-psbt, bytes, crypto-output)",
    )
    video.set_defaults(handler=video_command)

    scan = sub.add_parser("scan", help="decode an animated QR from a video or camera")
    source = scan.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", help="video file to read")
    source.add_argument("--camera", type=int, help="camera device index")
    scan.add_argument("-o", "--out", default="-", help="payload file (default stdout)")
    scan.add_argument("--channel", help="apply the channel simulator to captured frames")
    scan.add_argument("--timeout", type=float, default=120.0, help="give up after N seconds")
    scan.set_defaults(handler=scan_command)


def _preset(args: argparse.Namespace) -> Preset:
    preset = preset_by_name(args.preset)
    changes: dict[str, object] = {"ur_type": args.type}
    if args.max_fragment is not None:
        changes["max_fragment_len"] = args.max_fragment
    if args.fps is not None:
        changes["fps"] = args.fps
    try:
        return preset.with_overrides(**changes)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


def _channel(spec: str | None) -> Channel | None:
    if spec is None:
        return None
    from shared.adapters.channel import Channel, parse_channel_spec

    try:
        return Channel(parse_channel_spec(spec))
    except ValueError as exc:
        raise CommandError(f"--channel: {exc}") from exc


def video_command(args: argparse.Namespace) -> int:
    from shared.adapters.video import write_bbqr_video, write_ur_video

    preset = _preset(args)
    channel = _channel(args.channel)
    if args.bbqr:
        series = bbqr_series(args.type, read_limited(args.file), preset.qr_version())
        written = write_bbqr_video(
            series.parts, preset, args.out, cycles=args.cycles, channel=channel, error=CommandError
        )
        print(
            f"{args.out}: {written} frames, BBQr {len(series.parts)} part(s), version "
            f"{preset.qr_version()}, {preset.fps:g} fps",
            file=sys.stderr,
        )
        return 0
    encoder = make_encoder(
        args.type, read_limited(args.file), preset.max_fragment_len, args.fountain
    )
    written = write_ur_video(
        encoder, preset, args.out, cycles=args.cycles, channel=channel, error=CommandError
    )
    print(
        f"{args.out}: {written} frames, seqLen {encoder.seq_len}, version "
        f"{preset.qr_version()}, {preset.fps:g} fps",
        file=sys.stderr,
    )
    return 0


def scan_command(args: argparse.Namespace) -> int:
    from shared.adapters.scan import incomplete_message, scan_source

    live = args.camera is not None
    receiver = scan_source(
        args.camera if live else args.video,
        error=CommandError,
        timeout_s=args.timeout,
        channel=_channel(args.channel),
        on_progress=print_progress if live else None,
    )
    result = receiver.result
    if result is None:
        raise CommandError(incomplete_message(receiver))
    write_output(cbor_to_file(result.ur_type, result.cbor), args.out)  # PayloadError: exit 2
    print(f"received ur:{result.ur_type} in {receiver.frames_seen} frames", file=sys.stderr)
    return 0
