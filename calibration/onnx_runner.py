"""Run an export directory (any precision) in ONNX Runtime on the CPU behind the runtime's
:class:`~nuwa.runtime.backends.base.Backend` interface, with two hooks calibration needs:

- ``observe``: per graph, extra tensors to fetch on every run (the activations that get Q/DQ);
  each run hands them to ``on_run(graph, feeds, extras)`` — this is how calibration "captures"
  decoder-step inputs along real generations without storing them;
- graphs of a ``--target tensorrt`` export have no 3DNA function bodies; they get them attached
  in memory (:func:`portable_copy`) so ONNX Runtime can run them for calibration and gates.

The decode loop itself is the runtime's (:func:`nuwa.runtime.engine.generate_tokens`), so
calibration and gates drive exactly what users run. This module imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from nuwa.export.manifest import GraphInfo, Manifest, load_manifest
from nuwa.export.onnx_function import attach_functions, is_attention_node
from nuwa.runtime.backends.base import Backend, Condition
from nuwa.runtime.spec import ModelSpec

from .ranges import with_extra_outputs

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


class ExportRunner(Backend):
    """An export directory on ONNX Runtime CPU (see module docstring)."""

    name = "onnxruntime-calibration"

    def __init__(
        self,
        export_dir: str | Path,
        threads: int = 1,
        observe: dict[str, list[str]] | None = None,
        on_run: RunHook | None = None,
        simulate_qdq: bool | None = None,
    ) -> None:
        self.manifest: Manifest = load_manifest(export_dir)
        # default: simulate Q/DQ for TensorRT-target exports (see session_options)
        self.simulate_qdq = (
            self.manifest.target == "tensorrt" if simulate_qdq is None else simulate_qdq
        )
        self.precision = self.manifest.precision
        self.spec = ModelSpec.from_dict(self.manifest.config)
        self.threads = threads
        self.observe = observe or {}
        self.on_run = on_run
        self._sessions: dict[str, tuple[ort.InferenceSession, list[str]]] = {}

    # ---- sessions --------------------------------------------------------------------------

    def _session(self, graph: str) -> tuple[ort.InferenceSession, list[str]]:
        if graph not in self._sessions:
            info = self.manifest.graph(graph)
            model = portable_copy(onnx.load(str(self.manifest.path(graph))), self.manifest.opset)
            extra = self.observe.get(graph, [])
            if extra:
                model = with_extra_outputs(model, extra)
            sess = ort.InferenceSession(
                model.SerializeToString(),
                session_options(self.threads, self.simulate_qdq),
                providers=["CPUExecutionProvider"],
            )
            self._sessions[graph] = (sess, info.output_names)
        return self._sessions[graph]

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one graph; returns its declared outputs by name."""
        sess, names = self._session(graph)
        extra = [e for e in self.observe.get(graph, []) if e not in names]
        values = sess.run(names + extra, feeds)
        outputs = dict(zip(names, values[: len(names)], strict=True))
        if self.on_run is not None:
            self.on_run(graph, feeds, dict(zip(extra, values[len(names) :], strict=True)))
        return outputs

    def graph_info(self, graph: str) -> GraphInfo:
        return self.manifest.graph(graph)

    # ---- conditions ------------------------------------------------------------------------

    def _cross(self, graph: str, feeds: dict[str, np.ndarray]) -> list[tuple[Any, Any]]:
        out = self.run(graph, feeds)
        d = self.manifest.decoder
        return [(out[d.cross_key % i], out[d.cross_value % i]) for i in range(d.num_layers)]

    def text_condition(self, text_ids: np.ndarray) -> Condition:
        cond = self.manifest.conditions["text"]
        ids = np.ascontiguousarray(text_ids, dtype=np.int64)
        name = self.manifest.graph(cond.encoder).input_names[0]
        cross = self._cross(cond.encoder, {name: ids})
        return Condition(cross, tuple(cond.grid), "text", int(ids.shape[0]))  # type: ignore[arg-type]

    def sketch_codes(self, sketch: np.ndarray) -> np.ndarray:
        """Class maps ``(B, T, S, S)`` -> VQ-GAN-Seg codes ``(B, T, h, w)``."""
        s = np.asarray(sketch, dtype=np.int64)
        b, t = s.shape[:2]
        codes = self.run("sketch_encoder", {"sketch": s.reshape(b * t, *s.shape[2:])})
        c = codes["sketch_codes"]
        return c.reshape(b, t, *c.shape[1:]).astype(np.int64)

    def sketch_condition(self, sketch: np.ndarray) -> Condition:
        codes = self.sketch_codes(sketch)
        key = f"sketch_t{codes.shape[1]}"
        if key not in self.manifest.conditions:
            raise ValueError(f"no sketch condition encoder for {codes.shape[1]} frame(s)")
        cond = self.manifest.conditions[key]
        name = self.manifest.graph(cond.encoder).input_names[0]
        cross = self._cross(cond.encoder, {name: codes})
        return Condition(cross, tuple(cond.grid), "sketch", int(codes.shape[0]))  # type: ignore[arg-type]

    # ---- decoder ---------------------------------------------------------------------------

    def new_cache(self, rows: int) -> list[np.ndarray]:
        d = self.manifest.decoder
        shape = (rows, d.num_heads, d.cache_slots, d.head_dim)
        return [np.zeros(shape, np.float32) for _ in range(2 * d.num_layers)]

    def step_graph(self, cond: Condition, num_frames: int) -> str:
        key = "text" if cond.kind == "text" else f"sketch_t{cond.grid[0]}"
        return self.manifest.decoder_step(key, num_frames).name

    def decoder_step(
        self,
        tokens: np.ndarray,
        positions: np.ndarray,
        cache: Any,
        cond: Condition,
        num_frames: int,
    ) -> tuple[np.ndarray, Any]:
        d = self.manifest.decoder
        feeds: dict[str, np.ndarray] = {
            d.input_ids: np.asarray(tokens, dtype=np.int64),
            d.positions: np.asarray(positions, dtype=np.int64),
        }
        feeds.update(zip(d.past_names(), cache, strict=True))
        feeds.update(zip(d.cross_names(), [t for pair in cond.cross for t in pair], strict=True))
        out = self.run(self.step_graph(cond, num_frames), feeds)
        return out[d.logits], [out[n] for n in d.present_names()]

    # ---- VQ-GAN ----------------------------------------------------------------------------

    def frames_to_codes(self, frames: np.ndarray) -> np.ndarray:
        f = np.asarray(frames, dtype=np.uint8)
        b, t = f.shape[:2]
        x = f.reshape(b * t, *f.shape[2:]).astype(np.float32) / 127.5 - 1.0
        codes = self.run("vq_encoder", {"frames": np.ascontiguousarray(x.transpose(0, 3, 1, 2))})
        c = codes["codes"]
        return c.reshape(b, t, *c.shape[1:]).astype(np.int64)

    def codes_to_frames(self, codes: np.ndarray) -> np.ndarray:
        c = np.asarray(codes, dtype=np.int64)
        b, t = c.shape[:2]
        x = self.run("vq_decoder", {"codes": c.reshape(b * t, *c.shape[2:])})["frames"]
        px = np.round((np.clip(x, -1, 1) + 1) * 127.5).astype(np.uint8).transpose(0, 2, 3, 1)
        return px.reshape(b, t, *px.shape[1:])
