"""The package imports without the heavy parts: the ONNX Runtime path needs no PyTorch."""

from __future__ import annotations

import subprocess
import sys


def _python_ok(code: str) -> None:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_import_does_not_pull_torch() -> None:
    _python_ok(
        "import sys, nuwa, nuwa.model.tokenizer, nuwa.runtime, nuwa.plugins, nuwa.export;"
        "assert 'torch' not in sys.modules, 'torch imported'; print(nuwa.__version__)"
    )


def test_full_cli_parser_stays_light() -> None:
    # `nuwa --help` builds every subcommand's parser (train's presets, quantize's gate
    # defaults included): no PyTorch, ONNX, ONNX Runtime or quality gates until a command runs
    _python_ok(
        "import sys\n"
        "from nuwa.runtime.cli import build_parser\n"
        "build_parser()\n"
        "heavy = ('torch', 'onnx', 'onnxruntime', 'nuwa.calibration.gates')\n"
        "loaded = [m for m in heavy if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )


def test_nuwa_info_reports_version_and_backends() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "nuwa.runtime.cli", "info"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "nuwa 0.1.0" in out.stdout
    for word in ("onnxruntime", "torch", "tensorrt", "plugins", "int8 (CPU)"):
        assert word in out.stdout
