"""INT8 Q/DQ insertion on small hand-built graphs, checked against a NumPy fake-quant reference."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from nuwa.calibration.onnx_runner import session_options
from nuwa.calibration.qdq import (
    INT8_MAX,
    REDUCED_WEIGHT_MAX,
    activation_scale,
    find_targets,
    insert_qdq,
    qdq_zero_points,
    quantize_bias,
    quantize_weight,
)

RNG = np.random.default_rng(0)


def _linear_graph() -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """x (B, 8) -> MatMul W1 (8, 6) -> Relu -> Gemm(transB) W2 (4, 6) + b -> y; and a Conv."""
    w1 = RNG.standard_normal((8, 6)).astype(np.float32)
    w2 = RNG.standard_normal((4, 6)).astype(np.float32)
    b2 = RNG.standard_normal(4).astype(np.float32)
    wc = RNG.standard_normal((3, 2, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="/fc1/MatMul"),
        helper.make_node("Relu", ["h"], ["r"], name="/relu"),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], name="/fc2/Gemm", transB=1),
        helper.make_node("Conv", ["img", "wc"], ["z"], name="/conv/Conv", pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8]),
            helper.make_tensor_value_info("img", TensorProto.FLOAT, ["batch", 2, 5, 5]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 3, 5, 5]),
        ],
        [
            numpy_helper.from_array(a, n)
            for a, n in ((w1, "w1"), (w2, "w2"), (b2, "b2"), (wc, "wc"))
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    return model, {"w1": w1, "w2": w2, "b2": b2, "wc": wc}


def _fake_quant(x: np.ndarray, amax: float) -> np.ndarray:
    s = activation_scale(amax)
    return np.clip(np.round(x / s), -128, 127) * s


def _conv(img: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Plain NumPy 3x3 conv, stride 1, padding 1."""
    b, _, h, wd = img.shape
    pad = np.pad(img, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((b, w.shape[0], h, wd), np.float64)
    for i in range(h):
        for j in range(wd):
            out[:, :, i, j] = np.einsum("bchw,ochw->bo", pad[:, :, i : i + 3, j : j + 3], w)
    return out


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("qmax", [INT8_MAX, REDUCED_WEIGHT_MAX])
def test_quantize_weight_is_symmetric_per_channel(axis: int, qmax: int) -> None:
    w = RNG.standard_normal((16, 12)).astype(np.float32) * RNG.uniform(0.01, 3, 12)
    q, scale = quantize_weight(w, axis, qmax)
    assert q.dtype == np.int8 and scale.shape == (w.shape[axis],)
    assert np.abs(q).max() <= qmax
    # every channel uses its full range, and dequantization is within half a step
    assert (np.abs(np.moveaxis(q, axis, 0)).reshape(w.shape[axis], -1).max(axis=1) == qmax).all()
    shape = [1, 1]
    shape[axis] = -1
    assert np.all(np.abs(q * scale.reshape(shape) - w) <= scale.reshape(shape) / 2 + 1e-7)


def test_find_targets_axes_and_exclusion() -> None:
    model, _ = _linear_graph()
    targets = {t.node: t for t in find_targets(model)}
    assert targets["/fc1/MatMul"].axis == 1  # (K, N): output columns
    assert targets["/fc2/Gemm"].axis == 0  # transB: (N, K)
    assert targets["/conv/Conv"].axis == 0
    kept = find_targets(model, exclude=lambda n: n.op_type == "Conv")
    assert [t.node for t in kept] == ["/fc1/MatMul", "/fc2/Gemm"]


@pytest.mark.parametrize("int32_bias", [False, True], ids=["float-bias", "int32-bias"])
@pytest.mark.parametrize("qmax", [INT8_MAX, REDUCED_WEIGHT_MAX])
def test_qdq_graph_matches_numpy_fake_quant(qmax: int, int32_bias: bool) -> None:
    model, w = _linear_graph()
    targets = find_targets(model)
    x = RNG.standard_normal((3, 8)).astype(np.float32)
    img = RNG.standard_normal((3, 2, 5, 5)).astype(np.float32)
    h = x @ w["w1"]
    r = np.maximum(h, 0)
    amax = {"x": float(np.abs(x).max()), "r": float(np.abs(r).max()), "img": 2.0}
    q = insert_qdq(model, targets, amax, qmax, int32_bias=int32_bias)
    onnx.checker.check_model(q, full_check=True)

    q1, s1 = quantize_weight(w["w1"], 1, qmax)
    q2, s2 = quantize_weight(w["w2"], 0, qmax)
    qc, sc = quantize_weight(w["wc"], 0, qmax)
    r_ref = np.maximum(_fake_quant(x, amax["x"]) @ (q1 * s1[None, :]), 0)
    bias = w["b2"]
    if int32_bias:  # int32 at the product's scale (activation scale x weight scale)
        bq, bs = quantize_bias(bias, amax["r"] / INT8_MAX, s2)
        assert bq.dtype == np.int32
        bias = bq * bs
    y_ref = _fake_quant(r_ref, amax["r"]) @ (q2 * s2[:, None]).T + bias
    z_ref = _conv(_fake_quant(img, amax["img"]), qc * sc[:, None, None, None])

    # basic optimizations: Q/DQ executed as written (exact fake quantization)
    sess = ort.InferenceSession(
        q.SerializeToString(), session_options(1, simulate_qdq=True), ["CPUExecutionProvider"]
    )
    y, z = sess.run(["y", "z"], {"x": x, "img": img})
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(z, z_ref, rtol=1e-4, atol=1e-4)


def test_zero_points_are_zero_and_pairs_are_dedicated() -> None:
    model, _ = _linear_graph()
    q = insert_qdq(model, find_targets(model), {"x": 1.0, "r": 1.0, "img": 1.0})
    zps = qdq_zero_points(q)
    assert zps and all(z.dtype == np.int8 and not np.any(z) for _, z in zps)
    quants = [n for n in q.graph.node if n.op_type == "QuantizeLinear"]
    dequants = [n for n in q.graph.node if n.op_type == "DequantizeLinear"]
    assert len(quants) == 3  # one activation pair per consumer
    assert len(dequants) == 6  # + one per weight
    weights = {i.name: i for i in q.graph.initializer}
    assert "w1" not in weights and weights["w1_int8"].data_type == TensorProto.INT8


def test_missing_range_is_an_error() -> None:
    model, _ = _linear_graph()
    with pytest.raises(ValueError, match="no calibration range"):
        insert_qdq(model, find_targets(model), {"x": 1.0})
    with pytest.raises(ValueError, match="weight_qmax"):
        insert_qdq(model, find_targets(model), {"x": 1.0, "r": 1.0, "img": 1.0}, 200)


def test_quantized_layers_fuse_into_onnxruntime_integer_kernels() -> None:
    """A Q/DQ Gemm with its bias in a separate Add becomes ONNX Runtime's QGemm (with the float
    bias inside, it would stay a float Gemm behind a per-run weight DequantizeLinear)."""
    model, _ = _linear_graph()
    q = insert_qdq(model, find_targets(model), {"x": 1.0, "r": 1.0, "img": 1.0})
    (gemm,) = [n for n in q.graph.node if n.op_type == "Gemm"]
    assert len(gemm.input) == 2 and "Add" in [n.op_type for n in q.graph.node]
    opts = session_options(1)
    path = Path(tempfile.mkdtemp()) / "optimized.onnx"
    opts.optimized_model_filepath = str(path)
    ort.InferenceSession(q.SerializeToString(), opts, ["CPUExecutionProvider"])
    fused = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "QGemm" in fused and "Gemm" not in fused, fused
