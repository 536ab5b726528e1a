"""3D Nearby Attention (3DNA), NÜWA (arXiv 2111.12417) §3.2, exactly as DESIGN §4.

Tokens live on a grid ``(T, H, W)`` flattened in raster order ``n = (t*H + h)*W + w``. A query at
``(t, h, w)`` of the query grid ``(Tq, Hq, Wq)`` has its centre in the key grid ``(Tk, Hk, Wk)`` at
``(floor(t*Tk/Tq), floor(h*Hk/Hq), floor(w*Wk/Wq))`` and attends every key within the extents
(radii) ``(et, eh, ew)`` of that centre, clipped at the borders; ``-1`` means the whole axis.
Causal attention also requires ``key raster index <= query raster index``; it is defined for
equal query and key grids only (a causal spec with unequal grids is refused).

Two PyTorch implementations of the one function, side by side:

- :func:`nearby_attention_dense` builds the full boolean mask — the slow, obvious oracle;
- :func:`nearby_attention_gather` gathers each query's neighbourhood through a static index table
  — the fast path and the body of the exported ONNX function.

and their one-query *decode* variants against a ring-buffer KV cache (DESIGN §5):
:func:`nearby_attention_decode_dense` and :func:`nearby_attention_decode_gather`.

A ring cache of ``S`` slots holds the key of raster position ``n`` in slot ``n % S``. While the
query at position ``p`` runs, slot ``s`` holds position ``p - ((p - s) mod S)`` (negative = never
written). With ``S = (et+1)*H*W`` the cache holds every key a causal query can see.

Frames past the query grid's ``T`` (sliding-window generation) are allowed: query centres are
clipped into the key grid, so cross-attention keeps using the last condition frame.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from nuwa.spec.cache_geometry import ring_slots
from nuwa.spec.config import Extents

Grid = tuple[int, int, int]


@dataclass(frozen=True)
class NearbyAttentionSpec:
    """Everything that defines one 3DNA call besides its tensors.

    This is the single description shared by the PyTorch modules, the ONNX node
    ``nuwa::NearbyAttention3D`` (see :meth:`onnx_attributes`) and the C/CUDA/TensorRT kernels.
    """

    q_grid: Grid  # (Tq, Hq, Wq) of the queries
    k_grid: Grid  # (Tk, Hk, Wk) of the keys/values (equal to q_grid for self-attention)
    extents: Extents  # (et, eh, ew) radii; -1 = whole axis
    causal: bool = False  # raster-order causality (decoder self-attention)
    scale: float | None = None  # None -> 1/sqrt(head_dim)
    ring_cache: bool = False  # keys are ring-buffer slots (decode self-attention)

    def __post_init__(self) -> None:
        for name, g in (("q_grid", self.q_grid), ("k_grid", self.k_grid)):
            if len(g) != 3 or any(int(x) < 1 for x in g):
                raise ValueError(f"3DNA {name} must be three positive sizes (T, H, W), got {g}")
        if len(self.extents) != 3 or any(int(e) < -1 for e in self.extents):
            raise ValueError(f"3DNA extents must be three radii >= -1, got {self.extents}")
        if self.ring_cache and (not self.causal or tuple(self.q_grid) != tuple(self.k_grid)):
            raise ValueError("3DNA ring_cache needs causal self-attention (q_grid == k_grid)")
        if self.causal and tuple(self.q_grid) != tuple(self.k_grid):
            # Raster causality compares a query's raster index in q_grid with a key's in k_grid,
            # which only means "earlier token" on one grid (DESIGN §4); the gather table (causal
            # time axis cut at the centre frame) and the dense mask disagree on unequal grids.
            raise ValueError(
                f"3DNA causal attention needs equal query and key grids, got q_grid "
                f"{tuple(self.q_grid)} and k_grid {tuple(self.k_grid)}"
            )

    def resolved_scale(self, head_dim: int) -> float:
        return float(self.scale) if self.scale is not None else 1.0 / math.sqrt(head_dim)

    def ring_capacity(self) -> int:
        """Ring-buffer slots a causal decode query needs: ``(et+1)*H*W`` (whole grid if et=-1)."""
        t, h, w = self.k_grid
        return ring_slots(t, self.extents[0], h, w)

    def onnx_attributes(self, head_dim: int, num_heads: int) -> dict[str, object]:
        """Attributes of the ``nuwa::NearbyAttention3D`` node (and the TensorRT plugin fields)."""
        return {
            "q_grid": [int(x) for x in self.q_grid],
            "k_grid": [int(x) for x in self.k_grid],
            "extents": [int(x) for x in self.extents],
            "causal": int(self.causal),
            "ring_cache": int(self.ring_cache),
            "scale": self.resolved_scale(head_dim),
            "num_heads": int(num_heads),
        }


def grid_size(grid: Grid) -> int:
    return int(grid[0]) * int(grid[1]) * int(grid[2])


def raster_to_coords(pos: Tensor, grid: Grid) -> tuple[Tensor, Tensor, Tensor]:
    """Raster index -> (t, h, w). ``t`` may exceed ``grid[0]`` (sliding window)."""
    _, h, w = grid
    return pos // (h * w), (pos // w) % h, pos % w


def _centres(
    q_pos: Tensor, q_grid: Grid, k_grid: Grid, time_unbounded: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    t, h, w = raster_to_coords(q_pos, q_grid)
    if time_unbounded:  # ring-cache self-attention: the key grid slides with the query
        ct = t
    else:  # a query past the key grid's last frame keeps using the last frame
        ct = torch.clamp((t * k_grid[0]) // q_grid[0], max=k_grid[0] - 1)
    ch = (h * k_grid[1]) // q_grid[1]
    cw = (w * k_grid[2]) // q_grid[2]
    return ct, ch, cw


def nearby_mask(
    q_grid: Grid,
    k_grid: Grid,
    extents: Extents,
    causal: bool = False,
    q_positions: Tensor | None = None,
    k_positions: Tensor | None = None,
    time_unbounded: bool = False,
) -> Tensor:
    """Boolean mask ``(..., Nq, Nk)``: True where query attends key. The oracle of DESIGN §4.

    ``q_positions`` ``(..., Nq)`` are raster indices in ``q_grid`` (default: every position);
    ``k_positions`` ``(..., Nk)`` raster indices in ``k_grid`` (default: every position), ``< 0``
    marks an empty cache slot that is never attended. ``time_unbounded`` (ring-cache decode):
    the time axis has no upper border, so frames past ``T`` keep their own centre.
    """
    if q_positions is None:
        q_positions = torch.arange(grid_size(q_grid))
    if k_positions is None:
        k_positions = torch.arange(grid_size(k_grid))
    if time_unbounded and extents[0] < 0:  # a sliding whole time axis spans the last T frames
        extents = (k_grid[0] - 1, extents[1], extents[2])
    ct, ch, cw = _centres(q_positions, q_grid, k_grid, time_unbounded)
    a, b, c = raster_to_coords(k_positions.clamp(min=0), k_grid)
    mask = (k_positions >= 0).unsqueeze(-2).expand(*ct.shape, k_positions.shape[-1])
    for centre, key, radius in ((ct, a, extents[0]), (ch, b, extents[1]), (cw, c, extents[2])):
        if radius >= 0:
            mask = mask & ((key.unsqueeze(-2) - centre.unsqueeze(-1)).abs() <= radius)
    if causal:
        mask = mask & (k_positions.unsqueeze(-2) <= q_positions.unsqueeze(-1))
    return mask


def _masked_softmax_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor, scale: float
) -> Tensor:
    # q (B, nh, Nq, hd), k/v (B, nh, Nk, hd), mask broadcastable to (B, nh, Nq, Nk)
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    scores = scores.masked_fill(~mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    probs = torch.nan_to_num(probs, nan=0.0)  # a query with no key (never in valid use) -> zeros
    return torch.matmul(probs, v)


def nearby_attention_dense(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    spec: NearbyAttentionSpec,
    q_positions: Tensor | None = None,
    k_positions: Tensor | None = None,
) -> Tensor:
    """Oracle: softmax(q kᵀ·scale + mask) v with the full 3DNA mask.

    q ``(B, nh, Nq, hd)``, k/v ``(B, nh, Nk, hd)``; positions ``(Nq,)``/``(B, Nq)`` and
    ``(Nk,)``/``(B, Nk)`` as in :func:`nearby_mask`. Returns ``(B, nh, Nq, hd)``.
    """
    if q_positions is None and k_positions is None and not spec.ring_cache:
        mask = static_mask(spec)
    else:
        mask = nearby_mask(
            spec.q_grid,
            spec.k_grid,
            spec.extents,
            spec.causal,
            q_positions,
            k_positions,
            time_unbounded=spec.ring_cache,
        )
    if mask.dim() == 3:  # per-batch positions -> (B, 1, Nq, Nk)
        mask = mask.unsqueeze(1)
    return _masked_softmax_attention(q, k, v, mask.to(q.device), spec.resolved_scale(q.shape[-1]))


# --------------------------------------------------------------------------------------------
# Gather implementation (whole grid)
# --------------------------------------------------------------------------------------------


def _axis_candidates(
    centre: Tensor, radius: int, size: int, causal_time: bool, unbounded: bool = False
) -> Tensor:
    """Candidate key coordinates along one axis, ``(..., m)``: the whole axis if ``radius < 0``,
    else ``centre - r .. centre + r`` (``.. centre`` for the causal time axis). ``r`` is clipped to
    the axis unless the axis is ``unbounded`` (the time axis of a ring cache)."""
    if radius < 0:
        return torch.arange(size).expand(*centre.shape, size)
    r = radius if unbounded else min(radius, size - 1)
    offsets = torch.arange(-r, 1 if causal_time else r + 1)
    return centre.unsqueeze(-1) + offsets


def neighbour_table(
    spec: NearbyAttentionSpec, q_positions: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Static neighbour table of a 3DNA call: ``index (..., Nq, M)`` and ``valid (..., Nq, M)``.

    ``index`` holds raster key positions (0 where invalid); row ``i`` lists the candidate keys
    around query ``i``'s centre. Invalid entries (outside the grid, or after the query when causal)
    are flagged in ``valid``. ``M = prod(2*e+1)`` clipped to the grid (a whole axis counts its
    size; the causal time axis only ``et+1``).
    """
    q_grid, k_grid = spec.q_grid, spec.k_grid
    if q_positions is None:
        q_positions = torch.arange(grid_size(q_grid))
    et = spec.extents[0]
    if spec.ring_cache and et < 0:  # a sliding whole time axis spans the last T frames
        et = k_grid[0] - 1
    ct, ch, cw = _centres(q_positions, q_grid, k_grid, spec.ring_cache)
    a = _axis_candidates(ct, et, k_grid[0], spec.causal, spec.ring_cache)
    a = a[..., :, None, None]
    b = _axis_candidates(ch, spec.extents[1], k_grid[1], False)[..., None, :, None]
    c = _axis_candidates(cw, spec.extents[2], k_grid[2], False)[..., None, None, :]
    valid = (a >= 0) & (b >= 0) & (b < k_grid[1]) & (c >= 0) & (c < k_grid[2])
    if not spec.ring_cache:  # a ring cache slides: its time axis has no last frame
        valid = valid & (a < k_grid[0])
    index = (a * k_grid[1] + b) * k_grid[2] + c
    index, valid = index.flatten(-3), valid.flatten(-3)
    if spec.causal:
        valid = valid & (index <= q_positions.unsqueeze(-1))
    index = torch.where(valid, index, torch.zeros_like(index))
    return index, valid


@functools.lru_cache(maxsize=256)
def static_neighbour_table(spec: NearbyAttentionSpec) -> tuple[Tensor, Tensor]:
    """:func:`neighbour_table` of a whole grid, computed once per spec."""
    return neighbour_table(spec)


@functools.lru_cache(maxsize=256)
def static_mask(spec: NearbyAttentionSpec) -> Tensor:
    """:func:`nearby_mask` of a whole grid, computed once per spec."""
    return nearby_mask(spec.q_grid, spec.k_grid, spec.extents, spec.causal)


def _gathered_attention(
    q: Tensor, k_sel: Tensor, v_sel: Tensor, valid: Tensor, scale: float
) -> Tensor:
    # q (B, nh, Nq, hd); k_sel/v_sel (B, nh, Nq, M, hd); valid broadcastable to (B, nh, Nq, M)
    scores = (q.unsqueeze(-2) * k_sel).sum(-1) * scale  # (B, nh, Nq, M)
    scores = scores.masked_fill(~valid, float("-inf"))
    probs = torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0)
    return (probs.unsqueeze(-1) * v_sel).sum(-2)


def gather_keys(x: Tensor, index: Tensor) -> Tensor:
    """Gather ``x (B, nh, Nk, hd)`` by ``index (Nq, M)`` or ``(B, Nq, M)``.

    Returns ``(B, nh, Nq, M, hd)``.
    """
    bsz, nh, _, hd = x.shape
    if index.dim() == 2:
        nq, m = index.shape
        return x[:, :, index.reshape(-1), :].reshape(bsz, nh, nq, m, hd)
    nq, m = index.shape[-2:]
    flat = index.reshape(bsz, 1, nq * m, 1).expand(bsz, nh, nq * m, hd)
    return torch.gather(x, 2, flat).reshape(bsz, nh, nq, m, hd)


def nearby_attention_gather(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    spec: NearbyAttentionSpec,
    table: tuple[Tensor, Tensor] | None = None,
    q_positions: Tensor | None = None,
) -> Tensor:
    """Fast path: gather each query's neighbourhood and attend over it only.

    ``table`` is :func:`neighbour_table`'s result (pass it to reuse a precomputed one).
    Shapes as :func:`nearby_attention_dense`; keys are the whole key grid.
    """
    if table is None:
        table = (
            static_neighbour_table(spec)
            if q_positions is None
            else neighbour_table(spec, q_positions)
        )
    index, valid = (t.to(q.device) for t in table)
    k_sel = gather_keys(k, index)
    v_sel = gather_keys(v, index)
    if valid.dim() == 3:
        valid = valid.unsqueeze(1)
    return _gathered_attention(q, k_sel, v_sel, valid, spec.resolved_scale(q.shape[-1]))


# --------------------------------------------------------------------------------------------
# Decode: one query per batch row against a ring-buffer cache (causal self-attention)
# --------------------------------------------------------------------------------------------


def ring_slot_positions(query_pos: Tensor, capacity: int) -> Tensor:
    """Raster position held by each ring slot while query ``query_pos (B,)`` runs: ``(B, S)``.

    Slot ``s`` holds ``p - ((p - s) mod S)``; negative means the slot was never written.
    """
    slots = torch.arange(capacity, device=query_pos.device)
    return query_pos.unsqueeze(-1) - torch.remainder(query_pos.unsqueeze(-1) - slots, capacity)


def nearby_attention_decode_dense(
    q: Tensor, k_cache: Tensor, v_cache: Tensor, spec: NearbyAttentionSpec, query_pos: Tensor
) -> Tensor:
    """Oracle decode: q ``(B, nh, 1, hd)`` at raster ``query_pos (B,)`` vs a ring cache
    ``(B, nh, S, hd)`` that already holds the query's own key. Returns ``(B, nh, 1, hd)``."""
    if not spec.ring_cache:
        raise ValueError("decode attention needs a ring_cache spec")
    k_positions = ring_slot_positions(query_pos, k_cache.shape[2])
    return nearby_attention_dense(q, k_cache, v_cache, spec, query_pos.unsqueeze(-1), k_positions)


def decode_neighbour_table(
    spec: NearbyAttentionSpec, query_pos: Tensor, capacity: int
) -> tuple[Tensor, Tensor]:
    """Ring-slot index ``(B, 1, M)`` and validity of a decode query's causal neighbourhood."""
    index, valid = neighbour_table(spec, query_pos.unsqueeze(-1))  # raster positions (B, 1, M)
    # keys older than the ring's reach would be overwritten; with capacity >= (et+1)*H*W none is
    valid = valid & (index > query_pos.view(-1, 1, 1) - capacity)
    slots = torch.remainder(index, capacity)
    return torch.where(valid, slots, torch.zeros_like(slots)), valid


def nearby_attention_decode_gather(
    q: Tensor, k_cache: Tensor, v_cache: Tensor, spec: NearbyAttentionSpec, query_pos: Tensor
) -> Tensor:
    """Fast decode: gather the ``M`` candidate slots of the query's neighbourhood only."""
    if not spec.ring_cache:
        raise ValueError("decode attention needs a ring_cache spec")
    index, valid = decode_neighbour_table(spec, query_pos, k_cache.shape[2])
    k_sel = gather_keys(k_cache, index)
    v_sel = gather_keys(v_cache, index)
    return _gathered_attention(
        q, k_sel, v_sel, valid.unsqueeze(1), spec.resolved_scale(q.shape[-1])
    )


IMPLEMENTATIONS = ("auto", "dense", "gather")
# "auto": whole-grid calls whose mask has at most this many (query, key) entries run dense with
# the cached mask — the gather materialises every query's neighbourhood keys and values
# (B*nh*Nq*M*hd each; an 8-frame 8x8 sketch: ~0.5 GB per batch row) where the dense scores are
# B*nh*Nq*Nk — and everything else (positioned calls, decode, larger grids) gathers. The same
# bound as the export's mask-table bodies (``nuwa.export.onnx_function.MAX_TABLE_ENTRIES``).
AUTO_DENSE_MAX_ENTRIES = 1 << 20


def resolve_impl(impl: str, spec: NearbyAttentionSpec, q_positions: Tensor | None) -> str:
    """The implementation ``impl`` means for one call: "dense" or "gather"."""
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"unknown 3DNA implementation {impl!r}; expected one of {IMPLEMENTATIONS}")
    if impl != "auto":
        return impl
    whole_grid = q_positions is None and not spec.ring_cache
    small = grid_size(spec.q_grid) * grid_size(spec.k_grid) <= AUTO_DENSE_MAX_ENTRIES
    return "dense" if whole_grid and small else "gather"


def nearby_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    spec: NearbyAttentionSpec,
    impl: str = "gather",
    q_positions: Tensor | None = None,
) -> Tensor:
    """Dispatch 3DNA to ``impl`` in :data:`IMPLEMENTATIONS` (see :func:`resolve_impl`)."""
    impl = resolve_impl(impl, spec, q_positions)
    if impl == "dense":
        return nearby_attention_dense(q, k, v, spec, q_positions)
    if impl == "gather":
        return nearby_attention_gather(q, k, v, spec, q_positions=q_positions)
    raise ValueError(f"unknown 3DNA implementation {impl!r}; expected 'dense' or 'gather'")
