"""Channel simulator: each effect does what it says, runs are reproducible, specs are checked."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from shared.adapters.channel import (
    BLEND_WEIGHT,
    SURROUND_GRAY,
    Channel,
    ChannelSpec,
    glare_mask,
    parse_channel_spec,
)

H, W = 720, 1280
FULL = "loss=0.1,blur=1.0,noise=4,tilt=8,scale=0.7,glare=0.2,blend=0.1,brightness=-20,seed=1"


def gray(level: int) -> np.ndarray:
    return np.full((H, W), level, dtype=np.uint8)


def square() -> np.ndarray:
    """White frame with a centred black 400x400 square."""
    image = gray(255)
    image[160:560, 440:840] = 0
    return image


# -- spec parsing --------------------------------------------------------------------


def test_parse_full_spec() -> None:
    spec = parse_channel_spec(FULL)
    assert spec == ChannelSpec(
        loss=0.1, blur=1.0, noise=4, tilt=8, scale=0.7, glare=0.2, blend=0.1, brightness=-20, seed=1
    )
    assert parse_channel_spec(str(spec)) == spec


def test_parse_empty_and_spaced_specs() -> None:
    assert parse_channel_spec("") == ChannelSpec()
    assert parse_channel_spec(" blur = 2 , , seed=3 ") == ChannelSpec(blur=2.0, seed=3)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("fog=1", "fog"),
        ("blur=abc", "blur"),
        ("blur=", "blur"),
        ("noise", "noise"),
        ("loss=1.5", "loss"),
        ("blend=-0.1", "blend"),
        ("glare=2", "glare"),
        ("scale=0", "scale"),
        ("tilt=90", "tilt"),
        ("blur=nan", "blur"),
        ("noise=inf", "noise"),
        ("seed=1.5", "seed"),
        ("seed=-1", "seed"),
        ("brightness=300", "brightness"),
        ("blur=1,blur=2", "blur"),
    ],
)
def test_bad_specs_name_the_key(text: str, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        parse_channel_spec(text)


def test_channel_accepts_spec_string_object_or_nothing() -> None:
    assert Channel(FULL).spec == parse_channel_spec(FULL)
    assert Channel().spec == ChannelSpec()
    with pytest.raises(ValueError, match="fog"):
        Channel("fog=1")


# -- effects -------------------------------------------------------------------------


def test_perfect_channel_is_identity() -> None:
    frames = [square(), gray(10)]
    out = list(Channel().process(frames))
    assert [c.index for c in out] == [0, 1]
    assert all(np.array_equal(c.image, f) for c, f in zip(out, frames, strict=True))


def test_scale_shrinks_about_the_centre() -> None:
    out = Channel("scale=0.5").transform(square())
    assert out.shape == (H, W)
    dark = out < SURROUND_GRAY // 2
    assert abs(dark.sum() / (400 * 400) - 0.25) < 0.02
    ys, xs = np.nonzero(dark)
    assert abs(ys.mean() - H / 2) < 2 and abs(xs.mean() - W / 2) < 2
    assert out[0, 0] == out[-1, -1] == SURROUND_GRAY  # the room around the screen


def test_tilt_is_a_perspective_turn() -> None:
    out = Channel("tilt=30").transform(square())
    dark = out < SURROUND_GRAY // 2
    cols = np.nonzero(dark.any(axis=0))[0]
    left_height = dark[:, cols[0] + 2].sum()
    right_height = dark[:, cols[-1] - 2].sum()
    assert abs(left_height - right_height) > 40  # the near edge looks taller
    assert cols[-1] - cols[0] < 400 * 0.95  # foreshortened
    assert (out[:, 0] == SURROUND_GRAY).any() or (out[:, -1] == SURROUND_GRAY).any()
    flipped = Channel("tilt=-30").transform(square())
    assert not np.array_equal(out, flipped)


def test_blur_softens_edges() -> None:
    sharp = square()
    out = Channel("blur=3").transform(sharp)
    mid = ((out > 20) & (out < 235)).sum()
    assert ((sharp > 20) & (sharp < 235)).sum() == 0 and mid > 4 * 400 * 4
    assert cv2.Laplacian(out, cv2.CV_64F).var() < cv2.Laplacian(sharp, cv2.CV_64F).var() / 10


def test_noise_has_the_given_sigma() -> None:
    out = Channel("noise=8").transform(gray(128)).astype(float)
    assert abs(out.mean() - 128) < 0.2
    assert abs(out.std() - 8) < 0.3


def test_noise_saturates_instead_of_wrapping() -> None:
    out = Channel("noise=10").transform(gray(250))
    assert out.max() == 255 and out.min() > 180
    assert 245 < out.mean() < 250


def test_brightness_offsets_and_saturates() -> None:
    image = square()
    image[0, 0] = 10
    out = Channel("brightness=-20").transform(image)
    assert out[0, 0] == 0 and out[0, 1] == 235 and out[H // 2, W // 2] == 0
    assert Channel("brightness=30").transform(gray(240))[5, 5] == 255


def test_glare_is_a_local_bright_highlight() -> None:
    base = gray(100)
    out = Channel("glare=0.5,seed=4").transform(base).astype(int)
    lifted = out - 100
    assert (lifted >= 0).all()
    assert abs(lifted.max() - round(0.5 * 155)) <= 2
    assert (lifted == 0).mean() > 0.3  # a highlight, not a wash
    ys, xs = np.nonzero(lifted > lifted.max() * 0.9)
    assert ys.max() - ys.min() < H and xs.max() - xs.min() < W * 0.6
    mask = glare_mask((H, W), np.random.default_rng(1))
    assert mask.shape == (H, W) and mask.dtype == np.float32 and 0.9 < mask.max() <= 1.0


def test_loss_drops_about_the_given_fraction() -> None:
    frames = [gray(i % 256) for i in range(300)]
    kept = [c.index for c in Channel("loss=0.3,seed=2").process(frames)]
    assert kept == sorted(kept)
    assert 0.6 < len(kept) / 300 < 0.8
    assert list(Channel("loss=1").process(frames[:10])) == []


def test_blend_mixes_the_previous_frame() -> None:
    frames = [gray(0), gray(255), gray(0)]
    out = list(Channel("blend=1,seed=5").process(frames))
    assert [c.blended_with for c in out] == [None, 0, 1]
    assert np.array_equal(out[0].image, frames[0])
    low, high = BLEND_WEIGHT
    level = int(out[1].image[0, 0])
    assert 255 * (1 - high) - 1 <= level <= 255 * (1 - low) + 1
    assert (out[1].image == level).all()
    level = int(out[2].image[0, 0])
    assert 255 * low - 1 <= level <= 255 * high + 1


def test_blend_uses_dropped_frames_too() -> None:
    # a frame that was shown but not captured can still bleed into the next one
    spec = ChannelSpec(loss=0.5, blend=1.0, seed=0)
    frames = [gray(40 * i) for i in range(6)]
    out = list(Channel(spec).process(frames))
    assert all(c.blended_with == c.index - 1 for c in out if c.index > 0)


def test_bgr_frames_keep_shape_and_type() -> None:
    frame = cv2.cvtColor(square(), cv2.COLOR_GRAY2BGR)
    out = Channel(FULL.replace("loss=0.1", "loss=0")).transform(frame, 3)
    assert out.shape == frame.shape and out.dtype == np.uint8


# -- determinism ---------------------------------------------------------------------


def test_same_seed_same_frames_other_seed_other_frames() -> None:
    frames = [square(), gray(200), square(), gray(30)] * 3
    first = list(Channel(FULL).process(frames))
    second = list(Channel(FULL).process(frames))
    other = list(Channel(FULL.replace("seed=1", "seed=2")).process(frames))
    assert [(c.index, c.blended_with) for c in first] == [(c.index, c.blended_with) for c in second]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, second, strict=True))
    assert not all(np.array_equal(a.image, b.image) for a, b in zip(first, other, strict=False))


def test_a_frame_does_not_depend_on_the_others() -> None:
    spec = "blur=1,noise=4,glare=0.3,tilt=5,seed=9"
    frames = [square(), gray(128), square()]
    streamed = [c.image for c in Channel(spec).process(frames)]
    assert np.array_equal(streamed[2], Channel(spec).transform(frames[2], 2))
    assert not np.array_equal(streamed[0], streamed[2])  # fresh noise per frame
