"""3DNA as an ONNX local function: ``nuwa::NearbyAttention3D`` in standard ONNX ops (DESIGN §4, §6).

The exported graphs carry every 3DNA call as one node ``NearbyAttention3D`` in domain ``nuwa``
with the attributes of :meth:`~nuwa.model.attention3d.NearbyAttentionSpec.onnx_attributes`
(``q_grid``, ``k_grid``, ``extents``, ``causal``, ``ring_cache``, ``scale``, ``num_heads``). The
node's meaning is the gather implementation of ``model/attention3d.py``:

- inputs ``q (B, nh, Nq, hd)``, ``k``/``v (B, nh, Nk, hd)`` and an optional 4th input
  ``q_positions`` int32 ``(B, Nq)``: raster index of each query in ``q_grid`` (absent: 0..Nq-1);
- ``ring_cache=1`` (decode self-attention): k/v are a ring cache of ``S = Nk`` slots already
  holding the current token; slot ``s`` holds raster position ``p - ((p - s) mod S)``
  (:func:`~nuwa.model.attention3d.nearby_attention_decode_gather`);
- output ``(B, nh, Nq, hd)``.

How the body is shared: ONNX local functions may be attribute-parameterised, but the neighbour
table's *shape* (``M`` candidates per query) depends on the attribute values, and a body that
switches on attribute values needs control flow no runtime likes. So each distinct attribute set
(and whether ``q_positions`` is given) gets its own :class:`onnx.FunctionProto` named
``NearbyAttention3D`` in domain ``nuwa`` with a distinct ``overload`` (IR version >= 10): the node
names the overload and still carries every attribute, which the function declares (and ignores:
the values are baked into the body). ``onnx.checker`` (full check) and ONNX Runtime resolve
``(domain, name, overload)``; this was verified with onnx 1.23 / onnxruntime 1.32.

Three bodies compute the same function (tests compare each with the dense oracle; full attention,
as for text, is two MatMuls):

- decode-type calls (``q_positions`` given, ``k``'s key/slot count static in the graph, the
  table small enough): dense attention over every key plus the query's row of a constant
  additive mask table (:class:`PositionBiasTable`): about ten nodes. A decode step makes one
  3DNA call per layer with one query against a 256-slot ring (demo), where this costs less than
  gathering the ~200 candidates;
- whole-grid calls (no ``q_positions``: encoders, prefill; the grid's ``Nq x Nk`` mask small
  enough): dense attention plus the leading ``Nq`` rows (and, causal, ``Nk`` columns: a prefill
  of the first frames) of the constant mask of the whole grids (:func:`grid_bias_table`). The
  gather body materialises every query's candidate keys and values, ``B*nh*Nq*M*hd`` each
  (~360 MB per batch row for the demo's 8-frame sketch encoder, ``M = 7*7*7``); the dense
  scores are ``B*nh*Nq*Nk`` (8 MB per row there);
- everything else (the paper preset's 16x32x32 grids, whose masks would not fit): the gather
  body below.

The mask tables are not stored in the file: the table bodies compute them from a few integers
(``Range``, integer ``Div``/``Mod``, comparisons, ``Where`` -> 0 / -inf: :func:`nearby_mask_np`
in graph form, :func:`_nearby_bias_nodes`), a constant subgraph that ONNX Runtime folds once
when it creates the session (the tables were 13 MB of the demo export's files). The NumPy tables
(:func:`position_bias_table`, :func:`grid_bias_table`) decide which body a call gets and are the
reference the in-graph tables are tested equal to (:func:`bias_table_model`).

The gather body computes the neighbour table in-graph from the query positions (``Range`` for
whole-grid calls, the ``q_positions`` input otherwise) with integer ``Div``/``Mod``: candidates
along each axis around the query's centre, validity (inside the grid, causal, inside the ring's
reach), then gather, mask with ``-inf``, ``Softmax``, NaN -> 0 (a query with no key), weighted
sum. For whole-grid calls every input of the table is a constant, so runtimes fold it once at
load.
Floating constants go through ``CastLike`` so an FP16 graph stays FP16.

This module needs only ``onnx`` (no torch): the runtime and the tests can build functions alone.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import FunctionProto, NodeProto, TensorProto, helper, numpy_helper

DOMAIN = "nuwa"
OP_TYPE = "NearbyAttention3D"
DOMAIN_VERSION = 1
ATTRIBUTE_NAMES = ("q_grid", "k_grid", "extents", "causal", "ring_cache", "scale", "num_heads")
# TensorRT: the ONNX parser's fallback plugin importer binds an unknown node to the plugin whose
# creator is registered under the node's op_type (the node's domain is not looked at), with
# version = the string attribute ``plugin_version`` (default "1") and namespace = the string
# attribute ``plugin_namespace`` (default ""); each field the plugin creator declares is then read
# from the node attribute of the same name. The parser (<= 10.14) first inlines a local function
# whose name matches the op_type, so the tensorrt target drops the function bodies.
PLUGIN_NAMESPACE = "nuwa"
PLUGIN_VERSION = "1"
# ONNX Runtime's TensorRT execution provider offers every creator in TensorRT's plugin registry
# as a custom op of this domain (variadic I/O); a node must be in it to pass ONNX Runtime's graph
# checks, and the EP's ONNX parser then binds the plugin by op_type + plugin_namespace/version.
ORT_TRT_PLUGIN_DOMAIN = "trt.plugins"


@dataclass(frozen=True)
class Attention3DAttrs:
    """The node's attributes as plain data (mirror of ``NearbyAttentionSpec.onnx_attributes``)."""

    q_grid: tuple[int, int, int]
    k_grid: tuple[int, int, int]
    extents: tuple[int, int, int]
    causal: int
    ring_cache: int
    scale: float
    num_heads: int

    @classmethod
    def from_dict(cls, attrs: dict[str, object]) -> Attention3DAttrs:
        missing = [n for n in ATTRIBUTE_NAMES if n not in attrs]
        if missing:
            raise ValueError(f"NearbyAttention3D attributes miss {missing}")
        return cls(
            q_grid=tuple(int(x) for x in attrs["q_grid"]),  # type: ignore[arg-type, union-attr]
            k_grid=tuple(int(x) for x in attrs["k_grid"]),  # type: ignore[arg-type, union-attr]
            extents=tuple(int(x) for x in attrs["extents"]),  # type: ignore[arg-type, union-attr]
            causal=int(attrs["causal"]),  # type: ignore[call-overload]
            ring_cache=int(attrs["ring_cache"]),  # type: ignore[call-overload]
            scale=float(attrs["scale"]),  # type: ignore[arg-type]
            num_heads=int(attrs["num_heads"]),  # type: ignore[call-overload]
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "q_grid": list(self.q_grid),
            "k_grid": list(self.k_grid),
            "extents": list(self.extents),
            "causal": self.causal,
            "ring_cache": self.ring_cache,
            "scale": self.scale,
            "num_heads": self.num_heads,
        }

    @classmethod
    def from_node(cls, node: NodeProto) -> Attention3DAttrs:
        return cls.from_dict({a.name: helper.get_attribute_value(a) for a in node.attribute})


def overload_name(
    attrs: Attention3DAttrs,
    with_positions: bool,
    key_count: int | None = None,
    grid_table: bool = False,
) -> str:
    """A readable, unique overload tag per (attribute set, q_positions given, position-table
    body for ``key_count`` keys, grid-table body)."""
    g = "x".join
    digest = hashlib.sha256(
        json.dumps(
            [attrs.as_dict(), with_positions, key_count, grid_table], sort_keys=True
        ).encode()
    ).hexdigest()[:8]
    table = f"_n{key_count}" if key_count is not None else ("_g" if grid_table else "")
    return (
        f"q{g(map(str, attrs.q_grid))}_k{g(map(str, attrs.k_grid))}"
        f"_e{g(str(e).replace('-', 'm') for e in attrs.extents)}"
        f"_c{attrs.causal}_r{attrs.ring_cache}_p{int(with_positions)}{table}_{digest}"
    )


class _Body:
    """Accumulates the body's nodes with unique output names."""

    def __init__(self) -> None:
        self.nodes: list[NodeProto] = []
        self._n = 0

    def op(self, op_type: str, inputs: Sequence[str], **attrs: object) -> str:
        self._n += 1
        out = f"{op_type.lower()}_{self._n}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def const(self, value: np.ndarray | int | float | Sequence[int]) -> str:
        arr = np.asarray(value)
        if arr.dtype.kind in "iu":
            arr = arr.astype(np.int64)
        elif arr.dtype.kind == "f":
            arr = arr.astype(np.float32)
        self._n += 1
        out = f"const_{self._n}"
        self.nodes.append(
            helper.make_node("Constant", [], [out], value=numpy_helper.from_array(arr, out))
        )
        return out


def _axis_offsets(
    radius: int, size: int, causal_time: bool, unbounded: bool
) -> tuple[np.ndarray, bool]:
    """Candidate offsets along one axis (as ``_axis_candidates``); returns (values, absolute):
    absolute means the values are key coordinates (whole axis), else offsets from the centre."""
    if radius < 0:
        return np.arange(size), True
    r = radius if unbounded else min(radius, size - 1)
    return np.arange(-r, 1 if causal_time else r + 1), False


def build_function(
    attrs: Attention3DAttrs,
    with_positions: bool,
    opset: int,
    key_count: int | None = None,
    table_bodies: bool = True,
) -> FunctionProto:
    """The ``nuwa::NearbyAttention3D`` overload for one attribute set (see module docstring).
    ``key_count``: ``k``'s static key/slot count where the graph knows it (enables the
    position-table body of decode-type calls). ``table_bodies=False``: the gather body even
    where a mask table would fit (tests compare the bodies)."""
    tq, hq, wq = attrs.q_grid
    tk, hk, wk = attrs.k_grid
    et, eh, ew = effective_extents(attrs)
    ring, causal = bool(attrs.ring_cache), bool(attrs.causal)
    b = _Body()
    inputs = ["q", "k", "v"] + (["q_positions"] if with_positions else [])
    if _is_full_attention(attrs):
        _full_attention_body(b, attrs.scale)
        return _make_function(b, attrs, with_positions, inputs, opset)
    if table_bodies and _uses_table(attrs, with_positions, key_count):
        _table_body(b, attrs, position_bias_table(attrs, key_count))  # type: ignore[arg-type]
        return _make_function(b, attrs, with_positions, inputs, opset, key_count)
    if table_bodies and _uses_grid_table(attrs, with_positions):
        _grid_table_body(b, attrs, grid_bias_table(attrs))  # type: ignore[arg-type]
        return _make_function(b, attrs, with_positions, inputs, opset, grid_table=True)

    # ---- query positions (B|1, Nq) int64 ---------------------------------------------------
    if with_positions:
        pos = b.op("Cast", ["q_positions"], to=TensorProto.INT64)
    else:
        nq = b.op("Shape", ["q"], start=2, end=3)  # (1,)
        nq_scalar = b.op("Squeeze", [nq, b.const([0])])
        rng = b.op("Range", [b.const(0), nq_scalar, b.const(1)])
        pos = b.op("Unsqueeze", [rng, b.const([0])])  # (1, Nq)

    # ---- centres in the key grid (as _centres) ---------------------------------------------
    t = b.op("Div", [pos, b.const(hq * wq)])
    h = b.op("Mod", [b.op("Div", [pos, b.const(wq)]), b.const(hq)])
    w = b.op("Mod", [pos, b.const(wq)])
    if ring:  # the key grid slides with the query
        ct = t
    else:
        ct = b.op(
            "Min", [b.op("Div", [b.op("Mul", [t, b.const(tk)]), b.const(tq)]), b.const(tk - 1)]
        )
    ch = b.op("Div", [b.op("Mul", [h, b.const(hk)]), b.const(hq)])
    cw = b.op("Div", [b.op("Mul", [w, b.const(wk)]), b.const(wq)])

    # ---- candidates per axis, broadcast to (B|1, Nq, ma, mb, mc) ----------------------------
    zero5 = b.op("Unsqueeze", [b.op("Mul", [pos, b.const(0)]), b.const([2, 3, 4])])
    axes: list[str] = []
    for centre, radius, size, causal_time, unbounded, shape in (
        (ct, et, tk, causal, ring, (-1, 1, 1)),
        (ch, eh, hk, False, False, (1, -1, 1)),
        (cw, ew, wk, False, False, (1, 1, -1)),
    ):
        values, absolute = _axis_offsets(radius, size, causal_time, unbounded)
        cand = b.const(values.reshape(shape))  # (ma|1, mb|1, mc|1)
        if not absolute:
            cand = b.op("Add", [b.op("Unsqueeze", [centre, b.const([2, 3, 4])]), cand])
        axes.append(b.op("Add", [cand, zero5]))
    a, bb, c = axes
    zero = b.const(0)
    valid = b.op("GreaterOrEqual", [a, zero])
    for cond in (
        b.op("GreaterOrEqual", [bb, zero]),
        b.op("Less", [bb, b.const(hk)]),
        b.op("GreaterOrEqual", [c, zero]),
        b.op("Less", [c, b.const(wk)]),
    ):
        valid = b.op("And", [valid, cond])
    if not ring:  # a ring cache slides: its time axis has no last frame
        valid = b.op("And", [valid, b.op("Less", [a, b.const(tk)])])
    index = b.op(
        "Add", [b.op("Mul", [b.op("Add", [b.op("Mul", [a, b.const(hk)]), bb]), b.const(wk)]), c]
    )
    flat3 = b.const([0, 0, -1])
    index = b.op("Reshape", [index, flat3])  # (B|1, Nq, M)
    valid = b.op("Reshape", [valid, flat3])
    pos3 = b.op("Unsqueeze", [pos, b.const([2])])  # (B|1, Nq, 1)
    if causal:
        valid = b.op("And", [valid, b.op("LessOrEqual", [index, pos3])])
    if ring:  # keys older than the ring's reach are overwritten; raster -> slot
        slots = b.op("Shape", ["k"], start=2, end=3)
        valid = b.op("And", [valid, b.op("Greater", [index, b.op("Sub", [pos3, slots])])])
        index = b.op("Mod", [index, slots])
    index = b.op("Where", [valid, index, zero])

    # ---- gather K/V: (B, nh, Nq, M, hd) ------------------------------------------------------
    m_dim = b.op("Shape", [index], start=2, end=3)
    sel_shape = b.op(
        "Concat",
        [b.op("Shape", ["k"], start=0, end=2), b.const([-1]), m_dim, b.op("Shape", ["k"], start=3)],
        axis=0,
    )
    if with_positions:  # per-row table: GatherElements on the key axis
        idx = b.op("Unsqueeze", [b.op("Reshape", [index, b.const([0, -1])]), b.const([1, 3])])
        gather_shape = b.op(
            "Concat",
            [
                b.op("Shape", ["k"], start=0, end=2),
                b.op("Shape", [idx], start=2, end=3),
                b.op("Shape", ["k"], start=3),
            ],
            axis=0,
        )
        idx = b.op("Expand", [idx, gather_shape])  # (B, nh, Nq*M, hd)
        k_sel = b.op("GatherElements", ["k", idx], axis=2)
        v_sel = b.op("GatherElements", ["v", idx], axis=2)
    else:  # one table for every row
        idx = b.op("Reshape", [index, b.const([-1])])
        k_sel = b.op("Gather", ["k", idx], axis=2)
        v_sel = b.op("Gather", ["v", idx], axis=2)
    k_sel = b.op("Reshape", [k_sel, sel_shape])
    v_sel = b.op("Reshape", [v_sel, sel_shape])

    # ---- masked softmax over the candidates ---------------------------------------------------
    q5 = b.op("Unsqueeze", ["q", b.const([-2])])  # (B, nh, Nq, 1, hd)
    scores = b.op("ReduceSum", [b.op("Mul", [q5, k_sel]), b.const([-1])], keepdims=0)
    scores = b.op("Mul", [scores, b.op("CastLike", [b.const(np.float32(attrs.scale)), "q"])])
    valid4 = b.op("Unsqueeze", [valid, b.const([1])])  # (B|1, 1, Nq, M)
    neg_inf = b.op("CastLike", [b.const(np.float32(-np.inf)), "q"])
    scores = b.op("Where", [valid4, scores, neg_inf])
    probs = b.op("Softmax", [scores], axis=-1)
    fzero = b.op("CastLike", [b.const(np.float32(0.0)), "q"])
    probs = b.op("Where", [b.op("IsNaN", [probs]), fzero, probs])
    weighted = b.op("Mul", [b.op("Unsqueeze", [probs, b.const([-1])]), v_sel])
    out = b.op("ReduceSum", [weighted, b.const([-2])], keepdims=0)
    b.nodes.append(helper.make_node("Identity", [out], ["out"]))
    return _make_function(b, attrs, with_positions, inputs, opset)


# Largest position-indexed mask table (rows x keys) a decode-type body bakes in: 1 Mi entries
# (4 MiB as float32). The demo's ring (512 x 256) and sketch cross-attention (576 x 512) fit; the
# paper preset's 4096-slot ring does not, and there gathering ~200 candidates beats 4096 keys.
MAX_TABLE_ENTRIES = 1 << 20


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
    et = attrs.extents[0]
    return (tk if et < 0 else min(et + 1, tk)) * hk * wk


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


def _table_body(b: _Body, attrs: Attention3DAttrs, table: PositionBiasTable) -> None:
    """Decode-type body: dense attention over every key (a ring cache's 256 slots for the demo)
    plus the query's row of the mask table — about ten nodes instead of the gather body's
    seventy, with the same result (tests compare both with the oracle). The table is computed
    in the body from its shape (:func:`_position_bias_nodes`), a constant subgraph runtimes
    fold once at load."""
    pos = b.op("Cast", ["q_positions"], to=TensorProto.INT64)  # (B, Nq)
    base = b.const(table.base)  # row(p) = min(p, base + (p - base) mod period)
    cycled = b.op("Mod", [b.op("Sub", [pos, base]), b.const(table.period)])  # Mod: >= 0
    row = b.op("Min", [pos, b.op("Add", [cycled, base])])
    bias = b.op("CastLike", [_position_bias_nodes(b, attrs, table), "q"])
    bias = b.op("Gather", [bias, row], axis=0)
    bias = b.op("Unsqueeze", [bias, b.const([1])])  # (B, 1, Nq, Nk)
    _dense_masked_attention(b, attrs.scale, bias, table.has_empty_row)


def _position_bias_nodes(b: _Body, attrs: Attention3DAttrs, table: PositionBiasTable) -> str:
    """``table.bias`` computed in the body: the raster positions of :func:`position_bias_table`
    (a ring's slot contents ``p - ((p - s) mod S)``, else every key), then
    :func:`_nearby_bias_nodes`. Every input is a constant (a few integers): a graph of ~30
    nodes instead of a ``rows x Nk`` float table in the file."""
    rows, keys = (int(d) for d in table.bias.shape)
    q_pos = b.op("Unsqueeze", [_arange(b, rows), b.const([1])])  # (rows, 1)
    keys_row = b.op("Unsqueeze", [_arange(b, keys), b.const([0])])  # (1, Nk)
    if attrs.ring_cache:  # slot s of a ring of ``keys`` slots holds p - ((p - s) mod S)
        age = b.op("Mod", [b.op("Sub", [q_pos, keys_row]), b.const(keys)])
        k_pos = b.op("Sub", [q_pos, age])  # (rows, Nk)
    else:
        k_pos = keys_row
    return _nearby_bias_nodes(b, attrs, q_pos, k_pos)


def _arange(b: _Body, n: int) -> str:
    """``0 .. n-1`` (int64) as a ``Range`` of constants."""
    return b.op("Range", [b.const(0), b.const(n), b.const(1)])


def _nearby_bias_nodes(b: _Body, attrs: Attention3DAttrs, q_pos: str, k_pos: str) -> str:
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
    :data:`MAX_TABLE_ENTRIES` entries. Cached (read-only result), like
    :func:`position_bias_table`."""
    if attrs.ring_cache or _is_full_attention(attrs):
        return None
    nq, nk = int(np.prod(attrs.q_grid)), int(np.prod(attrs.k_grid))
    if nq * nk > MAX_TABLE_ENTRIES:
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
    b = _Body()
    if key_count is not None:
        table = position_bias_table(attrs, key_count)
        if table is None:
            raise ValueError(f"no position table for {attrs} with {key_count} keys")
        out = _position_bias_nodes(b, attrs, table)
    else:
        grid = grid_bias_table(attrs)
        if grid is None:
            raise ValueError(f"no grid table for {attrs}")
        nq, nk = (int(d) for d in grid.bias.shape)
        q_pos = b.op("Unsqueeze", [_arange(b, nq), b.const([1])])
        out = _nearby_bias_nodes(b, attrs, q_pos, b.op("Unsqueeze", [_arange(b, nk), b.const([0])]))
    b.nodes.append(helper.make_node("Identity", [out], ["bias"]))
    graph = helper.make_graph(
        b.nodes, "bias_table", [], [helper.make_tensor_value_info("bias", TensorProto.FLOAT, None)]
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _uses_grid_table(attrs: Attention3DAttrs, with_positions: bool) -> bool:
    return not with_positions and grid_bias_table(attrs) is not None


def _grid_table_body(b: _Body, attrs: Attention3DAttrs, table: GridBiasTable) -> None:
    """Whole-grid body: dense attention plus the grid mask's leading ``Nq`` rows — the queries
    are the grid's first ``Nq`` positions, as in the gather body's ``Range`` — and, for a causal
    call (a prefill of the first frames), its leading ``Nk`` columns. A non-causal call keeps
    every column, so a ``k`` that is not the whole key grid fails on the shapes instead of
    being silently masked. The mask is computed in the body from the grids
    (:func:`_nearby_bias_nodes`), a constant subgraph runtimes fold once at load."""
    nq_grid, nk_grid = (int(d) for d in table.bias.shape)
    q_pos = b.op("Unsqueeze", [_arange(b, nq_grid), b.const([1])])  # (Nq_grid, 1)
    k_pos = b.op("Unsqueeze", [_arange(b, nk_grid), b.const([0])])  # (1, Nk_grid)
    bias = b.op("CastLike", [_nearby_bias_nodes(b, attrs, q_pos, k_pos), "q"])
    nq = b.op("Shape", ["q"], start=2, end=3)
    if attrs.causal:
        ends = b.op("Concat", [nq, b.op("Shape", ["k"], start=2, end=3)], axis=0)
        bias = b.op("Slice", [bias, b.const([0, 0]), ends, b.const([0, 1])])
    else:
        bias = b.op("Slice", [bias, b.const([0]), nq, b.const([0])])
    _dense_masked_attention(b, attrs.scale, bias, table.has_empty_row)


def _dense_masked_attention(b: _Body, scale: float, bias: str | None, has_empty_row: bool) -> None:
    """``softmax(q kᵀ · scale + bias) v`` (no bias: full attention); a row that is all
    ``-inf`` (no key) gives 0."""
    kt = b.op("Transpose", ["k"], perm=[0, 1, 3, 2])
    scores = b.op("MatMul", ["q", kt])
    scores = b.op("Mul", [scores, b.op("CastLike", [b.const(np.float32(scale)), "q"])])
    if bias is not None:
        scores = b.op("Add", [scores, bias])
    probs = b.op("Softmax", [scores], axis=-1)
    if has_empty_row:
        fzero = b.op("CastLike", [b.const(np.float32(0.0)), "q"])
        probs = b.op("Where", [b.op("IsNaN", [probs]), fzero, probs])
    out = b.op("MatMul", [probs, "v"])
    b.nodes.append(helper.make_node("Identity", [out], ["out"]))


def _uses_table(attrs: Attention3DAttrs, with_positions: bool, key_count: int | None) -> bool:
    """Whether the call gets the position-table body (see :class:`PositionBiasTable`)."""
    return (
        with_positions
        and not _is_full_attention(attrs)
        and position_bias_table(attrs, key_count) is not None
    )


def _is_full_attention(attrs: Attention3DAttrs) -> bool:
    """Every query sees every key (text: extents -1 on every axis, not causal): no table."""
    return all(e < 0 for e in attrs.extents) and not attrs.causal and not attrs.ring_cache


def _full_attention_body(b: _Body, scale: float) -> None:
    """``softmax(q kᵀ · scale) v`` with two MatMuls (q_positions, if given, are not needed)."""
    _dense_masked_attention(b, scale, None, False)


def _make_function(
    b: _Body,
    attrs: Attention3DAttrs,
    with_positions: bool,
    inputs: list[str],
    opset: int,
    key_count: int | None = None,
    grid_table: bool = False,
) -> FunctionProto:
    return helper.make_function(
        DOMAIN,
        OP_TYPE,
        inputs,
        ["out"],
        b.nodes,
        [helper.make_opsetid("", opset)],
        attributes=list(ATTRIBUTE_NAMES),
        doc_string=f"3DNA body for {json.dumps(attrs.as_dict())}",
        overload=overload_name(attrs, with_positions, key_count, grid_table),
    )


def is_attention_node(node: NodeProto) -> bool:
    return node.domain == DOMAIN and node.op_type == OP_TYPE


def attach_functions(model: onnx.ModelProto, opset: int, table_bodies: bool = True) -> int:
    """Give every ``NearbyAttention3D`` node of ``model`` its overload and add one function per
    distinct overload. Returns the number of functions added. ``table_bodies=False``: the
    gather body wherever a call is not full attention (tests compare the bodies)."""
    functions: dict[str, FunctionProto] = {}
    key_counts = _static_key_counts(model)
    for node in model.graph.node:
        if not is_attention_node(node):
            continue
        attrs = Attention3DAttrs.from_node(node)
        with_positions = len(node.input) > 3 and bool(node.input[3])
        key_count = key_counts.get(node.input[1])
        if not (table_bodies and _uses_table(attrs, with_positions, key_count)):
            key_count = None  # the grid-table, gather or full-attention body
        grid_table = table_bodies and _uses_grid_table(attrs, with_positions)
        name = overload_name(attrs, with_positions, key_count, grid_table)
        node.overload = name
        if name not in functions:
            functions[name] = build_function(attrs, with_positions, opset, key_count, table_bodies)
    del model.functions[:]
    model.functions.extend(functions.values())
    if model.ir_version < 10:
        model.ir_version = 10  # node/function overloads
    return len(functions)


def _static_key_counts(model: onnx.ModelProto) -> dict[str, int]:
    """Static size of axis 2 (keys / ring slots) of every rank-4 value ONNX shape inference can
    resolve (the 3DNA nodes themselves have no function yet, so inference skips them)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    counts: dict[str, int] = {}
    graph = inferred.graph
    for info in [*graph.input, *graph.value_info, *graph.output]:
        dims = info.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[2].HasField("dim_value"):
            counts[info.name] = int(dims[2].dim_value)
    return counts


def to_tensorrt(model: onnx.ModelProto) -> int:
    """Drop the function bodies and tag every 3DNA node for TensorRT's plugin importer.
    Returns the number of tagged nodes."""
    count = 0
    for node in model.graph.node:
        if not is_attention_node(node):
            continue
        node.overload = ""
        names = {a.name for a in node.attribute}
        for key, value in (
            ("plugin_namespace", PLUGIN_NAMESPACE),
            ("plugin_version", PLUGIN_VERSION),
        ):
            if key not in names:
                node.attribute.append(helper.make_attribute(key, value))
        count += 1
    del model.functions[:]
    return count


def to_ort_tensorrt(model: onnx.ModelProto) -> int:
    """:func:`to_tensorrt` for ONNX Runtime's TensorRT execution provider: the 3DNA nodes also
    move to domain :data:`ORT_TRT_PLUGIN_DOMAIN` (the custom-op domain under which the EP offers
    registered TensorRT plugins), keeping ``plugin_namespace="nuwa"``/``plugin_version="1"`` and
    every attribute, with no function body (the EP's parser would inline it instead of binding
    the plugin). Such a graph runs only where the TensorRT EP takes these nodes: ONNX Runtime
    with a TensorRT EP that lists ``IPluginV3`` creators (``getAllCreators``) and
    ``libnuwa_trt_register.so`` in ``trt_extra_plugin_lib_paths``. Returns the number of nodes."""
    count = to_tensorrt(model)
    for node in model.graph.node:
        if is_attention_node(node):
            node.domain = ORT_TRT_PLUGIN_DOMAIN
    if not any(n.domain == DOMAIN for n in model.graph.node):
        kept = [o for o in model.opset_import if o.domain != DOMAIN]
        del model.opset_import[:]
        model.opset_import.extend(kept)
    if count and not any(o.domain == ORT_TRT_PLUGIN_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(ORT_TRT_PLUGIN_DOMAIN, 1))
    return count
