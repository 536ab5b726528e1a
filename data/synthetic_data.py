"""The synthetic captioned-video dataset (DESIGN §10): the training and evaluation data of every
task, generated from a seed and nothing downloaded.

A clip is ``frames`` frames (default 8) of ``size``×``size`` pixels (default 64) on a plain black
background with one or two objects (:mod:`nuwa.data.clip_specs` says what a clip can show,
:mod:`nuwa.data.clip_rendering` draws it). Here the specs are drawn at random: every attribute
uniformly (or with a chosen share of digits and of two-object clips, ``ClipMix``), each object
starting up to ``JITTER`` = 1 px off its region's centre, two objects never touching. Captions
are split by a stable hash into a train and a held-out split (``caption_split``).
``SyntheticVideoDataset`` gives clips, long clips past the trained length, first-frame image
samples (T2I/S2I/I2I) and edit pairs (TI2I/TV2V). Pure numpy: training code wraps it in torch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from nuwa.data.clip_rendering import REFERENCE_SIZE, Clip, object_masks, render_clip, scaled
from nuwa.data.clip_specs import (
    ALLOWED_DIRECTIONS,
    COLOURS,
    DIGITS,
    KINDS,
    POSITIONS,
    SHAPES,
    ClipSpec,
    ObjectSpec,
)

JITTER = 1  # max start offset from the region centre, per axis (px, not scaled)
HELDOUT_FRACTION = 0.1  # share of captions that belong to the held-out split

Split = Literal["train", "heldout"]


# --------------------------------------------------------------------------- samples


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
