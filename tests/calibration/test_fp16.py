"""FP16 conversion: FP32 islands stay FP32, I/O stays FP32, graphs stay valid and close."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from nuwa.calibration.fp16 import FP32_OPS, convert_to_fp16, float16_fraction, topological_sort
from nuwa.calibration.onnx_runner import session_options

RNG = np.random.default_rng(1)


def _graph() -> onnx.ModelProto:
    """x -> MatMul -> LayerNormalization -> MatMul -> Softmax -> y."""
    w1 = RNG.standard_normal((16, 16)).astype(np.float32) * 0.3
    w2 = RNG.standard_normal((16, 10)).astype(np.float32) * 0.3
    gamma, beta = np.ones(16, np.float32), np.zeros(16, np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
        helper.make_node("LayerNormalization", ["h", "g", "b"], ["n"], name="ln", axis=-1),
        helper.make_node("MatMul", ["n", "w2"], ["s"], name="mm2"),
        helper.make_node("Softmax", ["s"], ["y"], name="sm", axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
        [
            numpy_helper.from_array(a, n)
            for a, n in ((w1, "w1"), (w2, "w2"), (gamma, "g"), (beta, "b"))
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _input_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    types.update({v.name: v.type.tensor_type.elem_type for v in inferred.graph.input})
    types.update({i.name: i.data_type for i in inferred.graph.initializer})
    return types


def test_islands_stay_fp32_and_io_stays_fp32() -> None:
    model = _graph()
    half = convert_to_fp16(model)
    onnx.checker.check_model(half, full_check=True)
    types = _input_types(half)
    by_name = {n.name: n for n in half.graph.node}
    assert types[by_name["ln"].input[0]] == TensorProto.FLOAT
    assert types[by_name["sm"].input[0]] == TensorProto.FLOAT
    assert types[by_name["mm1"].input[1]] == TensorProto.FLOAT16  # weights are fp16
    assert half.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert half.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert float16_fraction(half) > 0.9
    assert {"LayerNormalization", "Softmax", "NearbyAttention3D"} <= set(FP32_OPS)

    x = RNG.standard_normal((4, 16)).astype(np.float32)
    so = session_options(1)
    ref = ort.InferenceSession(model.SerializeToString(), so, ["CPUExecutionProvider"])
    got = ort.InferenceSession(half.SerializeToString(), so, ["CPUExecutionProvider"])
    np.testing.assert_allclose(got.run(None, {"x": x})[0], ref.run(None, {"x": x})[0], atol=2e-3)


def test_topological_sort_orders_appended_nodes() -> None:
    model = _graph()
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(reversed(nodes))
    topological_sort(model.graph)
    assert [n.name for n in model.graph.node] == ["mm1", "ln", "mm2", "sm"]
    onnx.checker.check_model(model)
