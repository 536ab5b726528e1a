"""Run an export directory (any precision) in ONNX Runtime on the CPU: the runtime's own
:class:`~nuwa.runtime.backends.onnxruntime.OnnxRuntimeBackend` (so calibration and gates run
exactly the graphs, feeds and decode loop users run), composed with its public hooks
(:class:`~nuwa.runtime.backends.onnxruntime.sessions.GraphHooks`) for what calibration needs:

- ``observe``: per graph, extra tensors to fetch on every run (the activations that get Q/DQ);
  each run hands them to ``on_run(graph, feeds, extras)`` — this is how calibration "captures"
  decoder-step inputs along real generations without storing them;
- graphs of a ``--target tensorrt`` export have no 3DNA function bodies; they get them attached
  in memory (:func:`portable_copy`) so ONNX Runtime can run them for calibration and gates;
- ``simulate_qdq``: Q/DQ pairs executed as written (basic optimizations, no int8 kernels).

The decode loop is the runtime's (:func:`nuwa.runtime.engine.generate_tokens`). This module
imports no torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from nuwa.calibration.ranges import with_extra_outputs
from nuwa.export.attention_node import is_attention_node
from nuwa.export.onnx_function import attach_functions
from nuwa.runtime.backends.base import Backend, Condition, RequestState
from nuwa.runtime.backends.onnxruntime import GraphHooks, OnnxRuntimeBackend
from nuwa.runtime.backends.onnxruntime.sessions import RunHook
from nuwa.runtime.backends.onnxruntime.sessions import (
    session_options as runtime_session_options,
)
from nuwa.spec.manifest import Manifest, load_manifest
from nuwa.spec.model_spec import ModelSpec

PLUGIN_ATTRIBUTES = ("plugin_namespace", "plugin_version")


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
    """The runtime's CPU session options (:func:`~nuwa.runtime.backends.onnxruntime.sessions.
    session_options`); ``simulate_qdq`` stops at basic graph optimizations, so Q/DQ pairs are
    executed as written (exact fake quantization) instead of being fused into ONNX Runtime's
    int8 kernels — what a TensorRT-target graph is gated with, since full-range int8 weights
    saturate those kernels on x86 CPUs without VNNI."""
    return runtime_session_options(threads, "basic" if simulate_qdq else "all")


class ExportRunner(Backend):
    """An export directory on ONNX Runtime CPU: the runtime's backend (plain ``session.run``,
    no IO binding, the same INT8 kernels) with the calibration hooks of the module docstring.
    Runs as a backend (:attr:`backend` does the work)."""

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
        opset = manifest.opset

        def add_observed(graph: str, model: onnx.ModelProto) -> onnx.ModelProto:
            extra = self.observe.get(graph, [])
            return with_extra_outputs(model, extra) if extra else model

        hooks = GraphHooks(
            before_passes=lambda graph, model: portable_copy(model, opset),
            after_passes=add_observed,
            fetch=self.observe,
            on_run=on_run,
        )
        self.backend = OnnxRuntimeBackend(
            manifest,
            device="cpu",
            threads=threads,
            io_binding=False,
            int8_kernels=int8_kernels,
            optimization="basic" if self.simulate_qdq else "all",
            hooks=hooks,
        )
        self.spec: ModelSpec = self.backend.spec
        self.precision = self.backend.precision

    @property
    def manifest(self) -> Manifest:
        return self.backend.manifest

    @property
    def int8_kernels(self) -> str | None:
        return self.backend.int8_kernels

    def session(self, graph: str) -> ort.InferenceSession:
        return self.backend.session(graph)

    def prepare_graph(self, graph: str, model: onnx.ModelProto) -> onnx.ModelProto:
        """``model`` with the backend's graph passes (:meth:`OnnxRuntimeBackend.prepare_graph`)."""
        return self.backend.prepare_graph(graph, model)

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one graph; returns its declared outputs by name."""
        return self.backend.run_graph(graph, feeds)

    # ---- the backend interface, by the composed backend -----------------------------------

    def text_condition(self, text_ids: np.ndarray) -> Condition:
        return self.backend.text_condition(text_ids)

    def sketch_condition(self, sketch: np.ndarray) -> Condition:
        return self.backend.sketch_condition(sketch)

    def start_request(self, cond: Condition, num_frames: int) -> RequestState:
        return self.backend.start_request(cond, num_frames)

    def frames_to_codes(self, frames: np.ndarray) -> np.ndarray:
        return self.backend.frames_to_codes(frames)

    def codes_to_frames(self, codes: np.ndarray) -> np.ndarray:
        return self.backend.codes_to_frames(codes)

    def describe(self) -> str:
        return self.backend.describe()
