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
- whole-grid calls (no ``q_positions``: encoders, prefill; the grid's ``Nq x Nk`` mask up to
  ``MAX_GRID_TABLE_ENTRIES``): dense attention plus the leading ``Nq`` rows (and, causal, ``Nk``
  columns: a prefill of the first frames) of the constant mask of the whole grids
  (:func:`grid_bias_table`). The gather body materialises every query's candidate keys and
  values, ``B*nh*Nq*M*hd`` each (~360 MB per batch row for the demo's 8-frame sketch encoder,
  ``M = 7*7*7``; ~7.7 GB for the paper preset's 10-frame 21x21 one); the dense scores are
  ``B*nh*Nq*Nk`` (8 MB and 1.6 GB per row there);
- everything else (grids of more than 32 Mi mask entries, e.g. 16x32x32): the gather body
  below.

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

import json

import numpy as np
import onnx
from onnx import FunctionProto, TensorProto, helper

from nuwa.export.attention_masks import (
    GridBiasTable,
    PositionBiasTable,
    effective_extents,
    grid_bias_table,
    is_full_attention,
    nearby_bias_nodes,
    position_bias_nodes,
    position_bias_table,
)
from nuwa.export.attention_node import (
    ATTRIBUTE_NAMES,
    DOMAIN,
    OP_TYPE,
    Attention3DAttrs,
    is_attention_node,
    overload_name,
)
from nuwa.export.onnx_body import BodyBuilder, arange


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
    b = BodyBuilder()
    inputs = ["q", "k", "v"] + (["q_positions"] if with_positions else [])
    if is_full_attention(attrs):
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


def _table_body(b: BodyBuilder, attrs: Attention3DAttrs, table: PositionBiasTable) -> None:
    """Decode-type body: dense attention over every key (a ring cache's 256 slots for the demo)
    plus the query's row of the mask table — about ten nodes instead of the gather body's
    seventy, with the same result (tests compare both with the oracle). The table is computed
    in the body from its shape (:func:`position_bias_nodes`), a constant subgraph runtimes
    fold once at load."""
    pos = b.op("Cast", ["q_positions"], to=TensorProto.INT64)  # (B, Nq)
    base = b.const(table.base)  # row(p) = min(p, base + (p - base) mod period)
    cycled = b.op("Mod", [b.op("Sub", [pos, base]), b.const(table.period)])  # Mod: >= 0
    row = b.op("Min", [pos, b.op("Add", [cycled, base])])
    bias = b.op("CastLike", [position_bias_nodes(b, attrs, table), "q"])
    bias = b.op("Gather", [bias, row], axis=0)
    bias = b.op("Unsqueeze", [bias, b.const([1])])  # (B, 1, Nq, Nk)
    _dense_masked_attention(b, attrs.scale, bias, table.has_empty_row)


def _uses_grid_table(attrs: Attention3DAttrs, with_positions: bool) -> bool:
    return not with_positions and grid_bias_table(attrs) is not None


def _grid_table_body(b: BodyBuilder, attrs: Attention3DAttrs, table: GridBiasTable) -> None:
    """Whole-grid body: dense attention plus the grid mask's leading ``Nq`` rows — the queries
    are the grid's first ``Nq`` positions, as in the gather body's ``Range`` — and, for a causal
    call (a prefill of the first frames), its leading ``Nk`` columns. A non-causal call keeps
    every column, so a ``k`` that is not the whole key grid fails on the shapes instead of
    being silently masked. The mask is computed in the body from the grids
    (:func:`nearby_bias_nodes`), a constant subgraph runtimes fold once at load."""
    nq_grid, nk_grid = (int(d) for d in table.bias.shape)
    q_pos = b.op("Unsqueeze", [arange(b, nq_grid), b.const([1])])  # (Nq_grid, 1)
    k_pos = b.op("Unsqueeze", [arange(b, nk_grid), b.const([0])])  # (1, Nk_grid)
    bias = b.op("CastLike", [nearby_bias_nodes(b, attrs, q_pos, k_pos), "q"])
    nq = b.op("Shape", ["q"], start=2, end=3)
    if attrs.causal:
        ends = b.op("Concat", [nq, b.op("Shape", ["k"], start=2, end=3)], axis=0)
        bias = b.op("Slice", [bias, b.const([0, 0]), ends, b.const([0, 1])])
    else:
        bias = b.op("Slice", [bias, b.const([0]), nq, b.const([0])])
    _dense_masked_attention(b, attrs.scale, bias, table.has_empty_row)


def _dense_masked_attention(
    b: BodyBuilder, scale: float, bias: str | None, has_empty_row: bool
) -> None:
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
        and not is_full_attention(attrs)
        and position_bias_table(attrs, key_count) is not None
    )


def _full_attention_body(b: BodyBuilder, scale: float) -> None:
    """``softmax(q kᵀ · scale) v`` with two MatMuls (q_positions, if given, are not needed)."""
    _dense_masked_attention(b, scale, None, False)


def _make_function(
    b: BodyBuilder,
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
