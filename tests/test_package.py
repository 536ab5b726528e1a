"""The package imports without the heavy parts: the ONNX Runtime path needs no PyTorch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest


def _python_ok(code: str) -> None:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_import_does_not_pull_torch() -> None:
    _python_ok(
        "import sys, nuwa, nuwa.spec.tokenizer, nuwa.runtime, nuwa.plugins, nuwa.export;"
        "assert 'torch' not in sys.modules, 'torch imported'; print(nuwa.__version__)"
    )


def test_full_cli_parser_stays_light() -> None:
    # `nuwa --help` builds every subcommand's parser (train's presets, quantize's gate
    # defaults included): no PyTorch, ONNX, ONNX Runtime or quality gates until a command runs
    _python_ok(
        "import sys\n"
        "from nuwa.cli import build_parser\n"
        "build_parser()\n"
        "heavy = ('torch', 'onnx', 'onnxruntime', 'nuwa.quality.precision_gates')\n"
        "loaded = [m for m in heavy if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )


def test_every_subcommand_is_registered() -> None:
    """The registry adds every command (none skipped silently), in its documented order."""
    import argparse

    from nuwa.cli import build_parser

    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert list(sub.choices) == [
        "info",
        "export",
        "train",
        "evaluate",
        "generate",
        "quantize",
        "build-engine",
        "serve",
    ]


def test_nuwa_info_reports_version_and_backends() -> None:
    out = subprocess.run([sys.executable, "-m", "nuwa.cli", "info"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "nuwa 0.1.0" in out.stdout
    for word in ("onnxruntime", "torch", "tensorrt", "plugins", "int8 (CPU)"):
        assert word in out.stdout


REPO = Path(__file__).resolve().parent.parent
PACKAGES = (
    "spec",
    "data",
    "plugins",
    "model",
    "export",
    "runtime",
    "calibration",
    "quality",
    "training",
    "serving",
)


@pytest.mark.slow  # builds the wheel (pip, scikit-build-core)
def test_wheel_ships_the_packages_and_their_data_only(tmp_path: Path) -> None:
    """The wheel (built here without compiling: -Cwheel.cmake=false) maps nuwa -> the repository
    root, nuwa.model -> model/, ...: every package module, the checkpoints and the C header, and
    none of tests/, bench/, build/, .git, .ci/, the build files or the C++ sources."""
    pytest.importorskip("scikit_build_core", reason="scikit-build-core is in the [dev] extras")
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-Cwheel.cmake=false", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    (wheel,) = tmp_path.glob("nuwa_edge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {n for n in names if not n.startswith("nuwa_edge-")}

    expected = {"nuwa/__init__.py", "nuwa/cli.py", "nuwa/plugins/include/nuwa_plugins.h"}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            if "__pycache__" not in path.parts:
                expected.add("nuwa/" + path.relative_to(REPO).as_posix())
    for path in (REPO / "model" / "checkpoints").rglob("*"):
        if path.is_file():
            expected.add("nuwa/" + path.relative_to(REPO).as_posix())
    assert expected <= shipped, sorted(expected - shipped)
    extra = shipped - expected
    assert not extra, sorted(extra)  # no tests/, bench/, build/, sources, READMEs
    assert not any(n.startswith(("nuwa/tests/", "nuwa/bench/", "tests/")) for n in names)


@pytest.mark.skipif(shutil.which("cmake") is None, reason="no cmake on PATH")
def test_cmake_without_a_cxx_compiler_warns_once_and_configures(tmp_path: Path) -> None:
    """No C++ compiler: configure and build succeed (so the install does), build no library and
    say once what they skipped."""
    env = {**os.environ, "CXX": "/nonexistent/c++"}
    run = subprocess.run(
        ["cmake", "-S", str(REPO), "-B", str(tmp_path / "build")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    text = " ".join((run.stdout + run.stderr).split())
    assert text.count("no C++ compiler found") == 1, text
    assert "libnuwa_plugins.so" in text and "NOT built" in text and "ONNX Runtime" in text
    build = subprocess.run(["cmake", "--build", str(tmp_path / "build")], capture_output=True)
    assert build.returncode == 0, build.stdout + build.stderr  # nothing to build, no failure
    assert not list(tmp_path.rglob("libnuwa_plugins*"))
