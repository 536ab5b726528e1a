"""What a model understands and how its inputs are read: ``input_rules.json`` in the model
directory, beside ``generation_config.json``.

    {
      "format": "nuwa-input-rules/1",
      "frame_size": 64, "frames": 8,
      "caption": {"grammar": {...}, "words": {"colours": [...], ...}, "max_objects": 2, ...},
      "sketch": {"size": 64, "palette": [{"name": "background", "rgb": [0, 0, 0]}, ...],
                 "snap_distance": 48},
      "mask": {"threshold": 127, "rule": "..."},
      "resize": {"filter": "bicubic", "rule": "..."}
    }

``caption``: the grammar of the captions the model was trained on, with its words (colours,
shapes, digits, start positions, directions, "and" for two objects); a prompt with other words
gets a warning naming the nearest known ones. ``sketch``: the colour of each sketch class (class
id = index) and the snapping distance: a pixel within that RGB (Euclidean) distance of exactly
one palette colour is read as that class (anti-aliased edges), any other colour is an error
naming it. ``mask``: a mask picture's pixels brighter than ``threshold`` (grey, 0–255) are the
region to generate. ``resize``: how pictures of another size are brought to ``frame_size``.

:func:`rules_from_training_data` writes the file from :mod:`nuwa.model.synthetic_data` (the
training data's vocabularies and palette) and the model's ``config.json``:
``python -m nuwa.model.input_rules MODEL_DIR``. ``nuwa export`` and ``nuwa quantize`` carry the
file along (:func:`copy_input_rules`), so every runtime reads the same rules.

A model directory without the file (made before it existed: :meth:`InputRules.load` returns
``None``) gets :meth:`InputRules.builtin`:
today's behaviour, i.e. the code's ``SKETCH_PALETTE`` matched exactly (no snapping), bicubic
resizing, the mask threshold 127, and no vocabulary, so no prompt is warned about.

JSON and NumPy only (no torch), so the runtime can read it.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

INPUT_RULES_FILE = "input_rules.json"
FORMAT = "nuwa-input-rules/1"
SNAP_DISTANCE = 48.0  # RGB distance within which an anti-aliased sketch pixel snaps
MASK_THRESHOLD = 127  # a mask picture's grey level above which a pixel is generated
RESIZE_FILTERS = ("bicubic", "bilinear", "nearest")
WORD_LISTS = ("colours", "shapes", "digits", "positions", "directions")
_WORD = re.compile(r"[^\W_]+")  # a word of a prompt: letters and digits


class InputRulesError(ValueError):
    """An ``input_rules.json`` that cannot be used; the message names the file and field."""


# --------------------------------------------------------------------------- parts


@dataclass(frozen=True)
class CaptionGrammar:
    """The captions a model was trained on: ``grammar`` maps a rule name to its templates
    (``<name>`` a word list or another rule, ``[...]`` optional), ``words`` the word lists."""

    grammar: tuple[tuple[str, str], ...]  # (rule, template), in file order
    words: tuple[tuple[str, tuple[str, ...]], ...]  # (list name, words), WORD_LISTS order
    allowed_directions: tuple[tuple[str, tuple[str, ...]], ...]  # start position -> directions
    max_objects: int
    examples: tuple[str, ...]

    def word_list(self, name: str) -> tuple[str, ...]:
        return dict(self.words)[name]

    def known_words(self) -> frozenset[str]:
        """Every word a caption can hold: the lists' words and the templates' fixed words."""
        known = {w for _, values in self.words for value in values for w in _WORD.findall(value)}
        for _, template in self.grammar:
            known.update(_WORD.findall(re.sub(r"<[^>]*>", " ", template)))
        return frozenset(known)

    def unknown_words(self, prompt: str) -> list[str]:
        """The words of ``prompt`` (lower-cased, NFKC as the tokenizer reads it) that no caption
        holds, each once, in prompt order."""
        from .tokenizer import normalise

        known = self.known_words()
        words = _WORD.findall(normalise(prompt))
        return list(dict.fromkeys(w for w in words if w not in known))

    def unknown_words_message(self, prompt: str) -> str | None:
        """One line naming the unknown words of ``prompt`` and the nearest known words; ``None``
        when every word is known."""
        unknown = self.unknown_words(prompt)
        if not unknown:
            return None
        known = sorted(self.known_words())
        parts = []
        for word in unknown:
            near = difflib.get_close_matches(word, known, n=3, cutoff=0.6)
            hint = f" (nearest known: {', '.join(near)})" if near else ""
            parts.append(f"{word!r}{hint}")
        return (
            f"the model never saw the word{'s' if len(unknown) > 1 else ''} {', '.join(parts)}; "
            "generating anyway (its words: nuwa info --model DIR)"
        )


@dataclass(frozen=True)
class SketchRules:
    """Sketch pictures: ``size`` x ``size`` pixels, class ``i`` drawn in ``colours[i]``."""

    size: int
    classes: tuple[str, ...]
    colours: tuple[tuple[int, int, int], ...]
    snap_distance: float  # 0: exact colours only

    @property
    def palette(self) -> np.ndarray:
        """``uint8 (classes, 3)``."""
        return np.array(self.colours, dtype=np.uint8).reshape(-1, 3)

    def to_classes(self, rgb: np.ndarray) -> np.ndarray:
        """``uint8 (..., H, W, 3)`` -> class ids ``uint8 (..., H, W)``: each pixel's palette colour,
        or the one palette colour within ``snap_distance`` of it; any other pixel (near none, or
        near two) raises a ValueError naming the colours."""
        rgb = np.asarray(rgb)
        if rgb.shape[-1:] != (3,):
            raise ValueError(f"expected (..., H, W, 3) RGB, got shape {rgb.shape}")
        pixels = rgb.astype(np.int32)
        out = np.zeros(rgb.shape[:-1], dtype=np.uint8)
        count = np.zeros(rgb.shape[:-1], dtype=np.uint8)  # palette colours within reach
        for cls, colour in enumerate(self.colours):  # one class at a time: memory stays O(pixels)
            diff = pixels - np.array(colour, dtype=np.int32)
            near = (diff * diff).sum(-1) <= self.snap_distance**2
            out[near] = cls
            count += near
        if (count != 1).any():
            raise ValueError(self._unknown_colours_message(rgb[count != 1]))
        return out

    def to_classes_reference(self, rgb: np.ndarray) -> np.ndarray:
        """:meth:`to_classes`, one pixel at a time with ``math.dist`` (the obvious version)."""
        rgb = np.asarray(rgb)
        flat = rgb.reshape(-1, 3).tolist()
        out = np.zeros(len(flat), dtype=np.uint8)
        bad = []
        for i, pixel in enumerate(flat):
            near = [
                c
                for c, colour in enumerate(self.colours)
                if math.dist(pixel, colour) <= self.snap_distance
            ]
            if len(near) == 1:
                out[i] = near[0]
            else:
                bad.append(pixel)
        if bad:
            raise ValueError(self._unknown_colours_message(np.array(bad, dtype=np.uint8)))
        return out.reshape(rgb.shape[:-1])

    def _unknown_colours_message(self, pixels: np.ndarray) -> str:
        """``pixels`` ``(N, 3)``: the colours that read as no class, the first five named."""
        codes = pixels.reshape(-1, 3).astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
        colours, counts = np.unique(codes, return_counts=True)
        named = ", ".join(
            f"RGB({c >> 16}, {(c >> 8) & 255}, {c & 255}) x{n}"
            for c, n in list(zip(colours.tolist(), counts.tolist(), strict=True))[:5]
        )
        more = f" and {len(colours) - 5} more" if len(colours) > 5 else ""
        known = ", ".join(
            f"{name}=RGB{colour}" for name, colour in zip(self.classes, self.colours, strict=True)
        )
        within = (
            f" (or within RGB distance {self.snap_distance:g} of exactly one)"
            if self.snap_distance
            else ""
        )
        return f"sketch has colours outside the palette: {named}{more}; known{within}: {known}"


# --------------------------------------------------------------------------- the rules


@dataclass(frozen=True)
class InputRules:
    """A model's input rules (``input_rules.json``); :meth:`load` reads a model directory's."""

    frame_size: int  # frame side in pixels: images and videos are read at this size
    frames: int  # trained number of frames of a video
    sketch: SketchRules
    mask_threshold: int  # mask pictures: grey level above which a pixel is generated
    mask_rule: str
    resize_filter: str  # one of RESIZE_FILTERS: pictures of another size are resized with it
    resize_rule: str
    caption: CaptionGrammar | None  # None: no vocabulary known (no prompt is warned about)
    source: Path | None = None  # the file read; None for the built-in rules

    @property
    def where(self) -> str:
        return str(self.source) if self.source is not None else "built-in input rules"

    def unknown_words_message(self, prompt: str) -> str | None:
        """:meth:`CaptionGrammar.unknown_words_message`; ``None`` without a vocabulary."""
        return None if self.caption is None else self.caption.unknown_words_message(prompt)

    # ---- to and from JSON ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        sketch = self.sketch
        out: dict[str, Any] = {
            "format": FORMAT,
            "frame_size": self.frame_size,
            "frames": self.frames,
        }
        if self.caption is not None:
            c = self.caption
            out["caption"] = {
                "grammar": dict(c.grammar),
                "words": {name: list(values) for name, values in c.words},
                "allowed_directions": {p: list(d) for p, d in c.allowed_directions},
                "max_objects": c.max_objects,
                "examples": list(c.examples),
            }
        out["sketch"] = {
            "size": sketch.size,
            "palette": [
                {"name": n, "rgb": list(rgb)}
                for n, rgb in zip(sketch.classes, sketch.colours, strict=True)
            ],
            "snap_distance": sketch.snap_distance,
        }
        out["mask"] = {"threshold": self.mask_threshold, "rule": self.mask_rule}
        out["resize"] = {"filter": self.resize_filter, "rule": self.resize_rule}
        return out

    @classmethod
    def from_dict(cls, data: Any, source: Path | None = None) -> InputRules:
        """Schema-checked; a violation raises :class:`InputRulesError` naming the field."""
        r = _Reader(data, "")
        r.keys(
            {"format", "frame_size", "frames", "caption", "sketch", "mask", "resize", "note"},
            required={"format", "frame_size", "frames", "sketch"},
        )
        if r.get("format") != FORMAT:
            raise InputRulesError(f"format must be {FORMAT!r}, got {r.get('format')!r}")
        caption = None
        if "caption" in r.data:
            caption = _read_caption(r.child("caption"))
        sketch_r = r.child("sketch")
        sketch_r.keys({"size", "palette", "snap_distance"}, required={"size", "palette"})
        palette = sketch_r.list("palette", min_len=2)
        classes, colours = [], []
        for i, entry in enumerate(palette):
            e = _Reader(entry, f"sketch.palette[{i}]")
            e.keys({"name", "rgb"})
            classes.append(e.string("name"))
            rgb = e.list("rgb", min_len=3, max_len=3)
            if not all(
                isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in rgb
            ):
                raise InputRulesError(
                    f"sketch.palette[{i}].rgb must be 3 integers 0-255, got {rgb}"
                )
            colours.append((int(rgb[0]), int(rgb[1]), int(rgb[2])))
        if len(set(classes)) != len(classes):
            raise InputRulesError(f"sketch.palette: class names repeat: {classes}")
        if len(set(colours)) != len(colours):
            raise InputRulesError(f"sketch.palette: colours repeat: {colours}")
        sketch = SketchRules(
            size=sketch_r.integer("size"),
            classes=tuple(classes),
            colours=tuple(colours),
            snap_distance=sketch_r.number("snap_distance", default=0.0),
        )
        mask_r = r.child("mask", default={})
        mask_r.keys({"threshold", "rule"}, required=set())
        threshold = mask_r.integer("threshold", default=MASK_THRESHOLD, minimum=0)
        if threshold > 254:
            raise InputRulesError(f"mask.threshold must be 0-254, got {threshold}")
        resize_r = r.child("resize", default={})
        resize_r.keys({"filter", "rule"}, required=set())
        resize_filter = resize_r.string("filter", default="bicubic")
        if resize_filter not in RESIZE_FILTERS:
            raise InputRulesError(
                f"resize.filter must be one of {list(RESIZE_FILTERS)}, got {resize_filter!r}"
            )
        return cls(
            frame_size=r.integer("frame_size"),
            frames=r.integer("frames"),
            sketch=sketch,
            mask_threshold=threshold,
            mask_rule=mask_r.string("rule", default=_MASK_RULE),
            resize_filter=resize_filter,
            resize_rule=resize_r.string("rule", default=_RESIZE_RULE),
            caption=caption,
            source=source,
        )

    @classmethod
    def load(cls, model_dir: str | Path) -> InputRules | None:
        """The directory's ``input_rules.json``, schema-checked; ``None`` when it has none (a
        model directory made before the file existed: callers then use :meth:`builtin`, today's
        behaviour)."""
        path = Path(model_dir) / INPUT_RULES_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputRulesError(f"{path} is not valid JSON: {exc}") from None
        try:
            return cls.from_dict(data, source=path)
        except InputRulesError as exc:
            raise InputRulesError(f"{path}: {exc}") from None

    def save(self, model_dir: str | Path, note: str = "") -> Path:
        path = Path(model_dir) / INPUT_RULES_FILE
        data = self.to_dict()
        if note:
            data = {"note": note, **data}
        path.write_text(_dumps(data) + "\n", encoding="utf-8")
        return path

    @classmethod
    def builtin(cls, frame_size: int, sketch_size: int, frames: int) -> InputRules:
        """Today's behaviour without a file: the code's palette matched exactly, bicubic
        resizing, mask threshold 127, no vocabulary."""
        from .synthetic_data import SKETCH_CLASSES, SKETCH_PALETTE

        return cls(
            frame_size=frame_size,
            frames=frames,
            sketch=_sketch_rules(sketch_size, SKETCH_CLASSES, SKETCH_PALETTE, 0.0),
            mask_threshold=MASK_THRESHOLD,
            mask_rule=_MASK_RULE,
            resize_filter="bicubic",
            resize_rule=_RESIZE_RULE,
            caption=None,
        )

    def describe(self) -> str:
        """Several lines for ``nuwa info --model`` and ``nuwa generate --help``: the caption
        grammar and words, the sketch palette, frame size and the mask convention."""
        lines = [f"frames: {self.frame_size}x{self.frame_size} pixels, {self.frames} per video"]
        if self.caption is None:
            lines.append("captions: no vocabulary recorded for this model (no input_rules.json)")
        else:
            c = self.caption
            lines.append(f"captions (up to {c.max_objects} objects):")
            lines += [f"  {rule} = {template}" for rule, template in c.grammar]
            lines += [f"  <{name[:-1]}>: {' | '.join(values)}" for name, values in c.words]
            allowed = "; ".join(f"{p}: {'/'.join(d)}" for p, d in c.allowed_directions)
            lines.append(f"  directions from each start: {allowed}")
            lines += [f"  e.g. {ex!r}" for ex in c.examples]
        snap = (
            f", a colour within RGB distance {self.sketch.snap_distance:g} of one snaps to it"
            if self.sketch.snap_distance
            else ", exact colours only"
        )
        lines.append(f"sketch palette ({self.sketch.size}x{self.sketch.size} px{snap}):")
        lines += [
            f"  {name:<10} RGB{colour}"
            for name, colour in zip(self.sketch.classes, self.sketch.colours, strict=True)
        ]
        lines.append(f"masks: {self.mask_rule}")
        lines.append(f"sizes: {self.resize_rule} (resize filter: {self.resize_filter})")
        return "\n".join(_wrap(line) for line in lines)


_MASK_RULE = (
    "white (grey > 127) = generate, black = keep; transparent pixels keep; a rectangle "
    "x0,y0,x1,y1 in the input's pixels = generate"
)
_RESIZE_RULE = (
    "an image, video, mask picture or sketch of another size is resized to the model's with a "
    "warning (images and videos with the resize filter, sketches nearest so their colours stay "
    "exact, masks so a token is generated if any of its pixels is masked); a mask rectangle is "
    "in the input's own pixels"
)


def _wrap(line: str, width: int = 96) -> str:
    """A long line of :meth:`InputRules.describe` wrapped, continuation lines indented."""
    lead = " " * (len(line) - len(line.lstrip()) + 4)
    return textwrap.fill(line, width, subsequent_indent=lead, break_on_hyphens=False)


def _dumps(value: Any, indent: str = "") -> str:
    """JSON with objects one key a line and lists of plain values on one line."""
    inner = indent + "  "
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {_dumps(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}" if items else "{}"
    one_line = json.dumps(value, ensure_ascii=False)
    nested = isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value)
    if isinstance(value, list) and (nested or len(indent) + len(one_line) > 90):
        return "[\n" + ",\n".join(inner + _dumps(v, inner) for v in value) + f"\n{indent}]"
    return one_line


def _sketch_rules(
    size: int, classes: tuple[str, ...], palette: np.ndarray, snap: float
) -> SketchRules:
    colours = tuple((int(r), int(g), int(b)) for r, g, b in np.asarray(palette).tolist())
    return SketchRules(size, tuple(classes), colours, float(snap))


class _Reader:
    """Typed access to one JSON object of the file; errors name the field's path."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            name = where or "the file"
            raise InputRulesError(f"{name} must be a JSON object, got {type(data).__name__}")
        self.data = data
        self.where = where

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def keys(self, allowed: set[str], required: set[str] | None = None) -> None:
        unknown = sorted(set(self.data) - allowed)
        if unknown:
            raise InputRulesError(
                f"{self.where or 'the file'}: unknown fields {unknown}; known: {sorted(allowed)}"
            )
        missing = sorted((allowed if required is None else required) - {"note"} - set(self.data))
        if missing:
            raise InputRulesError(f"{self._name(missing[0])} is missing")

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def child(self, key: str, default: Any = None) -> _Reader:
        value = self.data.get(key, default)
        if value is None:
            raise InputRulesError(f"{self._name(key)} is missing")
        return _Reader(value, self._name(key))

    def integer(self, key: str, default: int | None = None, minimum: int = 1) -> int:
        value = self.data.get(key, default)
        if value is None:
            raise InputRulesError(f"{self._name(key)} is missing")
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise InputRulesError(
                f"{self._name(key)} must be an integer >= {minimum}, got {value!r}"
            )
        return value

    def number(self, key: str, default: float | None = None) -> float:
        value = self.data.get(key, default)
        real = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not real or not math.isfinite(value) or value < 0:
            raise InputRulesError(f"{self._name(key)} must be a number >= 0, got {value!r}")
        return float(value)

    def string(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise InputRulesError(f"{self._name(key)} must be a non-empty string, got {value!r}")
        return value

    def list(self, key: str, min_len: int = 0, max_len: int | None = None) -> list[Any]:
        value = self.data.get(key)
        if not isinstance(value, list) or len(value) < min_len:
            raise InputRulesError(
                f"{self._name(key)} must be a list of at least {min_len} items, got {value!r}"
            )
        if max_len is not None and len(value) > max_len:
            raise InputRulesError(f"{self._name(key)} must have at most {max_len} items")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        values = self.list(key, min_len=1)
        for i, v in enumerate(values):
            if not isinstance(v, str) or not v.strip():
                raise InputRulesError(
                    f"{self._name(key)}[{i}] must be a non-empty string, got {v!r}"
                )
        return tuple(values)


def _read_caption(r: _Reader) -> CaptionGrammar:
    r.keys({"grammar", "words", "allowed_directions", "max_objects", "examples"})
    grammar_r = r.child("grammar")
    grammar = []
    for rule, template in grammar_r.data.items():
        if not isinstance(template, str) or not template.strip():
            raise InputRulesError(f"caption.grammar.{rule} must be a non-empty string")
        grammar.append((str(rule), template))
    words_r = r.child("words")
    words_r.keys(set(WORD_LISTS))
    words = tuple((name, words_r.strings(name)) for name in WORD_LISTS)
    referenced = {n for _, t in grammar for n in re.findall(r"<([^>]*)>", t)}
    defined = {rule for rule, _ in grammar} | {name[:-1] for name in WORD_LISTS}
    undefined = sorted(referenced - defined)
    if undefined:
        raise InputRulesError(
            f"caption.grammar uses <{undefined[0]}>, which is neither a rule nor a word list "
            f"({', '.join(n[:-1] for n in WORD_LISTS)})"
        )
    positions = dict(words)["positions"]
    directions = dict(words)["directions"]
    allowed_r = r.child("allowed_directions")
    allowed = []
    for position in positions:
        if position not in allowed_r.data:
            raise InputRulesError(f"caption.allowed_directions.{position} is missing")
        dirs = allowed_r.strings(position)
        wrong = sorted(set(dirs) - set(directions))
        if wrong:
            raise InputRulesError(
                f"caption.allowed_directions.{position}: {wrong} are not in "
                "caption.words.directions"
            )
        allowed.append((position, dirs))
    extra = sorted(set(allowed_r.data) - set(positions))
    if extra:
        raise InputRulesError(
            f"caption.allowed_directions: {extra} are not in caption.words.positions"
        )
    return CaptionGrammar(
        grammar=tuple(grammar),
        words=words,
        allowed_directions=tuple(allowed),
        max_objects=r.integer("max_objects"),
        examples=r.strings("examples"),
    )


# --------------------------------------------------------------------------- writing the file


# The captions of ``synthetic_data`` (ObjectSpec.caption_phrase, ClipSpec.caption), as templates.
CAPTION_GRAMMAR: dict[str, str] = {
    "caption": "<object> [and <object>]",
    "object": "<thing> [at the <position>] [moves <direction>]",
    "thing": "a <colour> <shape> | the digit <digit> in <colour>",
}
# captions the demo model does well (every attribute named): README's examples, which
# tests/runtime/test_readme_examples.py scores (>= 0.9 over 8 seeds each)
EXAMPLES: tuple[str, ...] = (
    "a red square at the top left moves right",
    "a yellow triangle at the bottom right moves left",
    "a green circle at the centre",
)


def rules_from_training_data(config: dict[str, Any]) -> InputRules:
    """The input rules of a model trained on :mod:`nuwa.model.synthetic_data` with ``config``
    (its ``config.json`` as a dict): the dataset's vocabularies and palette, the config's frame
    and sketch sizes, snapping at :data:`SNAP_DISTANCE`."""
    from . import synthetic_data as sd

    classes = int(config["vqgan_seg"]["in_channels"])
    if classes != len(sd.SKETCH_CLASSES):
        raise InputRulesError(
            f"the model's sketch tokenizer takes {classes} classes; the training data has "
            f"{len(sd.SKETCH_CLASSES)} ({', '.join(sd.SKETCH_CLASSES)})"
        )
    caption = CaptionGrammar(
        grammar=tuple(CAPTION_GRAMMAR.items()),
        words=(
            ("colours", tuple(sd.COLOURS)),
            ("shapes", sd.SHAPES),
            ("digits", tuple(str(d) for d in sd.DIGITS)),
            ("positions", tuple(sd.POSITIONS)),
            ("directions", tuple(sd.DIRECTIONS)),
        ),
        allowed_directions=tuple(sd.ALLOWED_DIRECTIONS.items()),
        max_objects=2,
        examples=EXAMPLES,
    )
    builtin = InputRules.builtin(0, 0, 0)
    return InputRules(
        frame_size=int(config["vqgan"]["image_size"]),
        frames=int(config["transformer"]["frames"]),
        sketch=_sketch_rules(
            int(config["vqgan_seg"]["image_size"]),
            sd.SKETCH_CLASSES,
            sd.SKETCH_PALETTE,
            SNAP_DISTANCE,
        ),
        mask_threshold=builtin.mask_threshold,
        mask_rule=builtin.mask_rule,
        resize_filter=builtin.resize_filter,
        resize_rule=builtin.resize_rule,
        caption=caption,
    )


GENERATED_NOTE = (
    "Written by `python -m nuwa.model.input_rules MODEL_DIR` from nuwa.model.synthetic_data (the "
    "training data's words and sketch palette) and the model's config.json; do not edit by hand."
)


def write_input_rules(model_dir: str | Path) -> Path:
    """Write ``model_dir/input_rules.json`` from its ``config.json`` and the training data."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    return rules_from_training_data(config).save(model_dir, note=GENERATED_NOTE)


def copy_input_rules(src_dir: str | Path, dst_dir: str | Path) -> None:
    """Carry ``src_dir``'s file (checked) into ``dst_dir``; remove a stale one if it has none."""
    src = Path(src_dir) / INPUT_RULES_FILE
    dst = Path(dst_dir) / INPUT_RULES_FILE
    if src.is_file():
        InputRules.load(src_dir)  # schema-checked before it travels
        dst.write_bytes(src.read_bytes())
    else:
        dst.unlink(missing_ok=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m nuwa.model.input_rules MODEL_DIR")
    print(write_input_rules(sys.argv[1]))
