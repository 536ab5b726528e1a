"""Next-token sampling in NumPy: temperature, top-k, top-p (nucleus) and classifier-free guidance,
reproducible from a seed through the portable generator of :mod:`nuwa.spec.sampling_random`.

The same rules as the PyTorch reference (``nuwa.model.sampling``) and the C++ runtime
(``runtime/cpp/token_sampler.cpp``): greedy (temperature 0) is an argmax; a sampled row draws
the uniform ``u(seed, row, position)`` and takes the first token whose cdf reaches
``u * cdf[-1]``, so a seed gives the same tokens in every decode loop (up to float rounding of
the logits). The options and their defaults are :mod:`nuwa.spec.sampling`'s (re-exported here).

Two paths draw the same tokens. The whole-vocabulary NumPy path (:func:`sampling_distribution`,
:func:`inverse_cdf`) takes any options and a whole batch. A decoding request's usual options
(top-k, no top-p) take :func:`top_k_token`, one row at a time: one partial sort in NumPy finds
the ``k`` candidates, the rest is plain float arithmetic on them in vocabulary order (what the C++
sampler and the tests' slow reference compute: a sequential sum of ``exp``). It costs about a
third of the NumPy path's time, whose ~25 array calls on a ``(1, V)`` row are nearly all
overhead, and it runs on every token of a generation. Rows with ties at the k-th logit, or with
non-finite logits, go the NumPy path. The uniforms come from :mod:`nuwa.runtime.philox_blocks`.
"""

from __future__ import annotations

import math

import numpy as np

from nuwa.runtime.philox_blocks import UniformBlocks
from nuwa.spec.sampling import SamplingOptions
from nuwa.spec.sampling_random import fresh_seed

__all__ = [
    "Sampler",
    "SamplingOptions",
    "apply_guidance",
    "filter_logits",
    "inverse_cdf",
    "sampling_distribution",
    "softmax",
    "top_k_token",
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


def inverse_cdf(probs: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Per row of ``probs (B, V)`` the first token whose cumulative probability reaches
    ``uniforms (B,) * total``: tokens ``(B,)`` int64 (:mod:`nuwa.spec.sampling_random`'s rule)."""
    cdf = np.cumsum(probs, axis=-1)
    u = uniforms * cdf[:, -1]
    tok = (cdf < u[:, None]).sum(axis=-1)  # first index with cdf >= u
    return np.minimum(tok, cdf.shape[-1] - 1).astype(np.int64)


def top_k_token(row: np.ndarray, top_k: int, temperature: float, u: float) -> int | None:
    """The token of one row ``(V,)`` under temperature and top-k (no top-p) for the uniform
    ``u``, computed on the ``top_k`` candidates only; ``None`` where the row needs the NumPy
    path (a tie at the k-th logit, a non-finite logit among the candidates, ``top_k >= V``)."""
    vocab = row.shape[0]
    if not 0 < top_k < vocab:
        return None
    cut = vocab - top_k  # order[cut-1] is the largest logit left out, order[cut:] the candidates
    order = np.argpartition(row, (cut - 1, cut))
    candidates = order[cut:]
    candidates.sort()  # vocabulary order, as the cdf runs
    values = row[candidates].tolist()
    if not all(map(math.isfinite, values)) or row[order[cut - 1]] >= min(values):
        return None  # a NaN or infinity; or a tie at the k-th logit (all tied tokens stay in)
    x = [v / temperature for v in values]
    top = max(x)
    weights = [math.exp(v - top) for v in x]
    total = 0.0
    for w in weights:  # sequential, as np.cumsum and the C++ sampler add
        total += w
    cdf, cumulative = [], 0.0
    for w in weights:
        cumulative += w / total
        cdf.append(cumulative)
    target = u * cdf[-1]
    if target <= 0.0:
        return 0  # every entry's cdf reaches 0, the first token's included
    for token, c in zip(candidates.tolist(), cdf, strict=True):
        if c >= target:
            return int(token)
    return vocab - 1


class Sampler:
    """Picks one token per row; the request's random stream is its ``seed`` (drawn fresh once
    when the options give none)."""

    def __init__(self, options: SamplingOptions) -> None:
        options.validate()
        self.options = options
        self.seed = fresh_seed() if options.seed is None else options.seed
        self._uniform = UniformBlocks(self.seed)

    def uniforms(self, rows: int, position: int) -> np.ndarray:
        """The uniforms ``(rows,)`` float64 of rows ``0 .. rows-1`` at ``position``."""
        return np.array([self._uniform(row, position) for row in range(rows)])

    def __call__(self, logits: np.ndarray, position: int) -> np.ndarray:
        """``logits (B, V)`` of raster ``position`` -> tokens ``(B,)`` int64."""
        opts = self.options
        if opts.greedy:
            return np.argmax(logits, axis=-1).astype(np.int64)
        if opts.top_k is not None and opts.top_p is None:
            tokens = [
                top_k_token(row, opts.top_k, opts.temperature, self._uniform(b, position))
                for b, row in enumerate(logits)
            ]
            if None not in tokens:
                return np.array(tokens, dtype=np.int64)
        probs = sampling_distribution(logits, opts)
        return inverse_cdf(probs, self.uniforms(logits.shape[0], position))
