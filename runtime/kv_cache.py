"""The runtime's ring-buffer KV cache (DESIGN §5), one class for every backend.

Per decoder layer a key and a value, each ``[rows, heads, slots, head_dim]``; the geometry
(:class:`nuwa.spec.cache_geometry.CacheGeometry`) comes from the manifest's ``decoder`` entry.
Raster position ``n`` lives in slot ``n % slots`` (the decoder step graph writes it). The buffers
never grow: long videos slide through the same memory.

The buffers are the backend's arrays (NumPy, ONNX Runtime ``OrtValue``, TensorRT device
buffers), flat in the order the step graph takes them (``[key 0, value 0, key 1, ...]``), in two
sets: ``past`` (the cache now) and ``present`` (where a step writes the next cache). A backend
that writes the cache in place binds the same set twice; one that double-buffers swaps the
roles after each step (ping-pong); one that gets new arrays back from each step
:meth:`RingCache.replace` s the past set. The torch reference is
:class:`nuwa.model.kv_cache.RingKVCache`.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from nuwa.spec.cache_geometry import CacheGeometry


def lazy_zeros(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A zeroed array in an anonymous memory map of its own: the OS zeroes a page when it is
    first touched and takes every page back when the array is freed. (``np.zeros`` of this size
    comes from malloc, whose arenas keep freed blocks and hand them out again zeroed by hand, so
    untouched rows would cost memory and a thread's arena would keep what was freed: a server's
    memory grew with every wave of concurrent requests.)"""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if nbytes == 0:
        return np.zeros(shape, dtype)
    # private: reading a page never written maps the kernel's shared zero page (a shared
    # anonymous map, mmap's default, backs every page it reads with shared memory of its own;
    # copying a fresh request's cache into a pool took 2.7 ms per 3 MB that way, 1.6 ms private)
    memory = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE)
    return np.frombuffer(memory, dtype=dtype).reshape(shape)


class _HasGeometry(Protocol):  # ModelSpec and friends
    n_decoder_layers: int
    n_heads: int
    cache_slots: int
    head_dim: int


def geometry_of(source: CacheGeometry | _HasGeometry) -> CacheGeometry:
    """A :class:`CacheGeometry` itself, or the one of a model spec."""
    if isinstance(source, CacheGeometry):
        return source
    return CacheGeometry(
        source.n_decoder_layers, source.n_heads, source.cache_slots, source.head_dim
    )


def _nbytes(x: Any) -> int:
    if isinstance(x, np.ndarray):
        return int(x.nbytes)
    if hasattr(x, "data_type_numpy"):  # onnxruntime.OrtValue
        return int(np.prod(x.shape())) * np.dtype(x.data_type_numpy()).itemsize
    return int(x.nbytes)  # a device buffer with nbytes


@dataclass
class RingCache:
    """The ``past`` (and ``present``) buffers of every decoder layer."""

    buffers: list[list[Any]]  # two sets (the same list twice when written in place)
    current: int = 0  # which set holds the cache now (bound as past)

    @classmethod
    def of(cls, values: list[Any]) -> RingCache:
        """One set of buffers, written in place or replaced by each step."""
        return cls([values, values])

    @classmethod
    def zeros(
        cls, geometry: CacheGeometry | _HasGeometry, rows: int, dtype: Any = np.float32
    ) -> RingCache:
        """Zeroed NumPy caches for ``rows`` rows (one set), each in memory of its own
        (:func:`lazy_zeros`)."""
        g = geometry_of(geometry)
        shape = g.shape(rows)
        return cls.of([lazy_zeros(shape, dtype) for _ in range(2 * g.layers)])

    @property
    def past(self) -> list[Any]:
        return self.buffers[self.current]

    @property
    def present(self) -> list[Any]:
        return self.buffers[1 - self.current]

    @property
    def in_place(self) -> bool:
        return self.buffers[0] is self.buffers[1]

    def swap(self) -> None:
        """After a step that wrote ``present``: it is the cache now."""
        self.current = 1 - self.current

    def advance(self, present: list[Any]) -> None:
        """After a double-buffered step that wrote ``present`` (the present set, or buffers
        that replace it): they are the cache now, the old past set the next present."""
        self.buffers[1 - self.current] = present
        self.swap()

    def replace(self, values: list[Any]) -> None:
        """A step returned new arrays: they are the cache now (one set)."""
        self.buffers = [values, values]
        self.current = 0

    @property
    def layers(self) -> list[tuple[Any, Any]]:
        """``(key, value)`` per layer of the cache now."""
        past = self.past
        return list(zip(past[0::2], past[1::2], strict=True))

    @property
    def nbytes(self) -> int:
        """Bytes of the cache now (one set)."""
        return sum(_nbytes(x) for x in self.past)

    def feeds(self, names: list[str]) -> dict[str, Any]:
        """Graph inputs ``{past_key_values.i.key: ..., past_key_values.i.value: ...}``."""
        return dict(zip(names, self.past, strict=True))

    def host_layers(
        self, to_host: Callable[[Any], np.ndarray] = np.asarray
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """The cache now as NumPy ``(key, value)`` per layer (for tests and debugging)."""
        arrays = [to_host(v) for v in self.past]
        return list(zip(arrays[0::2], arrays[1::2], strict=True))
