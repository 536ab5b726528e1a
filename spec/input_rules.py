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

:mod:`nuwa.data.input_rules_writer` writes the file from the synthetic dataset (the training
data's vocabularies and palette) and the model's ``config.json``:
``python -m nuwa.data.input_rules_writer MODEL_DIR``. ``nuwa export`` and ``nuwa quantize``
carry the file along (:func:`copy_input_rules`), so every runtime reads the same rules.

A model directory without the file (made before it existed: :meth:`InputRules.load` returns
``None``) gets :meth:`InputRules.builtin`:
today's behaviour, i.e. :mod:`nuwa.spec.sketch_palette` matched exactly (no snapping), bicubic
resizing, the mask threshold 127, and no vocabulary, so no prompt is warned about.

Three modules, one floor each (no import runs back up): :mod:`nuwa.spec.input_rule_parts` (the
caption grammar and sketch palette rules, the shared defaults), :mod:`nuwa.spec.input_rules_json`
(the file as JSON: schema-checked reading, its layout, :class:`InputRulesError`), and this one (the
rules of a model: :class:`InputRules`, loading, saving, describing). Callers import from here.

JSON and NumPy only (no torch), so the runtime can read it.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nuwa.spec.input_rule_parts import (
    DEFAULT_MASK_RULE,
    DEFAULT_RESIZE_RULE,
    MASK_THRESHOLD,
    RESIZE_FILTERS,
    SNAP_DISTANCE,
    WORD_LISTS,
    CaptionGrammar,
    SketchRules,
)
from nuwa.spec.input_rules_json import (
    FORMAT,
    INPUT_RULES_FILE,
    FieldReader,
    InputRulesError,
    dumps,
    read_caption,
    read_sketch,
)
from nuwa.spec.sketch_palette import SKETCH_CLASSES, SKETCH_PALETTE

__all__ = [
    "FORMAT",
    "INPUT_RULES_FILE",
    "MASK_THRESHOLD",
    "RESIZE_FILTERS",
    "SNAP_DISTANCE",
    "WORD_LISTS",
    "CaptionGrammar",
    "InputRules",
    "InputRulesError",
    "SketchRules",
    "copy_input_rules",
]


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
        r = FieldReader(data, "")
        r.keys(
            {"format", "frame_size", "frames", "caption", "sketch", "mask", "resize", "note"},
            required={"format", "frame_size", "frames", "sketch"},
        )
        if r.get("format") != FORMAT:
            raise InputRulesError(f"format must be {FORMAT!r}, got {r.get('format')!r}")
        caption = None
        if "caption" in r.data:
            caption = read_caption(r.child("caption"))
        sketch = read_sketch(r.child("sketch"))
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
            mask_rule=mask_r.string("rule", default=DEFAULT_MASK_RULE),
            resize_filter=resize_filter,
            resize_rule=resize_r.string("rule", default=DEFAULT_RESIZE_RULE),
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
        path.write_text(dumps(data) + "\n", encoding="utf-8")
        return path

    @classmethod
    def builtin(cls, frame_size: int, sketch_size: int, frames: int) -> InputRules:
        """Today's behaviour without a file: the code's palette matched exactly, bicubic
        resizing, mask threshold 127, no vocabulary."""
        return cls(
            frame_size=frame_size,
            frames=frames,
            sketch=SketchRules.from_palette(sketch_size, SKETCH_CLASSES, SKETCH_PALETTE, 0.0),
            mask_threshold=MASK_THRESHOLD,
            mask_rule=DEFAULT_MASK_RULE,
            resize_filter="bicubic",
            resize_rule=DEFAULT_RESIZE_RULE,
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


def _wrap(line: str, width: int = 96) -> str:
    """A long line of :meth:`InputRules.describe` wrapped, continuation lines indented."""
    lead = " " * (len(line) - len(line.lstrip()) + 4)
    return textwrap.fill(line, width, subsequent_indent=lead, break_on_hyphens=False)


# --------------------------------------------------------------------------- carrying the file


def copy_input_rules(src_dir: str | Path, dst_dir: str | Path) -> None:
    """Carry ``src_dir``'s file (checked) into ``dst_dir``; remove a stale one if it has none."""
    src = Path(src_dir) / INPUT_RULES_FILE
    dst = Path(dst_dir) / INPUT_RULES_FILE
    if src.is_file():
        InputRules.load(src_dir)  # schema-checked before it travels
        dst.write_bytes(src.read_bytes())
    else:
        dst.unlink(missing_ok=True)
