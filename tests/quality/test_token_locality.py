from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nuwa.data.synthetic_data import SyntheticVideoDataset
from nuwa.quality.token_locality import dilate, object_tokens, token_locality

SIDE, PATCH = 64, 8


def patch_codes(frames: np.ndarray) -> np.ndarray:
    """A perfectly local tokenizer: each code is a hash of its own 8x8 patch."""
    t = len(frames)
    cells = frames.reshape(t, SIDE // PATCH, PATCH, SIDE // PATCH, PATCH, 3).astype(np.int64)
    return (cells * np.arange(1, 4)).sum(axis=(2, 4, 5)) % 997


def global_codes(frames: np.ndarray) -> np.ndarray:
    """A frame-wide one: every code also depends on where the frame's mass lies (its
    brightness-weighted mean column, which an object moving sideways shifts)."""
    brightness = frames.astype(np.float64).sum(-1)  # (T, S, S)
    column = (brightness * np.arange(SIDE)).sum((1, 2)) / brightness.sum((1, 2)).clip(1)
    vertical = (brightness * np.arange(SIDE)[:, None]).sum((1, 2)) / brightness.sum((1, 2)).clip(1)
    shift = np.round((column + vertical) * 10).astype(np.int64)
    return patch_codes(frames) + shift[:, None, None]


@pytest.fixture(scope="module")
def clips():
    ds = SyntheticVideoDataset(6, seed=3, frames=4, size=SIDE)
    return [ds[i] for i in range(6)]


def test_a_patch_local_tokenizer_changes_no_far_token(clips) -> None:
    result = token_locality(clips, patch_codes)
    assert result.far_changed == 0.0 and result.far_tokens > 0
    assert result.near_changed > 0.2  # the objects move
    assert result.near_tokens + result.far_tokens == 6 * 3 * 64


def test_a_frame_wide_tokenizer_changes_far_tokens(clips) -> None:
    result = token_locality(clips, global_codes)
    assert result.far_changed > 0.5


def test_still_frames_change_nothing(clips) -> None:
    still = [dataclasses.replace(c) for c in clips]
    for c in still:
        c.frames = np.repeat(c.frames[:1], len(c.frames), axis=0)
        c.instances = np.repeat(c.instances[:1], len(c.instances), axis=0)
    result = token_locality(still, patch_codes)
    assert result.near_changed == 0.0 and result.far_changed == 0.0


def _dilate_reference(mask: np.ndarray, radius: int) -> np.ndarray:
    h, w = mask.shape
    out = np.zeros_like(mask)
    for y in range(h):
        for x in range(w):
            out[y, x] = mask[
                max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1
            ].any()
    return out


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 7), st.integers(1, 7), st.integers(0, 3), st.integers(0, 2**31 - 1))
def test_dilate_matches_the_loop(h: int, w: int, radius: int, seed: int) -> None:
    mask = np.random.default_rng(seed).random((h, w)) < 0.15
    np.testing.assert_array_equal(dilate(mask, radius), _dilate_reference(mask, radius))


def test_object_tokens_marks_covered_cells() -> None:
    inst = np.zeros((1, 16, 16), dtype=np.uint8)
    inst[0, 5, 12] = 1
    expected = np.zeros((1, 4, 4), dtype=bool)
    expected[0, 1, 3] = True
    np.testing.assert_array_equal(object_tokens(inst, (4, 4)), expected)


def test_bad_encoder_output_is_named(clips) -> None:
    with pytest.raises(ValueError, match=r"encode must return \(T, h, w\) codes"):
        token_locality(clips, lambda f: patch_codes(f)[0])
    with pytest.raises(ValueError, match="radius must be >= 0"):
        token_locality(clips, patch_codes, radius=-1)
