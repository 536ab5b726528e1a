"""The 3DNA export hook: every 3DNA call of the transformer traced as one
``nuwa::NearbyAttention3D`` node.

The hook is the model's own extension point (:meth:`NuwaTransformer.attention_overridden` with
an :class:`~nuwa.model.transformer.AttentionOverride`), not a patch of the model's module:
:data:`ONNX_NODE_ATTENTION` sends each call to a torch custom op whose kernel is the model's
gather implementation (so traced outputs are unchanged), and :func:`register_symbolic` maps that
op to the ONNX node with the attributes of :mod:`nuwa.export.attention_node`.

The TorchScript tracer records a dispatcher op as one opaque node (it does not trace into its
kernel), and ``register_custom_op_symbolic`` maps that node to ``nuwa::NearbyAttention3D``.
(An ``autograd.Function`` with ``symbolic`` also records its traced forward as a sub-block, and
the exporter's graph passes fail on the gather body's shape arithmetic there.)
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import Tensor
from torch.onnx import symbolic_helper

from nuwa.export.attention_node import DOMAIN, OP_TYPE
from nuwa.model.attention3d import (
    NearbyAttentionSpec,
    nearby_attention,
    nearby_attention_decode_gather,
)
from nuwa.model.transformer import NuwaTransformer

CUSTOM_OP = "nuwa_export::nearby_attention_3d"


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


class OnnxNodeAttention:
    """An :class:`~nuwa.model.transformer.AttentionOverride`: each 3DNA call is one call of the
    export op (one ``NearbyAttention3D`` node in the traced graph)."""

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, spec: NearbyAttentionSpec, q_positions: Tensor | None
    ) -> Tensor:
        if q_positions is not None and q_positions.dim() == 1:
            q_positions = q_positions.expand(q.shape[0], -1)
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


ONNX_NODE_ATTENTION = OnnxNodeAttention()


def attention_as_onnx_nodes(model: NuwaTransformer) -> AbstractContextManager[None]:
    """While active, the transformer's 3DNA calls go through the export op (which computes the
    same gather implementation, so outputs are unchanged)."""
    return model.attention_overridden(ONNX_NODE_ATTENTION)
