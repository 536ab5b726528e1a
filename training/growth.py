"""Growing a trained model deeper without changing what it computes.

``deepen_decoder`` appends decoder layers on top of a trained transformer. Every layer is pre-LN
with residual branches (``x + attn(norm(x))``, ``x + ffn(norm(x))``), so a new layer whose three
branch output projections are zero passes its input through unchanged: the deepened model's
logits equal the original's bit for bit, and fine-tuning starts from the trained model rather than
from a perturbed one. The new layers' other weights keep their fresh initialisation, so the
gradient reaches them as soon as the first step moves the output projections off zero.
"""

from __future__ import annotations

import dataclasses

import torch

from nuwa.model.nuwa import NuwaModel
from nuwa.model.transformer import DecoderLayer
from nuwa.spec.config import NuwaConfig


def pass_through(layer: DecoderLayer) -> DecoderLayer:
    """Zero the output projections of ``layer``'s three residual branches (in place)."""
    with torch.no_grad():
        for linear in (layer.self_attn.out_proj, layer.cross_attn.out_proj, layer.ffn.fc2):
            linear.weight.zero_()
            if linear.bias is not None:
                linear.bias.zero_()
    return layer


def deepened_config(config: NuwaConfig, n_decoder_layers: int) -> NuwaConfig:
    """``config`` with ``n_decoder_layers`` decoder layers, which must be at least its own."""
    have = config.transformer.n_decoder_layers
    if n_decoder_layers < have:
        raise ValueError(
            f"the model has {have} decoder layers; deepening can only add layers "
            f"(asked for {n_decoder_layers})"
        )
    transformer = dataclasses.replace(config.transformer, n_decoder_layers=n_decoder_layers)
    return dataclasses.replace(config, transformer=transformer)


def deepen_decoder(model: NuwaModel, n_decoder_layers: int) -> NuwaModel:
    """A new model with ``n_decoder_layers`` decoder layers: ``model``'s own first, then new
    pass-through layers on top. Everything else (VQ-GANs, encoder, embeddings, head) is copied.
    ``model`` itself is not changed."""
    have = model.config.transformer.n_decoder_layers
    config = deepened_config(model.config, n_decoder_layers)
    grown = NuwaModel(config, attn_impl=model.transformer.attn_impl).to(model.device)
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    new = {f"transformer.decoder_layers.{i}." for i in range(have, n_decoder_layers)}
    stray = [k for k in missing if not any(k.startswith(prefix) for prefix in new)]
    if stray or unexpected:
        raise RuntimeError(
            f"deepening copied the wrong weights: missing {stray}, extra {unexpected}"
        )
    for layer in grown.transformer.decoder_layers[have:]:
        pass_through(layer)  # type: ignore[arg-type]
    return grown.train(model.training)
