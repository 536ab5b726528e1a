"""The decoder's self-attention KV cache: a fixed-capacity ring buffer per layer (DESIGN §5).

A query in frame ``t`` only sees frames ``t-et .. t``, so each layer keeps ``(et+1)*H*W`` slots;
raster position ``n`` lives in slot ``n % S`` (the geometry: :mod:`nuwa.spec.cache_geometry`).
Memory does not grow with video length, and videos longer than the trained length are generated
by sliding the window. The runtime's cache is :class:`nuwa.runtime.kv_cache.RingCache`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

KV = tuple[Tensor, Tensor]


@dataclass
class RingKVCache:
    """Per-layer ``(key, value)`` ring buffers, each ``(B, nh, S, hd)``."""

    layers: list[KV]

    @classmethod
    def empty(
        cls,
        n_layers: int,
        batch: int,
        n_heads: int,
        slots: int,
        head_dim: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> RingKVCache:
        shape = (batch, n_heads, slots, head_dim)
        return cls(
            [
                (
                    torch.zeros(shape, dtype=dtype, device=device),
                    torch.zeros(shape, dtype=dtype, device=device),
                )
                for _ in range(n_layers)
            ]
        )

    @property
    def slots(self) -> int:
        return int(self.layers[0][0].shape[2])

    @property
    def nbytes(self) -> int:
        return sum(
            k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self.layers
        )
