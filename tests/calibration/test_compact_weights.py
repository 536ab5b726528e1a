"""INT8 Q/DQ and FP16 conversion of graphs whose weights an export stores compactly (float16 +
``Cast``, ``Transpose`` of another stored tensor; ``nuwa.export.weights``): the same layers are
found and converted exactly as from the plain float32 graph."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nuwa.calibration.fp16 import convert_to_fp16
from nuwa.calibration.onnx_runner import session_options
from nuwa.calibration.qdq import find_targets, insert_qdq
from nuwa.export import load_manifest
from nuwa.export.weights import NODE_PREFIX, WEIGHTS_FILE, SharedWeights, with_plain_weights
from nuwa.spec.manifest import sha256_file

RNG = np.random.default_rng(4)


def _plain_graph() -> onnx.ModelProto:
    """``Gemm(x, W, transB=1)`` (as a decode step) and ``MatMul(x, Wᵀ)`` (as the prefill) with
    float16-valued weights, and a float32 bias."""
    w = (RNG.standard_normal((64, 32)) * 0.2).astype(np.float16).astype(np.float32)
    bias = RNG.standard_normal(64).astype(np.float32) * 3.1
    nodes = [
        helper.make_node("Gemm", ["x", "w", "bias"], ["g"], name="gemm", transB=1),
        helper.make_node("MatMul", ["x", "wt"], ["m"], name="matmul"),
        helper.make_node("Add", ["g", "m"], ["y"], name="add"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 64])],
        [
            numpy_helper.from_array(w, "w"),
            numpy_helper.from_array(np.ascontiguousarray(w.T), "wt"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _compact(model: onnx.ModelProto, tmp_path: Path) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    SharedWeights(tmp_path / "weights.bin").externalize(copy)
    onnx.save(copy, str(tmp_path / "compact.onnx"))
    loaded = onnx.load(str(tmp_path / "compact.onnx"))
    ops = sorted(n.op_type for n in loaded.graph.node if n.name.startswith(NODE_PREFIX))
    assert ops == ["Cast", "Cast", "Transpose"]  # w, wt: float16 + Cast (+ Transpose)
    return loaded


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(
        model.SerializeToString(), session_options(1), providers=["CPUExecutionProvider"]
    )
    return sess.run(None, {"x": x})[0]


def _initializers(model: onnx.ModelProto) -> dict[str, bytes]:
    return {t.name: numpy_helper.to_array(t).tobytes() for t in model.graph.initializer}


def test_qdq_finds_and_quantizes_the_same_layers_in_a_compact_graph(tmp_path: Path) -> None:
    plain = _plain_graph()
    compact = _compact(plain, tmp_path)
    targets = find_targets(compact)
    assert targets == find_targets(plain)
    assert [t.node for t in targets] == ["gemm", "matmul"]
    amax = {"x": 3.0}
    q_plain = insert_qdq(plain, targets, amax, int32_bias=True)
    q_compact = insert_qdq(compact, targets, amax, int32_bias=True)
    assert _initializers(q_compact) == _initializers(q_plain)
    assert [n.op_type for n in q_compact.graph.node] == [n.op_type for n in q_plain.graph.node]
    assert len(compact.graph.node) == 6  # the input model is left as it is
    x = RNG.standard_normal((3, 32)).astype(np.float32)
    assert np.array_equal(_run(q_compact, x), _run(q_plain, x))


def test_fp16_conversion_of_a_compact_graph_equals_the_plain_graphs(tmp_path: Path) -> None:
    plain = _plain_graph()
    compact = _compact(plain, tmp_path)
    half_plain, half_compact = convert_to_fp16(plain), convert_to_fp16(compact)
    assert _initializers(half_compact) == _initializers(half_plain)
    assert not any(n.name.startswith(NODE_PREFIX) for n in half_compact.graph.node)
    x = RNG.standard_normal((3, 32)).astype(np.float32)
    assert np.array_equal(_run(half_compact, x), _run(half_plain, x))


def test_quantized_exports_convert_every_layer_of_the_stored_graphs(
    tiny_portable: Path, tiny_int8: Path, tiny_fp16: Path
) -> None:
    """``nuwa quantize`` on an export with compact weights: every weight layer of the plain
    graphs is quantized (none is missed behind a Transpose/Cast), and converted graphs are plain
    and self-contained: an FP16 graph is exactly the conversion of the plain source graph."""
    source = load_manifest(tiny_portable)
    raw = json.loads((tiny_int8 / "manifest.json").read_text())
    for name, layers in raw["quantization"]["layers"].items():
        model = onnx.load(str(source.path(name)))
        assert layers == len(find_targets(with_plain_weights(model))) > 0, name
        int8 = onnx.load(str(tiny_int8 / source.graph(name).file))
        assert not any(n.name.startswith(NODE_PREFIX) for n in int8.graph.node), name
    fp16 = load_manifest(tiny_fp16)
    stored = 0
    for name, graph in fp16.graphs.items():
        if graph.meta["precision"] != "fp16":
            continue
        model = onnx.load(str(source.path(name)))
        stored += sum(n.name.startswith(NODE_PREFIX) for n in model.graph.node)
        half = onnx.load(str(fp16.path(name)))
        assert not any(n.name.startswith(NODE_PREFIX) for n in half.graph.node), name
        assert all(t.data_location != TensorProto.EXTERNAL for t in half.graph.initializer)
        reference = convert_to_fp16(with_plain_weights(model))
        assert _initializers(half) == _initializers(reference), name
    assert stored > 0  # the prefill reads transposed copies through Transpose nodes


def test_an_int8_export_stores_each_tensor_once_in_its_own_weights_file(
    tiny_portable: Path, tiny_int8: Path
) -> None:
    """Every graph of an INT8 export (Q/DQ, kept FP32, prepared forms) reads its large tensors
    from the export's own ``weights.bin``, listed with its SHA-256; the int8 weights are stored
    as int8, and the decoder steps of every condition read the same bytes."""
    raw = json.loads((tiny_int8 / "manifest.json").read_text())
    assert raw["external_data"] == {WEIGHTS_FILE: sha256_file(tiny_int8 / WEIGHTS_FILE)}
    manifest = load_manifest(tiny_int8)
    files = [tiny_int8 / g.file for g in manifest.graphs.values()]
    files += [tiny_int8 / p.file for g in manifest.graphs.values() for p in g.prepared.values()]
    for file in files:
        for t in onnx.load(str(file), load_external_data=False).graph.initializer:
            if t.data_location == TensorProto.EXTERNAL:
                location = {e.key: e.value for e in t.external_data}["location"]
                assert location == WEIGHTS_FILE, (file.name, t.name)
            else:  # inline: only what is under 1 KiB
                assert len(numpy_helper.to_array(t).tobytes()) < 1024, (file.name, t.name)
    int8_offsets = []
    for graph in manifest.graphs.values():
        if graph.kind == "decoder_step":
            model = onnx.load(str(tiny_int8 / graph.file), load_external_data=False)
            int8_offsets.append(
                {
                    {e.key: e.value for e in t.external_data}["offset"]
                    for t in model.graph.initializer
                    if t.data_type == TensorProto.INT8 and t.data_location == TensorProto.EXTERNAL
                }
            )
    assert len(int8_offsets) > 1 and int8_offsets[0]
    assert all(offsets == int8_offsets[0] for offsets in int8_offsets)  # one copy for all steps
