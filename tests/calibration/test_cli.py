"""``nuwa quantize`` and ``nuwa build-engine`` through the real entry point: work, or one line
and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nuwa.cli import main


def _one_line_error(capsys: pytest.CaptureFixture[str], *words: str) -> None:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err


def test_quantize_fp16_without_gates(
    tmp_path: Path, tiny_portable: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "fp16"
    code = main(
        ["quantize", str(tiny_portable), "--precision", "fp16", "-o", str(out), "--no-gates", "-q"]
    )
    assert code == 0
    assert "gates skipped" in capsys.readouterr().out
    assert json.loads((out / "manifest.json").read_text())["precision"] == "fp16"


def test_quantize_int8_with_options(
    tmp_path: Path, tiny_portable: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "int8"
    args = ["quantize", str(tiny_portable), "--precision", "int8", "-o", str(out), "-q"]
    args += ["--calib-count", "1", "--calib-seed", "7", "--gate-count", "1", "--gate-tasks", "T2I"]
    args += ["--gate-streams", "1"]
    args += ["--calib-method", "percentile", "--calib-percentile", "99.5"]
    assert main(args) == 0
    assert "quality gates passed" in capsys.readouterr().out
    raw = json.loads((out / "manifest.json").read_text())
    assert raw["calibration"]["count"] == 1 and raw["calibration"]["seed"] == 7
    assert raw["calibration"]["method"] == "percentile"
    assert raw["calibration"]["percentile"] == 99.5
    assert list(raw["quality_gates"]["tasks"]) == ["T2I"]


def test_quantize_errors(
    tmp_path: Path, tiny_portable: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["quantize", str(tmp_path / "none"), "--precision", "int8", "-o", str(tmp_path / "o")])
        == 2
    )
    _one_line_error(capsys, "nuwa quantize: error:", "manifest.json is missing")
    assert (
        main(["quantize", str(tiny_portable), "--precision", "int8", "-o", str(tiny_portable)]) == 2
    )
    _one_line_error(capsys, "must differ")
    bad = ["quantize", str(tiny_portable), "--precision", "int8", "-o", str(tmp_path / "p")]
    assert main([*bad, "--calib-method", "percentile", "--calib-percentile", "101"]) == 2
    _one_line_error(capsys, "--calib-percentile must be in (0, 100]")
    with pytest.raises(SystemExit) as exc:  # argparse: unknown precision / task
        main(["quantize", str(tiny_portable), "--precision", "int4", "-o", str(tmp_path)])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main(
            [
                "quantize",
                str(tiny_portable),
                "--precision",
                "int8",
                "-o",
                str(tmp_path),
                "--calib-tasks",
                "X2Y",
            ]
        )


def test_build_engine_errors(
    tmp_path: Path, tiny_portable: Path, tiny_tensorrt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lib = tmp_path / "libnuwa_plugins.so"
    assert (
        main(
            [
                "build-engine",
                str(tiny_portable),
                "--plugin-lib",
                str(lib),
                "-o",
                str(tmp_path / "e"),
            ]
        )
        == 2
    )
    _one_line_error(capsys, "nuwa build-engine: error:", "--target tensorrt")
    assert (
        main(
            [
                "build-engine",
                str(tiny_tensorrt),
                "--plugin-lib",
                str(lib),
                "-o",
                str(tmp_path / "e"),
            ]
        )
        == 2
    )
    _one_line_error(capsys, "plugin library", "not found")
    assert (
        main(
            [
                "build-engine",
                str(tiny_tensorrt),
                "--plugin-lib",
                str(lib),
                "-o",
                str(tmp_path / "e"),
                "--opt-batch",
                "9",
            ]
        )
        == 2
    )
    _one_line_error(capsys, "--opt-batch")


def test_quantize_gate_defaults_are_the_gate_configs() -> None:
    from nuwa.cli import build_parser
    from nuwa.quality.gate_config import GateConfig

    args = build_parser("quantize").parse_args(
        ["quantize", "onnx", "--precision", "int8", "-o", "out"]
    )
    defaults = GateConfig()
    assert args.gate_count == defaults.count
    assert args.gate_seed == defaults.seed
    assert args.gate_streams == defaults.streams
    assert tuple(args.gate_tasks) == defaults.tasks
    assert args.min_token_agreement == defaults.min_token_agreement
    assert args.int8_kernels == defaults.int8_kernels
