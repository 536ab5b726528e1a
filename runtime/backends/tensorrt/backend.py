"""The TensorRT backend: engines from ``nuwa build-engine`` with the 3DNA plugin (DESIGN §6–§9).

``load_backend("tensorrt", ENGINE_DIR, precision=...)`` opens an engine directory:

1. TensorRT must be importable (else :class:`BackendUnavailableError` naming what to install);
2. ``engines.json`` (:mod:`.engines_json`) must exist, match the requested
   precision, and have been built with **this** TensorRT version for **this** GPU model — else a
   clear "rebuild with nuwa build-engine" error, before TensorRT sees a foreign plan;
3. the plugin library the engines were built with is loaded into TensorRT's plugin registry
   (the same file: its SHA-256 is checked), then each engine is deserialized on first use
   (its SHA-256 checked too).

Device residency: the cross-attention K/V of a condition and the ring KV cache live in device
buffers for the whole request. Each decoder step reads the cache from one set of buffers and
writes ``present.*`` into a second set; the two swap roles every step (ping-pong), so the cache
never crosses PCIe. Only token ids / positions go up and logits come down per step.

CUDA memory and streams use cuda-python's runtime API (``cuda.bindings.runtime``), not PyTorch.

Tensor types: TensorRT's ``DataType`` -> NumPy through :func:`numpy_dtype` (BF16 as ml_dtypes'
bfloat16; ``trt.nptype`` has none); the KV cache buffers take the decoder graphs' cache dtype.
An input shape outside the engine's optimization profile (too many batch rows) is a
:class:`NuwaInputError` naming the profile's range.

Not run on real TensorRT: the machine that wrote this has no GPU and no TensorRT. The code
follows the TensorRT 10.x Python API (``deserialize_cuda_engine``, ``create_execution_context``,
``set_input_shape``, ``get_tensor_profile_shape``, ``set_tensor_address``, ``execute_async_v3``);
the checks before TensorRT is touched and the engine runner are tested with fakes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from nuwa.runtime.backends.base import Backend, Condition
from nuwa.runtime.backends.tensorrt.engines_json import (
    EngineMetadata,
    EngineMetadataError,
    check_compatible,
    load_metadata,
)
from nuwa.spec.errors import BackendUnavailableError, NuwaInputError
from nuwa.spec.manifest import Manifest, sha256_file
from nuwa.spec.model_spec import ModelSpec

TENSORRT_HINT = (
    'TensorRT is not installed: pip install "nuwa-edge[trt]" on a machine with an NVIDIA GPU '
    "(JetPack ships it on Jetson), and build the plugin library (cmake -S . -B build && "
    "cmake --build build)"
)
PLUGIN_ENV = "NUWA_PLUGIN_LIB"  # overrides the plugin path recorded in engines.json


def _import_tensorrt() -> Any:
    if importlib.util.find_spec("tensorrt") is None:
        raise BackendUnavailableError(TENSORRT_HINT)
    import tensorrt as trt

    return trt


def _gpu_identity(device: int) -> dict[str, Any]:
    from nuwa.runtime.backends.tensorrt.engine_build import EngineBuildError, gpu_identity

    try:
        return gpu_identity(device)
    except EngineBuildError as exc:
        raise BackendUnavailableError(str(exc)) from exc


# TensorRT DataType name -> NumPy dtype. ``trt.nptype`` has no BF16 (NumPy has no bfloat16);
# ml_dtypes (an onnx dependency) provides one with NumPy's casting rules.
_NUMPY_DTYPES: dict[str, Any] = {
    "FLOAT": np.float32,
    "HALF": np.float16,
    "BF16": ml_dtypes.bfloat16,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
    "FP8": ml_dtypes.float8_e4m3fn,
}


def numpy_dtype(trt_dtype: Any) -> np.dtype:
    """The NumPy dtype of a TensorRT ``DataType`` (BF16 included); a clear error for types no
    host array can hold (INT4, FP4)."""
    name = getattr(trt_dtype, "name", None) or str(trt_dtype).rsplit(".", 1)[-1]
    if name not in _NUMPY_DTYPES:
        raise BackendUnavailableError(
            f"TensorRT tensor type {name} has no host (NumPy) type; the tensorrt backend takes "
            f"engines whose I/O is {', '.join(sorted(_NUMPY_DTYPES))}"
        )
    return np.dtype(_NUMPY_DTYPES[name])


def _cudart() -> Any:
    from nuwa.runtime.backends.tensorrt.engine_build import EngineBuildError, import_cudart

    try:
        return import_cudart()
    except EngineBuildError as exc:
        raise BackendUnavailableError(str(exc)) from exc


def _ok(result: Any) -> Any:
    """cuda-python returns ``(err, *values)``; raise on error, return the value(s)."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA runtime error {err}")
    return values[0] if len(values) == 1 else tuple(values)


class DeviceArray:
    """A contiguous device buffer with a NumPy shape and dtype."""

    def __init__(self, cudart: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.cudart = cudart
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        self.ptr = int(_ok(cudart.cudaMalloc(max(self.nbytes, 1))))

    def zero(self, stream: Any) -> DeviceArray:
        _ok(self.cudart.cudaMemsetAsync(self.ptr, 0, self.nbytes, stream))
        return self

    def upload(self, host: np.ndarray, stream: Any) -> DeviceArray:
        arr = np.ascontiguousarray(host, dtype=self.dtype)
        if arr.shape != self.shape:
            raise ValueError(f"shape {arr.shape} != device buffer {self.shape}")
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        _ok(self.cudart.cudaMemcpyAsync(self.ptr, arr.ctypes.data, self.nbytes, kind, stream))
        _ok(self.cudart.cudaStreamSynchronize(stream))  # arr is a temporary
        return self

    def download(self, stream: Any) -> np.ndarray:
        out = np.empty(self.shape, self.dtype)
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _ok(self.cudart.cudaMemcpyAsync(out.ctypes.data, self.ptr, self.nbytes, kind, stream))
        _ok(self.cudart.cudaStreamSynchronize(stream))
        return out

    def copy_into(self, dst: DeviceArray, offset_bytes: int, stream: Any) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        dst_ptr = dst.ptr + offset_bytes
        _ok(self.cudart.cudaMemcpyAsync(dst_ptr, self.ptr, self.nbytes, kind, stream))

    def free(self) -> None:
        if self.ptr:
            self.cudart.cudaFree(self.ptr)
            self.ptr = 0

    def __del__(self) -> None:  # pragma: no cover - needs a GPU
        with contextlib.suppress(Exception):
            self.free()


class DeviceCache:
    """The ring KV cache on the device: ``current`` holds the cache, ``spare`` receives the
    next step's ``present`` outputs; :meth:`swapped` exchanges them."""

    def __init__(self, current: list[DeviceArray], spare: list[DeviceArray]) -> None:
        self.current, self.spare = current, spare

    def swapped(self) -> DeviceCache:
        return DeviceCache(self.spare, self.current)


class EngineRunner:
    """One deserialized engine and its execution context."""

    def __init__(self, trt: Any, runtime: Any, path: Path, cudart: Any, stream: Any) -> None:
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise BackendUnavailableError(f"TensorRT could not deserialize {path}")
        self.trt, self.engine, self.cudart, self.stream = trt, engine, cudart, stream
        self.context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == mode]
        self.outputs = [n for n in names if engine.get_tensor_mode(n) != mode]
        self.dtypes = {n: numpy_dtype(engine.get_tensor_dtype(n)) for n in names}
        self.name = path.name

    def _set_input_shape(self, name: str, shape: tuple[int, ...]) -> None:
        """``set_input_shape``, whose ``False`` (a shape outside the optimization profile) becomes
        a clear error naming the profile's range instead of a later "execute_async_v3 failed"."""
        if self.context.set_input_shape(name, shape):
            return
        try:
            low, _, high = (
                tuple(int(d) for d in s) for s in self.engine.get_tensor_profile_shape(name, 0)
            )
            allowed = f"the engine's profile allows {low} .. {high}"
        except Exception:  # noqa: BLE001 - the range is only for the message
            allowed = "it is outside the engine's optimization profile"
        raise NuwaInputError(
            f"{self.name}: input {name!r} has shape {tuple(shape)}; {allowed} (the batch rows: "
            "rebuild with a larger `nuwa build-engine --max-batch`, or ask for fewer prompts)"
        )

    def run(
        self,
        inputs: dict[str, np.ndarray | DeviceArray],
        outputs: dict[str, DeviceArray] | None = None,
    ) -> dict[str, DeviceArray]:
        """Run with host or device inputs; outputs go to the given device buffers or to new ones
        sized from the input shapes."""
        keep: list[DeviceArray] = []
        for name in self.inputs:
            value = inputs[name]
            if isinstance(value, np.ndarray):
                dev = DeviceArray(self.cudart, value.shape, self.dtypes[name])
                value = dev.upload(value, self.stream)
                keep.append(dev)
            elif value.dtype != self.dtypes[name]:
                raise ValueError(
                    f"{self.name}: device buffer for {name!r} is {value.dtype}, the engine "
                    f"takes {self.dtypes[name]}"
                )
            self._set_input_shape(name, value.shape)
            self.context.set_tensor_address(name, value.ptr)
        result: dict[str, DeviceArray] = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            given = (outputs or {}).get(name)
            if given is None or given.shape != shape:
                given = DeviceArray(self.cudart, shape, self.dtypes[name])
            self.context.set_tensor_address(name, given.ptr)
            result[name] = given
        if not self.context.execute_async_v3(int(self.stream)):
            raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log)")
        _ok(self.cudart.cudaStreamSynchronize(self.stream))
        for dev in keep:
            dev.free()
        return result


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
        index = 0
        if device not in (None, "cuda") and not str(device).startswith("cuda:"):
            raise NuwaInputError(f"the tensorrt backend runs on cuda devices, not {device!r}")
        if device and ":" in device:
            index = int(device.split(":", 1)[1])
        # the engine cache key's four parts: TensorRT version, GPU, precision, plugin library
        gpu = _gpu_identity(index)
        check_compatible(meta, str(trt.__version__), gpu, precision)
        library = self._plugin_library(meta)
        check_compatible(meta, str(trt.__version__), gpu, precision, sha256_file(library))
        self.meta: EngineMetadata = meta
        self.precision = precision
        self.manifest = Manifest.from_dict(self.directory, meta.onnx_manifest)
        self.spec = ModelSpec.from_dict(self.manifest.config)

        self.cudart = _cudart()
        _ok(self.cudart.cudaSetDevice(index))
        self.stream = _ok(self.cudart.cudaStreamCreate())
        self.trt = trt
        self.logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(self.logger, "")
        self._load_plugin(trt, library)
        self.runtime = trt.Runtime(self.logger)
        self._engines: dict[str, EngineRunner] = {}

    @staticmethod
    def _plugin_library(meta: EngineMetadata) -> str:
        library = os.environ.get(PLUGIN_ENV) or meta.plugin["library"]
        if not Path(library).is_file():
            raise BackendUnavailableError(
                f"the 3DNA plugin library {library} is missing; set {PLUGIN_ENV} to "
                "libnuwa_plugins.so (the one the engines were built with)"
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
        cond = self.manifest.conditions["text"]
        ids = np.ascontiguousarray(text_ids, dtype=np.int64)
        name = self.manifest.graph(cond.encoder).input_names[0]
        cross = self._cross(cond.encoder, {name: ids})
        return Condition(cross, tuple(cond.grid), "text", int(ids.shape[0]))  # type: ignore[arg-type]

    def sketch_condition(self, sketch: np.ndarray) -> Condition:
        s = np.asarray(sketch, dtype=np.int64)
        b, t = s.shape[:2]
        out = self._engine("sketch_encoder").run({"sketch": s.reshape(b * t, *s.shape[2:])})
        codes = out["sketch_codes"].download(self.stream).astype(np.int64)
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
        _ok(self.cudart.cudaStreamSynchronize(self.stream))
        return Condition(cross, first.grid, first.kind, first.batch + second.batch)

    # ---- decoder ---------------------------------------------------------------------------

    def new_cache(self, rows: int) -> DeviceCache:
        d = self.manifest.decoder
        shape = (rows, d.num_heads, d.cache_slots, d.head_dim)
        dtypes = self.cache_dtypes()

        def buffers() -> list[DeviceArray]:
            return [
                DeviceArray(self.cudart, shape, dtypes[name]).zero(self.stream)
                for name in d.past_names()
            ]

        cache = DeviceCache(buffers(), buffers())
        _ok(self.cudart.cudaStreamSynchronize(self.stream))
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

    def decoder_step(
        self,
        tokens: np.ndarray,
        positions: np.ndarray,
        cache: Any,
        cond: Condition,
        num_frames: int,
    ) -> tuple[np.ndarray, Any]:
        d = self.manifest.decoder
        key = self.manifest.condition_key(cond.kind, cond.grid[0])
        graph = self.manifest.decoder_step(key, num_frames).name
        feeds: dict[str, np.ndarray | DeviceArray] = {
            d.input_ids: np.asarray(tokens, dtype=np.int64),
            d.positions: np.asarray(positions, dtype=np.int64),
        }
        feeds.update(zip(d.past_names(), cache.current, strict=True))
        feeds.update(zip(d.cross_names(), [t for pair in cond.cross for t in pair], strict=True))
        present = dict(zip(d.present_names(), cache.spare, strict=True))
        out = self._engine(graph).run(feeds, present)
        logits = out[d.logits].download(self.stream)
        cache.spare = [out[n] for n in d.present_names()]
        return logits.astype(np.float32), cache.swapped()

    # ---- VQ-GAN ----------------------------------------------------------------------------

    def frames_to_codes(self, frames: np.ndarray) -> np.ndarray:
        f = np.asarray(frames, dtype=np.uint8)
        b, t = f.shape[:2]
        x = f.reshape(b * t, *f.shape[2:]).astype(np.float32) / 127.5 - 1.0
        out = self._engine("vq_encoder").run({"frames": x.transpose(0, 3, 1, 2)})
        codes = out["codes"].download(self.stream).astype(np.int64)
        return codes.reshape(b, t, *codes.shape[1:])

    def codes_to_frames(self, codes: np.ndarray) -> np.ndarray:
        c = np.asarray(codes, dtype=np.int64)
        b, t = c.shape[:2]
        x = self._engine("vq_decoder").run({"codes": c.reshape(b * t, *c.shape[2:])})["frames"]
        px = np.round((np.clip(x.download(self.stream), -1, 1) + 1) * 127.5).astype(np.uint8)
        px = px.transpose(0, 2, 3, 1)
        return px.reshape(b, t, *px.shape[1:])

    def describe(self) -> str:
        return (
            f"tensorrt ({self.precision}, TensorRT {self.meta.tensorrt_version}, "
            f"{self.meta.gpu.get('name')})"
        )
