"""``nuwa.runtime``: backends, the KV-cache decode loop, the eight task pipelines, the Python API
(:class:`Pipeline`) and the ``nuwa`` CLI. Importing it pulls in neither PyTorch nor ONNX Runtime;
a backend imports its library when it is loaded."""

from __future__ import annotations

from typing import Any

__all__ = ["GenerationResult", "Pipeline", "StepEvent"]


def __getattr__(name: str) -> Any:  # lazy: `from nuwa.runtime import Pipeline`
    if name in __all__:
        from nuwa.runtime import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'nuwa.runtime' has no attribute {name!r}")
