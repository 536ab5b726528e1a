"""The ONNX Runtime backend (the default, DESIGN §9): the graphs of an export directory behind the
backend interface. Imports no PyTorch.

It reads everything from the export's ``manifest.json`` (``nuwa.spec.manifest``): graph files,
I/O names, cache geometry and dtypes, and the model config. An export from ``nuwa export`` and
one from ``nuwa quantize`` (same graph names, ``precision`` fp16/int8, float32 I/O) load alike.
The parts, split like onnxruntime-genai's: the device's execution providers
(:mod:`.providers`), the sessions and the graph passes applied when they are made
(:mod:`.sessions`), a request's decoder state (:mod:`.request_state`), and this class, which
runs the encoders, the VQ-GAN and starts requests.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from nuwa.runtime.backends.base import Backend, Condition, RequestState, StepPool
from nuwa.runtime.backends.onnxruntime.default_precision import default_precision
from nuwa.runtime.backends.onnxruntime.int8_cpu_kernels import (
    check_int8_kernels,
    check_int8_weight_range,
    resolve_int8_kernels,
)
from nuwa.runtime.backends.onnxruntime.providers import parse_device, providers_for
from nuwa.runtime.backends.onnxruntime.request_state import (
    BoundRequestState,
    HostRequestState,
    PrefillGraph,
    StepGraph,
    io_dtype,
    to_host,
)
from nuwa.runtime.backends.onnxruntime.row_pool import RowPool
from nuwa.runtime.backends.onnxruntime.sessions import (
    GraphHooks,
    GraphPasses,
    GraphSessions,
    check_optimization,
    scatters_cache_once,
)
from nuwa.runtime.export_cache import ensure_export, is_export_dir
from nuwa.runtime.kv_cache import RingCache
from nuwa.spec.cache_geometry import CacheGeometry
from nuwa.spec.errors import BackendUnavailableError, NuwaInputError
from nuwa.spec.graph_names import (
    SKETCH_ENCODER,
    TEXT_CONDITION,
    VQ_DECODER,
    VQ_ENCODER,
    sketch_condition_key,
)
from nuwa.spec.manifest import GraphInfo, Manifest, ManifestError, load_manifest
from nuwa.spec.model_spec import ModelSpec
from nuwa.spec.pixel_scaling import model_to_pixels, pixels_to_model

ENCODER_ROWS_PER_RUN = 2  # condition-encoder batch rows per run (bounds its peak memory)


class OnnxRuntimeBackend(Backend):
    """An export directory on ONNX Runtime.

    ``io_binding``: decoder steps through IO binding (:class:`.request_state.BoundRequestState`)
    or ``session.run`` (:class:`.request_state.HostRequestState`). ``int8_kernels``: how an
    INT8 export's weight layers run on the CPU (``auto``, ``matmulnbits``, ``qdq``;
    :mod:`.int8_cpu_kernels`). ``optimization``: ``all``, or ``basic`` to execute Q/DQ pairs
    as written (exact fake quantization; no int8 kernels then). ``cache_in_place``: None
    decides (:attr:`cache_in_place`), ``False`` forces the double-buffered binding. ``hooks``:
    a caller's graph edits and run observer (:class:`.sessions.GraphHooks`; calibration)."""

    name = "onnxruntime"

    def __init__(
        self,
        manifest: Manifest,
        device: str | None = None,
        threads: int | None = None,
        io_binding: bool = True,
        int8_kernels: str = "auto",
        optimization: str = "all",
        cache_in_place: bool | None = None,
        hooks: GraphHooks | None = None,
    ) -> None:
        check_int8_kernels(int8_kernels)
        check_optimization(optimization)
        self.manifest = manifest
        self.precision = manifest.precision
        self.spec = ModelSpec.from_manifest(manifest)
        self.device_kind, self.device_id = parse_device(device)
        self.providers = providers_for(self.device_kind, self.device_id, self.precision)
        self.ort_device = "cpu" if self.device_kind == "cpu" else "cuda"
        self.threads = threads
        self.io_binding = io_binding
        self.optimization = optimization
        self._cache_in_place = cache_in_place
        dec = manifest.decoder
        self.past_names = dec.past_names()
        self.present_names = dec.present_names()
        self.cross_names = dec.cross_names()
        self.cache_geometry = CacheGeometry(
            dec.num_layers, dec.num_heads, dec.cache_slots, dec.head_dim
        )
        # how the INT8 weight layers run on the CPU (int8_cpu_kernels); None: no int8 kernels
        self.int8_kernels: str | None = None
        if self.uses_int8_kernels:
            check_int8_weight_range(manifest)
            self.int8_kernels = resolve_int8_kernels(int8_kernels)
        passes = GraphPasses.for_device(
            self.device_kind, self.int8_kernels, self.past_names, self.present_names
        )
        self.sessions = GraphSessions(
            manifest, self.providers, passes, threads, optimization, hooks
        )

    @property
    def uses_int8_kernels(self) -> bool:
        """Whether Q/DQ graphs run on ONNX Runtime's fused CPU int8 kernels."""
        return self.precision == "int8" and self.device_kind == "cpu" and self.optimization == "all"

    @classmethod
    def from_model_dir(
        cls,
        model_dir: str | Path,
        precision: str | None = None,
        device: str | None = None,
        log: Callable[[str], None] | None = None,
        threads: int | None = None,
        io_binding: bool = True,
        int8_kernels: str = "auto",
        progress: bool = True,
    ) -> OnnxRuntimeBackend:
        """An export directory (``manifest.json``), or a checkpoint directory: its bundled
        export of ``precision`` — ``None``: on the CPU the precision its
        ``runtime_defaults.json`` names, else fp32 (:mod:`.default_precision`) — or, at fp32,
        the export cache, filled on first use (keyed by its hash; exporting needs PyTorch once).
        ``progress``: a progress bar while a first use exports."""
        if precision is None and not is_export_dir(model_dir):
            precision = default_precision(model_dir, parse_device(device)[0], log)
        export_dir = ensure_export(model_dir, precision or "fp32", log, progress)
        try:
            manifest = load_manifest(export_dir)
        except ManifestError as exc:
            raise NuwaInputError(str(exc)) from None
        if manifest.target != "portable":
            raise BackendUnavailableError(
                f"{export_dir} is a --target {manifest.target} export (TensorRT plugin nodes "
                "without ONNX function bodies); onnxruntime runs the portable export"
            )
        if precision is not None and precision != manifest.precision:
            raise BackendUnavailableError(
                f"{export_dir} holds {manifest.precision} graphs, not {precision}: pass the "
                f"directory written by `nuwa quantize --precision {precision}`"
            )
        return cls(
            manifest,
            device=device,
            threads=threads,
            io_binding=io_binding,
            int8_kernels=int8_kernels,
        )

    def describe(self) -> str:
        providers = [p if isinstance(p, str) else p[0] for p in self.providers]
        kernels = f", {self.int8_kernels} int8 kernels" if self.int8_kernels else ""
        return f"onnxruntime {ort.__version__} ({self.precision}, {providers[0]}{kernels})"

    # ---- sessions --------------------------------------------------------------------------

    def session(self, graph: str) -> ort.InferenceSession:
        """The (lazily created, cached) session of one graph of the manifest."""
        return self.sessions.session(graph)

    def prepare_graph(self, graph: str, model: onnx.ModelProto) -> onnx.ModelProto:
        """``model`` (the file of ``graph``) as this backend runs it, rewritten in place (the
        file on disk is never changed): :class:`.sessions.GraphPasses`. Same outputs."""
        return self.sessions.passes.apply(self.manifest.graph(graph), model)

    def run_graph(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one graph with NumPy feeds; its declared outputs by name."""
        info = self.manifest.graph(graph)
        return dict(zip(info.output_names, self.sessions.run(info, feeds), strict=True))

    # ---- conditions ------------------------------------------------------------------------

    def condition_key(self, cond: Condition) -> str:
        """The manifest's key of a condition: ``text`` or ``sketch_t{Ts}``."""
        try:
            return self.manifest.condition_key(cond.kind, cond.grid[0])
        except ManifestError as exc:
            raise NuwaInputError(str(exc)) from None

    def _encode(self, key: str, inputs: np.ndarray, kind: str) -> Condition:
        info = self.manifest.conditions.get(key)
        if info is None:
            raise NuwaInputError(
                f"{self.manifest.directory}: no {key} condition encoder (exported: "
                f"{', '.join(sorted(self.manifest.conditions))}); re-export with more frames"
            )
        graph = self.manifest.graph(info.encoder)
        x = inputs.astype(io_dtype(graph, graph.input_names[0]))
        # A few rows at a time bounds the encoder's peak memory; its outputs are the same row
        # by row. The demo's whole-grid 3DNA calls take the grid-table body (~8 MB of scores
        # per row and layer for an 8-frame sketch); grids whose mask is too large for a table
        # take the gather body, which materialises every query's neighbourhood keys and values
        # (it would need ~360 MB per row for that sketch).
        chunks = [
            self.sessions.run(graph, {graph.input_names[0]: x[i : i + ENCODER_ROWS_PER_RUN]})
            for i in range(0, x.shape[0], ENCODER_ROWS_PER_RUN)
        ]
        merged = [np.concatenate(parts) for parts in zip(*chunks, strict=True)]
        outs = dict(zip(graph.output_names, merged, strict=True))
        pairs = [
            (outs[k], outs[v])
            for k, v in zip(self.cross_names[0::2], self.cross_names[1::2], strict=True)
        ]
        return Condition(pairs, tuple(int(x) for x in info.grid), kind, int(inputs.shape[0]))  # type: ignore[arg-type]

    def text_condition(self, text_ids: np.ndarray) -> Condition:
        ids = np.ascontiguousarray(text_ids, dtype=np.int64)
        return self._encode(TEXT_CONDITION, ids, "text")

    def sketch_codes(self, sketch: np.ndarray) -> np.ndarray:
        """Class maps ``(B, T, S, S)`` -> VQ-GAN-Seg codes ``(B, T, h, w)``."""
        s = np.asarray(sketch, dtype=np.int64)
        b, t = s.shape[:2]
        graph = self.manifest.graph(SKETCH_ENCODER)
        (codes,) = self.sessions.run(graph, {graph.input_names[0]: s.reshape(b * t, *s.shape[2:])})
        return codes.astype(np.int64).reshape(b, t, *codes.shape[1:])

    def sketch_condition(self, sketch: np.ndarray) -> Condition:
        codes = self.sketch_codes(sketch)
        return self._encode(sketch_condition_key(codes.shape[1]), codes, "sketch")

    # ---- decoder ---------------------------------------------------------------------------

    def step_graph(self, cond: Condition, num_frames: int) -> GraphInfo:
        """The ``decoder_step`` graph for a condition and a request's frame count."""
        try:
            return self.manifest.decoder_step(self.condition_key(cond), num_frames)
        except ManifestError as exc:
            raise NuwaInputError(str(exc)) from None

    def cache_dtype(self) -> np.dtype:
        """The ring cache's dtype, as the decoder-step graphs declare their ``past`` inputs."""
        steps = self.manifest.decoder_steps
        if not steps:
            return np.dtype(np.float32)
        return io_dtype(self.manifest.graph(steps[0].graph), self.past_names[0])

    @property
    def cache_in_place(self) -> bool:
        """Whether IO-bound decoder steps write the ring cache in place (one buffer set bound as
        both past and present) instead of ping-ponging between two sets: on the CPU, where every
        step graph the sessions read (the export's prepared ``cpu`` form, or the exported file)
        reads each past input only as the data of one scatter (``ScatterND`` on the CPU,
        :mod:`nuwa.export.ring_cache_writes`) whose output is the matching present (ONNX
        Runtime's CPU scatters skip their copy of the data when the output is the input's
        buffer: 8 cache copies a step saved)."""
        if self._cache_in_place is None:
            self._cache_in_place = self.device_kind == "cpu" and all(
                scatters_cache_once(
                    onnx.load(
                        str(self.sessions.source(self.manifest.graph(g.graph))[0]),
                        load_external_data=False,
                    ),
                    self.past_names,
                    self.present_names,
                )
                for g in self.manifest.decoder_steps
            )
        return self._cache_in_place and self.device_kind == "cpu"

    def new_cache(self, rows: int) -> RingCache:
        """Zeroed ring caches for ``rows`` rows: NumPy without IO binding, else device buffers
        (one set written in place, or two for ping-pong)."""
        host = RingCache.zeros(self.cache_geometry, rows, self.cache_dtype())
        if not self.io_binding:
            return host
        sets = [
            [
                ort.OrtValue.ortvalue_from_numpy(x, self.ort_device, self.device_id)
                for x in host.past
            ]
            for _ in range(1 if self.cache_in_place else 2)
        ]
        return RingCache([sets[0], sets[-1]])

    def _device_value(self, x: Any) -> Any:
        array = np.ascontiguousarray(to_host(x))
        return ort.OrtValue.ortvalue_from_numpy(array, self.ort_device, self.device_id)

    def start_request(self, cond: Condition, num_frames: int) -> RequestState:
        """The request's step graph, dtypes and session (and its prefill graph) resolved here,
        once; with IO binding the condition's K/V uploaded and the bindings made once too."""
        dec = self.manifest.decoder
        step = StepGraph.resolve(self.step_graph(cond, num_frames), self.sessions, dec)
        key = self.condition_key(cond)
        prefill = None
        if key in self.manifest.decoder_prefills:
            info = self.manifest.decoder_prefill(key)
            prefill = PrefillGraph.resolve(info, self.sessions, dec.grid[0])
        cache = self.new_cache(cond.batch)
        cross = [x for pair in cond.cross for x in pair]
        if not self.io_binding:
            return HostRequestState(
                self.sessions, step, prefill, cache, [to_host(x) for x in cross]
            )
        device_cross = [self._device_value(x) for x in cross]
        state = BoundRequestState(step, prefill, cache, device_cross, cond.batch)
        if self.device_kind == "cpu" and cache.in_place:
            state.graph_key = step.info.name  # can share steps (new_step_pool)
        return state

    def new_step_pool(self, state: RequestState) -> StepPool | None:
        """Requests of one CPU step graph share its runs (:class:`.row_pool.RowPool`); on a GPU
        (or with ping-pong caches) each request steps alone."""
        if isinstance(state, BoundRequestState) and state.graph_key is not None:
            return RowPool(state.graph)
        return None

    # ---- VQ-GAN ----------------------------------------------------------------------------

    def frames_to_codes(self, frames: np.ndarray) -> np.ndarray:
        f = np.asarray(frames, dtype=np.uint8)
        b, t = f.shape[:2]
        x = pixels_to_model(f.reshape(b * t, *f.shape[2:]))
        x = np.ascontiguousarray(np.moveaxis(x, -1, 1))  # (B*T, 3, S, S)
        graph = self.manifest.graph(VQ_ENCODER)
        (codes,) = self.sessions.run(graph, {graph.input_names[0]: x})
        return codes.astype(np.int64).reshape(b, t, *codes.shape[1:])

    def codes_to_frames(self, codes: np.ndarray) -> np.ndarray:
        c = np.asarray(codes, dtype=np.int64)
        b, t = c.shape[:2]
        graph = self.manifest.graph(VQ_DECODER)
        (x,) = self.sessions.run(graph, {graph.input_names[0]: c.reshape(b * t, *c.shape[2:])})
        pixels = model_to_pixels(x)
        pixels = np.moveaxis(pixels, 1, -1)  # (B*T, S, S, 3)
        return pixels.reshape(b, t, *pixels.shape[1:])
