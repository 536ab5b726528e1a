"""The sampler's uniforms (:mod:`nuwa.spec.sampling_random`) for many positions at once, in NumPy.

The spec's :func:`~nuwa.spec.sampling_random.uniform` is plain Python, one draw per call (a few
microseconds each, paid on every sampled token of every row). :func:`uniforms` runs the same
Philox4x32-10 rounds on arrays of counters (unsigned 64-bit lanes holding 32-bit words, so a
32 x 32-bit product never overflows), and :class:`UniformBlocks` keeps one block of consecutive
positions per row, so the decode loop, which walks positions in order, computes each row's
numbers once per :data:`BLOCK` positions. Tests check every value against the spec's.
"""

from __future__ import annotations

import numpy as np

from nuwa.spec.sampling_random import (
    MASK32,
    PHILOX_M0,
    PHILOX_M1,
    PHILOX_ROUNDS,
    PHILOX_W0,
    PHILOX_W1,
    UNIFORM_SCALE,
)

BLOCK = 256  # positions per row computed at once


def uniforms(seed: int, row: int, positions: np.ndarray) -> np.ndarray:
    """The uniforms ``(n,)`` float64 of ``row`` at ``positions (n,)`` (integers in
    ``[0, 2**64)``) for ``seed``: :func:`nuwa.spec.sampling_random.uniform` of each."""
    mask = np.uint64(MASK32)
    p = np.asarray(positions, dtype=np.uint64)
    c0, c1 = p & mask, p >> np.uint64(32)
    c2 = np.full_like(c0, row & MASK32)
    c3 = np.full_like(c0, row >> 32)
    k0, k1 = seed & MASK32, seed >> 32
    m0, m1 = np.uint64(PHILOX_M0), np.uint64(PHILOX_M1)
    for round_index in range(PHILOX_ROUNDS):
        if round_index > 0:
            k0 = (k0 + PHILOX_W0) & MASK32
            k1 = (k1 + PHILOX_W1) & MASK32
        p0, p1 = m0 * c0, m1 * c2
        c0, c1, c2, c3 = (
            (p1 >> np.uint64(32)) ^ c1 ^ np.uint64(k0),
            p1 & mask,
            (p0 >> np.uint64(32)) ^ c3 ^ np.uint64(k1),
            p0 & mask,
        )
    bits = (c1 << np.uint64(32)) | c0
    return (bits >> np.uint64(11)).astype(np.float64) * UNIFORM_SCALE


class UniformBlocks:
    """One seed's uniforms, a block of :data:`BLOCK` consecutive positions per row at a time."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._blocks: dict[int, tuple[int, list[float]]] = {}  # row -> (first position, values)

    def __call__(self, row: int, position: int) -> float:
        """``uniform(seed, row, position)``."""
        first, values = self._blocks.get(row, (-1, []))
        if not 0 <= position - first < len(values):
            first = position - position % BLOCK
            count = min(BLOCK, 2**64 - first)
            positions = np.arange(count, dtype=np.uint64) + np.uint64(first)
            values = uniforms(self.seed, row, positions).tolist()
            self._blocks[row] = (first, values)
        return values[position - first]
