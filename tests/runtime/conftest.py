"""Fixtures of the runtime tests: the tiny random model behind each backend, its ONNX export
(made once per session), and small inputs for every task."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _private_export_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """Exports on first use go to a temporary cache, never the user's ~/.cache/nuwa."""
    monkeypatch.setenv("NUWA_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "nuwa_cache"))


@pytest.fixture(scope="session")
def torch_backend(tiny_model_dir: Path):
    from nuwa.runtime.backends import load_backend

    return load_backend("torch", tiny_model_dir, device="cpu")


@pytest.fixture(scope="session")
def tiny_export_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """``nuwa export`` of the tiny model, sketch conditions for 1, 2 and 3 frames."""
    from nuwa.export.exporter import export_model

    out = tmp_path_factory.mktemp("tiny_onnx")
    export_model(tiny_model_dir, out, frames=[1, 2, 3])
    return out


@pytest.fixture(scope="session")
def ort_backend(tiny_export_dir: Path):
    from nuwa.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend.from_model_dir(tiny_export_dir, device="cpu", threads=1)


@pytest.fixture(scope="session")
def task_inputs() -> dict[str, np.ndarray]:
    """Inputs in the tiny model's sizes (16x16 pixels, 3 trained frames)."""
    from nuwa.model.synthetic_data import SKETCH_PALETTE

    rng = np.random.default_rng(0)
    classes = np.zeros((3, 16, 16), dtype=np.int64)
    for t in range(3):
        classes[t, 4:10, 2 + 2 * t : 8 + 2 * t] = 1 + t % 4
    return {
        "image": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
        "video": rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8),
        "sketch_rgb": SKETCH_PALETTE[classes].astype(np.uint8),  # (3, 16, 16, 3) palette colours
        "sketch_ids": classes,
    }
