"""QR decoders: rendered, rotated and blurred frames decode; garbage gives [] and never raises."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from shared.adapters.decoders import (
    MAX_SIDE,
    ChainDecoder,
    PyzbarDecoder,
    QrDecoder,
    ZxingDecoder,
    bytes_to_text,
    default_decoder,
)
from shared.qr.frames import FrameRenderer, place_on_canvas

TEXT = "UR:CRYPTO-PSBT/7-20/" + "LPADAXCFAXHDCLAOAXKPJTYLDYHYJOKGADTBRDKOMDLTPKHF" * 6


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return FrameRenderer.for_texts([TEXT]).image(TEXT)


def decoders() -> list[QrDecoder]:
    return [ZxingDecoder(), PyzbarDecoder(), default_decoder()]


DECODERS = decoders()
IDS = ["zxing", "pyzbar", "chain"]


def rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 0.8)
    return cv2.warpAffine(image, matrix, (width, height), borderValue=255)


@pytest.mark.parametrize("decoder", DECODERS, ids=IDS)
def test_decodes_gray_bgr_and_bgra(decoder: QrDecoder, frame: np.ndarray) -> None:
    assert decoder.decode(frame) == [TEXT]
    assert decoder.decode(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)) == [TEXT]
    assert decoder.decode(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGRA)) == [TEXT]
    assert decoder.decode(frame[:, :, None]) == [TEXT]


@pytest.mark.parametrize("decoder", DECODERS, ids=IDS)
@pytest.mark.parametrize("degrees", [90, 180, 270, 30])
def test_decodes_rotated(decoder: QrDecoder, frame: np.ndarray, degrees: int) -> None:
    assert decoder.decode(rotate(frame, degrees)) == [TEXT]


@pytest.mark.parametrize("decoder", DECODERS, ids=IDS)
def test_decodes_blurred_and_non_contiguous(decoder: QrDecoder, frame: np.ndarray) -> None:
    assert decoder.decode(cv2.GaussianBlur(frame, (0, 0), 1.5)) == [TEXT]
    padded = np.pad(frame, ((0, 0), (0, 1)), constant_values=255)
    assert decoder.decode(padded[:, :-1]) == [TEXT]  # a strided view
    assert decoder.decode(frame[::-1, ::-1]) == [TEXT]  # negative strides


def test_zxing_finds_every_code_in_a_frame() -> None:
    renderer = FrameRenderer(version=3, canvas=None, module_size=4)
    left, right = renderer.image("UR:BYTES/LEFT"), renderer.image("UR:BYTES/RIGHT")
    image = place_on_canvas(np.hstack([left, right]), (640, 360))
    assert sorted(ZxingDecoder().decode(image)) == ["UR:BYTES/LEFT", "UR:BYTES/RIGHT"]


def test_zxing_ignores_inverted_codes_unless_asked(frame: np.ndarray) -> None:
    inverted = cv2.bitwise_not(frame)
    assert ZxingDecoder().decode(inverted) == []
    assert ZxingDecoder(try_invert=True).decode(inverted) == [TEXT]


GARBAGE: list[Any] = [
    None,
    "not an image",
    [[0, 255], [255, 0]],
    np.zeros((0, 0), dtype=np.uint8),
    np.zeros((0, 100, 3), dtype=np.uint8),
    np.zeros((1, 1), dtype=np.uint8),
    np.zeros((20, 20), dtype=np.uint8),
    np.zeros((100, 100), dtype=np.float64),
    np.ones((100, 100), dtype=bool),
    np.zeros((100, 100), dtype=np.int32),
    np.zeros((100, 100, 2), dtype=np.uint8),
    np.zeros((100, 100, 5), dtype=np.uint8),
    np.zeros((2, 100, 100, 3), dtype=np.uint8),
    np.zeros((), dtype=np.uint8),
    np.broadcast_to(np.uint8(255), (MAX_SIDE + 1, MAX_SIDE + 1)),  # huge, no memory
    np.broadcast_to(np.uint8(255), (30_000, 30_000, 3)),
    np.full((720, 1280), 255, dtype=np.uint8),
    np.random.default_rng(0).integers(0, 256, (720, 1280), dtype=np.uint8),
]


@pytest.mark.parametrize("decoder", DECODERS, ids=IDS)
@pytest.mark.parametrize("image", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_gives_empty_list(decoder: QrDecoder, image: Any) -> None:
    assert decoder.decode(image) == []


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.int8, np.uint16, np.float32]),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=40),
    )
)
def test_random_arrays_never_raise(image: np.ndarray) -> None:
    for decoder in DECODERS:
        assert decoder.decode(image) == []


def test_bytes_to_text() -> None:
    assert bytes_to_text("ünï".encode()) == "ünï"
    assert bytes_to_text(b"\xff\xfeAB") == "\xff\xfeAB"
    assert bytes_to_text(b"UR:BYTES/X") == "UR:BYTES/X"


class Fixed:
    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.calls = 0

    def decode(self, image: Any) -> list[str]:
        self.calls += 1
        return self.texts


class Broken:
    def decode(self, image: Any) -> list[str]:
        raise RuntimeError("native crash")


def test_chain_falls_back_only_when_first_finds_nothing() -> None:
    empty, found, never = Fixed([]), Fixed(["A"]), Fixed(["B"])
    chain = ChainDecoder([empty, found, never])
    assert chain.decode(np.zeros((50, 50), np.uint8)) == ["A"]
    assert (empty.calls, found.calls, never.calls) == (1, 1, 0)
    assert ChainDecoder([Broken(), found]).decode(None) == ["A"]
    assert ChainDecoder([empty]).decode(None) == []
    with pytest.raises(ValueError):
        ChainDecoder([])


def test_default_decoder_is_zxing_then_pyzbar() -> None:
    chain = default_decoder()
    assert [type(d) for d in chain.decoders] == [ZxingDecoder, PyzbarDecoder]
    assert all(isinstance(d, QrDecoder) for d in chain.decoders)


class Spy:
    def __init__(self, inner: QrDecoder) -> None:
        self.inner = inner
        self.calls = 0

    def decode(self, image: Any) -> list[str]:
        self.calls += 1
        return self.inner.decode(image)


def test_chain_recovers_a_low_contrast_frame_through_pyzbar(frame: np.ndarray) -> None:
    # 8 gray levels between dark and light: zxing-cpp 3.1 gives up, zbar still reads it
    faint = (frame / 255.0 * 8 + 118).astype(np.uint8)
    zxing, zbar = ZxingDecoder(), Spy(PyzbarDecoder())
    assert ChainDecoder([zxing, zbar]).decode(faint) == [TEXT]
    assert zbar.calls == (0 if zxing.decode(faint) else 1)
