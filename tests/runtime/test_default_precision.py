"""Which precision ONNX Runtime runs a checkpoint at when none is asked for: the model directory's
``runtime_defaults.json`` on the CPU (its bundled ``onnx_int8/``), FP32 one flag away, FP32 with
a one-line note where the CPU refuses the INT8 export, FP32 without the file; a bad file is a
one-line error. The CPU's VNNI check is monkeypatched, so the tests do not depend on the machine."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

from nuwa.runtime.backends import load_backend
from nuwa.runtime.backends.onnxruntime import default_precision as default_precision_module
from nuwa.runtime.backends.onnxruntime import int8_cpu_kernels
from nuwa.runtime.backends.onnxruntime.default_precision import default_precision
from nuwa.runtime.export_cache import (
    BUNDLED_EXPORT_DIRS,
    bundled_export,
    export_dir_for,
    quality_gates_passed,
)
from nuwa.runtime.model_directory import (
    CPU_PRECISION_FIELD,
    RUNTIME_DEFAULTS_FILE,
    ModelDirectory,
    load_runtime_defaults,
)
from nuwa.runtime.pipeline import Pipeline, default_model_dir
from nuwa.spec.errors import BackendUnavailableError, NuwaInputError
from nuwa.spec.manifest import MANIFEST_FILE

INT8_DIR = BUNDLED_EXPORT_DIRS["int8"]
FP32_DIR = BUNDLED_EXPORT_DIRS["fp32"]


def _saturates(monkeypatch: pytest.MonkeyPatch, value: bool) -> None:
    """This CPU with (``False``) or without (``True``) VNNI, as the INT8 checks see it."""
    monkeypatch.setattr(int8_cpu_kernels, "int8_products_saturate", lambda: value)


def _edit_manifest(export: Path, key: str, value: object) -> None:
    raw = json.loads((export / MANIFEST_FILE).read_text())
    raw[key] = value
    (export / MANIFEST_FILE).write_text(json.dumps(raw))


def _say_full_range(export: Path) -> None:
    raw = json.loads((export / MANIFEST_FILE).read_text())
    _edit_manifest(export, "quantization", {**raw["quantization"], "weight_range": [-127, 127]})


@pytest.fixture
def model(tiny_model_dir: Path, tiny_export_dir: Path, tiny_int8: Path, tmp_path: Path) -> Path:
    """A checkpoint bundling its FP32 (``onnx/``) and gated INT8 (``onnx_int8/``) exports, whose
    ``runtime_defaults.json`` names int8 for ONNX Runtime on the CPU."""
    out = tmp_path / "model"
    shutil.copytree(tiny_model_dir, out)
    shutil.copytree(tiny_export_dir, out / FP32_DIR)
    shutil.copytree(tiny_int8, out / INT8_DIR)
    (out / RUNTIME_DEFAULTS_FILE).write_text(json.dumps({CPU_PRECISION_FIELD: "int8"}))
    return out


def test_the_default_on_the_cpu_is_the_bundled_int8_export(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _saturates(monkeypatch, False)
    assert bundled_export(model, precision="int8") == model / INT8_DIR
    assert quality_gates_passed(model / INT8_DIR)
    notes: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning either
        backend = load_backend("onnxruntime", model, log=notes.append)
        pipe = Pipeline.from_pretrained(model, progress=False, log=notes.append)
    assert backend.precision == "int8" and backend.manifest.directory == model / INT8_DIR
    assert pipe.backend.precision == "int8" and "int8" in pipe.describe()
    assert notes == []
    assert ModelDirectory.read(model).runtime_defaults.onnxruntime_cpu_precision == "int8"


def test_fp32_is_one_flag_away(model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _saturates(monkeypatch, False)
    backend = load_backend("onnxruntime", model, precision="fp32")
    assert backend.precision == "fp32" and backend.manifest.directory == model / FP32_DIR
    pipe = Pipeline.from_pretrained(model, precision="fp32", progress=False)
    assert pipe.backend.precision == "fp32"


def test_a_cpu_that_refuses_the_int8_export_runs_fp32_with_a_one_line_note(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """x86 without VNNI: a full-range INT8 export is refused (its int8 kernels would saturate);
    the default falls back to FP32 and says so once, in one line. (The fixture's weights are
    7-bit; its manifest is edited to say full range, which is what the refusal reads.)"""
    _say_full_range(model / INT8_DIR)
    _saturates(monkeypatch, True)
    notes: list[str] = []
    backend = load_backend("onnxruntime", model, log=notes.append)
    assert backend.precision == "fp32" and backend.manifest.directory == model / FP32_DIR
    assert len(notes) == 1 and "\n" not in notes[0]
    assert "VNNI" in notes[0] and "fp32" in notes[0] and str(model / INT8_DIR) in notes[0]
    with pytest.warns(RuntimeWarning, match="VNNI"):  # no log callback: a warning
        assert Pipeline.from_pretrained(model, progress=False).backend.precision == "fp32"
    with pytest.raises(BackendUnavailableError, match="without VNNI"):  # asked for: refused
        load_backend("onnxruntime", model, precision="int8")


def test_the_same_export_runs_int8_where_the_cpu_does_not_saturate(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _say_full_range(model / INT8_DIR)
    _saturates(monkeypatch, False)
    assert default_precision(model, "cpu") == "int8"


def test_a_directory_without_the_field_keeps_fp32(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _saturates(monkeypatch, False)
    (model / RUNTIME_DEFAULTS_FILE).unlink()
    assert load_runtime_defaults(model).onnxruntime_cpu_precision == "fp32"
    assert load_backend("onnxruntime", model).precision == "fp32"
    (model / RUNTIME_DEFAULTS_FILE).write_text("{}")
    assert load_backend("onnxruntime", model).precision == "fp32"
    (model / RUNTIME_DEFAULTS_FILE).write_text(json.dumps({CPU_PRECISION_FIELD: "fp32"}))
    assert load_backend("onnxruntime", model).precision == "fp32"


def test_other_devices_and_backends_keep_fp32(model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _saturates(monkeypatch, False)
    assert default_precision(model, "cpu") == "int8"
    assert default_precision(model, "cuda") == "fp32"
    assert default_precision(model, "tensorrt") == "fp32"
    assert load_backend("torch", model, device="cpu").precision == "fp32"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (json.dumps({CPU_PRECISION_FIELD: "int4"}), "must be one of fp32, fp16, int8, got 'int4'"),
        (json.dumps({CPU_PRECISION_FIELD: 8}), "must be one of fp32, fp16, int8, got 8"),
        (json.dumps({"cpu_precision": "int8"}), r"unknown fields \['cpu_precision'\]"),
        (json.dumps(["int8"]), "must hold a JSON object, got list"),
        ("{int8", "is not valid JSON"),
        (json.dumps({CPU_PRECISION_FIELD: "fp16"}), "bundles no fp16 export"),
    ],
)
def test_a_bad_runtime_defaults_file_is_a_one_line_error(
    model: Path, text: str, message: str
) -> None:
    (model / RUNTIME_DEFAULTS_FILE).write_text(text)
    for load in (
        lambda: ModelDirectory.read(model),
        lambda: Pipeline.from_pretrained(model, progress=False),
        lambda: load_backend("onnxruntime", model),
    ):
        with pytest.raises(NuwaInputError, match=message) as info:
            load()
        assert "\n" not in str(info.value) and RUNTIME_DEFAULTS_FILE in str(info.value)


def test_an_int8_default_whose_gates_did_not_pass_is_an_error(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _saturates(monkeypatch, False)
    _edit_manifest(model / INT8_DIR, "quality_gates", {"skipped": "not run (--no-gates)"})
    assert not quality_gates_passed(model / INT8_DIR)
    with pytest.raises(NuwaInputError, match="quality gates of .* did not pass") as info:
        load_backend("onnxruntime", model)
    assert "\n" not in str(info.value)
    assert load_backend("onnxruntime", model, precision="fp32").precision == "fp32"


def test_a_stale_int8_bundle_is_passed_over_for_fp32_with_a_note(
    model: Path, tiny_export_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The weights changed after the exports were bundled: both are passed over (a note each),
    and FP32 runs from the export cache (here a filled entry)."""
    _saturates(monkeypatch, False)
    config = json.loads((model / "config.json").read_text())
    config["name"] = "tiny-finetuned"
    (model / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("NUWA_CACHE_DIR", str(tmp_path / "cache"))
    shutil.copytree(tiny_export_dir, export_dir_for(model))
    notes: list[str] = []
    backend = load_backend("onnxruntime", model, log=notes.append)
    assert backend.precision == "fp32" and backend.manifest.directory == export_dir_for(model)
    assert len(notes) == 2 and str(model / INT8_DIR) in notes[0] and "fp32" in notes[0]
    assert all("\n" not in n for n in notes)


def test_a_note_goes_to_the_log_callback_else_is_a_warning() -> None:
    messages: list[str] = []
    default_precision_module.note("hello", messages.append)
    assert messages == ["hello"]
    with pytest.warns(RuntimeWarning, match="hello"):
        default_precision_module.note("hello", None)


def test_nuwa_info_model_says_the_default_precision_and_what_this_cpu_runs(
    model: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nuwa.cli import main

    _saturates(monkeypatch, False)
    assert main(["info", "--model", str(model)]) == 0
    out = capsys.readouterr().out
    assert f"default precision on onnxruntime (CPU): int8 ({RUNTIME_DEFAULTS_FILE})" in out
    assert "this CPU runs" not in out
    _say_full_range(model / INT8_DIR)
    _saturates(monkeypatch, True)
    assert main(["info", "--model", str(model)]) == 0
    assert "this CPU runs fp32" in capsys.readouterr().out
    (model / RUNTIME_DEFAULTS_FILE).unlink()
    assert main(["info", "--model", str(model)]) == 0
    assert f"fp32 (no {RUNTIME_DEFAULTS_FILE})" in capsys.readouterr().out


def test_the_demo_runs_its_gated_int8_export_by_default_on_the_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The shipped demo names int8; its bundled INT8 export has 8-bit weights, so an x86 CPU
    without VNNI runs FP32 (with the note)."""
    demo = default_model_dir()
    assert load_runtime_defaults(demo).onnxruntime_cpu_precision == "int8"
    _saturates(monkeypatch, False)
    assert default_precision(demo, "cpu") == "int8"
    _saturates(monkeypatch, True)
    notes: list[str] = []
    assert default_precision(demo, "cpu", notes.append) == "fp32" and len(notes) == 1
