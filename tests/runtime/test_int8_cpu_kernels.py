"""The CPU INT8 kernel choice (nuwa.runtime.backends.onnxruntime.int8_cpu_kernels): ONNX
Runtime's 8-bit MatMulNBits against its NumPy reference, and the Q/DQ -> MatMulNBits rewrite of
graphs written by the project's own Q/DQ inserter, checked against that reference layer by
layer."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from nuwa.calibration.qdq import (
    INT8_MAX,
    REDUCED_WEIGHT_MAX,
    activation_scale,
    find_targets,
    insert_qdq,
    quantize_bias,
    quantize_weight,
)
from nuwa.export.matmul_nbits import (
    NBitsWeights,
    block_size_for,
    matmul_nbits_model,
    matmul_nbits_reference,
    nbits_weights,
    rewrite_to_matmul_nbits,
)
from nuwa.runtime.backends.onnxruntime import int8_cpu_kernels as kernels
from nuwa.runtime.backends.onnxruntime.int8_cpu_kernels import (
    matmul_nbits_available,
    resolve_int8_kernels,
)
from nuwa.runtime.cpu_features import int8_products_saturate

ORT_VERSION = tuple(int(p) for p in ort.__version__.split(".")[:2])


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, ["CPUExecutionProvider"])


def _scale(x: np.ndarray, layer: NBitsWeights) -> float:
    """The size of one output's terms: what the tolerances are relative to."""
    return float(np.abs(x).max() * np.abs(layer.dequantized()).max() * layer.k)


def test_the_8_bit_kernel_is_there_where_the_runtime_would_use_it() -> None:
    # 8-bit MatMulNBits on the CPU came with ONNX Runtime 1.22; CI installs a newer one. On x86
    # CPUs without VNNI the runtime keeps the Q/DQ kernels whatever the probe says.
    if ORT_VERSION < (1, 22):
        assert not matmul_nbits_available()
    elif not int8_products_saturate():
        assert matmul_nbits_available()
        assert resolve_int8_kernels("auto") == "matmulnbits"
    else:
        assert resolve_int8_kernels("auto") == "qdq"


def _kernel_checked_here() -> bool:
    """Whether this CPU runs the 8-bit kernel right (the probe); where it does not, the runtime
    must not choose it, which is what the tests then check instead."""
    if matmul_nbits_available():
        return True
    assert resolve_int8_kernels("auto") == "qdq"
    return False


@pytest.mark.parametrize(("k", "block"), [(16, 16), (48, 16), (96, 32), (256, 256), (1024, 256)])
def test_block_size_is_the_largest_power_of_two_dividing_k(k: int, block: int) -> None:
    assert block_size_for(k) == block
    assert block_size_for(8) is None and block_size_for(40) is None  # no block of >= 16 divides


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 4),
    k=st.sampled_from([16, 48, 64, 256, 1024]),
    n=st.integers(1, 70),
    with_bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_onnxruntime_matmul_nbits_equals_its_numpy_reference(
    rows: int, k: int, n: int, with_bias: bool, seed: int
) -> None:
    if not _kernel_checked_here():
        return
    rng = np.random.default_rng(seed)
    w = rng.integers(-INT8_MAX, INT8_MAX + 1, (n, k)).astype(np.int8)
    scales = (rng.random(n) * 0.02 + 1e-3).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32) if with_bias else None
    block = block_size_for(k)
    assert block is not None
    layer = nbits_weights(w, scales, bias, block)
    np.testing.assert_array_equal(layer.dequantized(), w * scales[:, None])  # the same weights
    x = (rng.standard_normal((rows, k)) * rng.uniform(0.1, 10)).astype(np.float32)
    x[0, : block // 2] = 0  # a block half zero, and (k = block) a row's scale from the rest
    y = _session(matmul_nbits_model(layer)).run(None, {"x": x})[0]
    ref = matmul_nbits_reference(x, layer)
    scale = _scale(x, layer)
    assert np.abs(y - ref).max() <= 1e-6 * scale  # measured: ~1e-7 (float rounding only)
    exact = x @ layer.dequantized().T + (0 if bias is None else bias)
    assert np.abs(y - exact).max() <= 1.0 / INT8_MAX * scale  # what per-block int8 x can cost


def _qdq_linear_graph(rng: np.random.Generator) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """x (B, 64) -> Gemm(transB) W2 (48, 64) + b2 -> Relu -> MatMul W3 (48, 40) -> y; and
    t (B, 3, 32) -> MatMul W1 (32, 24) -> u (a 3-D activation); img -> Conv (left as Q/DQ)."""
    w = {
        "w1": rng.standard_normal((32, 24)).astype(np.float32),
        "w2": rng.standard_normal((48, 64)).astype(np.float32),
        "b2": rng.standard_normal(48).astype(np.float32),
        "w3": rng.standard_normal((48, 40)).astype(np.float32),
        "wc": rng.standard_normal((3, 2, 3, 3)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Gemm", ["x", "w2", "b2"], ["h"], name="/fc2/Gemm", transB=1),
        helper.make_node("Relu", ["h"], ["r"], name="/relu"),
        helper.make_node("MatMul", ["r", "w3"], ["y"], name="/head/MatMul"),
        helper.make_node("MatMul", ["t", "w1"], ["u"], name="/fc1/MatMul"),
        helper.make_node("Conv", ["img", "wc"], ["z"], name="/conv/Conv", pads=[1, 1, 1, 1]),
    ]
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        nodes,
        "g",
        [
            vi("x", TensorProto.FLOAT, ["batch", 64]),
            vi("t", TensorProto.FLOAT, ["batch", 3, 32]),
            vi("img", TensorProto.FLOAT, ["batch", 2, 5, 5]),
        ],
        [
            vi("y", TensorProto.FLOAT, ["batch", 40]),
            vi("u", TensorProto.FLOAT, ["batch", 3, 24]),
            vi("z", TensorProto.FLOAT, ["batch", 3, 5, 5]),
        ],
        [numpy_helper.from_array(a, n) for n, a in w.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), w


@pytest.mark.parametrize("int32_bias", [False, True], ids=["float-bias", "int32-bias"])
@pytest.mark.parametrize("qmax", [INT8_MAX, REDUCED_WEIGHT_MAX])
def test_rewritten_qdq_layers_compute_the_reference_on_the_same_int8_weights(
    qmax: int, int32_bias: bool
) -> None:
    if not _kernel_checked_here():
        return
    rng = np.random.default_rng(qmax + int32_bias)
    model, w = _qdq_linear_graph(rng)
    x = rng.standard_normal((3, 64)).astype(np.float32)
    t = rng.standard_normal((3, 3, 32)).astype(np.float32)
    img = rng.standard_normal((3, 2, 5, 5)).astype(np.float32)
    r_float = np.maximum(x @ w["w2"].T + w["b2"], 0)
    amax = {"x": 4.0, "r": float(np.abs(r_float).max()), "t": 4.0, "img": 2.0}
    q = insert_qdq(model, find_targets(model), amax, qmax, int32_bias=int32_bias)
    qdq_out = _session(q).run(["z"], {"x": x, "t": t, "img": img})[0]

    assert rewrite_to_matmul_nbits(q) == 3  # the Conv stays Q/DQ
    onnx.checker.check_model(q, full_check=True)
    ops = [n.op_type for n in q.graph.node]
    assert ops.count("MatMulNBits") == 3 and "Gemm" not in ops and "MatMul" not in ops
    assert ops.count("QuantizeLinear") == 1  # only the Conv's activation keeps its pair
    y, u, z = _session(q).run(["y", "u", "z"], {"x": x, "t": t, "img": img})

    q2, s2 = quantize_weight(w["w2"], 0, qmax)
    bias = w["b2"]
    if int32_bias:  # the bias the Q/DQ graph holds: int32 at activation x weight scale
        bq, bs = quantize_bias(bias, float(activation_scale(amax["x"])), s2)
        bias = (bq.astype(np.float64) * bs).astype(np.float32)
    fc2 = nbits_weights(q2, s2, bias, 64)  # blocks: the largest power of two dividing K
    q3, s3 = quantize_weight(w["w3"], 1, qmax)
    head = nbits_weights(q3.T, s3, None, 16)
    q1, s1 = quantize_weight(w["w1"], 1, qmax)
    fc1 = nbits_weights(q1.T, s1, None, 32)
    r = np.maximum(matmul_nbits_reference(x, fc2), 0)
    for got, ref, layer, inp in (
        (y, matmul_nbits_reference(r, head), head, r),
        (u, matmul_nbits_reference(t, fc1), fc1, t),
    ):
        assert np.abs(got - ref).max() <= 1e-5 * _scale(inp, layer)
    np.testing.assert_array_equal(z, qdq_out)  # the Conv is untouched


def test_a_graph_without_qdq_weight_layers_is_left_alone() -> None:
    model, _ = _qdq_linear_graph(np.random.default_rng(0))
    before = model.SerializeToString()
    assert rewrite_to_matmul_nbits(model) == 0
    assert model.SerializeToString() == before


def test_auto_takes_matmulnbits_only_where_int8_products_do_not_saturate(monkeypatch) -> None:
    assert resolve_int8_kernels("qdq") == "qdq"
    with pytest.raises(ValueError, match="int8 kernels must be one of"):
        resolve_int8_kernels("fast")
    monkeypatch.setattr(kernels, "int8_products_saturate", lambda: True)
    assert resolve_int8_kernels("auto") == "qdq"
    with pytest.raises(ValueError, match="VNNI"):
        resolve_int8_kernels("matmulnbits")
    monkeypatch.setattr(kernels, "int8_products_saturate", lambda: False)
    monkeypatch.setattr(kernels, "matmul_nbits_available", lambda: True)
    assert resolve_int8_kernels("auto") == "matmulnbits"
    monkeypatch.setattr(kernels, "matmul_nbits_available", lambda: False)
    assert resolve_int8_kernels("auto") == "qdq"
    with pytest.raises(ValueError, match="1.22"):
        resolve_int8_kernels("matmulnbits")
