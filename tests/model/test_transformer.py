"""The 3D transformer: cached decoding equals teacher forcing, both 3DNA implementations agree,
and the presets have the shapes DESIGN asks for."""

from __future__ import annotations

import pytest
import torch

from nuwa.model.attention3d import NearbyAttentionSpec, resolve_impl
from nuwa.model.transformer import EncodedCondition, NuwaTransformer, count_parameters
from nuwa.spec.config import NuwaConfig


def _pair() -> tuple[NuwaTransformer, NuwaTransformer]:
    cfg = NuwaConfig.from_name("tiny").transformer
    torch.manual_seed(1)
    gather = NuwaTransformer(cfg, attn_impl="gather").double().eval()
    dense = NuwaTransformer(cfg, attn_impl="dense").double().eval()
    dense.load_state_dict(gather.state_dict())
    return gather, dense


def _conditions(model: NuwaTransformer, kind: str, batch: int) -> EncodedCondition:
    cfg = model.cfg
    if kind == "text":
        return model.encode_text(torch.randint(0, 256, (batch, cfg.max_text_len)))
    sketch = torch.randint(
        0, cfg.sketch_vocab_size, (batch, 1, cfg.sketch_grid_h, cfg.sketch_grid_w)
    )
    return model.encode_sketch(sketch)


@pytest.mark.parametrize("impl", ["gather", "dense", "auto"])
@pytest.mark.parametrize("kind", ["text", "sketch"])
def test_cached_decoding_equals_teacher_forcing(impl: str, kind: str) -> None:
    """Every position of a 3-frame video: decode_step with the ring cache == full forward."""
    gather, dense = _pair()
    model = {"gather": gather, "dense": dense}.get(impl)
    if model is None:
        model = NuwaTransformer(gather.cfg, attn_impl=impl).double().eval()
        model.load_state_dict(gather.state_dict())
    torch.manual_seed(2)
    cond = _conditions(model, kind, batch=2)
    cfg = model.cfg
    target = torch.randint(0, cfg.image_vocab_size, (2, 3, cfg.grid_h, cfg.grid_w))
    full = model(cond, target)
    cross = model.cross_kv(cond)
    cache = model.empty_cache(2).layers
    flat = target.reshape(2, -1)
    assert model.cfg.cache_slots < flat.shape[1]  # the ring wraps around during this video
    for p in range(flat.shape[1]):
        prev = torch.full((2,), cfg.bos_id) if p == 0 else flat[:, p - 1]
        logits, cache = model.decode_step(
            prev, torch.full((2,), p), cache, cross, cond.grid, cond.cross_extents, 3
        )
        torch.testing.assert_close(logits, full[:, p], atol=1e-5, rtol=0)


@pytest.mark.parametrize("impl", ["gather", "dense"])
def test_long_teacher_forcing_equals_the_sliding_ring(impl: str) -> None:
    """A text-conditioned target past the trained frames (7 of the tiny model's 3): the forward's
    logits are the ring cache's, frame by frame, as the window slides (what training on long
    clips teaches is what long generation runs)."""
    gather, dense = _pair()
    model = gather if impl == "gather" else dense
    torch.manual_seed(4)
    cond = _conditions(model, "text", batch=2)
    cfg = model.cfg
    frames = 7
    target = torch.randint(0, cfg.image_vocab_size, (2, frames, cfg.grid_h, cfg.grid_w))
    full = model(cond, target)
    cross = model.cross_kv(cond)
    cache = model.empty_cache(2).layers
    flat = target.reshape(2, -1)
    for p in range(flat.shape[1]):
        prev = torch.full((2,), cfg.bos_id) if p == 0 else flat[:, p - 1]
        logits, cache = model.decode_step(
            prev, torch.full((2,), p), cache, cross, cond.grid, cond.cross_extents, frames
        )
        torch.testing.assert_close(logits, full[:, p], atol=1e-5, rtol=0)
    # the trained frames' logits do not depend on the frames after them
    torch.testing.assert_close(full[:, : 3 * 16], model(cond, target[:, :3]), atol=1e-9, rtol=0)


def test_long_target_needs_a_text_condition() -> None:
    model, _ = _pair()
    cond = _conditions(model, "sketch", batch=1)
    target = torch.randint(0, model.cfg.image_vocab_size, (1, 4, 4, 4))
    with pytest.raises(ValueError, match="past the trained 3 frames: only a text condition"):
        model(cond, target)


def test_gather_and_dense_models_agree() -> None:
    gather, dense = _pair()
    torch.manual_seed(3)
    text = torch.randint(0, 256, (2, gather.cfg.max_text_len))
    target = torch.randint(0, gather.cfg.image_vocab_size, (2, 2, 4, 4))
    out_g = gather(gather.encode_text(text), target)
    out_d = dense(dense.encode_text(text), target)
    torch.testing.assert_close(out_g, out_d, atol=1e-9, rtol=0)


def test_causality_future_tokens_do_not_change_logits() -> None:
    model, _ = _pair()
    cond = _conditions(model, "text", batch=1)
    target = torch.randint(0, model.cfg.image_vocab_size, (1, 3, 4, 4))
    other = target.clone().view(1, -1)
    other[:, 20:] = (other[:, 20:] + 1) % model.cfg.image_vocab_size
    a = model(cond, target)
    b = model(cond, other.view_as(target))
    torch.testing.assert_close(a[:, :21], b[:, :21])  # logits <= 20 see tokens < 20 only
    assert not torch.allclose(a[:, 21:], b[:, 21:])


def test_sketch_to_video_grid_rescaling() -> None:
    """A single-frame sketch condition drives a 3-frame target (grid (1,h,w) -> (3,h,w))."""
    model, _ = _pair()
    cond = _conditions(model, "sketch", batch=1)
    assert cond.grid[0] == 1
    target = torch.randint(0, model.cfg.image_vocab_size, (1, 3, 4, 4))
    assert model(cond, target).shape == (1, 48, model.cfg.image_vocab_size)


def test_paper_preset_has_870m_parameters() -> None:
    cfg = NuwaConfig.from_name("paper")
    with torch.device("meta"):
        model = NuwaTransformer(cfg.transformer)
    n = count_parameters(model)
    assert abs(n - 870e6) / 870e6 < 0.05, n
    t = cfg.transformer
    assert (t.n_encoder_layers, t.n_decoder_layers, t.d_model, t.n_heads) == (12, 24, 1280, 20)
    assert (t.image_vocab_size, t.frames, t.grid_h, t.grid_w) == (12288, 10, 21, 21)


def test_demo_preset_is_the_benchmark_shape() -> None:
    t = NuwaConfig.from_name("demo").transformer
    assert (t.frames, t.grid_h, t.grid_w, t.d_model, t.n_decoder_layers, t.n_heads) == (
        8, 8, 8, 256, 4, 8,
    )  # fmt: skip
    assert t.decoder_self_extents == (3, 3, 3)
    assert t.cache_slots == 4 * 64


def test_bad_inputs_name_the_problem() -> None:
    model, _ = _pair()
    with pytest.raises(ValueError, match="text ids have length"):
        model.encode_text(torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="sketch tokens have grid"):
        model.encode_sketch(torch.zeros(1, 1, 5, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="unknown preset"):
        NuwaConfig.from_name("huge")


def test_auto_picks_dense_for_small_whole_grids_and_gathers_the_rest() -> None:
    small = NearbyAttentionSpec((8, 8, 8), (8, 8, 8), (3, 3, 3))
    assert resolve_impl("auto", small, None) == "dense"  # the demo's sketch encoder
    assert resolve_impl("auto", small, torch.zeros(1, 1, dtype=torch.long)) == "gather"
    ring = NearbyAttentionSpec((8, 8, 8), (8, 8, 8), (3, 3, 3), True, None, True)
    assert resolve_impl("auto", ring, None) == "gather"
    paper = NearbyAttentionSpec((16, 32, 32), (16, 32, 32), (3, 3, 3), True)
    assert resolve_impl("auto", paper, None) == "gather"  # a 16k x 16k mask
    assert resolve_impl("gather", small, None) == "gather"
    with pytest.raises(ValueError, match="unknown 3DNA implementation 'fast'"):
        NuwaTransformer(NuwaConfig.from_name("tiny").transformer, attn_impl="fast")
    gather, _ = _pair()
    auto = NuwaTransformer(gather.cfg, attn_impl="auto").double().eval()
    auto.load_state_dict(gather.state_dict())
    for kind in ("text", "sketch"):
        conds = []
        for model in (gather, auto):
            torch.manual_seed(4)
            conds.append(_conditions(model, kind, batch=2))
        target = torch.randint(0, gather.cfg.image_vocab_size, (2, 2, 4, 4))
        out_g, out_a = gather(conds[0], target), auto(conds[1], target)
        torch.testing.assert_close(out_a, out_g, atol=1e-9, rtol=0)
