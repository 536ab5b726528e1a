"""The CPU rewrite of the decoder step's ring-cache writes (``ScatterElements`` -> ``ScatterND``):
bit-identical outputs to the exported graph on random inputs, what the backend runs, and graphs
that are not the exporter's pattern left alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nuwa.export.ring_cache_writes import rewrite_ring_writes_to_scatter_nd
from nuwa.runtime.backends.onnxruntime import OnnxRuntimeBackend
from nuwa.runtime.backends.onnxruntime.sessions import GraphPasses


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, ["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def step_pair(tiny_export_dir: Path):
    """(backend, graph info, session of the step as exported, session as rewritten)."""
    backend = OnnxRuntimeBackend.from_model_dir(tiny_export_dir, threads=1)
    graph = backend.manifest.decoder_step("text", 3)
    exported = onnx.load(str(backend.manifest.path(graph.name)))
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(exported)
    count = rewrite_ring_writes_to_scatter_nd(rewritten, backend.past_names, backend.present_names)
    assert count == len(backend.past_names)  # every layer's key and value write
    ops = [n.op_type for n in rewritten.graph.node]
    assert "ScatterElements" not in ops and ops.count("ScatterND") == count
    onnx.checker.check_model(rewritten)
    return backend, graph, _session(exported), _session(rewritten)


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
    position_range=st.sampled_from([16, 48, 200]),  # inside the ring, wrapped, far past it
)
def test_rewritten_step_equals_the_exported_step(step_pair, rows, seed, position_range) -> None:
    backend, graph, exported, rewritten = step_pair
    rng = np.random.default_rng(seed)
    dec = backend.manifest.decoder
    feeds: dict[str, np.ndarray] = {}
    for t in graph.inputs:
        shape = [rows if isinstance(d, str) else d for d in t.shape]
        if t.name == dec.positions:  # each row its own position (and ring slot)
            feeds[t.name] = rng.integers(0, position_range, shape).astype(np.int64)
        elif t.dtype == "int64":
            feeds[t.name] = rng.integers(0, dec.vocab_size, shape).astype(np.int64)
        else:
            feeds[t.name] = rng.standard_normal(shape).astype(np.float32)
    want = exported.run(None, feeds)
    got = rewritten.run(None, feeds)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_cpu_backend_runs_the_rewritten_step(step_pair) -> None:
    backend, graph, _, _ = step_pair
    model = backend.prepare_graph(graph.name, onnx.load(str(backend.manifest.path(graph.name))))
    assert "ScatterElements" not in [n.op_type for n in model.graph.node]
    assert backend.cache_in_place  # the rewritten write keeps the in-place cache
    gpu = GraphPasses.for_device("cuda", None, backend.past_names, backend.present_names)
    assert not gpu.changes(graph)  # other providers run the graph as exported
    model = gpu.apply(graph, onnx.load(str(backend.manifest.path(graph.name))))
    assert "ScatterND" not in [n.op_type for n in model.graph.node]


def test_graphs_not_in_the_exported_pattern_are_left_alone(step_pair) -> None:
    backend, graph, _, _ = step_pair
    exported = onnx.load(str(backend.manifest.path(graph.name)))
    past, present = backend.past_names, backend.present_names

    def attempt(edit) -> None:
        model = onnx.ModelProto()
        model.CopyFrom(exported)
        edit(model)
        before = model.SerializeToString()
        assert rewrite_ring_writes_to_scatter_nd(model, past, present) == 0
        assert model.SerializeToString() == before

    scatters = [n.op_type == "ScatterElements" for n in exported.graph.node]
    first = scatters.index(True)

    def other_axis(model: onnx.ModelProto) -> None:
        node = model.graph.node[first]
        del node.attribute[:]
        node.attribute.append(onnx.helper.make_attribute("axis", 1))

    def not_the_slot(model: onnx.ModelProto) -> None:  # indices not the broadcast ring slot
        node = model.graph.node[first]
        node.input[1] = node.input[2]

    attempt(other_axis)
    attempt(not_the_slot)
    # a graph without ring writes (an encoder) is not touched either
    encoder = onnx.load(str(backend.manifest.path("text_encoder")))
    before = encoder.SerializeToString()
    assert rewrite_ring_writes_to_scatter_nd(encoder, past, present) == 0
    assert encoder.SerializeToString() == before
