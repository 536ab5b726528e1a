"""``--target tensorrt``: the same graphs, no function bodies, and on every 3DNA node exactly the
fields the committed TensorRT plugin creator reads plus ``plugin_namespace``/``plugin_version``."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx

import nuwa
from nuwa.export.attention_node import is_attention_node
from nuwa.export.verify import runnable_copy, session

PLUGIN_FIELDS_HEADER = (
    Path(nuwa.__file__).parent / "plugins" / "nearbyAttention3D" / "nearbyAttention3DCommon.h"
)


def creator_fields() -> dict[str, tuple[str, int]]:
    """``{name: (AttributeType, length)}`` of ``kATTRIBUTE_FIELDS``: the table the TensorRT
    plugin creator (and ``nuwa_3dna_attribute_fields``) is built from, read from its source."""
    src = PLUGIN_FIELDS_HEADER.read_text()
    table = src[src.index("kATTRIBUTE_FIELDS[] = {") :].split("};")[0]
    fields = re.findall(r'\{"(\w+)", AttributeType::(k\w+), (\d+)\}', table)
    assert fields, "no attribute fields found in the plugin source"
    return {name: (ftype, int(length)) for name, ftype, length in fields}


def attribute_signature(attr: onnx.AttributeProto) -> tuple[str, int]:
    value = onnx.helper.get_attribute_value(attr)
    if attr.type == onnx.AttributeProto.INTS:
        return "kINT32", len(value)
    if attr.type == onnx.AttributeProto.INT:
        return "kINT32", 1
    assert attr.type == onnx.AttributeProto.FLOAT, attr.name
    return "kFLOAT32", 1


def test_tensorrt_graphs_have_plugin_nodes_without_function_bodies(tiny_trt_export, tiny_export):
    fields = creator_fields()
    assert set(fields) == {
        "q_grid",
        "k_grid",
        "extents",
        "causal",
        "ring_cache",
        "scale",
        "num_heads",
    }
    assert tiny_trt_export.target == "tensorrt"
    assert sorted(tiny_trt_export.graphs) == sorted(tiny_export.graphs)
    total = 0
    for name, info in tiny_trt_export.graphs.items():
        model = onnx.load(str(tiny_trt_export.path(name)))
        assert len(model.functions) == 0
        nodes = [n for n in model.graph.node if is_attention_node(n)]
        assert len(nodes) == tiny_export.graph(name).attention_nodes == info.attention_nodes
        for node in nodes:
            attrs = {a.name: a for a in node.attribute}
            assert node.overload == ""
            assert onnx.helper.get_attribute_value(attrs["plugin_namespace"]) == b"nuwa"
            assert onnx.helper.get_attribute_value(attrs["plugin_version"]) == b"1"
            assert set(attrs) - {"plugin_namespace", "plugin_version"} == set(fields)
            for field, signature in fields.items():
                assert attribute_signature(attrs[field]) == signature, field
            if len(node.input) == 4:  # q_positions: the plugin takes int32
                producer = next(n for n in model.graph.node if node.input[3] in n.output)
                assert producer.op_type == "Cast"
                assert onnx.helper.get_attribute_value(producer.attribute[0]) == 6
        total += len(nodes)
        # the checker runs without function bodies too (the plugin node has no schema)
        onnx.checker.check_model(model)
        assert info.check["max_abs_error"] <= 1e-4  # checked at export with the bodies attached
    assert total > 0


def test_tensorrt_graph_with_bodies_reattached_equals_the_portable_graph(
    tiny_trt_export, tiny_export, tiny_specs
):
    name = "decoder_step.sketch_t3"
    trt = onnx.load(str(tiny_trt_export.path(name)))
    runnable = runnable_copy(trt, tiny_trt_export.opset)
    assert len(runnable.functions) == 2  # ring self-attention and cross-attention bodies
    for node in runnable.graph.node:
        if is_attention_node(node):
            assert not any(a.name.startswith("plugin_") for a in node.attribute)
    import torch

    inputs = tiny_specs[name].make_inputs(2, torch.Generator().manual_seed(5))
    feeds = {n: x.numpy() for n, x in zip(tiny_specs[name].input_names, inputs, strict=True)}
    a = session(runnable).run(None, feeds)
    b = session(tiny_export.path(name)).run(None, feeds)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_tensorrt_graphs_store_weights_compactly_and_compute_the_plain_values(
    tiny_trt_export,
) -> None:
    """The tensorrt target shares the compact weights layout (a transposed copy is a
    ``Transpose`` of the stored tensor, which TensorRT folds like ONNX Runtime): the graph is
    still ready for the engine builder and computes exactly what its plain form computes."""
    from nuwa.export.weights import NODE_PREFIX, with_plain_weights
    from nuwa.runtime.backends.tensorrt.engine_build import check_tensorrt_graph

    folded = 0
    for name, info in tiny_trt_export.graphs.items():
        model = onnx.load(str(tiny_trt_export.path(name)))
        assert check_tensorrt_graph(model, name) == info.attention_nodes
        stored = [n for n in model.graph.node if n.name.startswith(NODE_PREFIX)]
        if not stored:
            continue
        folded += len(stored)
        plain = with_plain_weights(model)
        rng = np.random.default_rng(0)
        feeds = {}
        for t in info.inputs:
            shape = [2 if isinstance(d, str) else d for d in t.shape]
            if t.dtype.startswith("int"):
                feeds[t.name] = rng.integers(0, 4, shape).astype(t.dtype)
            else:
                feeds[t.name] = rng.standard_normal(shape).astype(t.dtype)
        ours = session(runnable_copy(model, tiny_trt_export.opset)).run(None, feeds)
        want = session(runnable_copy(plain, tiny_trt_export.opset)).run(None, feeds)
        for a, b in zip(ours, want, strict=True):
            assert a.tobytes() == b.tobytes(), name
    assert folded > 0
