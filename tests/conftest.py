"""Shared fixtures: tiny random-weight models made here, never downloaded; the tiny model's
exports (once per session) and their INT8 / FP16 versions from ``quantize_export`` with small
calibration and gate sets; every test's export cache is private."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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
def tiny_model():
    import torch

    from nuwa.model.nuwa import NuwaModel
    from nuwa.spec.config import NuwaConfig

    torch.manual_seed(0)
    return NuwaModel(NuwaConfig.from_name("tiny")).eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_model):
    path = tmp_path_factory.mktemp("tiny_model")
    tiny_model.save_pretrained(path)
    return path


CALIB_COUNT = 3
GATE_COUNT = 3


@pytest.fixture(scope="session")
def tiny_portable(tiny_export_dir: Path) -> Path:
    """The tiny model's portable export: the one export of the session (``tiny_export_dir``)."""
    return tiny_export_dir


@pytest.fixture(scope="session")
def tiny_tensorrt(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The tiny model's ``--target tensorrt`` export, made once per session through the
    ``nuwa export`` command (so the command's path is the one every TensorRT test reads)."""
    import torch

    from nuwa.cli import main

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tiny_tensorrt")
    assert main(["export", str(tiny_model_dir), "-o", str(out), "--target", "tensorrt", "-q"]) == 0
    return out


# The tiny int8 export is gated with the Q/DQ kernels as written: on this random-weight model the
# 3-sample checker scores are coin flips (one sample moves a score 33 points; T2V direction 1/3
# -> 0/3 failed MatMulNBits' gate although its token agreement was as high or higher on average
# and its sampling divergence lower: test_quantize checks that teacher-forced part).
FIXTURE_INT8_KERNELS = "qdq"
# ...and for the same reason the fixtures' gates report the checker's scores without deciding on
# them (a tolerance no score can exceed: 100 points, 100 px on 16x16 frames): which of FP32's and
# the candidate's 3 sampled streams draws an object that happens to score is down to the random
# numbers (with spec/sampling_random.py's generator, which also changed the calibration's sampled
# data, T2V direction read 2/3 for FP32 and 0/3 for INT8, and the gate failed).
# The fixtures' verdict rests on teacher-forced token agreement; compare_scores' verdicts are
# tested on their own (tests/quality/test_precision_gates.py).
FIXTURE_CHECKER_TOLERANCE = {"tolerance_points": 100.0, "tolerance_px": 100.0}
# Portable int8 fixtures: 7-bit weights whatever the CPU (``auto`` picks 8-bit where the int8
# kernels do not saturate), so they run on every x86 CPU and the tests do not depend on the machine.
FIXTURE_WEIGHT_RANGE = "reduced"


def _quantize(
    src: Path, out: Path, precision: str, gates: bool, weight_range: str = FIXTURE_WEIGHT_RANGE
) -> dict[str, Any]:
    from nuwa.calibration.capture import CalibrationSet
    from nuwa.calibration.quantize import quantize_export
    from nuwa.quality.gate_config import GateConfig
    from nuwa.quality.precision_gates import PrecisionGates

    return quantize_export(
        src,
        out,
        precision,
        CalibrationSet(count=CALIB_COUNT, seed=0),
        PrecisionGates(
            GateConfig(
                count=GATE_COUNT,
                streams=1,
                int8_kernels=FIXTURE_INT8_KERNELS,
                **FIXTURE_CHECKER_TOLERANCE,
            )
        )
        if gates
        else None,
        weight_range=weight_range,
    )


@pytest.fixture(scope="session")
def tiny_int8(tmp_path_factory: pytest.TempPathFactory, tiny_portable: Path) -> Path:
    out = tmp_path_factory.mktemp("tiny_int8")
    _quantize(tiny_portable, out, "int8", gates=True)
    return out


@pytest.fixture(scope="session")
def tiny_fp16(tmp_path_factory: pytest.TempPathFactory, tiny_portable: Path) -> Path:
    out = tmp_path_factory.mktemp("tiny_fp16")
    _quantize(tiny_portable, out, "fp16", gates=True)
    return out


@pytest.fixture(scope="session")
def tiny_trt_int8(tmp_path_factory: pytest.TempPathFactory, tiny_tensorrt: Path) -> Path:
    out = tmp_path_factory.mktemp("tiny_trt_int8")
    _quantize(tiny_tensorrt, out, "int8", gates=False, weight_range="auto")  # 8-bit for TensorRT
    return out


@pytest.fixture(scope="session")
def torch_backend(tiny_model_dir: Path):
    from nuwa.runtime.backends import load_backend

    return load_backend("torch", tiny_model_dir, device="cpu")


@pytest.fixture(scope="session")
def tiny_export_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """``nuwa export`` of the tiny model (portable, verified; sketch conditions for 1, 2 and 3
    frames, its default): the session's one portable export, which every test reads and none
    writes into (a test that changes files copies them first)."""
    import torch

    from nuwa.export.exporter import export_model

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tiny_onnx")
    export_model(tiny_model_dir, out, frames=[1, 2, 3])
    return out


@pytest.fixture(scope="session")
def ort_backend(tiny_export_dir: Path):
    from nuwa.runtime.backends.onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend.from_model_dir(tiny_export_dir, device="cpu", threads=1)


@pytest.fixture(scope="session")
def task_inputs() -> dict[str, np.ndarray]:
    """Inputs in the tiny model's sizes (16x16 pixels, 3 trained frames)."""
    from nuwa.spec.sketch_palette import SKETCH_PALETTE

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
