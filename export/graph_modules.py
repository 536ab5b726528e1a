"""The graphs the runtime needs, as small ``nn.Module`` wrappers around the one PyTorch model
(no second copy of the model): one module per graph kind, whose ``forward`` takes the graph's
ONNX inputs in order and returns its outputs (DESIGN §5 names: :mod:`nuwa.spec.graph_names`)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nuwa.model.attention3d import Extents, Grid, ring_slot_positions
from nuwa.model.transformer import EncodedCondition, NuwaTransformer
from nuwa.model.vqgan import VQGAN


class VQEncoderGraph(nn.Module):
    """Frames ``(B, 3, S, S)`` in [-1, 1] -> codes ``(B, h, w)`` int64."""

    def __init__(self, vqgan: VQGAN) -> None:
        super().__init__()
        self.vqgan = vqgan

    def forward(self, frames: Tensor) -> Tensor:
        return self.vqgan.encode(frames)


class VQDecoderGraph(nn.Module):
    """Codes ``(B, h, w)`` int64 -> frames ``(B, 3, S, S)`` in [-1, 1]."""

    def __init__(self, vqgan: VQGAN) -> None:
        super().__init__()
        self.vqgan = vqgan

    def forward(self, codes: Tensor) -> Tensor:
        return self.vqgan.decode_codes(codes)


class SketchEncoderGraph(nn.Module):
    """VQ-GAN-Seg: class map ``(B, S, S)`` int64 -> sketch codes ``(B, h, w)`` int64."""

    def __init__(self, vqgan_seg: VQGAN) -> None:
        super().__init__()
        self.vqgan_seg = vqgan_seg
        self.register_buffer(
            "classes", torch.arange(vqgan_seg.cfg.in_channels).view(1, -1, 1, 1), persistent=False
        )

    def forward(self, sketch: Tensor) -> Tensor:
        onehot = (sketch[:, None, :, :] == self.classes).float()  # (B, C, S, S)
        return self.vqgan_seg.encode(onehot)


def _flat_kv(kv: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, ...]:
    return tuple(t for pair in kv for t in pair)


class TextConditionGraph(nn.Module):
    """Text ids ``(B, L)`` -> cross K/V of every decoder layer, each ``(B, nh, L, hd)``."""

    def __init__(self, transformer: NuwaTransformer) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(self, text_ids: Tensor) -> tuple[Tensor, ...]:
        t = self.transformer
        return _flat_kv(t.cross_kv(t.encode_text(text_ids)))


class SketchConditionGraph(nn.Module):
    """Sketch tokens ``(B, Ts, Hs, Ws)`` -> cross K/V of every decoder layer."""

    def __init__(self, transformer: NuwaTransformer) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(self, sketch_tokens: Tensor) -> tuple[Tensor, ...]:
        t = self.transformer
        return _flat_kv(t.cross_kv(t.encode_sketch(sketch_tokens)))


class DecoderStepGraph(nn.Module):
    """One token per row against the ring cache (DESIGN §5):
    ``(input_ids (B,), positions (B,), past K/V..., cross K/V...) -> (logits (B, V), present...)``.
    The condition grid and the request's frame count fix the 3DNA attributes."""

    def __init__(
        self, transformer: NuwaTransformer, cond_grid: Grid, cross_extents: Extents, frames: int
    ) -> None:
        super().__init__()
        self.transformer = transformer
        self.cond_grid, self.cross_extents, self.frames = cond_grid, cross_extents, frames

    def forward(self, input_ids: Tensor, positions: Tensor, *caches: Tensor) -> tuple[Tensor, ...]:
        n = self.transformer.cfg.n_decoder_layers
        past = [(caches[2 * i], caches[2 * i + 1]) for i in range(n)]
        cross = [(caches[2 * n + 2 * i], caches[2 * n + 2 * i + 1]) for i in range(n)]
        logits, present = self.transformer.decode_step(
            input_ids, positions, past, cross, self.cond_grid, self.cross_extents, self.frames
        )
        return (logits, *_flat_kv(present))


class DecoderPrefillGraph(nn.Module):
    """Known prefix frames ``target_tokens (B, F, H, W)`` (``F`` dynamic, 1..T) and a text
    condition's cross K/V -> the ring caches ``present.*`` after positions ``0 .. F*H*W-1``,
    as ``F*H*W`` ``decoder_step`` calls would leave them. The decoder runs teacher-forced
    (:meth:`NuwaTransformer.forward`, the model's own code); forward hooks on every layer's
    self-attention K/V projections capture the keys and values, which are then laid out in ring
    slots (slot ``s`` holds the latest position ``p = s (mod S)``, zeros if none).

    One graph serves every ``F``: the causal self-attention of a prefix never looks past its
    last frame, and text cross-attention attends every text token from any query."""

    def __init__(self, transformer: NuwaTransformer, cond_grid: Grid, cross_extents: Extents):
        super().__init__()
        self.transformer = transformer
        self.cond_grid, self.cross_extents = cond_grid, cross_extents

    def forward(self, target_tokens: Tensor, *cross: Tensor) -> tuple[Tensor, ...]:
        t = self.transformer
        n_layers = t.cfg.n_decoder_layers
        kv = [(cross[2 * i], cross[2 * i + 1]) for i in range(n_layers)]
        captured: list[Tensor] = []
        hooks = [
            proj.register_forward_hook(lambda _m, _i, out: captured.append(out))
            for layer in t.decoder_layers
            for proj in (layer.self_attn.k_proj, layer.self_attn.v_proj)
        ]
        try:
            memory = cross[0]  # unused: cross K/V are given
            t(EncodedCondition(memory, self.cond_grid, self.cross_extents), target_tokens, kv)
        finally:
            for hook in hooks:
                hook.remove()
        slots = t.cfg.cache_slots
        n = target_tokens.shape[1] * target_tokens.shape[2] * target_tokens.shape[3]
        held = ring_slot_positions(torch.full((1,), n - 1, dtype=torch.long), slots)[0]  # (S,)
        written = (held >= 0)[None, None, :, None]
        present = []
        for i, out in enumerate(captured):  # (B, N, d) per layer: key, value
            layer = t.decoder_layers[i // 2].self_attn
            split = layer._split(out)  # (B, nh, N, hd)
            ring = split.index_select(2, held.clamp(min=0))  # (B, nh, S, hd)
            present.append(torch.where(written, ring, torch.zeros_like(ring)))
        return tuple(present)
