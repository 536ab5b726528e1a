"""Module paths of nuwa 0.1's layout that users import still work: they warn and give the same
objects as the new homes."""

from __future__ import annotations

import importlib
import sys

import pytest


def test_onnxruntime_backend_module_is_an_alias_of_the_package() -> None:
    sys.modules.pop("nuwa.runtime.backends.onnxruntime_backend", None)
    with pytest.warns(DeprecationWarning, match="nuwa.runtime.backends.onnxruntime"):
        old = importlib.import_module("nuwa.runtime.backends.onnxruntime_backend")
    from nuwa.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from nuwa.runtime.backends.onnxruntime.providers import providers_for

    assert old.OnnxRuntimeBackend is OnnxRuntimeBackend
    assert old.providers_for is providers_for
    assert old.providers_for("cpu", 0, "fp32") == ["CPUExecutionProvider"]
