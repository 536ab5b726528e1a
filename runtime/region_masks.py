"""The region to generate: a rectangle or a mask picture -> a pixel mask -> the tokens to sample.

A rectangle ``x0,y0,x1,y1`` is in the input's own pixels (x1, y1 exclusive); one reaching outside
the frame is clipped to it with a warning, one wholly outside is an error. A mask array or
picture covers the whole frame (True / white = generate); one of another size than the model's
is scaled with a warning. Pixels map to tokens by :func:`nuwa.spec.token_mask.token_mask` (a
token is generated if any pixel of its patch is masked).
"""

from __future__ import annotations

import numpy as np

from nuwa.runtime.request_checks import is_int
from nuwa.spec.errors import NuwaInputError, warn_input
from nuwa.spec.token_mask import token_mask

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels (x1, y1 exclusive)


def parse_rect(text: str) -> Rect:
    parts = text.split(",")
    try:
        x0, y0, x1, y1 = (int(p) for p in parts)
    except ValueError:
        raise NuwaInputError(
            f"mask {text!r} is neither a file nor a rectangle x0,y0,x1,y1 in pixels"
        ) from None
    return x0, y0, x1, y1


def check_rect(rect: object) -> Rect:
    """A rectangle ``(x0, y0, x1, y1)`` of four ints."""
    if not (isinstance(rect, tuple) and len(rect) == 4 and all(is_int(v) for v in rect)):
        raise NuwaInputError(f"a mask rectangle must be four ints (x0, y0, x1, y1), got {rect!r}")
    x0, y0, x1, y1 = (int(v) for v in rect)
    return x0, y0, x1, y1


def rect_mask(rect: Rect, height: int, width: int) -> np.ndarray:
    """The pixels of ``rect`` (x1, y1 exclusive) in a ``height x width`` frame. A rectangle that
    reaches outside the frame (negative coordinates included) is clipped to it with a warning;
    an empty one, or one wholly outside, is an error saying so."""
    x0, y0, x1, y1 = rect
    text = f"mask rectangle {x0},{y0},{x1},{y1}"
    if x0 >= x1 or y0 >= y1:
        raise NuwaInputError(
            f"{text} is empty, so it selects nothing (need x0 < x1 and y0 < y1; x1 and y1 are "
            "exclusive)"
        )
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        raise NuwaInputError(
            f"{text} lies wholly outside the {width}x{height} input, so it selects nothing "
            f"(x runs 0..{width}, y 0..{height})"
        )
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1):
        warn_input(
            f"{text} reaches outside the {width}x{height} input; using the part inside: "
            f"{cx0},{cy0},{cx1},{cy1}"
        )
    mask = np.zeros((height, width), dtype=bool)
    mask[cy0:cy1, cx0:cx1] = True
    return mask


def pixel_mask(mask: object, height: int, width: int, size: int, threshold: int) -> np.ndarray:
    """The region to generate as ``bool (H, W)``: ``mask`` as a rectangle (tuple or
    ``"x0,y0,x1,y1"``, in the ``height x width`` input's pixels) or an array (bool, or a picture
    ``(H, W, 3|4)`` whose brightest channel above ``threshold`` marks a pixel; one not
    ``size x size`` gets a warning that it is scaled to the model's frames)."""
    if isinstance(mask, str):
        mask = parse_rect(mask)
    if isinstance(mask, tuple):
        pixels = rect_mask(check_rect(mask), height, width)
    elif isinstance(mask, np.ndarray):
        pixels = mask
        if pixels.ndim == 3 and pixels.shape[-1] in (3, 4):
            pixels = pixels[..., :3].max(-1) > threshold
        if pixels.ndim != 2 or 0 in pixels.shape:
            raise NuwaInputError(
                f"a mask must be (H, W) or a picture (H, W, 3), got shape {mask.shape}"
            )
        if pixels.shape != (size, size):
            warn_input(
                f"the mask is {pixels.shape[1]}x{pixels.shape[0]} pixels; scaled to the model's "
                f"{size}x{size} (a token is generated if any of its pixels is masked)"
            )
        pixels = pixels.astype(bool)
    else:
        raise NuwaInputError(
            "mask must be a bool array, a rectangle (x0, y0, x1, y1), 'x0,y0,x1,y1' or a mask "
            f"picture's path, got {type(mask).__name__}"
        )
    if not pixels.any():
        raise NuwaInputError("the mask selects nothing (no pixel is set): no region to generate")
    return pixels


def tokens_to_generate(pixels: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """``bool (H, W)`` region -> ``bool (h, w)``: the tokens sampled (the spec's any-pixel
    rule)."""
    return token_mask(pixels, grid)
