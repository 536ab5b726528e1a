"""The pixel-mask -> token-mask rule, defined once: a token is marked if ANY pixel of its patch is.

A frame of ``H x W`` pixels holds ``h x w`` tokens; token ``(i, j)``'s patch is rows
``floor(i*H/h) .. ceil((i+1)*H/h)`` and columns ``floor(j*W/w) .. ceil((j+1)*W/w)`` (end
exclusive): the VQ-GAN's ``f x f`` patches when ``H = f*h``, and for other sizes every pixel
belongs to at least one patch (the patches of a non-multiple size overlap by a pixel).

The runtime marks the tokens to generate (a token is sampled if any of its pixels is to be
generated); a keep-mask reads the other way round: a token is kept only when all of its pixels
are, ``~token_mask(~keep)``. Vectorised with cumulative sums (any leading axes); the obvious
loop over patches is the reference its tests compare against. NumPy only.
"""

from __future__ import annotations

import numpy as np


def patch_bounds(pixels: int, tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) pixel of each of ``tokens`` patches along a side of
    ``pixels``."""
    i = np.arange(tokens, dtype=np.int64)
    start = (i * pixels) // tokens
    end = -((-(i + 1) * pixels) // tokens)  # ceil((i + 1) * pixels / tokens)
    return start, end


def token_mask(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """``bool (..., H, W)`` -> ``bool (..., h, w)``: True where any pixel of the token's patch
    is True (``grid = (h, w)``)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim < 2 or 0 in mask.shape[-2:]:
        raise ValueError(f"a pixel mask must be (..., H, W) with H, W > 0, got {mask.shape}")
    h, w = grid
    if h < 1 or w < 1:
        raise ValueError(f"a token grid must be at least 1x1, got {grid}")
    rows = _any_in_patches(mask, h, axis=mask.ndim - 2)
    return _any_in_patches(rows, w, axis=mask.ndim - 1)


def _any_in_patches(mask: np.ndarray, tokens: int, axis: int) -> np.ndarray:
    """Along ``axis``: whether each of ``tokens`` patches holds a True."""
    start, end = patch_bounds(mask.shape[axis], tokens)
    counts = np.cumsum(mask, axis=axis, dtype=np.int64)
    pad = [(0, 0)] * mask.ndim
    pad[axis] = (1, 0)
    counts = np.pad(counts, pad)  # counts[k] = Trues before pixel k
    return np.take(counts, end, axis=axis) - np.take(counts, start, axis=axis) > 0
