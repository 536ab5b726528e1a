"""The graphs the runtime needs, as small ``nn.Module`` wrappers around the one PyTorch model
(no second copy of the model), plus the 3DNA marker that turns every attention call into one
``nuwa::NearbyAttention3D`` node during export.

Each :class:`GraphSpec` names its ONNX inputs/outputs (DESIGN §5 names for the decoder), says
which axes are dynamic, and makes random example inputs — the same inputs export traces with and
the numerical checks feed to both PyTorch and ONNX Runtime.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.onnx import symbolic_helper

from nuwa.export.onnx_function import DOMAIN, OP_TYPE
from nuwa.model import transformer as transformer_module
from nuwa.model.attention3d import (
    Extents,
    Grid,
    NearbyAttentionSpec,
    grid_size,
    nearby_attention,
    nearby_attention_decode_gather,
    neighbour_table,
    ring_slot_positions,
)
from nuwa.model.nuwa import NuwaModel
from nuwa.model.transformer import Condition, NuwaTransformer
from nuwa.model.vqgan import VQGAN

# ONNX names of the decoder's I/O (DESIGN §5, the ONNX Runtime GenAI / Optimum convention)
INPUT_IDS = "input_ids"
POSITIONS = "positions"
LOGITS = "logits"
PAST_KEY = "past_key_values.%d.key"
PAST_VALUE = "past_key_values.%d.value"
PRESENT_KEY = "present.%d.key"
PRESENT_VALUE = "present.%d.value"
CROSS_KEY = "cross_key_values.%d.key"
CROSS_VALUE = "cross_key_values.%d.value"
BATCH = "batch"
TARGET_TOKENS = "target_tokens"  # decoder_prefill: known prefix frames (B, F, H, W)
PREFIX_FRAMES = "prefix_frames"


# --------------------------------------------------------------------------------------------
# The 3DNA marker: a torch custom op computing the gather reference, exported as one ONNX node
# --------------------------------------------------------------------------------------------
#
# The TorchScript tracer records a dispatcher op as one opaque node (it does not trace into its
# kernel), and ``register_custom_op_symbolic`` maps that node to ``nuwa::NearbyAttention3D``.
# (An ``autograd.Function`` with ``symbolic`` also records its traced forward as a sub-block, and
# the exporter's graph passes fail on the gather body's shape arithmetic there.)


@torch.library.custom_op("nuwa_export::nearby_attention_3d", mutates_args=())
def _nearby_attention_op(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    q_positions: Tensor | None,
    q_grid: list[int],
    k_grid: list[int],
    extents: list[int],
    causal: bool,
    ring_cache: bool,
    scale: float,
    num_heads: int,
) -> Tensor:
    """The node's semantics in PyTorch (the model's gather implementation); see
    :mod:`nuwa.export.onnx_function` for the input contract."""
    spec = NearbyAttentionSpec(
        tuple(q_grid),  # type: ignore[arg-type]
        tuple(k_grid),  # type: ignore[arg-type]
        tuple(extents),  # type: ignore[arg-type]
        causal,
        scale,
        ring_cache,
    )
    if ring_cache:
        assert q_positions is not None
        return nearby_attention_decode_gather(q, k, v, spec, q_positions[:, 0].long()).contiguous()
    pos = None if q_positions is None else q_positions.long()
    return nearby_attention(q, k, v, spec, "gather", pos).contiguous()


@_nearby_attention_op.register_fake
def _nearby_attention_fake(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    q_positions: Tensor | None,
    q_grid: list[int],
    k_grid: list[int],
    extents: list[int],
    causal: bool,
    ring_cache: bool,
    scale: float,
    num_heads: int,
) -> Tensor:
    return torch.empty_like(q)


@symbolic_helper.parse_args("v", "v", "v", "v", "is", "is", "is", "b", "b", "f", "i")
def _nearby_attention_symbolic(
    g: Any,
    q: Any,
    k: Any,
    v: Any,
    q_positions: Any,
    q_grid: list[int],
    k_grid: list[int],
    extents: list[int],
    causal: bool,
    ring_cache: bool,
    scale: float,
    num_heads: int,
) -> Any:
    inputs = [q, k, v]
    if not symbolic_helper._is_none(q_positions):
        inputs.append(g.op("Cast", q_positions, to_i=6))  # int32 (B, Nq): the node contract
    out = g.op(
        f"{DOMAIN}::{OP_TYPE}",
        *inputs,
        q_grid_i=q_grid,
        k_grid_i=k_grid,
        extents_i=extents,
        causal_i=int(causal),
        ring_cache_i=int(ring_cache),
        scale_f=scale,
        num_heads_i=int(num_heads),
    )
    out.setType(q.type())
    return out


_SYMBOLIC_OPSETS: set[int] = set()


def register_symbolic(opset: int) -> None:
    """Map the custom op to ``nuwa::NearbyAttention3D`` for exports at ``opset``."""
    if opset not in _SYMBOLIC_OPSETS:
        torch.onnx.register_custom_op_symbolic(
            "nuwa_export::nearby_attention_3d", _nearby_attention_symbolic, opset
        )
        _SYMBOLIC_OPSETS.add(opset)


def static_spec(spec: NearbyAttentionSpec) -> NearbyAttentionSpec:
    """The spec with plain ``int`` grids. While tracing, a grid read from a tensor's shape holds
    0-d tensors; the node's attributes must be Python constants."""
    return NearbyAttentionSpec(
        tuple(int(x) for x in spec.q_grid),  # type: ignore[arg-type]
        tuple(int(x) for x in spec.k_grid),  # type: ignore[arg-type]
        tuple(int(x) for x in spec.extents),  # type: ignore[arg-type]
        spec.causal,
        spec.scale,
        spec.ring_cache,
    )


def _call_op(
    q: Tensor, k: Tensor, v: Tensor, spec: NearbyAttentionSpec, q_positions: Tensor | None
) -> Tensor:
    spec = static_spec(spec)
    return torch.ops.nuwa_export.nearby_attention_3d(  # type: ignore[no-any-return]
        q,
        k,
        v,
        q_positions,
        list(spec.q_grid),
        list(spec.k_grid),
        list(spec.extents),
        spec.causal,
        spec.ring_cache,
        spec.resolved_scale(int(q.shape[-1])),
        int(q.shape[1]),
    )


def _marker_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    spec: NearbyAttentionSpec,
    impl: str = "gather",
    q_positions: Tensor | None = None,
) -> Tensor:
    if q_positions is not None and q_positions.dim() == 1:
        q_positions = q_positions.expand(q.shape[0], -1)
    return _call_op(q, k, v, spec, q_positions)


def _marker_decode(
    q: Tensor, k_cache: Tensor, v_cache: Tensor, spec: NearbyAttentionSpec, query_pos: Tensor
) -> Tensor:
    return _call_op(q, k_cache, v_cache, spec, query_pos[:, None])


@contextlib.contextmanager
def attention_as_onnx_nodes(model: NuwaTransformer) -> Iterator[None]:
    """While active, the transformer's 3DNA calls go through the export op (which computes the
    same gather implementation, so outputs are unchanged)."""
    saved = (
        transformer_module.nearby_attention,
        transformer_module.nearby_attention_decode_gather,
        model.attn_impl,
    )
    transformer_module.nearby_attention = _marker_attention  # type: ignore[assignment]
    transformer_module.nearby_attention_decode_gather = _marker_decode  # type: ignore[assignment]
    model.attn_impl = "gather"
    try:
        yield
    finally:
        (
            transformer_module.nearby_attention,
            transformer_module.nearby_attention_decode_gather,
            model.attn_impl,
        ) = saved


# --------------------------------------------------------------------------------------------
# Wrappers: one module per graph
# --------------------------------------------------------------------------------------------


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
            t(Condition(memory, self.cond_grid, self.cross_extents), target_tokens, kv)
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


# --------------------------------------------------------------------------------------------
# Graph specs
# --------------------------------------------------------------------------------------------


@dataclass
class GraphSpec:
    """One ONNX graph: its wrapper, I/O names, dynamic axes, and random example inputs."""

    name: str  # file stem, e.g. "decoder_step.text.t3"
    kind: str  # vq_encoder | vq_decoder | sketch_encoder | condition_encoder | decoder_step
    module: nn.Module
    input_names: list[str]
    output_names: list[str]
    make_inputs: Callable[[int, torch.Generator], tuple[Tensor, ...]]  # (batch, gen) -> inputs
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # condition, frames, grids for manifest
    uses_attention: bool = False

    @property
    def file(self) -> str:
        return f"{self.name}.onnx"


def _batch_axes(names: list[str]) -> dict[str, dict[int, str]]:
    return {n: {0: BATCH} for n in names}


def kv_names(pattern_key: str, pattern_value: str, layers: int) -> list[str]:
    return [p % i for i in range(layers) for p in (pattern_key, pattern_value)]


def condition_grids(model: NuwaModel, frames: list[int]) -> dict[str, tuple[Grid, Extents]]:
    """Condition kinds the decoder steps are exported for: ``text`` and ``sketch_t{Ts}``."""
    c = model.config.transformer
    out: dict[str, tuple[Grid, Extents]] = {"text": ((1, 1, c.max_text_len), c.text_extents)}
    for f in frames:
        ts = min(f, c.sketch_frames)
        out[f"sketch_t{ts}"] = ((ts, c.sketch_grid_h, c.sketch_grid_w), c.sketch_cross_extents)
    return out


def _decode_signature(model: NuwaModel, grid: Grid, extents: Extents, frames: int) -> str:
    """What a decoder step for a ``frames``-frame request computes, as a digest of its two 3DNA
    neighbour tables (ring self-attention, cross-attention) over every position of a video
    longer than the trained one. Two frame counts with equal digests can share one graph."""
    tr = model.transformer
    c = model.config.transformer
    n = (c.frames + max(c.decoder_self_extents[0], 0) + 2) * c.tokens_per_frame
    pos = torch.arange(n)
    digest = hashlib.sha256()
    for spec in (tr.self_spec(frames, ring=True), tr.cross_spec(frames, grid, extents)):
        index, valid = neighbour_table(static_spec(spec), pos)
        digest.update(repr(tuple(index.shape)).encode())
        digest.update(torch.where(valid, index, -1).numpy().tobytes())
    return digest.hexdigest()


def decoder_step_groups(
    model: NuwaModel, key: str, grid: Grid, extents: Extents
) -> list[tuple[int, ...]]:
    """Request frame counts (capped at the trained frames) a condition's decoder step serves,
    grouped by :func:`_decode_signature`: one graph per group. A text condition usually needs a
    single graph for every frame count; a sketch condition of ``Ts`` frames serves the requests
    whose sketch has ``Ts`` frames."""
    c = model.config.transformer
    frames = [
        f for f in range(1, c.frames + 1) if key == "text" or min(f, c.sketch_frames) == grid[0]
    ]
    groups: dict[str, list[int]] = {}
    for f in frames:
        groups.setdefault(_decode_signature(model, grid, extents, f), []).append(f)
    return [tuple(g) for g in groups.values()]


def build_graph_specs(model: NuwaModel, frames: list[int]) -> list[GraphSpec]:
    """Every graph of the runtime for a model; decoder steps for each target frame count."""
    cfg = model.config
    c = cfg.transformer
    tr = model.transformer
    layers = c.n_decoder_layers
    cross_names = kv_names(CROSS_KEY, CROSS_VALUE, layers)
    specs: list[GraphSpec] = []

    s = cfg.vqgan.image_size
    h, w = cfg.vqgan.token_grid
    specs.append(
        GraphSpec(
            "vq_encoder",
            "vq_encoder",
            VQEncoderGraph(model.vqgan),
            ["frames"],
            ["codes"],
            lambda b, g: (torch.rand(b, cfg.vqgan.in_channels, s, s, generator=g) * 2 - 1,),
            _batch_axes(["frames", "codes"]),
            {"image_size": s, "token_grid": [h, w], "codebook_size": cfg.vqgan.codebook_size},
        )
    )
    specs.append(
        GraphSpec(
            "vq_decoder",
            "vq_decoder",
            VQDecoderGraph(model.vqgan),
            ["codes"],
            ["frames"],
            lambda b, g: (torch.randint(0, cfg.vqgan.codebook_size, (b, h, w), generator=g),),
            _batch_axes(["codes", "frames"]),
            {"image_size": s, "token_grid": [h, w], "codebook_size": cfg.vqgan.codebook_size},
        )
    )
    ss = cfg.vqgan_seg.image_size
    sh, sw = cfg.vqgan_seg.token_grid
    specs.append(
        GraphSpec(
            "sketch_encoder",
            "sketch_encoder",
            SketchEncoderGraph(model.vqgan_seg),
            ["sketch"],
            ["sketch_codes"],
            lambda b, g: (torch.randint(0, cfg.vqgan_seg.in_channels, (b, ss, ss), generator=g),),
            _batch_axes(["sketch", "sketch_codes"]),
            {
                "image_size": ss,
                "token_grid": [sh, sw],
                "num_classes": cfg.vqgan_seg.in_channels,
                "codebook_size": cfg.vqgan_seg.codebook_size,
            },
        )
    )
    conditions = condition_grids(model, frames)
    for key, (grid, extents) in conditions.items():
        if key == "text":
            name, module, inp = "text_encoder", TextConditionGraph(tr), "text_ids"

            def make(b: int, g: torch.Generator) -> tuple[Tensor, ...]:
                return (torch.randint(0, c.text_vocab_size, (b, c.max_text_len), generator=g),)

        else:
            name, module, inp = (
                f"sketch_condition_encoder.t{grid[0]}",
                SketchConditionGraph(tr),
                ("sketch_tokens"),
            )

            def make(b: int, g: torch.Generator, grid: Grid = grid) -> tuple[Tensor, ...]:
                return (torch.randint(0, c.sketch_vocab_size, (b, *grid), generator=g),)

        specs.append(
            GraphSpec(
                name,
                "condition_encoder",
                module,
                [inp],
                cross_names,
                make,
                _batch_axes([inp, *cross_names]),
                {"condition": key, "condition_grid": list(grid), "cross_extents": list(extents)},
                uses_attention=True,
            )
        )
    past = kv_names(PAST_KEY, PAST_VALUE, layers)
    present = kv_names(PRESENT_KEY, PRESENT_VALUE, layers)
    slots = c.cache_slots
    for key, (grid, extents) in conditions.items():
        groups = decoder_step_groups(model, key, grid, extents)
        for served in groups:
            f = served[-1]  # the largest frame count: its grid is the attribute
            n_cond = grid_size(grid)
            n_target = c.frames * c.tokens_per_frame

            def make_step(
                b: int, g: torch.Generator, n_cond: int = n_cond, n_target: int = n_target
            ) -> tuple[Tensor, ...]:
                ids = torch.randint(0, c.image_vocab_size + 1, (b,), generator=g)  # incl. <bos>
                # positions anywhere in a video 3x the trained one: the ring has wrapped around
                pos = torch.randint(0, 3 * max(n_target, slots), (b,), generator=g)
                kv = [
                    torch.randn(b, c.n_heads, slots, c.head_dim, generator=g)
                    for _ in range(2 * layers)
                ]
                cross = [
                    torch.randn(b, c.n_heads, n_cond, c.head_dim, generator=g)
                    for _ in range(2 * layers)
                ]
                return (ids, pos, *kv, *cross)

            name = f"decoder_step.{key}" if len(groups) == 1 else f"decoder_step.{key}.t{f}"
            specs.append(
                GraphSpec(
                    name,
                    "decoder_step",
                    DecoderStepGraph(tr, grid, extents, f),
                    [INPUT_IDS, POSITIONS, *past, *cross_names],
                    [LOGITS, *present],
                    make_step,
                    _batch_axes([INPUT_IDS, POSITIONS, *past, *cross_names, LOGITS, *present]),
                    {
                        "condition": key,
                        "frames": list(served),
                        "target_grid": list(tr.target_grid(f)),
                        "condition_grid": list(grid),
                        "cross_extents": list(extents),
                    },
                    uses_attention=True,
                )
            )
    text_grid, text_extents = conditions["text"]
    n_text = grid_size(text_grid)

    def make_prefill(b: int, g: torch.Generator) -> tuple[Tensor, ...]:
        frames = c.frames  # traced with every frame; runs with any prefix of 1..T frames
        tokens = torch.randint(0, c.image_vocab_size, (b, frames, c.grid_h, c.grid_w), generator=g)
        cross = [
            torch.randn(b, c.n_heads, n_text, c.head_dim, generator=g) for _ in range(2 * layers)
        ]
        return (tokens, *cross)

    specs.append(
        GraphSpec(
            "decoder_prefill.text",
            "decoder_prefill",
            DecoderPrefillGraph(tr, text_grid, text_extents),
            [TARGET_TOKENS, *cross_names],
            present,
            make_prefill,
            {
                TARGET_TOKENS: {0: BATCH, 1: PREFIX_FRAMES},
                **_batch_axes([*cross_names, *present]),
            },
            {"condition": "text", "condition_grid": list(text_grid)},
            uses_attention=True,
        )
    )
    return specs
