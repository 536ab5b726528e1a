"""Which ONNX Runtime execution providers run a model: the device choice of the ONNX Runtime
backend.

- ``cpu`` (default): ``CPUExecutionProvider``;
- ``cuda``: ``CUDAExecutionProvider`` (needs ``onnxruntime-gpu``);
- ``tensorrt``: ``TensorrtExecutionProvider`` (then CUDA, then CPU for what it does not take),
  with FP16/INT8 enabled to match the export, an engine cache beside the export cache keyed by
  TensorRT version, GPU, precision and plugin hash (:func:`tensorrt_engine_cache_dir`), and the
  plugin's static-registration library (``libnuwa_trt_register.so``, :mod:`nuwa.plugins`) as an
  extra plugin library when the plugin is built. The portable export's 3DNA nodes run their
  function bodies there; a graph converted with
  :func:`nuwa.export.attention_node.to_ort_tensorrt` binds the fused plugin instead.

A provider this onnxruntime build lacks is a clear error naming what to install.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnxruntime as ort

from nuwa.spec.environment import cache_dir
from nuwa.spec.errors import BackendUnavailableError
from nuwa.spec.install_hints import ONNXRUNTIME_GPU

DEVICES = ("cpu", "cuda", "tensorrt")


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
    (:func:`~nuwa.runtime.backends.tensorrt.engines_json.engine_cache_key`: TensorRT version,
    GPU, precision, plugin library hash), so an engine built by another TensorRT, GPU or plugin
    build is never picked up. Parts that cannot be read here (no ``tensorrt`` wheel, no
    cuda-python) count as ``unknown``."""
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
    return cache_dir() / "trt_engines" / key


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
            f"(it has {', '.join(available)}): {ONNXRUNTIME_GPU}"
        )
    if kind == "cuda":
        return [cuda, "CPUExecutionProvider"]
    if "TensorrtExecutionProvider" not in available:
        raise BackendUnavailableError(
            "this onnxruntime build has no TensorRT execution provider: install TensorRT and "
            f"{ONNXRUNTIME_GPU}"
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
