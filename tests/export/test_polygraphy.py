"""The Polygraphy recipe of ``export/README.md``: PyTorch's inputs and outputs saved in
Polygraphy's JSON formats, then ``polygraphy run GRAPH.onnx --onnxrt --load-inputs ...
--load-outputs ...`` compares ONNX Runtime with them (and fails on wrong reference outputs)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
from polygraphy.comparator import RunResults

from nuwa.export.verify import write_polygraphy_reference

GRAPH = "decoder_step.text"


def polygraphy_run(onnx_path, inputs, outputs) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("polygraphy")
    cmd = [exe] if exe else [sys.executable, "-m", "polygraphy"]
    cmd += [str(onnx_path), "--onnxrt", "--load-inputs", str(inputs)]
    cmd += ["--load-outputs", str(outputs), "--atol", "1e-4", "--rtol", "0"]
    return subprocess.run(cmd[:1] + ["run"] + cmd[1:], capture_output=True, text=True)


@pytest.mark.slow  # polygraphy end to end (a subprocess per runner)
def test_polygraphy_compares_onnxruntime_with_pytorch(tiny_export, tiny_specs, tmp_path):
    inputs, outputs = write_polygraphy_reference(tiny_specs[GRAPH], tmp_path / "ref")
    result = polygraphy_run(tiny_export.path(GRAPH), inputs, outputs)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "PASSED" in result.stdout + result.stderr

    # the same comparison fails when the reference logits are off by more than the tolerance
    results = RunResults.load(str(outputs))
    iteration = results[0][1][0]
    iteration["logits"] = iteration["logits"] + np.float32(1e-3)
    wrong = tmp_path / "wrong_outputs.json"
    results.save(str(wrong))
    result = polygraphy_run(tiny_export.path(GRAPH), inputs, wrong)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr
