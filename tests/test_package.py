"""The package imports without the heavy parts: the ONNX Runtime path needs no PyTorch."""

from __future__ import annotations

import subprocess
import sys


def test_import_does_not_pull_torch() -> None:
    code = (
        "import sys, nuwa, nuwa.model.tokenizer, nuwa.runtime, nuwa.plugins, nuwa.export;"
        "assert 'torch' not in sys.modules, 'torch imported'; print(nuwa.__version__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_nuwa_info_reports_version_and_backends() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "nuwa.runtime.cli", "info"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "nuwa 0.1.0" in out.stdout
    for word in ("onnxruntime", "torch", "tensorrt", "plugins", "int8 (CPU)"):
        assert word in out.stdout
