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


def test_full_cli_parser_does_not_pull_torch() -> None:
    # `nuwa --help` builds every subcommand's parser (train's presets included): no PyTorch,
    # no ONNX Runtime until a command runs
    code = (
        "import sys\n"
        "from nuwa.runtime.cli import build_parser\n"
        "build_parser()\n"
        "heavy = [m for m in ('torch', 'onnxruntime') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
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
