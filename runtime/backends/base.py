"""The one small interface every backend implements (DESIGN §9).

A backend owns the networks of one model directory and speaks NumPy at its edges:

- conditions: :meth:`Backend.text_condition` / :meth:`Backend.sketch_condition` run the encoder
  once and return the cross-attention K/V of every decoder layer (kept in the backend's own
  arrays, e.g. on the GPU);
- :meth:`Backend.start_request` — a request's :class:`RequestState`: the step graph, its
  bindings, dtypes and the ring-buffer KV cache (DESIGN §5) resolved once;
  :meth:`RequestState.step` feeds one token per batch row and returns the logits as NumPy,
  :meth:`RequestState.prefill` known leading frames in one call where the backend can;
- continuous batching: :meth:`Backend.new_step_pool` — requests that run the same decoder graph
  (equal :attr:`RequestState.graph_key`) stepped as one batch, joining and leaving at step
  boundaries (:class:`StepPool`); a backend without one steps each request alone;
- the VQ-GAN: :meth:`Backend.frames_to_codes` / :meth:`Backend.codes_to_frames`.

The decode loop (``runtime/engine.py``), sampling and the task layouts are backend-independent:
per token, engine -> ``state.step`` -> sampler.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from nuwa.spec.model_spec import ModelSpec

Grid = tuple[int, int, int]
Extents = tuple[int, int, int]


@dataclass
class Condition:
    """An encoded condition: per decoder layer cross-attention ``(key, value)``, each
    ``(B, nh, Nc, hd)`` in the backend's array type, and the condition's token grid."""

    cross: list[tuple[Any, Any]]
    grid: Grid  # condition token grid, (1, 1, L) for text
    kind: str  # "text" or "sketch"
    batch: int


class RequestState(ABC):
    """One request's decoder on a backend, made by :meth:`Backend.start_request` for one
    condition (its rows, guidance rows included) and frame count: what a step needs is resolved
    once here, not per token. ``cache`` is the request's ring KV cache."""

    cache: Any
    # requests whose states have equal keys run the same decoder graph and can share a step
    # (a backend's :meth:`Backend.new_step_pool`); None: this state steps alone
    graph_key: str | None = None

    @abstractmethod
    def step(self, tokens: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """One step: ``tokens (R,)`` (the token at ``positions - 1``, ``<bos>`` at 0) and
        ``positions (R,)`` int64 -> logits ``(R, V)`` float32 NumPy; the cache advances."""

    def prefill(self, frames: np.ndarray) -> bool:
        """Known whole frames ``(R, F, H, W)`` from position 0 in one call: the cache as
        ``F*H*W`` :meth:`step` calls would leave it; ``False`` (nothing done) where the backend
        has no prefill for the condition (the engine then feeds the prefix step by step)."""
        return False


class StepPool(ABC):
    """Requests that run the same decoder graph, stepped together as one batch (continuous
    batching): a member joins with its :class:`RequestState` (its cache copied into the pool's
    rows) and leaves at a step boundary; every step advances every member by one position, each
    at its own position. A member's logits equal what its own state's :meth:`RequestState.step`
    gives (up to the rounding of batched kernels)."""

    @abstractmethod
    def add(self, member: Hashable, state: RequestState) -> None:
        """``state`` (a request's cache so far, its condition) joins the batch as ``member``."""

    @abstractmethod
    def remove(self, member: Hashable) -> None:
        """``member`` leaves; its rows are freed."""

    @abstractmethod
    def __len__(self) -> int:
        """Members in the pool."""

    @abstractmethod
    def step(self, feeds: Mapping[Hashable, tuple[np.ndarray, int]]) -> dict[Hashable, np.ndarray]:
        """One step of every member: ``{member: (tokens (rows,), position)}`` -> ``{member:
        logits (rows, V)}``; every member's cache advances."""


UNCONDITIONS_KEPT = 8  # unconditional conditions a backend keeps (one per input shape in use)
_UNCONDITIONS_LOCK = threading.Lock()


class Backend(ABC):
    """Runs one model directory. Subclasses set ``name`` and implement the abstract methods."""

    name: str = ""
    spec: ModelSpec
    precision: str = "fp32"

    # ---- conditions ------------------------------------------------------------------------

    @abstractmethod
    def text_condition(self, text_ids: np.ndarray) -> Condition:
        """Padded text ids ``(B, max_text_len)`` int64 -> encoded condition."""

    @abstractmethod
    def sketch_condition(self, sketch: np.ndarray) -> Condition:
        """Class maps ``(B, T, S, S)`` int64 (VQ-GAN-Seg, then the encoder) -> condition."""

    def unconditional(self, kind: str, inputs: np.ndarray) -> Condition:
        """The unconditional condition of classifier-free guidance: ``inputs`` are the empty
        prompt's ids (``kind`` "text") or a blank sketch ("sketch"), the same for every request
        of a shape, so each is encoded once and kept (the last :data:`UNCONDITIONS_KEPT`; a
        guided s2v request saved ~39 ms, t2i ~4 ms on the demo). Shared between requests: its
        NumPy arrays are read-only (guidance only stacks them under a request's condition)."""
        key = (kind, inputs.shape, inputs.dtype.str, inputs.tobytes())
        with _UNCONDITIONS_LOCK:
            kept: dict[Any, Condition] = self.__dict__.setdefault("_unconditions", {})
            found = kept.get(key)
        if found is not None:
            return found
        encode = self.sketch_condition if kind == "sketch" else self.text_condition
        cond = encode(inputs)
        for pair in cond.cross:
            for array in pair:
                if isinstance(array, np.ndarray):
                    array.setflags(write=False)
        with _UNCONDITIONS_LOCK:
            kept[key] = cond
            while len(kept) > UNCONDITIONS_KEPT:
                del kept[next(iter(kept))]  # the oldest
        return cond

    def concat_conditions(self, first: Condition, second: Condition) -> Condition:
        """Stack two conditions' rows (classifier-free guidance: conditional then unconditional)."""
        if first.grid != second.grid or first.kind != second.kind:
            raise ValueError("conditions to stack must have the same kind and grid")
        cross = [
            (self.stack_rows(k1, k2), self.stack_rows(v1, v2))
            for (k1, v1), (k2, v2) in zip(first.cross, second.cross, strict=True)
        ]
        return Condition(cross, first.grid, first.kind, first.batch + second.batch)

    def stack_rows(self, first: Any, second: Any) -> Any:
        """Concatenate two of this backend's arrays along the batch axis (NumPy by default)."""
        return np.concatenate([first, second])

    # ---- decoder ---------------------------------------------------------------------------

    @abstractmethod
    def start_request(self, cond: Condition, num_frames: int) -> RequestState:
        """The decoder state of a request of ``num_frames`` frames for condition ``cond`` (all
        its rows: ``cond.batch``), with a zeroed ring KV cache."""

    def new_step_pool(self, state: RequestState) -> StepPool | None:
        """A pool for requests with ``state``'s :attr:`~RequestState.graph_key` (``state`` not
        added yet), or None where this backend steps each request alone."""
        return None

    # ---- VQ-GAN ----------------------------------------------------------------------------

    @abstractmethod
    def frames_to_codes(self, frames: np.ndarray) -> np.ndarray:
        """uint8 ``(B, T, S, S, 3)`` -> codes ``(B, T, h, w)`` int64."""

    @abstractmethod
    def codes_to_frames(self, codes: np.ndarray) -> np.ndarray:
        """Codes ``(B, T, h, w)`` -> uint8 ``(B, T, S, S, 3)``."""

    def use_in_thread(self) -> None:
        """Make this backend usable from the calling thread (called by each thread that runs
        it besides the one that made it; a GPU backend selects its device there). Nothing to do
        on the CPU."""
        return None

    def describe(self) -> str:
        return f"{self.name} ({self.precision})"
