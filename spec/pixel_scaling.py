"""Pixels and the model's value range, defined once: ``uint8`` 0..255 <-> ``[-1, 1]``.

``x = p / PIXEL_SCALE - PIXEL_SHIFT``; back: ``p = round((clip(x, -1, 1) + PIXEL_SHIFT) *
PIXEL_SCALE)``. The VQ-GAN encoders read the first, their decoders' outputs go through the second.
NumPy functions for the runtime's backends; the torch side (the reference model, training) uses
the constants with the same formula.
"""

from __future__ import annotations

import numpy as np

PIXEL_SCALE = 127.5  # half of 255
PIXEL_SHIFT = 1.0


def pixels_to_model(pixels: np.ndarray) -> np.ndarray:
    """``uint8`` pixels (any shape) -> ``float32`` in ``[-1, 1]``."""
    return pixels.astype(np.float32) / np.float32(PIXEL_SCALE) - np.float32(PIXEL_SHIFT)


def model_to_pixels(values: np.ndarray) -> np.ndarray:
    """Values in the model's range (any shape; outside ``[-1, 1]`` clipped) -> ``uint8``."""
    return np.round((np.clip(values, -1.0, 1.0) + PIXEL_SHIFT) * PIXEL_SCALE).astype(np.uint8)
