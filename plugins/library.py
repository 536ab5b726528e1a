"""ctypes loader of ``libnuwa_plugins.so`` and Python bindings of its C API (3DNA kernels).

The install (``pip install .`` or ``pip install -e .``: scikit-build-core running the root
``CMakeLists.txt``) builds the library where a C++ compiler exists and puts it in this package's
folder, ``nuwa/plugins/``. It is found, in order, through the environment variable
``NUWA_PLUGINS_LIB`` (a file or a folder), ``<repo>/build/`` of a source checkout (a build by hand:
``cmake -S . -B build && cmake --build build``) and this package's folders (``__path__``: the
installed package, or for an editable install the source folder and the install's folder).
Importing this module loads nothing: the library is opened on the first call that needs it, and a
missing library or a build without CUDA raises :class:`PluginLibraryError` saying how to build it.
No torch at import time; the ``*_torch`` helper imports it when called.

Attributes of a call are the ONNX node's, exactly ``NearbyAttentionSpec.onnx_attributes()``:
``q_grid``, ``k_grid``, ``extents``, ``causal``, ``ring_cache``, ``scale``, ``num_heads``.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nuwa.spec import environment, install_hints

ENV_VAR = environment.PLUGINS_LIB  # the public name tests and callers use
LIBRARY_NAME = "libnuwa_plugins.so"
# Static registration of the TensorRT plugin at load time, beside LIBRARY_NAME in TensorRT builds:
# for ONNX Runtime's TensorRT EP (trt_extra_plugin_lib_paths) and trtexec --staticPlugins.
# LIBRARY_NAME itself is a TensorRT dynamic plugin library (IPluginRegistry::loadLibrary).
REGISTER_LIBRARY_NAME = "libnuwa_trt_register.so"
BUILD_COMMAND = install_hints.PLUGIN_BUILD
INSTALL_COMMAND = install_hints.EDITABLE_INSTALL
HOW_TO_BUILD = (
    f"the install builds it where a C++ compiler exists: install one (e.g. g++) and reinstall "
    f"from the clone (`{INSTALL_COMMAND}`), or build it by hand from the repository root with "
    f"`{BUILD_COMMAND}`"
)

STATUS_OK = 0
DTYPES = {"float32": 0, "float16": 1, "bfloat16": 2}
ALGOS = {"auto": 0, "generic": 1, "tiled": 2, "decode": 3}


class PluginLibraryError(RuntimeError):
    """The plugin library is missing, unloadable, or lacks what was asked (e.g. CUDA)."""


class PluginCallError(RuntimeError):
    """A C API call returned an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Params(ctypes.Structure):
    """Mirror of ``nuwa_3dna_params_t`` (plugins/include/nuwa_plugins.h)."""

    _fields_ = [
        ("q_grid", ctypes.c_int32 * 3),
        ("k_grid", ctypes.c_int32 * 3),
        ("extents", ctypes.c_int32 * 3),
        ("causal", ctypes.c_int32),
        ("ring_cache", ctypes.c_int32),
        ("scale", ctypes.c_float),
        ("batch", ctypes.c_int32),
        ("num_heads", ctypes.c_int32),
        ("num_queries", ctypes.c_int32),
        ("num_keys", ctypes.c_int32),
        ("head_dim", ctypes.c_int32),
    ]


def _source_checkout() -> Path | None:
    """The repository root when this module runs from a source checkout (an editable install),
    else None (an installed copy has no CMakeLists.txt above it)."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "CMakeLists.txt").is_file() else None


def package_dirs() -> list[Path]:
    """This package's folders, ``nuwa.plugins.__path__``: the installed package's folder, or for
    an editable install the source folder and the folder the install put the library in."""
    package = importlib.import_module(__package__ or "nuwa.plugins")
    dirs = [Path(p) for p in getattr(package, "__path__", [])]
    return dirs or [Path(__file__).resolve().parent]


def candidate_paths() -> list[Path]:
    """Where :func:`library_path` looks, in order: ``$NUWA_PLUGINS_LIB``, ``<repo>/build/`` (a
    source checkout only), then the package's folders (where the install put it)."""
    paths: list[Path] = []
    env = environment.value(ENV_VAR)
    if env:
        p = Path(env)
        paths.append(p / LIBRARY_NAME if p.is_dir() else p)
    root = _source_checkout()
    if root is not None:
        paths.append(root / "build" / LIBRARY_NAME)
    for folder in package_dirs():
        path = folder / LIBRARY_NAME
        if path not in paths:
            paths.append(path)
    return paths


def library_path() -> Path:
    """Path of the built library; :class:`PluginLibraryError` if none exists."""
    paths = candidate_paths()
    for p in paths:
        if p.is_file():
            return p
    tried = ", ".join(str(p) for p in paths)
    raise PluginLibraryError(
        f"{LIBRARY_NAME} not found (looked at {tried}); {HOW_TO_BUILD}, or point {ENV_VAR} at a "
        f"built file."
    )


_P = ctypes.POINTER
_c_params = _P(Params)
_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "nuwa_3dna_api_version": (ctypes.c_int32, []),
    "nuwa_3dna_cuda_compiled": (ctypes.c_int32, []),
    "nuwa_3dna_tensorrt_compiled": (ctypes.c_int32, []),
    "nuwa_3dna_build_info": (ctypes.c_char_p, []),
    "nuwa_3dna_cuda_device_count": (ctypes.c_int32, []),
    "nuwa_3dna_attribute_fields": (ctypes.c_char_p, []),
    "nuwa_3dna_status_string": (ctypes.c_char_p, [ctypes.c_int]),
    "nuwa_3dna_last_error": (ctypes.c_char_p, []),
    "nuwa_3dna_validate": (ctypes.c_int, [_c_params]),
    "nuwa_3dna_forward_cpu": (
        ctypes.c_int,
        [_c_params, *[ctypes.c_void_p] * 3, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32],
    ),
    "nuwa_3dna_decode_cpu": (
        ctypes.c_int,
        [_c_params, *[ctypes.c_void_p] * 3, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32],
    ),
    "nuwa_3dna_forward_cuda": (
        ctypes.c_int,
        [_c_params, ctypes.c_int, *[ctypes.c_void_p] * 6, ctypes.c_int],
    ),
    "nuwa_3dna_decode_cuda": (
        ctypes.c_int,
        [_c_params, ctypes.c_int, *[ctypes.c_void_p] * 6, ctypes.c_int],
    ),
    "nuwa_3dna_cuda_supports": (ctypes.c_int32, [_c_params, ctypes.c_int, ctypes.c_int]),
}

API_VERSION = 1


@functools.cache
def load_library() -> ctypes.CDLL:
    """Open the library once and declare the C API's signatures."""
    path = library_path()
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        raise PluginLibraryError(f"could not load {path}: {e}. Rebuild it: {HOW_TO_BUILD}.") from e
    for name, (restype, argtypes) in _SIGNATURES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError as e:
            raise PluginLibraryError(
                f"{path} lacks {name}; it is stale or not ours. Rebuild it: {HOW_TO_BUILD}."
            ) from e
        fn.restype = restype
        fn.argtypes = argtypes
    version = lib.nuwa_3dna_api_version()
    if version != API_VERSION:
        raise PluginLibraryError(
            f"{path} has C API version {version}, expected {API_VERSION}. Rebuild it: "
            f"{HOW_TO_BUILD}."
        )
    return lib


def cuda_compiled() -> bool:
    """Whether the library was built with the CUDA kernels."""
    return bool(load_library().nuwa_3dna_cuda_compiled())


def tensorrt_compiled() -> bool:
    """Whether the library holds the TensorRT plugin."""
    return bool(load_library().nuwa_3dna_tensorrt_compiled())


def register_library_path() -> Path:
    """``libnuwa_trt_register.so`` beside the loaded library: the one to hand to loaders that only
    ``dlopen`` (ONNX Runtime's ``trt_extra_plugin_lib_paths``, ``trtexec --staticPlugins``).
    :class:`PluginLibraryError` when this build has no TensorRT plugin."""
    path = library_path().parent / REGISTER_LIBRARY_NAME
    if not tensorrt_compiled() or not path.is_file():
        raise PluginLibraryError(
            f"{path} is missing: {library_path()} was built without the TensorRT plugin; "
            f"configure with {install_hints.TENSORRT_HEADERS} and rebuild"
        )
    return path


def cuda_device_count() -> int:
    """CUDA devices the library sees now (0 without CUDA build, driver or GPU)."""
    return int(load_library().nuwa_3dna_cuda_device_count())


def build_info() -> str:
    return load_library().nuwa_3dna_build_info().decode()


def parse_attribute_fields(text: str) -> list[tuple[str, str, int]]:
    """``"q_grid:int32:3,..."`` -> ``[("q_grid", "int32", 3), ...]``."""
    fields = []
    for item in text.split(","):
        name, dtype, length = item.split(":")
        fields.append((name, dtype, int(length)))
    return fields


def attribute_fields() -> list[tuple[str, str, int]]:
    """The node attributes the library (and its TensorRT plugin creator) reads, in order:
    ``(name, "int32" | "float32", length)``."""
    return parse_attribute_fields(load_library().nuwa_3dna_attribute_fields().decode())


def expected_attribute_fields(attrs: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    """The same description of an attribute dict such as ``NearbyAttentionSpec.onnx_attributes()``
    (lists of ints -> int32 of their length, ints -> int32, floats -> float32)."""
    fields = []
    for name, value in attrs.items():
        if isinstance(value, (list, tuple)):
            fields.append((name, "int32", len(value)))
        else:
            fields.append((name, "float32" if isinstance(value, float) else "int32", 1))
    return fields


def require_cuda() -> ctypes.CDLL:
    """The library, or :class:`PluginLibraryError` if it was built without CUDA."""
    lib = load_library()
    if not lib.nuwa_3dna_cuda_compiled():
        raise PluginLibraryError(
            f"{library_path()} was built without CUDA (no nvcc found at configure time). Install "
            f"the CUDA toolkit (nvcc on PATH) and rebuild: {HOW_TO_BUILD}."
        )
    return lib


def _check(lib: ctypes.CDLL, status: int) -> None:
    if status != STATUS_OK:
        what = lib.nuwa_3dna_status_string(status).decode()
        message = lib.nuwa_3dna_last_error().decode() or what
        raise PluginCallError(status, f"{message} ({what})")


def make_params(
    attrs: Mapping[str, Any],
    batch: int,
    num_heads: int,
    num_queries: int,
    num_keys: int,
    head_dim: int,
) -> Params:
    """C parameters of a call from the ONNX node's attributes and the tensor shapes."""
    if "num_heads" in attrs and int(attrs["num_heads"]) != num_heads:
        raise ValueError(
            f"3DNA: num_heads attribute {attrs['num_heads']} != tensor heads {num_heads}"
        )
    p = Params()
    for field in ("q_grid", "k_grid", "extents"):
        values: Sequence[int] = attrs[field]
        if len(values) != 3:
            raise ValueError(f"3DNA: {field} must have three entries, got {values}")
        getattr(p, field)[:] = [int(x) for x in values]
    p.causal = int(attrs.get("causal", 0))
    p.ring_cache = int(attrs.get("ring_cache", 0))
    p.scale = float(attrs["scale"]) if attrs.get("scale") is not None else head_dim**-0.5
    p.batch, p.num_heads, p.num_queries = batch, num_heads, num_queries
    p.num_keys, p.head_dim = num_keys, head_dim
    return p


def _shapes(
    q_shape: Sequence[int], k_shape: Sequence[int], v_shape: Sequence[int]
) -> tuple[int, int, int, int, int]:
    if len(q_shape) != 4 or len(k_shape) != 4 or tuple(k_shape) != tuple(v_shape):
        raise ValueError(
            f"3DNA: q (B, nh, Nq, hd), k/v (B, nh, Nk, hd); got {q_shape}, {k_shape}, {v_shape}"
        )
    b, nh, nq, hd = (int(x) for x in q_shape)
    if (int(k_shape[0]), int(k_shape[1]), int(k_shape[3])) != (b, nh, hd):
        raise ValueError(f"3DNA: k/v {tuple(k_shape)} do not match q {tuple(q_shape)}")
    return b, nh, nq, int(k_shape[2]), hd


def nearby_attention_cpu(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    attrs: Mapping[str, Any],
    q_positions: np.ndarray | None = None,
    num_threads: int = 0,
) -> np.ndarray:
    """CPU FP32 kernel. q ``(B, nh, Nq, hd)``, k/v ``(B, nh, Nk, hd)``, q_positions ``(B, Nq)``
    int32 (or ``(Nq,)``, broadcast over the batch); returns ``(B, nh, Nq, hd)`` float32."""
    lib = load_library()
    b, nh, nq, nk, hd = _shapes(q.shape, k.shape, v.shape)
    params = make_params(attrs, b, nh, nq, nk, hd)
    qc, kc, vc = (np.ascontiguousarray(x, dtype=np.float32) for x in (q, k, v))
    pos_ptr = None
    if q_positions is not None:
        pos = np.broadcast_to(np.asarray(q_positions), (b, nq))
        pos = np.ascontiguousarray(pos, dtype=np.int32)
        pos_ptr = pos.ctypes.data
    out = np.empty((b, nh, nq, hd), dtype=np.float32)
    status = lib.nuwa_3dna_forward_cpu(
        ctypes.byref(params),
        qc.ctypes.data,
        kc.ctypes.data,
        vc.ctypes.data,
        pos_ptr,
        out.ctypes.data,
        num_threads,
    )
    _check(lib, status)
    return out


def nearby_attention_decode_cpu(
    q: np.ndarray,
    k_cache: np.ndarray,
    v_cache: np.ndarray,
    attrs: Mapping[str, Any],
    query_pos: np.ndarray,
    num_threads: int = 0,
) -> np.ndarray:
    """CPU decode: q ``(B, nh, 1, hd)`` at raster ``query_pos (B,)`` against ring caches
    ``(B, nh, S, hd)``; returns ``(B, nh, 1, hd)`` float32."""
    pos = np.asarray(query_pos).reshape(-1, 1)
    return nearby_attention_cpu(q, k_cache, v_cache, attrs, pos, num_threads)


def nearby_attention_cuda_ptr(
    attrs: Mapping[str, Any],
    shape_q: Sequence[int],
    shape_k: Sequence[int],
    dtype: str,
    q: int,
    k: int,
    v: int,
    out: int,
    q_positions: int | None = None,
    stream: int = 0,
    algo: str = "auto",
) -> None:
    """CUDA kernel on raw device pointers (ints), enqueued on ``stream`` (a cudaStream_t value)."""
    lib = require_cuda()
    b, nh, nq, nk, hd = _shapes(shape_q, shape_k, shape_k)
    params = make_params(attrs, b, nh, nq, nk, hd)
    status = lib.nuwa_3dna_forward_cuda(
        ctypes.byref(params), DTYPES[dtype], q, k, v, q_positions, out, stream or None, ALGOS[algo]
    )
    _check(lib, status)


def cuda_supports(
    attrs: Mapping[str, Any], shape_q: Sequence[int], shape_k: Sequence[int], dtype: str, algo: str
) -> bool:
    """Whether CUDA kernel ``algo`` can run this call in this build."""
    lib = load_library()
    params = make_params(attrs, *_shapes(shape_q, shape_k, shape_k))
    return bool(lib.nuwa_3dna_cuda_supports(ctypes.byref(params), DTYPES[dtype], ALGOS[algo]))


def nearby_attention_torch(
    q: Any,
    k: Any,
    v: Any,
    attrs: Mapping[str, Any],
    q_positions: Any | None = None,
    algo: str = "auto",
    num_threads: int = 0,
    out: Any | None = None,
) -> Any:
    """torch tensors in, tensor out: CPU tensors run the CPU kernel (FP32), CUDA tensors the CUDA
    kernel on the current stream (FP32/FP16/BF16). q_positions ``(B, Nq)`` or ``(Nq,)``; ``out``
    (CUDA only): a contiguous tensor like q to write into."""
    import torch  # noqa: PLC0415 — only when called

    if q.device.type == "cpu":
        pos = None if q_positions is None else q_positions.cpu().numpy()
        out = nearby_attention_cpu(
            q.detach().float().numpy(),
            k.detach().float().numpy(),
            v.detach().float().numpy(),
            attrs,
            pos,
            num_threads,
        )
        return torch.from_numpy(out).to(q.dtype)
    names = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}
    if q.dtype not in names or k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(
            f"3DNA CUDA: q/k/v must share one of {list(names)}; got {q.dtype}, {k.dtype}, {v.dtype}"
        )
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    pos_ptr = None
    if q_positions is not None:
        q_positions = q_positions.to(device=q.device, dtype=torch.int32)
        q_positions = q_positions.expand(q.shape[0], q.shape[2]).contiguous()
        pos_ptr = q_positions.data_ptr()
    if out is None:
        out = torch.empty_like(q)
    elif out.shape != q.shape or out.dtype != q.dtype or not out.is_contiguous():
        raise ValueError("3DNA CUDA: out must be a contiguous tensor with q's shape and dtype")
    with torch.cuda.device(q.device):
        stream = torch.cuda.current_stream().cuda_stream
        nearby_attention_cuda_ptr(
            attrs,
            q.shape,
            k.shape,
            names[q.dtype],
            q.data_ptr(),
            k.data_ptr(),
            v.data_ptr(),
            out.data_ptr(),
            pos_ptr,
            stream,
            algo,
        )
    return out
