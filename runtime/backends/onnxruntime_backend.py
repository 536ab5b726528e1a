"""Deprecated module path, kept so that imports written against nuwa 0.1's layout still work:
the ONNX Runtime backend is the package :mod:`nuwa.runtime.backends.onnxruntime` (providers,
sessions, request state, backend). Importing this module warns once and re-exports its public
names; it defines nothing."""

from __future__ import annotations

import warnings

from nuwa.runtime.backends.onnxruntime.backend import ENCODER_ROWS_PER_RUN, OnnxRuntimeBackend
from nuwa.runtime.backends.onnxruntime.providers import (
    DEVICES,
    parse_device,
    plugin_library,
    providers_for,
    tensorrt_engine_cache_dir,
    tensorrt_registration_library,
)

__all__ = [
    "DEVICES",
    "ENCODER_ROWS_PER_RUN",
    "OnnxRuntimeBackend",
    "parse_device",
    "plugin_library",
    "providers_for",
    "tensorrt_engine_cache_dir",
    "tensorrt_registration_library",
]

warnings.warn(
    "nuwa.runtime.backends.onnxruntime_backend is deprecated: import from "
    "nuwa.runtime.backends.onnxruntime (the backend) or "
    "nuwa.runtime.backends.onnxruntime.providers (providers_for, parse_device)",
    DeprecationWarning,
    stacklevel=2,
)
