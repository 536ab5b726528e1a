"""The TensorRT backend: engines with the 3DNA plugin (DESIGN §6–§9), built on this GPU on
first use and cached, or written by ``nuwa build-engine``.

``load_backend("tensorrt", DIR, precision=...)`` (:meth:`TensorRTBackend.from_model_dir`) takes
an engine directory (``engines.json``) as it is, a ``--target tensorrt`` export (its engines from
the engine cache, built on first use) or a checkpoint (its ``tensorrt`` export from the export
cache first): :mod:`.engine_cache`. Then it opens the engine directory:

1. TensorRT must be importable (else :class:`BackendUnavailableError` naming what to install);
2. ``engines.json`` (:mod:`.engines_json`) must exist, match the requested
   precision, and have been built with **this** TensorRT version for **this** GPU model — else a
   clear "rebuild with nuwa build-engine" error, before TensorRT sees a foreign plan;
3. the plugin library the engines were built with is loaded into TensorRT's plugin registry
   (the same file: its SHA-256 is checked), then each engine is deserialized on first use
   (its SHA-256 checked too).

The parts mirror the ONNX Runtime backend's: device memory and tensor types
(:mod:`.device_memory`, cuda-python, not PyTorch), one engine and its context
(:mod:`.engine_runner`), a request's decoder state (:mod:`.request_state`: the step engine and
the device-resident cross K/V and ping-pong ring cache, resolved once per request), and this
class. Graph and tensor names come from the manifest and :mod:`nuwa.spec.graph_names`; the KV
cache buffers take the decoder graphs' cache dtype and the manifest's cache geometry.

Not run on real TensorRT: the machine that wrote this has no GPU and no TensorRT. The code
follows the TensorRT 10.x Python API (``deserialize_cuda_engine``, ``create_execution_context``,
``set_input_shape``, ``get_tensor_profile_shape``, ``set_tensor_address``, ``execute_async_v3``);
the checks before TensorRT is touched and the engine runner are tested with fakes.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nuwa.plugins.library import LIBRARY_NAME
from nuwa.runtime.backends.base import Backend, Condition, RequestState
from nuwa.runtime.backends.tensorrt import engine_cache
from nuwa.runtime.backends.tensorrt.device_memory import DeviceArray, cudart, ok
from nuwa.runtime.backends.tensorrt.engine_runner import EngineRunner
from nuwa.runtime.backends.tensorrt.engines_json import (
    EngineMetadata,
    EngineMetadataError,
    check_compatible,
    load_metadata,
)
from nuwa.runtime.backends.tensorrt.request_state import TensorRTRequestState
from nuwa.runtime.kv_cache import RingCache
from nuwa.spec import environment, install_hints
from nuwa.spec.cache_geometry import CacheGeometry
from nuwa.spec.errors import BackendUnavailableError, NuwaInputError
from nuwa.spec.graph_names import SKETCH_ENCODER, TEXT_CONDITION, VQ_DECODER, VQ_ENCODER
from nuwa.spec.manifest import Manifest, sha256_file
from nuwa.spec.model_spec import ModelSpec
from nuwa.spec.pixel_scaling import model_to_pixels, pixels_to_model

TENSORRT_HINT = (
    f"TensorRT is not installed: {install_hints.TENSORRT}, and build the plugin library "
    f"({install_hints.PLUGIN_BUILD_TENSORRT})"
)


def _import_tensorrt() -> Any:
    if importlib.util.find_spec("tensorrt") is None:
        raise BackendUnavailableError(TENSORRT_HINT)
    import tensorrt as trt

    return trt


def _device_index(device: str | None) -> int:
    """The CUDA device of ``device`` (None, "cuda" or "cuda:N"); other devices are refused."""
    if device not in (None, "cuda") and not str(device).startswith("cuda:"):
        raise NuwaInputError(f"the tensorrt backend runs on cuda devices, not {device!r}")
    if device and ":" in device:
        index = device.split(":", 1)[1]
        if not index.isdigit():
            raise NuwaInputError(f"cuda device {device!r}: the index must be a number")
        return int(index)
    return 0


def _gpu_identity(device: int) -> dict[str, Any]:
    from nuwa.runtime.backends.tensorrt.engine_build import EngineBuildError, gpu_identity

    try:
        return gpu_identity(device)
    except EngineBuildError as exc:
        raise BackendUnavailableError(str(exc)) from exc


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(
        self, model_dir: str | Path, precision: str = "fp32", device: str | None = None
    ) -> None:
        trt = _import_tensorrt()
        self.directory = Path(model_dir)
        try:
            meta = load_metadata(self.directory)
        except EngineMetadataError as exc:
            raise NuwaInputError(str(exc)) from exc
        if meta.precision != precision:
            raise NuwaInputError(
                f"the engines in {self.directory} are {meta.precision}, not {precision}: ask for "
                f"--precision {meta.precision} or build engines from a {precision} export"
            )
        index = _device_index(device)
        # the engine cache key's four parts: TensorRT version, GPU, precision, plugin library
        gpu = _gpu_identity(index)
        check_compatible(meta, str(trt.__version__), gpu, precision)
        library = self._plugin_library(meta)
        check_compatible(meta, str(trt.__version__), gpu, precision, sha256_file(library))
        self.meta: EngineMetadata = meta
        self.precision = precision
        self.manifest = Manifest.from_dict(self.directory, meta.onnx_manifest)
        self.spec = ModelSpec.from_manifest(self.manifest)

        self.cudart = cudart()
        self.device_index = index
        ok(self.cudart.cudaSetDevice(index))
        self.stream = ok(self.cudart.cudaStreamCreate())
        self.trt = trt
        self.logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(self.logger, "")
        self._load_plugin(trt, library)
        self.runtime = trt.Runtime(self.logger)
        self._engines: dict[str, EngineRunner] = {}

    @classmethod
    def from_model_dir(
        cls,
        model_dir: str | Path,
        precision: str = "fp32",
        device: str | None = None,
        log: Callable[[str], None] | None = None,
        progress: bool = True,
    ) -> TensorRTBackend:
        """The backend for an engine directory, a ``tensorrt`` export or a checkpoint
        (:mod:`.engine_cache`): what the directory holds and the device are checked first, then
        TensorRT, the GPU and the plugin library are found, then a checkpoint is exported and
        engines are built where the caches lack them (``log``: one line before each)."""
        model_dir = Path(model_dir)
        index = _device_index(device)
        if engine_cache.check_source(model_dir, precision) != engine_cache.SOURCE_ENGINES:
            trt = _import_tensorrt()
            gpu = _gpu_identity(index)
            model_dir = engine_cache.ensure_engine_dir(
                model_dir,
                precision,
                str(trt.__version__),
                gpu,
                engine_cache.plugin_library(),
                log,
                progress,
            )
        return cls(model_dir, precision=precision, device=device)

    @staticmethod
    def _plugin_library(meta: EngineMetadata) -> str:
        """``$NUWA_PLUGINS_LIB`` (a file, or a folder holding the library), else the library
        ``engines.json`` records."""
        override = environment.value(environment.PLUGINS_LIB)
        library = Path(override or meta.plugin["library"])
        if override and library.is_dir():
            library = library / LIBRARY_NAME
        if not library.is_file():
            raise BackendUnavailableError(
                f"the 3DNA plugin library {library} is missing; set {environment.PLUGINS_LIB} "
                f"to {LIBRARY_NAME} (the one the engines were built with)"
            )
        return str(library)

    def _load_plugin(self, trt: Any, library: str) -> None:
        """Register the plugin once per process: a second backend, or build-then-run in one
        process, finds it registered (``engine_build.register_plugin_library``)."""
        from nuwa.runtime.backends.tensorrt.engine_build import (
            EngineBuildError,
            register_plugin_library,
        )

        try:
            register_plugin_library(trt.get_plugin_registry(), library, sha256_file(library))
        except EngineBuildError as exc:
            raise BackendUnavailableError(str(exc)) from exc

    def _engine(self, graph: str) -> EngineRunner:
        if graph not in self._engines:
            info = self.meta.engines.get(graph)
            if info is None:
                raise NuwaInputError(f"no engine for graph {graph!r} in {self.directory}")
            path = self.directory / info.file
            if sha256_file(path) != info.sha256:
                raise NuwaInputError(f"{path} does not match its SHA-256 in engines.json")
            self._engines[graph] = EngineRunner(
                self.trt, self.runtime, path, self.cudart, self.stream
            )
        return self._engines[graph]

    # ---- conditions ------------------------------------------------------------------------

    def _cross(self, graph: str, feeds: dict[str, np.ndarray]) -> list[tuple[Any, Any]]:
        out = self._engine(graph).run(dict(feeds))
        d = self.manifest.decoder
        return [(out[d.cross_key % i], out[d.cross_value % i]) for i in range(d.num_layers)]

    def text_condition(self, text_ids: np.ndarray) -> Condition:
        cond = self.manifest.conditions[TEXT_CONDITION]
        ids = np.ascontiguousarray(text_ids, dtype=np.int64)
        name = self.manifest.graph(cond.encoder).input_names[0]
        cross = self._cross(cond.encoder, {name: ids})
        return Condition(cross, tuple(cond.grid), "text", int(ids.shape[0]))  # type: ignore[arg-type]

    def sketch_condition(self, sketch: np.ndarray) -> Condition:
        s = np.asarray(sketch, dtype=np.int64)
        b, t = s.shape[:2]
        (codes,) = self._run_on_host(SKETCH_ENCODER, s.reshape(b * t, *s.shape[2:]))
        codes = codes.astype(np.int64)
        codes = codes.reshape(b, t, *codes.shape[1:])
        key = self.manifest.condition_key("sketch", t)
        cond = self.manifest.conditions[key]
        name = self.manifest.graph(cond.encoder).input_names[0]
        cross = self._cross(cond.encoder, {name: codes})
        return Condition(cross, tuple(cond.grid), "sketch", b)  # type: ignore[arg-type]

    def concat_conditions(self, first: Condition, second: Condition) -> Condition:
        if first.grid != second.grid or first.kind != second.kind:
            raise ValueError("conditions to stack must have the same kind and grid")
        cross = []
        for pair_a, pair_b in zip(first.cross, second.cross, strict=True):
            stacked = []
            for a, b in zip(pair_a, pair_b, strict=True):
                dst = DeviceArray(self.cudart, (a.shape[0] + b.shape[0], *a.shape[1:]), a.dtype)
                a.copy_into(dst, 0, self.stream)
                b.copy_into(dst, a.nbytes, self.stream)
                stacked.append(dst)
            cross.append((stacked[0], stacked[1]))
        ok(self.cudart.cudaStreamSynchronize(self.stream))
        return Condition(cross, first.grid, first.kind, first.batch + second.batch)

    # ---- decoder ---------------------------------------------------------------------------

    def new_cache(self, rows: int) -> RingCache:
        """Zeroed ring caches on the device: two buffer sets (ping-pong), the manifest's cache
        geometry, the graphs' cache dtype."""
        d = self.manifest.decoder
        shape = CacheGeometry(d.num_layers, d.num_heads, d.cache_slots, d.head_dim).shape(rows)
        dtypes = self.cache_dtypes()

        def buffers() -> list[Any]:
            return [
                DeviceArray(self.cudart, shape, dtypes[name]).zero(self.stream)
                for name in d.past_names()
            ]

        cache = RingCache([buffers(), buffers()])
        ok(self.cudart.cudaStreamSynchronize(self.stream))
        return cache

    def cache_dtypes(self) -> dict[str, np.dtype]:
        """The dtype of each ``past`` cache input, as the decoder-step graphs declare it (a
        strongly typed engine takes its graph's types: float16 for an FP16 export); every
        decoder-step graph must agree, since one cache serves them all."""
        d = self.manifest.decoder
        found: dict[str, np.dtype] = {}
        for step in self.manifest.decoder_steps:
            declared = {t.name: np.dtype(t.dtype) for t in self.manifest.graph(step.graph).inputs}
            for name in d.past_names():
                dtype = declared[name]
                if found.setdefault(name, dtype) != dtype:
                    raise NuwaInputError(
                        f"decoder-step graphs disagree on the dtype of {name!r} "
                        f"({found[name]} vs {dtype}); re-export the model"
                    )
        return found

    def use_in_thread(self) -> None:
        """The CUDA runtime's current device is per thread: make it this backend's GPU in the
        calling thread (the decode scheduler's loop, a server's request threads)."""
        ok(self.cudart.cudaSetDevice(self.device_index))

    def start_request(self, cond: Condition, num_frames: int) -> RequestState:
        """The request's step engine resolved once, its cache allocated on the device."""
        key = self.manifest.condition_key(cond.kind, cond.grid[0])
        graph = self.manifest.decoder_step(key, num_frames).name
        cross = [t for pair in cond.cross for t in pair]
        cache = self.new_cache(cond.batch)
        return TensorRTRequestState(
            self._engine(graph), self.manifest.decoder, cache, cross, self.stream
        )

    # ---- VQ-GAN ----------------------------------------------------------------------------

    def _run_on_host(self, graph: str, x: np.ndarray) -> list[np.ndarray]:
        """Run a one-input graph on a host array; its outputs downloaded, in manifest order."""
        info = self.manifest.graph(graph)
        out = self._engine(graph).run({info.input_names[0]: x})
        return [out[name].download(self.stream) for name in info.output_names]

    def frames_to_codes(self, frames: np.ndarray) -> np.ndarray:
        f = np.asarray(frames, dtype=np.uint8)
        b, t = f.shape[:2]
        x = pixels_to_model(f.reshape(b * t, *f.shape[2:]))
        (codes,) = self._run_on_host(VQ_ENCODER, x.transpose(0, 3, 1, 2))
        codes = codes.astype(np.int64)
        return codes.reshape(b, t, *codes.shape[1:])

    def codes_to_frames(self, codes: np.ndarray) -> np.ndarray:
        c = np.asarray(codes, dtype=np.int64)
        b, t = c.shape[:2]
        (x,) = self._run_on_host(VQ_DECODER, c.reshape(b * t, *c.shape[2:]))
        px = model_to_pixels(x)
        px = px.transpose(0, 2, 3, 1)
        return px.reshape(b, t, *px.shape[1:])

    def describe(self) -> str:
        return (
            f"tensorrt ({self.precision}, TensorRT {self.meta.tensorrt_version}, "
            f"{self.meta.gpu.get('name')})"
        )
