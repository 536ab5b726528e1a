"""The sampler's fast paths against the slow ones they stand for: :func:`top_k_token` against
the whole-vocabulary NumPy rule, :mod:`nuwa.runtime.philox_blocks` against the spec's uniforms."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nuwa.runtime.philox_blocks import BLOCK, UniformBlocks, uniforms
from nuwa.runtime.sampler import (
    Sampler,
    SamplingOptions,
    inverse_cdf,
    sampling_distribution,
    top_k_token,
)
from nuwa.spec.sampling_random import uniform

words64 = st.integers(0, 2**64 - 1)


@settings(max_examples=100, deadline=None)
@given(seed=words64, row=words64, positions=st.lists(words64, min_size=1, max_size=8))
def test_block_uniforms_are_the_spec_uniforms(seed, row, positions) -> None:
    got = uniforms(seed, row, np.array(positions, dtype=np.uint64))
    assert got.tolist() == [uniform(seed, row, p) for p in positions]


def test_uniform_blocks_walk_positions_in_any_order() -> None:
    blocks = UniformBlocks(seed=12345)
    rng = np.random.default_rng(0)
    wanted = [*range(0, 2 * BLOCK + 5), *rng.integers(0, 2**40, size=20).tolist(), 3, 2**64 - 1]
    for row in (0, 1, 7):
        for position in wanted:
            assert blocks(row, position) == uniform(12345, row, position)


def whole_vocabulary_token(row: np.ndarray, top_k: int, temperature: float, u: float) -> int:
    """The NumPy path of :class:`Sampler` for one row and a given uniform."""
    options = SamplingOptions(temperature=temperature, top_k=top_k)
    return int(inverse_cdf(sampling_distribution(row[None], options), np.array([u]))[0])


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    vocab=st.integers(2, 600),
    top_k=st.integers(1, 40),
    temperature=st.sampled_from([0.1, 0.5, 1.0, 3.0]),
    scale=st.floats(0.01, 30.0),
    u=st.one_of(st.floats(0.0, 1.0, exclude_max=True), st.sampled_from([0.0, 1.0 - 2**-53])),
)
def test_top_k_token_is_the_whole_vocabulary_rule(seed, vocab, top_k, temperature, scale, u):
    row = (np.random.default_rng(seed).standard_normal(vocab) * scale).astype(np.float32)
    got = top_k_token(row, top_k, temperature, u)
    if top_k >= vocab:
        assert got is None
        return
    kth = np.sort(row)[::-1][top_k - 1]
    if np.count_nonzero(row >= kth) != top_k:
        assert got is None  # a tie at the k-th logit: the whole-vocabulary path decides
        return
    assert got == whole_vocabulary_token(row, top_k, temperature, u)


@pytest.mark.parametrize(
    "row",
    [
        [1.0, 3.0, 2.0, 0.5, 2.0],  # the 2nd largest is tied with the 3rd
        [1.0, np.nan, 3.0, 0.5, 2.0],
        [1.0, np.inf, 3.0, 0.5, 2.0],
        [-np.inf, -np.inf, -np.inf, -np.inf, 2.0],
    ],
)
def test_rows_the_fast_path_leaves_to_the_numpy_path(row) -> None:
    assert top_k_token(np.array(row, dtype=np.float32), 2, 1.0, 0.5) is None


def test_a_sampler_draws_the_same_tokens_on_either_path() -> None:
    """Rows the fast path takes and rows it leaves (ties) in one batch, many positions."""
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((6, 300)).astype(np.float32)
    logits[2, :] = np.round(logits[2, :])  # ties everywhere
    fast = Sampler(SamplingOptions(temperature=0.7, top_k=12, seed=9))
    for position in range(0, 600, 7):
        us = np.array([uniform(9, b, position) for b in range(6)])
        want = inverse_cdf(sampling_distribution(logits, fast.options), us)
        np.testing.assert_array_equal(fast(logits, position), want)
