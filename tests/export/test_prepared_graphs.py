"""The prepared CPU forms an export carries (``graphs.<name>.prepared.cpu``): written for every
decoder step of a portable export and of ``nuwa quantize``'s output, equal to the in-memory
rewrite of the exported step, read by the ONNX Runtime backend instead of rewriting, checked like
any graph file; an export without them still runs, the same."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from nuwa.export.prepared_graphs import prepare_cpu
from nuwa.runtime.backends.onnxruntime import OnnxRuntimeBackend
from nuwa.runtime.backends.onnxruntime import sessions as sessions_module
from nuwa.runtime.backends.onnxruntime.int8_cpu_kernels import matmul_nbits_available
from nuwa.runtime.cpu_features import int8_products_saturate
from nuwa.runtime.engine import generate_tokens
from nuwa.runtime.sampler import SamplingOptions
from nuwa.spec.graph_names import DECODER_STEP_KIND
from nuwa.spec.manifest import (
    MANIFEST_FILE,
    PREPARED_CPU,
    PREPARED_CPU_MATMULNBITS,
    ManifestError,
    load_manifest,
)
from nuwa.spec.tokenizer import ByteTokenizer


def _nodes(model: onnx.ModelProto) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    return [(n.op_type, tuple(n.input), tuple(n.output)) for n in model.graph.node]


def test_every_step_of_a_portable_export_carries_its_cpu_form(tiny_export_dir: Path) -> None:
    manifest = load_manifest(tiny_export_dir)  # hashes of the prepared files checked too
    steps = [g for g in manifest.graphs.values() if g.kind == DECODER_STEP_KIND]
    assert steps and all(set(g.prepared) == {PREPARED_CPU} for g in steps)
    assert not any(g.prepared for g in manifest.graphs.values() if g.kind != DECODER_STEP_KIND)
    for g in steps:
        path = manifest.prepared_path(g.name, PREPARED_CPU)
        assert path == tiny_export_dir / f"{g.name}.cpu.onnx"
        prepared = onnx.load(str(path), load_external_data=False)
        expected = onnx.load(str(manifest.path(g.name)), load_external_data=False)
        assert prepare_cpu(expected, manifest.decoder)  # the in-memory rewrite, on the file
        assert _nodes(prepared) == _nodes(expected)
        ops = [n.op_type for n in prepared.graph.node]
        assert "ScatterElements" not in ops and "ScatterND" in ops
        # the same external weights file as the graph: only the structure is new
        assert path.stat().st_size < 4 * manifest.path(g.name).stat().st_size


def test_a_tensorrt_export_carries_none(tiny_tensorrt: Path) -> None:
    assert not any(g.prepared for g in load_manifest(tiny_tensorrt).graphs.values())


def _greedy(backend: OnnxRuntimeBackend) -> np.ndarray:
    tok = ByteTokenizer(backend.spec.max_text_len)
    cond = backend.text_condition(tok.encode_batch(["a red square moves right", "a"]))
    options = SamplingOptions(temperature=0.0)
    return generate_tokens(backend, cond, 2, options, progress=False)


@pytest.mark.parametrize("io_binding", [True, False])
def test_the_backend_reads_the_prepared_step_and_an_export_without_it_runs_the_same(
    tiny_export_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, io_binding: bool
) -> None:
    calls: list[int] = []
    rewrite = sessions_module.rewrite_ring_writes_to_scatter_nd

    def counting(*args, **kwargs):
        calls.append(1)
        return rewrite(*args, **kwargs)

    monkeypatch.setattr(sessions_module, "rewrite_ring_writes_to_scatter_nd", counting)
    prepared = OnnxRuntimeBackend.from_model_dir(tiny_export_dir, threads=1, io_binding=io_binding)
    step = prepared.manifest.decoder_step("text", 2)
    path, _ = prepared.sessions.source(step)
    assert path == prepared.manifest.prepared_path(step.name, PREPARED_CPU)
    with_files = _greedy(prepared)
    assert not calls  # nothing rewritten in memory
    assert prepared.cache_in_place

    old = _strip_prepared(tiny_export_dir, tmp_path / "old_export")  # made before them
    in_memory = OnnxRuntimeBackend.from_model_dir(old, threads=1, io_binding=io_binding)
    assert in_memory.sessions.source(step)[0] == old / step.file
    np.testing.assert_array_equal(_greedy(in_memory), with_files)
    assert calls  # prepared in memory, as before


def test_prepared_files_are_checked_like_graphs(tiny_export_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "export"
    shutil.copytree(tiny_export_dir, copy)
    path = copy / "decoder_step.text.cpu.onnx"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ManifestError, match="does not match its SHA-256"):
        load_manifest(copy)
    raw = json.loads((copy / MANIFEST_FILE).read_text())
    raw["graphs"]["decoder_step.text"]["prepared"]["cpu"]["file"] = "../elsewhere.onnx"
    (copy / MANIFEST_FILE).write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match=r"prepared\.cpu\.file"):
        load_manifest(copy)


def _ops(path: Path | None) -> list[str]:
    assert path is not None
    return [n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node]


def test_quantize_prepares_the_graphs_it_writes(tiny_int8: Path, tiny_fp16: Path) -> None:
    int8 = load_manifest(tiny_int8)
    layers = [g for g in int8.graphs.values() if g.meta.get("precision") == "int8"]
    assert any(g.kind == DECODER_STEP_KIND for g in layers)
    for g in int8.graphs.values():
        if g.kind == DECODER_STEP_KIND:  # made from the int8 graph: its Q/DQ as written
            ops = _ops(int8.prepared_path(g.name, PREPARED_CPU))
            assert "ScatterND" in ops and "DequantizeLinear" in ops
        if g in layers:  # every weight layer one MatMulNBits; a step's writes as ScatterND
            ops = _ops(int8.prepared_path(g.name, PREPARED_CPU_MATMULNBITS))
            assert "MatMulNBits" in ops and "MatMul" not in ops and "Gemm" not in ops
            assert ("ScatterND" in ops) == (g.kind == DECODER_STEP_KIND)
        else:
            assert PREPARED_CPU_MATMULNBITS not in g.prepared
    # an FP16 step's writes are not the exporter's pattern: it runs as written, none listed
    fp16 = load_manifest(tiny_fp16)
    assert not any(g.prepared for g in fp16.graphs.values())


def _strip_prepared(src: Path, dst: Path) -> Path:
    """A copy of an export without its prepared forms (an export made before them)."""
    shutil.copytree(src, dst)
    raw = json.loads((dst / MANIFEST_FILE).read_text())
    for graph in raw["graphs"].values():
        for form in graph.pop("prepared", {}).values():
            (dst / form["file"]).unlink()
    (dst / MANIFEST_FILE).write_text(json.dumps(raw))
    return dst


def test_the_int8_backend_reads_its_matmulnbits_forms(tiny_int8: Path, tmp_path: Path) -> None:
    if not matmul_nbits_available() or int8_products_saturate():
        pytest.skip("this CPU or ONNX Runtime has no usable 8-bit MatMulNBits kernel")
    files = OnnxRuntimeBackend.from_model_dir(tiny_int8, threads=1, int8_kernels="matmulnbits")
    step = files.manifest.decoder_step("text", 2)
    path, left = files.sessions.source(step)
    assert path == files.manifest.prepared_path(step.name, PREPARED_CPU_MATMULNBITS)
    assert not left.changes(step)  # nothing left to rewrite in memory
    old = _strip_prepared(tiny_int8, tmp_path / "old")
    memory = OnnxRuntimeBackend.from_model_dir(old, threads=1, int8_kernels="matmulnbits")
    np.testing.assert_array_equal(_greedy(files), _greedy(memory))
    qdq = OnnxRuntimeBackend.from_model_dir(tiny_int8, threads=1, int8_kernels="qdq")
    assert qdq.sessions.source(step)[0] == qdq.manifest.prepared_path(step.name, PREPARED_CPU)
