"""The compact weight storage of an export (``nuwa.export.weights``): float16 + ``Cast`` for
float32 weights whose values are all float16, ``Transpose`` for a transposed copy, plain float32
otherwise; the graphs compute with bit-identical values (ONNX Runtime folds the constant nodes at
load), and :func:`materialize_weights` folds them back into plain initializers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from nuwa.export import Manifest
from nuwa.export.verify import session
from nuwa.export.weights import (
    MIN_EXTERNAL_BYTES,
    NODE_PREFIX,
    SharedWeights,
    is_float16_exact,
    materialize_weights,
    with_plain_weights,
)

OPSET = 18


def _linear_graph(w: np.ndarray, wt: np.ndarray, extra: dict[str, np.ndarray]) -> onnx.ModelProto:
    """``y = Gemm(x, w, transB=1) + MatMul(x, wt)`` plus one Add per ``extra`` initializer."""
    n, k = w.shape
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", k])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", n])
    nodes = [
        helper.make_node("Gemm", ["x", "w"], ["g"], transB=1),
        helper.make_node("MatMul", ["x", "wt"], ["m"]),
        helper.make_node("Add", ["g", "m"], ["s0"]),
    ]
    for i, name in enumerate(extra):
        nodes.append(helper.make_node("Add", [f"s{i}", name], [f"s{i + 1}"]))
    nodes.append(helper.make_node("Identity", [f"s{len(extra)}"], ["y"]))
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(wt, "wt")]
    inits += [numpy_helper.from_array(v, name) for name, v in extra.items()]
    graph = helper.make_graph(nodes, "linear", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _externalized(model: onnx.ModelProto, store: SharedWeights, path: Path) -> onnx.ModelProto:
    """``model`` through ``store``, saved to ``path`` and loaded back with its external data."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    store.externalize(copy)
    onnx.save(copy, str(path))
    return onnx.load(str(path))


def test_float16_exactness_is_bitwise() -> None:
    assert is_float16_exact(np.array([0.0, -0.0, 1.5, -65504.0, np.inf, 2.0**-24], np.float32))
    assert not is_float16_exact(np.array([0.1], np.float32))  # rounds
    assert not is_float16_exact(np.array([65520.0], np.float32))  # overflows to inf
    assert not is_float16_exact(np.array([2.0**-26], np.float32))  # below float16's subnormals
    assert not is_float16_exact(np.array([1.0], np.float64))  # only float32 is stored as half


def test_storage_pass_layout_and_bitwise_identical_outputs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((256, 32)).astype(np.float16).astype(np.float32)
    extra = {
        "derived": rng.standard_normal(256).astype(np.float32),  # not float16: stays float32
        "quarter": np.full(256, 0.25, np.float32),  # float16 values: float16 + Cast
        "small": np.ones(1, np.float32),  # under MIN_EXTERNAL_BYTES: stays inline
    }
    plain = _linear_graph(w, np.ascontiguousarray(w.T), extra)
    store = SharedWeights(tmp_path / "weights.bin")
    compact = _externalized(plain, store, tmp_path / "a.onnx")

    layout = onnx.load(str(tmp_path / "a.onnx"), load_external_data=False)
    stored = {t.name: t for t in layout.graph.initializer}
    kinds = Counter(n.op_type for n in compact.graph.node if n.name.startswith(NODE_PREFIX))
    # w: float16 + Cast; wt: the same float16 blob, Cast then Transpose; quarter: float16 + Cast
    assert kinds == Counter({"Cast": 3, "Transpose": 1})
    assert stored["w/stored"].data_type == TensorProto.FLOAT16
    assert stored["quarter/stored"].data_type == TensorProto.FLOAT16
    assert stored["derived"].data_type == TensorProto.FLOAT
    assert stored["derived"].data_location == TensorProto.EXTERNAL
    assert stored["small"].data_location == TensorProto.DEFAULT
    assert not {"w", "wt", "quarter"} & set(stored)
    assert store.tensors == 3  # w and wt share one blob
    assert store.nbytes <= w.size * 2 + 256 * 4 + 256 * 2 + 3 * 64
    onnx.checker.check_model(str(tmp_path / "a.onnx"), full_check=True)

    # folding back gives exactly the original initializers and nodes
    materialized = with_plain_weights(compact)
    assert materialized is not compact and len(compact.graph.node) == len(plain.graph.node) + 4
    want, got = _initializers(plain), _initializers(materialized)
    assert set(got) == set(want)
    assert all(_same_bits(got[k], want[k]) for k in want)
    assert [n.op_type for n in materialized.graph.node] == [n.op_type for n in plain.graph.node]
    assert with_plain_weights(plain) is plain  # nothing to fold

    x = rng.standard_normal((3, 32)).astype(np.float32)
    (a,) = session(plain).run(None, {"x": x})
    (b,) = session(tmp_path / "a.onnx").run(None, {"x": x})
    assert _same_bits(a, b)


def test_weights_are_shared_across_graphs_and_transposes_found_in_either_order(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(1)
    w = rng.standard_normal((40, 24)).astype(np.float32)  # float32 values: no Cast
    wt = np.ascontiguousarray(w.T)
    store = SharedWeights(tmp_path / "weights.bin")
    first = _externalized(_linear_graph(w, wt, {}), store, tmp_path / "1.onnx")
    size = store.nbytes
    # the second graph holds the transposed layer (its "w" is wt): nothing new is stored
    second = _externalized(_linear_graph(wt, w, {}), store, tmp_path / "2.onnx")
    assert store.nbytes == size == w.nbytes
    for model, (w_value, wt_value) in ((first, (w, wt)), (second, (wt, w))):
        ops = Counter(n.op_type for n in model.graph.node if n.name.startswith(NODE_PREFIX))
        assert ops == Counter({"Transpose": 1})
        plain = _initializers(with_plain_weights(model))
        assert _same_bits(plain["w"], w_value) and _same_bits(plain["wt"], wt_value)


def test_plain_store_keeps_float32(tmp_path: Path) -> None:
    w = np.full((32, 16), 0.5, np.float32)
    store = SharedWeights(tmp_path / "weights.bin", compact=False)
    model = _externalized(_linear_graph(w, np.ascontiguousarray(w.T), {}), store, tmp_path / "m")
    assert all(t.data_type == TensorProto.FLOAT for t in model.graph.initializer)
    assert not any(n.name.startswith(NODE_PREFIX) for n in model.graph.node)
    assert materialize_weights(model) == 0


def test_materialize_folds_only_float_casts_and_transposes_of_initializers() -> None:
    ints = numpy_helper.from_array(np.arange(4, dtype=np.int64).reshape(2, 2), "i")
    half = numpy_helper.from_array(np.ones((2, 2), np.float16), "h")
    nodes = [
        helper.make_node("Cast", ["i"], ["i_f"], to=TensorProto.FLOAT),  # int -> float: kept
        helper.make_node("Cast", ["h"], ["h_f"], to=TensorProto.FLOAT),  # folded
        helper.make_node("Transpose", ["h_f"], ["h_t"], perm=[1, 0]),  # folded (chain)
        helper.make_node("Add", ["i_f", "h_t"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
        [ints, half],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    (want,) = session(model).run(None, {})
    assert materialize_weights(model) == 2
    assert [n.op_type for n in model.graph.node] == ["Cast", "Add"]
    assert sorted(t.name for t in model.graph.initializer) == ["h_t", "i"]
    (got,) = session(model).run(None, {})
    assert _same_bits(got, want)


# ---- the tiny model with float16 weights, exported -----------------------------------------


def _random_feeds(inputs, rng: np.random.Generator) -> dict[str, np.ndarray]:
    feeds = {}
    for t in inputs:
        shape = [2 if isinstance(d, str) else d for d in t.shape]
        if t.dtype.startswith("int"):
            feeds[t.name] = rng.integers(0, 4, shape).astype(t.dtype)
        else:
            feeds[t.name] = rng.standard_normal(shape).astype(t.dtype)
    return feeds


def test_compact_export_computes_exactly_what_plain_weights_compute(
    tiny_half_export: Manifest,
) -> None:
    """Every graph of the export against the same graph with its weights folded back into plain
    float32 initializers: bit-identical outputs on random inputs, and the layout is really
    compact (float16 stored, transposes not stored twice, no mask table in the file)."""
    rng = np.random.default_rng(3)
    kinds: Counter[str] = Counter()
    for name, info in tiny_half_export.graphs.items():
        model = onnx.load(str(tiny_half_export.path(name)))
        kinds.update(n.op_type for n in model.graph.node if n.name.startswith(NODE_PREFIX))
        plain = with_plain_weights(model)
        for t in plain.graph.initializer:
            assert t.data_type != TensorProto.FLOAT16, (name, t.name)
        feeds = _random_feeds(info.inputs, rng)
        compact_out = session(tiny_half_export.path(name)).run(None, feeds)
        plain_out = session(plain).run(None, feeds)
        for a, b in zip(compact_out, plain_out, strict=True):
            assert _same_bits(a, b), name
        for f in model.functions:  # mask tables are computed in the body, not stored
            for node in f.node:
                if node.op_type == "Constant":
                    assert node.attribute[0].t.ByteSize() < MIN_EXTERNAL_BYTES, (name, f.overload)
    assert kinds["Cast"] > 10 and kinds["Transpose"] > 0
    half = sum(
        1
        for name in tiny_half_export.graphs
        for t in onnx.load(
            str(tiny_half_export.path(name)), load_external_data=False
        ).graph.initializer
        if t.data_type == TensorProto.FLOAT16
    )
    assert half > 10


def test_compact_export_runs_like_the_model(tiny_half_export: Manifest, tiny_half_specs) -> None:
    """The export check (ONNX Runtime vs PyTorch) holds for the stored graphs themselves."""
    name = "decoder_step.text"
    spec = tiny_half_specs[name]
    inputs = spec.make_inputs(2, torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = spec.module(*inputs)
    feeds = {n: x.numpy() for n, x in zip(spec.input_names, inputs, strict=True)}
    got = session(tiny_half_export.path(name)).run(None, feeds)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b.numpy(), rtol=0, atol=1e-4)


@pytest.mark.parametrize("compact", [True, False])
def test_weights_file_sizes(tmp_path: Path, compact: bool) -> None:
    """float16 values take half the bytes; the transposed copy takes none."""
    w = np.random.default_rng(2).standard_normal((64, 64)).astype(np.float16).astype(np.float32)
    store = SharedWeights(tmp_path / "weights.bin", compact=compact)
    _externalized(_linear_graph(w, np.ascontiguousarray(w.T), {}), store, tmp_path / "m")
    assert (tmp_path / "weights.bin").stat().st_size == (w.size * 2 if compact else 2 * w.nbytes)


def test_tensors_in_files_of_their_own_move_in_one_at_a_time_to_the_same_layout(
    tmp_path: Path,
) -> None:
    """A graph whose tensors lie in one file each (how the TorchScript exporter writes a graph
    over 2 GB), loaded without its data: ``externalize(base_dir=...)`` reads each tensor from
    its file and stores exactly what it stores for the graph loaded whole."""
    rng = np.random.default_rng(2)
    w = rng.standard_normal((256, 32)).astype(np.float16).astype(np.float32)
    extra = {"derived": rng.standard_normal(256).astype(np.float32)}
    plain = _linear_graph(w, np.ascontiguousarray(w.T), extra)
    traced = tmp_path / "traced"
    traced.mkdir()
    copy = onnx.ModelProto()
    copy.CopyFrom(plain)  # onnx.save moves a model's tensors out in place
    onnx.save(
        copy,
        str(traced / "g.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=False,
        size_threshold=0,
    )
    structure = onnx.load(str(traced / "g.onnx"), load_external_data=False)
    assert all(t.data_location == TensorProto.EXTERNAL for t in structure.graph.initializer)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    whole = onnx.load(str(traced / "g.onnx"))
    SharedWeights(tmp_path / "a" / "weights.bin").externalize(whole)
    moved = SharedWeights(tmp_path / "b" / "weights.bin").externalize(structure, base_dir=traced)
    assert moved == len(plain.graph.initializer)
    assert structure.SerializeToString() == whole.SerializeToString()
    a, b = (tmp_path / d / "weights.bin" for d in "ab")
    assert a.read_bytes() == b.read_bytes()
    onnx.save(structure, str(tmp_path / "b" / "g.onnx"))
    x = rng.standard_normal((3, 32)).astype(np.float32)
    (want,) = session(plain).run(None, {"x": x})
    (got,) = session(tmp_path / "b" / "g.onnx").run(None, {"x": x})
    assert _same_bits(want, got)


def test_what_quantization_nodes_read_is_stored_as_it_is(tmp_path: Path) -> None:
    """A DequantizeLinear's int8 weight and float scale (float16-exact values here) are stored
    plain, never behind a Cast: ONNX Runtime's int8 fusions want initializers. A float weight
    beside them is still stored compactly; the graph computes the same."""
    rng = np.random.default_rng(3)
    q = rng.integers(-127, 128, (512, 32)).astype(np.int8)
    scale = np.full(512, 0.5, np.float32)  # per output channel (axis 0)
    w = rng.standard_normal((32, 512)).astype(np.float16).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 512])
    graph = helper.make_graph(
        [
            helper.make_node("DequantizeLinear", ["q", "scale"], ["wq"], axis=0),
            helper.make_node("Gemm", ["x", "wq"], ["a"], transB=1),
            helper.make_node("MatMul", ["x", "w"], ["m"]),
            helper.make_node("Add", ["a", "m"], ["y"]),
        ],
        "g",
        [x],
        [y],
        [numpy_helper.from_array(v, n) for n, v in (("q", q), ("scale", scale), ("w", w))],
    )
    plain = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model = onnx.ModelProto()
    model.CopyFrom(plain)
    store = SharedWeights(tmp_path / "weights.bin")
    assert store.externalize(model) == 3
    stored = {t.name: t for t in model.graph.initializer}
    assert stored["q"].data_type == TensorProto.INT8
    assert stored["scale"].data_type == TensorProto.FLOAT  # float16-exact, yet plain
    assert "w" not in stored and stored["w/stored"].data_type == TensorProto.FLOAT16
    assert [n.op_type for n in model.graph.node if n.name.startswith(NODE_PREFIX)] == ["Cast"]
    onnx.save(model, str(tmp_path / "g.onnx"))
    feeds = {"x": rng.standard_normal((2, 32)).astype(np.float32)}
    (want,) = session(plain).run(None, feeds)
    (got,) = session(tmp_path / "g.onnx").run(None, feeds)
    assert _same_bits(want, got)
