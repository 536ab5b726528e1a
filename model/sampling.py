"""Next-token sampling for the reference decode loop: temperature, top-k, top-p (nucleus) and
classifier-free guidance, reproducible from a seed through the portable generator of
:mod:`nuwa.spec.sampling_random` — the same numbers and the same inverse-cdf rule as the
runtime's NumPy sampler (:mod:`nuwa.runtime.sampler`) and the C++ runtime, so a seed gives the
same tokens here as there (up to float rounding of the logits). The options and their defaults
are :mod:`nuwa.spec.sampling`'s (re-exported here)."""

from __future__ import annotations

import torch
from torch import Tensor

from nuwa.spec.sampling import SamplingOptions
from nuwa.spec.sampling_random import uniform

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
        # stable: tied logits in index order, as NumPy's argsort(kind="stable") and the C++ sampler
        sorted_logits, order = torch.sort(logits, descending=True, stable=True, dim=-1)
        probs = torch.softmax(sorted_logits, dim=-1)
        before = torch.cumsum(probs, dim=-1) - probs  # mass strictly before each token
        drop_sorted = before >= top_p  # the top token always stays
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_next(logits: Tensor, options: SamplingOptions, seed: int, position: int) -> Tensor:
    """Pick one token per row of ``logits (B, V)`` at raster ``position`` -> ``(B,)`` int64:
    row ``r`` takes the first token whose float64 cdf reaches ``uniform(seed, r, position)``
    times the total (``seed``: the request's, :func:`nuwa.spec.sampling_random.fresh_seed`
    when it gives none)."""
    if options.greedy:
        return logits.argmax(-1)
    x = filter_logits(logits.double() / options.temperature, options.top_k, options.top_p)
    cdf = torch.cumsum(torch.softmax(x, dim=-1), dim=-1)
    rows = logits.shape[0]
    u = torch.tensor([uniform(seed, r, position) for r in range(rows)], dtype=torch.float64)
    tok = (cdf < (u.to(cdf.device) * cdf[:, -1])[:, None]).sum(-1)  # first index with cdf >= u
    return tok.clamp(max=logits.shape[-1] - 1)
