"""The sketch classes (index = class id) and the fixed RGB of each in sketch pictures: the
palette the synthetic dataset renders (:mod:`nuwa.data.clip_rendering`) and the one a model
directory without ``input_rules.json`` reads sketches with (:meth:`InputRules.builtin`)."""

from __future__ import annotations

import numpy as np

SKETCH_CLASSES: tuple[str, ...] = ("background", "square", "circle", "triangle", "digit")
SKETCH_PALETTE: np.ndarray = np.array(
    [
        (0, 0, 0),  # background
        (255, 64, 64),  # square
        (64, 255, 64),  # circle
        (64, 64, 255),  # triangle
        (255, 255, 255),  # digit
    ],
    dtype=np.uint8,
)  # (num_classes, 3)
