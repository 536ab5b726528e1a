"""The ONNX Runtime backend (the default, DESIGN §9): the graphs of an export directory behind the
backend interface. Imports no PyTorch.

It reads everything from the export's ``manifest.json`` (``nuwa.spec.manifest``): graph files,
I/O names, cache geometry and dtypes, and the model config. An export from ``nuwa export`` and
one from ``nuwa quantize`` (same graph names, ``precision`` fp16/int8, float32 I/O) load alike.

Devices / execution providers:

- ``cpu`` (default): ``CPUExecutionProvider``;
- ``cuda``: ``CUDAExecutionProvider`` (needs ``onnxruntime-gpu``);
- ``tensorrt``: ``TensorrtExecutionProvider`` (then CUDA, then CPU for what it does not take),
  with FP16/INT8 enabled to match the export, an engine cache beside the export cache keyed by
  TensorRT version, GPU, precision and plugin hash (:func:`tensorrt_engine_cache_dir`), and the
  plugin's static-registration library (``libnuwa_trt_register.so``, :mod:`nuwa.plugins`) as an
  extra plugin library when the plugin is built. The portable export's 3DNA nodes run their
  function bodies there; a graph converted with
  :func:`nuwa.export.onnx_function.to_ort_tensorrt` binds the fused plugin instead.

Two ways to run the decoder step, side by side:

- ``io_binding=False`` — the obvious path: ``session.run`` with NumPy feeds; the ``present``
  outputs come back as new arrays and become the next step's ``past``;
- ``io_binding=True`` (default) — :class:`BoundRingCache`: preallocated cache buffers on the
  session's device, cross-attention K/V uploaded once per request, the bindings made once per
  request (:class:`StepBindings`); a step refreshes token ids and positions in place and reads
  the logits, the only values that cross to the host. On the CPU one buffer set is bound as
  both ``past`` and ``present`` and the step's scatter writes its one new slot in
  place (:attr:`OnnxRuntimeBackend.cache_in_place`); elsewhere two sets are bound as ``past``
  and ``present`` and swapped after every step (ping-pong). On a GPU the KV cache never leaves
  the device; on the CPU it saves allocating and copying the cache each step. Tests check every
  way gives the same logits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from nuwa.runtime.backends.base import Backend, Condition
from nuwa.runtime.backends.int8_cpu_kernels import (
    check_int8_kernels,
    resolve_int8_kernels,
    rewrite_to_matmul_nbits,
)
from nuwa.runtime.backends.ring_cache_writes import rewrite_ring_writes_to_scatter_nd
from nuwa.runtime.cpu_features import SATURATION_FREE_WEIGHT_MAX, int8_products_saturate
from nuwa.runtime.export_cache import cache_root, ensure_export
from nuwa.runtime.kv_cache import RingCache
from nuwa.spec.errors import BackendUnavailableError, NuwaInputError
from nuwa.spec.model_spec import ModelSpec

try:
    import onnxruntime as ort
except ImportError as exc:  # pragma: no cover - exercised where onnxruntime is absent
    raise BackendUnavailableError(
        'the onnxruntime backend needs ONNX Runtime: pip install "nuwa-edge" (or '
        '"nuwa-edge[gpu]" for onnxruntime-gpu)'
    ) from exc

from nuwa.export import GraphInfo, Manifest, ManifestError, load_manifest

DEVICES = ("cpu", "cuda", "tensorrt")
GPU_HINT = 'pip install "nuwa-edge[gpu]" (onnxruntime-gpu) on a machine with an NVIDIA GPU'


ENCODER_ROWS_PER_RUN = 2  # condition-encoder batch rows per run (bounds its peak memory)
# Graph kinds whose sessions use ONNX Runtime's CPU memory arena. An arena keeps its peak for the
# session's life, one arena per graph: the graphs run once per request on a whole batch
# (encoders, prefill, VQ-GAN) would each hold their largest batch's activations (a 32-sample
# quality gate process held ~10 GB). The decode step, run per token on small tensors, keeps it.
ARENA_GRAPH_KINDS = frozenset({"decoder_step"})


def uses_memory_arena(graph: GraphInfo) -> bool:
    return graph.kind in ARENA_GRAPH_KINDS


def _np_dtype(name: str) -> np.dtype:
    return np.dtype(name)


def parse_device(device: str | None) -> tuple[str, int]:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"tensorrt"``, ``"tensorrt:0"`` -> (kind, id)."""
    text = (device or "cpu").lower()
    kind, _, index = text.partition(":")
    if kind not in DEVICES or (index and not index.isdigit()):
        raise BackendUnavailableError(
            f"unknown onnxruntime device {device!r}; choose one of: {', '.join(DEVICES)} "
            "(optionally with :N)"
        )
    return kind, int(index or 0)


def plugin_library() -> str | None:
    """Path of the built ``libnuwa_plugins.so``, or None when it has not been built."""
    try:
        from nuwa import plugins

        return str(plugins.library_path())
    except Exception:  # not built, or built without the pieces asked for
        return None


def tensorrt_registration_library() -> str | None:
    """Path of ``libnuwa_trt_register.so`` (registers the 3DNA TensorRT plugin when it is
    dlopened, which is all ONNX Runtime's TensorRT EP does with ``trt_extra_plugin_lib_paths``),
    or None when the plugin library was built without TensorRT."""
    try:
        from nuwa.plugins import library

        return str(library.register_library_path())
    except Exception:  # not built, or built without TensorRT headers
        return None


def tensorrt_engine_cache_dir(precision: str, device_id: int) -> Path:
    """Where ONNX Runtime's TensorRT EP keeps its engines: one folder per engine cache key
    (:func:`~nuwa.runtime.backends.tensorrt.engines_json.engine_cache_key`: TensorRT version, GPU,
    precision,
    plugin library hash), so an engine built by another TensorRT, GPU or plugin build is never
    picked up. Parts that cannot be read here (no ``tensorrt`` wheel, no cuda-python) count as
    ``unknown``."""
    import importlib.metadata

    from nuwa.runtime.backends.tensorrt.engine_build import gpu_identity
    from nuwa.runtime.backends.tensorrt.engines_json import engine_cache_key
    from nuwa.spec.manifest import sha256_file

    try:
        version = importlib.metadata.version("tensorrt")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    try:
        gpu = gpu_identity(device_id)
    except Exception:  # no cuda-python or no device: the EP reports the real problem
        gpu = {"name": "unknown", "compute_capability": "unknown"}
    lib = tensorrt_registration_library()
    plugin = sha256_file(plugin_library() or lib) if lib else "none"
    key = engine_cache_key(version, gpu, precision, plugin)
    return cache_root() / "trt_engines" / key


def providers_for(kind: str, device_id: int, precision: str) -> list[Any]:
    """ONNX Runtime execution providers (with options) for a device kind; a clear error names
    what to install when the provider is not in this onnxruntime build."""
    available = ort.get_available_providers()
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    cuda = ("CUDAExecutionProvider", {"device_id": device_id})
    if "CUDAExecutionProvider" not in available:
        raise BackendUnavailableError(
            f"onnxruntime {ort.__version__} here has no CUDA execution provider "
            f"(it has {', '.join(available)}): {GPU_HINT}"
        )
    if kind == "cuda":
        return [cuda, "CPUExecutionProvider"]
    if "TensorrtExecutionProvider" not in available:
        raise BackendUnavailableError(
            "this onnxruntime build has no TensorRT execution provider: install TensorRT and "
            f"{GPU_HINT}"
        )
    engines = tensorrt_engine_cache_dir(precision, device_id)
    engines.mkdir(parents=True, exist_ok=True)
    trt: dict[str, Any] = {
        "device_id": device_id,
        "trt_fp16_enable": precision == "fp16",
        "trt_int8_enable": precision == "int8",  # explicit Q/DQ graphs: no calibration table
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(engines),
        "trt_timing_cache_enable": True,
    }
    lib = tensorrt_registration_library()  # dlopened by the EP: registers at load
    if lib is not None:
        trt["trt_extra_plugin_lib_paths"] = lib
    return [("TensorrtExecutionProvider", trt), cuda, "CPUExecutionProvider"]


def _to_host(x: Any) -> np.ndarray:
    return x if isinstance(x, np.ndarray) else x.numpy()


def _scatters_cache_once(model: onnx.ModelProto, past: list[str], present: list[str]) -> bool:
    """Whether each ``past`` input is read by exactly one node, a ``ScatterElements`` (as
    exported) or ``ScatterND`` (as rewritten for the CPU, :mod:`.ring_cache_writes`) taking it
    as its data and writing the matching ``present`` output: then that output may share the
    input's buffer (nothing else sees the cache before or after the write)."""
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


@dataclass
class StepBindings:
    """A decoder step's two IO bindings (cache set 0 as past, set 1 as past; the same set twice
    when the cache is written in place), made once per (graph, condition): every step only
    refreshes the token ids and positions in place."""

    graph: str
    cond: Condition  # the condition whose cross K/V are bound
    ids: Any  # OrtValue (host), refreshed in place each step
    positions: Any
    logits: Any  # OrtValue (host) the step writes its logits into
    bindings: tuple[Any, Any]


@dataclass
class BoundRingCache:
    """Ring caches kept on the session's device for IO binding: double-buffered, or one set
    bound as both past and present where the step writes its cache in place."""

    buffers: list[list[Any]]  # two sets of OrtValues in past_names order (the same list twice)
    current: int = 0  # which set holds the cache now (bound as past)
    cross: list[Any] = field(default_factory=list)  # device cross K/V of ``cross_owner``
    cross_owner: Condition | None = None  # the condition they were uploaded from
    step: StepBindings | None = None

    @property
    def past(self) -> list[Any]:
        return self.buffers[self.current]

    @property
    def present(self) -> list[Any]:
        return self.buffers[1 - self.current]

    @property
    def in_place(self) -> bool:
        return self.buffers[0] is self.buffers[1]

    def swap(self) -> None:
        self.current = 1 - self.current

    def host_layers(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The cache as NumPy ``(key, value)`` per layer (a copy; for tests and debugging)."""
        arrays = [v.numpy() for v in self.past]
        return list(zip(arrays[0::2], arrays[1::2], strict=True))


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(
        self,
        manifest: Manifest,
        device: str | None = None,
        threads: int | None = None,
        io_binding: bool = True,
        int8_kernels: str = "auto",
    ) -> None:
        self.manifest = manifest
        self.precision = manifest.precision
        self.spec = ModelSpec.from_dict(manifest.config)
        self.device_kind, self.device_id = parse_device(device)
        self.providers = providers_for(self.device_kind, self.device_id, self.precision)
        self.ort_device = "cpu" if self.device_kind == "cpu" else "cuda"
        self.threads = threads
        self.io_binding = io_binding
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._cache_in_place: bool | None = None
        dec = manifest.decoder
        self.past_names = dec.past_names()
        self.present_names = dec.present_names()
        self.cross_names = dec.cross_names()
        if dec.cache_slots != self.spec.cache_slots:
            raise ManifestError(
                f"{manifest.directory}: manifest cache_slots {dec.cache_slots} != config's "
                f"{self.spec.cache_slots}"
            )
        self._check_int8_weight_range()
        # how the INT8 weight layers run on the CPU (int8_cpu_kernels); None: no int8 kernels
        check_int8_kernels(int8_kernels)
        self.int8_kernels = (
            resolve_int8_kernels(int8_kernels) if self._uses_int8_kernels() else None
        )

    def _uses_int8_kernels(self) -> bool:
        """Whether Q/DQ graphs run on ONNX Runtime's fused CPU int8 kernels."""
        return self.precision == "int8" and self.device_kind == "cpu"

    def _check_int8_weight_range(self) -> None:
        weight_max = self.manifest.int8_weight_max
        if (
            weight_max is not None
            and weight_max > SATURATION_FREE_WEIGHT_MAX
            and self._uses_int8_kernels()
            and int8_products_saturate()
        ):
            raise BackendUnavailableError(
                f"{self.manifest.directory}: INT8 weights in [-{weight_max}, {weight_max}] on "
                "an x86 CPU without VNNI, where ONNX Runtime's int8 kernels saturate and would "
                "give wrong outputs; quantize for this CPU with `nuwa quantize --weight-range "
                "reduced` (the default for portable exports), or skip the quality gates "
                "(--no-gates) when the export is meant for another machine"
            )

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
        """An export directory (``manifest.json``), or a checkpoint directory exported to the
        cache on first use (keyed by its hash; exporting needs PyTorch once). ``int8_kernels``:
        how an INT8 export's weight layers run on the CPU (``auto``, ``matmulnbits``, ``qdq``;
        :mod:`.int8_cpu_kernels`). ``progress``: a progress bar while a first use exports."""
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
        if graph not in self._sessions:
            self._sessions[graph] = self._create_session(graph)
        return self._sessions[graph]

    def _create_session(self, graph: str) -> ort.InferenceSession:
        """A session for one graph file (subclasses change how the graph is loaded)."""
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads is not None:
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # warnings of the optimizer are not the user's business
        opts.enable_cpu_mem_arena = uses_memory_arena(self.manifest.graph(graph))
        # idle worker threads sleep instead of spinning: a decode step is many tiny ops, and
        # spinning threads fight whatever else runs on a small CPU (3x slower when shared)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = self.manifest.path(graph)
        source: str | bytes = str(path)
        if self._rewrites(graph):
            source = self.prepare_graph(graph, onnx.load(str(path))).SerializeToString()
        try:
            return ort.InferenceSession(source, sess_options=opts, providers=self.providers)
        except Exception as exc:  # ORT raises its own exception types
            raise BackendUnavailableError(
                f"onnxruntime cannot load {path}: {str(exc).splitlines()[0]}"
            ) from exc

    def _rewrites(self, graph: str) -> bool:
        """Whether :meth:`prepare_graph` changes this graph."""
        return self.int8_kernels == "matmulnbits" or self._ring_writes_as_scatter_nd(graph)

    def _ring_writes_as_scatter_nd(self, graph: str) -> bool:
        """Whether this graph's ring-cache writes run as ``ScatterND``: decoder steps on the CPU."""
        return self.device_kind == "cpu" and self.manifest.graph(graph).kind == "decoder_step"

    def prepare_graph(self, graph: str, model: onnx.ModelProto) -> onnx.ModelProto:
        """``model`` (the file of ``graph``) as this backend runs it, rewritten in place (the
        file on disk is never changed): Q/DQ weight layers as ``MatMulNBits`` when those kernels
        were chosen (:mod:`.int8_cpu_kernels`), and on the CPU the decoder step's ring-cache
        writes as ``ScatterND`` (:mod:`.ring_cache_writes`). Same outputs as the file."""
        if self.int8_kernels == "matmulnbits":
            rewrite_to_matmul_nbits(model)
        if self._ring_writes_as_scatter_nd(graph):
            rewrite_ring_writes_to_scatter_nd(model, self.past_names, self.present_names)
        return model

    def _run(self, graph: GraphInfo, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        outs = self.session(graph.name).run(graph.output_names, feeds)
        return [np.asarray(o) for o in outs]

    def _input_dtype(self, graph: GraphInfo, name: str) -> np.dtype:
        for t in graph.inputs:
            if t.name == name:
                return _np_dtype(t.dtype)
        raise ManifestError(f"graph {graph.name} has no input {name!r}")

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
        x = inputs.astype(self._input_dtype(graph, graph.input_names[0]))
        # A few rows at a time bounds the encoder's peak memory; its outputs are the same row
        # by row. The demo's whole-grid 3DNA calls take the grid-table body (~8 MB of scores
        # per row and layer for an 8-frame sketch); grids whose mask is too large for a table
        # take the gather body, which materialises every query's neighbourhood keys and values
        # (it would need ~360 MB per row for that sketch).
        chunks = [
            self._run(graph, {graph.input_names[0]: x[i : i + ENCODER_ROWS_PER_RUN]})
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
        return self._encode("text", ids, "text")

    def sketch_codes(self, sketch: np.ndarray) -> np.ndarray:
        """Class maps ``(B, T, S, S)`` -> VQ-GAN-Seg codes ``(B, T, h, w)``."""
        s = np.asarray(sketch, dtype=np.int64)
        b, t = s.shape[:2]
        graph = self.manifest.graph("sketch_encoder")
        (codes,) = self._run(graph, {graph.input_names[0]: s.reshape(b * t, *s.shape[2:])})
        return codes.astype(np.int64).reshape(b, t, *codes.shape[1:])

    def sketch_condition(self, sketch: np.ndarray) -> Condition:
        codes = self.sketch_codes(sketch)
        return self._encode(f"sketch_t{codes.shape[1]}", codes, "sketch")

    # ---- decoder ---------------------------------------------------------------------------

    def step_graph(self, cond: Condition, num_frames: int) -> GraphInfo:
        """The ``decoder_step`` graph for a condition and a request's frame count."""
        try:
            return self.manifest.decoder_step(self.condition_key(cond), num_frames)
        except ManifestError as exc:
            raise NuwaInputError(str(exc)) from None

    def _cache_dtype(self, graph: GraphInfo | None = None) -> np.dtype:
        steps = self.manifest.decoder_steps
        if graph is None and steps:
            graph = self.manifest.graph(steps[0].graph)
        return self._input_dtype(graph, self.past_names[0]) if graph else np.dtype(np.float32)

    def new_cache(self, rows: int) -> RingCache | BoundRingCache:
        host = RingCache.zeros(self.spec, rows, self._cache_dtype())
        if not self.io_binding:
            return host
        flat = [x for pair in host.layers for x in pair]
        sets = [
            [ort.OrtValue.ortvalue_from_numpy(x, self.ort_device, self.device_id) for x in flat]
            for _ in range(1 if self.cache_in_place else 2)
        ]
        return BoundRingCache([sets[0], sets[-1]])

    @property
    def cache_in_place(self) -> bool:
        """Whether IO-bound decoder steps write the ring cache in place (one buffer set bound as
        both past and present) instead of ping-ponging between two sets: on the CPU, where every
        exported step graph reads each past input only as the data of one ``ScatterElements``
        whose output is the matching present (on the CPU it runs as ``ScatterND``,
        :mod:`.ring_cache_writes`; ONNX Runtime's CPU scatters skip their copy of the data
        when the output is the input's buffer: 8 cache copies a step saved)."""
        if self._cache_in_place is None:
            self._cache_in_place = self.device_kind == "cpu" and all(
                _scatters_cache_once(
                    onnx.load(str(self.manifest.path(g.graph)), load_external_data=False),
                    self.past_names,
                    self.present_names,
                )
                for g in self.manifest.decoder_steps
            )
        return self._cache_in_place

    def decoder_step(
        self,
        tokens: np.ndarray,
        positions: np.ndarray,
        cache: Any,
        cond: Condition,
        num_frames: int,
    ) -> tuple[np.ndarray, Any]:
        graph = self.step_graph(cond, num_frames)
        dec = self.manifest.decoder
        ids = np.ascontiguousarray(tokens, dtype=self._input_dtype(graph, dec.input_ids))
        pos = np.ascontiguousarray(positions, dtype=self._input_dtype(graph, dec.positions))
        if isinstance(cache, BoundRingCache):
            return self._bound_step(graph, ids, pos, cache, cond), cache
        feeds: dict[str, np.ndarray] = {dec.input_ids: ids, dec.positions: pos}
        feeds.update(
            cache.feeds(list(zip(self.past_names[0::2], self.past_names[1::2], strict=True)))
        )
        for (kname, vname), (k, v) in zip(
            zip(self.cross_names[0::2], self.cross_names[1::2], strict=True),
            cond.cross,
            strict=True,
        ):
            feeds[kname], feeds[vname] = _to_host(k), _to_host(v)
        outs = dict(zip(graph.output_names, self._run(graph, feeds), strict=True))
        present = [outs[n] for n in self.present_names]
        layers = list(zip(present[0::2], present[1::2], strict=True))
        return outs[dec.logits].astype(np.float32, copy=False), RingCache(layers)

    def prefill_frames(
        self, frames: np.ndarray, cache: RingCache | BoundRingCache, cond: Condition
    ) -> RingCache | BoundRingCache | None:
        """The export's ``decoder_prefill`` graph (text conditions): the whole prefix in one
        run (4-8x faster than stepping through it, measured at export). With IO binding the
        result lands in the cache's current device buffers."""
        key = self.condition_key(cond)
        if key not in self.manifest.decoder_prefills or frames.shape[1] > self.spec.frames:
            return None
        graph = self.manifest.decoder_prefill(key)
        tokens_name = graph.input_names[0]
        tokens = np.ascontiguousarray(frames, dtype=self._input_dtype(graph, tokens_name))
        # the last layer's cross K/V feed no cache: the exported graph does not take them
        wanted = set(graph.input_names)
        if not isinstance(cache, BoundRingCache):
            feeds: dict[str, Any] = {tokens_name: tokens}
            for name, value in zip(
                self.cross_names, [x for pair in cond.cross for x in pair], strict=True
            ):
                if name in wanted:
                    feeds[name] = _to_host(value)
            outs = dict(zip(graph.output_names, self._run(graph, feeds), strict=True))
            present = [outs[n] for n in self.present_names]
            return RingCache(list(zip(present[0::2], present[1::2], strict=True)))
        self._upload_cross(cache, cond)
        binding = self.session(graph.name).io_binding()
        binding.bind_cpu_input(tokens_name, tokens)
        for name, value in zip(self.cross_names, cache.cross, strict=True):
            if name in wanted:
                binding.bind_ortvalue_input(name, value)
        for name, value in zip(self.present_names, cache.past, strict=True):
            binding.bind_ortvalue_output(name, value)  # written in place: the cache "now"
        self.session(graph.name).run_with_iobinding(binding)
        return cache

    def _upload_cross(self, cache: BoundRingCache, cond: Condition) -> None:
        """The condition's cross K/V on the session's device, once per request."""
        if cache.cross_owner is cond:
            return
        cache.cross = [
            ort.OrtValue.ortvalue_from_numpy(
                np.ascontiguousarray(_to_host(x)), self.ort_device, self.device_id
            )
            for pair in cond.cross
            for x in pair
        ]
        cache.cross_owner = cond

    def _bound_step(
        self,
        graph: GraphInfo,
        ids: np.ndarray,
        pos: np.ndarray,
        cache: BoundRingCache,
        cond: Condition,
    ) -> np.ndarray:
        step = cache.step
        if step is None or step.graph != graph.name or step.cond is not cond:
            step = cache.step = self._bind_step(graph, ids, pos, cache, cond)
        step.ids.update_inplace(ids)
        step.positions.update_inplace(pos)
        self.session(graph.name).run_with_iobinding(step.bindings[cache.current])
        cache.swap()
        return np.array(step.logits.numpy(), dtype=np.float32)  # a copy: the buffer is reused

    def _bind_step(
        self,
        graph: GraphInfo,
        ids: np.ndarray,
        pos: np.ndarray,
        cache: BoundRingCache,
        cond: Condition,
    ) -> StepBindings:
        """Upload the condition's K/V to the device (once per request) and bind everything."""
        dec = self.manifest.decoder
        self._upload_cross(cache, cond)
        session = self.session(graph.name)
        ids_value = ort.OrtValue.ortvalue_from_numpy(ids.copy())
        pos_value = ort.OrtValue.ortvalue_from_numpy(pos.copy())
        vocab = self.manifest.decoder.vocab_size
        logits_dtype = next(_np_dtype(t.dtype) for t in graph.outputs if t.name == dec.logits)
        logits = ort.OrtValue.ortvalue_from_numpy(np.zeros((len(ids), vocab), logits_dtype))
        pair = []
        for current in (0, 1):
            past, present = cache.buffers[current], cache.buffers[1 - current]
            binding = session.io_binding()
            binding.bind_ortvalue_input(dec.input_ids, ids_value)
            binding.bind_ortvalue_input(dec.positions, pos_value)
            for name, value in zip(self.past_names, past, strict=True):
                binding.bind_ortvalue_input(name, value)
            for name, value in zip(self.cross_names, cache.cross, strict=True):
                binding.bind_ortvalue_input(name, value)
            binding.bind_ortvalue_output(dec.logits, logits)
            for name, value in zip(self.present_names, present, strict=True):
                binding.bind_ortvalue_output(name, value)
            pair.append(binding)
        return StepBindings(graph.name, cond, ids_value, pos_value, logits, (pair[0], pair[1]))

    # ---- VQ-GAN ----------------------------------------------------------------------------

    def frames_to_codes(self, frames: np.ndarray) -> np.ndarray:
        f = np.asarray(frames, dtype=np.uint8)
        b, t = f.shape[:2]
        x = f.reshape(b * t, *f.shape[2:]).astype(np.float32) / np.float32(127.5) - 1.0
        x = np.ascontiguousarray(np.moveaxis(x, -1, 1))  # (B*T, 3, S, S)
        graph = self.manifest.graph("vq_encoder")
        (codes,) = self._run(graph, {graph.input_names[0]: x})
        return codes.astype(np.int64).reshape(b, t, *codes.shape[1:])

    def codes_to_frames(self, codes: np.ndarray) -> np.ndarray:
        c = np.asarray(codes, dtype=np.int64)
        b, t = c.shape[:2]
        graph = self.manifest.graph("vq_decoder")
        (x,) = self._run(graph, {graph.input_names[0]: c.reshape(b * t, *c.shape[2:])})
        pixels = np.round((np.clip(x, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
        pixels = np.moveaxis(pixels, 1, -1)  # (B*T, S, S, 3)
        return pixels.reshape(b, t, *pixels.shape[1:])
