"""Next-token sampling for the reference decode loop: temperature, top-k, top-p (nucleus) and
classifier-free guidance, reproducible from a seed through an explicit ``torch.Generator``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class SamplingOptions:
    temperature: float = 1.0  # 0 -> greedy (argmax)
    top_k: int | None = None  # keep the k most likely tokens
    top_p: float | None = None  # keep the smallest set with cumulative probability >= top_p
    guidance_scale: float = 1.0  # classifier-free guidance; 1 = off (no unconditional rows)
    seed: int | None = None  # None -> nondeterministic

    def validate(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.guidance_scale < 0:
            raise ValueError(f"guidance_scale must be >= 0, got {self.guidance_scale}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def uses_guidance(self) -> bool:
        return self.guidance_scale != 1.0


def apply_guidance(cond_logits: Tensor, uncond_logits: Tensor, scale: float) -> Tensor:
    """Classifier-free guidance: ``uncond + scale * (cond - uncond)``."""
    return uncond_logits + scale * (cond_logits - uncond_logits)


def filter_logits(logits: Tensor, top_k: int | None, top_p: float | None) -> Tensor:
    """Set logits outside the top-k / top-p set to -inf. ``logits (B, V)``."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = torch.softmax(sorted_logits, dim=-1)
        before = torch.cumsum(probs, dim=-1) - probs  # mass strictly before each token
        drop_sorted = before >= top_p  # the top token always stays
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_next(
    logits: Tensor, options: SamplingOptions, generator: torch.Generator | None
) -> Tensor:
    """Pick one token per row of ``logits (B, V)`` -> ``(B,)`` int64."""
    if options.greedy:
        return logits.argmax(-1)
    logits = filter_logits(logits / options.temperature, options.top_k, options.top_p)
    probs = torch.softmax(logits.float(), dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]
