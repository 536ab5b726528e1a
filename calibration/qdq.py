"""INT8 explicit quantization: QuantizeLinear/DequantizeLinear pairs around the weight layers
(DESIGN §8).

What gets quantized: every top-level ``MatMul``, ``Gemm`` and ``Conv`` whose weight is an
initializer — the linear projections, FFNs and the logits head of the transformer graphs, the
convolutions of the VQ decoder. Everything else stays float: layer norms, GELU, residual adds,
embeddings and the whole ``nuwa::NearbyAttention3D`` node (its Q·K, softmax and P·V live in the
node's local function body, or in the TensorRT plugin, and are never touched: only
``graph.node`` is rewritten, never ``model.functions``). So ORT's function inlining is not
needed and the file keeps its 3DNA node for TensorRT.

The scheme is the one TensorRT's explicit quantization accepts and ONNX Runtime runs:

- weights: int8, **per output channel**, symmetric: ``scale_c = max|W_c| / 127``, values in
  [-127, 127], zero point 0; stored as int8 initializers behind a ``DequantizeLinear`` with
  ``axis`` on the output channel (MatMul ``(K, N)``: axis 1; Gemm: 0 with ``transB=1``, else 1;
  Conv ``(O, I, kh, kw)``: axis 0);
- activations: int8, **per tensor**, symmetric: ``scale = amax / 127`` from calibration, zero
  point 0; a dedicated ``QuantizeLinear -> DequantizeLinear`` pair per consumer (ONNX Runtime's
  CPU fusion into ``MatMulIntegerToFloat`` skips a Q shared by several DQs: measured);
- a ``Gemm``'s bias (``alpha = beta = 1``, no ``transA``; the 2-D linear layers of the decode
  step) never stays a float input of the Gemm: ONNX Runtime's CPU fuses a Q/DQ ``Gemm`` into
  ``QGemm`` only without a bias or with an int32 one, and runs one with a float bias as a float
  Gemm behind a run-time ``DequantizeLinear`` of its weight (measured 7x slower than FP32; a
  ``MatMul`` + ``Add`` is merged back into that Gemm by its ``MatMulAddFusion``). So with
  ``int32_bias`` (ONNX Runtime targets) it becomes int32 at scale activation scale x weight
  scale behind a ``DequantizeLinear``; otherwise (TensorRT, which folds it and would not take an
  int32 bias) it moves to a float ``Add`` after the Gemm. Other biases stay float.

:func:`quantize_weight` is the plain NumPy reference the tests check the graph against.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nuwa.export.weights import materialize_weights, with_plain_weights
from nuwa.runtime.cpu_features import SATURATION_FREE_WEIGHT_MAX

QUANTIZABLE_OPS = ("MatMul", "Gemm", "Conv")
INT8_MAX = 127  # symmetric narrow range [-127, 127]
# x86 CPUs without VNNI multiply u8 x s8 pairs into saturating int16 (pmaddubsw): with full-range
# weights ONNX Runtime's MatMulIntegerToFloat saturates (we measured 20% logit error on AVX2).
# 7-bit weights ("reduce range", as onnxruntime.quantization's reduce_range) cannot saturate;
# the runtime refuses full-range exports on such CPUs (nuwa.runtime.cpu_features).
REDUCED_WEIGHT_MAX = SATURATION_FREE_WEIGHT_MAX


@dataclass(frozen=True)
class QuantTarget:
    """One weight layer to quantize."""

    node: str  # node name (path-like, e.g. /decoder_layers.0/ffn/fc1/MatMul)
    op_type: str
    activation: str  # the float input tensor that gets Q/DQ
    weight: str  # the initializer that becomes int8
    axis: int  # output-channel axis of the weight


def _weight_axis(node: onnx.NodeProto, weight: np.ndarray) -> int | None:
    if node.op_type == "MatMul":
        return 1 if weight.ndim == 2 else None
    if node.op_type == "Gemm":
        if not _plain_gemm(node):
            return None
        return 0 if _attr(node, "transB", 0) == 1 else 1
    if node.op_type == "Conv":
        return 0
    return None


def _attr(node: onnx.NodeProto, name: str, default: float) -> float:
    for a in node.attribute:
        if a.name == name:
            return float(a.f if a.type == onnx.AttributeProto.FLOAT else a.i)
    return default


def _plain_gemm(node: onnx.NodeProto) -> bool:
    """A Gemm that is ``A @ op(B) + C`` (alpha = beta = 1, A not transposed)."""
    return (
        _attr(node, "alpha", 1.0) == 1.0
        and _attr(node, "beta", 1.0) == 1.0
        and _attr(node, "transA", 0) == 0
    )


def find_targets(
    model: onnx.ModelProto, exclude: Callable[[onnx.NodeProto], bool] | None = None
) -> list[QuantTarget]:
    """The weight layers of ``model``'s main graph to quantize, in graph order. Weights an
    export stores behind constant ``Cast``/``Transpose`` nodes (:mod:`nuwa.export.weights`)
    count as the plain initializers they fold to."""
    model = with_plain_weights(model)
    inits = {i.name: i for i in model.graph.initializer}
    targets = []
    for node in model.graph.node:
        if node.op_type not in QUANTIZABLE_OPS or len(node.input) < 2:
            continue
        if exclude is not None and exclude(node):
            continue
        act, w_name = node.input[0], node.input[1]
        if w_name not in inits or act in inits:
            continue
        weight = numpy_helper.to_array(inits[w_name])
        if weight.dtype != np.float32:
            continue
        axis = _weight_axis(node, weight)
        if axis is None:
            continue
        targets.append(QuantTarget(node.name, node.op_type, act, w_name, axis))
    return targets


def quantize_weight(
    weight: np.ndarray, axis: int, qmax: int = INT8_MAX
) -> tuple[np.ndarray, np.ndarray]:
    """Reference per-channel symmetric int8: ``(q int8 same shape, scale float32 (C,))`` with
    values in ``[-qmax, qmax]``."""
    w = np.asarray(weight, dtype=np.float32)
    moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    amax = np.abs(moved).max(axis=1)
    scale = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / scale.reshape(shape)), -qmax, qmax).astype(np.int8)
    return q, scale


def quantize_bias(
    bias: np.ndarray, act_scale: float, weight_scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Reference int32 bias of a quantized layer: ``(q int32 (N,), scale float32 (N,))`` with
    ``scale = act_scale * weight_scale`` (the product's own scale, zero point 0)."""
    scale = (np.float32(act_scale) * np.asarray(weight_scale, np.float32)).astype(np.float32)
    q = np.round(np.asarray(bias, np.float64) / scale).clip(-(2**31) + 1, 2**31 - 1)
    return q.astype(np.int32), scale


def activation_scale(amax: float) -> np.float32:
    """Symmetric per-tensor scale for an observed max |x| (a dead tensor gets scale 1)."""
    return np.float32(amax / INT8_MAX if amax > 0 else 1.0)


def _safe(name: str) -> str:
    return name.strip("/").replace("/", "_").replace(":", "_").replace(".", "_")


def insert_qdq(
    model: onnx.ModelProto,
    targets: list[QuantTarget],
    amax: dict[str, float],
    weight_qmax: int = INT8_MAX,
    int32_bias: bool = False,
) -> onnx.ModelProto:
    """Return a copy of ``model`` with Q/DQ inserted for ``targets``; ``amax`` maps each
    target's activation tensor to its calibrated max |x|; weights use ``[-weight_qmax,
    weight_qmax]`` (127, or :data:`REDUCED_WEIGHT_MAX` for x86 CPUs without VNNI).
    ``int32_bias`` (ONNX Runtime targets only): a Gemm's bias becomes int32 at scale
    ``activation scale x weight scale`` behind a ``DequantizeLinear``, which ONNX Runtime's
    ``QGemm`` takes in (one Add less per layer); otherwise it moves to a float ``Add``."""
    if not 1 <= weight_qmax <= INT8_MAX:
        raise ValueError(f"weight_qmax must be in 1..{INT8_MAX}, got {weight_qmax}")
    missing = sorted({t.activation for t in targets} - set(amax))
    if missing:
        raise ValueError(f"no calibration range for activations {missing[:5]}")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    materialize_weights(out)  # the export's stored forms -> plain float32 initializers
    graph = out.graph
    inits = {i.name: i for i in graph.initializer}
    by_node = {t.node: t for t in targets}
    consumers: dict[str, int] = defaultdict(int)
    new_inits: list[TensorProto] = []
    nodes: list[onnx.NodeProto] = []
    weights_done: dict[tuple[str, int], str] = {}
    weight_scales: dict[tuple[str, int], np.ndarray] = {}

    for node in graph.node:
        target = by_node.get(node.name)
        if target is None:
            nodes.append(node)
            continue
        # ---- activation: a dedicated Q -> DQ pair per consumer -----------------------------
        act = target.activation
        consumers[act] += 1
        pair = f"{_safe(act)}_{consumers[act]}"
        # own scale/zero-point initializers per pair, else ORT's common-subexpression
        # elimination merges the Q nodes back into one shared Q and the fusion is lost
        scale_name, zp_name = f"{pair}_act_scale", f"{pair}_act_zp"
        new_inits.append(numpy_helper.from_array(activation_scale(amax[act]), scale_name))
        new_inits.append(numpy_helper.from_array(np.int8(0), zp_name))
        nodes.append(
            helper.make_node(
                "QuantizeLinear",
                [act, scale_name, zp_name],
                [f"{pair}_q"],
                name=f"{pair}_QuantizeLinear",
            )
        )
        nodes.append(
            helper.make_node(
                "DequantizeLinear",
                [f"{pair}_q", scale_name, zp_name],
                [f"{pair}_dq"],
                name=f"{pair}_DequantizeLinear",
            )
        )
        dq_act = f"{pair}_dq"
        # ---- weight: int8 per channel behind a DQ ------------------------------------------
        key = (target.weight, target.axis)
        if key not in weights_done:
            base = _safe(target.weight)
            q, w_scale = quantize_weight(
                numpy_helper.to_array(inits[target.weight]), target.axis, weight_qmax
            )
            new_inits += [
                numpy_helper.from_array(q, f"{base}_int8"),
                numpy_helper.from_array(w_scale, f"{base}_w_scale"),
                numpy_helper.from_array(np.zeros_like(w_scale, dtype=np.int8), f"{base}_w_zp"),
            ]
            dq_w = f"{base}_dq"
            nodes.append(
                helper.make_node(
                    "DequantizeLinear",
                    [f"{base}_int8", f"{base}_w_scale", f"{base}_w_zp"],
                    [dq_w],
                    name=f"{base}_DequantizeLinear",
                    axis=target.axis,
                )
            )
            weights_done[key] = dq_w
            weight_scales[key] = w_scale
        node.input[0] = dq_act
        node.input[1] = weights_done[key]
        has_bias = node.op_type == "Gemm" and len(node.input) > 2 and bool(node.input[2])
        after: list[onnx.NodeProto] = []
        if has_bias and int32_bias:
            bias_q, bias_scale = quantize_bias(
                numpy_helper.to_array(inits[node.input[2]]),
                float(activation_scale(amax[act])),
                weight_scales[key],
            )
            base = f"{pair}_{_safe(node.input[2])}"
            new_inits += [
                numpy_helper.from_array(bias_q, f"{base}_int32"),
                numpy_helper.from_array(bias_scale, f"{base}_b_scale"),
                numpy_helper.from_array(np.zeros_like(bias_q), f"{base}_b_zp"),
            ]
            nodes.append(
                helper.make_node(
                    "DequantizeLinear",
                    [f"{base}_int32", f"{base}_b_scale", f"{base}_b_zp"],
                    [f"{base}_dq"],
                    name=f"{base}_DequantizeLinear",
                    axis=0,
                )
            )
            node.input[2] = f"{base}_dq"
        elif has_bias:  # the bias moves to an Add after the Gemm
            bias, out_name = node.input[2], node.output[0]
            del node.input[2]
            node.output[0] = f"{out_name}_no_bias"
            after.append(
                helper.make_node("Add", [node.output[0], bias], [out_name], name=f"{node.name}_Add")
            )
        nodes.append(node)
        nodes.extend(after)

    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept + new_inits)
    return out


def qdq_zero_points(model: onnx.ModelProto) -> list[tuple[str, np.ndarray]]:
    """Every Q/DQ node's zero point (name, values): for the symmetric check."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zp = inits.get(node.input[2]) if len(node.input) > 2 else None
            out.append((node.name, zp if zp is not None else np.zeros(1, np.int8)))
    return out
