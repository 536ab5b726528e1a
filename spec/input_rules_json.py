"""``input_rules.json`` as JSON (:mod:`nuwa.spec.input_rules` holds the rules it reads into):
the file's name and format tag, :class:`InputRulesError`, the schema-checked reading of its
objects (:class:`FieldReader`: typed fields, errors naming the field's path; :func:`read_caption`,
:func:`read_sketch`) and its layout when written (:func:`dumps`).

No torch, so the runtime can read it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from nuwa.spec.input_rule_parts import WORD_LISTS, CaptionGrammar, SketchRules

INPUT_RULES_FILE = "input_rules.json"
FORMAT = "nuwa-input-rules/1"


class InputRulesError(ValueError):
    """An ``input_rules.json`` that cannot be used; the message names the file and field."""


class FieldReader:
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

    def child(self, key: str, default: Any = None) -> FieldReader:
        value = self.data.get(key, default)
        if value is None:
            raise InputRulesError(f"{self._name(key)} is missing")
        return FieldReader(value, self._name(key))

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


def read_caption(r: FieldReader) -> CaptionGrammar:
    """The ``caption`` object: every ``<name>`` a rule or a word list, every start position's
    directions among the word list's."""
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


def read_sketch(r: FieldReader) -> SketchRules:
    """The ``sketch`` object: its size, palette (distinct names and colours) and snapping."""
    r.keys({"size", "palette", "snap_distance"}, required={"size", "palette"})
    palette = r.list("palette", min_len=2)
    classes, colours = [], []
    for i, entry in enumerate(palette):
        e = FieldReader(entry, f"sketch.palette[{i}]")
        e.keys({"name", "rgb"})
        classes.append(e.string("name"))
        rgb = e.list("rgb", min_len=3, max_len=3)
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in rgb):
            raise InputRulesError(f"sketch.palette[{i}].rgb must be 3 integers 0-255, got {rgb}")
        colours.append((int(rgb[0]), int(rgb[1]), int(rgb[2])))
    if len(set(classes)) != len(classes):
        raise InputRulesError(f"sketch.palette: class names repeat: {classes}")
    if len(set(colours)) != len(colours):
        raise InputRulesError(f"sketch.palette: colours repeat: {colours}")
    return SketchRules(
        size=r.integer("size"),
        classes=tuple(classes),
        colours=tuple(colours),
        snap_distance=r.number("snap_distance", default=0.0),
    )


def dumps(value: Any, indent: str = "") -> str:
    """JSON with objects one key a line and lists of plain values on one line."""
    inner = indent + "  "
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {dumps(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}" if items else "{}"
    one_line = json.dumps(value, ensure_ascii=False)
    nested = isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value)
    if isinstance(value, list) and (nested or len(indent) + len(one_line) > 90):
        return "[\n" + ",\n".join(inner + dumps(v, inner) for v in value) + f"\n{indent}]"
    return one_line
