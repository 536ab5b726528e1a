"""Hypothesis strategies for the synthetic data's specs, shared by the tests of
:mod:`nuwa.data.clip_specs` and :mod:`nuwa.data.clip_rendering`."""

from __future__ import annotations

from hypothesis import strategies as st

from nuwa.data.clip_specs import ALLOWED_DIRECTIONS, COLOURS, DIGITS, KINDS, POSITIONS, ObjectSpec


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
