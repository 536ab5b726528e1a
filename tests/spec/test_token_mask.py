"""The pixel-mask -> token-mask rule (``nuwa.spec.token_mask``) against the obvious loop over
patches, on random masks of sizes that are and are not multiples of the grid."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nuwa.spec.token_mask import patch_bounds, token_mask


def token_mask_loop(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Per token, any pixel of rows floor(i*H/h) .. ceil((i+1)*H/h) and the same for columns."""
    height, width = mask.shape[-2:]
    h, w = grid
    out = np.zeros((*mask.shape[:-2], h, w), dtype=bool)
    for i in range(h):
        r0, r1 = math.floor(i * height / h), math.ceil((i + 1) * height / h)
        for j in range(w):
            c0, c1 = math.floor(j * width / w), math.ceil((j + 1) * width / w)
            out[..., i, j] = mask[..., r0:r1, c0:c1].any(axis=(-2, -1))
    return out


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    lead=st.integers(0, 2),
    density=st.floats(0.0, 0.3),
    seed=st.integers(0, 2**31 - 1),
)
def test_token_mask_is_the_patch_loop(height, width, h, w, lead, density, seed) -> None:
    rng = np.random.default_rng(seed)
    mask = rng.random((2,) * lead + (height, width)) < density
    np.testing.assert_array_equal(token_mask(mask, (h, w)), token_mask_loop(mask, (h, w)))


@settings(max_examples=40, deadline=None)
@given(pixels=st.integers(1, 64), tokens=st.integers(1, 16))
def test_patches_cover_every_pixel(pixels, tokens) -> None:
    start, end = patch_bounds(pixels, tokens)
    covered = np.zeros(pixels, dtype=int)
    for s, e in zip(start, end, strict=True):
        assert 0 <= s < e <= pixels  # a patch is never empty ...
        covered[s:e] += 1
    assert (covered >= 1).all()  # ... and every pixel is in one


def test_multiples_are_the_vqgan_patches() -> None:
    mask = np.zeros((16, 16), dtype=bool)
    mask[5, 9] = True  # in the 4x4 patch (1, 2)
    expected = np.zeros((4, 4), dtype=bool)
    expected[1, 2] = True
    np.testing.assert_array_equal(token_mask(mask, (4, 4)), expected)
    # a keep-mask reads the other way: a token is kept only when all of its pixels are
    keep = ~mask
    np.testing.assert_array_equal(~token_mask(~keep, (4, 4)), ~expected)


@pytest.mark.parametrize(
    ("shape", "grid", "message"),
    [((4,), (2, 2), "must be"), ((0, 4), (2, 2), "must be"), ((4, 4), (0, 2), "at least 1x1")],
)
def test_bad_masks_and_grids_are_named(shape, grid, message) -> None:
    with pytest.raises(ValueError, match=message):
        token_mask(np.zeros(shape, dtype=bool), grid)
