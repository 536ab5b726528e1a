"""The ring-buffer KV cache's geometry (DESIGN §5), defined once.

A decoder query in frame ``t`` sees frames ``t-et .. t`` only, so each decoder layer keeps a ring
of ``(et+1)*H*W`` slots (the whole trained time axis when ``et`` is -1 or reaches past it);
raster position ``n`` lives in slot ``n % slots``. A cache tensor is
``[batch, heads, slots, head_dim]`` (``graph_names.CACHE_LAYOUT``). The exporter writes the
slot count into the manifest (``decoder.cache_slots``); the runtime reads it from there and never
recomputes it.

Torch-free and import-free: every floor may read it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CacheGeometry", "ring_frames", "ring_slots"]


def ring_frames(frames: int, et: int) -> int:
    """Frames a causal ring must hold for a time extent ``et`` over ``frames`` trained frames:
    ``et+1``, or all of them when ``et`` is -1 (the whole axis) or reaches past them."""
    return frames if et < 0 else min(et + 1, frames)


def ring_slots(frames: int, et: int, grid_h: int, grid_w: int) -> int:
    """Ring-buffer slots per decoder layer: ``ring_frames(frames, et) * H * W``."""
    return ring_frames(frames, et) * grid_h * grid_w


@dataclass(frozen=True)
class CacheGeometry:
    """The shape of one request's ring KV cache: ``layers`` decoder layers, each a key and a
    value ``(rows, heads, slots, head_dim)``."""

    layers: int
    heads: int
    slots: int
    head_dim: int

    def shape(self, rows: int) -> tuple[int, int, int, int]:
        return (rows, self.heads, self.slots, self.head_dim)

    def nbytes(self, rows: int, itemsize: int) -> int:
        """Bytes of the whole cache (keys and values of every layer) for ``rows`` rows."""
        return 2 * self.layers * rows * self.heads * self.slots * self.head_dim * itemsize
