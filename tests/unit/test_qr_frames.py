"""QR frame rendering: fixed version per stream, quiet zone, canvas, half blocks, presets."""

from __future__ import annotations

import numpy as np
import pytest
import segno

from shared.adapters.decoders import PyzbarDecoder, ZxingDecoder
from shared.qr.frames import (
    CANVAS_720P,
    QUIET_ZONE,
    FrameError,
    FrameRenderer,
    capacity,
    half_blocks,
    matrix_to_image,
    module_size_for,
    place_on_canvas,
    qr_matrix,
    symbol_size,
    version_for,
)
from shared.qr.presets import FAST, PRESETS, ROBUST, Preset, part_text_len, preset_by_name

ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def ur_like(seq: int, length: int) -> str:
    head = f"UR:CRYPTO-PSBT/{seq}-20/"
    body = "".join(ALNUM[(seq * 7 + i * 13) % 36] for i in range(length - len(head)))
    return head + body


@pytest.fixture(scope="module")
def zxing() -> ZxingDecoder:
    return ZxingDecoder()


@pytest.fixture(scope="module")
def zbar() -> PyzbarDecoder:
    return PyzbarDecoder()


# -- capacity and version -------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "ecc"), [(1, "L"), (9, "M"), (10, "L"), (17, "L"), (26, "Q"), (27, "L"), (12, "H")]
)
def test_capacity_is_exact_for_segno(version: int, ecc: str) -> None:
    for text, alnum in (("A", True), ("a", False)):
        cap = capacity(version, ecc, alphanumeric=alnum)
        qr = segno.make_qr(text * cap, error=ecc, boost_error=False)
        assert qr.version == version
        with pytest.raises(FrameError):
            qr_matrix(text * (cap + 1), version, ecc)


def test_version_for_picks_smallest_fitting() -> None:
    assert version_for(0) == 1
    assert version_for(capacity(1)) == 1
    assert version_for(capacity(1) + 1) == 2
    assert version_for(capacity(17)) == 17
    assert version_for(capacity(17, "H"), "h") == 17
    assert version_for(capacity(5, alphanumeric=False), alphanumeric=False) == 5


def test_version_for_rejects_too_long_and_bad_ecc() -> None:
    with pytest.raises(FrameError, match="version 40"):
        version_for(capacity(40) + 1)
    with pytest.raises(FrameError, match="ECC"):
        version_for(10, "X")
    with pytest.raises(FrameError):
        qr_matrix("A", 41)
    with pytest.raises(FrameError):
        qr_matrix("A", 0)


# -- constant version ----------------------------------------------------------------


def test_whole_stream_keeps_one_version(zxing: ZxingDecoder) -> None:
    texts = [ur_like(i, length) for i, length in enumerate((300, 120, 40, 299, 25), 1)]
    renderer = FrameRenderer.for_texts(texts, canvas=None, module_size=3)
    assert renderer.version == version_for(300)
    size = symbol_size(renderer.version)
    for text in texts:
        assert renderer.matrix(text).shape == (size, size)
        image = renderer.image(text)
        assert image.shape == ((size + 2 * QUIET_ZONE) * 3,) * 2
        assert zxing.decode(image) == [text]


def test_ecc_is_not_boosted_for_short_parts() -> None:
    # segno would raise the ECC level of a short text to fill the symbol; the stream
    # must keep its level, so a short part at version 10-L equals segno's forced 10-L.
    text = ur_like(1, 30)
    expected = segno.make_qr(text, version=10, error="L", boost_error=False)
    assert np.array_equal(qr_matrix(text, 10, "L"), np.array(expected.matrix, dtype=bool))
    assert expected.error == "L"


def test_text_that_does_not_fit_the_stream_version() -> None:
    renderer = FrameRenderer(version=5, canvas=None, module_size=1)
    with pytest.raises(FrameError, match="do not fit"):
        renderer.matrix("A" * (capacity(5) + 1))


def test_for_texts_uses_byte_mode_for_non_alphanumeric_text(zxing: ZxingDecoder) -> None:
    texts = ["ur:bytes/1-2/lowercase", "ünïcödé payload"]
    renderer = FrameRenderer.for_texts(texts, canvas=None, module_size=4)
    assert renderer.version == version_for(len(texts[1].encode()), alphanumeric=False)
    for text in texts:
        assert zxing.decode(renderer.image(text)) == [text]


# -- images ----------------------------------------------------------------------------


def test_image_has_white_quiet_zone_and_integer_modules() -> None:
    matrix = qr_matrix(ur_like(1, 60), 4)
    image = matrix_to_image(matrix, module_size=5)
    n = symbol_size(4)
    border = QUIET_ZONE * 5
    assert image.dtype == np.uint8
    assert image.shape == ((n + 2 * QUIET_ZONE) * 5,) * 2
    assert set(np.unique(image)) == {0, 255}
    for edge in (image[:border], image[-border:], image[:, :border], image[:, -border:]):
        assert (edge == 255).all()
    inner = image[border:-border, border:-border]
    assert np.array_equal(inner[::5, ::5] == 0, matrix)
    # the top-left finder pattern starts right after the quiet zone
    assert image[border, border] == 0


def test_canvas_centres_the_code_on_white() -> None:
    code = np.zeros((100, 60), dtype=np.uint8)
    canvas = place_on_canvas(code, (200, 120))
    assert canvas.shape == (120, 200)
    ys, xs = np.nonzero(canvas == 0)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (10, 109, 70, 129)
    assert (canvas == 255).sum() == 200 * 120 - 100 * 60
    with pytest.raises(FrameError, match="does not fit"):
        place_on_canvas(code, (50, 50))


def test_renderer_fills_720p_with_largest_module_size() -> None:
    renderer = FrameRenderer(version=17)
    assert renderer.module_size == module_size_for(17) == 720 // (symbol_size(17) + 8)
    image = renderer.image(ur_like(1, 500))
    assert image.shape == (720, 1280)
    with pytest.raises(FrameError, match="does not fit"):
        FrameRenderer(version=17, module_size=9)
    with pytest.raises(FrameError, match="module_size is required"):
        FrameRenderer(version=17, canvas=None)


def test_rendered_frames_decode_with_both_decoders(
    zxing: ZxingDecoder, zbar: PyzbarDecoder
) -> None:
    renderer = FAST.renderer()
    text = ur_like(3, part_text_len(FAST.max_fragment_len))
    image = renderer.image(text)
    assert image.shape == (CANVAS_720P[1], CANVAS_720P[0])
    assert zxing.decode(image) == [text]
    assert zbar.decode(image) == [text]


def test_fixed_mask_still_decodes(zxing: ZxingDecoder) -> None:
    text = ur_like(4, 200)
    for mask in (0, 5):
        renderer = FrameRenderer(version=version_for(200), canvas=None, module_size=3, mask=mask)
        assert zxing.decode(renderer.image(text)) == [text]


# -- half blocks ---------------------------------------------------------------------


def unblock(text: str) -> np.ndarray:
    """Inverse of half_blocks: the padded module matrix (rows rounded up to even)."""
    top = {" ": 0, "\u2580": 1, "\u2584": 0, "\u2588": 1}
    bottom = {" ": 0, "\u2580": 0, "\u2584": 1, "\u2588": 1}
    rows = []
    for line in text.split("\n"):
        rows.append([top[c] for c in line])
        rows.append([bottom[c] for c in line])
    return np.array(rows, dtype=bool)


def test_half_blocks_shape_characters_and_round_trip() -> None:
    matrix = qr_matrix(ur_like(2, 80), 5)
    n = symbol_size(5) + 2 * QUIET_ZONE  # 45: odd, so the last row pairs with padding
    text = half_blocks(matrix)
    lines = text.split("\n")
    assert len(lines) == (n + 1) // 2
    assert all(len(line) == n for line in lines)
    assert set(text) <= {" ", "\u2580", "\u2584", "\u2588", "\n"}
    assert lines[0] == lines[1] == " " * n  # 4 quiet-zone modules = 2 blank rows
    assert all(line[:QUIET_ZONE] == line[-QUIET_ZONE:] == " " * QUIET_ZONE for line in lines)
    modules = unblock(text)
    assert not modules[-1].any()  # the padding row is light
    expected = np.pad(matrix, QUIET_ZONE)
    assert np.array_equal(modules[:n], expected)


def test_half_blocks_of_renderer_matches_matrix() -> None:
    renderer = FrameRenderer(version=3, canvas=None, module_size=1)
    text = "UR:BYTES/HELLO"
    assert renderer.text(text) == half_blocks(renderer.matrix(text))
    # the top-left finder pattern's first row: 7 dark modules after the quiet zone
    assert renderer.text(text).split("\n")[2][4:11] == "\u2588" + "\u2580" * 5 + "\u2588"


# -- presets ---------------------------------------------------------------------------


def test_presets_are_in_their_design_ranges() -> None:
    assert 400 <= FAST.max_fragment_len <= 800 and FAST.fps >= 10
    assert 30 <= ROBUST.max_fragment_len <= 120 and 2 <= ROBUST.fps <= 4
    for preset in PRESETS.values():
        renderer = preset.renderer()
        assert renderer.version == preset.min_version()
        assert renderer.module_size == preset.module_size  # fits 720p as chosen
        longest = ur_like(4_294_967_295, part_text_len(preset.max_fragment_len))
        assert renderer.matrix(longest).shape[0] == symbol_size(renderer.version)


def test_part_text_len_bounds_a_worst_case_part() -> None:
    # ur:crypto-output/4294967295-4294967295/ + bytewords of a 24+400+4-byte body
    assert part_text_len(400) == len("ur:crypto-output/4294967295-4294967295/") + 2 * 428
    assert part_text_len(400, "bytes") == part_text_len(400) - 8
    with pytest.raises(ValueError):
        part_text_len(0)


def test_preset_lookup_and_overrides() -> None:
    assert preset_by_name(" Fast ") is FAST
    with pytest.raises(ValueError, match="known: fast, robust"):
        preset_by_name("turbo")
    smaller = FAST.with_overrides(max_fragment_len=400)
    assert smaller.qr_version() < FAST.qr_version()
    pinned = FAST.with_overrides(version=30)
    assert pinned.qr_version() == 30
    assert pinned.with_overrides(max_fragment_len=100).version is None
    assert FAST.with_overrides(fps=15).fps == 15
    with pytest.raises(ValueError, match="unknown preset field"):
        FAST.with_overrides(colour="red")
    with pytest.raises(ValueError, match="cannot hold"):
        FAST.with_overrides(version=5, max_fragment_len=400)
    with pytest.raises(ValueError, match="fps"):
        Preset("x", 100, 0)


def test_preset_renderer_caps_module_size_to_canvas() -> None:
    big = ROBUST.with_overrides(module_size=40)
    assert big.renderer().module_size == module_size_for(ROBUST.qr_version())
    assert big.renderer(canvas=None).module_size == 40


def test_part_text_len_bounds_real_ur_parts() -> None:
    ur = pytest.importorskip("shared.ur.ur")
    cbor2 = pytest.importorskip("cbor2")
    message = cbor2.dumps(bytes(range(256)) * 20)
    for fragment_len in (FAST.max_fragment_len, ROBUST.max_fragment_len):
        for first in (0, 2**32 - 10):  # sequence numbers near the 32-bit limit
            encoder = ur.UREncoder(
                ur.UR("crypto-output", message), fragment_len, first_seq_num=first
            )
            parts = [encoder.next_part().upper() for _ in range(3)]
            assert max(map(len, parts)) <= part_text_len(fragment_len)
