"""How the evaluation's requests become pixels: one concept, the seam between what a task asks
for (:class:`Request`: prompts or sketches, frames, forced tokens) and whatever generates it
(:class:`PixelGenerator`).

The evaluation's generator is :class:`RuntimeGenerator`: any :mod:`nuwa.runtime` backend (torch,
ONNX Runtime, TensorRT) driven by the runtime's decode loop
(:func:`nuwa.runtime.engine.generate_tokens`, the NumPy sampler seeded per request), with the
conditions the quality gates use (:func:`nuwa.calibration.task_samples.condition_pair`). The
tests plug the small PyTorch reference loop (``nuwa.model.generate``) into the same seam to
compare backends against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from nuwa.calibration.task_samples import condition_pair
from nuwa.runtime.backends import Backend
from nuwa.runtime.engine import generate_tokens
from nuwa.runtime.sampler import SamplingOptions
from nuwa.spec.model_spec import ModelSpec


@dataclass(frozen=True)
class Request:
    """One batch of requests: a text condition (``prompts``) or a sketch condition (``sketch``,
    class maps ``(B, T, S, S)``), ``frames`` to generate and, optionally, tokens forced where
    ``known_mask (B, N)`` is set (``known (B, N)`` int64, ``N = frames*h*w``)."""

    frames: int
    prompts: list[str] | None = None
    sketch: np.ndarray | None = None
    known: np.ndarray | None = None
    known_mask: np.ndarray | None = None

    @property
    def size(self) -> int:
        if self.prompts is not None:
            return len(self.prompts)
        if self.sketch is not None:
            return int(self.sketch.shape[0])
        raise ValueError("a request needs prompts or sketches")


class PixelGenerator(Protocol):
    """What the evaluator needs from a generator: the model's facts, its VQ-GAN encoder (for the
    frames a request forces) and generation to uint8 pixels ``(B, frames, S, S, 3)``."""

    spec: ModelSpec

    def frames_to_codes(self, frames: np.ndarray) -> np.ndarray: ...

    def generate(self, request: Request, options: SamplingOptions) -> np.ndarray: ...


class RuntimeGenerator:
    """A :class:`PixelGenerator` over a runtime backend: its encoders, the runtime's decode
    loop and sampler, its VQ-GAN."""

    def __init__(self, backend: Backend, progress: bool = False) -> None:
        self.backend = backend
        self.spec = backend.spec
        self.progress = progress

    def frames_to_codes(self, frames: np.ndarray) -> np.ndarray:
        return self.backend.frames_to_codes(frames)

    def generate(self, request: Request, options: SamplingOptions) -> np.ndarray:
        cond, uncond = condition_pair(
            self.backend, options.uses_guidance, request.prompts, request.sketch
        )
        tokens = generate_tokens(
            self.backend,
            cond,
            request.frames,
            options,
            uncond=uncond,
            known=request.known,
            known_mask=request.known_mask,
            progress=self.progress,
        )
        return self.backend.codes_to_frames(tokens)
