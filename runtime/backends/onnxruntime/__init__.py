"""The ONNX Runtime backend, split by concept like onnxruntime-genai:

- :mod:`.providers` — execution providers: which device runs the graphs;
- :mod:`.sessions` — the sessions of an export and the graph passes made when they are created
  (:mod:`.int8_cpu_kernels`: Q/DQ weight layers as ``MatMulNBits``; the ring-cache writes as
  ``ScatterND``, read from the export's prepared ``cpu`` step graphs where it carries them,
  :mod:`nuwa.export.prepared_graphs`), with the public hooks calibration composes with;
- :mod:`.request_state` — one request's decoder: step graph, bindings and dtypes resolved once;
- :mod:`.backend` — :class:`OnnxRuntimeBackend`, the backend interface over them.

Importing this package imports ONNX Runtime (never PyTorch).
"""

from __future__ import annotations

from nuwa.spec import install_hints
from nuwa.spec.errors import BackendUnavailableError

try:
    import onnxruntime  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised where onnxruntime is absent
    raise BackendUnavailableError(
        f"the onnxruntime backend needs ONNX Runtime: {install_hints.ONNXRUNTIME}"
    ) from exc

from nuwa.runtime.backends.onnxruntime.backend import ENCODER_ROWS_PER_RUN, OnnxRuntimeBackend
from nuwa.runtime.backends.onnxruntime.sessions import GraphHooks

__all__ = ["ENCODER_ROWS_PER_RUN", "GraphHooks", "OnnxRuntimeBackend"]
