"""Ring-buffer KV caches on the runtime side (DESIGN §5), as NumPy arrays or ONNX Runtime values.

Per decoder layer a ``(key, value)`` pair, each ``[batch, heads, slots, head_dim]`` with
``slots = (et+1)*H*W``; raster position ``n`` lives in slot ``n % slots`` (the decoder step graph
writes it). The buffers never grow: long videos slide through the same memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nuwa.spec.model_spec import ModelSpec


def cache_shape(spec: ModelSpec, rows: int) -> tuple[int, int, int, int]:
    return (rows, spec.n_heads, spec.cache_slots, spec.head_dim)


def slot_of(position: int, slots: int) -> int:
    return position % slots


@dataclass
class RingCache:
    """The ``past`` of every decoder layer, in the order the decoder step graph takes them."""

    layers: list[tuple[Any, Any]]  # (key, value) per layer: np.ndarray or onnxruntime.OrtValue

    @classmethod
    def zeros(cls, spec: ModelSpec, rows: int, dtype: np.dtype = np.float32) -> RingCache:
        shape = cache_shape(spec, rows)
        return cls(
            [(np.zeros(shape, dtype), np.zeros(shape, dtype)) for _ in range(spec.n_decoder_layers)]
        )

    @property
    def nbytes(self) -> int:
        total = 0
        for k, v in self.layers:
            for x in (k, v):
                if isinstance(x, np.ndarray):
                    total += x.nbytes
                else:  # OrtValue
                    total += int(np.prod(x.shape())) * np.dtype(x.data_type_numpy()).itemsize
        return total

    def feeds(self, names: list[tuple[str, str]]) -> dict[str, Any]:
        """Graph inputs ``{past_key_values.i.key: ..., past_key_values.i.value: ...}``."""
        out: dict[str, Any] = {}
        for (kname, vname), (k, v) in zip(names, self.layers, strict=True):
            out[kname], out[vname] = k, v
        return out
