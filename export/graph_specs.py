"""Which graphs an export holds: one :class:`GraphSpec` per ONNX graph — its wrapper module
(:mod:`nuwa.export.graph_modules`), I/O names (:mod:`nuwa.spec.graph_names`), dynamic axes, the
manifest's metadata, and random example inputs (the inputs export traces with and the numerical
checks feed to both PyTorch and ONNX Runtime).

:func:`build_graph_specs` reads one table, :data:`GRAPH_FAMILIES`: each row makes the specs of
one graph kind (the tokenizers from :data:`TOKENIZER_GRAPHS`, one condition encoder per
condition, the decoder steps per condition and group of frame counts, the text prefill).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from nuwa.export.attention_marker import static_spec
from nuwa.export.graph_modules import (
    DecoderPrefillGraph,
    DecoderStepGraph,
    SketchConditionGraph,
    SketchEncoderGraph,
    TextConditionGraph,
    VQDecoderGraph,
    VQEncoderGraph,
)
from nuwa.model.attention3d import Extents, Grid, grid_size, neighbour_table
from nuwa.model.nuwa import NuwaModel
from nuwa.spec import graph_names as names
from nuwa.spec.graph_names import (
    BATCH,
    CROSS_KEY,
    CROSS_VALUE,
    INPUT_IDS,
    LOGITS,
    PAST_KEY,
    PAST_VALUE,
    POSITIONS,
    PREFIX_FRAMES,
    PRESENT_KEY,
    PRESENT_VALUE,
    TARGET_TOKENS,
    kv_names,
)

Conditions = dict[str, tuple[Grid, Extents]]  # condition key -> (grid, cross extents)


@dataclass
class GraphSpec:
    """One ONNX graph: its wrapper, I/O names, dynamic axes, and random example inputs."""

    name: str  # file stem, e.g. "decoder_step.text.t3"
    kind: str  # one of nuwa.spec.graph_names.GRAPH_KINDS
    module: nn.Module
    input_names: list[str]
    output_names: list[str]
    make_inputs: Callable[[int, torch.Generator], tuple[Tensor, ...]]  # (batch, gen) -> inputs
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # condition, frames, grids for manifest
    uses_attention: bool = False
    # the target grid the 3DNA nodes are recorded for when the example inputs hold only a prefix
    # of it (the prefill: traced on a few frames, run on any prefix of the trained ones)
    attention_grid: Grid | None = None

    @property
    def file(self) -> str:
        return f"{self.name}.onnx"


def batch_axes(tensors: list[str]) -> dict[str, dict[int, str]]:
    """Axis 0 of every tensor is the dynamic batch."""
    return {n: {0: BATCH} for n in tensors}


def condition_grids(model: NuwaModel, frames: list[int]) -> Conditions:
    """Condition kinds the decoder steps are exported for: ``text`` and ``sketch_t{Ts}``."""
    c = model.config.transformer
    out: Conditions = {names.TEXT_CONDITION: ((1, 1, c.max_text_len), c.text_extents)}
    for f in frames:
        ts = min(f, c.sketch_frames)
        out[names.sketch_condition_key(ts)] = (
            (ts, c.sketch_grid_h, c.sketch_grid_w),
            c.sketch_cross_extents,
        )
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
        f
        for f in range(1, c.frames + 1)
        if key == names.TEXT_CONDITION or min(f, c.sketch_frames) == grid[0]
    ]
    groups: dict[str, list[int]] = {}
    for f in frames:
        groups.setdefault(_decode_signature(model, grid, extents, f), []).append(f)
    return [tuple(g) for g in groups.values()]


# --------------------------------------------------------------------------------------------
# The tokenizer graphs: (name = kind, wrapper, model attribute, input, output, example input)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenizerGraph:
    """One row of :data:`TOKENIZER_GRAPHS`: a graph around one of the model's VQ-GANs."""

    name: str  # graph name and kind
    wrapper: Callable[[Any], nn.Module]
    vqgan: str  # the NuwaModel attribute: "vqgan" or "vqgan_seg"
    input_name: str
    output_name: str
    example: str  # "frames" (floats in [-1, 1]), "codes" or "class_map" (int64)


TOKENIZER_GRAPHS = (
    TokenizerGraph(names.VQ_ENCODER, VQEncoderGraph, "vqgan", names.FRAMES, names.CODES, "frames"),
    TokenizerGraph(names.VQ_DECODER, VQDecoderGraph, "vqgan", names.CODES, names.FRAMES, "codes"),
    TokenizerGraph(
        names.SKETCH_ENCODER,
        SketchEncoderGraph,
        "vqgan_seg",
        names.SKETCH,
        names.SKETCH_CODES,
        "class_map",
    ),
)


def _tokenizer_specs(model: NuwaModel, conditions: Conditions) -> list[GraphSpec]:
    cfg = model.config
    specs = []
    for row in TOKENIZER_GRAPHS:
        vq = cfg.vqgan if row.vqgan == "vqgan" else cfg.vqgan_seg
        s, (h, w) = vq.image_size, vq.token_grid

        def make(b: int, g: torch.Generator, example: str = row.example, vq: Any = vq) -> Any:
            s, (h, w) = vq.image_size, vq.token_grid
            if example == "frames":
                return (torch.rand(b, vq.in_channels, s, s, generator=g) * 2 - 1,)
            if example == "codes":
                return (torch.randint(0, vq.codebook_size, (b, h, w), generator=g),)
            return (torch.randint(0, vq.in_channels, (b, s, s), generator=g),)

        meta: dict[str, Any] = {"image_size": s, "token_grid": [h, w]}
        if row.vqgan == "vqgan_seg":
            meta["num_classes"] = vq.in_channels
        meta["codebook_size"] = vq.codebook_size
        specs.append(
            GraphSpec(
                row.name,
                row.name,
                row.wrapper(getattr(model, row.vqgan)),
                [row.input_name],
                [row.output_name],
                make,
                batch_axes([row.input_name, row.output_name]),
                meta,
            )
        )
    return specs


# --------------------------------------------------------------------------------------------
# The transformer's graphs
# --------------------------------------------------------------------------------------------


def _condition_encoder_specs(model: NuwaModel, conditions: Conditions) -> list[GraphSpec]:
    """One encoder per condition: text ids or sketch tokens -> every layer's cross K/V."""
    c = model.config.transformer
    tr = model.transformer
    cross_names = kv_names(CROSS_KEY, CROSS_VALUE, c.n_decoder_layers)
    specs = []
    for key, (grid, extents) in conditions.items():
        if key == names.TEXT_CONDITION:
            module: nn.Module = TextConditionGraph(tr)
            inp = names.TEXT_IDS

            def make(b: int, g: torch.Generator) -> tuple[Tensor, ...]:
                return (torch.randint(0, c.text_vocab_size, (b, c.max_text_len), generator=g),)

        else:
            module, inp = SketchConditionGraph(tr), names.SKETCH_TOKENS

            def make(b: int, g: torch.Generator, grid: Grid = grid) -> tuple[Tensor, ...]:
                return (torch.randint(0, c.sketch_vocab_size, (b, *grid), generator=g),)

        specs.append(
            GraphSpec(
                names.condition_encoder_name(key, grid[0]),
                names.CONDITION_ENCODER_KIND,
                module,
                [inp],
                cross_names,
                make,
                batch_axes([inp, *cross_names]),
                {"condition": key, "condition_grid": list(grid), "cross_extents": list(extents)},
                uses_attention=True,
            )
        )
    return specs


def _decoder_step_specs(model: NuwaModel, conditions: Conditions) -> list[GraphSpec]:
    """Per condition, one decoder step per group of frame counts (:func:`decoder_step_groups`)."""
    c = model.config.transformer
    tr = model.transformer
    layers = c.n_decoder_layers
    cross_names = kv_names(CROSS_KEY, CROSS_VALUE, layers)
    past = kv_names(PAST_KEY, PAST_VALUE, layers)
    present = kv_names(PRESENT_KEY, PRESENT_VALUE, layers)
    slots = c.cache_slots
    specs = []
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

            specs.append(
                GraphSpec(
                    names.decoder_step_name(key, None if len(groups) == 1 else f),
                    names.DECODER_STEP_KIND,
                    DecoderStepGraph(tr, grid, extents, f),
                    [INPUT_IDS, POSITIONS, *past, *cross_names],
                    [LOGITS, *present],
                    make_step,
                    batch_axes([INPUT_IDS, POSITIONS, *past, *cross_names, LOGITS, *present]),
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
    return specs


# Frames of the prefill's example inputs (traced and checked with): a short prefix. Its 3DNA
# nodes still carry the whole target grid (GraphSpec.attention_grid), and its frame axis is
# dynamic. All T frames at batch 2 would hold, per 3DNA call, every query's gathered keys and
# values: ~9 GB each for the paper preset (4,410 queries x 196 neighbours x 20 heads x 64).
PREFILL_EXAMPLE_FRAMES = 2


def _decoder_prefill_specs(model: NuwaModel, conditions: Conditions) -> list[GraphSpec]:
    """The text condition's prefill: known prefix frames -> the ring caches; traced and checked
    on a prefix of :data:`PREFILL_EXAMPLE_FRAMES` frames."""
    c = model.config.transformer
    layers = c.n_decoder_layers
    cross_names = kv_names(CROSS_KEY, CROSS_VALUE, layers)
    present = kv_names(PRESENT_KEY, PRESENT_VALUE, layers)
    text_grid, text_extents = conditions[names.TEXT_CONDITION]
    n_text = grid_size(text_grid)

    def make_prefill(b: int, g: torch.Generator) -> tuple[Tensor, ...]:
        frames = min(PREFILL_EXAMPLE_FRAMES, c.frames)  # runs with any prefix of 1..T frames
        tokens = torch.randint(0, c.image_vocab_size, (b, frames, c.grid_h, c.grid_w), generator=g)
        cross = [
            torch.randn(b, c.n_heads, n_text, c.head_dim, generator=g) for _ in range(2 * layers)
        ]
        return (tokens, *cross)

    return [
        GraphSpec(
            names.decoder_prefill_name(names.TEXT_CONDITION),
            names.DECODER_PREFILL_KIND,
            DecoderPrefillGraph(model.transformer, text_grid, text_extents),
            [TARGET_TOKENS, *cross_names],
            present,
            make_prefill,
            {
                TARGET_TOKENS: {0: BATCH, 1: PREFIX_FRAMES},
                **batch_axes([*cross_names, *present]),
            },
            {"condition": names.TEXT_CONDITION, "condition_grid": list(text_grid)},
            uses_attention=True,
            attention_grid=c.target_grid,
        )
    ]


# The graph kinds of an export, in file order: each row makes its kind's specs.
GRAPH_FAMILIES: tuple[Callable[[NuwaModel, Conditions], list[GraphSpec]], ...] = (
    _tokenizer_specs,
    _condition_encoder_specs,
    _decoder_step_specs,
    _decoder_prefill_specs,
)


def build_graph_specs(model: NuwaModel, frames: list[int]) -> list[GraphSpec]:
    """Every graph of the runtime for a model; decoder steps for each target frame count."""
    conditions = condition_grids(model, frames)
    return [spec for family in GRAPH_FAMILIES for spec in family(model, conditions)]
