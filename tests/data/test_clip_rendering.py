"""Rendering a clip spec (:mod:`nuwa.data.clip_rendering`): exact pixels, sketches and ground truth;
sketch PNG colours."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from nuwa.data.clip_rendering import (
    object_templates,
    render_clip,
    rgb_to_sketch,
    sketch_to_rgb,
    velocity,
)
from nuwa.data.clip_specs import (
    ALLOWED_DIRECTIONS,
    COLOURS,
    DIRECTIONS,
    POSITIONS,
    ClipSpec,
    ObjectSpec,
)
from nuwa.data.synthetic_data import SyntheticVideoDataset
from nuwa.spec.sketch_palette import SKETCH_CLASSES, SKETCH_PALETTE

from .object_strategies import object_specs


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


def test_sketch_palette_round_trip() -> None:
    sketch = SyntheticVideoDataset(40, seed=7)[1].sketch
    rgb = sketch_to_rgb(sketch)
    assert rgb.shape == (*sketch.shape, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb_to_sketch(rgb), sketch)
    assert len({tuple(c) for c in SKETCH_PALETTE}) == len(SKETCH_CLASSES)


def test_unknown_sketch_colour_is_named() -> None:
    rgb = sketch_to_rgb(np.zeros((4, 4), dtype=np.uint8))
    rgb[1, 2] = (1, 2, 3)
    with pytest.raises(ValueError, match=r"RGB\(1, 2, 3\)"):
        rgb_to_sketch(rgb)
