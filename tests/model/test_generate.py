"""The reference decode loop: the ring buffer keeps per-step work and memory constant while a
video slides past its trained length, forced tokens are kept, and seeds reproduce."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from nuwa.model.generate import DecodeState, generate_tokens
from nuwa.model.sampling import SamplingOptions


def test_ring_buffer_constant_work_and_memory_over_3x_trained_frames(tiny_model) -> None:
    t = tiny_model.transformer
    t.attn_impl = "dense"  # attention as matmuls over every cache slot, so FLOPs see its size
    try:
        cond = tiny_model.text_condition(["a red square moves left"])
        frames = 3 * t.cfg.frames
        state = DecodeState(t, cond, None, frames)
        cache_bytes = state.cache.nbytes
        flops, shapes = [], set()
        prev = torch.full((1,), t.cfg.bos_id)
        for pos in range(frames * t.cfg.tokens_per_frame):
            with FlopCounterMode(display=False) as counter, torch.no_grad():
                logits = state.step(prev, pos)
            flops.append(counter.get_total_flops())
            shapes.add(tuple(tuple(k.shape) for k, _ in state.cache.layers))
            assert state.cache.nbytes == cache_bytes
            prev = logits.argmax(-1)
        assert len(set(flops)) == 1, "per-step FLOPs changed with position"
        assert len(shapes) == 1
    finally:
        t.attn_impl = "gather"


def test_sliding_generation_starts_like_the_trained_length(tiny_model) -> None:
    cond = tiny_model.text_condition(["the digit 3 in blue moves down"])
    greedy = SamplingOptions(temperature=0.0)
    n_trained = tiny_model.config.transformer.frames
    short = generate_tokens(tiny_model.transformer, cond, n_trained, greedy, progress=False)
    long = generate_tokens(tiny_model.transformer, cond, 3 * n_trained, greedy, progress=False)
    assert long.shape[1] == 3 * n_trained
    assert torch.equal(long[:, :n_trained], short)


def test_forced_tokens_are_kept_and_seeds_reproduce(tiny_model) -> None:
    t = tiny_model.transformer
    cond = tiny_model.text_condition(["a", "b"])
    uncond = tiny_model.text_condition(["", ""], allow_empty=True)
    n = 2 * t.cfg.tokens_per_frame
    known = torch.randint(0, t.cfg.image_vocab_size, (2, n))
    mask = torch.zeros(2, n, dtype=torch.bool)
    mask[:, : t.cfg.tokens_per_frame] = True  # first frame given (video prediction)
    mask[1, -3:] = True  # a few given tokens in one row only
    opts = SamplingOptions(temperature=1.0, top_k=8, top_p=0.9, guidance_scale=2.0, seed=7)
    a = generate_tokens(t, cond, 2, opts, uncond, known, mask, progress=False).view(2, -1)
    b = generate_tokens(t, cond, 2, opts, uncond, known, mask, progress=False).view(2, -1)
    assert torch.equal(a, b)
    assert torch.equal(a[mask], known[mask])
    c = generate_tokens(t, cond, 2, SamplingOptions(temperature=1.0, seed=8), progress=False).view(
        2, -1
    )
    assert not torch.equal(a[~mask], c[~mask])


def test_callback_sees_every_position(tiny_model) -> None:
    seen: list[int] = []
    cond = tiny_model.text_condition(["x"])
    generate_tokens(
        tiny_model.transformer, cond, 1, SamplingOptions(temperature=0.0),
        callback=lambda pos, toks: seen.append(pos), progress=False,
    )  # fmt: skip
    assert seen == list(range(tiny_model.config.transformer.tokens_per_frame))


def test_guidance_without_unconditional_is_an_error(tiny_model) -> None:
    cond = tiny_model.text_condition(["x"])
    with pytest.raises(ValueError, match="unconditional"):
        generate_tokens(
            tiny_model.transformer, cond, 1, SamplingOptions(guidance_scale=3.0), progress=False
        )
    with pytest.raises(ValueError, match="num_frames"):
        generate_tokens(tiny_model.transformer, cond, 0, progress=False)
