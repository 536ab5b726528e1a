"""The NumPy sampler against the PyTorch reference rules (nuwa.model.sampling) and a slow
obvious reference of the whole rule (plain Python loops, the spec's uniforms)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nuwa.model.sampling import filter_logits as torch_filter
from nuwa.model.sampling import sample_next as torch_sample_next
from nuwa.runtime.sampler import (
    Sampler,
    SamplingOptions,
    apply_guidance,
    filter_logits,
    sampling_distribution,
    softmax,
)
from nuwa.spec.errors import NuwaInputError
from nuwa.spec.sampling_random import uniform


@pytest.mark.parametrize(
    ("top_k", "top_p"), [(None, None), (1, None), (5, None), (None, 0.5), (None, 0.95), (8, 0.7)]
)
def test_filter_keeps_the_same_tokens_as_the_reference(top_k, top_p) -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        logits = rng.normal(size=(3, 40)).astype(np.float32) * 3
        ours = np.isfinite(filter_logits(logits, top_k, top_p))
        ref = torch.isfinite(torch_filter(torch.from_numpy(logits), top_k, top_p)).numpy()
        np.testing.assert_array_equal(ours, ref)
        assert ours.any(axis=-1).all()  # the best token always survives


def test_greedy_is_argmax_and_guidance_is_the_cfg_formula() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4, 16))
    np.testing.assert_array_equal(
        Sampler(SamplingOptions(temperature=0))(logits, 0), logits.argmax(-1)
    )
    c, u = rng.normal(size=(2, 16)), rng.normal(size=(2, 16))
    np.testing.assert_allclose(apply_guidance(c, u, 3.0), u + 3.0 * (c - u))
    np.testing.assert_allclose(apply_guidance(c, u, 1.0), c)


def test_samples_follow_the_distribution_and_reproduce() -> None:
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]])).repeat(20000, axis=0)
    draws = Sampler(SamplingOptions(temperature=1.0, seed=3))(logits, 5)
    freq = np.bincount(draws, minlength=4) / draws.size
    np.testing.assert_allclose(freq, softmax(logits[:1])[0], atol=0.015)
    again = Sampler(SamplingOptions(temperature=1.0, seed=3))(logits, 5)
    np.testing.assert_array_equal(draws, again)
    elsewhere = Sampler(SamplingOptions(temperature=1.0, seed=3))(logits, 6)
    assert (draws != elsewhere).mean() > 0.3  # each position its own numbers
    one_row = Sampler(SamplingOptions(temperature=1.0, seed=3))(logits[:1], 5)
    assert one_row[0] == draws[0]  # a row's draw does not depend on the batch around it
    topk = Sampler(SamplingOptions(temperature=1.0, top_k=2, seed=3))(logits, 5)
    assert set(np.unique(topk)) == {0, 1}


def test_sampling_distribution_is_what_the_sampler_draws_from() -> None:
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    opts = SamplingOptions(temperature=0.5, top_k=3, seed=0)
    p = sampling_distribution(logits, opts)[0]
    by_hand = np.array([0.5, 0.3, 0.15, 0.0]) ** 2  # temperature 0.5 squares p; top-3
    np.testing.assert_allclose(p, by_hand / by_hand.sum(), rtol=1e-12)
    draws = Sampler(opts)(logits.repeat(20000, axis=0), 0)
    np.testing.assert_allclose(np.bincount(draws, minlength=4) / draws.size, p, atol=0.015)
    greedy = sampling_distribution(logits, SamplingOptions(temperature=0.0))
    np.testing.assert_array_equal(greedy, [[1.0, 0.0, 0.0, 0.0]])


def slow_reference_token(
    row: list[float], options: SamplingOptions, seed: int, row_index: int, position: int
) -> int:
    """The rule written out once more, one token at a time with plain Python loops: greedy is
    the first maximum; else logits / temperature, top-k (everything at least the k-th largest),
    top-p (descending order, ties by index; drop a token once the mass before it reaches p),
    softmax, and the first token whose running cdf reaches ``uniform * total``."""
    vocab = len(row)
    if options.temperature == 0:
        return max(range(vocab), key=lambda v: (row[v], -v))
    x = [float(v) / options.temperature for v in row]
    if options.top_k is not None and options.top_k < vocab:
        kth = sorted(x, reverse=True)[options.top_k - 1]
        x = [v if v >= kth else -math.inf for v in x]
    if options.top_p is not None and options.top_p < 1.0:
        order = sorted(range(vocab), key=lambda v: -x[v])  # sorted() is stable
        top = x[order[0]]
        weights = [math.exp(x[v] - top) for v in order]
        total, cumulative, dropped = sum(weights), 0.0, set()
        for i, v in enumerate(order):
            prob = weights[i] / total
            cumulative += prob
            if cumulative - prob >= options.top_p:
                dropped.add(v)
        x = [-math.inf if v in dropped else x[v] for v in range(vocab)]
    top = max(x)
    weights = [math.exp(v - top) for v in x]
    total = sum(weights)
    cdf, cumulative = [], 0.0
    for w in weights:
        cumulative += w / total
        cdf.append(cumulative)
    target = uniform(seed, row_index, position) * cdf[-1]
    for v, c in enumerate(cdf):
        if c >= target:
            return v
    return vocab - 1


logit_rows = st.one_of(
    st.lists(st.floats(-8, 8, width=32), min_size=2, max_size=40),
    st.lists(st.sampled_from([-2.0, 0.0, 0.5, 1.0, 3.0]), min_size=2, max_size=40),  # ties
)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(logit_rows, min_size=1, max_size=3),
    temperature=st.sampled_from([0.0, 0.3, 0.7, 1.0, 2.5]),
    top_k=st.one_of(st.none(), st.integers(1, 42)),
    top_p=st.one_of(st.none(), st.floats(0.01, 1.0)),
    seed=st.integers(0, 2**64 - 1),
    position=st.integers(0, 2**40),
)
def test_sampler_equals_the_slow_reference_and_the_torch_sampler(
    rows, temperature, top_k, top_p, seed, position
) -> None:
    vocab = len(rows[0])
    logits = np.array([(r * vocab)[:vocab] for r in rows], dtype=np.float32)
    options = SamplingOptions(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    got = Sampler(options)(logits, position)
    want = [
        slow_reference_token(row.tolist(), options, seed, b, position)
        for b, row in enumerate(logits)
    ]
    assert got.tolist() == want
    reference = torch_sample_next(torch.from_numpy(logits), options, seed, position)
    assert reference.tolist() == want


def test_unseeded_samplers_draw_fresh_seeds() -> None:
    logits = np.zeros((64, 50))
    first, second = (Sampler(SamplingOptions(temperature=1.0)) for _ in range(2))
    assert first.seed != second.seed
    assert not np.array_equal(first(logits, 0), second(logits, 0))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"temperature": -1.0}, "temperature"),
        ({"top_k": 0}, "top-k"),
        ({"top_p": 1.5}, "top-p"),
        ({"guidance_scale": -2.0}, "guidance"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**64}, "seed must be < 2"),
    ],
)
def test_bad_options_are_input_errors(options, message) -> None:
    with pytest.raises(NuwaInputError, match=message):
        SamplingOptions(**options).validate()
