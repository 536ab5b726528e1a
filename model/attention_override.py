"""Which 3DNA implementation a transformer's call runs: an implementation name of
:mod:`nuwa.model.attention3d` (``"gather"``, ``"dense"``, ``"auto"``) or an explicit
:class:`AttentionOverride`, the model's hook for replacing every 3DNA call (ONNX export installs
one that records each call as one ``nuwa::NearbyAttention3D`` node;
:meth:`~nuwa.model.transformer.NuwaTransformer.attention_overridden`)."""

from __future__ import annotations

from typing import Protocol

from torch import Tensor

from nuwa.model.attention3d import (
    NearbyAttentionSpec,
    nearby_attention,
    nearby_attention_decode_dense,
    nearby_attention_decode_gather,
)


class AttentionOverride(Protocol):
    """A replacement of every 3DNA call. ``attend``: whole-grid and positioned calls
    (``q_positions`` ``(B|1, Nq)`` raster indices or ``None``); ``decode``: a decode step's
    ring-cache self-attention (``positions (B,)``)."""

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, spec: NearbyAttentionSpec, q_positions: Tensor | None
    ) -> Tensor: ...

    def decode(
        self, q: Tensor, k: Tensor, v: Tensor, spec: NearbyAttentionSpec, positions: Tensor
    ) -> Tensor: ...


Impl = str | AttentionOverride  # an attention3d.IMPLEMENTATIONS name or an override


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    spec: NearbyAttentionSpec,
    impl: Impl,
    q_positions: Tensor | None = None,
) -> Tensor:
    """A whole-grid or positioned 3DNA call through ``impl``."""
    if isinstance(impl, str):
        return nearby_attention(q, k, v, spec, impl, q_positions)
    return impl.attend(q, k, v, spec, q_positions)


def attend_ring(
    q: Tensor, k: Tensor, v: Tensor, spec: NearbyAttentionSpec, impl: Impl, positions: Tensor
) -> Tensor:
    """A decode step's ring-cache self-attention through ``impl`` (``"auto"`` gathers:
    ``attention3d.resolve_impl`` of a ring-cache call)."""
    if isinstance(impl, str):
        decode = (
            nearby_attention_decode_dense if impl == "dense" else nearby_attention_decode_gather
        )
        return decode(q, k, v, spec, positions)
    return impl.decode(q, k, v, spec, positions)
