"""Continuous batching on ONNX Runtime's CPU: requests that run one ``decoder_step`` graph share
its runs (:class:`nuwa.runtime.backends.base.StepPool`).

The members' rows are packed at the front of preallocated host buffers — the ring caches, the
conditions' cross-attention K/V, token ids, positions, logits — and one IO binding reads and
writes their first ``size`` rows in place (``OrtValue`` views of NumPy memory, no copies; the
step's scatter writes each row's new cache slot in place, as
:class:`~.request_state.BoundRequestState` does for one request). Each row carries its own
position, so members at different points of their videos share a run. A member joining copies
its cache and cross K/V in once; a member leaving has its rows filled by the last rows (a few
row copies, never the whole batch); the binding is made again only when the membership changes.
Buffers start at :data:`MIN_CAPACITY` rows in memory maps of their own (untouched rows cost no
memory), grow by doubling and go back to the OS with the pool.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import onnxruntime as ort

from nuwa.runtime.backends.base import RequestState, StepPool
from nuwa.runtime.backends.onnxruntime.request_state import BoundRequestState, StepGraph
from nuwa.runtime.kv_cache import lazy_zeros

# Rows allocated at first. The buffers are anonymous memory maps
# (:func:`~nuwa.runtime.kv_cache.lazy_zeros`): rows never
# used cost address space, not memory, and a pool that starts this large seldom grows (a growth
# copies every row in use while the batch waits: 7-14 ms at 4 -> 8 -> 16 rows of the demo).
MIN_CAPACITY = 32


def _host(value: Any) -> np.ndarray:
    return value if isinstance(value, np.ndarray) else value.numpy()


class RowPool(StepPool):
    """Members' rows of one CPU step graph in shared host buffers, stepped in one run."""

    def __init__(self, graph: StepGraph) -> None:
        self.graph = graph
        dec = graph.decoder
        self.past_names, self.present_names = dec.past_names(), dec.present_names()
        self.cross_names = dec.cross_names()
        self.capacity = 0
        self.size = 0  # rows in use: [0, size)
        self.cache: list[np.ndarray] = []  # per past name, (capacity, heads, slots, head_dim)
        self.cross: list[np.ndarray] = []  # per cross name, (capacity, heads, Nc, head_dim)
        self.ids = np.zeros((0,), graph.ids_dtype)
        self.positions = np.zeros((0,), graph.positions_dtype)
        self.logits = np.zeros((0, dec.vocab_size), graph.logits_dtype)
        self.owner: list[Hashable] = []  # row -> member
        self.members: dict[Hashable, np.ndarray] = {}  # member -> its rows, in its own order
        self._binding: Any = None  # made for the current rows; None after a change
        self._bound: list[ort.OrtValue] = []

    def __len__(self) -> int:
        return len(self.members)

    # ---- membership --------------------------------------------------------------------

    def add(self, member: Hashable, state: RequestState) -> None:
        if member in self.members:
            raise ValueError(f"{member!r} is in the pool already")
        if not isinstance(state, BoundRequestState) or state.graph.info.name != (
            self.graph.info.name
        ):
            raise ValueError("a RowPool takes IO-bound requests of its own step graph")
        cache = [_host(v) for v in state.cache.past]
        cross = [_host(v) for v in state.cross]
        rows = int(cache[0].shape[0])
        self._reserve(self.size + rows, cache, cross)
        new = slice(self.size, self.size + rows)
        for dst, src in zip(self.cache, cache, strict=True):
            dst[new] = src
        for dst, src in zip(self.cross, cross, strict=True):
            dst[new] = src
        self.members[member] = np.arange(new.start, new.stop)
        self.owner.extend([member] * rows)
        self.size += rows
        self._binding = None

    def remove(self, member: Hashable) -> None:
        rows = self.members.pop(member)
        for row in sorted(rows.tolist(), reverse=True):
            last = self.size - 1
            if row != last:  # the last row (another member's) fills the hole
                for buf in (*self.cache, *self.cross):
                    buf[row] = buf[last]
                moved = self.owner[last]
                theirs = self.members[moved]
                theirs[theirs == last] = row
                self.owner[row] = moved
            self.owner.pop()
            self.size -= 1
        self._binding = None

    def _reserve(self, rows: int, cache: list[np.ndarray], cross: list[np.ndarray]) -> None:
        """Room for ``rows`` rows, shaped like a joining member's ``cache`` and ``cross``."""
        if rows <= self.capacity:
            return
        capacity = max(rows, 2 * self.capacity, MIN_CAPACITY)
        used = slice(0, self.size)

        def grown(old: np.ndarray | None, like: np.ndarray) -> np.ndarray:
            """``capacity`` rows shaped like ``like``'s rows, the rows in use kept."""
            new = lazy_zeros((capacity, *like.shape[1:]), like.dtype)
            if old is not None:
                new[used] = old[used]
            return new

        self.cache = [grown(self.cache[i] if self.cache else None, x) for i, x in enumerate(cache)]
        self.cross = [grown(self.cross[i] if self.cross else None, x) for i, x in enumerate(cross)]
        self.ids = grown(self.ids, self.ids)
        self.positions = grown(self.positions, self.positions)
        self.logits = grown(self.logits, self.logits)
        self.capacity = capacity
        self._binding = None

    # ---- the shared step ---------------------------------------------------------------

    def _bind(self) -> Any:
        """The binding over rows ``[0, size)``: one view of each buffer, read and written in
        place (past and present are the same memory)."""
        n, dec, session = self.size, self.graph.decoder, self.graph.session
        views: list[ort.OrtValue] = []

        def value(array: np.ndarray) -> ort.OrtValue:
            views.append(ort.OrtValue.ortvalue_from_numpy(array[:n]))
            return views[-1]

        binding = session.io_binding()
        binding.bind_ortvalue_input(dec.input_ids, value(self.ids))
        binding.bind_ortvalue_input(dec.positions, value(self.positions))
        for past, present, buf in zip(self.past_names, self.present_names, self.cache, strict=True):
            cache = value(buf)
            binding.bind_ortvalue_input(past, cache)
            binding.bind_ortvalue_output(present, cache)
        for name, buf in zip(self.cross_names, self.cross, strict=True):
            binding.bind_ortvalue_input(name, value(buf))
        binding.bind_ortvalue_output(dec.logits, value(self.logits))
        self._bound = views  # the views live as long as the binding
        return binding

    def step(self, feeds: Mapping[Hashable, tuple[np.ndarray, int]]) -> dict[Hashable, np.ndarray]:
        if feeds.keys() != self.members.keys():
            raise ValueError("a pool step feeds every member, and only its members")
        for member, (tokens, position) in feeds.items():
            rows = self.members[member]
            self.ids[rows] = tokens
            self.positions[rows] = position
        if self._binding is None:
            self._binding = self._bind()
        self.graph.session.run_with_iobinding(self._binding)
        logits = self.logits
        return {
            member: logits[rows].astype(np.float32, copy=False)
            for member, rows in self.members.items()
        }
