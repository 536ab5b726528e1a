"""Deepening a trained model: the new decoder layers pass their input through, so the deepened
model computes exactly what the original did, and training then reaches the new layers."""

from __future__ import annotations

import pytest
import torch

from nuwa.model.nuwa import NuwaModel
from nuwa.spec.config import NuwaConfig
from nuwa.training.growth import deepen_decoder, deepened_config


def _trained_looking_model() -> NuwaModel:
    """A tiny model whose every weight is random (a fresh model's zero biases and unit norms
    would hide a layer that is copied wrong)."""
    torch.manual_seed(0)
    model = NuwaModel(NuwaConfig.from_name("tiny"), attn_impl="dense")
    with torch.no_grad():
        for p in model.transformer.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("added", [0, 1, 3])
@pytest.mark.parametrize("kind", ["text", "sketch"])
def test_a_deepened_model_computes_what_the_original_did(added: int, kind: str) -> None:
    model = _trained_looking_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    have = model.config.transformer.n_decoder_layers
    grown = deepen_decoder(model, have + added)
    assert len(grown.transformer.decoder_layers) == have + added
    assert grown.config.transformer.n_decoder_layers == have + added
    assert not grown.training
    for name, value in model.state_dict().items():  # the original is untouched ...
        assert torch.equal(value, before[name]), name
        assert torch.equal(grown.state_dict()[name], value), name  # ... and copied whole
    cfg = model.config.transformer
    torch.manual_seed(1)
    if kind == "text":
        ids = torch.randint(0, 256, (2, cfg.max_text_len))
        cond, grown_cond = model.transformer.encode_text(ids), grown.transformer.encode_text(ids)
    else:
        codes = torch.randint(
            0, cfg.sketch_vocab_size, (2, 1, cfg.sketch_grid_h, cfg.sketch_grid_w)
        )
        cond = model.transformer.encode_sketch(codes)
        grown_cond = grown.transformer.encode_sketch(codes)
    target = torch.randint(0, cfg.image_vocab_size, (2, 2, cfg.grid_h, cfg.grid_w))
    with torch.no_grad():
        logits = model.transformer(cond, target)
        grown_logits = grown.transformer(grown_cond, target)
    assert torch.equal(logits, grown_logits)
    # cached decoding too: the first tokens of the first frame, step by step
    cross, grown_cross = model.transformer.cross_kv(cond), grown.transformer.cross_kv(grown_cond)
    cache = model.transformer.empty_cache(2).layers
    grown_cache = grown.transformer.empty_cache(2).layers
    assert len(grown_cache) == have + added
    prev = torch.full((2,), cfg.bos_id)
    for p in range(4):
        pos = torch.full((2,), p)
        with torch.no_grad():
            step, cache = model.transformer.decode_step(
                prev, pos, cache, cross, cond.grid, cond.cross_extents, 2
            )
            grown_step, grown_cache = grown.transformer.decode_step(
                prev, pos, grown_cache, grown_cross, cond.grid, cond.cross_extents, 2
            )
        assert torch.equal(step, grown_step), p
        prev = step.argmax(-1)


def test_new_layers_learn_from_the_first_step() -> None:
    model = _trained_looking_model()
    grown = deepen_decoder(model, model.config.transformer.n_decoder_layers + 1).train()
    new = grown.transformer.decoder_layers[-1]
    cfg = grown.config.transformer
    torch.manual_seed(2)
    cond = grown.transformer.encode_text(torch.randint(0, 256, (2, cfg.max_text_len)))
    target = torch.randint(0, cfg.image_vocab_size, (2, 1, cfg.grid_h, cfg.grid_w))
    logits = grown.transformer(cond, target)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten()).backward()
    for linear in (new.self_attn.out_proj, new.cross_attn.out_proj, new.ffn.fc2):
        assert torch.count_nonzero(linear.weight) == 0  # a pass-through ...
        assert linear.weight.grad is not None  # ... that learns
        assert linear.weight.grad.abs().sum() > 0


def test_deepening_cannot_remove_layers() -> None:
    config = NuwaConfig.from_name("tiny")
    have = config.transformer.n_decoder_layers
    with pytest.raises(ValueError, match=f"has {have} decoder layers; deepening can only add"):
        deepened_config(config, have - 1)
    with pytest.raises(ValueError, match="deepening can only add"):
        deepen_decoder(NuwaModel(config), have - 1)
    assert deepened_config(config, have + 2).transformer.n_decoder_layers == have + 2
    assert config.transformer.n_decoder_layers == have  # the config given is not changed
