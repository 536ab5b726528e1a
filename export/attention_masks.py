"""The 3DNA masks of the table bodies: which keys each query attends (DESIGN §4) as additive
``0`` / ``-inf`` tables, in NumPy (:func:`nearby_mask_np`, :func:`position_bias_table`,
:func:`grid_bias_table`: the reference, and what decides which body a call gets) and in graph
form (:func:`nearby_bias_nodes`, :func:`position_bias_nodes`: a constant subgraph that runtimes
fold once at load, so the tables are not stored in the file). :func:`bias_table_model` puts the
graph form alone in a model, for tests that compare it with the NumPy tables.

Needs only ``onnx`` and NumPy (no torch).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

from nuwa.export.attention_node import Attention3DAttrs
from nuwa.export.onnx_body import BodyBuilder, arange
from nuwa.spec.cache_geometry import ring_slots

# Largest position-indexed mask table (rows x keys) a decode-type body bakes in: 1 Mi entries
# (4 MiB as float32). The demo's ring (512 x 256) and sketch cross-attention (576 x 512) fit; the
# paper preset's 4096-slot ring does not, and there gathering ~200 candidates beats 4096 keys.
MAX_TABLE_ENTRIES = 1 << 20
# Largest whole-grid mask table (Nq x Nk) a body computes (at load, from a few integers): 32 Mi
# entries (128 MiB as float32). Dense attention over such a grid holds Nk scores per query and
# head, fewer than the gather body's M candidate keys and values of head_dim floats each: the
# paper preset's 10-frame 21x21 grids (Nk 4,410 against 343 x 64 for its sketch encoder) would
# gather ~15 GB of keys per call at batch 2, and their dense scores are 3.1 GB.
MAX_GRID_TABLE_ENTRIES = 1 << 25


@dataclass(frozen=True)
class PositionBiasTable:
    """Additive mask of a positioned 3DNA call as a table: row ``row(p)`` of ``bias``
    (``0`` where query ``p`` attends key/slot ``j``, ``-inf`` elsewhere) for every query position
    ``p >= 0``, with ``row(p) = min(p, base + (p - base) mod period)``.

    Ring cache (decode self-attention, ``S`` slots): slot ``s`` holds position
    ``p - ((p - s) mod S)``; once every slot is written (``p >= S``) the pattern repeats with
    period ``lcm(S, H*W)`` (whole ring turns and whole frames at once), so rows
    ``0 .. S + lcm(S, H*W) - 1`` cover every position (``base = S``, ``period = lcm(S, H*W)``;
    ``2S`` rows when ``H*W`` divides ``S``, as for a ring of whole frames).
    Whole key grid (positioned cross-attention, not causal): a query past the query grid's last
    frame keeps the last centre frame, so rows ``0 .. Tq*H*W + H*W - 1`` cover every position
    (``base = Tq*H*W``, ``period = H*W``)."""

    bias: np.ndarray  # (rows, Nk) float32
    base: int
    period: int
    has_empty_row: bool  # a query with no key: the body must turn NaN into 0


def nearby_mask_np(attrs: Attention3DAttrs, q_pos: np.ndarray, k_pos: np.ndarray) -> np.ndarray:
    """DESIGN §4 mask in NumPy (mirror of ``model.attention3d.nearby_mask``): ``q_pos (R,)``,
    ``k_pos (R, Nk)`` raster positions (``< 0``: empty slot) -> bool ``(R, Nk)``."""
    tq, hq, wq = attrs.q_grid
    tk, hk, wk = attrs.k_grid
    et, eh, ew = effective_extents(attrs)
    ring = bool(attrs.ring_cache)
    t, h, w = q_pos // (hq * wq), (q_pos // wq) % hq, q_pos % wq
    ct = t if ring else np.minimum((t * tk) // tq, tk - 1)
    centres = (ct, (h * hk) // hq, (w * wk) // wq)
    kp = np.maximum(k_pos, 0)
    keys = (kp // (hk * wk), (kp // wk) % hk, kp % wk)
    mask = k_pos >= 0
    for centre, key, radius in zip(centres, keys, (et, eh, ew), strict=True):
        if radius >= 0:
            mask &= np.abs(key - centre[:, None]) <= radius
    if attrs.causal:
        mask &= k_pos <= q_pos[:, None]
    return mask


def effective_extents(attrs: Attention3DAttrs) -> tuple[int, int, int]:
    """The attributes' extents as the bodies use them: a ring cache's whole time axis (``et``
    of -1) slides, spanning the last ``Tk`` frames (``et = Tk - 1``)."""
    et, eh, ew = attrs.extents
    if attrs.ring_cache and et < 0:
        et = attrs.k_grid[0] - 1
    return et, eh, ew


def ring_capacity(attrs: Attention3DAttrs) -> int:
    """Slots a ring cache needs for these attributes: ``(et+1)*H*W`` (the whole grid if -1)."""
    tk, hk, wk = attrs.k_grid
    return ring_slots(tk, attrs.extents[0], hk, wk)


@functools.lru_cache(maxsize=64)
def position_bias_table(attrs: Attention3DAttrs, key_count: int | None) -> PositionBiasTable | None:
    """The table of a positioned call whose ``k`` has ``key_count`` keys/slots (static in the
    graph), or ``None`` where the gather body is used instead: the count is unknown or does not
    fit the attributes, the call is causal without a ring cache, or the table would exceed
    :data:`MAX_TABLE_ENTRIES`. (A ring's slot count is the cache's, which can exceed the
    attributes' own capacity: one T2I/T2V decode graph serves every frame count.) Cached: the
    choice of body and the body itself ask for the same table, once per 3DNA node."""
    tq, hq, wq = attrs.q_grid
    tk, hk, wk = attrs.k_grid
    if key_count is None:
        return None
    if attrs.ring_cache:
        slots = key_count
        if slots < ring_capacity(attrs):
            return None
        # From p = S on, every slot holds a key and the mask of p + L equals the mask of p when
        # L shifts the slots' contents by whole ring turns (S | L) and the grid by whole frames
        # (H*W | L): period lcm(S, H*W), not S (which is only right when H*W divides S).
        base, period = slots, math.lcm(slots, hk * wk)
        rows = base + period
        q_pos = np.arange(rows)
        k_pos = q_pos[:, None] - np.mod(q_pos[:, None] - np.arange(slots), slots)
    elif not attrs.causal and key_count == tk * hk * wk:
        period = hq * wq
        base = tq * period
        rows = base + period
        q_pos = np.arange(rows)
        k_pos = np.broadcast_to(np.arange(tk * hk * wk), (rows, tk * hk * wk))
    else:
        return None
    if rows * k_pos.shape[1] > MAX_TABLE_ENTRIES:
        return None
    mask = nearby_mask_np(attrs, q_pos, k_pos)
    return PositionBiasTable(_additive_bias(mask), base, period, _has_empty_row(mask))


def _additive_bias(mask: np.ndarray) -> np.ndarray:
    """``0`` where ``mask`` attends, ``-inf`` elsewhere; read-only (the tables are cached and
    shared by every caller)."""
    bias = np.where(mask, np.float32(0.0), np.float32(-np.inf)).astype(np.float32)
    bias.setflags(write=False)
    return bias


def _has_empty_row(mask: np.ndarray) -> bool:
    """A query with no key (the body must then turn softmax's NaN into 0)."""
    return bool((~mask.any(axis=1)).any())


def is_full_attention(attrs: Attention3DAttrs) -> bool:
    """Every query sees every key (text: extents -1 on every axis, not causal): no table."""
    return all(e < 0 for e in attrs.extents) and not attrs.causal and not attrs.ring_cache


def position_bias_nodes(b: BodyBuilder, attrs: Attention3DAttrs, table: PositionBiasTable) -> str:
    """``table.bias`` computed in the body: the raster positions of :func:`position_bias_table`
    (a ring's slot contents ``p - ((p - s) mod S)``, else every key), then
    :func:`nearby_bias_nodes`. Every input is a constant (a few integers): a graph of ~30
    nodes instead of a ``rows x Nk`` float table in the file."""
    rows, keys = (int(d) for d in table.bias.shape)
    q_pos = b.op("Unsqueeze", [arange(b, rows), b.const([1])])  # (rows, 1)
    keys_row = b.op("Unsqueeze", [arange(b, keys), b.const([0])])  # (1, Nk)
    if attrs.ring_cache:  # slot s of a ring of ``keys`` slots holds p - ((p - s) mod S)
        age = b.op("Mod", [b.op("Sub", [q_pos, keys_row]), b.const(keys)])
        k_pos = b.op("Sub", [q_pos, age])  # (rows, Nk)
    else:
        k_pos = keys_row
    return nearby_bias_nodes(b, attrs, q_pos, k_pos)


def nearby_bias_nodes(b: BodyBuilder, attrs: Attention3DAttrs, q_pos: str, k_pos: str) -> str:
    """In-graph mirror of :func:`nearby_mask_np` as an additive float32 bias: ``q_pos (R, 1)``
    and ``k_pos (R|1, Nk)`` int64 raster positions (``< 0``: empty slot) -> ``0`` where the
    query attends the key, ``-inf`` elsewhere, ``(R, Nk)``. Integer ``Div`` truncates and
    ``Mod`` takes the divisor's sign, which equal NumPy's ``//`` and ``%`` here: ``Div`` only
    sees non-negative values."""
    tq, hq, wq = attrs.q_grid
    tk, hk, wk = attrs.k_grid
    et, eh, ew = effective_extents(attrs)
    ring = bool(attrs.ring_cache)
    t = b.op("Div", [q_pos, b.const(hq * wq)])
    h = b.op("Mod", [b.op("Div", [q_pos, b.const(wq)]), b.const(hq)])
    w = b.op("Mod", [q_pos, b.const(wq)])
    ct = (
        t
        if ring
        else b.op(
            "Min", [b.op("Div", [b.op("Mul", [t, b.const(tk)]), b.const(tq)]), b.const(tk - 1)]
        )
    )
    ch = b.op("Div", [b.op("Mul", [h, b.const(hk)]), b.const(hq)])
    cw = b.op("Div", [b.op("Mul", [w, b.const(wk)]), b.const(wq)])
    zero = b.const(0)
    kp = b.op("Max", [k_pos, zero])
    keys = (
        b.op("Div", [kp, b.const(hk * wk)]),
        b.op("Mod", [b.op("Div", [kp, b.const(wk)]), b.const(hk)]),
        b.op("Mod", [kp, b.const(wk)]),
    )
    mask = b.op("GreaterOrEqual", [k_pos, zero])
    for centre, key, radius in zip((ct, ch, cw), keys, (et, eh, ew), strict=True):
        if radius >= 0:
            near = b.op("LessOrEqual", [b.op("Abs", [b.op("Sub", [key, centre])]), b.const(radius)])
            mask = b.op("And", [mask, near])
    if attrs.causal:
        mask = b.op("And", [mask, b.op("LessOrEqual", [k_pos, q_pos])])
    # (R|1, Nk) where k_pos is one row for every query: broadcast the mask to (R, Nk)
    mask = b.op("And", [mask, b.op("GreaterOrEqual", [q_pos, zero])])
    return b.op("Where", [mask, b.const(np.float32(0.0)), b.const(np.float32(-np.inf))])


@dataclass(frozen=True)
class GridBiasTable:
    """Additive mask of a whole-grid 3DNA call: ``bias[i, j]`` is ``0`` where query ``i`` of
    ``q_grid`` attends key ``j`` of ``k_grid`` and ``-inf`` elsewhere."""

    bias: np.ndarray  # (Nq, Nk) float32
    has_empty_row: bool  # a query with no key: the body must turn NaN into 0


@functools.lru_cache(maxsize=64)
def grid_bias_table(attrs: Attention3DAttrs) -> GridBiasTable | None:
    """The mask of a whole-grid call (no ``q_positions``), or ``None`` where the gather body is
    used instead: full attention (no mask), a ring cache (decode only), or more than
    :data:`MAX_GRID_TABLE_ENTRIES` entries. Cached (read-only result), like
    :func:`position_bias_table`."""
    if attrs.ring_cache or is_full_attention(attrs):
        return None
    nq, nk = int(np.prod(attrs.q_grid)), int(np.prod(attrs.k_grid))
    if nq * nk > MAX_GRID_TABLE_ENTRIES:
        return None
    k_pos = np.broadcast_to(np.arange(nk), (nq, nk))
    mask = nearby_mask_np(attrs, np.arange(nq), k_pos)
    return GridBiasTable(_additive_bias(mask), _has_empty_row(mask))


def bias_table_model(attrs: Attention3DAttrs, key_count: int | None, opset: int) -> onnx.ModelProto:
    """A graph with no inputs whose output ``bias`` is the mask table the body of these
    attributes computes (position table of a positioned call with ``key_count`` keys, else the
    whole-grid table); for checking the in-graph computation against the NumPy tables
    (:func:`position_bias_table`, :func:`grid_bias_table`). Raises ``ValueError`` where the call
    takes no table body."""
    b = BodyBuilder()
    if key_count is not None:
        table = position_bias_table(attrs, key_count)
        if table is None:
            raise ValueError(f"no position table for {attrs} with {key_count} keys")
        out = position_bias_nodes(b, attrs, table)
    else:
        grid = grid_bias_table(attrs)
        if grid is None:
            raise ValueError(f"no grid table for {attrs}")
        nq, nk = (int(d) for d in grid.bias.shape)
        q_pos = b.op("Unsqueeze", [arange(b, nq), b.const([1])])
        out = nearby_bias_nodes(b, attrs, q_pos, b.op("Unsqueeze", [arange(b, nk), b.const([0])]))
    b.nodes.append(helper.make_node("Identity", [out], ["bias"]))
    graph = helper.make_graph(
        b.nodes, "bias_table", [], [helper.make_tensor_value_info("bias", TensorProto.FLOAT, None)]
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
