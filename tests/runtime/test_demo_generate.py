"""The main job on the shipped demo checkpoint, as a user runs it right after install:
``nuwa generate "a red square at the top left moves right" -o out.gif`` — ONNX Runtime on the
CPU, from an export the demo directory ships: its CPU default, INT8 (``onnx_int8/``), or FP32
(``onnx/``) on a CPU that refuses the INT8 export (x86 without VNNI); nothing is exported or
cached."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from nuwa.runtime.backends.onnxruntime.default_precision import default_precision
from nuwa.runtime.pipeline import default_model_dir


@pytest.mark.slow  # runs the demo checkpoint
def test_nuwa_generate_with_the_demo_checkpoint_writes_a_gif(tmp_path: Path) -> None:
    demo = default_model_dir()
    assert (demo / "config.json").is_file(), (
        f"the demo checkpoint is not in this checkout: {demo / 'config.json'} is missing "
        "(it is trained and committed by the data/training issue)"
    )
    nuwa = shutil.which("nuwa")
    cmd = [nuwa] if nuwa else [sys.executable, "-m", "nuwa.cli"]
    env = {**os.environ, "NUWA_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(
        [
            *cmd,
            "generate",
            "a red square at the top left moves right",
            "-o",
            "out.gif",
            "--seed",
            "0",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    precision = default_precision(demo, "cpu")  # int8 here, or fp32 without VNNI
    assert f"on onnxruntime {ort.__version__} ({precision}, " in proc.stderr
    with Image.open(tmp_path / "out.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == 8 and gif.size == (64, 64)
        frames = []
        for i in range(gif.n_frames):
            gif.seek(i)
            frames.append(np.asarray(gif.convert("RGB"), dtype=np.int16))
    assert np.std(np.stack(frames)) > 1.0  # pictures, not a blank
    assert (tmp_path / "out.sheet.png").is_file()
    assert not list((tmp_path / "cache").rglob("manifest.json")), (
        "the demo ships its export: the first run must not export into the cache"
    )
