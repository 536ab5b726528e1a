"""The pixel-reading quality checker: near-perfect on ground truth (also after a VQ-GAN-like blur,
noise and colour shift), clearly lower on corrupted clips."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nuwa.data.clip_rendering import Clip, render_clip
from nuwa.data.clip_specs import (
    ALLOWED_DIRECTIONS,
    COLOURS,
    DIGITS,
    KINDS,
    POSITIONS,
    SHAPES,
    ClipSpec,
    ObjectSpec,
)
from nuwa.data.object_reading import track_objects
from nuwa.data.quality_checker import (
    position_error,
    psnr,
    score_edit,
    score_sketch,
    score_text_to_image,
    score_text_to_video,
    summarise,
)
from nuwa.data.synthetic_data import SyntheticVideoDataset

N_CLIPS = 50
ATTRIBUTES = ("shape", "colour", "position", "direction", "all", "count", "first_frame_shape")


def blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur over the two spatial axes of (..., H, W, C), edge-padded."""
    r = max(1, math.ceil(3 * sigma))
    k = np.exp(-(np.arange(-r, r + 1) ** 2) / (2 * sigma**2))
    k /= k.sum()
    f = x.astype(np.float64)
    for axis in (-3, -2):
        pad = [(0, 0)] * f.ndim
        pad[axis] = (r, r)
        p = np.pad(f, pad, mode="edge")
        n = f.shape[axis]
        f = sum(k[i] * np.take(p, np.arange(i, i + n), axis=axis) for i in range(2 * r + 1))
    return f


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def vq_like(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What a VQ-GAN reconstruction does to a clip, roughly: blur, noise, a small colour shift."""
    shift = rng.integers(-12, 13, size=3)
    return to_uint8(blur(x, 1.0) + rng.normal(0, 6, x.shape) + shift)


def other_colour(o: ObjectSpec) -> ObjectSpec:
    names = list(COLOURS)
    return replace(o, colour=names[(names.index(o.colour) + 1) % len(names)])


def other_shape(o: ObjectSpec) -> ObjectSpec:
    labels = [*SHAPES, *(f"digit {d}" for d in DIGITS)]
    label = labels[(labels.index(o.label) + 1) % len(labels)]
    if label.startswith("digit"):
        return replace(o, kind="digit", digit=int(label.split()[1]))
    return replace(o, kind=label, digit=None)


def rerender(clip: Clip, change: Callable[[ObjectSpec], ObjectSpec]) -> np.ndarray:
    spec = ClipSpec(tuple(change(o) for o in clip.spec.objects))
    return render_clip(spec, clip.frames.shape[0], clip.frames.shape[1]).frames


@pytest.fixture(scope="module")
def clips() -> list[Clip]:
    ds = SyntheticVideoDataset(N_CLIPS, seed=11, split="heldout")
    return [ds[i] for i in range(N_CLIPS)]


def t2v_summary(clips: list[Clip], make: Callable[[Clip], np.ndarray]) -> dict[str, float]:
    return summarise([score_text_to_video(make(c), c.spec) for c in clips])


def test_ground_truth_scores_perfectly(clips: list[Clip]) -> None:
    s = t2v_summary(clips, lambda c: c.frames)
    assert all(s[a] == 1.0 for a in ATTRIBUTES), s


def test_ground_truth_after_vq_like_degradation_scores_near_perfectly(clips: list[Clip]) -> None:
    rng = np.random.default_rng(0)
    s = t2v_summary(clips, lambda c: vq_like(c.frames, rng))
    assert all(s[a] >= 0.95 for a in ATTRIBUTES), s


def test_text_to_image_on_first_frames(clips: list[Clip]) -> None:
    rng = np.random.default_rng(1)
    s = summarise([score_text_to_image(vq_like(c.frames[0], rng), c.spec) for c in clips])
    assert "direction" not in s
    assert all(s[a] >= 0.95 for a in ("shape", "colour", "position", "all", "count")), s
    wrong = summarise([score_text_to_image(rerender(c, other_colour)[0], c.spec) for c in clips])
    assert wrong["colour"] == 0.0 and wrong["all"] == 0.0


def test_wrong_colour_fails_colour_only(clips: list[Clip]) -> None:
    s = t2v_summary(clips[:25], lambda c: rerender(c, other_colour))
    assert s["colour"] == 0.0 and s["all"] == 0.0
    assert s["shape"] >= 0.95 and s["direction"] >= 0.95


def test_wrong_shape_fails_shape(clips: list[Clip]) -> None:
    s = t2v_summary(clips[:25], lambda c: rerender(c, other_shape))
    assert s["shape"] <= 0.05 and s["all"] <= 0.05
    assert s["colour"] >= 0.95


def test_a_glyph_lost_after_the_first_frame_fails_shape_but_not_first_frame_shape(
    clips: list[Clip],
) -> None:
    def lost(c: Clip) -> np.ndarray:
        frames = rerender(c, other_shape)
        frames[0] = c.frames[0]
        return frames

    s = t2v_summary(clips[:25], lost)
    assert s["shape"] <= 0.05 and s["all"] <= 0.05
    assert s["first_frame_shape"] >= 0.95 and s["colour"] >= 0.95
    wrong_from_the_start = t2v_summary(clips[:25], lambda c: rerender(c, other_shape))
    assert wrong_from_the_start["first_frame_shape"] <= 0.05


def test_reversed_frames_fail_direction(clips: list[Clip]) -> None:
    s = t2v_summary(clips[:25], lambda c: c.frames[::-1].copy())
    assert s["direction"] <= 0.05 and s["all"] <= 0.05


def test_still_frames_fail_direction(clips: list[Clip]) -> None:
    s = t2v_summary(clips[:25], lambda c: np.repeat(c.frames[:1], len(c.frames), axis=0))
    assert s["direction"] == 0.0 and s["position"] >= 0.95


def test_only_the_named_attributes_are_scored(clips: list[Clip]) -> None:
    # a caption without position and motion ("a red square") is met by the object anywhere,
    # moving any way; its shape and colour still count
    some = clips[:25]
    reversed_ = [c.frames[::-1].copy() for c in some]
    open_ = summarise(
        [
            score_text_to_video(v, c.spec, ("shape", "colour"))
            for v, c in zip(reversed_, some, strict=True)
        ]
    )
    assert "position" not in open_ and "direction" not in open_
    assert open_["all"] >= 0.95 and open_["shape"] >= 0.95, open_
    motion = ("shape", "colour", "direction")
    named = summarise(
        [score_text_to_video(v, c.spec, motion) for v, c in zip(reversed_, some, strict=True)]
    )
    assert named["direction"] <= 0.05 and named["all"] <= 0.05  # named, so it counts
    wrong = summarise(
        [score_text_to_video(rerender(c, other_colour), c.spec, ("shape", "colour")) for c in clips]
    )
    assert wrong["colour"] == 0.0 and wrong["all"] == 0.0
    for bad in (("shape",), ("shape", "colour", "size")):
        with pytest.raises(ValueError, match="shape and colour"):
            score_text_to_video(clips[0].frames, clips[0].spec, bad)


def test_noise_fails(clips: list[Clip]) -> None:
    rng = np.random.default_rng(2)
    pure = t2v_summary(clips[:15], lambda c: rng.integers(0, 256, c.frames.shape, dtype=np.uint8))
    assert pure["all"] == 0.0 and pure["count"] == 0.0
    heavy = t2v_summary(
        clips[:15], lambda c: to_uint8(c.frames + rng.normal(0, 150, c.frames.shape))
    )
    assert heavy["all"] <= 0.3
    black = t2v_summary(clips[:5], lambda c: np.zeros_like(c.frames))
    assert black["all"] == 0.0 and black["colour"] == 0.0


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    digit=st.sampled_from(DIGITS),
    colour=st.sampled_from(list(COLOURS)),
    position=st.sampled_from(list(POSITIONS)),
    pick=st.integers(0, 3),
    gain=st.floats(0.55, 1.1),
)
def test_any_single_object_is_read_right(
    kind: str, digit: int, colour: str, position: str, pick: int, gain: float
) -> None:
    """Every attribute value is readable, also when the clip is dimmer or brighter."""
    dirs = ALLOWED_DIRECTIONS[position]
    obj = ObjectSpec(
        kind, colour, position, dirs[pick % len(dirs)], digit if kind == "digit" else None
    )
    clip = render_clip(ClipSpec((obj,)))
    s = score_text_to_video(to_uint8(blur(clip.frames, 0.7) * gain), clip.spec)
    assert s["all"] and s["count"], (obj, s)


def test_sketch_agreement(clips: list[Clip]) -> None:
    rng = np.random.default_rng(3)
    clean = summarise([score_sketch(c.frames, c.sketch) for c in clips[:20]])
    assert clean["iou"] == 1.0 and clean["class_iou"] == 1.0
    vq = summarise([score_sketch(vq_like(c.frames, rng), c.sketch) for c in clips[:20]])
    assert vq["iou"] >= 0.85 and vq["class_iou"] >= 0.8
    image = summarise([score_sketch(c.frames[0], c.sketch[0]) for c in clips[:20]])
    assert image["iou"] == 1.0
    swapped = summarise(
        [score_sketch(a.frames, b.sketch) for a, b in zip(clips[:20], clips[1:21], strict=True)]
    )
    assert swapped["iou"] <= 0.3
    shape = summarise([score_sketch(rerender(c, other_shape), c.sketch) for c in clips[:20]])
    assert shape["class_iou"] <= 0.3 < shape["iou"]


def test_position_error(clips: list[Clip]) -> None:
    rng = np.random.default_rng(4)
    assert position_error(clips[0].frames, clips[0], first_k=1) == 0.0
    vq = np.mean([position_error(vq_like(c.frames, rng), c, first_k=2) for c in clips[:20]])
    assert vq < 1.0
    shifted = [position_error(np.roll(c.frames, 4, axis=2), c, first_k=1) for c in clips[:20]]
    assert np.median(shifted) == pytest.approx(4.0, abs=0.5)
    still = np.mean(
        [position_error(np.repeat(c.frames[:1], 8, axis=0), c, first_k=1) for c in clips[:20]]
    )
    assert still > 8.0
    blank = np.zeros_like(clips[0].frames)
    assert position_error(blank, clips[0], first_k=1) == 64.0  # missing: one frame side


def test_psnr() -> None:
    a = np.full((8, 8, 3), 100, dtype=np.uint8)
    b = a + np.uint8(10)
    assert psnr(a, a) == 100.0
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 100))
    mask = np.zeros((8, 8), dtype=bool)
    mask[:4] = True
    c = a.copy()
    c[4:] = 0
    assert psnr(a, c, mask) == 100.0 and psnr(a, c) < 20
    with pytest.raises(ValueError, match="mask"):
        psnr(a, c, np.zeros((8, 8), dtype=bool))


def test_score_edit() -> None:
    ds = SyntheticVideoDataset(10, seed=2)
    good, unchanged, video = [], [], []
    for i in range(10):
        e = ds.edit_sample(i)
        src, tgt, keep, k = e.source.frames[0], e.target.frames[0], e.keep[0], e.edited_object
        good.append(score_edit(tgt, src, keep, e.target.spec, edited_object=k))
        unchanged.append(score_edit(src, src, keep, e.target.spec, edited_object=k))
        video.append(score_edit(e.target.frames, e.source.frames, e.keep, e.target.spec))
    g, u, v = summarise(good), summarise(unchanged), summarise(video)
    assert g["psnr_kept"] == 100.0 and g["all"] == 1.0 and "direction" not in g
    assert u["psnr_kept"] == 100.0 and u["all"] == 0.0
    assert v["all"] == 1.0 and v["direction"] == 1.0
    rng = np.random.default_rng(5)
    noisy = to_uint8(ds.edit_sample(0).target.frames + rng.normal(0, 20, (8, 64, 64, 3)))
    e = ds.edit_sample(0)
    assert score_edit(noisy, e.source.frames, e.keep, e.target.spec)["psnr_kept"] < 30


def test_tracks_follow_both_objects(clips: list[Clip]) -> None:
    clip = next(c for c in clips if len(c.spec.objects) == 2)
    tracks = {t.colour: t for t in track_objects(clip.frames)}
    for k, obj in enumerate(clip.spec.objects):
        np.testing.assert_allclose(tracks[obj.colour].centres, clip.centres[:, k])


def test_summarise_and_input_checks() -> None:
    s = summarise([{"all": True, "psnr_kept": 30.0}, {"all": False, "psnr_kept": 20.0}])
    assert s == {"all": 0.5, "psnr_kept": 25.0, "n": 2.0}
    with pytest.raises(ValueError):
        summarise([])
    spec = ClipSpec((ObjectSpec("square", "red", "centre", "left"),))
    with pytest.raises(TypeError, match="uint8"):
        score_text_to_video(np.zeros((8, 64, 64, 3), dtype=np.float32), spec)
    with pytest.raises(ValueError, match="T, H, W, 3"):
        score_text_to_video(np.zeros((64, 64, 3), dtype=np.uint8), spec)
