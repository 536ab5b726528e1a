"""How local a frame tokenizer's codes are: between consecutive frames of a clip, the share of
tokens that change near the moving objects and far from them.

A transformer predicting the next frame has to predict every token that changes. If only the
tokens around an object change, "the square moves left" is a small, learnable rule; if tokens far
from any object change as well (a frame-wide normalisation in the tokenizer makes every code
depend on the whole frame), each clip looks different and the rule is buried. This measures it
on ground-truth clips, without the transformer.

A token is *near* when a token within ``radius`` tokens of it (Chebyshev distance) covers object
pixels in either of the two frames; *far* otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from nuwa.data.clip_rendering import Clip

Encode = Callable[[np.ndarray], np.ndarray]  # uint8 frames (T, S, S, 3) -> codes (T, h, w)


@dataclass(frozen=True)
class TokenLocality:
    near_changed: float  # share of near tokens whose code changes from frame t to t + 1
    far_changed: float  # the same for far tokens
    near_tokens: int  # near tokens counted (over all frame pairs)
    far_tokens: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def object_tokens(instances: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(T, S, S) instance maps -> (T, h, w) bool: the token covers at least one object pixel."""
    t, s, _ = instances.shape
    h, w = grid
    cells = instances.reshape(t, h, s // h, w, s // w)
    return (cells > 0).any(axis=(2, 4))


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """(..., h, w) bool -> the same, true within ``radius`` tokens (Chebyshev) of a true token."""
    out = mask.copy()
    h, w = mask.shape[-2:]
    for dy in range(-min(radius, h - 1), min(radius, h - 1) + 1):
        for dx in range(-min(radius, w - 1), min(radius, w - 1) + 1):
            src = mask[..., max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
            out[..., max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)] |= src
    return out


def token_locality(clips: list[Clip], encode: Encode, radius: int = 1) -> TokenLocality:
    """Share of near / far tokens that change between consecutive frames of ``clips``."""
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    counts = np.zeros(4, dtype=np.int64)  # near changed, near, far changed, far
    for clip in clips:
        if len(clip.frames) < 2:
            raise ValueError("token locality needs clips of at least 2 frames")
        codes = np.asarray(encode(clip.frames))
        if codes.ndim != 3 or codes.shape[0] != len(clip.frames):
            raise ValueError(f"encode must return (T, h, w) codes, got shape {codes.shape}")
        occupied = object_tokens(clip.instances, codes.shape[1:])
        near = dilate(occupied[:-1] | occupied[1:], radius)
        changed = codes[1:] != codes[:-1]
        counts += [(changed & near).sum(), near.sum(), (changed & ~near).sum(), (~near).sum()]
    near_changed, near_total, far_changed, far_total = (int(c) for c in counts)
    return TokenLocality(
        near_changed=near_changed / max(near_total, 1),
        far_changed=far_changed / max(far_total, 1),
        near_tokens=near_total,
        far_tokens=far_total,
    )
