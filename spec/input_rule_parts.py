"""The parts of a model's input rules (:mod:`nuwa.spec.input_rules`): the caption grammar
(:class:`CaptionGrammar`: the words a model knows, and the warning for the ones it does not), the
sketch palette (:class:`SketchRules`: reading sketch colours as classes, with a slow reference
beside the fast one), and the defaults and limits the rules share.

NumPy only (no torch), so the runtime can use it.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass

import numpy as np

SNAP_DISTANCE = 48.0  # RGB distance within which an anti-aliased sketch pixel snaps
MASK_THRESHOLD = 127  # a mask picture's grey level above which a pixel is generated
RESIZE_FILTERS = ("bicubic", "bilinear", "nearest")
WORD_LISTS = ("colours", "shapes", "digits", "positions", "directions")
_WORD = re.compile(r"[^\W_]+")  # a word of a prompt: letters and digits

# the rules of a model without its own text for them (InputRules.builtin; a file's defaults)
DEFAULT_MASK_RULE = (
    "white (grey > 127) = generate, black = keep; transparent pixels keep; a rectangle "
    "x0,y0,x1,y1 in the input's pixels = generate"
)
DEFAULT_RESIZE_RULE = (
    "an image, video, mask picture or sketch of another size is resized to the model's with a "
    "warning (images and videos with the resize filter, sketches nearest so their colours stay "
    "exact, masks so a token is generated if any of its pixels is masked); a mask rectangle is "
    "in the input's own pixels"
)


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
        from nuwa.spec.tokenizer import normalise

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

    @classmethod
    def from_palette(
        cls, size: int, classes: tuple[str, ...], palette: np.ndarray, snap: float
    ) -> SketchRules:
        """The rules of a ``uint8 (classes, 3)`` palette (``sketch_palette.SKETCH_PALETTE``)."""
        colours = tuple((int(r), int(g), int(b)) for r, g, b in np.asarray(palette).tolist())
        return cls(size, tuple(classes), colours, float(snap))

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
