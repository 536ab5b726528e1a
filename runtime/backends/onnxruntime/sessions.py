"""The ONNX Runtime sessions of one export and the graph passes applied when they are created.

:class:`GraphSessions` creates each graph's session on first use and keeps it:

1. the graph file is read; a caller's :attr:`GraphHooks.before_passes` may change it first
   (calibration attaches 3DNA function bodies to a TensorRT-target graph);
2. :class:`GraphPasses` rewrite it in memory (the file on disk is never changed): Q/DQ weight
   layers as ``MatMulNBits`` where those CPU kernels were chosen (:mod:`.int8_cpu_kernels`), and
   on the CPU the decoder step's ring-cache writes as ``ScatterND``
   (:mod:`nuwa.export.ring_cache_writes`) — unless the export carries that step's prepared
   ``cpu`` form (:mod:`nuwa.export.prepared_graphs`), which is then read instead and only the
   passes left (``MatMulNBits``) are applied;
3. a caller's :attr:`GraphHooks.after_passes` may change it again (calibration adds the
   activations it observes as outputs);
4. :func:`session_options` (threads, optimization level, memory arena) and the execution
   providers (:mod:`.providers`) make the session.

:meth:`GraphSessions.run` runs one graph with NumPy feeds (``session.run``) and hands the
tensors of :attr:`GraphHooks.fetch` to :attr:`GraphHooks.on_run`: the public hooks calibration
composes the backend with (:mod:`nuwa.calibration.onnx_runner`). :func:`scatters_cache_once`
tells whether a step graph may write its cache in place.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from nuwa.export.matmul_nbits import rewrite_to_matmul_nbits
from nuwa.export.ring_cache_writes import (
    rewrite_ring_writes_to_scatter_nd,
)
from nuwa.spec.errors import BackendUnavailableError
from nuwa.spec.graph_names import DECODER_STEP_KIND
from nuwa.spec.manifest import PREPARED_CPU, PREPARED_CPU_MATMULNBITS, GraphInfo, Manifest

# Graph kinds whose sessions use ONNX Runtime's CPU memory arena. An arena keeps its peak for the
# session's life, one arena per graph: the graphs run once per request on a whole batch
# (encoders, prefill, VQ-GAN) would each hold their largest batch's activations (a 32-sample
# quality gate process held ~10 GB). The decode step, run per token on small tensors, keeps it.
ARENA_GRAPH_KINDS = frozenset({DECODER_STEP_KIND})
# "all": every ONNX Runtime optimization (Q/DQ fused into int8 kernels); "basic": Q/DQ pairs
# executed as written (exact fake quantization, no int8 kernels)
OPTIMIZATIONS = ("all", "basic")

GraphEdit = Callable[[str, onnx.ModelProto], onnx.ModelProto]  # (graph name, model) -> model
RunHook = Callable[[str, dict[str, np.ndarray], dict[str, np.ndarray]], None]


def uses_memory_arena(graph: GraphInfo) -> bool:
    return graph.kind in ARENA_GRAPH_KINDS


def check_optimization(optimization: str) -> None:
    if optimization not in OPTIMIZATIONS:
        raise ValueError(
            f"optimization must be one of {', '.join(OPTIMIZATIONS)}, got {optimization!r}"
        )


def session_options(
    threads: int | None, optimization: str = "all", arena: bool = True
) -> ort.SessionOptions:
    """Options of every session the backend makes: ``threads`` intra-op threads (None: ONNX
    Runtime's default), the optimization level, the CPU memory arena on or off."""
    check_optimization(optimization)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if optimization == "all"
        else ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    )
    if threads is not None:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # warnings of the optimizer are not the user's business
    opts.enable_cpu_mem_arena = arena
    # idle worker threads sleep instead of spinning: a decode step is many tiny ops, and
    # spinning threads fight whatever else runs on a small CPU (3x slower when shared)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def scatters_cache_once(model: onnx.ModelProto, past: list[str], present: list[str]) -> bool:
    """Whether each ``past`` input is read by exactly one node, a ``ScatterElements`` (as
    exported) or ``ScatterND`` (as prepared for the CPU, :mod:`nuwa.export.ring_cache_writes`)
    taking it as its data and writing the matching ``present`` output: then that output may
    share the input's buffer (nothing else sees the cache before or after the write)."""
    readers: dict[str, list[onnx.NodeProto]] = {name: [] for name in past}
    for node in model.graph.node:
        for name in set(node.input) & readers.keys():
            readers[name].append(node)
    return all(
        len(nodes) == 1
        and nodes[0].op_type in ("ScatterElements", "ScatterND")
        and nodes[0].input[0] == name
        and list(nodes[0].output) == [out]
        for (name, nodes), out in zip(readers.items(), present, strict=True)
    )


@dataclass(frozen=True)
class GraphPasses:
    """The rewrites the backend applies to a graph when it creates its session."""

    int8_kernels: str | None  # "matmulnbits" rewrites the Q/DQ weight layers
    ring_writes_as_scatter_nd: bool  # decoder steps' ring writes as ScatterND (the CPU)
    past: list[str]
    present: list[str]

    @classmethod
    def for_device(
        cls, device_kind: str, int8_kernels: str | None, past: list[str], present: list[str]
    ) -> GraphPasses:
        """The passes of a device kind: ring writes as ``ScatterND`` on the CPU only (other
        providers run the decoder step as exported)."""
        return cls(int8_kernels, device_kind == "cpu", past, present)

    def changes(self, graph: GraphInfo) -> bool:
        """Whether :meth:`apply` changes this graph."""
        return self.int8_kernels == "matmulnbits" or self._scatter_nd(graph)

    def _scatter_nd(self, graph: GraphInfo) -> bool:
        return self.ring_writes_as_scatter_nd and graph.kind == DECODER_STEP_KIND

    def prepared_forms(self, graph: GraphInfo) -> list[tuple[str, GraphPasses]]:
        """The prepared forms of ``graph`` an export may carry that do these passes, best first,
        each with the passes left to apply to it: ``cpu-matmulnbits`` (everything) where the
        ``MatMulNBits`` kernels run, ``cpu`` (all but ``MatMulNBits``) for a CPU step."""
        forms = []
        if self.int8_kernels == "matmulnbits":
            forms.append(
                (PREPARED_CPU_MATMULNBITS, GraphPasses(None, False, self.past, self.present))
            )
        if self._scatter_nd(graph):
            forms.append(
                (PREPARED_CPU, GraphPasses(self.int8_kernels, False, self.past, self.present))
            )
        return forms

    def apply(self, graph: GraphInfo, model: onnx.ModelProto) -> onnx.ModelProto:
        """``model`` (the file of ``graph``) rewritten in place; same outputs as the file."""
        if self.int8_kernels == "matmulnbits":
            rewrite_to_matmul_nbits(model)
        if self._scatter_nd(graph):
            rewrite_ring_writes_to_scatter_nd(model, self.past, self.present)
        return model


@dataclass(frozen=True)
class GraphHooks:
    """What a caller adds to how the backend loads and runs its graphs (all optional).

    ``before_passes`` / ``after_passes`` edit a graph before / after :class:`GraphPasses`;
    ``fetch`` names, per graph, extra tensors to fetch on every ``session.run`` of it (an
    ``after_passes`` edit must make them graph outputs), handed with the feeds to ``on_run``.
    IO-bound decoder steps run no hooks: a caller that needs them runs without IO binding."""

    before_passes: GraphEdit | None = None
    after_passes: GraphEdit | None = None
    fetch: Mapping[str, Sequence[str]] = field(default_factory=dict)
    on_run: RunHook | None = None


class GraphSessions:
    """The lazily created, cached session of each graph of one manifest."""

    def __init__(
        self,
        manifest: Manifest,
        providers: list[Any],
        passes: GraphPasses,
        threads: int | None = None,
        optimization: str = "all",
        hooks: GraphHooks | None = None,
    ) -> None:
        check_optimization(optimization)
        self.manifest = manifest
        self.providers = providers
        self.passes = passes
        self.threads = threads
        self.optimization = optimization
        self.hooks = hooks or GraphHooks()
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._creating = threading.Lock()  # concurrent first uses make one session, not two

    def session(self, graph: str) -> ort.InferenceSession:
        made = self._sessions.get(graph)
        if made is None:
            with self._creating:
                if graph not in self._sessions:
                    self._sessions[graph] = self._create(self.manifest.graph(graph))
                made = self._sessions[graph]
        return made

    def use_session(self, graph: str, session: ort.InferenceSession) -> None:
        """Run ``graph`` with the caller's ``session`` from now on: one it made of
        :meth:`prepare`'s model with options of its own (the decode bench's profiling run)."""
        self.manifest.graph(graph)  # a clear error for a graph the export does not have
        self._sessions[graph] = session

    def prepare(self, graph: GraphInfo, model: onnx.ModelProto) -> onnx.ModelProto:
        """``model`` as the session of ``graph`` runs it: the hooks' edits and the passes."""
        hooks = self.hooks
        if hooks.before_passes is not None:
            model = hooks.before_passes(graph.name, model)
        model = self.passes.apply(graph, model)
        if hooks.after_passes is not None:
            model = hooks.after_passes(graph.name, model)
        return model

    def source(self, graph: GraphInfo) -> tuple[Path, GraphPasses]:
        """The file a session of ``graph`` reads and the passes still to apply to it: the
        export's prepared form where it carries the one these passes make (and no hook edits
        the graph first), else the graph's own file and every pass."""
        if self.hooks.before_passes is None:
            for key, left in self.passes.prepared_forms(graph):
                prepared = self.manifest.prepared_path(graph.name, key)
                if prepared is not None:
                    return prepared, left
        return self.manifest.path(graph.name), self.passes

    def _create(self, graph: GraphInfo) -> ort.InferenceSession:
        path, passes = self.source(graph)
        opts = session_options(self.threads, self.optimization, uses_memory_arena(graph))
        hooks = self.hooks
        source: str | bytes = str(path)
        if hooks.before_passes or hooks.after_passes or passes.changes(graph):
            model = onnx.load(str(path))
            if hooks.before_passes is not None:
                model = hooks.before_passes(graph.name, model)
            model = passes.apply(graph, model)
            if hooks.after_passes is not None:
                model = hooks.after_passes(graph.name, model)
            source = model.SerializeToString()
        try:
            return ort.InferenceSession(source, sess_options=opts, providers=self.providers)
        except Exception as exc:  # ORT raises its own exception types
            raise BackendUnavailableError(
                f"onnxruntime cannot load {path}: {str(exc).splitlines()[0]}"
            ) from exc

    def run(self, graph: GraphInfo, feeds: dict[str, Any]) -> list[np.ndarray]:
        """The graph's declared outputs for NumPy ``feeds`` (plus the hooks' fetches)."""
        names = graph.output_names
        extra = [e for e in self.hooks.fetch.get(graph.name, ()) if e not in names]
        values = self.session(graph.name).run(names + extra, feeds)
        if self.hooks.on_run is not None:
            self.hooks.on_run(
                graph.name, feeds, dict(zip(extra, values[len(names) :], strict=True))
            )
        return [np.asarray(v) for v in values[: len(names)]]
