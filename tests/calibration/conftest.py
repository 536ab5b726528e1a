"""Fixtures of the calibration tests: the tiny random model exported for both targets (once per
session) and its INT8 / FP16 versions from ``quantize_export`` with small calibration and gate
sets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

CALIB_COUNT = 3
GATE_COUNT = 3


@pytest.fixture(scope="session")
def tiny_portable(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    import torch

    from nuwa.export.exporter import export_model

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tiny_portable")
    export_model(tiny_model_dir, out, target="portable", verify=False)
    return out


@pytest.fixture(scope="session")
def tiny_tensorrt(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    import torch

    from nuwa.export.exporter import export_model

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tiny_tensorrt")
    export_model(tiny_model_dir, out, target="tensorrt", verify=False)
    return out


# The tiny int8 export is gated with the Q/DQ kernels as written: on this random-weight model the
# 3-sample checker scores are coin flips (one sample moves a score 33 points; T2V direction 1/3
# -> 0/3 fails MatMulNBits' gate although its token agreement is as high or higher on every task
# and its sampling divergence lower on average: test_quantize checks that noise-free part).
FIXTURE_INT8_KERNELS = "qdq"
# Portable int8 fixtures: 7-bit weights whatever the CPU (``auto`` picks 8-bit where the int8
# kernels do not saturate), so they run on every x86 CPU and the tests do not depend on the machine.
FIXTURE_WEIGHT_RANGE = "reduced"


def _quantize(
    src: Path, out: Path, precision: str, gates: bool, weight_range: str = FIXTURE_WEIGHT_RANGE
) -> dict[str, Any]:
    from nuwa.calibration.capture import CalibrationSet
    from nuwa.calibration.gate_config import GateConfig
    from nuwa.calibration.quantize import quantize_export

    return quantize_export(
        src,
        out,
        precision,
        CalibrationSet(count=CALIB_COUNT, seed=0),
        GateConfig(count=GATE_COUNT, streams=1, int8_kernels=FIXTURE_INT8_KERNELS)
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
