"""Next-token sampling for the reference decode loop: temperature, top-k, top-p (nucleus) and
classifier-free guidance, reproducible from a seed through an explicit ``torch.Generator``.
The options and their defaults are :mod:`nuwa.spec.sampling`'s (re-exported here), shared with
the runtime's NumPy sampler."""

from __future__ import annotations

import torch
from torch import Tensor

from nuwa.spec.sampling import SamplingOptions

__all__ = ["SamplingOptions", "apply_guidance", "filter_logits", "sample_next"]


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
