"""A request's pictures, read: files to arrays, then frames as ``(T, S, S, 3)`` uint8 and
sketches as class maps ``(T, S, S)`` at the model's size.

One rule for every input: one whose side is not the model's (``image_size`` / ``sketch_size``)
is resized to it with a one-line :class:`~nuwa.spec.errors.NuwaInputWarning` (images and videos
by the model's resize filter, sketches nearest so class colours stay exact). Sketch colours are
read by the model's input rules (:mod:`nuwa.spec.input_rules`): a colour within the snapping
distance of exactly one palette colour snaps to it. NumPy only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nuwa.runtime.media import read_frames, read_image, read_mask, resize_frames, resize_labels
from nuwa.runtime.model_directory import builtin_input_rules
from nuwa.runtime.region_masks import parse_rect
from nuwa.spec.errors import NuwaInputError, warn_input
from nuwa.spec.input_rules import InputRules
from nuwa.spec.model_spec import ModelSpec

ImageInput = np.ndarray | str | Path
MaskInput = np.ndarray | tuple[int, int, int, int] | str | Path
MASK_PICTURE_SUFFIXES = (".png", ".gif", ".bmp", ".jpg", ".jpeg", ".webp")


def read_pixels(x: ImageInput | None, what: str, video: bool) -> np.ndarray | None:
    """An array as given, or the picture / clip file ``x`` read as RGB."""
    if x is None or isinstance(x, np.ndarray):
        return x
    if not isinstance(x, (str, Path)):
        raise NuwaInputError(
            f"{what} must be a NumPy array or a file path (str or Path), got {type(x).__name__}"
        )
    return read_frames(x, what) if video else read_image(x, what)


def read_mask_input(mask: MaskInput | None, threshold: int = 127) -> object:
    """An array or rectangle as given; a path to a mask picture read as ``bool (H, W)``
    (brighter than ``threshold`` = generate); other text kept as a rectangle ``x0,y0,x1,y1``."""
    if mask is None or isinstance(mask, (np.ndarray, tuple)):
        return mask
    if not isinstance(mask, (str, Path)):
        raise NuwaInputError(
            "mask must be a bool array, a rectangle (x0, y0, x1, y1), 'x0,y0,x1,y1' or a mask "
            f"picture's path, got {type(mask).__name__}"
        )
    path = Path(mask)
    if path.suffix.lower() in MASK_PICTURE_SUFFIXES or path.exists():
        return read_mask(path, threshold)
    return parse_rect(str(mask))


def read_inputs(
    sketch: ImageInput | None,
    image: ImageInput | None,
    mask: MaskInput | None,
    video: ImageInput | None,
    mask_threshold: int,
) -> dict[str, object]:
    """A request's pictures as arrays (files read), in the order a user gave them."""
    return {
        "sketch": read_pixels(sketch, "sketch", video=True),
        "image": read_pixels(image, "image", video=False),
        "mask": read_mask_input(mask, mask_threshold),
        "video": read_pixels(video, "video", video=True),
    }


def as_frames(x: object, what: str, video: bool) -> np.ndarray:
    """An image ``(H, W, 3)`` or clip ``(T, H, W, 3)`` -> ``(T, H, W, 3)`` uint8."""
    if not isinstance(x, np.ndarray):
        raise NuwaInputError(f"{what} must be a NumPy array or a file path, got {type(x).__name__}")
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[0] == 0:
        raise NuwaInputError(f"{what} must be RGB (H, W, 3) or frames (T, H, W, 3), got {x.shape}")
    if not video and x.shape[0] != 1:
        x = x[:1]
    if x.dtype != np.uint8:
        raise NuwaInputError(f"{what} must be uint8 RGB, got {x.dtype}")
    return x


def fit_frames(frames: np.ndarray, size: int, what: str, resample: str = "bicubic") -> np.ndarray:
    """``(T, H, W, 3)`` at the model's ``size x size``: resized (``resample``, the model's input
    rules) with a warning."""
    height, width = frames.shape[1:3]
    if (height, width) == (size, size):
        return frames
    warn_input(f"the {what} is {width}x{height} pixels; resized to the model's {size}x{size}")
    return resize_frames(frames, size, resample)


def sketch_class_maps(
    sketch: object, spec: ModelSpec, video: bool, rules: InputRules | None = None
) -> np.ndarray:
    """A sketch as palette RGB ``([T,] S, S, 3)`` or class ids ``([T,] S, S)`` -> ``(T, S, S)``.
    Colours are read by the model's input rules (``rules``, default: the built-in ones): its
    palette, a colour within the snapping distance of exactly one palette colour snapping to
    it."""
    rules = rules or builtin_input_rules(spec)
    if not isinstance(sketch, np.ndarray):
        raise NuwaInputError(
            f"sketch must be a NumPy array or a file path, got {type(sketch).__name__}"
        )
    s = sketch
    if s.ndim >= 3 and s.shape[-1] == 3 and s.dtype == np.uint8:
        try:
            s = rules.sketch.to_classes(s)
        except ValueError as exc:
            raise NuwaInputError(f"sketch: {exc}") from None
    if s.ndim == 2:
        s = s[None]
    if s.ndim != 3 or s.shape[0] == 0:
        raise NuwaInputError(
            f"a sketch must be (H, W) class ids or (H, W, 3) colours, got {s.shape}"
        )
    if not np.issubdtype(s.dtype, np.integer):
        raise NuwaInputError(f"sketch class ids must be integers, got {s.dtype}")
    size = rules.sketch.size
    if s.shape[1:] != (size, size):
        warn_input(
            f"the sketch is {s.shape[2]}x{s.shape[1]} pixels; resized to the model's "
            f"{size}x{size} (nearest: colours stay exact)"
        )
        s = resize_labels(s, size)
    if not video:
        s = s[:1]
    s = s.astype(np.int64)
    if s.min() < 0 or s.max() >= spec.sketch_classes:
        raise NuwaInputError(
            f"sketch class ids must be in [0, {spec.sketch_classes}), got "
            f"[{int(s.min())}, {int(s.max())}]"
        )
    return s


def spread_frames(maps: np.ndarray, frames: int) -> np.ndarray:
    """Spread a sketch's ``Ts`` frames evenly over ``frames`` condition frames (nearest in time):
    one sketch frame is held for the whole clip; a longer sketch is subsampled."""
    idx = (np.arange(frames) * maps.shape[0]) // frames
    return maps[idx]
