"""bench/decode_floor.py's floor graph: the step's own weight layers cut out (FP32 Gemm/MatMul,
INT8 MatMulNBits or Q/DQ chains), each on an input of its own, computing what the step's layer
computes from the same activation."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from nuwa.export.weights import materialize_weights
from nuwa.spec.manifest import PREPARED_CPU, PREPARED_CPU_MATMULNBITS, load_manifest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def decode_floor():
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("decode_floor", BENCH / "decode_floor.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _step(export: Path, form: str) -> onnx.ModelProto:
    manifest = load_manifest(export)
    graph = manifest.decoder_step("text", 2)
    model = onnx.load(str(manifest.prepared_path(graph.name, form)))
    materialize_weights(model)
    return model


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, ["CPUExecutionProvider"])


@pytest.mark.parametrize(
    ("fixture", "form", "layer_op"),
    [
        ("tiny_export_dir", PREPARED_CPU, "Gemm"),
        ("tiny_int8", PREPARED_CPU, "DequantizeLinear"),
        ("tiny_int8", PREPARED_CPU_MATMULNBITS, "MatMulNBits"),
    ],
)
def test_the_floor_is_the_steps_weight_layers(decode_floor, request, fixture, form, layer_op):
    step = _step(request.getfixturevalue(fixture), form)
    floor, layers, size = decode_floor.floor_model(step, batch=2)
    weight_ops = {"Gemm", "MatMul", "MatMulNBits"}
    layer_nodes = [n for n in floor.graph.node if n.op_type in weight_ops]
    assert layers == len(layer_nodes) == len(floor.graph.output) > 0
    assert layer_op in {n.op_type for n in floor.graph.node}
    inits = {t.name: t for t in floor.graph.initializer}
    assert size == sum(onnx.numpy_helper.to_array(t).nbytes for t in inits.values())
    assert not {"ScatterND", "ScatterElements", "Softmax"} & {n.op_type for n in floor.graph.node}
    # each layer's output is what its node computes on its input: checked against NumPy for the
    # plain float layers (Gemm / MatMul with a float weight)
    feeds = decode_floor.floor_feeds(floor)
    names = [o.name for o in floor.graph.output]
    outs = dict(zip(names, _session(floor).run(None, feeds), strict=True))
    checked = 0
    for node in layer_nodes:
        weight = inits.get(node.input[1])
        if weight is None or weight.data_type != onnx.TensorProto.FLOAT:
            continue
        w = onnx.numpy_helper.to_array(weight)
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("transB"):
            w = w.T
        y = feeds[node.input[0]] @ w
        if len(node.input) > 2 and node.input[2] in inits:
            y = y + onnx.numpy_helper.to_array(inits[node.input[2]])
        np.testing.assert_allclose(outs[node.output[0]], y, rtol=1e-4, atol=1e-4)
        checked += 1
    assert checked == (layers if fixture == "tiny_export_dir" else 0)
