"""The C++ runtime built with AddressSanitizer + UBSan (``-DNUWA_RUNTIME_SANITIZE=ON``): the
example app (a C++ process, so leak checking covers everything the library allocates) runs good
requests and bad ones on the tiny and demo exports; any leak, out-of-bounds access or undefined
behaviour fails the run. Slow: the sanitized build takes about a minute."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .conftest import SANITIZED_BUILD_DIR, build_library

DEMO_EXPORT = Path(__file__).resolve().parents[2] / "model" / "checkpoints" / "demo" / "onnx"
SANITIZERS = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=99",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1:exitcode=98",
}


@pytest.fixture(scope="module")
def sanitized_app() -> Path:
    app = build_library(SANITIZED_BUILD_DIR, sanitize=True).parent / "nuwa_generate"
    assert app.is_file(), "examples/cpp/nuwa_generate was not built (libpng-dev missing?)"
    return app


def run_app(app: Path, args: list[str], out: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, **SANITIZERS)
    done = subprocess.run(
        [str(app), *args, "--threads", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        assert marker not in done.stderr, done.stderr[-4000:]
    assert done.returncode in (0, 2), done.stderr[-4000:]
    return done


@pytest.mark.slow
def test_sanitized_runs(sanitized_app: Path, tiny_export_dir: Path, tmp_path: Path) -> None:
    tiny = str(tiny_export_dir)
    good = [
        [tiny, "t2v", "a ball moves left", "--frames", "5", "--guidance", "2", "--batch", "2"],
        [tiny, "t2i", "a red square"],
        [str(DEMO_EXPORT), "t2v", "a red square moves left", "--guidance", "2"],
    ]
    for i, args in enumerate(good):
        done = run_app(sanitized_app, args, tmp_path / f"good{i}")
        assert done.returncode == 0 and done.stdout.count(".png") >= 1
    bad = [
        [tiny, "t2x", "a"],
        [tiny, "t2i", ""],
        [tiny, "t2v", "a", "--frames", "-1"],
        [str(tmp_path / "missing"), "t2i", "a"],
    ]
    for i, args in enumerate(bad):
        done = run_app(sanitized_app, args, tmp_path / f"bad{i}")
        assert done.returncode == 2 and done.stderr.count("error: ") == 1
