"""Run an export directory (any precision) in ONNX Runtime on the CPU: the runtime's own
:class:`~nuwa.runtime.backends.onnxruntime_backend.OnnxRuntimeBackend` (so calibration and gates
run exactly the graphs, feeds and decode loop users run), with two hooks calibration needs:

- ``observe``: per graph, extra tensors to fetch on every run (the activations that get Q/DQ);
  each run hands them to ``on_run(graph, feeds, extras)`` — this is how calibration "captures"
  decoder-step inputs along real generations without storing them;
- graphs of a ``--target tensorrt`` export have no 3DNA function bodies; they get them attached
  in memory (:func:`portable_copy`) so ONNX Runtime can run them for calibration and gates.

The decode loop is the runtime's (:func:`nuwa.runtime.engine.generate_tokens`). This module
imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from nuwa.calibration.ranges import with_extra_outputs
from nuwa.export.onnx_function import attach_functions, is_attention_node
from nuwa.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend, uses_memory_arena
from nuwa.spec.manifest import GraphInfo, load_manifest

PLUGIN_ATTRIBUTES = ("plugin_namespace", "plugin_version")
RunHook = Callable[[str, dict[str, np.ndarray], dict[str, np.ndarray]], None]


def portable_copy(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """A tensorrt-target graph made runnable by ONNX Runtime: plugin tags dropped, 3DNA local
    functions attached (a portable graph is returned unchanged)."""
    if model.functions or not any(is_attention_node(n) for n in model.graph.node):
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for node in out.graph.node:
        if is_attention_node(node):
            keep = [a for a in node.attribute if a.name not in PLUGIN_ATTRIBUTES]
            del node.attribute[:]
            node.attribute.extend(keep)
    attach_functions(out, opset)
    return out


def session_options(threads: int = 1, simulate_qdq: bool = False) -> ort.SessionOptions:
    """CPU session options; ``simulate_qdq`` stops at basic graph optimizations, so Q/DQ pairs
    are executed as written (exact fake quantization) instead of being fused into ONNX
    Runtime's int8 kernels — what a TensorRT-target graph is gated with, since full-range int8
    weights saturate those kernels on x86 CPUs without VNNI."""
    so = ort.SessionOptions()
    if simulate_qdq:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return so


class ExportRunner(OnnxRuntimeBackend):
    """An export directory on ONNX Runtime CPU: the runtime's backend (plain ``session.run``,
    no IO binding, the same INT8 kernels) with the two calibration hooks of the module
    docstring."""

    name = "onnxruntime-calibration"

    def __init__(
        self,
        export_dir: str | Path,
        threads: int = 1,
        observe: dict[str, list[str]] | None = None,
        on_run: RunHook | None = None,
        simulate_qdq: bool | None = None,
        int8_kernels: str = "auto",
    ) -> None:
        manifest = load_manifest(export_dir)
        # default: simulate Q/DQ for TensorRT-target exports (see session_options)
        self.simulate_qdq = manifest.target == "tensorrt" if simulate_qdq is None else simulate_qdq
        self.observe = observe or {}
        self.on_run = on_run
        super().__init__(
            manifest, device="cpu", threads=threads, io_binding=False, int8_kernels=int8_kernels
        )

    def _uses_int8_kernels(self) -> bool:
        return not self.simulate_qdq and super()._uses_int8_kernels()

    def _create_session(self, graph: str) -> ort.InferenceSession:
        model = portable_copy(onnx.load(str(self.manifest.path(graph))), self.manifest.opset)
        model = self.prepare_graph(graph, model)
        extra = self.observe.get(graph, [])
        if extra:
            model = with_extra_outputs(model, extra)
        options = session_options(self.threads or 1, self.simulate_qdq)
        options.enable_cpu_mem_arena = uses_memory_arena(self.manifest.graph(graph))
        return ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )

    def _run(self, graph: GraphInfo, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        names = graph.output_names
        extra = [e for e in self.observe.get(graph.name, []) if e not in names]
        values = self.session(graph.name).run(names + extra, feeds)
        if self.on_run is not None:
            self.on_run(graph.name, feeds, dict(zip(extra, values[len(names) :], strict=True)))
        return [np.asarray(v) for v in values[: len(names)]]

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one graph; returns its declared outputs by name."""
        info = self.manifest.graph(graph)
        return dict(zip(info.output_names, self._run(info, feeds), strict=True))
