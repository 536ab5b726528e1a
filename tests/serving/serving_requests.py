"""Requests of every task in the demo model's sizes (64x64 pixels), small enough to be quick:
video tasks make 2 frames."""

from __future__ import annotations

from typing import Any

import numpy as np

from nuwa.spec.sketch_palette import SKETCH_PALETTE

SIZE = 64


def sketch(frames: int) -> np.ndarray:
    classes = np.zeros((frames, SIZE, SIZE), dtype=np.int64)
    for t in range(frames):
        classes[t, 16:40, 8 + 4 * t : 32 + 4 * t] = 1 + t % 4
    return SKETCH_PALETTE[classes].astype(np.uint8)


def pictures(frames: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (frames, SIZE, SIZE, 3), dtype=np.uint8)


def region() -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
    mask[16:48, 16:48] = 255
    return mask


def task_requests() -> dict[str, dict[str, Any]]:
    """Per task: the request's values (the contract's inputs, as :mod:`nuwa.serving.client`
    takes them) and, under ``frames``, how many frames the answer has."""
    return {
        "t2i": {"prompt": "a red square", "frames": 1},
        "s2i": {"sketch": sketch(1), "frames": 1},
        "i2i": {"image": pictures(1)[0], "mask": region(), "frames": 1},
        "ti2i": {"prompt": "a blue circle", "image": pictures(1)[0], "mask": region(), "frames": 1},
        "t2v": {"prompt": "a red square moves left", "num_frames": 2, "frames": 2},
        "s2v": {"sketch": sketch(2), "num_frames": 2, "frames": 2},
        "v2v": {"video": pictures(1), "num_frames": 2, "frames": 2},
        "tv2v": {"prompt": "a green triangle", "video": pictures(2), "mask": region(), "frames": 2},
    }


def values_of(request: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in request.items() if k != "frames"}
