"""The 3DNA export hook: every 3DNA call of the transformer traced as one
``nuwa::NearbyAttention3D`` node.

The hook is the model's own extension point (:meth:`NuwaTransformer.attention_overridden` with
an :class:`~nuwa.model.transformer.AttentionOverride`), not a patch of the model's module:
:class:`OnnxNodeAttention` sends each call to a torch custom op whose kernel is the model's
gather implementation (so traced outputs are unchanged), and :func:`register_symbolic` maps that
op to the ONNX node with the attributes of :mod:`nuwa.export.attention_node`.

The TorchScript tracer records a dispatcher op as one opaque node (it does not trace into its
kernel), and ``register_custom_op_symbolic`` maps that node to ``nuwa::NearbyAttention3D``.
(An ``autograd.Function`` with ``symbolic`` also records its traced forward as a sub-block, and
the exporter's graph passes fail on the gather body's shape arithmetic there.)

The kernel runs a whole-grid call (no query positions, no ring cache) as dense attention in
blocks of queries, each block's scores under :data:`KERNEL_BLOCK_BYTES`: the model's gather
path would hold every query's neighbourhood at once, ~9-16 GB per call at batch 2 for a
paper-size grid (and, measured, 30-50 s per call there). Its queries may be the leading rows
of ``q_grid`` (a prefix of a causal grid: the prefill's calls, traced on a few frames and
recorded with the whole target grid's attributes by ``OnnxNodeAttention(whole_target=...)``),
which is how the node's function body reads them.
"""

from __future__ import annotations

import dataclasses
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.onnx import symbolic_helper

from nuwa.export.attention_node import DOMAIN, OP_TYPE
from nuwa.model.attention3d import (
    Grid,
    NearbyAttentionSpec,
    grid_size,
    nearby_attention_decode_gather,
    nearby_attention_dense,
    nearby_attention_gather,
)
from nuwa.model.transformer import NuwaTransformer

CUSTOM_OP = "nuwa_export::nearby_attention_3d"

# Bytes of attention scores one block of queries of the kernel may hold.
KERNEL_BLOCK_BYTES = 16 << 20


def whole_grid_attention_in_blocks(
    q: Tensor, k: Tensor, v: Tensor, spec: NearbyAttentionSpec, block_bytes: int
) -> Tensor:
    """A whole-grid 3DNA call (no query positions, no ring cache) for the leading ``Nq`` queries
    of ``spec.q_grid``, computed in blocks of queries whose attention scores hold at most
    ``block_bytes``: each block is the model's dense oracle on the block's query positions
    against every key. Causal calls may have keys for the leading ``Nk >= Nq`` positions only
    (no query sees a later key); others need the whole key grid."""
    bsz, heads, nq, _ = q.shape
    nk = k.shape[2]
    if nq > grid_size(spec.q_grid) or (not spec.causal and nk != grid_size(spec.k_grid)):
        raise ValueError(
            f"3DNA call of {nq} queries and {nk} keys does not fit q_grid "
            f"{spec.q_grid} / k_grid {spec.k_grid}"
        )
    if spec.causal and nk < nq:
        raise ValueError(f"causal 3DNA call of {nq} queries has only {nk} keys")
    row_bytes = bsz * heads * nk * q.element_size()
    block = max(1, block_bytes // row_bytes)
    keys = torch.arange(nk, device=q.device)
    out = [
        nearby_attention_dense(
            q[:, :, s : s + block],
            k,
            v,
            spec,
            q_positions=torch.arange(s, min(s + block, nq), device=q.device),
            k_positions=keys,
        )
        for s in range(0, nq, block)
    ]
    return torch.cat(out, dim=2) if len(out) > 1 else out[0]


@torch.library.custom_op(CUSTOM_OP, mutates_args=())
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
    """The node's semantics in PyTorch (the model's implementations); see
    :mod:`nuwa.export.onnx_function` for the input contract. Runs with the TorchScript tracer
    suspended: the tracer records the op as one node, and otherwise also recorded every op of
    the kernel (measured: RSS growing ~45 MB/s through a paper-size encoder's trace)."""
    tracing = torch._C._get_tracing_state()
    torch._C._set_tracing_state(None)
    try:
        return _nearby_attention(
            q, k, v, q_positions, q_grid, k_grid, extents, causal, ring_cache, scale
        )
    finally:
        torch._C._set_tracing_state(tracing)


def _nearby_attention(
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
) -> Tensor:
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
    if q_positions is not None:
        return nearby_attention_gather(q, k, v, spec, q_positions=q_positions.long()).contiguous()
    return whole_grid_attention_in_blocks(q, k, v, spec, KERNEL_BLOCK_BYTES).contiguous()


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
        torch.onnx.register_custom_op_symbolic(CUSTOM_OP, _nearby_attention_symbolic, opset)
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


@dataclass(frozen=True)
class OnnxNodeAttention:
    """An :class:`~nuwa.model.transformer.AttentionOverride`: each 3DNA call is one call of the
    export op (one ``NearbyAttention3D`` node in the traced graph).

    ``whole_target``: the target grid ``(T, H, W)`` whose attributes whole-grid calls on a prefix
    of it (``F < T`` frames of ``H x W``: the prefill traced on a few frames) are recorded with:
    the query grid, and for causal self-attention the key grid too. The node's body then reads
    the ``F*H*W`` queries as the leading rows of the whole grid, so one graph serves every
    prefix (causal attention never looks past the prefix's last frame)."""

    whole_target: Grid | None = None

    def recorded_spec(self, spec: NearbyAttentionSpec) -> NearbyAttentionSpec:
        """``spec`` as the node records it (see ``whole_target``)."""
        spec, target = static_spec(spec), self.whole_target
        if target is None or spec.ring_cache or tuple(spec.q_grid) == tuple(target):
            return spec
        if tuple(spec.q_grid[1:]) != tuple(target[1:]) or spec.q_grid[0] > target[0]:
            return spec
        k_grid = target if spec.causal else spec.k_grid
        return dataclasses.replace(spec, q_grid=tuple(target), k_grid=tuple(k_grid))

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, spec: NearbyAttentionSpec, q_positions: Tensor | None
    ) -> Tensor:
        if q_positions is not None and q_positions.dim() == 1:
            q_positions = q_positions.expand(q.shape[0], -1)
        if q_positions is None:
            spec = self.recorded_spec(spec)
        return _call_op(q, k, v, spec, q_positions)

    def decode(
        self,
        q: Tensor,
        k_cache: Tensor,
        v_cache: Tensor,
        spec: NearbyAttentionSpec,
        positions: Tensor,
    ) -> Tensor:
        return _call_op(q, k_cache, v_cache, spec, positions[:, None])


def attention_as_onnx_nodes(
    model: NuwaTransformer, whole_target: Grid | None = None
) -> AbstractContextManager[None]:
    """While active, the transformer's 3DNA calls go through the export op (which computes the
    same gather implementation, so outputs are unchanged); ``whole_target``: see
    :class:`OnnxNodeAttention`."""
    return model.attention_overridden(OnnxNodeAttention(whole_target))
