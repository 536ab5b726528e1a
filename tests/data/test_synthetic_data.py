"""The synthetic captioned-video dataset (:mod:`nuwa.data.synthetic_data`): determinism, splits,
random specs and their shares, image and edit samples."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from nuwa.data.clip_rendering import (
    object_masks,
)
from nuwa.data.synthetic_data import SyntheticVideoDataset, caption_split


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


def test_modules_import_without_torch() -> None:
    code = (
        "import sys, nuwa.data.clip_specs, nuwa.data.clip_rendering, nuwa.data.synthetic_data, "
        "nuwa.data.object_reading, nuwa.data.quality_checker, nuwa.data.long_video_scores; "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
