"""Next-token sampling in NumPy: temperature, top-k, top-p (nucleus) and classifier-free guidance,
reproducible from a seed through an explicit ``numpy.random.Generator``.

The same rules as the PyTorch reference (``nuwa.model.sampling``): greedy (temperature 0) is an
argmax and matches it exactly; sampled tokens are reproducible per backend for a given seed.
The options and their defaults are :mod:`nuwa.spec.sampling`'s (re-exported here).
"""

from __future__ import annotations

import numpy as np

from nuwa.spec.sampling import SamplingOptions

__all__ = [
    "Sampler",
    "SamplingOptions",
    "apply_guidance",
    "filter_logits",
    "sampling_distribution",
    "softmax",
]


def apply_guidance(cond: np.ndarray, uncond: np.ndarray, scale: float) -> np.ndarray:
    """Classifier-free guidance: ``uncond + scale * (cond - uncond)``; rows ``(B, V)``."""
    return uncond + scale * (cond - uncond)


def filter_logits(logits: np.ndarray, top_k: int | None, top_p: float | None) -> np.ndarray:
    """Set logits outside the top-k / top-p set to -inf. ``logits (B, V)`` float."""
    logits = logits.copy()
    if top_k is not None and top_k < logits.shape[-1]:
        kth = -np.partition(-logits, top_k - 1, axis=-1)[:, top_k - 1 : top_k]
        logits[logits < kth] = -np.inf
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-logits, axis=-1, kind="stable")
        sorted_logits = np.take_along_axis(logits, order, axis=-1)
        probs = softmax(sorted_logits)
        before = np.cumsum(probs, axis=-1) - probs  # mass strictly before each token
        drop_sorted = before >= top_p  # the top token always stays
        drop = np.zeros_like(drop_sorted)
        np.put_along_axis(drop, order, drop_sorted, axis=-1)
        logits[drop] = -np.inf
    return logits


def softmax(x: np.ndarray) -> np.ndarray:
    x = x - np.max(x, axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def sampling_distribution(logits: np.ndarray, options: SamplingOptions) -> np.ndarray:
    """The probabilities ``(B, V)`` float64 :class:`Sampler` draws from for ``logits (B, V)``
    (temperature, top-k, top-p; greedy: one-hot on the argmax)."""
    if options.greedy:
        return np.eye(logits.shape[-1])[np.argmax(logits, axis=-1)]
    x = filter_logits(logits.astype(np.float64) / options.temperature, options.top_k, options.top_p)
    return softmax(x)


class Sampler:
    """Picks one token per row; owns the request's random stream."""

    def __init__(self, options: SamplingOptions) -> None:
        options.validate()
        self.options = options
        self.rng = np.random.default_rng(options.seed)

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        """``logits (B, V)`` -> tokens ``(B,)`` int64."""
        opts = self.options
        if opts.greedy:
            return np.argmax(logits, axis=-1).astype(np.int64)
        cdf = np.cumsum(sampling_distribution(logits, opts), axis=-1)
        u = self.rng.random(cdf.shape[0]) * cdf[:, -1]
        tok = (cdf < u[:, None]).sum(axis=-1)  # first index with cdf >= u
        return np.minimum(tok, cdf.shape[-1] - 1).astype(np.int64)
