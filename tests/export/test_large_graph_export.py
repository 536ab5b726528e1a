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
from nuwa.export.weights import MIN_EXTERNAL_BYTES, WEIGHTS_FILE, SharedWeights
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


@pytest.mark.parametrize("name", ["text_encoder", STEP])
def test_with_a_weights_file_the_checks_read_the_saved_graph(
    tiny_loaded, tiny_specs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Every graph's tensors are in the shared weights file before the checks, which read the
    saved graph: no in-memory copy of the weights besides ONNX Runtime's (a paper-size encoder's
    export held ~1.3 GB of weights four times over)."""
    seen: list[object] = []

    def spy(spec, model, opset, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(model)
        assert isinstance(model, Path)
        structure = onnx.load(str(model), load_external_data=False)
        external = [
            t for t in structure.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
        ]
        assert external
        assert all(
            t.data_location == onnx.TensorProto.EXTERNAL or t.ByteSize() < 2 * MIN_EXTERNAL_BYTES
            for t in structure.graph.initializer
        )
        return check_graph(spec, model, opset, *args, **kwargs)

    monkeypatch.setattr(exporter, "check_graph", spy)
    info = _export(tiny_specs[name], tiny_loaded, tmp_path / "out", verify=True)
    assert len(seen) == 1 and info.check["max_abs_error"] <= 1e-4
