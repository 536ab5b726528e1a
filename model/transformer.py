"""NÜWA's 3D encoder-decoder transformer (arXiv 2111.12417 §3): a condition encoder with 3DNA
self-attention (full attention for text) and a target decoder with causal 3DNA self-attention and
3DNA cross-attention to the condition, with grid rescaling when the grids differ.

Tokens sit on 3D grids (DESIGN §4); positions are learned per axis (t, h, w) and summed. The
decoder's input at raster position ``n`` is the embedding of token ``n-1`` (``<bos>`` at 0) plus
position ``n``'s embedding; its output at ``n`` predicts token ``n``.

Two entry points share every weight:

- :meth:`NuwaTransformer.forward` — teacher-forced logits over a whole target grid (training,
  and the reference the decode step is tested against);
- :meth:`NuwaTransformer.decode_step` — one token per batch row against the ring-buffer KV cache
  (DESIGN §5), functional (past in, present out) so it exports to ONNX as ``decoder_step``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nuwa.model.attention3d import (
    IMPLEMENTATIONS,
    Extents,
    Grid,
    NearbyAttentionSpec,
    grid_size,
    raster_to_coords,
)
from nuwa.model.attention_override import AttentionOverride, Impl, attend, attend_ring
from nuwa.model.kv_cache import RingKVCache
from nuwa.spec.config import TransformerConfig

KV = tuple[Tensor, Tensor]  # (key, value), each (B, nh, N, hd)


class PositionEmbedding3D(nn.Module):
    """Separate learned tables for t, h and w, summed. Frames past ``T`` reuse frame ``T-1``."""

    def __init__(self, grid: Grid, d_model: int) -> None:
        super().__init__()
        self.grid = grid
        self.t = nn.Embedding(grid[0], d_model)
        self.h = nn.Embedding(grid[1], d_model)
        self.w = nn.Embedding(grid[2], d_model)
        for table in (self.t, self.h, self.w):
            nn.init.normal_(table.weight, std=0.02)

    def forward(self, positions: Tensor) -> Tensor:
        """Raster positions ``(..., N)`` on this grid -> ``(..., N, d)``."""
        t, h, w = raster_to_coords(positions, self.grid)
        return self.t(t.clamp(max=self.grid[0] - 1)) + self.h(h) + self.w(w)


class NearbyAttention(nn.Module):
    """Multi-head 3DNA: projections around one of the 3DNA implementations."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.d_model = d_model
        self.head_dim = d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def _split(self, x: Tensor) -> Tensor:  # (B, N, d) -> (B, nh, N, hd)
        b, n, d = x.shape
        return x.view(b, n, self.n_heads, d // self.n_heads).transpose(1, 2)

    def _merge(self, x: Tensor) -> Tensor:  # (B, nh, N, hd) -> (B, N, d)
        b, nh, n, hd = x.shape
        return x.transpose(1, 2).reshape(b, n, nh * hd)

    # One query per row: constant-shape reshapes (Python ints, so an export has no shape ops)
    def _split_one(self, x: Tensor) -> Tensor:  # (B, d) -> (B, nh, 1, hd), no copy
        return x.reshape(-1, self.n_heads, 1, self.head_dim)

    def _merge_one(self, x: Tensor) -> Tensor:  # (B, nh, 1, hd) -> (B, d), no copy
        return x.reshape(-1, self.d_model)

    def project_kv(self, x: Tensor) -> KV:
        return self._split(self.k_proj(x)), self._split(self.v_proj(x))

    def project_q(self, x: Tensor) -> Tensor:
        return self._split(self.q_proj(x))

    def forward(
        self,
        x: Tensor,
        spec: NearbyAttentionSpec,
        impl: Impl,
        kv: KV | None = None,
        q_positions: Tensor | None = None,
    ) -> Tensor:
        """Whole-grid attention of ``x (B, Nq, d)`` to ``kv`` (default: self-attention)."""
        k, v = kv if kv is not None else self.project_kv(x)
        out = attend(self.project_q(x), k, v, spec, impl, q_positions)
        return self.out_proj(self._merge(out))

    def decode(
        self,
        x: Tensor,
        past: KV,
        positions: Tensor,
        slot_index: Tensor,
        spec: NearbyAttentionSpec,
        impl: Impl,
    ) -> tuple[Tensor, KV]:
        """One token per row ``x (B, d)`` at ``positions (B,)``; writes its K/V into the
        ring cache ``past`` at ``slot_index`` (``position % S`` broadcast to ``(B, nh, 1, hd)``,
        see :func:`ring_slot_index`) and attends over it. Returns (out, present).

        Written for the exported ``decoder_step`` as much as for PyTorch: 2-D rows (linear
        layers export as ``Gemm`` with the bias fused), one fused Q/K/V projection, reshapes
        with constant shapes and one scatter per cache, so the graph has no shape arithmetic
        and no select over every slot."""
        d = self.d_model
        weight = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
        bias = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
        q, k_new, v_new = F.linear(x, weight, bias).split(d, dim=-1)
        past_k, past_v = past
        k_cache = past_k.scatter(2, slot_index, self._split_one(k_new))
        v_cache = past_v.scatter(2, slot_index, self._split_one(v_new))
        out = attend_ring(self._split_one(q), k_cache, v_cache, spec, impl, positions)
        return self.out_proj(self._merge_one(out)), (k_cache, v_cache)

    def decode_cross(
        self, x: Tensor, kv: KV, positions: Tensor, spec: NearbyAttentionSpec, impl: Impl
    ) -> Tensor:
        """One query per row ``x (B, d)`` at ``positions (B,)`` against the condition's
        ``kv`` (the whole-grid :meth:`forward` with constant-shape reshapes)."""
        k, v = kv
        q = self._split_one(self.q_proj(x))
        out = attend(q, k, v, spec, impl, positions[:, None])
        return self.out_proj(self._merge_one(out))


def ring_slot_index(positions: Tensor, slots: int, n_heads: int, d_model: int) -> Tensor:
    """Scatter index of a decode step's new K/V rows: ``positions % slots`` broadcast to
    ``(B, nh, 1, hd)`` (an add of a constant zero block, not a shape-dependent expand)."""
    slot = torch.remainder(positions, slots).view(-1, 1, 1, 1)
    block = torch.zeros(1, n_heads, 1, d_model // n_heads, dtype=slot.dtype, device=slot.device)
    return slot + block


class FeedForward(nn.Module):
    def __init__(self, d_model: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_model, hidden)
        self.fc2 = nn.Linear(hidden, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.fc2(F.gelu(self.fc1(x))))


class EncoderLayer(nn.Module):
    """Pre-LN: x + 3DNA(LN(x)); x + FFN(LN(x))."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.self_attn = NearbyAttention(cfg.d_model, cfg.n_heads)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.ffn = FeedForward(cfg.d_model, cfg.ffn_mult * cfg.d_model, cfg.dropout)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, spec: NearbyAttentionSpec, impl: Impl) -> Tensor:
        x = x + self.dropout(self.self_attn(self.norm1(x), spec, impl))
        return x + self.ffn(self.norm2(x))


class DecoderLayer(nn.Module):
    """Pre-LN: causal 3DNA self-attention, 3DNA cross-attention to the condition, FFN."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.self_attn = NearbyAttention(cfg.d_model, cfg.n_heads)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.cross_attn = NearbyAttention(cfg.d_model, cfg.n_heads)
        self.norm3 = nn.LayerNorm(cfg.d_model)
        self.ffn = FeedForward(cfg.d_model, cfg.ffn_mult * cfg.d_model, cfg.dropout)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self,
        x: Tensor,
        cross_kv: KV,
        self_spec: NearbyAttentionSpec,
        cross_spec: NearbyAttentionSpec,
        impl: Impl,
    ) -> Tensor:
        x = x + self.dropout(self.self_attn(self.norm1(x), self_spec, impl))
        x = x + self.dropout(self.cross_attn(self.norm2(x), cross_spec, impl, kv=cross_kv))
        return x + self.ffn(self.norm3(x))

    def decode(
        self,
        x: Tensor,
        past: KV,
        cross_kv: KV,
        positions: Tensor,
        slot_index: Tensor,
        ring_spec: NearbyAttentionSpec,
        cross_spec: NearbyAttentionSpec,
        impl: Impl,
    ) -> tuple[Tensor, KV]:
        h, present = self.self_attn.decode(
            self.norm1(x), past, positions, slot_index, ring_spec, impl
        )
        x = x + h
        x = x + self.cross_attn.decode_cross(self.norm2(x), cross_kv, positions, cross_spec, impl)
        return x + self.ffn(self.norm3(x)), present


@dataclass
class EncodedCondition:
    """An encoded condition of the PyTorch model: encoder output on its grid, and how the decoder
    attends to it. (The runtime's :class:`nuwa.runtime.backends.base.Condition` is what a backend
    keeps of it: the per-layer cross-attention keys and values.)"""

    memory: Tensor  # (B, Nc, d)
    grid: Grid  # condition token grid, (1, 1, L) for text
    cross_extents: Extents  # 3DNA extents of decoder -> condition attention


class NuwaTransformer(nn.Module):
    """Encoder-decoder over VQ tokens. ``attn_impl`` picks the 3DNA implementation used everywhere:
    ``"gather"`` (fast path), ``"dense"`` (oracle) or ``"auto"`` (inference: dense for
    whole-grid calls with small masks, gather for the rest; ``attention3d.resolve_impl``)."""

    def __init__(self, cfg: TransformerConfig, attn_impl: str = "auto") -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        if attn_impl not in IMPLEMENTATIONS:
            raise ValueError(
                f"unknown 3DNA implementation {attn_impl!r}; expected one of {IMPLEMENTATIONS}"
            )
        self.attn_impl = attn_impl
        self.attention_override: AttentionOverride | None = None
        d = cfg.d_model
        self.text_embed = nn.Embedding(cfg.text_vocab_size, d)
        self.text_pos = PositionEmbedding3D((1, 1, cfg.max_text_len), d)
        self.sketch_embed = nn.Embedding(cfg.sketch_vocab_size, d)
        self.sketch_pos = PositionEmbedding3D(
            (cfg.sketch_frames, cfg.sketch_grid_h, cfg.sketch_grid_w), d
        )
        self.encoder_layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_encoder_layers))
        self.encoder_norm = nn.LayerNorm(d)
        self.token_embed = nn.Embedding(cfg.image_vocab_size + 1, d)  # + <bos>
        self.target_pos = PositionEmbedding3D(cfg.target_grid, d)
        self.decoder_layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_decoder_layers))
        self.decoder_norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.image_vocab_size, bias=False)
        for emb in (self.text_embed, self.sketch_embed, self.token_embed):
            nn.init.normal_(emb.weight, std=0.02)
        if cfg.tie_output_embedding:
            self.head.weight = self.token_embed.weight  # type: ignore[assignment]

    # ---- encoder ---------------------------------------------------------------------------

    @property
    def impl(self) -> Impl:
        """What every 3DNA call runs: the installed override, else ``attn_impl``."""
        return self.attention_override if self.attention_override is not None else self.attn_impl

    @contextlib.contextmanager
    def attention_overridden(self, override: AttentionOverride) -> Iterator[None]:
        """While active, every 3DNA call of this transformer goes to ``override`` (the export
        hook: one custom node per call); the previous state is restored on exit."""
        saved = self.attention_override
        self.attention_override = override
        try:
            yield
        finally:
            self.attention_override = saved

    def _encode(self, x: Tensor, grid: Grid, extents: Extents) -> Tensor:
        spec = NearbyAttentionSpec(grid, grid, extents)
        for layer in self.encoder_layers:
            x = layer(x, spec, self.impl)
        return self.encoder_norm(x)

    def encode_text(self, text_ids: Tensor) -> EncodedCondition:
        """Text ids ``(B, L)`` (padded to ``max_text_len``) -> condition on grid ``(1, 1, L)``."""
        if text_ids.shape[-1] != self.cfg.max_text_len:
            raise ValueError(
                f"text ids have length {text_ids.shape[-1]}, the model takes "
                f"{self.cfg.max_text_len} (pad with the tokenizer)"
            )
        grid = (1, 1, self.cfg.max_text_len)
        pos = torch.arange(self.cfg.max_text_len, device=text_ids.device)
        x = self.text_embed(text_ids) + self.text_pos(pos)
        return EncodedCondition(
            self._encode(x, grid, self.cfg.text_extents), grid, self.cfg.text_extents
        )

    def encode_sketch(self, sketch_codes: Tensor) -> EncodedCondition:
        """Sketch tokens ``(B, Ts, Hs, Ws)`` from the VQ-GAN-Seg -> condition on that grid."""
        b, ts, hs, ws = sketch_codes.shape
        if (hs, ws) != (self.cfg.sketch_grid_h, self.cfg.sketch_grid_w) or not (
            1 <= ts <= self.cfg.sketch_frames
        ):
            raise ValueError(
                f"sketch tokens have grid {(ts, hs, ws)}; the model takes up to "
                f"{self.cfg.sketch_frames} frames of {self.cfg.sketch_grid_h}x"
                f"{self.cfg.sketch_grid_w}"
            )
        grid = (ts, hs, ws)
        pos = torch.arange(grid_size(grid), device=sketch_codes.device)
        x = self.sketch_embed(sketch_codes.reshape(b, -1)) + self.sketch_pos(pos)
        ext = self.cfg.sketch_encoder_extents
        return EncodedCondition(self._encode(x, grid, ext), grid, self.cfg.sketch_cross_extents)

    def cross_kv(self, cond: EncodedCondition) -> list[KV]:
        """Cross-attention K/V of every decoder layer, computed once per request."""
        return [layer.cross_attn.project_kv(cond.memory) for layer in self.decoder_layers]

    # ---- decoder ---------------------------------------------------------------------------

    def target_grid(self, num_frames: int) -> Grid:
        """The query grid of a request: ``num_frames`` frames, capped at the trained length
        (longer videos slide, DESIGN §5)."""
        return (min(num_frames, self.cfg.frames), self.cfg.grid_h, self.cfg.grid_w)

    def self_spec(self, num_frames: int, ring: bool = False) -> NearbyAttentionSpec:
        """The decoder's causal 3DNA: on the ring cache (decode steps) over the capped
        ``target_grid``; teacher-forced over all ``num_frames`` frames (``forward``)."""
        grid = (
            self.target_grid(num_frames) if ring else (num_frames, self.cfg.grid_h, self.cfg.grid_w)
        )
        return NearbyAttentionSpec(
            grid, grid, self.cfg.decoder_self_extents, causal=True, ring_cache=ring
        )

    def cross_spec(self, num_frames: int, cond_grid: Grid, extents: Extents) -> NearbyAttentionSpec:
        return NearbyAttentionSpec(self.target_grid(num_frames), cond_grid, extents)

    def forward(
        self, cond: EncodedCondition, target: Tensor, cross: list[KV] | None = None
    ) -> Tensor:
        """Teacher-forced logits: target codes ``(B, T, H, W)`` -> ``(B, T*H*W, V)``.

        ``T`` may exceed the trained frames under a condition the decoder attends to whole (text:
        its cross-attention does not depend on the query's frame): the logits are then those the
        sliding ring cache gives a video that long (causal 3DNA over the whole ``T``-frame grid,
        frames past the trained ones on the last time row) — how training teaches long videos."""
        b, t, h, w = target.shape
        if (h, w) != (self.cfg.grid_h, self.cfg.grid_w) or t < 1:
            raise ValueError(
                f"target grid {(t, h, w)} does not fit the model's {self.cfg.target_grid}"
            )
        if t > self.cfg.frames and any(e != -1 for e in cond.cross_extents):
            raise ValueError(
                f"a {t}-frame target is past the trained {self.cfg.frames} frames: only a text "
                "condition (whole cross-attention) takes one"
            )
        flat = target.reshape(b, -1)
        bos = torch.full((b, 1), self.cfg.bos_id, dtype=flat.dtype, device=flat.device)
        inputs = torch.cat([bos, flat[:, :-1]], dim=1)
        pos = torch.arange(flat.shape[1], device=flat.device)
        x = self.token_embed(inputs) + self.target_pos(pos)
        cross = cross if cross is not None else self.cross_kv(cond)
        self_spec = self.self_spec(t)  # past the trained frames too (the ring's grid is capped)
        cross_spec = NearbyAttentionSpec(self_spec.q_grid, cond.grid, cond.cross_extents)
        for layer, kv in zip(self.decoder_layers, cross, strict=True):
            x = layer(x, kv, self_spec, cross_spec, self.impl)
        return self.head(self.decoder_norm(x))

    def empty_cache(self, batch: int, device: torch.device | str | None = None) -> RingKVCache:
        """Zeroed ring caches ``(B, nh, S, hd)`` for every decoder layer (S = cfg.cache_slots)."""
        c = self.cfg
        return RingKVCache.empty(
            c.n_decoder_layers,
            batch,
            c.n_heads,
            c.cache_slots,
            c.head_dim,
            self.head.weight.dtype,
            device,
        )

    def decode_step(
        self,
        tokens: Tensor,
        positions: Tensor,
        past: list[KV],
        cross: list[KV],
        cond_grid: Grid,
        cross_extents: Extents,
        num_frames: int,
    ) -> tuple[Tensor, list[KV]]:
        """One decoding step. ``tokens (B,)``: the token at ``positions - 1`` (``<bos>`` at 0);
        ``positions (B,)``: raster positions being predicted. Returns logits ``(B, V)`` and the
        updated caches."""
        x = self.token_embed(tokens) + self.target_pos(positions)  # (B, d): one row per token
        ring_spec = self.self_spec(num_frames, ring=True)
        cross_spec = self.cross_spec(num_frames, cond_grid, cross_extents)
        slots = self.cfg.cache_slots
        if not torch.onnx.is_in_onnx_export() and past[0][0].shape[2] != slots:
            raise ValueError(
                f"ring caches have {past[0][0].shape[2]} slots, the model uses {slots}"
            )
        slot_index = ring_slot_index(positions, slots, self.cfg.n_heads, self.cfg.d_model)
        present: list[KV] = []
        for layer, layer_past, kv in zip(self.decoder_layers, past, cross, strict=True):
            x, layer_present = layer.decode(
                x, layer_past, kv, positions, slot_index, ring_spec, cross_spec, self.impl
            )
            present.append(layer_present)
        return self.head(self.decoder_norm(x)), present


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
