"""Sampling options and their defaults, defined once for every decode loop.

:class:`SamplingOptions` is what a decode loop samples with: the NumPy sampler of the runtime
(:mod:`nuwa.runtime.sampler`), the PyTorch reference (:mod:`nuwa.model.sampling`) and the C++
runtime read the same options; each keeps its own implementation of the rules, and all draw
their random numbers from :mod:`nuwa.spec.sampling_random`, so a seed gives the same tokens in
each (up to float rounding of the logits).

Two kinds of default, kept apart on purpose:

- a field left out of ``SamplingOptions(...)`` is *off*: temperature 1 (the model's plain
  distribution), no top-k, no top-p, guidance 1, so ``SamplingOptions(temperature=0)`` is plain
  greedy decoding;
- a request that gives no options at all samples with :data:`BUILTIN_SAMPLING` (low
  temperature, top-k and mild guidance), unless the model's ``generation_config.json``
  (:mod:`nuwa.spec.generation_config`) says otherwise. :func:`default_sampling_options` builds
  them; ``generate_tokens(options=None)`` of both decode loops and the Pipeline (for a model
  without the file) all get these values.

Plain Python (no NumPy, no torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nuwa.spec.errors import NuwaInputError
from nuwa.spec.sampling_random import SEED_LIMIT

SAMPLING_KEYS = ("temperature", "top_k", "top_p", "guidance_scale")
# low temperature, top-k and mild guidance: what the demo model was first evaluated with
BUILTIN_SAMPLING: dict[str, Any] = {
    "temperature": 0.5,
    "top_k": 16,
    "top_p": None,
    "guidance_scale": 2.0,
}
NO_GUIDANCE = 1.0  # the guidance scale that turns classifier-free guidance off


@dataclass
class SamplingOptions:
    """How one request picks its tokens; a field left out is off (the module docstring)."""

    temperature: float = 1.0  # 0 -> greedy (argmax)
    top_k: int | None = None  # keep the k most likely tokens
    top_p: float | None = None  # keep the smallest set with cumulative probability >= top_p
    guidance_scale: float = NO_GUIDANCE  # classifier-free guidance; 1 = off (no uncond rows)
    seed: int | None = None  # the random stream (nuwa.spec.sampling_random); None -> fresh entropy

    def validate(self) -> None:
        """A :class:`NuwaInputError` (a ``ValueError``) naming the first bad value."""
        if not self.temperature >= 0:
            raise NuwaInputError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise NuwaInputError(f"top-k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise NuwaInputError(f"top-p must be in (0, 1], got {self.top_p}")
        if not self.guidance_scale >= 0:
            raise NuwaInputError(f"guidance scale must be >= 0, got {self.guidance_scale}")
        if self.seed is not None and self.seed < 0:
            raise NuwaInputError(f"seed must be >= 0, got {self.seed}")
        if self.seed is not None and self.seed >= SEED_LIMIT:
            raise NuwaInputError(f"seed must be < 2**64 (the generator's key), got {self.seed}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def uses_guidance(self) -> bool:
        return self.guidance_scale != NO_GUIDANCE


def default_sampling_options(guided: bool, seed: int | None = None) -> SamplingOptions:
    """The options of a request that gives none, for a model without a
    ``generation_config.json``: :data:`BUILTIN_SAMPLING`, with guidance only where the request
    has an unconditional condition to guide away from (``guided``; the tasks that take none
    always run with guidance 1)."""
    values = dict(BUILTIN_SAMPLING)
    if not guided:
        values["guidance_scale"] = NO_GUIDANCE
    return SamplingOptions(**values, seed=seed)
