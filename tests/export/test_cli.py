"""``nuwa export`` on bad input: one-line error, exit code 2, no manifest left behind; a failure
in the middle of an export leaves neither graphs nor a manifest."""

from __future__ import annotations

import shutil

import pytest

from nuwa.cli import main
from nuwa.export import MANIFEST_FILE, ExportError
from nuwa.export import exporter as exporter_module
from nuwa.export.verify import GraphCheck


def run_export(capsys, *args: str) -> tuple[int, str]:
    code = main(["export", *args])
    err = capsys.readouterr().err.strip()
    return code, err


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("nuwa export: error: ")
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0]


def test_missing_model_directory(capsys, tmp_path):
    out = tmp_path / "onnx"
    code, err = run_export(capsys, str(tmp_path / "nowhere"), "-o", str(out))
    assert_one_line_error(code, err, "does not exist")
    assert not (out / MANIFEST_FILE).exists()


def test_corrupt_checkpoint(capsys, tmp_path, tiny_model_dir):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "transformer.safetensors").write_bytes(b"not a safetensors file")
    out = tmp_path / "onnx"
    code, err = run_export(capsys, str(model), "-o", str(out))
    assert_one_line_error(code, err, "transformer.safetensors")
    assert not (out / MANIFEST_FILE).exists()


def test_missing_weights_file(capsys, tmp_path, tiny_model_dir):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "vqgan.safetensors").unlink()
    code, err = run_export(capsys, str(model), "-o", str(tmp_path / "onnx"))
    assert_one_line_error(code, err, "vqgan.safetensors", "missing")


def test_corrupt_config(capsys, tmp_path, tiny_model_dir):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "config.json").write_text("{ not json")
    code, err = run_export(capsys, str(model), "-o", str(tmp_path / "onnx"))
    assert_one_line_error(code, err, "config.json")


def test_unknown_target(capsys, tmp_path, tiny_model_dir):
    out = tmp_path / "onnx"
    code, err = run_export(capsys, str(tiny_model_dir), "-o", str(out), "--target", "coreml")
    assert_one_line_error(code, err, "unknown target 'coreml'", "portable", "tensorrt")
    assert not (out / MANIFEST_FILE).exists()


def test_unsupported_opset(capsys, tmp_path, tiny_model_dir):
    code, err = run_export(capsys, str(tiny_model_dir), "-o", str(tmp_path), "--opset", "13")
    assert_one_line_error(code, err, "opset 13")


def test_frames_beyond_the_trained_length(capsys, tmp_path, tiny_model_dir):
    code, err = run_export(capsys, str(tiny_model_dir), "-o", str(tmp_path), "--frames", "1,9")
    assert_one_line_error(code, err, "frames must be in 1..3")


def test_unwritable_output_directory(capsys, tmp_path, tiny_model_dir):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = blocker / "onnx"  # a directory cannot be made below a file (even as root)
    code, err = run_export(capsys, str(tiny_model_dir), "-o", str(out))
    assert_one_line_error(code, err, "cannot write to output directory")
    assert not out.exists()


def test_failure_during_export_leaves_no_manifest_and_no_graphs(
    tmp_path, tiny_model_dir, monkeypatch
):
    """The second graph fails its numerical check: nothing of the export is left, and a stale
    manifest from an earlier export is gone too (files and manifest never disagree)."""
    out = tmp_path / "onnx"
    out.mkdir()
    (out / MANIFEST_FILE).write_text("{}")  # an earlier export's manifest
    calls = []
    real_check = exporter_module.check_graph

    def failing_check(spec, model, opset, batch=2, seed=1):
        calls.append(spec.name)
        if len(calls) == 2:
            return GraphCheck(max_abs_error=0.5, code_mismatch=0.0, batch=batch)
        return real_check(spec, model, opset, batch, seed)

    monkeypatch.setattr(exporter_module, "check_graph", failing_check)
    with pytest.raises(ExportError, match="does not match PyTorch: max abs error 0.5"):
        exporter_module.export_model(tiny_model_dir, out)
    assert len(calls) == 2
    assert sorted(p.name for p in out.iterdir()) == []  # no graphs, no temp dir, no manifest
