"""Synthetic captioned videos with exact ground truth (DESIGN §10): the training and evaluation
data of every task, generated from a seed and nothing downloaded.

A clip is ``frames`` frames (default 8) of ``size``×``size`` pixels (default 64) on a plain black
background, with one or two solid-coloured objects that each start in a named region and move
in a straight line. Every attribute of an object is named by the caption:

    "a red square at the top left moves right"
    "the digit 3 in blue at the centre moves down and a green circle at the bottom left moves up"

(``ClipSpec.caption`` can leave the position and the motion out, for training on captions that
do not pin every attribute down, as a user's often do not: "a red square moves left".)

Vocabularies (module constants): ``COLOURS`` (6 hues 60° apart), ``SHAPES`` (square, circle,
triangle) and ``DIGITS`` (0–9, one real handwritten sample per digit from scikit-learn's
``load_digits``, upscaled and thresholded), ``POSITIONS`` (5 start regions) and ``DIRECTIONS``
(left/right/up/down). ``ALLOWED_DIRECTIONS`` pairs each start region with the directions that keep
the object inside the frame for 8 frames (corners move inwards; the centre moves any way).

Geometry is defined at 64 px and scales with ``size``: objects are ``OBJECT_SIZE`` = 20 px, move
``SPEED`` = 3 px per frame (21 px over 8 frames) and start up to ``JITTER`` = 1 px off their
region's centre. Two objects in a clip have different colours and never touch.

Each clip carries a segmentation sketch per frame (class map over ``SKETCH_CLASSES``, the
VQ-GAN-Seg input; ``SKETCH_PALETTE`` fixes the colours of sketch PNGs), an instance map, and per
frame the objects' boxes and centroids. ``SyntheticVideoDataset`` gives clips, first-frame image
samples (T2I/S2I/I2I) and edit pairs (TI2I/TV2V). Pure numpy: training code wraps it in torch.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from nuwa.spec.sketch_palette import SKETCH_CLASSES, SKETCH_PALETTE

# --------------------------------------------------------------------------- vocabularies

COLOURS: dict[str, tuple[int, int, int]] = {  # hues 0°, 60°, ..., 300°: far apart after blur
    "red": (230, 30, 30),
    "yellow": (220, 220, 30),
    "green": (30, 200, 30),
    "cyan": (30, 200, 200),
    "blue": (40, 40, 230),
    "magenta": (210, 40, 210),
}
SHAPES: tuple[str, ...] = ("square", "circle", "triangle")
DIGITS: tuple[int, ...] = tuple(range(10))
KINDS: tuple[str, ...] = (*SHAPES, "digit")  # ObjectSpec.kind values

# Start regions: centre of the region as a fraction of the frame side, (x, y).
POSITIONS: dict[str, tuple[float, float]] = {
    "top left": (14 / 64, 14 / 64),
    "top right": (50 / 64, 14 / 64),
    "bottom left": (14 / 64, 50 / 64),
    "bottom right": (50 / 64, 50 / 64),
    "centre": (32 / 64, 32 / 64),
}
# Unit motion per frame, (dx, dy); image y grows downwards.
DIRECTIONS: dict[str, tuple[int, int]] = {
    "left": (-1, 0),
    "right": (1, 0),
    "up": (0, -1),
    "down": (0, 1),
}
ALLOWED_DIRECTIONS: dict[str, tuple[str, ...]] = {
    "top left": ("right", "down"),
    "top right": ("left", "down"),
    "bottom left": ("right", "up"),
    "bottom right": ("left", "up"),
    "centre": ("left", "right", "up", "down"),
}

REFERENCE_SIZE = 64  # geometry below is in pixels of a 64×64 frame and scales with the size
OBJECT_SIZE = 20  # object template side (px at 64)
SPEED = 3.0  # motion per frame (px at 64)
DIGIT_THRESHOLD = 0.35  # ink level at which an upscaled digit counts as foreground
JITTER = 1  # max start offset from the region centre, per axis (px, not scaled)

# Segmentation sketch classes and their RGB in sketch PNGs: one palette for every part.
assert ("background", *KINDS) == SKETCH_CLASSES, "nuwa.spec.sketch_palette lists the kinds"

HELDOUT_FRACTION = 0.1  # share of captions that belong to the held-out split

Split = Literal["train", "heldout"]


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class ObjectSpec:
    """One object: what the caption says about it, plus its exact start offset (not captioned)."""

    kind: str  # one of KINDS
    colour: str  # key of COLOURS
    position: str  # key of POSITIONS
    direction: str  # key of DIRECTIONS, one of ALLOWED_DIRECTIONS[position]
    digit: int | None = None  # 0–9 when kind == "digit", else None
    offset: tuple[int, int] = (0, 0)  # start offset (dx, dy) in px from the region centre

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; expected one of {KINDS}")
        if (self.kind == "digit") != (self.digit is not None):
            raise ValueError("digit must be set exactly when kind == 'digit'")
        if self.digit is not None and self.digit not in DIGITS:
            raise ValueError(f"digit must be 0–9, got {self.digit}")
        if self.colour not in COLOURS:
            raise ValueError(f"unknown colour {self.colour!r}; expected one of {list(COLOURS)}")
        if self.position not in POSITIONS:
            raise ValueError(f"unknown position {self.position!r}; expected {list(POSITIONS)}")
        if self.direction not in ALLOWED_DIRECTIONS[self.position]:
            raise ValueError(
                f"direction {self.direction!r} not allowed from {self.position!r}; "
                f"expected one of {ALLOWED_DIRECTIONS[self.position]}"
            )

    @property
    def label(self) -> str:
        """Shape identity as one string: "square", "circle", "triangle" or "digit 3"."""
        return self.kind if self.digit is None else f"digit {self.digit}"

    def caption_phrase(self, motion: bool = True, position: bool = True) -> str:
        """The object's words; ``motion``/``position`` False leave "moves ..."/"at the ..." out
        (a caption that does not pin that attribute down)."""
        text = (
            f"a {self.colour} {self.kind}"
            if self.digit is None
            else (f"the digit {self.digit} in {self.colour}")
        )
        if position:
            text = f"{text} at the {self.position}"
        return f"{text} moves {self.direction}" if motion else text


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to render a clip exactly; objects in caption order."""

    objects: tuple[ObjectSpec, ...]

    def __post_init__(self) -> None:
        if not self.objects:
            raise ValueError("a clip needs at least one object")
        colours = [o.colour for o in self.objects]
        if len(set(colours)) != len(colours):
            raise ValueError(f"objects in a clip must have different colours, got {colours}")

    def caption(self, motion: bool = True, position: bool = True) -> str:
        """The clip's caption; ``motion=False`` drops "moves ..." (the caption of a still),
        ``position=False`` drops "at the ..." (training captions that leave attributes out)."""
        return " and ".join(o.caption_phrase(motion, position) for o in self.objects)


def max_caption_bytes(max_objects: int = 2, motion: bool = True) -> int:
    """Longest caption (UTF-8 bytes) the vocabularies can produce; size text conditions by it."""
    longest = max(
        len(
            ObjectSpec(kind, colour, pos, d, digit=0 if kind == "digit" else None).caption_phrase(
                motion
            )
        )
        for kind in KINDS
        for colour in COLOURS
        for pos, dirs in ALLOWED_DIRECTIONS.items()
        for d in dirs
    )
    return max_objects * longest + (max_objects - 1) * len(" and ")


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


@dataclass
class ImageSample:
    """One still (a clip's first frame) for T2I / S2I / I2I; arrays as in ``Clip`` without T."""

    image: np.ndarray  # (H, W, 3) uint8
    sketch: np.ndarray  # (H, W) uint8
    instances: np.ndarray  # (H, W) uint8
    centres: np.ndarray  # (N, 2) float64
    boxes: np.ndarray  # (N, 4) int64
    spec: ClipSpec
    caption: str  # the caption without motion


@dataclass
class EditSample:
    """A manipulation pair (TI2I / TV2V): one object of ``source`` changes colour or shape.

    ``edit_text`` is the caption of the wanted result; ``keep`` marks the pixels that must stay
    as in ``source`` (everything but the edited object's box, dilated, in source and target).
    For TI2I use frame 0 of each array."""

    source: Clip
    target: Clip
    edit_text: str
    keep: np.ndarray  # (T, H, W) bool
    edited_object: int  # index into spec.objects


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


# --------------------------------------------------------------------------- the dataset


def caption_split(caption: str) -> Split:
    """Which split a caption belongs to (a stable hash; ~HELDOUT_FRACTION are held out)."""
    h = int.from_bytes(hashlib.blake2b(caption.encode("utf-8"), digest_size=8).digest(), "big")
    return "heldout" if h / 2.0**64 < HELDOUT_FRACTION else "train"


def objects_touch(masks: np.ndarray, margin: int) -> bool:
    """Whether two objects' boxes, (2, T, H, W) masks from ``object_masks``, come within
    ``margin`` px of each other in any frame."""
    for m0, m1 in zip(masks[0], masks[1], strict=True):
        if not (m0.any() and m1.any()):
            continue
        (y0, x0), (y1, x1) = np.argwhere(m0).min(0), np.argwhere(m0).max(0) + 1
        (v0, u0), (v1, u1) = np.argwhere(m1).min(0), np.argwhere(m1).max(0) + 1
        if x0 < u1 + margin and u0 < x1 + margin and y0 < v1 + margin and v0 < y1 + margin:
            return True
    return False


def random_object(
    rng: np.random.Generator,
    exclude_colours: tuple[str, ...] = (),
    digit_share: float | None = None,
) -> ObjectSpec:
    """One object with uniformly drawn attributes (kind: shapes and "digit" equally likely, or
    a digit with chance ``digit_share`` and otherwise one of the shapes)."""
    if digit_share is None:
        kind = KINDS[rng.integers(len(KINDS))]
    else:
        kind = "digit" if rng.random() < digit_share else SHAPES[rng.integers(len(SHAPES))]
    digit = int(rng.integers(10)) if kind == "digit" else None
    colours = [c for c in COLOURS if c not in exclude_colours]
    colour = colours[rng.integers(len(colours))]
    position = list(POSITIONS)[rng.integers(len(POSITIONS))]
    allowed = ALLOWED_DIRECTIONS[position]
    direction = allowed[rng.integers(len(allowed))]
    offset = (int(rng.integers(-JITTER, JITTER + 1)), int(rng.integers(-JITTER, JITTER + 1)))
    return ObjectSpec(kind, colour, position, direction, digit=digit, offset=offset)


def random_clip_spec(
    rng: np.random.Generator,
    max_objects: int = 2,
    frames: int = 8,
    size: int = REFERENCE_SIZE,
    digit_share: float | None = None,
    two_object_share: float | None = None,
) -> ClipSpec:
    """1..max_objects objects with distinct colours whose boxes stay >= 2 px apart in all frames
    (``digit_share``: see :func:`random_object`; ``two_object_share``: the chance of two objects
    when ``max_objects`` is 2, default ``None``: one or two equally likely)."""
    if two_object_share is None or max_objects < 2:
        n = int(rng.integers(1, max_objects + 1))
    else:
        n = 2 if rng.random() < two_object_share else 1
    while True:
        objects: list[ObjectSpec] = []
        for _ in range(n):
            objects.append(random_object(rng, tuple(o.colour for o in objects), digit_share))
        spec = ClipSpec(tuple(objects))
        if n == 1:
            return spec
        if n > 2:
            raise ValueError("max_objects > 2 is not supported")
        if not objects_touch(object_masks(spec, frames, size), margin=2):
            return spec


@dataclass(frozen=True)
class ClipMix:
    """Which clips a training set draws: each object's chance of being a digit and each clip's
    chance of two objects (``None``: the dataset's defaults; see :class:`SyntheticVideoDataset`).

    Training options hold one, and everything made from the clips (a token cache) is tied to it."""

    digit_share: float | None = None
    two_object_share: float | None = None

    def __post_init__(self) -> None:
        for name in ("digit_share", "two_object_share"):
            share = getattr(self, name)
            if share is not None and not 0 <= share <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {share}")

    def describe(self) -> str:
        def show(share: float | None) -> str:
            return "default" if share is None else f"{share:g}"

        return (
            f"digit share {show(self.digit_share)}, two-object share {show(self.two_object_share)}"
        )

    def dataset(self, num_clips: int, seed: int, frames: int, size: int) -> SyntheticVideoDataset:
        """The training split's ``num_clips`` clips of ``seed`` drawn with this mix."""
        return SyntheticVideoDataset(
            num_clips,
            seed=seed,
            frames=frames,
            size=size,
            digit_share=self.digit_share,
            two_object_share=self.two_object_share,
        )


class SyntheticVideoDataset:
    """``num_clips`` captioned clips, a pure function of (seed, split, index).

    Clip ``i`` is drawn from its own random stream ``SeedSequence([seed, split_id, i])``, redrawn
    until its caption hashes into ``split`` (see ``caption_split``): so the train and held-out
    splits never share a caption, whatever their seeds and sizes.

    ``digit_share``: each object's chance of being a digit (default ``None``: the four kinds —
    three shapes and "digit" — equally likely, so a digit a quarter of the time, each of the ten
    a fortieth); a training set can raise it to show the digits' glyphs more often.
    ``two_object_share``: each clip's chance of two objects (default ``None``: one or two
    equally likely); a training set can raise it to show more two-object clips."""

    def __init__(
        self,
        num_clips: int,
        seed: int = 0,
        frames: int = 8,
        size: int = REFERENCE_SIZE,
        max_objects: int = 2,
        split: Split = "train",
        digit_share: float | None = None,
        two_object_share: float | None = None,
    ) -> None:
        if split not in ("train", "heldout"):
            raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
        ClipMix(digit_share, two_object_share)  # checks the shares
        if not 1 <= max_objects <= 2:
            raise ValueError(f"max_objects must be 1 or 2, got {max_objects}")
        if size < 16:
            raise ValueError(f"size must be >= 16 px, got {size}")
        self.num_clips = num_clips
        self.seed = seed
        self.frames = frames
        self.size = size
        self.max_objects = max_objects
        self.split: Split = split
        self.digit_share = digit_share
        self.two_object_share = two_object_share

    def __len__(self) -> int:
        return self.num_clips

    def rng(self, i: int, stream: int = 0) -> np.random.Generator:
        split_id = 0 if self.split == "train" else 1
        return np.random.default_rng(np.random.SeedSequence([self.seed, split_id, i, stream]))

    def spec(self, i: int) -> ClipSpec:
        if not 0 <= i < self.num_clips:
            raise IndexError(f"index {i} out of range for {self.num_clips} clips")
        rng = self.rng(i)
        while True:
            spec = random_clip_spec(
                rng,
                self.max_objects,
                self.frames,
                self.size,
                self.digit_share,
                self.two_object_share,
            )
            if caption_split(spec.caption()) == self.split:
                return spec

    def __getitem__(self, i: int) -> Clip:
        return render_clip(self.spec(i), self.frames, self.size)

    def long_clip(self, i: int, frames: int) -> Clip:
        """Clip ``i`` (the same spec and caption) rendered over ``frames`` frames, its objects
        bouncing off the borders (:func:`object_top_left`): the ground truth of generation past
        the trained length. At 64 px its first 8 frames are exactly ``self[i]``'s."""
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        return render_clip(self.spec(i), frames, self.size, trajectory="bounce")

    def image_sample(self, i: int) -> ImageSample:
        """Clip ``i``'s first frame with its sketch, ground truth and motion-free caption."""
        clip = render_clip(self.spec(i), 1, self.size)
        return ImageSample(
            image=clip.frames[0],
            sketch=clip.sketch[0],
            instances=clip.instances[0],
            centres=clip.centres[0],
            boxes=clip.boxes[0],
            spec=clip.spec,
            caption=clip.spec.caption(motion=False),
        )

    def edit_sample(self, i: int) -> EditSample:
        """Clip ``i`` and a copy in which one object changes colour (to one unused in the clip)
        or label (kind/digit), with the same position and motion."""
        source = self[i]
        rng = self.rng(i, stream=1)
        k = int(rng.integers(len(source.spec.objects)))
        obj = source.spec.objects[k]
        if rng.random() < 0.5:
            used = {o.colour for o in source.spec.objects}
            choices = [c for c in COLOURS if c not in used]
            new = replace(obj, colour=choices[rng.integers(len(choices))])
        else:
            labels = [lb for lb in (*SHAPES, *(f"digit {d}" for d in DIGITS)) if lb != obj.label]
            label = labels[rng.integers(len(labels))]
            digit = int(label.split()[1]) if label.startswith("digit") else None
            new = replace(obj, kind="digit" if digit is not None else label, digit=digit)
        objects = list(source.spec.objects)
        objects[k] = new
        target = render_clip(ClipSpec(tuple(objects)), self.frames, self.size)
        keep = np.ones(source.sketch.shape, dtype=bool)
        pad = max(1, round(scaled(2, self.size)))
        for clip in (source, target):
            for t, (x0, y0, x1, y1) in enumerate(clip.boxes[:, k]):
                if x0 >= 0:
                    keep[t, max(0, y0 - pad) : y1 + pad, max(0, x0 - pad) : x1 + pad] = False
        return EditSample(source, target, target.caption, keep, k)
