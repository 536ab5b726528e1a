"""Drawing a clip spec exactly (DESIGN §10): the objects' binary templates, their trajectories,
and the rendered frames with their ground truth; the colours of sketch PNGs.

Geometry is defined at 64 px and scales with ``size``: objects are ``OBJECT_SIZE`` = 20 px and
move ``SPEED`` = 3 px per frame (21 px over 8 frames). Templates (``object_templates``) are a
square, a circle, an apex-up triangle and the ten digits, one real handwritten sample per digit
from scikit-learn's ``load_digits``, upscaled and thresholded. ``render_clip`` draws solid
objects on black, with no anti-aliasing, and gives per frame a segmentation sketch (class map
over ``SKETCH_CLASSES``, the VQ-GAN-Seg input), an instance map and the objects' boxes and
centroids; ``sketch_to_rgb`` / ``rgb_to_sketch`` convert class maps to and from sketch PNG
colours (``SKETCH_PALETTE``). Pure numpy.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from nuwa.data.clip_specs import COLOURS, DIGITS, DIRECTIONS, POSITIONS, ClipSpec, ObjectSpec
from nuwa.spec.sketch_palette import SKETCH_CLASSES, SKETCH_PALETTE

REFERENCE_SIZE = 64  # geometry below is in pixels of a 64×64 frame and scales with the size
OBJECT_SIZE = 20  # object template side (px at 64)
SPEED = 3.0  # motion per frame (px at 64)
DIGIT_THRESHOLD = 0.35  # ink level at which an upscaled digit counts as foreground


# --------------------------------------------------------------------------- templates


def scaled(px: float, size: int) -> float:
    """A length given in pixels of a 64×64 frame, in pixels of a ``size``×``size`` frame."""
    return px * size / REFERENCE_SIZE


def object_side(size: int) -> int:
    return max(4, round(scaled(OBJECT_SIZE, size)))


@functools.lru_cache(maxsize=1)
def _digit_images() -> np.ndarray:
    """(10, 8, 8) float in [0, 1]: per digit, the load_digits sample nearest the class mean."""
    from sklearn.datasets import load_digits  # ships inside scikit-learn; nothing is downloaded

    data = load_digits()
    out = np.zeros((10, 8, 8), dtype=np.float64)
    for d in DIGITS:
        images = data.images[data.target == d]
        mean = images.mean(axis=0)
        out[d] = images[np.argmin(((images - mean) ** 2).sum(axis=(1, 2)))] / 16.0
    return out


def _resize_bilinear(img: np.ndarray, side: int) -> np.ndarray:
    """Resize a 2-D float image to ``side``×``side`` (pixel-centre aligned, edge clamped)."""
    h, w = img.shape
    ys = np.clip((np.arange(side) + 0.5) * h / side - 0.5, 0, h - 1)
    xs = np.clip((np.arange(side) + 0.5) * w / side - 0.5, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = img[y0][:, x0] * (1 - fx) + img[y0][:, x1] * fx
    bottom = img[y1][:, x0] * (1 - fx) + img[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def _digit_mask(img: np.ndarray, side: int) -> np.ndarray:
    """An 8×8 digit cropped to its ink, scaled to fill ``side`` in height (aspect kept), centred
    and thresholded low so strokes stay thick enough to survive a VQ-GAN."""
    ys, xs = np.nonzero(img > 0.25)
    crop = img[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = crop.shape
    padded = np.zeros((h, h))  # square canvas, crop centred horizontally (digits are tall)
    left = (h - w) // 2 if h >= w else 0
    padded[:, left : left + min(w, h)] = crop[:, : min(w, h)]
    return _resize_bilinear(padded, side) >= DIGIT_THRESHOLD


@functools.lru_cache(maxsize=16)
def _templates(side: int) -> dict[str, np.ndarray]:
    n = side
    c = (n - 1) / 2
    yy, xx = np.mgrid[0:n, 0:n]
    out: dict[str, np.ndarray] = {
        "square": np.ones((n, n), dtype=bool),
        "circle": (xx - c) ** 2 + (yy - c) ** 2 <= (n / 2) ** 2,
        "triangle": np.abs(xx - c) <= (yy + 1) / 2,  # apex up, base on the last row
    }
    for d, img in enumerate(_digit_images()):
        out[f"digit {d}"] = _digit_mask(img, n)
    for mask in out.values():
        mask.setflags(write=False)
    return out


def object_templates(size: int = REFERENCE_SIZE) -> dict[str, np.ndarray]:
    """Binary (side, side) masks of every object label ("square", ..., "digit 9") at this frame
    size, as rendered. Read-only and cached."""
    return _templates(object_side(size))


# --------------------------------------------------------------------------- rendering


@dataclass
class Clip:
    """A rendered clip and its ground truth. N = number of objects, in ``spec.objects`` order."""

    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    sketch: np.ndarray  # (T, H, W) uint8 class ids into SKETCH_CLASSES
    instances: np.ndarray  # (T, H, W) uint8: 0 background, k + 1 for object k
    centres: np.ndarray  # (T, N, 2) float64 mask centroid (x, y); NaN where not visible
    boxes: np.ndarray  # (T, N, 4) int64 (x0, y0, x1, y1), end exclusive; -1 where not visible
    spec: ClipSpec
    caption: str = field(init=False)

    def __post_init__(self) -> None:
        self.caption = self.spec.caption()


def start_centre(obj: ObjectSpec, size: int) -> tuple[float, float]:
    fx, fy = POSITIONS[obj.position]
    return fx * size + obj.offset[0], fy * size + obj.offset[1]


def velocity(direction: str, size: int) -> tuple[float, float]:
    """Pixels per frame, (vx, vy)."""
    dx, dy = DIRECTIONS[direction]
    speed = scaled(SPEED, size)
    return dx * speed, dy * speed


def _paste(canvas: np.ndarray, mask: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """A (H, W) bool: ``mask`` placed with its top-left at (x0, y0), clipped at the borders."""
    h, w = canvas.shape
    n = mask.shape[0]
    out = np.zeros((h, w), dtype=bool)
    ya, yb = max(0, y0), min(h, y0 + n)
    xa, xb = max(0, x0), min(w, x0 + n)
    if ya < yb and xa < xb:
        out[ya:yb, xa:xb] = mask[ya - y0 : yb - y0, xa - x0 : xb - x0]
    return out


Trajectory = Literal["linear", "bounce"]
TRAJECTORIES: tuple[str, ...] = ("linear", "bounce")


def reflect(x: int, span: int) -> int:
    """``x`` reflected into ``0..span`` (a triangle wave of period ``2 * span``): the top-left
    corner of an object bouncing off the frame's borders; ``x`` itself when already inside."""
    if span <= 0:
        return 0
    r = x % (2 * span)
    return r if r <= span else 2 * span - r


def object_top_left(
    obj: ObjectSpec, t: int, side: int, size: int, trajectory: Trajectory = "linear"
) -> tuple[int, int]:
    """Top-left pixel ``(x0, y0)`` of ``obj``'s ``side``-px template in frame ``t``.

    ``"linear"``: a straight line at the dataset speed (the training clips; past 8 frames the
    object leaves the frame). ``"bounce"``: the same line with each coordinate reflected off
    the frame's borders, so the whole object stays inside however long the clip — the rule that
    extends a clip's ground truth past the trained length. Both agree wherever the straight
    line keeps the object inside: every frame of an 8-frame dataset clip at 64 px (at smaller
    sizes the unscaled 1 px start jitter can take a centre object 1 px out in frame 7)."""
    cx, cy = start_centre(obj, size)
    vx, vy = velocity(obj.direction, size)
    x0 = int(np.floor(cx + vx * t - side / 2 + 0.5))
    y0 = int(np.floor(cy + vy * t - side / 2 + 0.5))
    if trajectory == "bounce":
        return reflect(x0, size - side), reflect(y0, size - side)
    if trajectory != "linear":
        raise ValueError(f"trajectory must be one of {TRAJECTORIES}, got {trajectory!r}")
    return x0, y0


def object_masks(
    spec: ClipSpec, frames: int = 8, size: int = REFERENCE_SIZE, trajectory: Trajectory = "linear"
) -> np.ndarray:
    """(N, T, H, W) bool: each object's own pixels in each frame, before any occlusion."""
    templates = object_templates(size)
    out = np.zeros((len(spec.objects), frames, size, size), dtype=bool)
    blank = np.zeros((size, size), dtype=bool)
    for k, obj in enumerate(spec.objects):
        tmpl = templates[obj.label]
        side = tmpl.shape[0]
        for t in range(frames):
            x0, y0 = object_top_left(obj, t, side, size, trajectory)
            out[k, t] = _paste(blank, tmpl, x0, y0)
    return out


def render_clip(
    spec: ClipSpec, frames: int = 8, size: int = REFERENCE_SIZE, trajectory: Trajectory = "linear"
) -> Clip:
    """Render ``spec`` exactly: solid objects on black, no anti-aliasing. Later objects are drawn
    over earlier ones (specs from the dataset never overlap within 8 frames; bouncing past them,
    two objects may cross). Ground truth (centres, boxes) describes the visible pixels of each
    object. ``trajectory``: see :func:`object_top_left`."""
    masks = object_masks(spec, frames, size, trajectory)
    n_obj = len(spec.objects)
    rgb = np.zeros((frames, size, size, 3), dtype=np.uint8)
    sketch = np.zeros((frames, size, size), dtype=np.uint8)
    inst = np.zeros((frames, size, size), dtype=np.uint8)
    for k, obj in enumerate(spec.objects):
        rgb[masks[k]] = COLOURS[obj.colour]
        sketch[masks[k]] = SKETCH_CLASSES.index(obj.kind)
        inst[masks[k]] = k + 1
    centres = np.full((frames, n_obj, 2), np.nan)
    boxes = np.full((frames, n_obj, 4), -1, dtype=np.int64)
    for t in range(frames):
        for k in range(n_obj):
            ys, xs = np.nonzero(inst[t] == k + 1)
            if len(xs):
                centres[t, k] = xs.mean(), ys.mean()
                boxes[t, k] = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    return Clip(rgb, sketch, inst, centres, boxes, spec)


# --------------------------------------------------------------------------- sketch PNG colours


def sketch_to_rgb(sketch: np.ndarray) -> np.ndarray:
    """Class map (..., H, W) -> (..., H, W, 3) uint8 in SKETCH_PALETTE colours."""
    if sketch.size and int(sketch.max()) >= len(SKETCH_CLASSES):
        raise ValueError(f"sketch class ids must be < {len(SKETCH_CLASSES)}, got {sketch.max()}")
    return SKETCH_PALETTE[sketch]


def rgb_to_sketch(rgb: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) uint8 in SKETCH_PALETTE colours -> class map (..., H, W) uint8.

    Colours must match the palette exactly; any other colour raises a ValueError naming it."""
    if rgb.shape[-1] != 3:
        raise ValueError(f"expected (..., H, W, 3) RGB, got shape {rgb.shape}")
    codes = rgb.astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
    palette_codes = SKETCH_PALETTE.astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
    out = np.full(codes.shape, 255, dtype=np.uint8)
    for cls, code in enumerate(palette_codes):
        out[codes == code] = cls
    unknown = out == 255
    if unknown.any():
        colours, counts = np.unique(codes[unknown], return_counts=True)
        named = ", ".join(
            f"RGB({c >> 16}, {(c >> 8) & 255}, {c & 255}) x{n}"
            for c, n in list(zip(colours.tolist(), counts.tolist(), strict=True))[:5]
        )
        more = f" and {len(colours) - 5} more" if len(colours) > 5 else ""
        known = ", ".join(
            f"{name}=RGB{tuple(int(v) for v in SKETCH_PALETTE[i])}"
            for i, name in enumerate(SKETCH_CLASSES)
        )
        raise ValueError(f"sketch has colours outside the palette: {named}{more}; known: {known}")
    return out
