"""Device memory for the TensorRT backend: cuda-python's runtime API (``cuda.bindings.runtime``,
not PyTorch), contiguous device buffers with a NumPy shape and dtype (:class:`DeviceArray`), and
TensorRT's tensor types as NumPy dtypes (:func:`numpy_dtype`: BF16 as ml_dtypes' bfloat16;
``trt.nptype`` has none). Importing this module imports neither TensorRT nor CUDA.
"""

from __future__ import annotations

import contextlib
from typing import Any

import ml_dtypes
import numpy as np

from nuwa.spec.errors import BackendUnavailableError

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


def cudart() -> Any:
    from nuwa.runtime.backends.tensorrt.engine_build import EngineBuildError, import_cudart

    try:
        return import_cudart()
    except EngineBuildError as exc:
        raise BackendUnavailableError(str(exc)) from exc


def ok(result: Any) -> Any:
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
        self.ptr = int(ok(cudart.cudaMalloc(max(self.nbytes, 1))))

    def zero(self, stream: Any) -> DeviceArray:
        ok(self.cudart.cudaMemsetAsync(self.ptr, 0, self.nbytes, stream))
        return self

    def upload(self, host: np.ndarray, stream: Any) -> DeviceArray:
        arr = np.ascontiguousarray(host, dtype=self.dtype)
        if arr.shape != self.shape:
            raise ValueError(f"shape {arr.shape} != device buffer {self.shape}")
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        ok(self.cudart.cudaMemcpyAsync(self.ptr, arr.ctypes.data, self.nbytes, kind, stream))
        ok(self.cudart.cudaStreamSynchronize(stream))  # arr is a temporary
        return self

    def download(self, stream: Any) -> np.ndarray:
        out = np.empty(self.shape, self.dtype)
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        ok(self.cudart.cudaMemcpyAsync(out.ctypes.data, self.ptr, self.nbytes, kind, stream))
        ok(self.cudart.cudaStreamSynchronize(stream))
        return out

    def copy_into(self, dst: DeviceArray, offset_bytes: int, stream: Any) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        dst_ptr = dst.ptr + offset_bytes
        ok(self.cudart.cudaMemcpyAsync(dst_ptr, self.ptr, self.nbytes, kind, stream))

    def free(self) -> None:
        if self.ptr:
            self.cudart.cudaFree(self.ptr)
            self.ptr = 0

    def __del__(self) -> None:  # pragma: no cover - needs a GPU
        with contextlib.suppress(Exception):
            self.free()
