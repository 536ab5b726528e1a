"""A graph over 2 GB (the paper preset's decoder step), which the TorchScript exporter writes as
one file per tensor: ``export_graph`` moves its tensors into the shared weights file one at a
time, checks the file from disk and leaves none of the exporter's files behind. Here the tiny
model's step is written that way on purpose and compared with the usual path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from nuwa.export import exporter
from nuwa.export.exporter import DEFAULT_OPSET, export_graph
from nuwa.export.verify import check_graph
from nuwa.export.weights import WEIGHTS_FILE, SharedWeights
from nuwa.spec.errors import ExportError

STEP = "decoder_step.text"


def _as_torch_writes_a_large_graph(trace):  # type: ignore[no-untyped-def]
    def traced(spec, model, path, opset):  # type: ignore[no-untyped-def]
        shapes = trace(spec, model, path, opset)
        whole = onnx.load(str(path))
        onnx.save(
            whole, str(path), save_as_external_data=True, all_tensors_to_one_file=False
        )  # one file per tensor over 1 KiB, beside the graph
        return shapes

    return traced


def _export(spec, model, directory: Path, verify: bool = False):  # type: ignore[no-untyped-def]
    directory.mkdir()
    weights = SharedWeights(directory / WEIGHTS_FILE)
    return export_graph(
        spec, model, directory / spec.file, "portable", DEFAULT_OPSET, verify, weights
    )


def test_a_graph_written_one_file_per_tensor_exports_like_one_loaded_whole(
    tiny_loaded, tiny_specs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tiny_specs[STEP]
    usual_info = _export(spec, tiny_loaded, tmp_path / "usual", verify=True)
    usual = tmp_path / "usual" / spec.file
    monkeypatch.setattr(exporter, "_trace", _as_torch_writes_a_large_graph(exporter._trace))
    large_info = _export(spec, tiny_loaded, tmp_path / "large", verify=True)
    large = tmp_path / "large" / spec.file
    # verified the same way (ONNX Runtime reading the file) with the same result
    assert large_info.check == usual_info.check and large_info.check["max_abs_error"] > 0
    assert sorted(p.name for p in large.parent.iterdir()) == sorted([spec.file, WEIGHTS_FILE])
    assert (large.parent / WEIGHTS_FILE).stat().st_size == (
        usual.parent / WEIGHTS_FILE
    ).stat().st_size
    onnx.checker.check_model(str(large), full_check=True)
    ours = check_graph(spec, large, DEFAULT_OPSET, batch=1, seed=2)
    reference = check_graph(spec, usual, DEFAULT_OPSET, batch=1, seed=2)
    assert ours.ok and reference.ok
    assert np.isclose(ours.max_abs_error, reference.max_abs_error, rtol=0, atol=1e-7)
    with pytest.raises(ExportError, match="over 2 GB: exporting it needs a shared weights file"):
        (tmp_path / "inline").mkdir()
        export_graph(spec, tiny_loaded, tmp_path / "inline" / spec.file, "portable", DEFAULT_OPSET)
