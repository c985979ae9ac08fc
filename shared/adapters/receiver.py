"""The scanning side of the QR channel: camera frames in, one verified payload out.

Every frame is decoded (zxing-cpp, then pyzbar), every text goes to the UR decoder (or to
the BBQr joiner for COLDCARD Q streams), and nothing a frame says can crash the receiver or
change a message already being received: rejected texts are counted with their reason.
Progress is parts known / parts needed and a time estimate from the observed rate of new
information, never a fake percentage.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from shared.adapters.decoders import QrDecoder, default_decoder
from shared.ur import registry
from shared.ur.bbqr import BBQrError, BBQrJoiner, is_bbqr
from shared.ur.ur import ReceiveState, URDecoder

#: BBQr file types we turn into a UR body; the rest arrive as ``bytes``.
_BBQR_AS_PSBT = "P"


@dataclass(frozen=True, slots=True)
class Received:
    """A completed transfer: the UR type and its CBOR body (BBQr is mapped onto UR types)."""

    ur_type: str
    cbor: bytes


@dataclass(frozen=True, slots=True)
class ScanProgress:
    frames_seen: int
    frames_with_code: int
    fragments_known: int
    fragments_total: int  # 0 until the first part names the message size
    estimated_parts_left: int
    estimated_seconds_left: float | None
    rejected: int

    def __str__(self) -> str:
        if not self.fragments_total:
            return f"{self.frames_seen} frames, waiting for a code"
        eta = (
            ""
            if self.estimated_seconds_left is None
            else (f", about {self.estimated_seconds_left:.0f} s left")
        )
        return (
            f"{self.fragments_known}/{self.fragments_total} parts known, "
            f"about {self.estimated_parts_left} more needed{eta}"
        )


class QrReceiver:
    """Accumulates a UR (or BBQr) transfer from camera frames."""

    def __init__(
        self,
        decoder: QrDecoder | None = None,
        expected_types: list[str] | None = None,
        fps: float = 10.0,
    ) -> None:
        self._decoder = decoder or default_decoder()
        self._ur = URDecoder(expected_types)
        self._bbqr = BBQrJoiner()
        self._fps = fps
        self._frames = 0
        self._frames_with_code = 0
        self._first_new_at: float | None = None
        self._last_new_at: float | None = None
        self._new_parts = 0
        self.rejections: Counter[str] = Counter()
        self._result: Received | None = None
        self._protocol: str | None = None  # "ur" or "bbqr", once one made progress

    # -- feeding --------------------------------------------------------------------------

    def feed(self, image: Any, timestamp: float | None = None) -> list[str]:
        """Decode one frame and take what it carries; returns the texts found."""
        now = self._frames / self._fps if timestamp is None else timestamp
        self._frames += 1
        texts = self._decoder.decode(image)
        if texts:
            self._frames_with_code += 1
        for text in texts:
            self.feed_text(text, now)
        return texts

    def feed_text(self, text: str, now: float | None = None) -> None:
        """Take one scanned text (also used for pasted or piped UR lines)."""
        if self._result is not None:
            return
        now = self._frames / self._fps if now is None else now
        protocol = "bbqr" if is_bbqr(text) else "ur"
        if self._protocol not in (None, protocol):
            self.rejections[
                f"a {self._protocol.upper()} transfer is in progress; "
                f"{protocol.upper()} text ignored"
            ] += 1
            return
        if protocol == "bbqr":
            self._feed_bbqr(text, now)
            return
        status = self._ur.receive(text)
        if status.state is ReceiveState.REJECTED:
            self.rejections[status.reason] += 1
        elif status.state in (ReceiveState.ACCEPTED, ReceiveState.COMPLETE):
            self._note_new(now, "ur")
        if self._ur.result is not None:
            self._result = Received(self._ur.result.type, self._ur.result.cbor)

    def _feed_bbqr(self, text: str, now: float) -> None:
        before = self._bbqr.received
        try:
            done = self._bbqr.add(text)
        except BBQrError as exc:
            self.rejections[str(exc)] += 1
            return
        if self._bbqr.received > before:
            self._note_new(now, "bbqr")
        if done is not None:
            file_type, data = done
            if file_type == _BBQR_AS_PSBT:
                self._result = Received("crypto-psbt", registry.encode_psbt(data))
            else:
                self._result = Received("bytes", registry.encode_bytes(data))

    def _note_new(self, now: float, protocol: str) -> None:
        self._protocol = protocol
        self._new_parts += 1
        if self._first_new_at is None:
            self._first_new_at = now
        self._last_new_at = now

    # -- state ----------------------------------------------------------------------------

    @property
    def is_complete(self) -> bool:
        return self._result is not None

    @property
    def result(self) -> Received | None:
        return self._result

    @property
    def frames_seen(self) -> int:
        return self._frames

    def progress(self, now: float | None = None) -> ScanProgress:
        now = self._frames / self._fps if now is None else now
        known, total, left = self._counts()
        return ScanProgress(
            self._frames,
            self._frames_with_code,
            known,
            total,
            left,
            self._eta(left),
            sum(self.rejections.values()),
        )

    def _counts(self) -> tuple[int, int, int]:
        if self._bbqr.total is not None and not self._ur.progress.seq_len:
            total = self._bbqr.total
            return self._bbqr.received, total, total - self._bbqr.received
        progress = self._ur.progress
        return progress.fragments_known, progress.seq_len, progress.estimated_parts_left

    def _eta(self, parts_left: int) -> float | None:
        """Seconds left at the rate new parts have been arriving (None until measurable)."""
        if self._first_new_at is None or self._last_new_at is None or self._new_parts < 2:
            return None
        span = self._last_new_at - self._first_new_at
        if span <= 0:
            return None
        return parts_left * span / (self._new_parts - 1)
