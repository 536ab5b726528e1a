"""What a synthetic clip shows (DESIGN §10): the vocabularies every caption is made of and the
specs of a clip's objects, with their captions.

A clip holds one or two solid-coloured objects that each start in a named region and move in a
straight line. Every attribute of an object is named by the caption:

    "a red square at the top left moves right"
    "the digit 3 in blue at the centre moves down and a green circle at the bottom left moves up"

(``ClipSpec.caption`` can leave the position and the motion out, for training on captions that
do not pin every attribute down, as a user's often do not: "a red square moves left".)

Vocabularies (module constants): ``COLOURS`` (6 hues 60° apart), ``SHAPES`` (square, circle,
triangle) and ``DIGITS`` (0–9), ``KINDS`` (the shapes and "digit", also the sketch classes after
the background), ``POSITIONS`` (5 start regions) and ``DIRECTIONS`` (left/right/up/down).
``ALLOWED_DIRECTIONS`` pairs each start region with the directions that keep the object inside
the frame for 8 frames (corners move inwards; the centre moves any way). Two objects in a clip
have different colours. Drawing a spec is :mod:`nuwa.data.clip_rendering`'s; drawing specs at
random is :mod:`nuwa.data.synthetic_data`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

from nuwa.spec.sketch_palette import SKETCH_CLASSES

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

# Segmentation sketch classes and their RGB in sketch PNGs: one palette for every part.
assert ("background", *KINDS) == SKETCH_CLASSES, "nuwa.spec.sketch_palette lists the kinds"


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
