"""Sampling filters against brute-force definitions on random logits."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nuwa.model.sampling import SamplingOptions, apply_guidance, filter_logits, sample_next


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 40), st.integers(1, 40), st.floats(0.05, 1.0), st.integers(0, 10_000))
def test_top_k_top_p_match_brute_force(vocab: int, k: int, p: float, seed: int) -> None:
    torch.manual_seed(seed)
    logits = torch.randn(3, vocab, dtype=torch.float64)
    out = filter_logits(logits, k, p)
    for row, got in zip(logits, out, strict=True):
        order = torch.argsort(row, descending=True).tolist()
        keep = set(order[: min(k, vocab)])
        kept_logits = torch.tensor([row[i] if i in keep else -float("inf") for i in range(vocab)])
        probs = torch.softmax(kept_logits, 0)
        nucleus, mass = set(), 0.0
        for i in torch.argsort(probs, descending=True).tolist():
            if mass >= p:
                break
            nucleus.add(i)
            mass += float(probs[i])
        assert {i for i in range(vocab) if got[i] > -float("inf")} == keep & nucleus


def test_greedy_guidance_and_seeded_sampling() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0]])
    assert sample_next(logits, SamplingOptions(temperature=0.0), 0, 0).tolist() == [1]
    g = apply_guidance(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 0.0]), 3.0)
    assert g.tolist() == [1.0, 6.0]
    opts = SamplingOptions(temperature=1.0)
    logits = torch.randn(4, 50)
    draw = [sample_next(logits, opts, seed=5, position=9) for _ in range(2)]
    assert torch.equal(draw[0], draw[1])
    assert set(sample_next(torch.zeros(4000, 3), opts, seed=5, position=9).tolist()) == {0, 1, 2}


def test_options_validation() -> None:
    for bad in (
        SamplingOptions(temperature=-1),
        SamplingOptions(top_k=0),
        SamplingOptions(top_p=1.5),
    ):
        with pytest.raises(ValueError):
            bad.validate()
