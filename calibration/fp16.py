"""FP16 graphs with FP32 islands (DESIGN §8).

The conversion is ONNX Runtime's own (``onnxruntime.transformers.float16``): float initializers
and tensors become float16, graph inputs/outputs stay float32 (``keep_io_types``) so the runtime
feeds the same arrays at every precision, and the ops in :data:`FP32_OPS` are blocked — the
converter wraps them in ``Cast`` so they compute in float32:

- ``LayerNormalization`` / ``InstanceNormalization``: mean/variance accumulation;
- ``Softmax`` and the whole ``nuwa::NearbyAttention3D`` node: the 3DNA softmax accumulates in
  FP32 (in a portable graph the node's local function body is never converted; its float
  constants go through ``CastLike`` of the node's inputs, which stay FP32; TensorRT's plugin
  gets FP32 I/O for the same reason);
- the VQ codebook lookup (``ArgMin`` over distances, ``ReduceSum``/``Pow``): an FP16 distance
  would flip codes.

TensorRT >= 11 builds strongly typed networks: these types are exactly what the engine runs.
"""

from __future__ import annotations

import onnx

from nuwa.export.attention_node import OP_TYPE
from nuwa.export.weights import materialize_weights

FP32_OPS: tuple[str, ...] = (
    "LayerNormalization",
    "InstanceNormalization",
    "Softmax",
    OP_TYPE,
    "ArgMin",
    "ReduceSum",
    "Pow",
)


def convert_to_fp16(
    model: onnx.ModelProto, extra_fp32_ops: tuple[str, ...] = ()
) -> onnx.ModelProto:
    """A float16 copy of ``model`` with float32 I/O and FP32 islands (see module docstring).
    Weights an export stores behind constant ``Cast``/``Transpose`` nodes
    (:mod:`nuwa.export.weights`) are folded into plain initializers first."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    materialize_weights(copy)  # weights stored as float16 + Cast: plain float32 first
    block = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(FP32_OPS) | set(extra_fp32_ops))
    out = convert_float_to_float16(
        copy,
        keep_io_types=True,
        op_block_list=block,
        disable_shape_infer=False,
    )
    topological_sort(out.graph)  # the converter appends its Cast nodes at the end
    return out


def topological_sort(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` in place so every node comes after the producers of its inputs
    (stable: keeps the original order where it is already valid)."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        rest = []
        for node in pending:
            if all(i in available for i in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            missing = sorted({i for n in rest for i in n.input} - available)[:5]
            raise ValueError(f"graph {graph.name!r} has a cycle or undefined inputs: {missing}")
        pending = rest
    copies = [onnx.NodeProto() for _ in ordered]
    for dst, src in zip(copies, ordered, strict=True):
        dst.CopyFrom(src)
    del graph.node[:]
    graph.node.extend(copies)


def float16_fraction(model: onnx.ModelProto) -> float:
    """Share of float initializer elements stored as float16 (a quick "was it converted")."""
    total = half = 0
    for init in model.graph.initializer:
        if init.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
            n = 1
            for d in init.dims:
                n *= d
            total += n
            half += n if init.data_type == onnx.TensorProto.FLOAT16 else 0
    return half / total if total else 0.0
