"""The NumPy sampler against the PyTorch reference rules (nuwa.model.sampling)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nuwa.model.sampling import filter_logits as torch_filter
from nuwa.runtime.sampler import (
    Sampler,
    SamplingOptions,
    apply_guidance,
    filter_logits,
    sampling_distribution,
    softmax,
)
from nuwa.spec.errors import NuwaInputError


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
        Sampler(SamplingOptions(temperature=0))(logits), logits.argmax(-1)
    )
    c, u = rng.normal(size=(2, 16)), rng.normal(size=(2, 16))
    np.testing.assert_allclose(apply_guidance(c, u, 3.0), u + 3.0 * (c - u))
    np.testing.assert_allclose(apply_guidance(c, u, 1.0), c)


def test_samples_follow_the_distribution_and_reproduce() -> None:
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]])).repeat(20000, axis=0)
    draws = Sampler(SamplingOptions(temperature=1.0, seed=3))(logits)
    freq = np.bincount(draws, minlength=4) / draws.size
    np.testing.assert_allclose(freq, softmax(logits[:1])[0], atol=0.015)
    again = Sampler(SamplingOptions(temperature=1.0, seed=3))(logits)
    np.testing.assert_array_equal(draws, again)
    topk = Sampler(SamplingOptions(temperature=1.0, top_k=2, seed=3))(logits)
    assert set(np.unique(topk)) == {0, 1}


def test_sampling_distribution_is_what_the_sampler_draws_from() -> None:
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    opts = SamplingOptions(temperature=0.5, top_k=3, seed=0)
    p = sampling_distribution(logits, opts)[0]
    by_hand = np.array([0.5, 0.3, 0.15, 0.0]) ** 2  # temperature 0.5 squares p; top-3
    np.testing.assert_allclose(p, by_hand / by_hand.sum(), rtol=1e-12)
    draws = Sampler(opts)(logits.repeat(20000, axis=0))
    np.testing.assert_allclose(np.bincount(draws, minlength=4) / draws.size, p, atol=0.015)
    greedy = sampling_distribution(logits, SamplingOptions(temperature=0.0))
    np.testing.assert_array_equal(greedy, [[1.0, 0.0, 0.0, 0.0]])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"temperature": -1.0}, "temperature"),
        ({"top_k": 0}, "top-k"),
        ({"top_p": 1.5}, "top-p"),
        ({"guidance_scale": -2.0}, "guidance"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_options_are_input_errors(options, message) -> None:
    with pytest.raises(NuwaInputError, match=message):
        SamplingOptions(**options).validate()
