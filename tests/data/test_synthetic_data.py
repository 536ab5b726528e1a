"""The synthetic captioned-video dataset: determinism, splits, captions, sketches, ground truth."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nuwa.data.clip_rendering import (
    object_masks,
    object_templates,
    render_clip,
    rgb_to_sketch,
    sketch_to_rgb,
    velocity,
)
from nuwa.data.clip_specs import (
    ALLOWED_DIRECTIONS,
    COLOURS,
    DIGITS,
    DIRECTIONS,
    KINDS,
    POSITIONS,
    ClipSpec,
    ObjectSpec,
    max_caption_bytes,
)
from nuwa.data.synthetic_data import SyntheticVideoDataset, caption_split
from nuwa.spec.sketch_palette import SKETCH_CLASSES, SKETCH_PALETTE


@st.composite
def object_specs(draw: st.DrawFn) -> ObjectSpec:
    kind = draw(st.sampled_from(KINDS))
    position = draw(st.sampled_from(list(POSITIONS)))
    return ObjectSpec(
        kind=kind,
        colour=draw(st.sampled_from(list(COLOURS))),
        position=position,
        direction=draw(st.sampled_from(ALLOWED_DIRECTIONS[position])),
        digit=draw(st.sampled_from(DIGITS)) if kind == "digit" else None,
        offset=(draw(st.integers(-1, 1)), draw(st.integers(-1, 1))),
    )


@pytest.fixture(scope="module")
def train() -> SyntheticVideoDataset:
    return SyntheticVideoDataset(40, seed=7)


def test_same_seed_same_arrays(train: SyntheticVideoDataset) -> None:
    again = SyntheticVideoDataset(40, seed=7)
    for i in (0, 5, 39):
        a, b = train[i], again[i]
        assert a.caption == b.caption
        for name in ("frames", "sketch", "instances", "centres", "boxes"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    other = SyntheticVideoDataset(40, seed=8)
    assert [train.spec(i) for i in range(10)] != [other.spec(i) for i in range(10)]


def test_index_is_independent_of_dataset_length() -> None:
    assert SyntheticVideoDataset(5, seed=1).spec(3) == SyntheticVideoDataset(500, seed=1).spec(3)


def test_splits_never_share_a_caption() -> None:
    tr = SyntheticVideoDataset(200, seed=3, split="train")
    ho = SyntheticVideoDataset(60, seed=3, split="heldout")
    tr_caps = {tr.spec(i).caption() for i in range(len(tr))}
    ho_caps = {ho.spec(i).caption() for i in range(len(ho))}
    assert not tr_caps & ho_caps
    assert all(caption_split(c) == "train" for c in tr_caps)
    assert all(caption_split(c) == "heldout" for c in ho_caps)


def test_captions_name_every_attribute() -> None:
    red = ObjectSpec("square", "red", "top left", "right")
    three = ObjectSpec("digit", "blue", "centre", "down", digit=3)
    assert ClipSpec((red,)).caption() == "a red square at the top left moves right"
    assert ClipSpec((three, red)).caption() == (
        "the digit 3 in blue at the centre moves down and a red square at the top left moves right"
    )
    assert ClipSpec((red,)).caption(motion=False) == "a red square at the top left"
    # captions that leave attributes out (attribute dropout in training)
    assert ClipSpec((red,)).caption(position=False) == "a red square moves right"
    assert ClipSpec((three, red)).caption(motion=False, position=False) == (
        "the digit 3 in blue and a red square"
    )


@settings(max_examples=40, deadline=None)
@given(obj=object_specs())
def test_caption_matches_spec_and_fits_the_bound(obj: ObjectSpec) -> None:
    caption = ClipSpec((obj,)).caption()
    for word in (obj.colour, obj.position, f"moves {obj.direction}"):
        assert word in caption
    assert (f"the digit {obj.digit} " if obj.digit is not None else f" {obj.kind} ") in caption
    assert len(caption.encode()) <= max_caption_bytes(1)


@settings(max_examples=40, deadline=None)
@given(obj=object_specs())
def test_render_is_exact(obj: ObjectSpec) -> None:
    """Objects stay whole in frame, move SPEED px per frame, and sketch/instances/GT align."""
    clip = render_clip(ClipSpec((obj,)))
    fg = clip.frames.any(-1)
    np.testing.assert_array_equal(fg, clip.sketch > 0)
    np.testing.assert_array_equal(fg, clip.instances == 1)
    assert (clip.sketch[fg] == SKETCH_CLASSES.index(obj.kind)).all()
    assert (clip.frames[fg] == COLOURS[obj.colour]).all()
    areas = fg.sum(axis=(1, 2))
    assert (areas == object_templates()[obj.label].sum()).all()  # never clipped by the border
    vx, vy = velocity(obj.direction, 64)
    steps = np.arange(clip.frames.shape[0])[:, None] * np.array([vx, vy])
    np.testing.assert_allclose(clip.centres[:, 0] - clip.centres[0, 0], steps)
    for t in range(clip.frames.shape[0]):
        ys, xs = np.nonzero(fg[t])
        np.testing.assert_allclose(clip.centres[t, 0], (xs.mean(), ys.mean()))
        assert tuple(clip.boxes[t, 0]) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_start_position_and_direction_are_where_the_caption_says() -> None:
    for position, (fx, fy) in POSITIONS.items():
        for direction in ALLOWED_DIRECTIONS[position]:
            clip = render_clip(ClipSpec((ObjectSpec("circle", "green", position, direction),)))
            x0, y0 = clip.centres[0, 0]
            assert abs(x0 - fx * 64) < 1 and abs(y0 - fy * 64) < 1
            dx, dy = clip.centres[-1, 0] - clip.centres[0, 0]
            assert (np.sign(dx), np.sign(dy)) == DIRECTIONS[direction]


def test_two_object_clips_have_distinct_colours_and_never_touch(
    train: SyntheticVideoDataset,
) -> None:
    pairs = [train.spec(i) for i in range(len(train)) if len(train.spec(i).objects) == 2]
    assert len(pairs) > 5
    for spec in pairs:
        masks = object_masks(spec)  # (2, T, H, W)
        assert not (masks[0] & masks[1]).any()
        assert spec.objects[0].colour != spec.objects[1].colour


def test_size_and_frames_are_configurable() -> None:
    ds = SyntheticVideoDataset(6, seed=0, frames=4, size=32)
    clip = ds[0]
    assert clip.frames.shape == (4, 32, 32, 3) and clip.sketch.shape == (4, 32, 32)
    for i in range(len(ds)):
        areas = ds[i].frames.any(-1).sum(axis=(1, 2))
        assert areas.min() > 0


def test_image_sample_is_the_first_frame(train: SyntheticVideoDataset) -> None:
    clip, img = train[3], train.image_sample(3)
    np.testing.assert_array_equal(img.image, clip.frames[0])
    np.testing.assert_array_equal(img.sketch, clip.sketch[0])
    np.testing.assert_array_equal(img.centres, clip.centres[0])
    assert img.caption == clip.spec.caption(motion=False) and "moves" not in img.caption


def test_edit_sample_changes_one_object_inside_the_edit_region(
    train: SyntheticVideoDataset,
) -> None:
    for i in range(10):
        edit = train.edit_sample(i)
        keep = edit.keep[..., None].repeat(3, -1)
        np.testing.assert_array_equal(edit.source.frames[keep], edit.target.frames[keep])
        assert not np.array_equal(edit.source.frames, edit.target.frames)
        changed = [
            k
            for k, (a, b) in enumerate(
                zip(edit.source.spec.objects, edit.target.spec.objects, strict=True)
            )
            if a != b
        ]
        assert changed == [edit.edited_object]
        a, b = edit.source.spec.objects[changed[0]], edit.target.spec.objects[changed[0]]
        assert (a.colour != b.colour) != (a.label != b.label)
        assert (a.position, a.direction, a.offset) == (b.position, b.direction, b.offset)
        assert edit.edit_text == edit.target.caption


def test_sketch_palette_round_trip(train: SyntheticVideoDataset) -> None:
    sketch = train[1].sketch
    rgb = sketch_to_rgb(sketch)
    assert rgb.shape == (*sketch.shape, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb_to_sketch(rgb), sketch)
    assert len({tuple(c) for c in SKETCH_PALETTE}) == len(SKETCH_CLASSES)


def test_unknown_sketch_colour_is_named() -> None:
    rgb = sketch_to_rgb(np.zeros((4, 4), dtype=np.uint8))
    rgb[1, 2] = (1, 2, 3)
    with pytest.raises(ValueError, match=r"RGB\(1, 2, 3\)"):
        rgb_to_sketch(rgb)


def test_digit_share_sets_how_often_objects_are_digits() -> None:
    def digits(ds: SyntheticVideoDataset) -> float:
        kinds = [o.kind for i in range(len(ds)) for o in ds.spec(i).objects]
        return float(np.mean([k == "digit" for k in kinds]))

    default = SyntheticVideoDataset(150, seed=9)
    assert digits(SyntheticVideoDataset(150, seed=9, digit_share=0.0)) == 0.0
    assert digits(SyntheticVideoDataset(150, seed=9, digit_share=1.0)) == 1.0
    raised = SyntheticVideoDataset(150, seed=9, digit_share=0.6)
    assert digits(default) + 0.15 < digits(raised) < 1.0
    shapes = [o.kind for i in range(len(raised)) for o in raised.spec(i).objects]
    assert {k for k in shapes if k != "digit"} == {"square", "circle", "triangle"}
    held = SyntheticVideoDataset(60, seed=9, split="heldout", digit_share=0.6)
    assert all(caption_split(held.spec(i).caption()) == "heldout" for i in range(len(held)))
    with pytest.raises(ValueError, match="digit_share"):
        SyntheticVideoDataset(4, digit_share=1.5)


def test_two_object_share_sets_how_often_clips_have_two_objects() -> None:
    def two(ds: SyntheticVideoDataset) -> float:
        return float(np.mean([len(ds.spec(i).objects) == 2 for i in range(len(ds))]))

    default = SyntheticVideoDataset(150, seed=9)
    unset = SyntheticVideoDataset(150, seed=9, two_object_share=None)
    assert all(default.spec(i) == unset.spec(i) for i in range(len(default)))  # seeds keep clips
    assert two(SyntheticVideoDataset(60, seed=9, two_object_share=0.0)) == 0.0
    assert two(SyntheticVideoDataset(60, seed=9, two_object_share=1.0)) == 1.0
    raised = SyntheticVideoDataset(150, seed=9, two_object_share=0.85)
    assert two(default) + 0.15 < two(raised) < 1.0
    one_only = SyntheticVideoDataset(20, seed=9, max_objects=1, two_object_share=1.0)
    assert two(one_only) == 0.0  # max_objects caps it
    held = SyntheticVideoDataset(60, seed=9, split="heldout", two_object_share=0.85)
    assert all(caption_split(held.spec(i).caption()) == "heldout" for i in range(len(held)))
    with pytest.raises(ValueError, match="two_object_share"):
        SyntheticVideoDataset(4, two_object_share=-0.1)


def test_invalid_specs_are_refused() -> None:
    with pytest.raises(ValueError, match="not allowed"):
        ObjectSpec("square", "red", "top left", "left")  # would leave the frame
    with pytest.raises(ValueError, match="digit"):
        ObjectSpec("digit", "red", "centre", "left")
    with pytest.raises(ValueError, match="colour"):
        ObjectSpec("square", "pink", "centre", "left")
    red = ObjectSpec("square", "red", "centre", "left")
    with pytest.raises(ValueError, match="different colours"):
        ClipSpec((red, ObjectSpec("circle", "red", "top left", "down")))


def test_modules_import_without_torch() -> None:
    code = (
        "import sys, nuwa.data.clip_specs, nuwa.data.clip_rendering, nuwa.data.synthetic_data, "
        "nuwa.data.object_reading, nuwa.data.quality_checker, nuwa.data.long_video_scores; "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
