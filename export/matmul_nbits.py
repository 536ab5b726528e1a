"""``com.microsoft::MatMulNBits`` (8 bits) forms of a Q/DQ graph's weight layers (DESIGN §8):
the rewrite, and the plain NumPy statement of what a rewritten layer computes.

A ``nuwa quantize --precision int8`` graph writes every weight layer as ``QuantizeLinear ->
DequantizeLinear`` on the activation, ``DequantizeLinear`` on an int8 per-output-channel weight,
and a ``MatMul``/``Gemm``. :func:`rewrite_to_matmul_nbits` turns each into one ``MatMulNBits``
node with ``bits=8`` and ``accuracy_level=4`` holding **the same int8 weights and per-channel
scales** (stored as ``w + 128`` with the default zero point 128, the channel's scale repeated over
the K blocks) and the bias as float; the kernel quantizes the activation itself per row and
block of ``block_size`` values with a run-time scale (:func:`matmul_nbits_reference`).
``nuwa quantize`` writes the rewritten graphs as the export's prepared ``cpu-matmulnbits`` forms
(:mod:`nuwa.export.prepared_graphs`); the ONNX Runtime backend chooses whether to run them
(:mod:`nuwa.runtime.backends.onnxruntime.int8_cpu_kernels`). ONNX and NumPy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MS_DOMAIN = "com.microsoft"
MAX_BLOCK = 256  # activation block along K: one scale per 256 values (measured fastest at K 256)
MIN_BLOCK = 16  # MatMulNBits' smallest block
ZERO_POINT = 128  # MatMulNBits' default 8-bit zero point: stored codes are w + 128


def block_size_for(k: int) -> int | None:
    """The largest power of two <= ``MAX_BLOCK`` dividing ``k`` (``None`` below ``MIN_BLOCK``)."""
    block = MAX_BLOCK
    while block >= MIN_BLOCK:
        if k % block == 0:
            return block
        block //= 2
    return None


@dataclass(frozen=True)
class NBitsWeights:
    """A weight layer in ``MatMulNBits`` form: ``codes`` (N, K/block, block) uint8, ``scales``
    (N * K/block,) float32, ``bias`` (N,) float32 or ``None``."""

    codes: np.ndarray
    scales: np.ndarray
    bias: np.ndarray | None
    block: int

    @property
    def n(self) -> int:
        return int(self.codes.shape[0])

    @property
    def k(self) -> int:
        return int(self.codes.shape[1] * self.codes.shape[2])

    def dequantized(self) -> np.ndarray:
        """The float weight (N, K) these codes and scales stand for."""
        q = self.codes.astype(np.float32) - ZERO_POINT
        s = self.scales.reshape(self.n, -1, 1)
        return (q * s).reshape(self.n, self.k)


def nbits_weights(
    w_int8_nk: np.ndarray, channel_scales: np.ndarray, bias: np.ndarray | None, block: int
) -> NBitsWeights:
    """Int8 weights ``(N, K)`` with one scale per output channel -> ``MatMulNBits`` inputs."""
    n, k = w_int8_nk.shape
    codes = (w_int8_nk.astype(np.int16) + ZERO_POINT).astype(np.uint8).reshape(n, k // block, block)
    scales = np.broadcast_to(np.asarray(channel_scales, np.float32).reshape(-1, 1), (n, k // block))
    b = None if bias is None else np.asarray(bias, np.float32).reshape(n)
    return NBitsWeights(codes, np.ascontiguousarray(scales).reshape(-1), b, block)


def matmul_nbits_reference(x: np.ndarray, layer: NBitsWeights) -> np.ndarray:
    """What ``MatMulNBits(bits=8, accuracy_level=4)`` computes, in plain NumPy: each row of ``x``
    (..., K) quantized per block of ``layer.block`` values with a symmetric int8 scale
    ``max|x_block| / 127``, integer products with the codes minus 128, rescaled, plus bias."""
    lead, k = x.shape[:-1], x.shape[-1]
    rows = x.reshape(-1, k // layer.block, layer.block).astype(np.float64)
    amax = np.abs(rows).max(axis=-1, keepdims=True)
    a_scale = np.where(amax > 0, amax / 127.0, 1.0)
    xq = np.clip(np.round(rows / a_scale), -127, 127)  # (M, kb, block)
    wq = layer.codes.astype(np.float64) - ZERO_POINT  # (N, kb, block)
    dots = np.einsum("mbk,nbk->mnb", xq, wq)  # exact integer sums
    w_scale = layer.scales.reshape(layer.n, -1).astype(np.float64)  # (N, kb)
    y = (dots * a_scale[..., 0][:, None, :] * w_scale[None]).sum(-1)
    if layer.bias is not None:
        y = y + layer.bias
    return y.astype(np.float32).reshape(*lead, layer.n)


# ---- finding the Q/DQ weight layers --------------------------------------------------------


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _zero(inits: dict[str, onnx.TensorProto], name: str | None) -> bool:
    """An absent or all-zero zero-point initializer."""
    if not name:
        return True
    t = inits.get(name)
    return t is not None and not numpy_helper.to_array(t).any()


@dataclass(frozen=True)
class _Layer:
    node: onnx.NodeProto  # the MatMul / Gemm
    quantize: onnx.NodeProto  # QuantizeLinear of the activation
    weights: NBitsWeights


def _find_layer(
    node: onnx.NodeProto,
    producer: dict[str, onnx.NodeProto],
    inits: dict[str, onnx.TensorProto],
) -> _Layer | None:
    """``node`` as a symmetric Q/DQ weight layer with a per-channel int8 weight, or ``None``."""
    if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2:
        return None
    a_dq, w_dq = producer.get(node.input[0]), producer.get(node.input[1])
    if a_dq is None or w_dq is None:
        return None
    if a_dq.op_type != "DequantizeLinear" or w_dq.op_type != "DequantizeLinear":
        return None
    q = producer.get(a_dq.input[0])
    if q is None or q.op_type != "QuantizeLinear":
        return None
    w_init, w_scale = inits.get(w_dq.input[0]), inits.get(w_dq.input[1])
    if w_init is None or w_scale is None or w_init.data_type != TensorProto.INT8:
        return None
    if not (_zero(inits, _opt(w_dq, 2)) and _zero(inits, _opt(a_dq, 2))):
        return None
    w = numpy_helper.to_array(w_init)
    scale = numpy_helper.to_array(w_scale).astype(np.float32)
    if w.ndim != 2:
        return None
    attrs = _attrs(node)
    axis = int(_attrs(w_dq).get("axis", 1))  # DequantizeLinear's default axis is 1
    bias: np.ndarray | None = None
    if node.op_type == "Gemm":
        if (
            attrs.get("transA", 0)
            or attrs.get("alpha", 1.0) != 1.0
            or attrs.get("beta", 1.0) != 1.0
        ):
            return None
        trans_b = bool(attrs.get("transB", 0))
        if len(node.input) > 2 and node.input[2]:
            bias = _bias(node.input[2], producer, inits)
            if bias is None:
                return None
    else:
        trans_b = False
    w_nk = w if trans_b else w.T
    channel_axis = 0 if trans_b else 1  # the weight's output-channel axis as stored
    n, k = w_nk.shape
    if scale.size == 1:
        scale = np.full(n, float(scale.reshape(-1)[0]), np.float32)
    elif scale.size != n or axis % 2 != channel_axis:
        return None
    block = block_size_for(k)
    if block is None:
        return None
    return _Layer(node, q, nbits_weights(w_nk, scale, bias, block))


def _opt(node: onnx.NodeProto, i: int) -> str | None:
    return node.input[i] if len(node.input) > i and node.input[i] else None


def _bias(
    name: str, producer: dict[str, onnx.NodeProto], inits: dict[str, onnx.TensorProto]
) -> np.ndarray | None:
    """A Gemm bias as float: a float initializer, or an int32 one behind a DequantizeLinear
    (``None``: anything else)."""
    if name in inits:
        return numpy_helper.to_array(inits[name]).astype(np.float32)
    dq = producer.get(name)
    if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
        return None
    if dq.input[1] not in inits or not _zero(inits, _opt(dq, 2)):
        return None
    q = numpy_helper.to_array(inits[dq.input[0]]).astype(np.float64)
    s = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float64)
    return (q * s).astype(np.float32)


# ---- the rewrite ---------------------------------------------------------------------------


def rewrite_to_matmul_nbits(model: onnx.ModelProto) -> int:
    """Replace, in place, every Q/DQ weight layer of ``model``'s main graph by a
    ``MatMulNBits`` node of the same name (+ ``/MatMulNBits``) reading the float activation;
    the Q/DQ nodes left without consumers go. Function bodies (3DNA) are not touched. Returns
    how many layers were rewritten."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    layers = [x for x in (_find_layer(n, producer, inits) for n in graph.node) if x is not None]
    if not layers:
        return 0
    replaced: dict[int, onnx.NodeProto] = {}
    new_inits: list[onnx.TensorProto] = []
    for layer in layers:
        stem = (layer.node.name or layer.node.output[0]).strip("/").replace("/", "_")
        w = layer.weights
        inputs = [layer.quantize.input[0], f"{stem}_nbits_codes", f"{stem}_nbits_scales"]
        new_inits += [
            numpy_helper.from_array(w.codes, inputs[1]),
            numpy_helper.from_array(w.scales, inputs[2]),
        ]
        if w.bias is not None:
            inputs += ["", "", f"{stem}_nbits_bias"]  # zero_points, g_idx absent
            new_inits.append(numpy_helper.from_array(w.bias, inputs[-1]))
        replaced[id(layer.node)] = helper.make_node(
            "MatMulNBits",
            inputs,
            list(layer.node.output),
            name=f"{layer.node.name}/MatMulNBits",
            domain=MS_DOMAIN,
            K=w.k,
            N=w.n,
            bits=8,
            block_size=w.block,
            accuracy_level=4,
        )
    nodes = [replaced.get(id(n), n) for n in graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(new_inits)
    _drop_dead(graph)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return len(layers)


def _drop_dead(graph: onnx.GraphProto) -> None:
    """Remove nodes whose outputs nothing reads (the old Q/DQ chains), then unused initializers."""
    outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in graph.node for i in n.input} | outputs
        keep = [n for n in graph.node if any(o in used for o in n.output)]
        if len(keep) == len(graph.node):
            break
        del graph.node[:]
        graph.node.extend(keep)
    used = {i for n in graph.node for i in n.input} | outputs
    live = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(live)


def matmul_nbits_model(layer: NBitsWeights) -> onnx.ModelProto:
    """A one-node model ``y = MatMulNBits(x)`` of ``layer`` (bits 8, accuracy level 4) with
    ``x`` of shape (rows, K)."""
    inputs = ["x", "codes", "scales"]
    inits = [
        numpy_helper.from_array(layer.codes, "codes"),
        numpy_helper.from_array(layer.scales, "scales"),
    ]
    if layer.bias is not None:
        inputs += ["", "", "bias"]  # zero_points, g_idx absent
        inits.append(numpy_helper.from_array(layer.bias, "bias"))
    node = helper.make_node(
        "MatMulNBits", inputs, ["y"], domain=MS_DOMAIN,
        K=layer.k, N=layer.n, bits=8, block_size=layer.block, accuracy_level=4,
    )  # fmt: skip
    graph = helper.make_graph(
        [node],
        "matmul_nbits",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", layer.k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", layer.n])],
        inits,
    )
    ops = [helper.make_opsetid("", 18), helper.make_opsetid(MS_DOMAIN, 1)]
    model = helper.make_model(graph, opset_imports=ops)
    model.ir_version = 9
    return model
