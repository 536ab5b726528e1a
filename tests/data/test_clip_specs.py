"""Clip specs and their captions (:mod:`nuwa.data.clip_specs`): every attribute named, the caption
bound, invalid specs refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from nuwa.data.clip_specs import (
    ClipSpec,
    ObjectSpec,
    max_caption_bytes,
)

from .object_strategies import object_specs


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
